"""Per-feature embedding, gated residual networks and variable selection (as in the TFT)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from lemjax.kan import PRECISION


class FeatureEmbedding(nn.Module):
  """Each scalar feature through its own affine map: [B, T, F] -> [B, T, F, E]."""
  embed_dim: int

  @nn.compact
  def __call__(self, x_BxTxF: jax.Array) -> jax.Array:
    if x_BxTxF.ndim != 3:
      raise ValueError(f"FeatureEmbedding input must be [B, T, F], got shape {x_BxTxF.shape}")
    f = x_BxTxF.shape[-1]
    w_FxE = self.param("kernel", nn.initializers.normal(1.0), (f, self.embed_dim))
    b_FxE = self.param("bias", nn.initializers.zeros_init(), (f, self.embed_dim))
    e_BxTxFxE = jnp.einsum("btf,fe->btfe", x_BxTxF, w_FxE, precision=PRECISION)
    return e_BxTxFxE + b_FxE[None, None]


class GatedLinearUnit(nn.Module):
  """`dense(x) * sigmoid(dense(x))`: [..., D] -> [..., O], one fused matmul."""
  features: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    both = nn.Dense(2 * self.features, precision=PRECISION, name="dense")(x)
    value, gate = jnp.split(both, 2, axis=-1)
    return value * nn.sigmoid(gate)


class GRN(nn.Module):
  """Gated residual network: dense, ELU, dense, GLU, residual skip, layer norm.

  Attributes:
    hidden: width of the two inner dense layers.
    features: output width O; the skip is a linear map when the input width differs.
  """
  hidden: int
  features: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Maps [..., D] to [..., O]."""
    hidden = nn.elu(nn.Dense(self.hidden, precision=PRECISION, name="dense_0")(x))
    hidden = nn.Dense(self.hidden, precision=PRECISION, name="dense_1")(hidden)
    gated = GatedLinearUnit(self.features, name="glu")(hidden)
    skip = x
    if x.shape[-1] != self.features:
      skip = nn.Dense(self.features, precision=PRECISION, name="skip")(x)
    return nn.LayerNorm(name="norm")(skip + gated)


class GatedSkipNorm(nn.Module):
  """`layer_norm(skip + GLU(x))`, the gated skip connection around a block."""

  @nn.compact
  def __call__(self, x_BxTxH: jax.Array, skip_BxTxH: jax.Array) -> jax.Array:
    if x_BxTxH.shape != skip_BxTxH.shape:
      raise ValueError(f"x shape {x_BxTxH.shape} != skip shape {skip_BxTxH.shape}")
    gated = GatedLinearUnit(x_BxTxH.shape[-1], name="glu")(x_BxTxH)
    return nn.LayerNorm(name="norm")(skip_BxTxH + gated)


class VariableSelection(nn.Module):
  """Softmax-weighted sum of per-feature GRNs: [B, T, F, E] -> [B, T, H].

  A GRN over the flattened embeddings gives weights over the F features; every feature has
  its own GRN (parameters stacked on a leading F axis, evaluated in one batched matmul).

  Attributes:
    hidden: H, output width (and inner width of the weighting GRN).
    feature_hidden: inner width of the per-feature GRNs.
  """
  hidden: int
  feature_hidden: int

  @nn.compact
  def __call__(self, e_BxTxFxE: jax.Array) -> jax.Array:
    if e_BxTxFxE.ndim != 4:
      raise ValueError(f"VariableSelection input must be [B, T, F, E], got {e_BxTxFxE.shape}")
    b, t, f, e = e_BxTxFxE.shape
    flat_BxTxFE = e_BxTxFxE.reshape(b, t, f * e)
    weights_BxTxF = nn.softmax(GRN(self.hidden, f, name="weights")(flat_BxTxFE), axis=-1)
    per_feature = nn.vmap(GRN, variable_axes={"params": 0}, split_rngs={"params": True},
                          in_axes=2, out_axes=2)
    z_BxTxFxH = per_feature(self.feature_hidden, self.hidden, name="features")(e_BxTxFxE)
    return jnp.einsum("btf,btfh->bth", weights_BxTxF, z_BxTxFxH, precision=PRECISION)
