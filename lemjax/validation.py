"""Training's order terms and validation: per-order rate bounds, the fixed validation set and its
metrics (with the per-head early-end shares that reveal a collapsed head)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from lemjax import config as config_lib
from lemjax import costs as costs_lib
from lemjax import diagnostics
from lemjax import sharding
from lemjax.model import model_batch


def sample_order_terms(
  rng: jax.Array, batch: int, n_ahead: int, r_min_range, r_max_range
) -> tuple[jax.Array, jax.Array]:
  """Per-order rate bounds drawn uniformly, made feasible: r_min * N <= 1 <= r_max * N.

  Returns:
    (r_min_B, r_max_B), each [batch] float32 fractions of the parent order.
  """
  k_min, k_max = jax.random.split(rng)
  uniform = 1.0 / n_ahead
  r_min_B = jax.random.uniform(k_min, (batch,), jnp.float32, *r_min_range)
  r_max_B = jax.random.uniform(k_max, (batch,), jnp.float32, *r_max_range)
  return jnp.minimum(r_min_B, uniform), jnp.maximum(r_max_B, uniform)


def validation_batches(
  dataset,
  cfg: config_lib.TrainConfig,
  n_ahead: int,
  seed: int,
  mesh: jax.sharding.Mesh | None = None,
  costs: config_lib.CostConfig | None = None,
) -> list:
  """Fixed validation orders: evenly spaced windows with fixed, seeded order terms.

  Args:
    mesh: a mesh of several devices places each batch on it (`place_validation_batch`);
      None or a single device keeps them on the default device.
    costs: with costs enabled, every batch also holds fixed, seeded order sizes under "size".

  Returns:
    A list of (batch dict on device, r_min_B, r_max_B) with equal shapes.
  """
  size = max(cfg.val_batch_size, 1)
  n_batches = max(cfg.val_orders // size, 1)
  if dataset.num_windows < 1:
    raise ValueError("the validation split holds no windows; widen data.val_start/val_end")
  # Evenly spaced over the split; with too few windows they repeat (fixed shapes either way).
  idx = np.floor(np.linspace(0, dataset.num_windows, n_batches * size, endpoint=False))
  idx = idx.astype(np.int64).reshape(n_batches, size)
  out = []
  for i, rows in enumerate(idx):
    r_min_B, r_max_B = sample_order_terms(
      jax.random.PRNGKey(seed + 7919 * (i + 1)), size, n_ahead, cfg.r_min_range, cfg.r_max_range
    )
    batch = model_batch(dataset.batch(rows))
    if costs is not None and costs.enabled:
      key = jax.random.PRNGKey(seed + 7919 * (i + 1) + 1)
      batch["size"] = np.asarray(costs_lib.sample_sizes(key, size, costs.size_range))
    if mesh is None or mesh.size == 1:
      out.append((jax.device_put(batch), r_min_B, r_max_B))
    else:
      out.append(place_validation_batch(batch, r_min_B, r_max_B, mesh))
  return out


def place_validation_batch(batch: dict, r_min_B, r_max_B, mesh: jax.sharding.Mesh) -> tuple:
  """(batch, r_min_B, r_max_B) as global arrays on `mesh`.

  Every process builds the same full batch; each places its own rows. Split over `data` when
  the batch size allows it, else replicated.
  """
  full = {**batch, "r_min": np.asarray(r_min_B), "r_max": np.asarray(r_max_B)}
  rows = len(full["r_min"])
  if rows % mesh.shape[sharding.DATA_AXIS] == 0 and rows % jax.process_count() == 0:
    mine = sharding.host_rows(np.arange(rows))
    placed = sharding.put_batch({k: v[mine] for k, v in full.items()}, mesh)
  else:
    rep = sharding.replicated(mesh)
    placed = {
      k: jax.make_array_from_callback(v.shape, rep, lambda i, v=v: v[i]) for k, v in full.items()
    }
  r_min, r_max = placed.pop("r_min"), placed.pop("r_max")
  return placed, r_min, r_max


def validate(state, batches: list, eval_fn: Callable) -> dict:
  """Mean validation metrics over the fixed batches (one host sync).

  `eval_fn(state, batch, r_min_B, r_max_B) -> metrics` is the (jitted) eval step.

  Scalars come back as floats, per-head metrics as [K, S] numpy arrays (batches are equal-sized).
  """
  metrics = [eval_fn(state, b, lo, hi) for b, lo, hi in batches]
  stacked = jax.device_get(metrics)
  out = {k: np.mean([m[k] for m in stacked], axis=0) for k in stacked[0]}
  return {k: float(v) if np.ndim(v) == 0 else v for k, v in out.items()}


def log_collapsed_heads(step: int, val: dict, rewarming: bool = False) -> list[str]:
  """Warns about every flexible head that stopped using the end-date option (lemjax/diagnostics.py),
  pointing to `loss.mask_rewarm_collapsed` unless `rewarming` says it is on."""
  lines = diagnostics.collapse_warnings(val["early_KxS"])
  if lines:
    hint = (
      "" if rewarming else "\n  (--config.loss.mask_rewarm_collapsed=True restarts their anneal)"
    )
    logging.warning(
      "step %d: %d collapsed heads:\n  %s%s", step, len(lines), "\n  ".join(lines), hint
    )
  return lines


def val_record(val: dict) -> dict:
  """Validation metrics for metrics.jsonl, [K, S] arrays rounded to keep the lines short."""
  return {k: np.round(v, 4) if np.ndim(v) else v for k, v in val.items()}
