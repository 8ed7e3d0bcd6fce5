"""Tests for lemjax/health.py: collapsed heads and monotonicity breaks."""

import numpy as np
import polars as pl

from lemjax import health
from lemjax import scenarios

N = 5


def _orders(early_by_strategy: dict, imp_by_strategy: dict, orders: int = 50) -> pl.DataFrame:
  """An orders.parquet-like frame: every order of a (strategy, head, scenario) cell ends early
  with the cell's share and scores the cell's improvement."""
  rows = []
  for name, early_KxS in early_by_strategy.items():
    for k in range(N + 1):
      for s, (side, bench, target) in enumerate(scenarios.SCENARIOS):
        n_early = int(round(early_KxS[k, s] * orders))
        for i in range(orders):
          rows.append(
            {
              "strategy": name,
              "head": k,
              "side": side,
              "benchmark": bench,
              "target": target,
              "ended_early": i < n_early,
              "improvement_bps": float(imp_by_strategy[name][k, s]),
            }
          )
  return pl.DataFrame(rows)


def test_head_health_flags_collapse_against_the_stopping_rule_and_breaks():
  rule = np.full((N + 1, 8), 0.5)
  rule[N - 1 :] = 0.0  # min period N and the fixed head never stop early
  lem = rule.copy()
  lem[2, 3] = 0.0  # collapsed
  lem[1, 0] = 0.04  # collapsed (below 5%)
  lem[3, 5] = 0.06  # not collapsed
  imp = np.tile(np.linspace(20.0, 0.0, N + 1)[:, None], (1, 8))
  imp_lem = imp.copy()
  imp_lem[2, 3] = 1.0  # 14 bps below min period 4: a break at head 2
  imp_lem[0, 6] = imp_lem[1, 6] - 2.0  # within tolerance
  frame = health.head_health(
    _orders({"LEM": lem, "optional_stopping": rule}, {"LEM": imp_lem, "optional_stopping": imp})
  )
  assert frame.columns == [
    "strategy",
    "head",
    "scenario",
    "ended_early_share",
    "mean_bps",
    "collapsed",
    "monotonicity_break",
  ]
  assert frame.height == 2 * N * 8  # flexible heads only
  lem_rows = frame.filter(pl.col("strategy") == "LEM")
  flagged = {(r["head"], r["scenario"]) for r in lem_rows.filter("collapsed").iter_rows(named=True)}
  assert flagged == {(2, scenarios.scenario_name(3)), (1, scenarios.scenario_name(0))}
  breaks = {
    (r["head"], r["scenario"]) for r in lem_rows.filter("monotonicity_break").iter_rows(named=True)
  }
  assert breaks == {(2, scenarios.scenario_name(3))}
  assert not frame.filter(pl.col("strategy") == "optional_stopping")["collapsed"].any()
  assert "2 collapsed cells" in health.summary_line(frame)


def test_training_warning_names_heads_that_collapse_next_to_active_neighbours():
  early = np.zeros((N + 1, 8))
  early[: N - 1, :] = 0.5
  early[1, 2] = 0.01  # neighbours 0 and 2 active: collapsed
  early[0:3, 7] = [0.4, 0.0, 0.0]  # head 1 collapsed (head 0 active), head 2 not (1, 3 idle)
  early[3, 7] = 0.0
  flags = health.collapsed_against_neighbours(early)
  assert set(zip(*np.nonzero(flags))) == {(1, 2), (1, 7)}
  lines = health.collapse_warnings(early)
  assert len(lines) == 2 and "head 1 (min period 2) buy/twap/quantity" in lines[0]
