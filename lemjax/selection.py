"""Per-feature embedding, gated residual networks and variable selection (as in the TFT)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from lemjax import precision as precision_lib


class FeatureEmbedding(nn.Module):
  """Each scalar feature through its own affine map: [..., F] -> [..., F, E], one einsum."""

  embed_dim: int
  precision: str = "highest"  # matmul policy (lemjax/precision.py), here and in every module below

  @nn.compact
  def __call__(self, x_ZxF: jax.Array) -> jax.Array:
    if x_ZxF.ndim < 1:
      raise ValueError(f"FeatureEmbedding input needs a feature axis, got shape {x_ZxF.shape}")
    f = x_ZxF.shape[-1]
    w_FxE = self.param("kernel", nn.initializers.normal(1.0), (f, self.embed_dim))
    b_FxE = self.param("bias", nn.initializers.zeros_init(), (f, self.embed_dim))
    e_ZxFxE = precision_lib.einsum(self.precision, "...f,fe->...fe", x_ZxF, w_FxE)
    return e_ZxFxE + b_FxE.reshape((1,) * (x_ZxF.ndim - 1) + b_FxE.shape)


class GroupedDense(nn.Module):
  """G independent dense maps applied group-wise in one batched matmul: [G, N, D] -> [G, N, O]."""

  features: int
  precision: str = "highest"

  @nn.compact
  def __call__(self, x_GxZxD: jax.Array) -> jax.Array:
    if x_GxZxD.ndim != 3:
      raise ValueError(f"GroupedDense input must be [G, Z, D], got shape {x_GxZxD.shape}")
    g, _, d = x_GxZxD.shape
    init = nn.initializers.lecun_normal(batch_axis=(0,))
    w_GxDxO = self.param("kernel", init, (g, d, self.features))
    b_GxO = self.param("bias", nn.initializers.zeros_init(), (g, self.features))
    y_GxZxO = precision_lib.einsum(self.precision, "gnd,gdo->gno", x_GxZxD, w_GxDxO)
    return y_GxZxO + b_GxO[:, None, :]


def _dense(features: int, grouped: bool, policy: str, name: str) -> nn.Module:
  if grouped:
    return GroupedDense(features, policy, name=name)
  return precision_lib.dense(policy, features, name=name)


class GatedLinearUnit(nn.Module):
  """`dense(x) * sigmoid(dense(x))`: [..., D] -> [..., O], one fused matmul.

  With `grouped`, the input is [G, N, D] and every group has its own weights.
  """

  features: int
  grouped: bool = False
  precision: str = "highest"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    both = _dense(2 * self.features, self.grouped, self.precision, "dense")(x)
    value, gate = jnp.split(both, 2, axis=-1)
    return value * nn.sigmoid(gate)


class GRN(nn.Module):
  """Gated residual network: dense, ELU, dense, GLU, residual skip, layer norm.

  Attributes:
    hidden: width of the two inner dense layers.
    features: output width O; the skip is a linear map when the input width differs.
    grouped: input is [G, N, D] and each of the G groups has its own weights.
  """

  hidden: int
  features: int
  grouped: bool = False
  precision: str = "highest"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Maps [..., D] (or [G, N, D] when grouped) to [..., O]."""
    policy = self.precision
    hidden = nn.elu(_dense(self.hidden, self.grouped, policy, "dense_0")(x))
    hidden = _dense(self.hidden, self.grouped, policy, "dense_1")(hidden)
    gated = GatedLinearUnit(self.features, self.grouped, policy, name="glu")(hidden)
    skip = x
    if x.shape[-1] != self.features:
      skip = _dense(self.features, self.grouped, policy, "skip")(x)
    if not self.grouped:
      return nn.LayerNorm(name="norm")(skip + gated)
    # Per-group layer-norm scale and bias, shaped [G, O] like the grouped dense biases.
    normed = nn.LayerNorm(use_scale=False, use_bias=False)(skip + gated)
    g = x.shape[0]
    scale_GxO = self.param("norm_scale", nn.initializers.ones_init(), (g, self.features))
    bias_GxO = self.param("norm_bias", nn.initializers.zeros_init(), (g, self.features))
    return normed * scale_GxO[:, None, :] + bias_GxO[:, None, :]


class GatedSkipNorm(nn.Module):
  """`layer_norm(skip + GLU(x))`, the gated skip connection around a block."""

  precision: str = "highest"

  @nn.compact
  def __call__(self, x_ZxH: jax.Array, skip_ZxH: jax.Array) -> jax.Array:
    if x_ZxH.shape != skip_ZxH.shape:
      raise ValueError(f"x shape {x_ZxH.shape} != skip shape {skip_ZxH.shape}")
    gated = GatedLinearUnit(x_ZxH.shape[-1], precision=self.precision, name="glu")(x_ZxH)
    return nn.LayerNorm(name="norm")(skip_ZxH + gated)


class VariableSelection(nn.Module):
  """Softmax-weighted sum of per-feature GRNs: [N, F, E] -> [N, H].

  A GRN over the flattened embeddings gives weights over the F features; every feature has
  its own GRN (weights stacked on a leading F axis, all evaluated in batched matmuls).

  Attributes:
    hidden: H, output width (and inner width of the weighting GRN).
    feature_hidden: inner width of the per-feature GRNs.
  """

  hidden: int
  feature_hidden: int
  precision: str = "highest"

  @nn.compact
  def __call__(self, e_ZxFxE: jax.Array) -> jax.Array:
    if e_ZxFxE.ndim != 3:
      raise ValueError(f"VariableSelection input must be [Z, F, E], got {e_ZxFxE.shape}")
    n, f, e = e_ZxFxE.shape
    logits_ZxF = GRN(self.hidden, f, precision=self.precision, name="weights")(
      e_ZxFxE.reshape(n, f * e)
    )
    weights_FxN = jnp.transpose(nn.softmax(logits_ZxF, axis=-1))
    z_FxNxH = GRN(
      self.feature_hidden, self.hidden, grouped=True, precision=self.precision, name="features"
    )(jnp.transpose(e_ZxFxE, (1, 0, 2)))
    # Weighted sum as a fused multiply-reduce: output [N, H] only.
    return jnp.sum(weights_FxN[:, :, None] * z_FxNxH, axis=0)
