"""Causal multi-head self-attention over the sequence axis."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from lemjax.kan import PRECISION


class CausalSelfAttention(nn.Module):
  """Position t attends to positions <= t only: [B, T, H] -> [B, T, H].

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
    hid = x_BxTxH.shape[-1]
    if hid % self.num_heads:
      raise ValueError(f"hidden width {hid} is not divisible by num_heads={self.num_heads}")
    t = x_BxTxH.shape[1]
    # One [1, 1, T, T] lower-triangular mask, broadcast over batch and heads by flax.
    mask_1x1xTxT = jnp.tril(jnp.ones((t, t), jnp.bool_))[None, None]
    return nn.MultiHeadDotProductAttention(
        num_heads=self.num_heads, qkv_features=hid, out_features=hid,
        dropout_rate=self.dropout, deterministic=deterministic,
        precision=PRECISION, name="mha")(x_BxTxH, x_BxTxH, mask=mask_1x1xTxT)
