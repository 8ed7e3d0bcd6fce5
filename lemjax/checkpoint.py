"""Orbax checkpoints of the training state: the latest one for resuming, the best one for evaluation."""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp

LATEST_DIR = "latest"  # rolling checkpoints for automatic resume
BEST_DIR = "best"  # the checkpoint with the lowest validation loss so far


def _manager(directory: str, max_to_keep: int) -> ocp.CheckpointManager:
  # Synchronous saves: the train step donates its state, so a background copy could race it.
  options = ocp.CheckpointManagerOptions(
    max_to_keep=max_to_keep, create=True, enable_async_checkpointing=False
  )
  return ocp.CheckpointManager(
    os.path.abspath(directory), options=options, item_names=("state", "meta")
  )


class Checkpointer:
  """Saves and restores `{state arrays, JSON metadata}` under `<workdir>/checkpoints/`.

  The array part is any pytree of arrays (params, optimizer state, step, PRNG key); the
  metadata part is a JSON-able dict (sampler position, early-stopping bookkeeping).
  """

  def __init__(self, workdir: str, max_to_keep: int = 2):
    root = os.path.join(workdir, "checkpoints")
    self.root = root
    self._latest = _manager(os.path.join(root, LATEST_DIR), max_to_keep)
    self._best = _manager(os.path.join(root, BEST_DIR), 1)

  def save(self, step: int, arrays: Any, meta: dict, *, best: bool = False) -> None:
    """Writes a checkpoint at `step`; `best=True` writes the best-model slot instead."""
    manager = self._best if best else self._latest
    args = ocp.args.Composite(state=ocp.args.StandardSave(arrays), meta=ocp.args.JsonSave(meta))
    manager.save(int(step), args=args, force=True)
    manager.wait_until_finished()

  def latest_step(self, *, best: bool = False) -> int | None:
    return (self._best if best else self._latest).latest_step()

  def restore(self, target: Any, *, best: bool = False, step: int | None = None):
    """Restores `(arrays, meta)` shaped like `target`; None when there is no checkpoint."""
    manager = self._best if best else self._latest
    step = manager.latest_step() if step is None else step
    if step is None:
      return None
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    out = manager.restore(
      step,
      args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
      ),
    )
    return out["state"], dict(out["meta"])

  def restore_subset(self, target: Any, *, best: bool = False, step: int | None = None):
    """Restores only the entries named in `target` (e.g. params and step), ignoring the rest.

    Evaluation needs no optimiser state, so it reads checkpoints of any optimiser.
    """
    manager = self._best if best else self._latest
    step = manager.latest_step() if step is None else step
    if step is None:
      return None
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    state = ocp.args.PyTreeRestore(
      abstract,
      restore_args=ocp.checkpoint_utils.construct_restore_args(abstract),
      partial_restore=True,
    )
    out = manager.restore(step, args=ocp.args.Composite(state=state, meta=ocp.args.JsonRestore()))
    return out["state"], dict(out["meta"])

  def close(self) -> None:
    self._latest.close()
    self._best.close()


def best_checkpoint_dir(workdir: str) -> str:
  return os.path.join(workdir, "checkpoints", BEST_DIR)
