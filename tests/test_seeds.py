"""Seed sweeps: across-seed aggregation of each seed's report tables."""

import os

import numpy as np
import polars as pl
import pytest

from experiments import crypto_intraday
from lemjax import seeds


def _stats(mean_buy: float, mean_sell: float) -> pl.DataFrame:
  rows = []
  for strategy, shift in (("LEM", 0.0), ("uniform", -10.0)):
    for side, value in (("buy", mean_buy), ("sell", mean_sell)):
      for head in (0, 1, 2):
        rows.append(
          {
            "strategy": strategy,
            "side": side,
            "benchmark": "vwap",
            "target": "quantity",
            "head": head,
            "min_period": min(head + 1, 2),
            "fixed_duration": head == 2,
            "mean_bps": value + shift + head,
            "n_clusters": 31,
          }
        )
  return pl.DataFrame(rows)


def _paired(diff: float) -> pl.DataFrame:
  return pl.DataFrame(
    [
      {
        "baseline": "uniform",
        "side": side,
        "benchmark": "vwap",
        "target": "quantity",
        "head": head,
        "min_period": min(head + 1, 2),
        "fixed_duration": head == 2,
        "lem_minus_baseline_bps": diff,
      }
      for side in ("buy", "sell")
      for head in (0, 1, 2)
    ]
  )


def _health(n_broken: int) -> pl.DataFrame:
  """head_health.csv of a run: 2 flexible heads x 2 scenarios, served and own heads."""
  rows = []
  for which, broken in (("served", 0), ("own", n_broken)):
    for i, (head, scenario) in enumerate([(0, "a"), (0, "b"), (1, "a"), (1, "b")]):
      gap = -5.0 - i if i < broken else (float("nan") if head == 1 else 1.0)
      rows.append(
        {
          "head": head,
          "scenario": scenario,
          "minus_next_bps": gap,
          "minus_next_lo": gap - 2.0,
          "minus_next_hi": gap + 2.0,
          "collapsed": which == "own" and i == 3,
          "monotonicity_break": i < broken,
          "heads": which,
        }
      )
  return pl.DataFrame(rows)


def test_across_seeds_mean_std_and_each_seed():
  frames = {0: _stats(1.0, 2.0), 1: _stats(3.0, 2.0), 2: _stats(5.0, 2.0)}
  out = seeds.across_seeds(frames, seeds.STATS_KEYS, "mean_bps")
  row = out.filter(
    (pl.col("strategy") == "LEM") & (pl.col("side") == "buy") & (pl.col("head") == 0)
  )
  assert row["mean_bps_mean"][0] == pytest.approx(3.0)
  assert row["mean_bps_std"][0] == pytest.approx(2.0)  # std of 1, 3, 5 with ddof=1
  assert [row[f"seed{i}"][0] for i in range(3)] == [1.0, 3.0, 5.0]
  sell = out.filter((pl.col("strategy") == "LEM") & (pl.col("side") == "sell"))
  np.testing.assert_allclose(sell["mean_bps_std"].to_numpy(), 0.0)
  assert out.height == frames[0].height and set(out["seeds"].to_list()) == {3}


def test_across_seeds_rejects_seeds_with_other_rows():
  frames = {0: _stats(1.0, 2.0), 1: _stats(1.0, 2.0).filter(pl.col("head") < 2)}
  with pytest.raises(ValueError, match="seed 1 reports other rows"):
    seeds.across_seeds(frames, seeds.STATS_KEYS, "mean_bps")
  with pytest.raises(ValueError, match="lack columns"):
    seeds.across_seeds({0: _stats(1.0, 2.0).drop("mean_bps")}, seeds.STATS_KEYS, "mean_bps")


def test_write_summary_reads_sibling_runs(tmp_path):
  base = os.path.join(tmp_path, "runs", "exp")
  for seed, (buy, diff) in enumerate(((1.0, 0.5), (2.0, 1.5))):
    run = seeds.seed_workdir(base, seed)
    os.makedirs(run)
    _stats(buy, 4.0).write_csv(os.path.join(run, "stats.csv"))
    _paired(diff).write_csv(os.path.join(run, "paired_differences.csv"))
    _health(seed + 1).write_csv(os.path.join(run, "head_health.csv"))
  out = seeds.write_summary(base, [0, 1], "vwap", "quantity", 2, "exp")
  assert out["dir"] == base + "_seeds"
  for name in ("seeds.md", "seeds.csv", "seeds_paired.csv"):
    assert os.path.exists(os.path.join(out["dir"], name))
  text = out["markdown"]
  assert "+1.50 ± 0.71 (+1.00, +2.00)" in text  # LEM, min period 1, buy
  assert "LEM minus uniform" in text and "+1.00 ± 0.71 (+0.50, +1.50)" in text
  assert "over 31 start-time groups" in text
  # Two tested pairs per set; both of seed 1's own breaks lie ~5 standard errors below 0.
  assert "| 0 | served | 0 of 4 | 0 | 0.00 of 2 pairs | 0 | +1.00 |" in text
  assert "| 1 | own | 1 of 4 | 2 | 0.00 of 2 pairs | 2 | -6.00 |" in text
  # A strategy one seed has (PPO trained into seed 0's run) is named, not aggregated or lost.
  run0 = seeds.seed_workdir(base, 0)
  extra = _stats(9.0, 9.0).filter(pl.col("strategy") == "LEM").with_columns(strategy=pl.lit("PPO"))
  pl.concat([_stats(1.0, 4.0), extra]).write_csv(os.path.join(run0, "stats.csv"))
  text = seeds.write_summary(base, [0, 1], "vwap", "quantity", 2, "exp")["markdown"]
  assert "+1.50 ± 0.71 (+1.00, +2.00)" in text and "| PPO |" not in text
  assert "Not aggregated (reported by some seeds only): PPO (seeds 0)." in text
  with pytest.raises(FileNotFoundError, match="evaluate seed 2"):
    seeds.write_summary(base, [0, 1, 2], "vwap", "quantity", 2, "exp")


def test_seed_config_changes_only_the_seed():
  config = crypto_intraday.get_config("smoke")
  config.lock()
  other = seeds.seed_config(config, 7)
  assert other.seed == 7 and config.seed == 0
  assert other.model.to_dict() == config.model.to_dict()
