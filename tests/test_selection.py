"""Tests for lemjax.selection: embedding, grouped dense, GRN, variable selection, gated skip."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lemjax import selection

N, F, E, H = 10, 3, 4, 6


def _init_apply(module, *args):
  params = jax.jit(module.init)(jax.random.key(0), *args)["params"]
  return params, jax.jit(module.apply)({"params": params}, *args)


def test_feature_embedding_is_one_affine_map_per_feature():
  x = jax.random.normal(jax.random.key(1), (2, 5, F))
  params, e = _init_apply(selection.FeatureEmbedding(E), x)
  assert e.shape == (2, 5, F, E)
  for f in range(F):
    want = x[..., f : f + 1] * params["kernel"][f][None, None] + params["bias"][f][None, None]
    np.testing.assert_allclose(e[:, :, f], want, rtol=1e-6, atol=1e-6)


def test_grouped_dense_equals_separate_dense_per_group():
  x = jax.random.normal(jax.random.key(1), (F, N, E))
  params, y = _init_apply(selection.GroupedDense(H), x)
  assert y.shape == (F, N, H)
  for g in range(F):
    dense = {"kernel": params["kernel"][g], "bias": params["bias"][g]}
    np.testing.assert_allclose(y[g], nn.Dense(H).apply({"params": dense}, x[g]), atol=1e-5)
  assert not np.allclose(params["kernel"][0], params["kernel"][1])  # groups start different


def test_grn_skip_and_layer_norm():
  x = jax.random.normal(jax.random.key(1), (N, E))
  params, y = _init_apply(selection.GRN(8, H), x)
  assert "skip" in params and y.shape == (N, H)
  # Default layer-norm scale 1 and bias 0: every row is standardised.
  np.testing.assert_allclose(y.mean(-1), 0.0, atol=1e-5)
  np.testing.assert_allclose(y.std(-1), 1.0, atol=1e-2)
  params_same, _ = _init_apply(selection.GRN(8, E), x)
  assert "skip" not in params_same  # identity skip when widths match


def test_variable_selection_equals_per_feature_loop():
  e = jax.random.normal(jax.random.key(1), (N, F, E))
  vsn = selection.VariableSelection(H, feature_hidden=5)
  params, out = _init_apply(vsn, e)
  assert out.shape == (N, H)
  logits = selection.GRN(H, F).apply({"params": params["weights"]}, e.reshape(N, F * E))
  weights = jax.nn.softmax(logits, axis=-1)
  np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-6)
  want = jnp.zeros((N, H))
  grn = selection.GRN(5, H)
  for f in range(F):
    p_f = jax.tree.map(lambda a, f=f: a[f], params["features"])
    p_f["norm"] = {"scale": p_f.pop("norm_scale"), "bias": p_f.pop("norm_bias")}
    want = want + weights[:, f : f + 1] * grn.apply({"params": p_f}, e[:, f])
  np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)


def test_gated_skip_norm_and_shape_checks():
  x = jax.random.normal(jax.random.key(1), (N, H))
  skip = jax.random.normal(jax.random.key(2), (N, H))
  params, y = _init_apply(selection.GatedSkipNorm(), x, skip)
  glu = selection.GatedLinearUnit(H).apply({"params": params["glu"]}, x)
  np.testing.assert_allclose(
    y, nn.LayerNorm().apply({"params": params["norm"]}, skip + glu), atol=1e-5
  )
  with pytest.raises(ValueError, match="skip shape"):
    selection.GatedSkipNorm().init(jax.random.key(0), x, skip[:, :3])
  with pytest.raises(ValueError, match=r"\[Z, F, E\]"):
    selection.VariableSelection(H, 5).init(jax.random.key(0), x)
