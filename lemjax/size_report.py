"""Net improvement by order size: the LEM and every baseline re-run at each size bucket (costs on).

Each bucket is a size in `costs.size_buckets` (fractions of the expected volume over the order's N
bars). Every test order is given that size: the participation cap tightens r_max, the LEM reads the
size, the baselines are refitted and every strategy pays the same costs (evaluate.strategies_at_size).
Intervals are the report's: the moving-block bootstrap over start-time clusters (lemjax/stats.py).
The row `LEM minus best_causal` is the paired difference on the same orders (its interval is the
paired one), and size_study_score.csv holds the study score (summary.study_score: LEM minus the
best causal baseline averaged over min periods 1..N-1 and every scenario) at each size.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from lemjax import costs as costs_lib  # noqa: E402
from lemjax import markdown  # noqa: E402
from lemjax import plots  # noqa: E402
from lemjax import scenarios  # noqa: E402
from lemjax import stats as stats_lib  # noqa: E402
from lemjax import summary  # noqa: E402

CSV_FILE = "size_buckets.csv"
SCORE_FILE = "size_study_score.csv"
PAIRED = "LEM minus best_causal"
MD_FILE = "size_buckets.md"
PLOT_FILE = "net_improvement_vs_size.png"


def bucket_stats(imp_by_size: dict, origin_B, cfg) -> pl.DataFrame:
  """Mean net improvement with clustered 95% intervals per size, strategy, head and scenario.

  Args:
    imp_by_size: {size: {strategy: [B, K, S] net improvement in bps}}, the same orders throughout.
    origin_B: start time of each order (the clusters).
    cfg: EvalConfig (bootstrap, block_length, seed).

  Returns:
    Long frame: size, strategy, head, scenario, mean_bps, ci_lo, ci_hi, n_orders, n_clusters.
  """
  group_B, g = stats_lib.start_groups(origin_B)
  block = stats_lib.fitted_block_length(cfg.block_length, g)
  rows = []
  for size, per_strategy in imp_by_size.items():
    for name, imp_BxKxS in per_strategy.items():
      imp = np.asarray(imp_BxKxS, np.float64)
      b, k, s = imp.shape
      ci = stats_lib.cluster_interval(
        imp.reshape(b, k * s), group_B, block_length=block, n_boot=cfg.bootstrap, seed=cfg.seed,
        level=0.95,
      )  # fmt: skip
      heads, scens = np.divmod(np.arange(k * s), s)
      rows.append(
        pl.DataFrame(
          {
            "size": np.full(k * s, float(size)),
            "strategy": [name] * (k * s),
            "head": heads,
            "scenario": [scenarios.scenario_name(int(i)) for i in scens],
            "mean_bps": ci["mean"],
            "ci_lo": ci["ci_lo"],
            "ci_hi": ci["ci_hi"],
            "n_orders": np.full(k * s, b),
            "n_clusters": np.full(k * s, int(ci["n_clusters"])),
          }
        )
      )
  if not rows:
    raise ValueError("imp_by_size holds no size bucket")
  return pl.concat(rows)


def markdown_table(frame: pl.DataFrame, head: int, scenario: str) -> str:
  """Rows: strategies; columns: sizes (as % of horizon volume); cells: mean [95% interval]."""
  sel = frame.filter((pl.col("head") == head) & (pl.col("scenario") == scenario))
  sizes = sorted(set(sel["size"].to_list()))
  names = list(dict.fromkeys(sel["strategy"].to_list()))
  rows = []
  for name in names:
    cells = []
    for size in sizes:
      r = sel.filter((pl.col("strategy") == name) & (pl.col("size") == size)).row(0, named=True)
      cells.append(markdown.ci(r["mean_bps"], r["ci_lo"], r["ci_hi"]))
    rows.append([name, *cells])
  return markdown.md_table(["strategy", *(f"{100 * q:g}%" for q in sizes)], rows)


def plot(path: str, frame: pl.DataFrame, head: int, scenarios_shown: tuple[str, str]) -> str:
  """Net improvement (with its interval) against order size, one line per causal strategy."""
  fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
  for ax, scen in zip(axes, scenarios_shown):
    sel = frame.filter((pl.col("head") == head) & (pl.col("scenario") == scen))
    for name in dict.fromkeys(sel["strategy"].to_list()):
      if name in ("oracle", PAIRED):
        continue
      r = sel.filter(pl.col("strategy") == name).sort("size")
      mean, lo, hi = (r[c].to_numpy() for c in ("mean_bps", "ci_lo", "ci_hi"))
      size = 100 * r["size"].to_numpy()
      yerr = np.maximum([mean - lo, hi - mean], 0.0)  # a constant column: rounding only
      ax.errorbar(size, mean, yerr=yerr, marker="o", ms=3, capsize=2, label=name)
    ax.set_xscale("log")
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set_title(f"{scen}, min period {head + 1} (oracle omitted)")
    ax.set_xlabel("order size (% of expected volume over N bars)")
  return plots.save_panels(fig, axes, "mean net improvement (bps)", path)


def write(outdir: str, cfgs: dict, test: dict, results_at: Callable, out: dict) -> dict:
  """Runs every size bucket, writes the CSV, the plot and a markdown section appended to report.md.

  Args:
    outdir: the report folder.
    cfgs: resolved sections (eval, costs, model).
    test: the test orders (origin for the clusters).
    results_at: size -> {strategy: summary} (evaluate.strategies_at_size's summaries).
    out: evaluate's output dict (its "report" path gets the section).

  Returns:
    {"csv", "markdown", "plot"} paths.
  """
  ecfg, cost, n = cfgs["eval"], cfgs["costs"], cfgs["model"].n_ahead
  group_B, _ = stats_lib.start_groups(test["origin"])
  imp, scores = {}, {}
  for size in cost.size_buckets:
    results = results_at(size)
    imp[size] = {name: res["improvement_bps"] for name, res in results.items()}
    imp[size][PAIRED] = imp[size]["LEM"] - imp[size]["best_causal"]
    scores[size] = summary.study_score(results, group_B, ecfg, n)
  frame = bucket_stats(imp, test["origin"], ecfg)
  keys = (("csv", CSV_FILE), ("markdown", MD_FILE), ("score", SCORE_FILE))
  paths = {k: os.path.join(outdir, f) for k, f in keys}
  frame.write_csv(paths["csv"])
  score_frame(scores).write_csv(paths["score"])
  head = ecfg.min_period - 1
  shown = tuple(
    scenarios.scenario_name(scenarios.scenario_index(side, ecfg.benchmark, ecfg.target))
    for side in ("buy", "sell")
  )
  paths["plot"] = plot(os.path.join(outdir, PLOT_FILE), frame, head, shown)
  text = section(frame, head, n, shown, cost, scores)
  with open(paths["markdown"], "w") as f:
    f.write(text)
  with open(out["report"], "a") as f:
    f.write("\n" + text)
  return paths


def score_frame(scores: dict) -> pl.DataFrame:
  """{size: summary.study_score dict} -> one row per size (the study score net of costs)."""
  return pl.DataFrame(
    [
      {
        "size": float(size),
        "lem_minus_best_causal_bps": d["mean_bps"],
        "ci_lo": d["ci_lo"],
        "ci_hi": d["ci_hi"],
        "min_periods": d["min_periods"],
        "n_orders": d["n"],
        "n_clusters": d["n_clusters"],
      }
      for size, d in scores.items()
    ]
  )


def section(frame: pl.DataFrame, head: int, n_ahead: int, shown, cost, scores=None) -> str:
  """The report section: the study score by size (when given), then one size table per side for
  the report's min period and the fixed head."""
  n_clusters = int(frame["n_clusters"][0])
  lines = [
    "## Net improvement by order size",
    "",
    f"Costs: fee {cost.fee_bps:g} bps + {costs_lib.half_spread_text(cost)} + "
    f"{cost.impact_eta:g} x lookback vol x sqrt(child / bar volume); participation cap "
    f"{cost.participation_cap:g} of each bar's expected volume. Sizes are fractions of the "
    "expected volume over the order's N bars; every strategy is refitted and scored at each size. "
    f"Mean net improvement in bps [95% interval over {n_clusters} start-time clusters].",
    "",
  ]
  if scores:
    sizes = sorted(scores)
    cells = [
      markdown.ci(scores[q]["mean_bps"], scores[q]["ci_lo"], scores[q]["ci_hi"]) for q in sizes
    ]
    lines += [
      f"Study score by size ({SCORE_FILE}): LEM minus the best causal baseline, per order averaged "
      f"over min periods {scores[sizes[0]]['min_periods']} and every scenario, paired on the same "
      "orders.",
      "",
      markdown.md_table(
        ["", *(f"{100 * q:g}%" for q in sizes)], [["LEM minus best_causal", *cells]]
      ),
      "",
    ]
  for k in (head, n_ahead):
    for scen in shown:
      label = markdown.head_label(k, n_ahead)
      lines += [f"### {scen}, min period {label}", "", markdown_table(frame, k, scen), ""]
  lines += [f"![net improvement vs size]({PLOT_FILE})", ""]
  return "\n".join(lines)
