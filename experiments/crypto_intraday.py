"""Intraday crypto execution: Binance 1h klines of several USDT pairs, L=120, N=12, one pooled model.

Run:   make train EXP=crypto_intraday && make eval EXP=crypto_intraday
       (variants: VARIANT=smoke or VARIANT=paper; VARIANT=costs charges execution costs and adds
       the net-improvement-by-size table: make train EXP=crypto_intraday VARIANT=costs; README,
       "Results with costs on")
Data:  data/binance/ after `make data`, else ../shared/data/crypto/1h; with neither, the embedded
       synthetic crypto market (the work directory then ends in _SYNTHETIC).
Split: train 2022-01..2024-12, validation 2025-01..2025-06, test 2025-07..end.
Expect: on ../shared/data (default sizes, 3 seeds, 4,172 test orders in 596 start-time clusters,
       VWAP, quantity; `make seeds EXP=crypto_intraday SEEDS=3`) min period 1 improves on VWAP by
       +16.8 ± 0.4 bps (buy) and +21.7 ± 0.7 (sell), across-seed mean ± std. LEM minus the best
       causal stopping baseline (chosen on validation orders): -0.2 ± 0.4 (buy) and -0.3 ± 0.7
       (sell); every seed's clustered 95% interval contains 0 (README, "Results").
"""

from experiments import base


def get_config(arg: str | None = None):
  config = base.get_config()
  config.name = "crypto_intraday"
  config.data.path = base.first_existing("data/binance", "../shared/data/crypto/1h")
  config.data.kind = "binance"
  config.data.interval = "1h"
  config.data.synthetic_regime = "crypto"
  config.data.train_start, config.data.train_end = "2022-01-01", "2024-12-31"
  config.data.val_start, config.data.val_end = "2025-01-01", "2025-06-30"
  config.data.test_start, config.data.test_end = "2025-07-01", ""
  return base.with_variant(config, arg)
