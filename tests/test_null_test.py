"""The null-test verdict bites: on a martingale a leaky policy fails it and a causal one passes.

The policies are plain stopping rules built here, scored by the evaluation's own code against
the best causal baseline chosen on validation orders, with clustered intervals.
"""

import dataclasses

import numpy as np
import pytest

from experiments import null_test as null_test_exp
from lemjax import baselines
from lemjax import config as config_lib
from lemjax import diagnostics
from lemjax import evaluate
from lemjax import experiment
from lemjax import stats as stats_lib


@pytest.fixture(scope="module")
def market():
  config = null_test_exp.get_config()
  train_ds, val_ds, test_ds, _, _ = experiment.load_data(config)
  ecfg = dataclasses.replace(
    config_lib.eval_config(config.eval), tune_orders=512, val_orders=512, bootstrap=1000
  )
  n = config.model.n_ahead
  test = evaluate.gather(test_ds, evaluate.select_orders(test_ds, n, ecfg))
  tune = evaluate.gather(train_ds, evaluate.spread_indices(train_ds.num_windows, ecfg.tune_orders))
  val = evaluate.gather(val_ds, evaluate.spread_indices(val_ds.num_windows, ecfg.val_orders))
  allocs, _ = evaluate.baseline_allocations(test, tune, val, test_ds.store.step_ms, ecfg)
  return test, allocs, ecfg, n


def _verdict(candidate_alloc, test, allocs, ecfg, n):
  results = evaluate.summaries(
    {"LEM": candidate_alloc, "best_causal": allocs["best_causal"]}, test["prices"], test["volumes"]
  )
  group_B, g = stats_lib.start_groups(test["origin"])
  block = stats_lib.fitted_block_length(ecfg.block_length, g)
  lem_stats, _ = stats_lib.summarize_improvement(
    results["LEM"]["improvement_bps"],
    results["LEM"]["ended_early"],
    group_B,
    block_length=block,
    n_boot=ecfg.bootstrap,
    seed=0,
  )
  paired = stats_lib.paired_difference(
    results["LEM"]["improvement_bps"],
    results["best_causal"]["improvement_bps"],
    group_B,
    block_length=block,
    n_boot=ecfg.bootstrap,
    seed=0,
  )
  return diagnostics.null_test_verdict(paired, lem_stats, n)


def test_a_policy_that_peeks_at_the_bar_it_trades_fails(market):
  test, allocs, ecfg, n = market
  # Stop at decision s when bar s's own VWAP beats the running benchmark: a one-bar look-ahead.
  peek = baselines.gains(test["prices"], test["volumes"], closes_BxN=test["prices"])
  stop = np.broadcast_to((peek > 0.0)[:, :, None, :], peek.shape[:2] + (n + 1, peek.shape[2]))
  verdict = _verdict(baselines.stopping_schedule(stop), test, allocs, ecfg, n)
  assert not verdict["passed"]
  flexible = [r for r in verdict["rows"] if r["significant"]]
  assert len(flexible) >= n  # the leak shows at many min periods, not one by chance
  assert all(r["mean_bps"] > 0 for r in flexible)
  assert min(r["mean_bps"] for r in flexible) > 1.0


def test_a_causal_policy_passes(market):
  test, allocs, ecfg, n = market
  # The same rule reading the last close (bar s-1), with an untuned threshold.
  gain = baselines.gains(test["prices"], test["volumes"], closes_BxN=test["closes"])
  stop = np.broadcast_to((gain > 10.0)[:, :, None, :], gain.shape[:2] + (n + 1, gain.shape[2]))
  verdict = _verdict(baselines.stopping_schedule(stop), test, allocs, ecfg, n)
  assert verdict["passed"], [r for r in verdict["rows"] if r["significant"]]
  assert verdict["n_clusters"] >= 30
