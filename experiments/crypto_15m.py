"""The paper's crypto setting: Binance 15-minute klines of 7 USDT pairs, L=120, N=12, one pooled model.

Run:   make train EXP=crypto_15m && make eval EXP=crypto_15m
       then the look-ahead run and the side-by-side with the published tables:
       make train EXP=crypto_15m VARIANT=leaky && make eval EXP=crypto_15m VARIANT=leaky
       make compare EXP=crypto_15m          (writes runs/crypto_15m/paper_comparison.md)
       (variants: VARIANT=smoke, paper, leaky, or combined as VARIANT=smoke,leaky)
Data:  data/binance/ if it holds 15m klines (`make data EXP=crypto_15m`), else
       ../shared/data/crypto/15m; with neither, the embedded synthetic crypto market at 15-minute
       bars (the work directory then ends in _SYNTHETIC).
Split: train 2024-12-30..2025-09-30, validation 2025-10..2025-12, test 2026-01-01..end (4 months);
       windows must lie inside one split, so splits are L+N bars apart (the data layer's embargo).
Paper: crypto_results_table_15.0_* in ../shared/paper_tables (lemjax/compare.py).
Expect: on ../shared/data (default sizes, seed 0, 6,601 test orders in 943 start-time clusters,
       `make train EXP=crypto_15m && make eval EXP=crypto_15m`), min period 1 against VWAP:
       LEM +8.69 bps (buy) / +10.37 (sell), the best causal baseline +9.12 / +10.68, the
       look-ahead twin +16.40 / +17.17; README "Against the paper" has the table.
"""

from experiments import base


def get_config(arg: str | None = None):
  config = base.get_config()
  config.name = "crypto_15m"
  config.data.path = base.first_existing(
    "data/binance", "../shared/data/crypto/15m", contains="15m"
  )
  config.data.kind = "binance"
  config.data.interval = "15m"
  config.data.synthetic_regime = "crypto"
  config.data.synthetic_bars = 35040  # one year of 15-minute bars
  config.data.train_start, config.data.train_end = "2024-12-30", "2025-09-30"
  config.data.val_start, config.data.val_end = "2025-10-01", "2025-12-31"
  config.data.test_start, config.data.test_end = "2026-01-01", ""
  # The paper's independent heads: the shared trunk was measured on crypto_intraday and
  # djia_multiday only, and this file's expected figures are the independent heads'.
  config.model.allocator.tie_heads = False
  return base.with_variant(config, arg)
