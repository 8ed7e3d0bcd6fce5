"""Tests of lemjax/bench.py: its configurations, the online decision-latency helper, the input
pipeline, the scaling table and figure, and the `lems` peer timing (the measurements themselves
run in `make bench`)."""

import os

import jax
import pytest

from experiments import crypto_intraday
from lemjax import bench
from lemjax import experiment
from lemjax import online
from lemjax import peer
from lemjax import plots


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


def test_overriding_n_ahead_moves_the_data_window_too():
  config = bench.make_config("smoke", ["model.n_ahead=6", "train.batch_size=8"])
  assert config.model.n_ahead == config.data.n_ahead == 6


def test_input_pipeline_counts_windows_and_compares_with_the_step():
  pipeline = bench.input_pipeline("smoke", [], batch_size=8, batches=3)
  assert pipeline["batch_size"] == 8 and pipeline["windows_per_s"] > 0
  results = [{"batch_size": 8, "samples_per_s": 2.0}, {"batch_size": 4, "samples_per_s": 1e9}]
  margin = bench.pipeline_margin(pipeline, results)
  assert margin["step_samples_per_s"] == 2.0
  assert margin["ratio"] == pytest.approx(pipeline["windows_per_s"] / 2.0)
  with pytest.raises(ValueError, match="batch_size=16"):
    bench.pipeline_margin({**pipeline, "batch_size": 16}, results)
  with pytest.raises(ValueError, match="batches=0"):
    bench.input_pipeline("smoke", [], batch_size=8, batches=0)


def _row(n, b, step_s, compile_s, peer=None):
  row = {"n_ahead": n, "batch_size": b, "lookback": 16, "hidden": 8, "compile_s": compile_s}
  row.update(step_s_median=step_s, samples_per_s=b / step_s)
  if peer:
    row["peer"] = {"compile_s": 3 * compile_s, "samples_per_s": b / (peer * step_s)}
    row["peer_ratio"] = peer
  return row


def test_scaling_table_and_plot(tmp_path):
  scaling = {
    "n_ahead": [_row(4, 8, 0.1, 2.0, peer=3.0), _row(8, 8, 0.3, 2.5, peer=4.0)],
    "batch_size": [_row(4, 8, 0.1, 2.0, peer=3.0), _row(4, 32, 0.2, 2.1, peer=5.0)],
  }
  lines = bench.format_scaling(scaling).splitlines()
  assert len(lines) == 5 and lines[0].split()[:2] == ["N", "B"]
  assert lines[2].split() == ["8", "8", "2.5", "0.300", "26.7", "7.5", "6.7", "4.00"]
  path = plots.bench_scaling(str(tmp_path / "scaling.png"), scaling)
  assert os.path.getsize(path) > 10_000


@pytest.mark.parity
def test_peer_trains_the_lems_model_at_tiny_shapes():
  if not peer.available():
    pytest.skip("the `lems` package (parity extra) is not installed")
  shapes = dict(
    batch_size=4,
    lookback=6,
    n_ahead=3,
    hidden=8,
    embed_dim=4,
    attention_heads=2,
    allocator_width=8,
    n_features=8,
  )
  with jax.numpy_rank_promotion("allow"):  # the package broadcasts ranks implicitly
    timing = peer.time_peer(shapes, steps=2, warmup=0)
  assert timing["loss_finite"] and len(timing["step_s_all"]) == 2
  assert timing["samples_per_s"] == pytest.approx(4 / timing["step_s_median"])
  with pytest.raises(ValueError, match="n_ahead=2"):
    peer.time_peer({**shapes, "n_ahead": 2}, steps=1, warmup=0)


def test_scaling_sweep_measures_each_point_once(monkeypatch):
  calls = []

  def fake_child(name, overrides, breakdown, latency):
    calls.append(overrides)
    n, b = (int(o.partition("=")[2]) for o in overrides[-2:])
    return _row(n, b, 0.1, 1.0)

  monkeypatch.setattr(bench, "_run_child", fake_child)
  scaling = bench.scaling_sweep("smoke", ["model.allocator.width=4"], [4, 8], [16, 32], False)
  assert [r["n_ahead"] for r in scaling["n_ahead"]] == [4, 8]
  assert [r["batch_size"] for r in scaling["n_ahead"]] == [16, 16]
  assert [(r["n_ahead"], r["batch_size"]) for r in scaling["batch_size"]] == [(4, 16), (4, 32)]
  assert len(calls) == 3 and all(c[0] == "model.allocator.width=4" for c in calls)
