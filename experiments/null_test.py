"""Null test (SPEC section 7): on a synthetic martingale the LEM must not beat the best causal rule.

Run:   make null-test   (writes null_test.md / null_test.json next to report.md)
Data:  the embedded synthetic crypto market with `martingale=True` (no predictable prices).
Verdict: at every head (flexible min periods and the fixed duration) and scenario, LEM minus the
       best causal baseline (chosen on validation orders) is not significantly positive: clustered
       intervals, Holm's test over all rows. A significant gain means information leaks from the
       future; tests/test_null_test.py shows a policy that peeks at the bar it trades failing it.
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
