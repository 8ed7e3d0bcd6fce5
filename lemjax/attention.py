"""Causal multi-head self-attention over the sequence axis, and its pure pieces for one query at a time.

`CausalSelfAttention` is `qkv`, a causal mask, then `attend`; the online encoder calls the same
two functions on the module's parameters (`dense(params["qkv"], ...)` as the projection) with
cached keys and values.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from lemjax import precision as precision_lib

Projection = Callable[[jax.Array], jax.Array]  # rows [N, D] -> [N, D']


def dense(params, x_ZxD: jax.Array, policy: str = "highest") -> jax.Array:
  """One of the attention's projections ("qkv" or "out" of its parameters) applied to rows,
  its matmul under `policy` (lemjax/precision.py)."""
  layer = precision_lib.dense(policy, params["kernel"].shape[-1])
  return layer.apply({"params": params}, x_ZxD)


def qkv(project: Projection, x_BxTxH: jax.Array, num_heads: int):
  """Scaled queries, keys and values, each [B, heads, T, H / heads], from one fused projection.

  Args:
    project: rows [N, H] -> [N, 3H], the "qkv" projection.
    x_BxTxH: [B, T, H] inputs.
    num_heads: attention heads; must divide H.
  """
  b, t, hid = x_BxTxH.shape
  dh = hid // num_heads
  qkv_Zx3H = project(x_BxTxH.reshape(b * t, hid))
  qkv_3xBxhxTxd = jnp.transpose(qkv_Zx3H.reshape(b, t, 3, num_heads, dh), (2, 0, 3, 1, 4))
  return qkv_3xBxhxTxd[0] * dh**-0.5, qkv_3xBxhxTxd[1], qkv_3xBxhxTxd[2]


def attend(
  project: Projection,
  q_BxhxQxd,
  k_BxhxKxd,
  v_BxhxKxd,
  visible_QxK,
  probs_fn: Callable[[jax.Array], jax.Array] | None = None,
  policy: str = "highest",
) -> jax.Array:
  """Q queries over K keys where `visible_QxK`, then the output projection: [B, Q, H].

  Args:
    project: rows [N, H] -> [N, H], the "out" projection.
    q_BxhxQxd, k_BxhxKxd, v_BxhxKxd: as `qkv` returns them (keys and values may be a cache).
    visible_QxK: bool, which keys each query may read.
    probs_fn: applied to the attention weights [B, heads, Q, K] (dropout); None: identity.
    policy: matmul policy of the two attention products (lemjax/precision.py).
  """
  b, heads, q_len, dh = q_BxhxQxd.shape
  logits = precision_lib.einsum(policy, "bhqd,bhkd->bhqk", q_BxhxQxd, k_BxhxKxd)
  # Masked logits get the most negative float: exp underflows to exactly 0, so hidden keys
  # contribute exact zeros (bit-for-bit causal), not merely small weights.
  logits = jnp.where(visible_QxK[None, None], logits, jnp.finfo(logits.dtype).min)
  probs = nn.softmax(logits, axis=-1)
  if probs_fn is not None:
    probs = probs_fn(probs)
  out_BxhxQxd = precision_lib.einsum(policy, "bhqk,bhkd->bhqd", probs, v_BxhxKxd)
  out_ZxH = jnp.transpose(out_BxhxQxd, (0, 2, 1, 3)).reshape(b * q_len, heads * dh)
  return project(out_ZxH).reshape(b, q_len, heads * dh)


class CausalSelfAttention(nn.Module):
  """Position t attends to positions <= t only: [B, T, H] -> [B, T, H].

  One fused query/key/value matmul over all B * T rows, then per-head attention in a
  [B, heads, T, H / heads] layout (leading batch axes keep the batched matmuls canonical).

  Attributes:
    num_heads: attention heads; must divide H.
    dropout: dropout rate on the attention weights.
    precision: matmul policy (lemjax/precision.py).
  """

  num_heads: int
  dropout: float = 0.0
  precision: str = "highest"

  @nn.compact
  def __call__(self, x_BxTxH: jax.Array, *, deterministic: bool = True) -> jax.Array:
    if x_BxTxH.ndim != 3:
      raise ValueError(f"attention input must be [B, T, H], got shape {x_BxTxH.shape}")
    t, hid = x_BxTxH.shape[1:]
    if hid % self.num_heads:
      raise ValueError(f"hidden width {hid} is not divisible by num_heads={self.num_heads}")
    policy = self.precision
    q, k, v = qkv(precision_lib.dense(policy, 3 * hid, name="qkv"), x_BxTxH, self.num_heads)
    drop = nn.Dropout(self.dropout)
    return attend(
      precision_lib.dense(policy, hid, name="out"),
      q,
      k,
      v,
      jnp.tril(jnp.ones((t, t), jnp.bool_)),
      lambda probs: drop(probs, deterministic=deterministic),
      policy,
    )
