"""Head health: flexible heads that never use the end-date option, and breaks in the min-period order.

A flexible head k < N-1 (min period k + 1 < N) may finish before its last bar and stop its
benchmark there. A head is *collapsed* when it almost never does so although the same
scenario's neighbouring heads (during training) or the optional-stopping rule (at evaluation)
do it often: it then gives up the end-date option and loses its gain. Head N-1 (min period N)
and the fixed head N gain nothing from finishing early and are never judged.

A shorter min period leaves every option of a longer one open, so a flexible head's mean
improvement should not fall more than noise below the next longer min period's: a
*monotonicity break* at head k means mean_bps[k] < mean_bps[k + 1] - `break_bps`.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from lemjax import scenarios

COLLAPSED_BELOW = 0.05  # a head ending fewer orders early than this share ...
ACTIVE_ABOVE = 0.30  # ... while its reference ends at least this share early is collapsed
BREAK_BPS = 3.0  # monotonicity tolerance between neighbouring min periods (bps)
REFERENCE = "optional_stopping"


def collapsed_against_neighbours(
  early_KxS, *, low: float = COLLAPSED_BELOW, high: float = ACTIVE_ABOVE
) -> np.ndarray:
  """Heads that end < `low` of orders early while a flexible neighbour (k +- 1) ends >= `high`.

  Args:
    early_KxS: share of orders ended early per head (K = N + 1) and scenario.

  Returns:
    bool [K, S]; only heads k < N-1 can be flagged.
  """
  early = np.asarray(early_KxS, np.float64)
  if early.ndim != 2 or early.shape[1] != scenarios.NUM_SCENARIOS or early.shape[0] < 3:
    raise ValueError(f"early_KxS.shape={early.shape}, expected [K >= 3, {scenarios.NUM_SCENARIOS}]")
  judged = early.shape[0] - 2  # heads 0 .. N-2 can gain from ending early
  active = np.zeros_like(early, bool)
  active[:judged] = early[:judged] >= high
  neighbour = np.zeros_like(active)
  neighbour[1:] |= active[:-1]
  neighbour[:-1] |= active[1:]
  out = np.zeros_like(active)
  out[:judged] = (early[:judged] < low) & neighbour[:judged]
  return out


def collapse_warnings(early_KxS) -> list[str]:
  """One line per collapsed head (see `collapsed_against_neighbours`), naming head and scenario."""
  early = np.asarray(early_KxS, np.float64)
  lines = []
  for k, s in zip(*np.nonzero(collapsed_against_neighbours(early))):
    near = {j: early[j, s] for j in (k - 1, k + 1) if 0 <= j < early.shape[0] - 2}
    near_text = ", ".join(f"head {j}: {v:.0%}" for j, v in near.items())
    lines.append(
      f"collapsed head {k} (min period {k + 1}) {scenarios.scenario_name(int(s))}: "
      f"ends {early[k, s]:.1%} of validation orders early ({near_text})"
    )
  return lines


def head_health(
  orders: pl.DataFrame,
  *,
  reference: str = REFERENCE,
  low: float = COLLAPSED_BELOW,
  high: float = ACTIVE_ABOVE,
  break_bps: float = BREAK_BPS,
) -> pl.DataFrame:
  """Per strategy, flexible head and scenario: early-end share, mean improvement and flags.

  Args:
    orders: evaluation's orders.parquet frame (columns strategy, head, side, benchmark, target,
      ended_early, improvement_bps; the fixed head, head N, is dropped).
    reference: the strategy whose early-end share defines a collapse.
    low, high: collapsed = ends < `low` early where `reference` ends >= `high` (heads < N-1).
    break_bps: monotonicity_break = mean_bps below the next longer min period's by > break_bps.

  Returns:
    polars frame: strategy, head, scenario, ended_early_share, mean_bps, collapsed,
    monotonicity_break (one row per strategy x flexible head x scenario).
  """
  need = {"strategy", "head", "side", "benchmark", "target", "ended_early", "improvement_bps"}
  missing = need - set(orders.columns)
  if missing:
    raise ValueError(f"orders frame lacks columns {sorted(missing)}")
  n = int(orders["head"].max())  # the fixed head is head N
  cells = (
    orders.filter(pl.col("head") < n)
    .with_columns(scenario=pl.concat_str(["side", "benchmark", "target"], separator="/"))
    .group_by("strategy", "head", "scenario")
    .agg(
      ended_early_share=pl.col("ended_early").cast(pl.Float64).mean(),
      mean_bps=pl.col("improvement_bps").mean(),
    )
    .sort("strategy", "scenario", "head")
  )
  ref = cells.filter(pl.col("strategy") == reference).select(
    "head", "scenario", ref_share=pl.col("ended_early_share")
  )
  if ref.is_empty():
    raise ValueError(f"orders frame holds no rows of the reference strategy {reference!r}")
  cells = cells.join(ref, on=["head", "scenario"], how="left")
  longer = pl.col("mean_bps").shift(-1).over("strategy", "scenario", order_by="head")
  return cells.with_columns(
    collapsed=(pl.col("head") < n - 1)
    & (pl.col("ended_early_share") < low)
    & (pl.col("ref_share") >= high),
    monotonicity_break=(pl.col("mean_bps") < longer - break_bps).fill_null(False),
  ).select(
    "strategy",
    "head",
    "scenario",
    "ended_early_share",
    "mean_bps",
    "collapsed",
    "monotonicity_break",
  )


def summary_line(health: pl.DataFrame, strategy: str = "LEM") -> str:
  """'LEM: 3 collapsed cells (...), 1 monotonicity break (...)' for logs and reports."""
  rows = health.filter(pl.col("strategy") == strategy)
  coll = rows.filter("collapsed")
  brk = rows.filter("monotonicity_break")
  name = lambda r: f"{r['scenario']} k={r['head']}"
  return (
    f"{strategy}: {coll.height} collapsed cells ({'; '.join(map(name, coll.iter_rows(named=True)))}), "
    f"{brk.height} monotonicity breaks > {BREAK_BPS:g} bps "
    f"({'; '.join(map(name, brk.iter_rows(named=True)))})"
  )
