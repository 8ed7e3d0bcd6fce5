"""Null test (SPEC section 7): the smoke-size model on a synthetic martingale must not beat VWAP.

Run:   make null-test
Data:  the embedded synthetic crypto market with `martingale=True` (no predictable prices).
Expect: the fixed-duration head's mean improvement vs VWAP has a 95% interval that holds 0 (or a
       |mean| of a fraction of a bp); a significant gain means information leaks from the future.
"""

from experiments import base


def get_config(arg: str | None = None):
  config = base.smoke(base.get_config())
  config.name = "null_test"
  config.data.source = "synthetic"
  config.data.martingale = True
  config.data.synthetic_assets = 4
  config.data.synthetic_bars = 4000
  config.train.steps = 300
  config.train.eval_every = 50
  config.train.log_every = 10
  config.train.val_orders = 256
  config.train.patience = 0
  config.eval.bootstrap = 2000
  return base.with_variant(config, arg)
