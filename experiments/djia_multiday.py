"""Multi-day equity execution: daily bars of the Dow constituents, orders of N=12 trading days, L=120.

Run:   make train EXP=djia_multiday && make eval EXP=djia_multiday
       (variants: VARIANT=smoke or VARIANT=paper; VARIANT=costs charges execution costs and adds
       the net-improvement-by-size table: make train EXP=djia_multiday VARIANT=costs; README,
       "Results with costs on")
Data:  ../shared/data/djia_daily (Kaggle-style daily CSVs); without it, the embedded synthetic
       equity-like market (the work directory then ends in _SYNTHETIC).
Split: train 2006..2013, validation 2014..2015, test 2016..2017.
Expect: on ../shared/data (default sizes, 3 seeds, 961 test orders in 31 start-time clusters,
       VWAP, quantity; README "Results", runs/djia_multiday_trunk_seed<i>) min period 1
       improves on VWAP by +25.5 ± 0.6 bps (buy) and +30.2 ± 1.7 (sell) with the served heads
       (eval.nested_heads; mean ± std across seeds). LEM minus the best causal stopping baseline
       (chosen on validation orders): +1.1 ± 0.6 (buy) and -3.0 ± 1.7 (sell); seed 0's
       clustered 95% intervals +1.3 [-2.8, +5.0] and -2.3 [-6.0, +1.3]. At the fixed head the
       improvement's std against VWAP is 28.4 bps (buy, seed 0; the volume-profile schedule: 31.2).
"""

from experiments import base


def get_config(arg: str | None = None):
  config = base.get_config()
  config.name = "djia_multiday"
  config.data.path = "../shared/data/djia_daily"
  config.data.kind = "daily"
  config.data.interval = "1d"
  config.data.volume_window = "30d"  # about 21 trading days
  config.data.synthetic_regime = "equity"
  config.data.synthetic_bars = 3000  # about 12 years of trading days
  config.data.synthetic_start = "2006-01-03"
  config.data.train_start, config.data.train_end = "2006-01-01", "2013-12-31"
  config.data.val_start, config.data.val_end = "2014-01-01", "2015-12-31"
  config.data.test_start, config.data.test_end = "2016-01-01", "2017-12-31"
  return base.with_variant(config, arg)
