"""Diagnostics: head health (in training and evaluation), volatility regimes, the null-test verdict.

Every interval here is the clustered (start-time block) bootstrap of `lemjax.stats`, so orders
that start together and share a market move are never counted as independent evidence.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import scipy.stats

from lemjax import scenarios
from lemjax import stats as stats_lib

# A head "never ends early" below this share while a reference ends at least REFERENCE_EARLY.
COLLAPSED_EARLY = 0.05
REFERENCE_EARLY = 0.30
# A head scoring below the next one by more than this (and beyond noise) breaks monotonicity.
MONOTONE_TOLERANCE_BPS = 3.0


def _z_pvalue(mean, lo, hi, level: float) -> np.ndarray:
  """One-sided p-value of mean > 0 from a (clustered) interval, via its implied standard error."""
  se = np.maximum(
    (np.asarray(hi) - np.asarray(lo)) / (2.0 * scipy.stats.norm.ppf(0.5 + level / 2)), 1e-12
  )
  return scipy.stats.norm.sf(np.asarray(mean) / se)


def holm_reject(pvalues: np.ndarray, alpha: float = 0.05) -> np.ndarray:
  """Holm's step-down test over a family of p-values: which hypotheses are rejected (bool)."""
  p = np.asarray(pvalues, np.float64).ravel()
  order = np.argsort(p, kind="stable")
  thresholds = alpha / (p.size - np.arange(p.size))
  passed = p[order] <= thresholds
  n_reject = p.size if passed.all() else int(np.argmin(passed))
  reject = np.zeros(p.size, bool)
  reject[order[:n_reject]] = True
  return reject.reshape(np.shape(pvalues))


# --- Head health ----------------------------------------------------------------------------------


def head_health(
  imp_BxKxS, early_BxKxS, reference_early_KxS, group_B, *, block_length: int, n_boot: int, seed: int
) -> pl.DataFrame:
  """Flags flexible heads that never end early or score below the next head beyond noise.

  A head with minimum k+1 has every option of the head with minimum k+2, so its mean
  improvement should not be lower beyond noise (`monotonicity_break`: the clustered 95% interval
  of head k minus head k+1 lies below 0), and a head should not stay on its full horizon where
  a reference strategy (e.g. the best causal baseline) ends orders early (`collapsed`: ends fewer
  than 5% early while the reference ends at least 30%).

  Args:
    imp_BxKxS, early_BxKxS: the strategy's per-order improvement (bps) and ended-early flags.
    reference_early_KxS: share of orders the reference strategy ends early.
    group_B: start-time group of every order (`stats.start_groups`).
    block_length, n_boot, seed: bootstrap settings.

  Returns:
    one row per flexible head x scenario: head, min_period, scenario, ended_early, reference_early,
    mean_bps, minus_next_bps, minus_next_lo, minus_next_hi, collapsed, monotonicity_break.
  """
  imp = np.asarray(imp_BxKxS, np.float64)
  early_KxS = np.asarray(early_BxKxS, np.float64).mean(0)
  n = imp.shape[1] - 1
  flex = n  # heads 0..n-1 are flexible
  # Head k minus head k+1 for k = 0..n-2 (the last flexible head has no flexible successor).
  diff = stats_lib.paired_difference(
    imp[:, : flex - 1], imp[:, 1:flex], group_B, block_length=block_length, n_boot=n_boot, seed=seed
  )
  rows = []
  for k in range(flex):
    for s in range(imp.shape[2]):
      has_next = k < flex - 1
      lo = float(diff["ci_lo"][k, s]) if has_next else math.nan
      hi = float(diff["ci_hi"][k, s]) if has_next else math.nan
      rows.append(
        {
          "head": k,
          "min_period": k + 1,
          "scenario": scenarios.scenario_name(s),
          "ended_early": float(early_KxS[k, s]),
          "reference_early": float(reference_early_KxS[k, s]),
          "mean_bps": float(imp[:, k, s].mean()),
          "minus_next_bps": float(diff["mean"][k, s]) if has_next else math.nan,
          "minus_next_lo": lo,
          "minus_next_hi": hi,
          "collapsed": bool(
            early_KxS[k, s] < COLLAPSED_EARLY and reference_early_KxS[k, s] >= REFERENCE_EARLY
          ),
          "monotonicity_break": bool(
            has_next and hi < 0.0 and diff["mean"][k, s] < -MONOTONE_TOLERANCE_BPS
          ),
        }
      )
  return pl.DataFrame(rows)


def health_rows(health: pl.DataFrame, heads: str = "served") -> pl.DataFrame:
  """The rows of a head_health.csv frame for one set of heads ("served" or "own"); a frame
  without a `heads` column (a report without served heads) counts as served."""
  if "heads" not in health.columns:
    health = health.with_columns(pl.lit("served").alias("heads"))
  return health.filter(pl.col("heads") == heads)


def break_calibration(rows: pl.DataFrame, level: float = 0.95) -> dict:
  """How many monotonicity breaks chance alone would flag, and which flags survive Holm.

  A break is judged pair by pair (head k against head k + 1, each scenario) with an unadjusted
  interval, so over the ~70-100 pairs of a report a model with no true gap anywhere still shows
  some. Per tested pair (a nonzero interval: two served heads that differ), with the standard
  error `se` implied by its clustered interval and a true gap of 0, the estimated gap is flagged
  when it is below -max(tolerance, z * se); under a normal approximation that has probability
  Phi(-max(tolerance, z * se) / se). Their sum is `chance_breaks`. `holm_breaks` counts the
  flagged pairs whose one-sided p-value of "head k scores below head k + 1" Holm's step-down test
  over the tested pairs still rejects at 1 - level.

  Args:
    rows: head_health rows of one set of heads (`health_rows(...)`).
    level: the intervals' coverage (head_health's clustered 95% interval).

  Returns:
    {"tested_pairs", "chance_breaks", "holm_breaks"}.
  """
  pairs = rows.filter(
    pl.col("minus_next_bps").is_not_nan() & (pl.col("minus_next_hi") > pl.col("minus_next_lo"))
  )
  if pairs.height == 0:
    return {"tested_pairs": 0, "chance_breaks": 0.0, "holm_breaks": 0}
  mean, lo, hi = (pairs[c].to_numpy() for c in ("minus_next_bps", "minus_next_lo", "minus_next_hi"))
  z = scipy.stats.norm.ppf(0.5 + level / 2)
  se = (hi - lo) / (2.0 * z)
  chance = scipy.stats.norm.cdf(-np.maximum(MONOTONE_TOLERANCE_BPS, z * se) / se).sum()
  below = holm_reject(scipy.stats.norm.sf(-mean / se), alpha=1.0 - level)  # p of "k below k + 1"
  return {
    "tested_pairs": pairs.height,
    "chance_breaks": float(chance),
    "holm_breaks": int((below & pairs["monotonicity_break"].to_numpy()).sum()),
  }


def health_counts(rows: pl.DataFrame) -> dict:
  """Collapsed cells, monotonicity breaks, the worst gap to the next larger minimum (bps; None
  without one) and the breaks' chance calibration (`break_calibration`) among head_health rows,
  e.g. `health_rows(...)`."""
  worst = rows["minus_next_bps"].drop_nans().drop_nulls().min()
  return {
    "collapsed": int(rows["collapsed"].sum()),
    "breaks": int(rows["monotonicity_break"].sum()),
    "worst_minus_next_bps": None if worst is None else float(worst),
    **break_calibration(rows),
  }


# --- During training: a head that stops ending early next to heads that do -------------------


def collapsed_against_neighbours(
  early_KxS, *, low: float = COLLAPSED_EARLY, high: float = REFERENCE_EARLY
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


# --- Regimes --------------------------------------------------------------------------------------


def tercile_edges(reference_vol_B) -> np.ndarray:
  """The 1/3 and 2/3 quantiles of lookback volatility (from training orders: no test-set choice)."""
  vol = np.asarray(reference_vol_B, np.float64)
  vol = vol[np.isfinite(vol)]
  if vol.size < 3:
    raise ValueError(f"need at least 3 finite lookback volatilities for terciles, got {vol.size}")
  return np.quantile(vol, [1 / 3, 2 / 3])


def regime_of(vol_B, edges) -> np.ndarray:
  """Tercile index (0 calm, 1 middle, 2 volatile) of every order."""
  return np.searchsorted(np.asarray(edges), np.asarray(vol_B, np.float64), side="right")


REGIMES = ("calm", "middle", "volatile")


# --- Null test ------------------------------------------------------------------------------------


def null_test_verdict(
  best_paired: dict, lem_stats: dict, n_ahead: int, *, level: float = 0.95, alpha: float = 0.05
) -> dict:
  """SPEC section 7 on a martingale market: is any gain beyond what a causal rule can earn?

  (a) flexible heads: LEM minus the best causal baseline must not be significantly positive at
  any min period (every side, benchmark and target); (b) the fixed head must not be
  significantly better than the best causal fixed-duration schedule either. (b) is tested
  against that baseline rather than against 0 because a causal schedule can beat its benchmark
  deterministically: a notional order's price is a harmonic mean, which lies below the TWAP of
  the same bars by Jensen's inequality (about 0.4 bps for the uniform schedule on the smoke
  martingale). The fixed head against its benchmark is still shown (`fixed_rows`).

  Each row shows its clustered interval; "significant" is decided by Holm's step-down test over
  the whole family of rows at family-wise level `alpha`, with one-sided p-values from each
  interval's implied standard error, so a causal model is not failed by one of 104 intervals
  missing 0 by chance, while a leak (which moves many cells by many standard errors) is caught.

  Args:
    best_paired: paired difference LEM minus best causal baseline, dict of [K, S] arrays (mean,
      ci_lo, ci_hi) and n_clusters.
    lem_stats: the LEM's summary (mean_bps, ci_lo, ci_hi as [K, S]), for `fixed_rows`.
    n_ahead: N (head N is the fixed head).

  Returns:
    dict: rows (test, min_period, scenario, mean_bps, ci_lo, ci_hi, p_value, significant),
    passed, fixed_rows (the fixed head vs its benchmark), alpha, level, n_clusters.
  """
  rows, fixed_rows = [], []
  for k in range(n_ahead + 1):
    for s in range(scenarios.NUM_SCENARIOS):
      mean, lo, hi = (float(best_paired[key][k, s]) for key in ("mean", "ci_lo", "ci_hi"))
      label = k + 1 if k < n_ahead else f"fixed ({n_ahead})"
      rows.append(
        {
          "test": "LEM minus best causal baseline",
          "min_period": label,
          "scenario": scenarios.scenario_name(s),
          "mean_bps": mean,
          "ci_lo": lo,
          "ci_hi": hi,
          "p_value": float(_z_pvalue(mean, lo, hi, level)),
        }
      )
  for s in range(scenarios.NUM_SCENARIOS):
    fixed_rows.append(
      {
        "scenario": scenarios.scenario_name(s),
        **{
          key: float(lem_stats[src][n_ahead, s])
          for key, src in (("mean_bps", "mean_bps"), ("ci_lo", "ci_lo"), ("ci_hi", "ci_hi"))
        },
      }
    )
  reject = holm_reject(np.array([r["p_value"] for r in rows]), alpha)
  for row, r in zip(rows, reject):
    row["significant"] = bool(r)
  return {
    "rows": rows,
    "passed": not reject.any(),
    "fixed_rows": fixed_rows,
    "alpha": alpha,
    "level": level,
    "n_clusters": int(best_paired.get("n_clusters", 0)),
  }


def null_test_markdown(verdict: dict) -> str:
  """null_test.md: the verdict first, then the significant rows, every row, the fixed head."""
  significant = [r for r in verdict["rows"] if r["significant"]]
  lines = [
    "# Null test (SPEC section 7) on a synthetic martingale",
    "",
    "Positive is better than the benchmark for both sides. On a martingale a causal model can "
    "earn only the end-date option, which the best causal stopping rule also earns.",
    "",
    "- Every head (flexible min periods and the fixed duration): LEM minus the best causal "
    "baseline (chosen on validation orders) must not be significantly positive.",
    f"- Intervals: {verdict['level']:.0%} clustered bootstrap over "
    f"{verdict['n_clusters']} start-time clusters; significance by Holm's step-down test "
    f"over all {len(verdict['rows'])} rows at family-wise level {verdict['alpha']}.",
    "",
    f"**Verdict: {'PASS' if verdict['passed'] else 'FAIL (possible leak)'}**",
    "",
  ]
  header = (
    "| test | min period | scenario | mean (bps) | interval | p | significant |\n"
    "|---|---|---|---|---|---|---|"
  )

  def fmt(r):
    return (
      f"| {r['test']} | {r['min_period']} | {r['scenario']} | {r['mean_bps']:+.2f} | "
      f"[{r['ci_lo']:+.2f}, {r['ci_hi']:+.2f}] | {r['p_value']:.3g} | "
      f"{'YES' if r['significant'] else 'no'} |"
    )

  if significant:
    lines += ["## Significant rows", "", header, *map(fmt, significant), ""]
  lines += [
    "## Fixed-duration head against its benchmark (information)",
    "",
    "Notional targets beat a TWAP or VWAP benchmark by Jensen's inequality even on a uniform "
    "schedule, so these rows are not part of the verdict.",
    "",
    "| scenario | mean (bps) | interval |",
    "|---|---|---|",
  ]
  lines += [
    f"| {r['scenario']} | {r['mean_bps']:+.2f} | [{r['ci_lo']:+.2f}, {r['ci_hi']:+.2f}] |"
    for r in verdict["fixed_rows"]
  ]
  lines += ["", "## All rows", "", header, *map(fmt, verdict["rows"])]
  return "\n".join(lines) + "\n"
