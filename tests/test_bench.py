"""Tests for lemjax/bench.py: the online decision-latency helper."""

from experiments import crypto_intraday
from lemjax import bench
from lemjax import experiment
from lemjax import online


def test_step_latency_helper():
  model = experiment.resolve_configs(crypto_intraday.get_config("smoke"), 8)["model"]
  policy = online.init_policy(model, seed=1)
  for n_orders in (1, 3):
    stats = bench.step_latency(policy, n_orders=n_orders, repeats=2)
    assert stats["n_orders"] == n_orders and stats["median_s"] > 0
