"""Evaluation statistics: summaries of per-order improvements and block-bootstrap intervals.

Orders are not independent samples: orders of different assets that start in the same bar share
one market move, and neighbouring start times are serially correlated, so an interval that
resamples single orders is too narrow. The unit of resampling here is the start group (all orders
with one start time), and `block_length` consecutive start groups are drawn together: a
moving-block bootstrap over start times that wraps circularly, so that every group is equally
likely (block_length=1 is the plain cluster bootstrap; one group per order and block_length=1 is
the i.i.d. order bootstrap).

The `arch` package (8.0.0) has Moving/Circular block and stationary bootstraps, but it makes pandas
and statsmodels core dependencies and calls the statistic once per replicate in a Python loop;
here the group sums are formed once and all replicates are one matrix product.

NaN is not skipped: a NaN improvement propagates into every mean and interval of its column.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from lemjax import objectives
from lemjax import scenarios

_PERCENTILES = (5, 25, 50, 75, 95)


# ----------------------------------------------------------------------------- groups


def start_groups(origin_B):
  """Start groups: all orders with the same start time form one group.

  Args:
    origin_B: start time of each order (int, e.g. epoch ms), [B].

  Returns:
    (group_B, G): int64 group of each order in 0..G-1, numbered in order of start time, and the
    number of groups G.
  """
  origin = np.asarray(origin_B)
  if origin.ndim != 1:
    raise ValueError(f"origin_B.shape={origin.shape}, expected [B]")
  starts, group_B = np.unique(origin, return_inverse=True)
  return group_B.reshape(-1).astype(np.int64), int(starts.size)


def _dense_groups(group_B, b: int):
  """(group_B in 0..G-1, G): labels ranked in their order, unused labels dropped; None: one
  group per order, in array order."""
  if group_B is None:
    return np.arange(b, dtype=np.int64), b
  group = np.asarray(group_B)
  if group.shape != (b,) or not np.issubdtype(group.dtype, np.integer):
    raise ValueError(f"group_B has shape {group.shape} and dtype {group.dtype}, expected int [{b}]")
  labels, dense_B = np.unique(group, return_inverse=True)
  return dense_B.reshape(-1).astype(np.int64), int(labels.size)


def _n_blocks(g: int, block_length: int) -> int:
  """ceil(G / block_length), after checking that blocks shorter than G leave something to draw."""
  if block_length < 1 or (block_length > 1 and block_length >= g):
    raise ValueError(
      f"block_length={block_length} must be 1 or less than the G={g} start groups "
      f"(a block of all groups gives a zero-width interval)"
    )
  return math.ceil(g / block_length)


def fitted_block_length(block_length: int, g: int) -> int:
  """`block_length`, shortened to G - 1 (at least 1) for subsets with few start groups."""
  return max(1, min(int(block_length), g - 1))


# ----------------------------------------------------------------------------- bootstrap


def _block_sums(x_BxM, group_B, g: int, block_length: int):
  """(sums_GxM, counts_G) of the G circular blocks: block j holds groups j .. j+L-1 (mod G)."""
  group_sums_GxM = np.zeros((g, x_BxM.shape[1]))
  np.add.at(group_sums_GxM, group_B, x_BxM)
  group_counts_G = np.bincount(group_B, minlength=g).astype(np.float64)
  sums_GxM, counts_G = np.zeros_like(group_sums_GxM), np.zeros_like(group_counts_G)
  for i in range(block_length):
    sums_GxM += np.roll(group_sums_GxM, -i, axis=0)
    counts_G += np.roll(group_counts_G, -i)
  return sums_GxM, counts_G


def block_bootstrap_means(
  x_BxM, group_B, *, block_length: int, n_boot: int, seed: int, max_cells: int = 4_000_000
):
  """Moving-block bootstrap distribution of the column means, over start groups.

  Each resample draws ceil(G / block_length) block starts uniformly from 0..G-1, the rows of
  `np.random.default_rng(seed).integers(0, G, size=(n_boot, n_blocks))` (drawn in chunks of
  rows, the same starts for any max_cells); the block from start j holds the groups
  j .. j+block_length-1, wrapping past G-1 to 0. A resample's mean is the sum of its groups' sums
  over the sum of their order counts.

  Args:
    x_BxM: samples (numpy), B orders by M statistics.
    group_B: start group of each order (int, ordered by start time, e.g. from `start_groups`);
      None makes every order its own group, in array order.
    block_length: consecutive start groups per block (1: cluster bootstrap).
    n_boot: resamples.
    seed: numpy seed; the same seed resamples the same groups for every column (and every call
      with the same groups), which keeps paired comparisons consistent.
    max_cells: bounds the [rows, G] block-count matrix held in memory at once.

  Returns:
    means_RxM, float64, R = n_boot.
  """
  x = np.asarray(x_BxM, np.float64)
  if x.ndim != 2 or x.shape[0] < 1:
    raise ValueError(f"x_BxM.shape={x.shape}, expected [B, M] with B >= 1")
  if n_boot < 1:
    raise ValueError(f"n_boot={n_boot} must be at least 1")
  group, g = _dense_groups(group_B, x.shape[0])
  n_blocks = _n_blocks(g, block_length)
  sums_GxM, counts_G = _block_sums(x, group, g, block_length)
  rng = np.random.default_rng(seed)
  chunk = max(1, max_cells // max(g, n_blocks))
  out = []
  for start in range(0, n_boot, chunk):
    rows = min(chunk, n_boot - start)
    starts_RxC = rng.integers(0, g, size=(rows, n_blocks))
    # How often each block start was drawn in each resample, as a [rows, G] matrix.
    flat = (np.arange(rows)[:, None] * g + starts_RxC).ravel()
    w_RxG = np.bincount(flat, minlength=rows * g).reshape(rows, g).astype(np.float64)
    out.append((w_RxG @ sums_GxM) / (w_RxG @ counts_G)[:, None])
  return np.concatenate(out, axis=0)


def block_bootstrap_ratios(num_BxM, den_BxM, group_B, *, block_length: int, n_boot: int, seed: int):
  """Moving-block bootstrap of mean(num) / mean(den) per column, over start groups: [R, M].

  Both means come from the same resample (`block_bootstrap_means` on the columns side by side),
  e.g. a mean over each column's valid orders (num: values filled with 0, den: validity) or a
  ratio of two mean squared errors. A resample whose den mean is 0 gives inf or NaN.
  """
  num, den = np.asarray(num_BxM, np.float64), np.asarray(den_BxM, np.float64)
  if num.shape != den.shape or num.ndim != 2:
    raise ValueError(f"num.shape={num.shape} and den.shape={den.shape} must match, [B, M]")
  boot = block_bootstrap_means(
    np.concatenate([num, den], axis=1),
    group_B,
    block_length=block_length,
    n_boot=n_boot,
    seed=seed,
  )
  m = num.shape[1]
  with np.errstate(invalid="ignore", divide="ignore"):
    return boot[:, :m] / boot[:, m:]


def cluster_interval(
  x_BxM, group_B, *, block_length: int, n_boot: int, seed: int, level: float
) -> dict:
  """Column means with percentile intervals of the moving-block bootstrap over start groups.

  Args:
    x_BxM, group_B, block_length, n_boot, seed: as in `block_bootstrap_means`.
    level: interval coverage, e.g. 0.95.

  Returns:
    dict: mean, ci_lo, ci_hi ([M] arrays), n_clusters (G) and n_blocks (blocks per resample).
  """
  if not 0.0 < level < 1.0:
    raise ValueError(f"level={level} must lie in (0, 1)")
  x = np.asarray(x_BxM, np.float64)
  boot_RxM = block_bootstrap_means(x, group_B, block_length=block_length, n_boot=n_boot, seed=seed)
  g = _dense_groups(group_B, x.shape[0])[1]
  tail = (1.0 - level) / 2 * 100
  lo, hi = np.percentile(boot_RxM, [tail, 100 - tail], axis=0)
  return {
    "mean": x.mean(0),
    "ci_lo": lo,
    "ci_hi": hi,
    "n_clusters": g,
    "n_blocks": _n_blocks(g, block_length),
  }


def paired_difference(
  a_Bx, b_Bx, group_B, *, block_length: int, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> dict:
  """Mean of a - b over the same orders, with a block-bootstrap interval over start groups.

  Args:
    a_Bx, b_Bx: per-order metrics of two strategies (e.g. improvement in bps), same shape,
      orders on axis 0 and any trailing axes (e.g. [B, K, S]).
    group_B: start group of each order (see `block_bootstrap_means`); None: one per order.
    block_length, n_boot, seed, level: start groups per block, resamples, numpy seed, coverage.

  Returns:
    dict: mean, ci_lo, ci_hi (arrays over the trailing axes), n (orders), n_clusters, n_blocks.
  """
  a, b = np.asarray(a_Bx, np.float64), np.asarray(b_Bx, np.float64)
  if a.shape != b.shape or a.ndim < 1:
    raise ValueError(f"a_Bx.shape={a.shape} and b_Bx.shape={b.shape} must match (orders first)")
  d = cluster_interval(
    (a - b).reshape(a.shape[0], -1),
    group_B,
    block_length=block_length,
    n_boot=n_boot,
    seed=seed,
    level=level,
  )
  shape = a.shape[1:]
  return {
    "mean": d["mean"].reshape(shape),
    "ci_lo": d["ci_lo"].reshape(shape),
    "ci_hi": d["ci_hi"].reshape(shape),
    "n": a.shape[0],
    "n_clusters": d["n_clusters"],
    "n_blocks": d["n_blocks"],
  }


# ----------------------------------------------------------------------------- summaries


def summarize_improvement(
  imp_BxKxS,
  ended_early_BxKxS,
  group_B,
  *,
  block_length: int,
  n_boot: int = 1000,
  seed: int = 0,
  level: float = 0.95,
):
  """Evaluation statistics per head and scenario from per-order improvements.

  Args:
    imp_BxKxS: improvement in bps (hard windows), orders on axis 0.
    ended_early_BxKxS: whether each order completed before its last bar.
    group_B: start group of each order (see `block_bootstrap_means`); None: one per order.
    block_length, n_boot, seed, level: start groups per block, resamples, numpy seed, coverage.

  Returns:
    (stats, frame): stats is a dict of [K, S] numpy arrays (n, mean_bps, std_bps, mad_bps =
    mean |imp|, rmse_bps = sqrt(mean imp^2), the tracking error against the benchmark,
    median_bps, p5_bps, q25_bps, q75_bps, p95_bps, ci_lo, ci_hi, ended_early) and the ints
    n_clusters and n_blocks; frame is the same as a tidy polars DataFrame, one row per
    side x benchmark x target x head.
  """
  imp = np.asarray(imp_BxKxS, np.float64)
  if imp.ndim != 3 or imp.shape[2] != scenarios.NUM_SCENARIOS:
    raise ValueError(f"imp_BxKxS.shape={imp.shape}, expected [B, K, 8]")
  b, k, s = imp.shape
  early = np.asarray(ended_early_BxKxS, np.float64)
  if early.shape != imp.shape:
    raise ValueError(f"ended_early_BxKxS.shape={early.shape}, expected {imp.shape}")
  pct = np.percentile(imp, _PERCENTILES, axis=0)
  ci = cluster_interval(
    imp.reshape(b, k * s), group_B, block_length=block_length, n_boot=n_boot, seed=seed, level=level
  )
  stats = {
    "n": np.full((k, s), b),
    "mean_bps": imp.mean(0),
    "std_bps": imp.std(0, ddof=1) if b > 1 else np.zeros((k, s)),
    "mad_bps": np.abs(imp).mean(0),
    "rmse_bps": np.sqrt(np.square(imp).mean(0)),
    "median_bps": pct[2],
    "p5_bps": pct[0],
    "q25_bps": pct[1],
    "q75_bps": pct[3],
    "p95_bps": pct[4],
    "ci_lo": ci["ci_lo"].reshape(k, s),
    "ci_hi": ci["ci_hi"].reshape(k, s),
    "ended_early": early.mean(0),
    "n_clusters": ci["n_clusters"],
    "n_blocks": ci["n_blocks"],
  }
  return stats, stats_frame(stats, n_ahead=k - 1)


def stats_frame(stats: dict, n_ahead: int) -> pl.DataFrame:
  """One row per (scenario, head), columns side, benchmark, target, head, min_period, ..."""
  k, s = stats["mean_bps"].shape
  counts = ("n", "n_clusters", "n_blocks")
  rows = []
  for si, (side, bench, target) in enumerate(scenarios.SCENARIOS[:s]):
    for ki in range(k):
      row = {
        "side": side,
        "benchmark": bench,
        "target": target,
        "head": ki,
        "min_period": min(ki + 1, n_ahead),
        "fixed_duration": ki == n_ahead,
      }
      row.update({name: float(v[ki, si]) for name, v in stats.items() if name not in counts})
      row["n"] = int(stats["n"][ki, si])
      row["n_clusters"], row["n_blocks"] = int(stats["n_clusters"]), int(stats["n_blocks"])
      rows.append(row)
  columns = [
    "side",
    "benchmark",
    "target",
    "head",
    "min_period",
    "fixed_duration",
    "n",
    "n_clusters",
    "n_blocks",
    "mean_bps",
    "std_bps",
    "mad_bps",
    "rmse_bps",
    "median_bps",
    "p5_bps",
    "q25_bps",
    "q75_bps",
    "p95_bps",
    "ci_lo",
    "ci_hi",
    "ended_early",
  ]
  return pl.DataFrame(rows).select(columns)


def evaluation_metrics(
  alloc_BxNxKxS,
  prices_BxN,
  volumes_BxN,
  group_B,
  *,
  block_length: int,
  n_boot: int = 1000,
  seed: int = 0,
  level: float = 0.95,
):
  """Hard-window evaluation of allocations: `summarize_improvement` of `execution_summary`.

  Args:
    alloc_BxNxKxS, prices_BxN, volumes_BxN: as in `objectives.execution_summary`.
    group_B: start group of each order (see `block_bootstrap_means`); None: one per order.
    block_length, n_boot, seed, level: start groups per block, resamples, numpy seed, coverage.

  Returns:
    (stats dict of [K, S] arrays, polars DataFrame), see `summarize_improvement`.
  """
  summary = objectives.execution_summary(alloc_BxNxKxS, prices_BxN, volumes_BxN)
  return summarize_improvement(
    summary["improvement_bps"],
    summary["ended_early"],
    group_B,
    block_length=block_length,
    n_boot=n_boot,
    seed=seed,
    level=level,
  )
