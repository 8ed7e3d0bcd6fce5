"""Intraday crypto execution: Binance 1h klines of several USDT pairs, L=120, N=12, one pooled model.

Run:   make train EXP=crypto_intraday && make eval EXP=crypto_intraday
       (variants: VARIANT=smoke or VARIANT=paper; VARIANT=costs charges execution costs and adds
       the net-improvement-by-size table: make train EXP=crypto_intraday VARIANT=costs, not yet measured)
Data:  data/binance/ after `make data`, else ../shared/data/crypto/1h; with neither, the embedded
       synthetic crypto market (the work directory then ends in _SYNTHETIC).
Split: train 2022-01..2024-12, validation 2025-01..2025-06, test 2025-07..end.
Expect: not yet measured for this version (evaluation v2: clustered intervals, the best causal
       baseline chosen on validation orders). The earlier figures used intervals that treated
       orders starting together as independent and a weaker stopping rule, and are withdrawn;
       `make seeds EXP=crypto_intraday` measures them anew.
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
