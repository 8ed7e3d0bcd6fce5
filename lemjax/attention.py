"""Causal multi-head self-attention over the sequence axis."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from lemjax.kan import PRECISION


class CausalSelfAttention(nn.Module):
  """Position t attends to positions <= t only: [B, T, H] -> [B, T, H].

  One fused query/key/value matmul over all B * T rows, then per-head attention in a
  [B, heads, T, H / heads] layout (leading batch axes keep the batched matmuls canonical).

  Attributes:
    num_heads: attention heads; must divide H.
    dropout: dropout rate on the attention weights.
  """
  num_heads: int
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x_BxTxH: jax.Array, *, deterministic: bool = True) -> jax.Array:
    if x_BxTxH.ndim != 3:
      raise ValueError(f"attention input must be [B, T, H], got shape {x_BxTxH.shape}")
    b, t, hid = x_BxTxH.shape
    heads = self.num_heads
    if hid % heads:
      raise ValueError(f"hidden width {hid} is not divisible by num_heads={heads}")
    dh = hid // heads
    qkv = nn.Dense(3 * hid, precision=PRECISION, name="qkv")(x_BxTxH.reshape(b * t, hid))
    qkv_3xBxhxTxd = jnp.transpose(qkv.reshape(b, t, 3, heads, dh), (2, 0, 3, 1, 4))
    q, k, v = qkv_3xBxhxTxd[0] * dh ** -0.5, qkv_3xBxhxTxd[1], qkv_3xBxhxTxd[2]
    logits_BxhxTxT = jnp.einsum("bhqd,bhkd->bhqk", q, k, precision=PRECISION)
    # Masked logits get the most negative float: exp underflows to exactly 0, so the future
    # contributes exact zeros (bit-for-bit causal), not merely small weights.
    causal_TxT = jnp.tril(jnp.ones((t, t), jnp.bool_))
    logits_BxhxTxT = jnp.where(causal_TxT[None, None], logits_BxhxTxT,
                               jnp.finfo(logits_BxhxTxT.dtype).min)
    probs = nn.softmax(logits_BxhxTxT, axis=-1)
    probs = nn.Dropout(self.dropout)(probs, deterministic=deterministic)
    out_BxhxTxd = jnp.einsum("bhqk,bhkd->bhqd", probs, v, precision=PRECISION)
    out_NxH = jnp.transpose(out_BxhxTxd, (0, 2, 1, 3)).reshape(b * t, hid)
    return nn.Dense(hid, precision=PRECISION, name="out")(out_NxH).reshape(b, t, hid)
