"""The evaluation report: markdown tables, CSV files and per-order results in the run's work directory."""

from __future__ import annotations

import dataclasses
import datetime
import os
from typing import Any

import numpy as np
import polars as pl

from lemjax import plots
from lemjax import scenarios
from lemjax import stats as stats_lib

SIGN_CONVENTION = ("Sign convention: improvement = side x (1 - P / benchmark) x 1e4 bps, side +1 for "
                   "buys and -1 for sells, so **positive is better than the benchmark** for both sides.")
STAT_COLUMNS = (("mean", "mean_bps"), ("std", "std_bps"), ("median", "median_bps"),
                ("P5", "p5_bps"), ("P95", "p95_bps"), ("Q25", "q25_bps"), ("Q75", "q75_bps"))


@dataclasses.dataclass
class Context:
  """What the report says about where its numbers come from."""
  workdir: str
  config: Any                 # the experiment ConfigDict
  cfgs: dict                  # frozen dataclasses per section
  source_line: str            # "Data source: ..." (folder and files, or SYNTHETIC)
  checkpoint: dict            # which, step, directory, val
  asset_names: tuple
  split_ranges: dict


def head_label(k: int, n_ahead: int) -> str:
  return f"fixed ({n_ahead})" if k == n_ahead else str(k + 1)


def _ci(mean: float, lo: float, hi: float) -> str:
  return f"{mean:+.2f} [{lo:+.2f}, {hi:+.2f}]"


def md_table(header: list, rows: list) -> str:
  """A GitHub-flavoured markdown table."""
  lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
  return "\n".join(lines)


def _sides(cfg) -> tuple[int, int]:
  return (scenarios.scenario_index("buy", cfg.benchmark, cfg.target),
          scenarios.scenario_index("sell", cfg.benchmark, cfg.target))


# --- Tables ---------------------------------------------------------------------------------------

def paper_table(stats: dict, s_buy: int, s_sell: int, n_ahead: int) -> str:
  """Paper layout: one row per min period; mean, std, median, P5, P95, Q25, Q75 for buy and sell."""
  header = ["min period"] + [f"buy {c}" for c, _ in STAT_COLUMNS] + [f"sell {c}" for c, _ in STAT_COLUMNS]
  rows = []
  for k in range(n_ahead + 1):
    cells = [f"{stats[key][k, s]:+.2f}" for s in (s_buy, s_sell) for _, key in STAT_COLUMNS]
    rows.append([head_label(k, n_ahead)] + cells)
  return md_table(header, rows)


def strategy_table(all_stats: dict, k: int, s_buy: int, s_sell: int) -> str:
  """One row per strategy at head k; the same statistics, buy and sell."""
  header = ["strategy"] + [f"buy {c}" for c, _ in STAT_COLUMNS] + [f"sell {c}" for c, _ in STAT_COLUMNS]
  rows = [[name] + [f"{st[key][k, s]:+.2f}" for s in (s_buy, s_sell) for _, key in STAT_COLUMNS]
          for name, st in all_stats.items()]
  return md_table(header, rows)


def headline_table(all_stats: dict, s_buy: int, s_sell: int, n_ahead: int) -> str:
  """Mean with its 95% interval at min period 1 and at the fixed head, buy and sell."""
  header = ["strategy", "min period 1 buy", "min period 1 sell", "fixed buy", "fixed sell"]
  rows = []
  for name, st in all_stats.items():
    cells = [_ci(st["mean_bps"][k, s], st["ci_lo"][k, s], st["ci_hi"][k, s])
             for k in (0, n_ahead) for s in (s_buy, s_sell)]
    rows.append([name] + cells)
  return md_table(header, rows)


def paired_table(paired: dict, s_buy: int, s_sell: int, n_ahead: int) -> str:
  """LEM minus each baseline per min period, with 95% bootstrap intervals."""
  header = ["min period"] + [f"vs {b} {side}" for b in paired for side in ("buy", "sell")]
  rows = []
  for k in range(n_ahead + 1):
    rows.append([head_label(k, n_ahead)] + [
        _ci(d["mean"][k, s], d["ci_lo"][k, s], d["ci_hi"][k, s])
        for d in paired.values() for s in (s_buy, s_sell)])
  return md_table(header, rows)


def early_table(all_stats: dict, s_buy: int, s_sell: int, n_ahead: int) -> str:
  """Share of orders that ended before their last bar (buy / sell)."""
  header = ["min period"] + list(all_stats)
  rows = [[head_label(k, n_ahead)] + [
      f"{st['ended_early'][k, s_buy]:.0%} / {st['ended_early'][k, s_sell]:.0%}"
      for st in all_stats.values()] for k in range(n_ahead + 1)]
  return md_table(header, rows)


def per_asset_frame(results: dict, asset_B: np.ndarray, asset_names: tuple) -> pl.DataFrame:
  """Mean improvement per strategy, asset, head and scenario."""
  frames = []
  for name, res in results.items():
    imp = res["improvement_bps"]
    for a in np.unique(asset_B):
      sel = asset_B == a
      mean_KxS = imp[sel].mean(0)
      k, s = np.meshgrid(np.arange(mean_KxS.shape[0]), np.arange(mean_KxS.shape[1]), indexing="ij")
      frames.append(pl.DataFrame({
          "strategy": name, "asset": asset_names[int(a)], "head": k.ravel(),
          "scenario": [scenarios.scenario_name(int(i)) for i in s.ravel()],
          "mean_bps": mean_KxS.ravel(), "n": int(sel.sum())}))
  return pl.concat(frames)


def per_asset_table(frame: pl.DataFrame, k: int, s_buy: int, s_sell: int) -> str:
  names = (scenarios.scenario_name(s_buy), scenarios.scenario_name(s_sell))
  sub = frame.filter((pl.col("head") == k) & pl.col("scenario").is_in(names))
  strategies = sub["strategy"].unique(maintain_order=True).to_list()
  header = ["asset", "orders"] + [f"{s} buy / sell" for s in strategies]
  rows = []
  for asset in sub["asset"].unique(maintain_order=True).to_list():
    a = sub.filter(pl.col("asset") == asset)
    cells = []
    for strat in strategies:
      v = {r["scenario"]: r["mean_bps"] for r in a.filter(pl.col("strategy") == strat).iter_rows(named=True)}
      cells.append(f"{v[names[0]]:+.2f} / {v[names[1]]:+.2f}")
    rows.append([asset, a["n"][0]] + cells)
  return md_table(header, rows)


# --- Per-order results ----------------------------------------------------------------------------

def orders_frame(test: dict, allocs: dict, results: dict, asset_names: tuple) -> pl.DataFrame:
  """One row per test order x strategy x head x scenario, with its allocation vector."""
  b, n, k, s = next(iter(allocs.values())).shape
  order_R = np.repeat(np.arange(b), k * s)
  head_R = np.tile(np.repeat(np.arange(k), s), b)
  scen_R = np.tile(np.arange(s), b * k)
  names = np.array(asset_names, dtype=object)
  side, bench, target = (np.array([sc[i] for sc in scenarios.SCENARIOS], dtype=object) for i in range(3))
  frames = []
  for name, alloc in allocs.items():
    res = results[name]
    cols = {
        "strategy": name, "order": order_R.astype(np.int32),
        "asset": names[test["asset"][order_R]],
        "origin": pl.Series(test["origin"][order_R]).cast(pl.Datetime("ms", "UTC")),
        "head": head_R.astype(np.int16), "min_period": np.minimum(head_R + 1, n).astype(np.int16),
        "fixed_duration": head_R == n, "side": side[scen_R], "benchmark": bench[scen_R],
        "target": target[scen_R]}
    a_RxN = np.transpose(alloc, (0, 2, 3, 1)).reshape(b * k * s, n)
    cols.update({f"alloc_{i}": a_RxN[:, i].astype(np.float32) for i in range(n)})
    cols.update({"price": res["price"].ravel(), "benchmark_price": res["benchmark"].ravel(),
                 "improvement_bps": res["improvement_bps"].ravel(),
                 "window_end": res["window_end"].ravel().astype(np.int16),
                 "ended_early": res["ended_early"].ravel()})
    frames.append(pl.DataFrame(cols))
  return pl.concat(frames)


def market_frame(test: dict, asset_names: tuple) -> pl.DataFrame:
  """One row per test order: its execution bars' prices (over arrival) and scaled volumes."""
  n = test["prices"].shape[1]
  cols = {"order": np.arange(test["prices"].shape[0], dtype=np.int32),
          "asset": np.array(asset_names, dtype=object)[test["asset"]],
          "origin": pl.Series(test["origin"]).cast(pl.Datetime("ms", "UTC"))}
  cols.update({f"price_{i}": test["prices"][:, i] for i in range(n)})
  cols.update({f"volume_{i}": test["volumes"][:, i] for i in range(n)})
  return pl.DataFrame(cols)


# --- Orchestration --------------------------------------------------------------------------------

def write_all(ctx: Context, test: dict, allocs: dict, results: dict, fitted: dict) -> dict:
  """Writes report.md, the CSV tables, orders.parquet, market.parquet and the plots."""
  ecfg, n = ctx.cfgs["eval"], ctx.cfgs["model"].n_ahead
  os.makedirs(ctx.workdir, exist_ok=True)
  path = lambda name: os.path.join(ctx.workdir, name)  # noqa: E731
  s_buy, s_sell = _sides(ecfg)
  k_sel = ecfg.min_period - 1

  # Statistics and paired differences, all from the same per-order improvements.
  all_stats, frames = {}, []
  group_B, _ = stats_lib.start_groups(test["origin"])
  for name, res in results.items():
    stats, frame = stats_lib.summarize_improvement(res["improvement_bps"], res["ended_early"], group_B,
                                                   block_length=ecfg.block_length,
                                                   n_boot=ecfg.bootstrap, seed=ecfg.seed)
    all_stats[name] = stats
    frames.append(frame.with_columns(pl.lit(name).alias("strategy")))
  paired = {name: stats_lib.paired_difference(results["LEM"]["improvement_bps"],
                                              res["improvement_bps"], group_B,
                                              block_length=ecfg.block_length, n_boot=ecfg.bootstrap,
                                              seed=ecfg.seed)
            for name, res in results.items() if name != "LEM"}
  per_asset = per_asset_frame(results, test["asset"], ctx.asset_names)

  # CSV files.
  stats_frame = pl.concat(frames)
  stats_frame = stats_frame.select(["strategy", *[c for c in stats_frame.columns if c != "strategy"]])
  stats_frame.write_csv(path("stats.csv"))
  _paired_frame(paired, n).write_csv(path("paired_differences.csv"))
  per_asset.write_csv(path("per_asset.csv"))
  stats_frame.filter(pl.col("head").is_in([0, n])).write_csv(path("headline.csv"))
  _theta_frame(fitted["theta_KxS"], n).write_csv(path("optional_stopping_theta.csv"))
  orders_frame(test, allocs, results, ctx.asset_names).write_parquet(path("orders.parquet"))
  market_frame(test, ctx.asset_names).write_parquet(path("market.parquet"))

  # Plots.
  plot_files = plots.write_plots(ctx.workdir, all_stats, test, allocs, results, s_buy, s_sell, k_sel,
                                 ecfg.plot_orders)

  # report.md.
  text = _markdown(ctx, all_stats, paired, per_asset, test, s_buy, s_sell, k_sel, fitted, plot_files)
  with open(path("report.md"), "w") as f:
    f.write(text)
  return {"report": path("report.md"), "stats": all_stats, "paired": paired, "plots": plot_files}


def _paired_frame(paired: dict, n_ahead: int) -> pl.DataFrame:
  rows = []
  for name, d in paired.items():
    for k in range(n_ahead + 1):
      for s in range(scenarios.NUM_SCENARIOS):
        side, bench, target = scenarios.SCENARIOS[s]
        rows.append({"baseline": name, "side": side, "benchmark": bench, "target": target, "head": k,
                     "min_period": min(k + 1, n_ahead), "fixed_duration": k == n_ahead,
                     "lem_minus_baseline_bps": float(d["mean"][k, s]), "ci_lo": float(d["ci_lo"][k, s]),
                     "ci_hi": float(d["ci_hi"][k, s]), "n": int(d["n"])})
  return pl.DataFrame(rows)


def _theta_frame(theta_KxS: np.ndarray, n_ahead: int) -> pl.DataFrame:
  k, s = np.meshgrid(np.arange(theta_KxS.shape[0]), np.arange(theta_KxS.shape[1]), indexing="ij")
  return pl.DataFrame({"head": k.ravel(), "scenario": [scenarios.scenario_name(int(i)) for i in s.ravel()],
                       "theta_bps": theta_KxS.ravel()})


def _markdown(ctx: Context, all_stats, paired, per_asset, test, s_buy, s_sell, k_sel, fitted,
              plot_files) -> str:
  ecfg, n = ctx.cfgs["eval"], ctx.cfgs["model"].n_ahead
  scen = f"{ecfg.benchmark.upper()} benchmark, {ecfg.target} target"
  ck = ctx.checkpoint
  val = ck.get("val") or {}
  splits = ctx.split_ranges
  lines = [
      ctx.source_line, "",
      f"# Evaluation report: {ctx.config.name}", "",
      "- Splits: " + "; ".join(f"{k} {v}" for k, v in splits["configured"].items()),
      f"- Order origins: train {splits['train_origins'][0]} .. {splits['train_origins'][1]}; "
      f"test {splits['test_origins'][0]} .. {splits['test_origins'][1]}",
      f"- Checkpoint: {ck['which']} at step {ck['step']} ({ck['directory']}), validation loss "
      f"{val.get('loss', float('nan')):.5f}",
      f"- Config: config.json of the run (experiment `{ctx.config.name}`); "
      f"seed {ctx.config.seed}",
      f"- Test orders: {test['prices'].shape[0]} over {len(np.unique(test['asset']))} assets, one "
      f"every {ecfg.order_stride or n} windows per asset; N={n}, per-step bounds "
      f"r_min={ecfg.r_min}, r_max={ecfg.r_max}",
      f"- Written {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}; "
      f"intervals are 95% bootstrap intervals of the mean ({ecfg.bootstrap} resamples).", "",
  ]
  if "SYNTHETIC" in ctx.source_line:
    lines += ["> **SYNTHETIC DATA: these numbers describe the embedded synthetic market, not a real one.**", ""]
  lines += ["## Headline", "", SIGN_CONVENTION, "", f"Mean improvement (bps) [95% interval], {scen}.", "",
            headline_table(all_stats, s_buy, s_sell, n), ""]
  for name, st in all_stats.items():
    lines += [f"## Table 1 - {name}: improvement by min period ({scen})", "", SIGN_CONVENTION, "",
              paper_table(st, s_buy, s_sell, n), ""]
  lines += [f"## Table 2 - strategies at min period {k_sel + 1} ({scen})", "", SIGN_CONVENTION, "",
            strategy_table(all_stats, k_sel, s_buy, s_sell), "",
            f"## Table 2b - strategies at the fixed-duration head ({scen})", "", SIGN_CONVENTION, "",
            strategy_table(all_stats, n, s_buy, s_sell), "",
            f"## Paired differences: LEM minus each baseline (bps, {scen})", "", SIGN_CONVENTION,
            " A positive difference means the LEM did better on the same orders.", "",
            paired_table(paired, s_buy, s_sell, n), "",
            f"## Share of orders ended early (buy / sell, {scen})", "",
            early_table(all_stats, s_buy, s_sell, n), "",
            f"## Per asset: mean improvement at min period {k_sel + 1} ({scen})", "", SIGN_CONVENTION, "",
            per_asset_table(per_asset, k_sel, s_buy, s_sell), "",
            "## Baselines", "",
            "- uniform: 1/N of the order at every bar (TWAP schedule).",
            "- vwap_profile: the training split's average volume per calendar bucket (time of day for "
            "intraday bars, weekday for daily bars), traded in proportion.",
            "- optional_stopping: uniform; once past the minimum, finish when the last known price beats "
            "the running benchmark by theta (tuned per head and scenario on training orders, "
            "optional_stopping_theta.csv). Causal.",
            "- oracle: the best ex-post schedule with perfect foresight (an upper bound, not causal).", "",
            "## Files", "",
            "- stats.csv (every strategy, scenario and head), headline.csv, paired_differences.csv, "
            "per_asset.csv, optional_stopping_theta.csv",
            "- orders.parquet: one row per test order x strategy x head x scenario (allocation, achieved "
            "price, benchmark, improvement); market.parquet: each order's execution-bar prices and volumes",
            "- plots: " + ", ".join(os.path.basename(p) for p in plot_files), ""]
  return "\n".join(lines)


def null_test_verdict(lem_stats: dict, n_ahead: int) -> dict:
  """Fixed head vs VWAP per side and target: passes when no 95% interval lies above zero."""
  rows = []
  for side in scenarios.SIDES:
    for target in scenarios.TARGETS:
      s = scenarios.scenario_index(side, "vwap", target)
      lo, hi = float(lem_stats["ci_lo"][n_ahead, s]), float(lem_stats["ci_hi"][n_ahead, s])
      rows.append({"scenario": scenarios.scenario_name(s),
                   "mean_bps": float(lem_stats["mean_bps"][n_ahead, s]), "ci_lo": lo, "ci_hi": hi,
                   "significant_gain": lo > 0.0})
  return {"rows": rows, "passed": not any(r["significant_gain"] for r in rows)}
