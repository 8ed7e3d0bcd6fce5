"""Seed sweeps: train and evaluate one experiment under several seeds, then report the spread.

`python -m lemjax.main --mode=seeds --seeds=3 --config=...` (or `make seeds EXP=... SEEDS=3`)
trains seed i into the sibling work directory `<workdir>_seed<i>`, evaluates it on the test
split, and writes `<workdir>_seeds/seeds.md`, `seeds.csv` and `seeds_paired.csv`: the mean and
the standard deviation across seeds of every statistic in each seed's stats.csv and
paired_differences.csv, with each seed's own value beside them.
"""

from __future__ import annotations

import copy
import logging
import os

import numpy as np
import polars as pl

from lemjax import diagnostics

# Columns that identify one number of a run's stats.csv / paired_differences.csv.
STATS_KEYS = ("strategy", "side", "benchmark", "target", "head", "min_period", "fixed_duration")
PAIRED_KEYS = ("baseline", "side", "benchmark", "target", "head", "min_period", "fixed_duration")


def seed_workdir(workdir: str, seed: int) -> str:
  return f"{os.path.normpath(workdir)}_seed{seed}"


def summary_dir(workdir: str) -> str:
  return f"{os.path.normpath(workdir)}_seeds"


def seed_config(config, seed: int):
  """A copy of the experiment config with `seed` as its master seed."""
  cfg = copy.deepcopy(config)
  cfg.seed = seed
  return cfg


def across_seeds(frames: dict, keys: tuple, value: str) -> pl.DataFrame:
  """Mean and standard deviation across seeds of column `value`, one row per key combination.

  Args:
    frames: {seed: polars frame holding `keys` and `value`}, e.g. each seed's stats.csv.
    keys: columns that identify one number.
    value: the column to aggregate, e.g. "mean_bps".

  Returns:
    frame with `keys`, `<value>_mean`, `<value>_std` (ddof=1; 0 for one seed), `seeds` (count) and
    one column `seed<i>` per seed. Rows missing from some seed raise: every seed must report the
    same numbers.
  """
  if not frames:
    raise ValueError("no seed results to aggregate")
  wide = None
  for seed, frame in sorted(frames.items()):
    missing = [c for c in (*keys, value) if c not in frame.columns]
    if missing:
      raise ValueError(f"seed {seed}'s results lack columns {missing}")
    part = frame.select([*keys, pl.col(value).alias(f"seed{seed}")])
    if wide is None:
      wide = part
      continue
    joined = wide.join(part, on=list(keys), how="full", coalesce=True)
    if joined.height != wide.height or joined.null_count().sum_horizontal().item():
      raise ValueError(f"seed {seed} reports other rows than the seeds before it")
    wide = joined
  seed_cols = [f"seed{s}" for s in sorted(frames)]
  values = wide.select(seed_cols).to_numpy().astype(np.float64)
  std = values.std(axis=1, ddof=1) if values.shape[1] > 1 else np.zeros(values.shape[0])
  return wide.select([*keys]).with_columns(
    pl.Series(f"{value}_mean", values.mean(axis=1)),
    pl.Series(f"{value}_std", std),
    pl.lit(len(seed_cols)).alias("seeds"),
    *[wide[c] for c in seed_cols],
  )


def headline_markdown(
  stats: pl.DataFrame, paired: pl.DataFrame, benchmark: str, target: str, n_ahead: int, name: str
) -> str:
  """Across-seed headline: min period 1 and fixed head, buy and sell, every strategy and pairing."""

  def cell(frame, side, head, value):
    row = frame.filter(
      (pl.col("side") == side)
      & (pl.col("head") == head)
      & (pl.col("benchmark") == benchmark)
      & (pl.col("target") == target)
    )
    if row.height != 1:
      return "n/a"
    seeds = [f"{row[c][0]:+.2f}" for c in row.columns if c.startswith("seed") and c != "seeds"]
    return f"{row[f'{value}_mean'][0]:+.2f} ± {row[f'{value}_std'][0]:.2f} ({', '.join(seeds)})"

  header = ["", "min period 1 buy", "min period 1 sell", "fixed buy", "fixed sell"]
  cols = [(side, head) for head in (0, n_ahead) for side in ("buy", "sell")]
  rows = [
    [s]
    + [cell(stats.filter(pl.col("strategy") == s), side, head, "mean_bps") for side, head in cols]
    for s in stats["strategy"].unique(maintain_order=True)
  ]
  rows += [
    [f"LEM minus {b}"]
    + [
      cell(paired.filter(pl.col("baseline") == b), side, head, "lem_minus_baseline_bps")
      for side, head in cols
    ]
    for b in paired["baseline"].unique(maintain_order=True)
  ]
  n_seeds = int(stats["seeds"][0])
  lines = [
    f"# {name}: {n_seeds} seeds",
    "",
    f"Mean improvement (bps), {benchmark.upper()} benchmark, {target} target: mean ± standard "
    "deviation across seeds (each seed's value in brackets). Positive is better than the "
    "benchmark for both sides; a positive paired difference means the LEM did better.",
    "",
    "| " + " | ".join(header) + " |",
    "|" + "---|" * len(header),
  ]
  lines += ["| " + " | ".join(r) + " |" for r in rows]
  return "\n".join(lines) + "\n"


def health_markdown(health: dict) -> str:
  """Per seed: collapsed heads and monotonicity breaks (head_health.csv), served and own heads."""
  header = [
    "seed",
    "heads",
    "collapsed",
    "monotonicity breaks",
    "breaks by chance alone (expected)",
    "breaks after Holm",
    "worst head minus next (bps)",
  ]
  lines = [
    "## Head health per seed",
    "",
    "Flexible head x scenario cells (min periods 1..N, 8 scenarios) flagged in each seed's "
    "head_health.csv: collapsed = ends under 5% of orders early where the best causal baseline "
    "ends at least 30%; a break = more than 3 bps below the next larger minimum with the "
    "clustered interval below 0. 'served' are the heads the report scores (eval.nested_heads); "
    "'own' the trained heads before that choice. Each pair is judged on its own, so a model with "
    "no true gap still shows breaks: 'by chance alone' is their expected number over the tested "
    "pairs, from each pair's interval (diagnostics.break_calibration); 'after Holm' counts the "
    "breaks that survive Holm's correction over those pairs.",
    "",
    "| " + " | ".join(header) + " |",
    "|" + "---|" * len(header),
  ]
  for seed, frame in sorted(health.items()):
    for which in ("served", "own"):
      part = diagnostics.health_rows(frame, which)
      if part.height == 0:
        continue
      c = diagnostics.health_counts(part)
      worst = c["worst_minus_next_bps"]
      lines.append(
        f"| {seed} | {which} | {c['collapsed']} of {part.height} | {c['breaks']} | "
        f"{c['chance_breaks']:.2f} of {c['tested_pairs']} pairs | {c['holm_breaks']} | "
        f"{'n/a' if worst is None else f'{worst:+.2f}'} |"
      )
  return "\n".join(lines) + "\n"


def common_rows(frames: dict, column: str) -> tuple[dict, dict]:
  """Each seed's frame cut to the `column` values (strategies, baselines) every seed reports.

  A strategy only some seeds have (e.g. PPO, trained into one seed's run) cannot have an
  across-seed spread; it is returned as {value: [seeds that have it]} to be named, not dropped
  silently.
  """
  values = {seed: set(frame[column].unique()) for seed, frame in frames.items()}
  common = set.intersection(*values.values())
  left = sorted(set.union(*values.values()) - common)
  cut = {seed: frame.filter(pl.col(column).is_in(sorted(common))) for seed, frame in frames.items()}
  return cut, {v: [seed for seed in sorted(values) if v in values[seed]] for v in left}


def write_summary(
  workdir: str, seeds: list[int], benchmark: str, target: str, n_ahead: int, name: str
) -> dict:
  """Reads each seed's stats.csv and paired_differences.csv and writes the across-seed tables."""
  stats, paired, health = {}, {}, {}
  for seed in seeds:
    run = seed_workdir(workdir, seed)
    tables = (("stats.csv", stats), ("paired_differences.csv", paired), ("head_health.csv", health))
    for table, store in tables:
      path = os.path.join(run, table)
      if not os.path.exists(path):
        raise FileNotFoundError(
          f"{path} is missing: evaluate seed {seed} first (`--mode=eval --workdir={run}`)"
        )
      store[seed] = pl.read_csv(path)
  stats, left_stats = common_rows(stats, "strategy")
  paired, left_paired = common_rows(paired, "baseline")
  stats_frame = across_seeds(stats, STATS_KEYS, "mean_bps")
  paired_frame = across_seeds(paired, PAIRED_KEYS, "lem_minus_baseline_bps")
  out = summary_dir(workdir)
  os.makedirs(out, exist_ok=True)
  stats_frame.write_csv(os.path.join(out, "seeds.csv"))
  paired_frame.write_csv(os.path.join(out, "seeds_paired.csv"))
  text = headline_markdown(stats_frame, paired_frame, benchmark, target, n_ahead, name)
  clusters = sorted({int(c) for frame in stats.values() for c in frame["n_clusters"].unique()})
  text += (
    f"\nEach seed's intervals: clustered bootstrap over {', '.join(map(str, clusters))} start-time "
    "groups of test orders (stats.csv, n_clusters).\n\n" + health_markdown(health)
  )
  left = {**left_stats, **{f"LEM minus {k}": v for k, v in left_paired.items()}}
  if left:
    text += (
      "\nNot aggregated (reported by some seeds only): "
      + "; ".join(f"{name} (seeds {', '.join(map(str, got))})" for name, got in left.items())
      + ".\n"
    )
  with open(os.path.join(out, "seeds.md"), "w") as f:
    f.write(text)
  logging.info("across-seed tables written to %s", out)
  return {"dir": out, "stats": stats_frame, "paired": paired_frame, "markdown": text}


def run_seeds(config, workdir: str, n_seeds: int, train_fn, evaluate_fn) -> dict:
  """Trains (resuming) and evaluates seeds config.seed .. config.seed + n_seeds - 1, then summarises.

  Args:
    config: the experiment ConfigDict.
    workdir: base work directory; seed i lives in `<workdir>_seed<i>`.
    n_seeds: how many seeds.
    train_fn, evaluate_fn: (config, workdir) callables (train.train_and_evaluate, evaluate.evaluate).
  """
  if n_seeds < 1:
    raise ValueError(f"--seeds={n_seeds} must be at least 1")
  seeds = [int(config.seed) + i for i in range(n_seeds)]
  for i, seed in enumerate(seeds):
    logging.info("seed %d (%d of %d) into %s", seed, i + 1, n_seeds, seed_workdir(workdir, seed))
    cfg = seed_config(config, seed)
    train_fn(cfg, seed_workdir(workdir, seed))
    evaluate_fn(cfg, seed_workdir(workdir, seed))
  return write_summary(
    workdir,
    seeds,
    config.eval.benchmark,
    config.eval.target,
    int(config.model.n_ahead),
    config.name,
  )
