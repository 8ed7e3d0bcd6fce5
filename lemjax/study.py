"""Paired comparison of two model candidates on the same orders (the model-selection study).

Each candidate is a set of runs (seeds) evaluated on the same split, e.g. their validation
reports (`make eval ... ARGS="--config.eval.split=val"` writes `<run>/val_report/`). Per order,
a report's study score is the LEM's improvement minus the best causal baseline's, averaged over
min periods 1..N-1 and all scenarios (`summary.study_score`; its mean over orders is the
report's study_score.json). A candidate's per-order score is the mean over its seeds, and the
comparison is the per-order difference between two candidates with a moving-block bootstrap
interval over start times: both candidates trade the same orders, so the market move the orders
share cancels, and the interval is far narrower than comparing two scores' own intervals.

  python -m lemjax.study --candidate=runs/a_seed0/val_report,runs/a_seed1/val_report \
      --reference=runs/b_seed0/val_report,runs/b_seed1/val_report [--out=compare.json]

`rows` reads the study table's row of each run instead (its score, min period 1 against the
best causal baseline, head health, training length and time), with the runs' mean and spread:

  python -m lemjax.study --rows=runs/a_seed0,runs/a_seed1,runs/a_seed2 [--report=val_report]
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import polars as pl

from lemjax import diagnostics
from lemjax import size_report
from lemjax import stats as stats_lib

ORDERS_FILE = "orders.parquet"


def per_order_scores(report_dir: str) -> pl.DataFrame:
  """One row per order: order, origin and its study score (LEM minus best_causal, bps).

  Raises:
    ValueError naming the file when it lacks the LEM or best_causal rows.
  """
  path = os.path.join(report_dir, ORDERS_FILE)
  if not os.path.exists(path):
    raise ValueError(f"{path} does not exist (evaluate the run first)")
  orders = pl.read_parquet(
    path, columns=["strategy", "order", "origin", "min_period", "improvement_bps"]
  )
  # Min periods 1..N-1: the heads that may end early (N is the largest min period present).
  orders = orders.filter(
    (pl.col("min_period") < pl.col("min_period").max())
    & pl.col("strategy").is_in(["LEM", "best_causal"])
  )
  found = set(orders["strategy"].unique().to_list())
  if found != {"LEM", "best_causal"}:
    raise ValueError(f"{path}: needs LEM and best_causal rows, found {sorted(found)}")
  per = (
    orders.group_by("strategy", "order")
    .agg(pl.col("origin").first(), pl.col("improvement_bps").cast(pl.Float64).mean())
    .pivot(on="strategy", index=["order", "origin"], values="improvement_bps")
  )
  return per.select(
    "order", "origin", (pl.col("LEM") - pl.col("best_causal")).alias("score_bps")
  ).sort("order")


def candidate_scores(report_dirs: list[str]) -> tuple[pl.DataFrame, list[float]]:
  """(per-order scores averaged over the runs, each run's mean score), checking same orders."""
  if not report_dirs:
    raise ValueError("a candidate needs at least one report directory")
  frames = [per_order_scores(d) for d in report_dirs]
  first = frames[0]
  for d, f in zip(report_dirs[1:], frames[1:]):
    _check_same_orders(report_dirs[0], first, d, f)
  mean_B = np.mean([f["score_bps"].to_numpy() for f in frames], axis=0)
  return first.with_columns(pl.Series("score_bps", mean_B)), [
    float(f["score_bps"].mean()) for f in frames
  ]


def _check_same_orders(name_a: str, a: pl.DataFrame, name_b: str, b: pl.DataFrame) -> None:
  if a.height != b.height or not (
    a["order"].equals(b["order"]) and a["origin"].equals(b["origin"])
  ):
    raise ValueError(
      f"{name_a} ({a.height} orders) and {name_b} ({b.height} orders) did not score the same "
      "orders (same experiment, split and eval settings needed)"
    )


def compare(
  candidate: list[str],
  reference: list[str],
  *,
  block_length: int = 5,
  n_boot: int = 2000,
  seed: int = 0,
  level: float = 0.95,
) -> dict:
  """Candidate minus reference study score on the same orders, with its clustered interval.

  Args:
    candidate, reference: report directories (each holding orders.parquet) of each candidate's
      runs, e.g. one per seed.
    block_length, n_boot, seed, level: the moving-block bootstrap over start times
      (`stats.paired_difference`); the block is shortened for few start times.

  Returns:
    dict: candidate / reference (mean study score of the seed-averaged per-order scores, and each
    run's own), difference_bps with ci_lo / ci_hi, n orders and n_clusters.
  """
  cand, cand_runs = candidate_scores(candidate)
  ref, ref_runs = candidate_scores(reference)
  _check_same_orders(candidate[0], cand, reference[0], ref)
  group_B, g = stats_lib.start_groups(cand["origin"].dt.epoch("ms").to_numpy())
  d = stats_lib.paired_difference(
    cand["score_bps"].to_numpy()[:, None],
    ref["score_bps"].to_numpy()[:, None],
    group_B,
    block_length=stats_lib.fitted_block_length(block_length, g),
    n_boot=n_boot,
    seed=seed,
    level=level,
  )
  return {
    "candidate": {
      "runs": list(candidate),
      "score_bps": float(cand["score_bps"].mean()),
      "per_run": cand_runs,
    },
    "reference": {
      "runs": list(reference),
      "score_bps": float(ref["score_bps"].mean()),
      "per_run": ref_runs,
    },
    "difference_bps": float(d["mean"][0]),
    "ci_lo": float(d["ci_lo"][0]),
    "ci_hi": float(d["ci_hi"][0]),
    "level": level,
    "n": int(d["n"]),
    "n_clusters": int(d["n_clusters"]),
  }


def markdown(result: dict) -> str:
  """A short table of a `compare` result."""

  def runs(side):
    r = result[side]
    each = ", ".join(f"{v:+.2f}" for v in r["per_run"])
    return f"{r['score_bps']:+.2f} (runs: {each})"

  return "\n".join(
    [
      "| | study score, bps |",
      "|---|---|",
      f"| candidate | {runs('candidate')} |",
      f"| reference | {runs('reference')} |",
      f"| candidate minus reference | {result['difference_bps']:+.2f} "
      f"[{result['ci_lo']:+.2f}, {result['ci_hi']:+.2f}] |",
      "",
      f"{result['n']} orders in {result['n_clusters']} start-time clusters; "
      f"{result['level']:.0%} moving-block bootstrap interval over start times.",
    ]
  )


def _read(path: str, reader):
  if not os.path.exists(path):
    raise ValueError(f"{path} does not exist (train and evaluate the run first)")
  return reader(path)


def _read_json(path: str) -> dict:
  with open(path) as f:
    return json.load(f)


def run_row(run_dir: str, report: str = "val_report") -> dict:
  """A run's row of the study table, from its report directory and train_summary.json.

  Returns:
    dict: run, score_bps with ci_lo / ci_hi, n orders and n_clusters (study_score.json); buy and
    sell at min period 1 (VWAP, quantity): LEM minus best_causal with its interval
    (paired_differences.csv); collapsed, breaks, worst_minus_next_bps, ended_early and
    reference_early over the served flexible heads (head_health.csv); best_step, last_step and
    wall_s of training (None where train_summary.json lacks them); by_size, the study score at
    each order size with costs on ({size: {mean_bps, ci_lo, ci_hi}} from size_study_score.csv;
    absent for a run evaluated without costs).

  Raises:
    ValueError naming the missing file, or the missing min-period-1 row.
  """
  rdir = os.path.join(run_dir, report)
  score = _read(os.path.join(rdir, "study_score.json"), _read_json)
  paired = _read(os.path.join(rdir, "paired_differences.csv"), pl.read_csv)
  health = _read(os.path.join(rdir, "head_health.csv"), pl.read_csv)
  summary_path = os.path.join(run_dir, "train_summary.json")
  summary = _read_json(summary_path) if os.path.exists(summary_path) else {}
  row = {
    "run": run_dir,
    "score_bps": score["mean_bps"],
    "ci_lo": score["ci_lo"],
    "ci_hi": score["ci_hi"],
    "n": score["n"],
    "n_clusters": score["n_clusters"],
  }
  headline = paired.filter(
    (pl.col("baseline") == "best_causal")
    & (pl.col("benchmark") == "vwap")
    & (pl.col("target") == "quantity")
    & (pl.col("min_period") == 1)
    & ~pl.col("fixed_duration")
  )
  for side in ("buy", "sell"):
    cell = headline.filter(pl.col("side") == side)
    if cell.height != 1:
      raise ValueError(
        f"{os.path.join(rdir, 'paired_differences.csv')}: no single best_causal row for "
        f"{side}/vwap/quantity at min period 1 ({cell.height} found)"
      )
    c = cell.row(0, named=True)
    row[side] = {k: c[k] for k in ("lem_minus_baseline_bps", "ci_lo", "ci_hi")}
  served = diagnostics.health_rows(health, "served")
  flexible = served.filter(pl.col("min_period") < pl.col("min_period").max())
  row.update(
    **diagnostics.health_counts(served),
    ended_early=float(flexible["ended_early"].mean()),
    reference_early=float(flexible["reference_early"].mean()),
    best_step=summary.get("best_step"),
    last_step=summary.get("step"),
    wall_s=summary.get("wall_s"),
  )
  size_path = os.path.join(rdir, size_report.SCORE_FILE)
  if os.path.exists(size_path):
    row["by_size"] = {
      r["size"]: {
        "mean_bps": r["lem_minus_best_causal_bps"],
        "ci_lo": r["ci_lo"],
        "ci_hi": r["ci_hi"],
      }
      for r in pl.read_csv(size_path).iter_rows(named=True)
    }
  return row


def rows_markdown(rows: list[dict]) -> str:
  """The study table's rows of `run_row` results, then the runs' mean and standard deviation."""

  def ci(v, lo, hi):
    return f"{v:+.2f} [{lo:+.2f}, {hi:+.2f}]"

  def opt(v, spec, unit=""):
    return "n/a" if v is None else format(v, spec) + unit

  lines = [
    "| run | score, bps [95%] | min period 1 buy / sell vs best causal [95%] | collapsed / "
    "breaks / worst served head minus next | ended early (best causal) | best checkpoint / "
    "last step | training | orders / clusters |",
    "|---|---|---|---|---|---|---|---|",
  ]
  for r in rows:
    b, s = r["buy"], r["sell"]
    lines.append(
      f"| {r['run']} | {ci(r['score_bps'], r['ci_lo'], r['ci_hi'])} | "
      f"{ci(b['lem_minus_baseline_bps'], b['ci_lo'], b['ci_hi'])} / "
      f"{ci(s['lem_minus_baseline_bps'], s['ci_lo'], s['ci_hi'])} | "
      f"{r['collapsed']} / {r['breaks']} / {opt(r['worst_minus_next_bps'], '+.2f')} | "
      f"{r['ended_early']:.1%} ({r['reference_early']:.1%}) | "
      f"{opt(r['best_step'], 'd')} / {opt(r['last_step'], 'd')} | "
      f"{opt(r['wall_s'], '.0f', ' s')} | {r['n']} / {r['n_clusters']} |"
    )
  scores = np.array([r["score_bps"] for r in rows])
  if len(rows) > 1:
    across = f"{scores.mean():+.2f} ± {scores.std(ddof=1):.2f} bps (mean ± std)"
  else:
    across = f"{scores.mean():+.2f} bps"
  lines += ["", f"Across {len(rows)} run(s): {across}."]
  sized = [r for r in rows if "by_size" in r]
  if sized:
    lines += ["", *by_size_markdown(sized)]
  return "\n".join(lines)


def by_size_markdown(rows: list[dict]) -> list[str]:
  """With costs on: each run's study score at each order size, then the runs' mean ± std."""
  sizes = sorted({q for r in rows for q in r["by_size"]})
  lines = [
    "Study score by order size (size_study_score.csv; LEM minus best causal, paired) [95%]:",
    "",
    "| run | " + " | ".join(f"{100 * q:g}%" for q in sizes) + " |",
    "|---|" + "---|" * len(sizes),
  ]
  for r in rows:
    cells = [r["by_size"].get(q) for q in sizes]
    text = [
      "n/a" if c is None else f"{c['mean_bps']:+.2f} [{c['ci_lo']:+.2f}, {c['ci_hi']:+.2f}]"
      for c in cells
    ]
    lines.append(f"| {r['run']} | " + " | ".join(text) + " |")
  spread = []
  for q in sizes:
    v = np.array([r["by_size"][q]["mean_bps"] for r in rows if q in r["by_size"]])
    spread.append(f"{v.mean():+.2f} ± {v.std(ddof=1):.2f}" if v.size > 1 else f"{v.mean():+.2f}")
  lines.append("| mean ± std | " + " | ".join(spread) + " |")
  return lines


def show(result: dict, text: str, out: str = "") -> dict:
  """Prints a study tool's markdown and, when `out` names a file, writes its result as JSON."""
  print(text)
  if out:
    with open(out, "w") as f:
      json.dump(result, f, indent=1)
  return result


def main(argv: list[str] | None = None) -> dict:
  import argparse  # noqa: PLC0415 (command line only)

  parser = argparse.ArgumentParser(
    prog="python -m lemjax.study", description=__doc__.split("\n")[0]
  )
  parser.add_argument("--candidate", default="", help="comma-separated report directories")
  parser.add_argument("--reference", default="", help="comma-separated report directories")
  parser.add_argument("--rows", default="", help="comma-separated run directories: their rows")
  parser.add_argument("--report", default="val_report", help="report directory inside each run")
  parser.add_argument("--block_length", type=int, default=5)
  parser.add_argument("--bootstrap", type=int, default=2000)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--out", default="", help="also write the result as JSON here")
  args = parser.parse_args(argv)
  split = lambda s: [p for p in s.split(",") if p]  # noqa: E731
  if args.rows:
    rows = [run_row(run, args.report) for run in split(args.rows)]
    return show({"rows": rows}, rows_markdown(rows), args.out)
  if not (args.candidate and args.reference):
    parser.error("give --candidate and --reference, or --rows")
  result = compare(
    split(args.candidate),
    split(args.reference),
    block_length=args.block_length,
    n_boot=args.bootstrap,
    seed=args.seed,
  )
  return show(result, markdown(result), args.out)


if __name__ == "__main__":
  main(sys.argv[1:])
