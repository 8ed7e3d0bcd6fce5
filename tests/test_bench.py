"""Tests of lemjax/bench.py: its configurations and the online decision-latency helper (the
measurements themselves run in `make bench`)."""

import pytest

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


def test_make_config_takes_sizes_and_experiment_files_like_main():
  smoke = bench.make_config("smoke", ["train.batch_size=8", "model.allocator.variant=per_step"])
  assert smoke.train.batch_size == 8 and smoke.model.allocator.variant == "per_step"
  djia = bench.make_config("experiments/djia_multiday.py:smoke", [])
  assert djia.name == "djia_multiday_smoke" and djia.model.n_ahead == smoke.model.n_ahead


def test_make_config_rejects_an_unknown_override():
  with pytest.raises(ValueError, match=r"train\.batch_sise; did you mean train\.batch_size\?"):
    bench.make_config("smoke", ["train.batch_sise=8"])
