"""Evaluation with execution costs: every strategy pays the same costs, the size-bucket table and plot."""

import os

import jax.numpy as jnp
import numpy as np
import polars as pl
import pytest

from lemjax import baselines
from lemjax import config as config_lib
from lemjax import costs
from lemjax import evaluate as evaluate_lib
from lemjax import experiment
from lemjax import objectives
from lemjax import size_report
from lemjax import workdir as workdir_lib

N = 4  # the smoke config's horizon


def test_bucket_stats_table_and_plot(tmp_path):
  rng = np.random.default_rng(0)
  origin = np.repeat(np.arange(30), 2) * 3_600_000
  imp = {
    q: {"LEM": rng.normal(-q * 100, 1.0, (60, N + 1, 8)), "uniform": np.full((60, N + 1, 8), -q)}
    for q in (0.001, 0.05)
  }
  frame = size_report.bucket_stats(imp, origin, config_lib.EvalConfig(bootstrap=200))
  assert frame.height == 2 * 2 * (N + 1) * 8
  row = frame.filter(
    (pl.col("size") == 0.05) & (pl.col("strategy") == "uniform") & (pl.col("head") == 1)
  ).row(0, named=True)
  assert row["mean_bps"] == pytest.approx(-0.05) and row["ci_lo"] == pytest.approx(-0.05)
  assert row["n_clusters"] == 30
  lem = frame.filter((pl.col("strategy") == "LEM") & (pl.col("size") == 0.05))
  assert np.all(lem["ci_lo"].to_numpy() < lem["mean_bps"].to_numpy())
  table = size_report.markdown_table(frame, 1, "buy/vwap/quantity")
  assert "| strategy | 0.1% | 5% |" in table and "| uniform | -0.00 [-0.00, -0.00] | -0.05" in table
  path = size_report.plot(
    str(tmp_path / "p.png"), frame, 1, ("buy/vwap/quantity", "sell/vwap/quantity")
  )
  with open(path, "rb") as f:
    assert f.read(4) == b"\x89PNG"


@pytest.fixture(scope="module")
def run(costs_run):
  """A briefly trained smoke model with costs on, its test/tune/val orders and configs."""
  config, path = costs_run
  train_ds, val_ds, test_ds, _, _ = experiment.load_data(config)
  cfgs = experiment.resolve_configs(config, train_ds.batch(np.arange(1))["inputs"].shape[-1])
  params, _ = workdir_lib.restore_params(path, cfgs["model"], "best")
  ecfg = cfgs["eval"]
  test = evaluate_lib.gather(test_ds, evaluate_lib.select_orders(test_ds, N, ecfg))
  tune = evaluate_lib.gather(train_ds, evaluate_lib.spread_indices(train_ds.num_windows, 128))
  val = evaluate_lib.gather(val_ds, evaluate_lib.spread_indices(val_ds.num_windows, 128))
  at = lambda q: evaluate_lib.strategies_at_size(  # noqa: E731
    params, cfgs, test, tune, val, test_ds.store.step_ms, path, q
  )
  return {"config": config, "path": path, "cfgs": cfgs, "test": test, "at": at}


def test_every_strategy_pays_the_same_costs_capped_and_growing_with_size(run):
  cost, test = run["cfgs"]["costs"], run["test"]
  paid = {}
  for size in (0.001, 0.2):
    allocs, _, results = run["at"](size)
    assert set(allocs) >= {"LEM", *evaluate_lib.CAUSAL_BASELINES, "best_causal", "oracle"}
    for name, alloc in allocs.items():
      alloc = jnp.asarray(alloc)
      # The participation cap holds for every strategy: a child <= rho x expected bar volume.
      assert float(jnp.max(alloc)) * size * N <= cost.participation_cap * (1 + 1e-5), name
      fills = costs.fill_prices(
        alloc,
        test["prices"],
        test["volumes"],
        jnp.full(alloc.shape[:1], size),
        test["lookback_vol"],
        cost,
      )
      own = objectives.execution_summary(alloc, test["prices"], test["volumes"], fills)
      np.testing.assert_allclose(results[name]["improvement_bps"], own["improvement_bps"])
      assert np.all(results[name]["cost_bps"] > 0), name
      paid.setdefault(name, []).append(float(np.mean(results[name]["cost_bps"])))
  for name, (small, large) in paid.items():
    assert large > small + 1.0, name


def test_large_orders_stopping_rules_pay_for_finishing_early(run):
  """At 10% of horizon volume, an order a stopping rule finishes early costs more than uniform
  (at 20% the cap, 0.25 / (0.2 N) of the order per bar, leaves no room to finish early at N = 4)."""
  cost, test, size = run["cfgs"]["costs"], run["test"], 0.1
  r_max = float(costs.capped_r_max(1.0, size, N, cost))
  theta_KxS = np.zeros((N + 1, 8))  # stop at the first favourable price
  stop = baselines.optional_stopping(
    test["prices"], test["volumes"], test["closes"], theta_KxS, 0.0, r_max
  )
  allocs = {"stop": stop, "uniform": baselines.uniform(stop.shape[0], N)}
  fills_for = (
    lambda a: costs.fill_prices(  # noqa: E731
      a, test["prices"], test["volumes"], jnp.full(a.shape[:1], size), test["lookback_vol"], cost
    )
  )
  res = evaluate_lib.summaries(allocs, test["prices"], test["volumes"], fills_for)
  early = res["stop"]["ended_early"][:, :N]
  assert early.any()
  paid_stop = float(np.mean(res["stop"]["cost_bps"][:, :N][early]))
  paid_uniform = float(np.mean(res["uniform"]["cost_bps"][:, :N][early]))
  assert paid_stop > paid_uniform
  # The thresholds tuned net of costs stop less often at this size than at 0.1%.
  _, _, small = run["at"](0.001)
  _, _, large = run["at"](size)
  early_small = np.mean(small["optional_stopping"]["ended_early"][:, :N])
  assert np.mean(large["optional_stopping"]["ended_early"][:, :N]) <= early_small


def test_evaluate_with_costs_appends_the_size_table(run):
  out = evaluate_lib.evaluate(run["config"], run["path"])
  outdir = os.path.dirname(out["report"])
  frame = pl.read_csv(os.path.join(outdir, size_report.CSV_FILE))
  assert sorted(set(frame["size"])) == sorted(run["cfgs"]["costs"].size_buckets)
  assert {"LEM", "uniform", "vwap_profile", "lsm_stopping", "oracle"} <= set(frame["strategy"])
  assert np.isfinite(frame["mean_bps"].to_numpy()).all()
  # The paired row is LEM minus best_causal on the same orders, and the study score at each size
  # is its mean over the flexible heads (min periods 1..N-1) and every scenario.
  score = pl.read_csv(os.path.join(outdir, size_report.SCORE_FILE))
  assert sorted(score["size"]) == sorted(run["cfgs"]["costs"].size_buckets)
  for row in score.iter_rows(named=True):
    at = frame.filter((pl.col("size") == row["size"]) & (pl.col("head") < N - 1))
    mean = {
      s: at.filter(pl.col("strategy") == s)["mean_bps"].to_numpy()
      for s in ("LEM", "best_causal", size_report.PAIRED)
    }
    np.testing.assert_allclose(
      mean[size_report.PAIRED], mean["LEM"] - mean["best_causal"], atol=1e-5
    )
    assert row["lem_minus_best_causal_bps"] == pytest.approx(mean[size_report.PAIRED].mean())
    assert row["ci_lo"] <= row["lem_minus_best_causal_bps"] <= row["ci_hi"]
    assert row["min_periods"] == f"1..{N - 1}"
  with open(out["report"]) as f:
    text = f.read()
  assert "## Net improvement by order size" in text and "| LEM |" in text
  assert "Study score by size" in text and "| LEM minus best_causal |" in text
  with open(os.path.join(outdir, size_report.PLOT_FILE), "rb") as f:
    assert f.read(4) == b"\x89PNG"
