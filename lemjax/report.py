"""The evaluation report: markdown tables, CSV files and per-order results in the run's work directory."""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
from typing import Any

import numpy as np
import polars as pl

from lemjax import diagnostics
from lemjax import heads
from lemjax import lookahead
from lemjax import markdown
from lemjax import plots
from lemjax import scenarios
from lemjax import stats as stats_lib
from lemjax import summary

SIGN_CONVENTION = markdown.SIGN_CONVENTION
# Strategies of the paired and per-asset markdown tables (the CSV files hold every strategy).
PAIRED_IN_MARKDOWN = (
  "best_causal",
  "optional_stopping",
  "vol_stopping",
  "lsm_stopping",
  "PPO",
  "vwap_profile",
)
PER_ASSET_IN_MARKDOWN = ("LEM", "best_causal")


@dataclasses.dataclass
class Context:
  """What the report says about where its numbers come from."""

  workdir: str
  config: Any  # the experiment ConfigDict
  cfgs: dict  # frozen dataclasses per section
  source_line: str  # "Data source: ..." (folder and files, or SYNTHETIC)
  checkpoint: dict  # which, step, directory, val
  asset_names: tuple
  split_ranges: dict


def _sides(cfg) -> tuple[int, int]:
  return (
    scenarios.scenario_index("buy", cfg.benchmark, cfg.target),
    scenarios.scenario_index("sell", cfg.benchmark, cfg.target),
  )


# --- Orchestration --------------------------------------------------------------------------------


def write_all(
  ctx: Context, test: dict, allocs: dict, results: dict, fitted: dict, tune: dict
) -> dict:
  """Writes report.md, the CSV tables, orders.parquet, market.parquet and the plots.

  Args:
    ctx: where the numbers come from.
    test: the test orders (a Batch with lookback_vol).
    allocs, results: per strategy, allocations and `evaluate.summaries`.
    fitted: what the baselines fitted (thresholds, coefficients, best-baseline choice).
    tune: training orders (their lookback volatility sets the regime terciles).
  """
  ecfg, n = ctx.cfgs["eval"], ctx.cfgs["model"].n_ahead
  os.makedirs(ctx.workdir, exist_ok=True)
  path = lambda name: os.path.join(ctx.workdir, name)  # noqa: E731
  s_buy, s_sell = _sides(ecfg)
  k_sel = ecfg.min_period - 1

  # Statistics and paired differences, all from the same per-order values and the same resamples.
  group_B, _ = stats_lib.start_groups(test["origin"])
  early = {name: res["ended_early"] for name, res in results.items()}
  all_stats = summary.strategy_stats(
    {name: res["improvement_bps"] for name, res in results.items()}, early, group_B, ecfg
  )
  shortfall = summary.strategy_stats(
    {name: res["shortfall_bps"] for name, res in results.items()}, early, group_B, ecfg
  )
  paired = summary.paired_stats(results, group_B, ecfg)
  edges = diagnostics.tercile_edges(tune["lookback_vol"])
  by_regime, by_regime_paired = summary.regime_stats(results, test, edges, ecfg)
  per_asset = summary.per_asset_frame(results, test, ctx.asset_names, ecfg)
  reference = "best_causal" if "best_causal" in results else "optional_stopping"
  # Head health of the heads as served and, under a head map, of the trained heads themselves.
  lem_heads = {"served": results["LEM"]}
  if "lem_own_heads" in fitted:
    lem_heads["own"] = fitted["lem_own_heads"]
  health = pl.concat(
    [
      diagnostics.head_health(
        res["improvement_bps"],
        res["ended_early"],
        all_stats[reference]["ended_early"],
        group_B,
        block_length=stats_lib.fitted_block_length(ecfg.block_length, int(group_B.max()) + 1),
        n_boot=ecfg.bootstrap,
        seed=ecfg.seed,
      ).with_columns(pl.lit(which).alias("heads"))
      for which, res in lem_heads.items()
    ]
  )

  # CSV files.
  frames = [
    stats_lib.stats_frame(st, n).with_columns(pl.lit(name).alias("strategy"))
    for name, st in all_stats.items()
  ]
  stats_frame = pl.concat(frames)
  shortfall_frame = pl.concat(
    [
      stats_lib.stats_frame(st, n)
      .select(["side", "benchmark", "target", "head", "mean_bps", "std_bps", "ci_lo", "ci_hi"])
      .rename(
        {
          "mean_bps": "shortfall_mean_bps",
          "std_bps": "shortfall_std_bps",
          "ci_lo": "shortfall_ci_lo",
          "ci_hi": "shortfall_ci_hi",
        }
      )
      .with_columns(pl.lit(name).alias("strategy"))
      for name, st in shortfall.items()
    ]
  )
  stats_frame = stats_frame.join(
    shortfall_frame, on=["strategy", "side", "benchmark", "target", "head"]
  )
  stats_frame = stats_frame.select(
    ["strategy", *[c for c in stats_frame.columns if c != "strategy"]]
  )
  stats_frame.write_csv(path("stats.csv"))
  summary.paired_frame(paired, n).write_csv(path("paired_differences.csv"))
  per_asset.write_csv(path("per_asset.csv"))
  health.write_csv(path("head_health.csv"))
  summary.regime_frame(by_regime, by_regime_paired, edges, n).write_csv(path("regimes.csv"))
  stats_frame.filter(pl.col("head").is_in([0, n])).write_csv(path("headline.csv"))
  summary.fitted_frame(fitted, n).write_csv(path("baselines_fitted.csv"))
  summary.orders_frame(test, allocs, results, ctx.asset_names).write_parquet(path("orders.parquet"))
  summary.market_frame(test, ctx.asset_names).write_parquet(path("market.parquet"))
  score = summary.study_score(results, group_B, ecfg, n)
  score["split"] = ecfg.split
  with open(path("study_score.json"), "w") as f:
    json.dump(score, f, indent=1)

  # Plots.
  plot_files = plots.write_plots(
    ctx.workdir, all_stats, test, allocs, results, s_buy, s_sell, k_sel, ecfg.plot_orders
  )

  # report.md.
  parts = {
    "all_stats": all_stats,
    "shortfall": shortfall,
    "paired": paired,
    "per_asset": per_asset,
    "health": health,
    "study_score": score,
    "by_regime": by_regime,
    "by_regime_paired": by_regime_paired,
    "edges": edges,
    "fitted": fitted,
    "plots": plot_files,
    "reference": reference,
  }
  text = _markdown(ctx, test, s_buy, s_sell, k_sel, parts)
  with open(path("report.md"), "w") as f:
    f.write(text)
  return {
    "report": path("report.md"),
    "stats": all_stats,
    "paired": paired,
    "health": health,
    "plots": plot_files,
  }


BASELINE_NOTES = (
  "- uniform: 1/N of the order at every bar (TWAP schedule).",
  "- vwap_profile: the training split's average volume per calendar bucket (time of day for "
  "intraday bars, weekday for daily bars), traded in proportion.",
  "- optional_stopping: uniform; once past the minimum, finish when the last known price (the "
  "close of bar s-1) beats the running benchmark by theta bps (tuned per head and scenario on "
  "training orders).",
  "- vol_stopping: the same with theta in units of lookback volatility x sqrt(bars left).",
  "- lsm_stopping: least-squares (Longstaff-Schwartz) optimal stopping fitted on training orders "
  "per head and scenario on causal state (gain of the last close vs the running benchmark, lookback "
  "volatility, bars left); uniform until it stops.",
  "- best_causal: per min period and scenario, the causal baseline above with the best mean "
  "improvement on validation orders (never chosen on test orders). **The LEM counts as better only "
  "against this row.**",
  "- PPO (when trained): the reinforcement-learning agent of lemjax/rl on the same orders.",
  "- oracle: the best ex-post schedule with perfect foresight (an upper bound, not causal).",
)


def _markdown(ctx: Context, test, s_buy, s_sell, k_sel, parts: dict) -> str:
  ecfg, n = ctx.cfgs["eval"], ctx.cfgs["model"].n_ahead
  all_stats, paired = parts["all_stats"], parts["paired"]
  scen = f"{ecfg.benchmark.upper()} benchmark, {ecfg.target} target"
  ck = ctx.checkpoint
  val = ck.get("val") or {}
  splits = ctx.split_ranges
  note = markdown.clusters_note(all_stats["LEM"])
  lines = [
    *lookahead.report_lines(ctx.cfgs["model"]),
    ctx.source_line,
    "",
    f"# Evaluation report: {ctx.config.name}",
    "",
    "- Splits: " + "; ".join(f"{k} {v}" for k, v in splits["configured"].items()),
    f"- Order origins: train {splits['train_origins'][0]} .. {splits['train_origins'][1]}; "
    f"test {splits['test_origins'][0]} .. {splits['test_origins'][1]}",
    f"- Checkpoint: {ck['which']} at step {ck['step']} ({ck['directory']}), validation loss "
    f"{val.get('loss', float('nan')):.5f}",
    f"- Config: config.json of the run (experiment `{ctx.config.name}`); seed {ctx.config.seed}",
    f"- {ecfg.split.capitalize()} orders: {test['prices'].shape[0]} over "
    f"{len(np.unique(test['asset']))} assets, one "
    f"every {ecfg.order_stride or n} windows per asset; N={n}, per-step bounds "
    f"r_min={ecfg.r_min}, r_max={ecfg.r_max}",
    f"- Written {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}. "
    f"{note} Block length {ecfg.block_length} start times (eval.block_length), "
    f"{ecfg.bootstrap} resamples.",
    "",
  ]
  if ecfg.split == "val":
    lines += [
      "> **VALIDATION SPLIT (eval.split=val, model selection): the orders below come from the "
      "validation period; the best causal baseline and the head map were chosen on training "
      "orders. 'test' in the tables below means these validation orders.**",
      "",
    ]
  if ecfg.ensemble:
    how = (
      "the LEM's allocations are the average of this run's and those of"
      if ecfg.ensemble_rule == "allocations"
      else f"the LEM is one execution steered by the {ecfg.ensemble_rule.replace('_', ' ')} of "
      "the proposed trades, at every decision, of this run and"
    )
    lines += [
      f"> **SEED ENSEMBLE (eval.ensemble): {how} {ecfg.ensemble}, each from its "
      f"{ecfg.checkpoint} checkpoint.**",
      "",
    ]
  if "SYNTHETIC" in ctx.source_line:
    lines += [
      "> **SYNTHETIC DATA: these numbers describe the embedded synthetic market, not a real one.**",
      "",
    ]
  paired_md = {b: paired[b] for b in PAIRED_IN_MARKDOWN if b in paired}
  sc = parts["study_score"]
  lines += [
    f"**Study score** (study_score.json): LEM minus the best causal baseline, averaged over min "
    f"periods {sc['min_periods']} and all 8 scenarios: {sc['mean_bps']:+.2f} "
    f"[{sc['ci_lo']:+.2f}, {sc['ci_hi']:+.2f}] bps ({sc['n_clusters']} start-time clusters).",
    "",
  ]
  lines += [
    "## Headline",
    "",
    SIGN_CONVENTION,
    "",
    f"Mean improvement (bps) [95% interval], {scen}. {note}",
    "",
    markdown.headline_table(all_stats, s_buy, s_sell, n),
    "",
    f"## Paired differences: LEM minus the best causal baseline and the stopping rules (bps, {scen})",
    "",
    "A positive difference means the LEM did better on the same orders. "
    + note
    + " Every baseline's pairing is in paired_differences.csv.",
    "",
    markdown.paired_table(paired_md, s_buy, s_sell, n),
    "",
  ]
  if "best_causal_choice" in parts["fitted"]:
    lines += [
      f"## The best causal baseline per min period (chosen on validation orders, {scen})",
      "",
      markdown.choice_table(
        parts["fitted"]["best_causal_choice"], parts["fitted"]["val_means"], s_buy, s_sell, n
      ),
      "",
    ]
  lines += [
    f"## Tracking and shortfall at the fixed-duration head ({scen})",
    "",
    "For the fixed head the question is tracking error: how far each order's price lands from "
    "its benchmark (std, mean absolute deviation and RMSE of the improvement; 0 is perfect "
    "tracking), compared with the volume-profile VWAP schedule (vwap_profile). IS = "
    "implementation shortfall vs the arrival price, side x (P / arrival - 1) x 1e4 bps "
    "(positive = cost).",
    "",
    markdown.tracking_table(all_stats, parts["shortfall"], n, s_buy, s_sell),
    "",
    f"## Tracking and shortfall at min period 1 ({scen})",
    "",
    markdown.tracking_table(all_stats, parts["shortfall"], 0, s_buy, s_sell),
    "",
  ]
  edges = parts["edges"]
  served = diagnostics.health_rows(parts["health"], "served")
  lines += [
    f"## Regimes: min period 1 by lookback volatility tercile ({scen})",
    "",
    f"Terciles of the lookback's realised volatility, cut on training orders at "
    f"{edges[0]:.1f} and {edges[1]:.1f} bps per bar (calm / middle / volatile). Intervals: "
    "clustered bootstrap within each tercile.",
    "",
    markdown.regime_table(
      parts["by_regime"], parts["by_regime_paired"], diagnostics.REGIMES, 0, s_buy, s_sell
    ),
    "",
    f"## Head health (LEM, every scenario; reference: {parts['reference']})",
    "",
    "A head with a smaller minimum has every option of one with a larger minimum, so it should "
    "not score lower beyond noise (flag: more than 3 bps lower than the next head with the "
    "clustered interval below 0), and a head should end orders early where the reference does "
    "(flag: under 5% ended early while the reference ends at least 30%). All rows: "
    "head_health.csv.",
    "",
    markdown.health_table(served),
    "",
    markdown.break_calibration_line(served),
    "",
  ]
  own = diagnostics.health_rows(parts["health"], "own")
  if own.height:
    head_map = np.asarray(parts["fitted"]["lem_head_map_KxS"])[:-1]
    rule = parts["fitted"]["lem_head_rule"]
    moved = int((head_map != np.arange(head_map.shape[0])[:, None]).sum())
    lines += [
      f"Served heads (eval.nested_heads, eval.head_rule={rule}; head_map.json): "
      f"{heads.RULE_TEXT[rule]}; {moved} of {own.height} flexible cells "
      "are served by a larger minimum. The trained heads themselves, before that choice:",
      "",
      markdown.health_table(own),
      "",
      markdown.break_calibration_line(own),
      "",
    ]
  for name, st in all_stats.items():
    lines += [
      f"## Table 1 - {name}: improvement by min period ({scen})",
      "",
      SIGN_CONVENTION,
      "",
      markdown.paper_table(st, s_buy, s_sell, n),
      "",
    ]
  lines += [
    f"## Table 2 - strategies at min period {k_sel + 1} ({scen})",
    "",
    SIGN_CONVENTION,
    "",
    markdown.strategy_table(all_stats, k_sel, s_buy, s_sell),
    "",
    f"## Table 2b - strategies at the fixed-duration head ({scen})",
    "",
    SIGN_CONVENTION,
    "",
    markdown.strategy_table(all_stats, n, s_buy, s_sell),
    "",
    f"## Share of orders ended early (buy / sell, {scen})",
    "",
    markdown.early_table(all_stats, s_buy, s_sell, n),
    "",
    f"## Per asset: mean improvement at min period 1 ({scen})",
    "",
    "Intervals: moving blocks of the asset's own consecutive orders. Every strategy: "
    "per_asset.csv.",
    "",
    markdown.per_asset_table(
      parts["per_asset"],
      0,
      s_buy,
      s_sell,
      tuple(s for s in PER_ASSET_IN_MARKDOWN if s in all_stats),
    ),
    "",
    "## Baselines",
    "",
    *BASELINE_NOTES,
    "",
    "## Files",
    "",
    "- stats.csv (every strategy, scenario and head, with tracking and shortfall columns), "
    "headline.csv, paired_differences.csv, per_asset.csv, regimes.csv, head_health.csv, "
    "baselines_fitted.csv (thresholds, best-baseline choice, validation means)",
    "- orders.parquet: one row per test order x strategy x head x scenario (allocation, achieved "
    "price, benchmark, improvement, shortfall); market.parquet: each order's execution-bar "
    "prices and volumes",
    "- plots: " + ", ".join(os.path.basename(p) for p in parts["plots"]),
    "",
  ]
  return "\n".join(lines)
