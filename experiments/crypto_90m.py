"""The paper's 90-minute crypto setting: the 15-minute Binance klines resampled to 90-minute bars.

Run:   make train EXP=crypto_90m && make eval EXP=crypto_90m
       make train EXP=crypto_90m VARIANT=leaky && make eval EXP=crypto_90m VARIANT=leaky
       make compare EXP=crypto_90m          (writes runs/crypto_90m/paper_comparison.md)
Data:  as experiments/crypto_15m.py; the data layer sums each 6 bars aligned on 90-minute epoch
       multiples (00:00, 01:30, ... UTC) into one bar (lemjax/data/resample.py), about 7,800 bars
       per pair. L=120 bars of history is 7.5 days, an order of N=12 bars lasts 18 hours.
Split: the dates of crypto_15m: train 2024-12-30..2025-09-30, validation 2025-10..2025-12, test
       2026-01-01..end (about 1,000 non-overlapping test orders over the 7 pairs).
Paper: crypto_results_table_90.0_* in ../shared/paper_tables (lemjax/compare.py).
"""

from experiments import base


def get_config(arg: str | None = None):
  config = base.get_config()
  config.name = "crypto_90m"
  config.data.path = base.first_existing(
    "data/binance", "../shared/data/crypto/15m", contains="15m"
  )
  config.data.kind = "binance"
  config.data.interval = "15m"
  config.data.resample_to = "90m"
  config.data.synthetic_regime = "crypto"
  config.data.synthetic_bars = 35040  # one year of 15-minute bars, 5,840 after resampling
  config.data.train_start, config.data.train_end = "2024-12-30", "2025-09-30"
  config.data.val_start, config.data.val_end = "2025-10-01", "2025-12-31"
  config.data.test_start, config.data.test_end = "2026-01-01", ""
  # The paper's independent heads: the shared trunk was measured on crypto_intraday and
  # djia_multiday only, and this file's expected figures are the independent heads'.
  config.model.allocator.tie_heads = False
  config = base.with_variant(config, arg)
  if "smoke" in (arg or ""):
    config.data.synthetic_bars = 7200  # the smoke size's 1,200 bars, after resampling
  return config
