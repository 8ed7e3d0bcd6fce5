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
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import polars as pl

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
  parser.add_argument("--candidate", required=True, help="comma-separated report directories")
  parser.add_argument("--reference", required=True, help="comma-separated report directories")
  parser.add_argument("--block_length", type=int, default=5)
  parser.add_argument("--bootstrap", type=int, default=2000)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--out", default="", help="also write the result as JSON here")
  args = parser.parse_args(argv)
  split = lambda s: [p for p in s.split(",") if p]  # noqa: E731
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
