"""Markdown tables of the evaluation report, built from per-strategy statistics ([K, S] arrays)."""

from __future__ import annotations

import numpy as np
import polars as pl

from lemjax import diagnostics
from lemjax import scenarios

SIGN_CONVENTION = (
  "Sign convention: improvement = side x (1 - P / benchmark) x 1e4 bps, side +1 for "
  "buys and -1 for sells, so **positive is better than the benchmark** for both sides."
)
STAT_COLUMNS = (
  ("mean", "mean_bps"),
  ("std", "std_bps"),
  ("median", "median_bps"),
  ("P5", "p5_bps"),
  ("P95", "p95_bps"),
  ("Q25", "q25_bps"),
  ("Q75", "q75_bps"),
)
TRACKING_COLUMNS = (
  ("mean", "mean_bps"),
  ("std", "std_bps"),
  ("MAD", "mad_bps"),
  ("RMSE", "rmse_bps"),
)


def head_label(k: int, n_ahead: int) -> str:
  return f"fixed ({n_ahead})" if k == n_ahead else str(k + 1)


def ci(mean: float, lo: float, hi: float) -> str:
  return f"{mean:+.2f} [{lo:+.2f}, {hi:+.2f}]"


def md_table(header: list, rows: list) -> str:
  """A GitHub-flavoured markdown table."""
  lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
  return "\n".join(lines)


def clusters_note(st: dict) -> str:
  """The effective sample behind an interval table: start-time clusters and blocks per resample."""
  return (
    f"Intervals: 95% moving-block bootstrap over {int(st['n_clusters'])} start-time clusters "
    f"({int(st['n_blocks'])} blocks per resample), orders that start together resampled together."
  )


def paper_table(stats: dict, s_buy: int, s_sell: int, n_ahead: int) -> str:
  """Paper layout: one row per min period; mean, std, median, P5, P95, Q25, Q75 for buy and sell."""
  header = (
    ["min period"] + [f"buy {c}" for c, _ in STAT_COLUMNS] + [f"sell {c}" for c, _ in STAT_COLUMNS]
  )
  rows = []
  for k in range(n_ahead + 1):
    cells = [f"{stats[key][k, s]:+.2f}" for s in (s_buy, s_sell) for _, key in STAT_COLUMNS]
    rows.append([head_label(k, n_ahead)] + cells)
  return md_table(header, rows)


def strategy_table(all_stats: dict, k: int, s_buy: int, s_sell: int) -> str:
  """One row per strategy at head k; the same statistics, buy and sell."""
  header = (
    ["strategy"] + [f"buy {c}" for c, _ in STAT_COLUMNS] + [f"sell {c}" for c, _ in STAT_COLUMNS]
  )
  rows = [
    [name] + [f"{st[key][k, s]:+.2f}" for s in (s_buy, s_sell) for _, key in STAT_COLUMNS]
    for name, st in all_stats.items()
  ]
  return md_table(header, rows)


def headline_table(all_stats: dict, s_buy: int, s_sell: int, n_ahead: int) -> str:
  """Mean with its 95% interval at min period 1 and at the fixed head, buy and sell."""
  header = ["strategy", "min period 1 buy", "min period 1 sell", "fixed buy", "fixed sell"]
  rows = []
  for name, st in all_stats.items():
    cells = [
      ci(st["mean_bps"][k, s], st["ci_lo"][k, s], st["ci_hi"][k, s])
      for k in (0, n_ahead)
      for s in (s_buy, s_sell)
    ]
    rows.append([name] + cells)
  return md_table(header, rows)


def tracking_table(all_stats: dict, shortfall: dict, k: int, s_buy: int, s_sell: int) -> str:
  """Tracking at head k: mean, std, mean absolute deviation and RMSE of the improvement vs the
  benchmark, and the implementation shortfall vs the arrival price (mean and std), buy and sell."""
  header = ["strategy"] + [
    f"{side} {c}"
    for side in ("buy", "sell")
    for c in [c for c, _ in TRACKING_COLUMNS] + ["IS mean", "IS std"]
  ]
  rows = []
  for name, st in all_stats.items():
    cells = []
    for s in (s_buy, s_sell):
      cells += [f"{st[key][k, s]:+.2f}" for _, key in TRACKING_COLUMNS]
      cells += [
        f"{shortfall[name]['mean_bps'][k, s]:+.2f}",
        f"{shortfall[name]['std_bps'][k, s]:.2f}",
      ]
    rows.append([name] + cells)
  return md_table(header, rows)


def paired_table(paired: dict, s_buy: int, s_sell: int, n_ahead: int) -> str:
  """LEM minus each baseline per min period, with 95% clustered bootstrap intervals."""
  header = ["min period"] + [f"vs {b} {side}" for b in paired for side in ("buy", "sell")]
  rows = []
  for k in range(n_ahead + 1):
    rows.append(
      [head_label(k, n_ahead)]
      + [
        ci(d["mean"][k, s], d["ci_lo"][k, s], d["ci_hi"][k, s])
        for d in paired.values()
        for s in (s_buy, s_sell)
      ]
    )
  return md_table(header, rows)


def choice_table(
  choice_KxS: np.ndarray, val_means: dict, s_buy: int, s_sell: int, n_ahead: int
) -> str:
  """Which causal baseline is "best" per min period (chosen on validation orders), and its score."""
  header = ["min period", "buy: chosen (val mean bps)", "sell: chosen (val mean bps)"]
  rows = [
    [head_label(k, n_ahead)]
    + [
      f"{choice_KxS[k, s]} ({val_means[str(choice_KxS[k, s])][k, s]:+.2f})" for s in (s_buy, s_sell)
    ]
    for k in range(n_ahead + 1)
  ]
  return md_table(header, rows)


def early_table(all_stats: dict, s_buy: int, s_sell: int, n_ahead: int) -> str:
  """Share of orders that ended before their last bar (buy / sell)."""
  header = ["min period"] + list(all_stats)
  rows = [
    [head_label(k, n_ahead)]
    + [
      f"{st['ended_early'][k, s_buy]:.0%} / {st['ended_early'][k, s_sell]:.0%}"
      for st in all_stats.values()
    ]
    for k in range(n_ahead + 1)
  ]
  return md_table(header, rows)


def regime_table(
  regime_stats: list, regime_paired: list, names: tuple, k: int, s_buy: int, s_sell: int
) -> str:
  """Mean [interval] per volatility tercile (columns) and strategy (rows), buy / sell at head k."""
  header = ["strategy"] + [f"{name} {side}" for name in names for side in ("buy", "sell")]
  rows = [
    ["orders / clusters"]
    + [
      f"{int(st['LEM']['n'][k, s_buy])} / {int(st['LEM']['n_clusters'])}"
      for st in regime_stats
      for _ in (0, 1)
    ]
  ]
  for strategy in regime_stats[0]:
    rows.append(
      [strategy]
      + [
        ci(st[strategy]["mean_bps"][k, s], st[strategy]["ci_lo"][k, s], st[strategy]["ci_hi"][k, s])
        for st in regime_stats
        for s in (s_buy, s_sell)
      ]
    )
  for baseline in regime_paired[0]:
    rows.append(
      [f"LEM minus {baseline}"]
      + [
        ci(p[baseline]["mean"][k, s], p[baseline]["ci_lo"][k, s], p[baseline]["ci_hi"][k, s])
        for p in regime_paired
        for s in (s_buy, s_sell)
      ]
    )
  return md_table(header, rows)


def per_asset_table(frame: pl.DataFrame, k: int, s_buy: int, s_sell: int, strategies: tuple) -> str:
  """Mean [interval] per asset at head k for the named strategies (blocks of the asset's orders)."""
  names = (scenarios.scenario_name(s_buy), scenarios.scenario_name(s_sell))
  sub = frame.filter(
    (pl.col("head") == k)
    & pl.col("scenario").is_in(names)
    & pl.col("strategy").is_in(list(strategies))
  )
  header = ["asset", "orders"] + [f"{s} {side}" for s in strategies for side in ("buy", "sell")]
  rows = []
  for asset in sub["asset"].unique(maintain_order=True).to_list():
    a = sub.filter(pl.col("asset") == asset)
    cells = []
    for strat in strategies:
      for scen in names:
        r = a.filter((pl.col("strategy") == strat) & (pl.col("scenario") == scen)).row(
          0, named=True
        )
        cells.append(ci(r["mean_bps"], r["ci_lo"], r["ci_hi"]))
    rows.append([asset, a["n"][0]] + cells)
  return md_table(header, rows)


def break_calibration_line(health: pl.DataFrame) -> str:
  """One sentence: the monotonicity breaks flagged, those chance alone would flag and those
  that survive Holm's correction (`diagnostics.break_calibration`)."""
  c = diagnostics.health_counts(health)
  return (
    f"Monotonicity breaks flagged: {c['breaks']} of {c['tested_pairs']} tested neighbour pairs "
    f"(pairs of differing heads); a model with no true gap would show {c['chance_breaks']:.2f} "
    f"by chance alone (normal approximation from each pair's interval); breaks that survive "
    f"Holm's correction over the pairs: {c['holm_breaks']}."
  )


def health_table(health: pl.DataFrame) -> str:
  """Flagged heads only (collapsed or monotonicity break), or a line saying there are none."""
  flagged = health.filter(pl.col("collapsed") | pl.col("monotonicity_break"))
  if flagged.height == 0:
    return "No flexible head is collapsed or breaks monotonicity."
  header = [
    "min period",
    "scenario",
    "ended early",
    "reference ended early",
    "mean bps",
    "minus next head [interval]",
    "flag",
  ]
  rows = [
    [
      r["min_period"],
      r["scenario"],
      f"{r['ended_early']:.0%}",
      f"{r['reference_early']:.0%}",
      f"{r['mean_bps']:+.2f}",
      "n/a"
      if np.isnan(r["minus_next_bps"])
      else ci(r["minus_next_bps"], r["minus_next_lo"], r["minus_next_hi"]),
      ", ".join(
        f
        for f, on in (
          ("collapsed", r["collapsed"]),
          ("monotonicity break", r["monotonicity_break"]),
        )
        if on
      ),
    ]
    for r in flagged.iter_rows(named=True)
  ]
  return md_table(header, rows)
