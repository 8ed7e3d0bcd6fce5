"""Which trained head serves each min period: a smaller minimum may use any head of a larger one.

An order that may end after k bars may also end after k' > k bars, so the head trained for
minimum k' is a feasible schedule for it (same bounds, same horizon). Heads are trained
independently and a head with a small minimum can settle in a poorer optimum than its
neighbour (SPEC section 3: it has every option of the larger minimum and should not score
lower). `nested_head_map` picks, per scenario and min period, the flexible head with the best
mean improvement on validation orders among those of equal or larger minimum, so the served
improvement cannot fall as the minimum shrinks except by test noise. The fixed-duration head
(k = N) always serves itself: it tracks the benchmark instead of seeking improvement.

Picking the best of several noisy means favours the luckiest head (the winner's curse), and a
head chosen for a validation lead that is noise can then trail its neighbour on test.
`chained_head_map` (`eval.head_rule="chain"`) is the one-standard-error rule applied down the
chain of minima: min period k keeps its own head only where it beats the head serving k + 1 by
more than one clustered standard error of the paired difference on the validation orders, and
otherwise takes that head too. The served validation means still never fall as the minimum
shrinks, and a smaller minimum departs from a larger one's schedule only on evidence. It is not
the default: on the validation split it scored below the best-mean rule in all six default runs
(docs/study.md, "Choosing the served heads").

Evaluation writes the map to `<workdir>/head_map.json`; the online policy reads it from there,
so a live order gets the schedule the report scored.
"""

from __future__ import annotations

import json
import logging
import os

import numpy as np

from lemjax import stats as stats_lib

HEAD_MAP_FILE = "head_map.json"
HEAD_RULES = ("best", "chain")  # eval.head_rule: `nested_head_map`, `chained_head_map`
RULE_TEXT = {
  "best": "per scenario and min period k, the flexible head of minimum >= k with the best "
  "validation mean; the fixed head serves itself",
  "chain": "per scenario, from the largest flexible minimum down: min period k keeps its own head "
  "where its validation mean beats the head serving k + 1 by more than one clustered standard "
  "error of the paired difference, and otherwise takes that head; the fixed head serves itself",
}


def nested_head_map(val_mean_KxS) -> np.ndarray:
  """[K, S] int: the head serving each (min period, scenario), chosen on validation means.

  Args:
    val_mean_KxS: mean improvement (bps) of every head and scenario on validation orders,
      K = N + 1 heads (the last is the fixed-duration head). NaN never wins.

  Returns:
    head_map_KxS with head_map[k, s] >= k for flexible heads (the first maximum wins, so a
    head serves itself on ties) and head_map[N, s] = N.
  """
  means = np.asarray(val_mean_KxS, np.float64)
  if means.ndim != 2 or means.shape[0] < 2:
    raise ValueError(f"val_mean_KxS must be [K >= 2, S], got shape {means.shape}")
  n = means.shape[0] - 1
  means = np.nan_to_num(means, nan=-np.inf)
  head_map = np.empty(means.shape, np.int64)
  head_map[n] = n
  for k in range(n):
    head_map[k] = k + np.argmax(means[k:n], axis=0)
  return head_map


def chained_head_map(
  score_BxKxS, group_B, *, block_length: int, n_boot: int, seed: int, n_se: float = 1.0
) -> np.ndarray:
  """[K, S] int: the one-standard-error rule down the chain of minima (see the module docstring).

  Args:
    score_BxKxS: improvement (bps) of every head and scenario on each validation order, K = N + 1
      heads (the last is the fixed-duration head). An order with a NaN score in a compared pair
      is left out of that comparison.
    group_B: start-time group of each order (`stats.start_groups`); orders that start together
      share a market move, so they are resampled together.
    block_length, n_boot, seed: moving-block bootstrap settings (`stats.block_bootstrap_means`);
      the block length is shortened for few start groups.
    n_se: standard errors a head's mean must beat the next served head's by (1: the classic rule).

  Returns:
    head_map_KxS with head_map[N - 1, s] = N - 1, head_map[k, s] in {k, head_map[k + 1, s]} for
    the other flexible heads, and head_map[N, s] = N.
  """
  score = np.asarray(score_BxKxS, np.float64)
  if score.ndim != 3 or score.shape[1] < 2 or score.shape[0] < 2:
    raise ValueError(f"score_BxKxS must be [B >= 2, K >= 2, S], got shape {score.shape}")
  group, g = stats_lib.start_groups(np.asarray(group_B))
  if group.shape[0] != score.shape[0]:
    raise ValueError(f"group_B has {group.shape[0]} orders, score_BxKxS {score.shape[0]}")
  b, k_heads, s = score.shape
  n = k_heads - 1
  head_map = np.empty((k_heads, s), np.int64)
  head_map[n] = n
  head_map[n - 1] = n - 1
  length = stats_lib.fitted_block_length(block_length, g)
  for k in range(n - 2, -1, -1):
    nxt = score[:, head_map[k + 1], np.arange(s)]  # [B, S]: the head serving k + 1
    diff_BxS = score[:, k] - nxt
    valid_BxS = np.isfinite(diff_BxS)
    filled_BxS = np.where(valid_BxS, diff_BxS, 0.0)
    # Means over each column's valid orders: resample sums of the values and of the counts.
    boot_mean_RxS = stats_lib.block_bootstrap_ratios(
      filled_BxS, valid_BxS, group, block_length=length, n_boot=n_boot, seed=seed
    )
    with np.errstate(invalid="ignore", divide="ignore"):
      mean_S = filled_BxS.sum(0) / valid_BxS.sum(0)
    se_S = np.nanstd(boot_mean_RxS, axis=0)
    own = np.isfinite(mean_S) & (mean_S > n_se * np.nan_to_num(se_S, nan=np.inf))
    head_map[k] = np.where(own, k, head_map[k + 1])
  return head_map


def check_head_map(head_map_KxS, k: int, s: int) -> np.ndarray:
  """The map as int [K, S], checked: every flexible head served by one of equal or larger minimum."""
  head_map = np.asarray(head_map_KxS)
  if head_map.shape != (k, s) or not np.issubdtype(head_map.dtype, np.integer):
    raise ValueError(f"head map must be an int [K, S] = [{k}, {s}] array, got {head_map.shape}")
  own = np.arange(k)[:, None]
  flexible_ok = (head_map[:-1] >= own[:-1]) & (head_map[:-1] < k - 1)
  if not flexible_ok.all() or not (head_map[-1] == k - 1).all():
    bad = np.argwhere(~np.concatenate([flexible_ok, head_map[-1:] == k - 1]))[0]
    raise ValueError(
      f"head map entry [{bad[0]}, {bad[1]}] = {head_map[bad[0], bad[1]]} is not a flexible head "
      f"with minimum >= {bad[0] + 1} (or the fixed head serving itself)"
    )
  return head_map


def serve(alloc_BxNxKxS, head_map_KxS) -> np.ndarray:
  """Allocations [B, N, K, S] whose slot (k, s) holds head head_map[k, s]'s schedule for s."""
  alloc = np.asarray(alloc_BxNxKxS)
  k, s = alloc.shape[2:]
  head_map = check_head_map(head_map_KxS, k, s)
  return alloc[:, :, head_map, np.arange(s)[None, :]]


def save_head_map(
  workdir: str, head_map_KxS, val_mean_KxS, n_orders: int, step: int, rule: str = "best"
) -> str:
  """Writes head_map.json: the map, the validation means it came from, the order count, the
  training step of the checkpoint it was chosen for and the rule (`HEAD_RULES`) that chose it."""
  path = os.path.join(workdir, HEAD_MAP_FILE)
  with open(path, "w") as f:
    json.dump(
      {
        "head_map_KxS": np.asarray(head_map_KxS).tolist(),
        "val_mean_bps_KxS": np.round(np.asarray(val_mean_KxS, np.float64), 4).tolist(),
        "val_orders": int(n_orders),
        "checkpoint_step": int(step),
        "rule": RULE_TEXT[rule],
      },
      f,
      indent=1,
    )
  return path


def load_head_map(workdir: str, k: int, s: int, step: int) -> np.ndarray | None:
  """The saved map of a work directory as int [K, S] for the checkpoint of training step `step`.

  Returns None (own heads) when evaluation never wrote a map, or wrote it for another
  checkpoint (logged): a map chosen on one checkpoint's validation scores says nothing of another.
  """
  path = os.path.join(workdir, HEAD_MAP_FILE)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    try:
      saved = json.load(f)
      head_map = np.asarray(saved["head_map_KxS"], np.int64)
      saved_step = int(saved["checkpoint_step"])
    except (KeyError, ValueError, TypeError) as e:
      raise ValueError(f"{path}: no readable head_map_KxS / checkpoint_step ({e})") from e
  if saved_step != int(step):
    logging.warning(
      "%s was chosen for the checkpoint of step %d, not step %d: serving every head itself",
      path,
      saved_step,
      step,
    )
    return None
  try:
    return check_head_map(head_map, k, s)
  except ValueError as e:
    raise ValueError(f"{path}: {e}") from e
