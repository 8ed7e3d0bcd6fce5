"""A live order's carry on disk: named numpy arrays, and .npz files written atomically."""

from __future__ import annotations

import os
from collections.abc import Mapping

import jax
import numpy as np

from lemjax.online import carry as carry_lib
from lemjax.online.carry import Carry
from lemjax.online.policy import Policy


def carry_to_dict(carry: Carry) -> dict[str, np.ndarray]:
  """The carry as named numpy arrays (e.g. for np.savez or a database row)."""
  return {
    jax.tree_util.keystr(path): np.asarray(leaf)
    for path, leaf in jax.tree_util.tree_flatten_with_path(carry)[0]
  }


def carry_from_dict(policy: Policy, arrays: Mapping[str, np.ndarray]) -> Carry:
  """Inverse of `carry_to_dict`; ValueError when the arrays do not fit this policy."""
  template = jax.eval_shape(carry_lib.template, policy)
  lead = np.shape(arrays.get(".done", np.zeros(())))
  if policy.costs.spread == "config":  # carries saved before the field existed: not charged here
    arrays = {".half_spread_bps": np.zeros(lead, np.float32), **arrays}
  leaves = []
  for path, leaf in jax.tree_util.tree_flatten_with_path(template)[0]:
    name = jax.tree_util.keystr(path)
    if name not in arrays:
      raise ValueError(f"saved carry lacks {name!r}: not a lemjax.online order carry")
    value = np.asarray(arrays[name])
    if value.shape != lead + tuple(leaf.shape) or value.dtype != leaf.dtype:
      raise ValueError(
        f"saved carry {name!r} is {value.dtype}{list(value.shape)}, this policy "
        f"needs {leaf.dtype}{list(lead + tuple(leaf.shape))}"
      )
    leaves.append(value)
  return jax.tree.unflatten(jax.tree.structure(template), leaves)


def save_carry(path: str, carry: Carry) -> None:
  """Writes the carry to an .npz file (atomically: a crash never leaves half a carry)."""
  tmp = f"{path}.tmp.npz"
  np.savez(tmp, **carry_to_dict(carry))
  os.replace(tmp, path)


def load_carry(policy: Policy, path: str) -> Carry:
  with np.load(path) as data:
    return carry_from_dict(policy, {k: data[k] for k in data.files})
