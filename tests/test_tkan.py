"""Tests for lemjax.tkan: the cell + scan contract, gradients and causality."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lemjax import tkan

B, T, D, H, M = 3, 7, 5, 6, 2


@pytest.fixture(scope="module")
def setup():
  layer = tkan.TKAN(H, n_sublayers=M)
  x = jax.random.normal(jax.random.key(0), (B, T, D))
  params = jax.jit(layer.init)(jax.random.key(1), x)["params"]
  return layer, params, x


def _loss(layer, params, x):
  y = layer.apply({"params": params}, x)
  return jnp.sum(jnp.sin(3.0 * y) * jnp.arange(1.0, T + 1.0)[None, :, None])


def _grad(layer):
  return jax.jit(jax.grad(lambda p, x_: _loss(layer, p, x_), argnums=(0, 1)))


@pytest.fixture(scope="module")
def grads(setup):
  layer, params, x = setup
  return _grad(layer)(params, x)


def test_scan_equals_python_loop_over_cell(setup):
  layer, params, x = setup
  y_scan = jax.jit(layer.apply)({"params": params}, x)
  gates, sub = layer.apply({"params": params}, x, method=tkan.TKAN.project)
  cell = layer.make_cell()
  step = jax.jit(lambda p, c, x_t: tkan.tkan_step(cell, p, c, x_t))
  carry = tkan.initial_carry(B, H, M)
  ys = []
  for t in range(T):
    carry, y_t = step(params["cell"], carry, (gates[:, t], sub[:, t]))
    ys.append(y_t)
  assert y_scan.shape == (B, T, H)
  np.testing.assert_allclose(y_scan, jnp.stack(ys, axis=1), rtol=1e-5, atol=1e-6)
  # The output is the hidden state: the last step equals the final carry's h.
  np.testing.assert_allclose(y_scan[:, -1], carry[0], rtol=1e-5, atol=1e-6)


def test_outputs_and_gradients_finite_and_nonzero(setup, grads):
  layer, params, x = setup
  y = jax.jit(layer.apply)({"params": params}, x)
  assert np.all(np.isfinite(y))
  for path, g in jax.tree_util.tree_leaves_with_path(grads):
    name = jax.tree_util.keystr(path)
    assert np.all(np.isfinite(g)), name
    assert float(jnp.max(jnp.abs(g))) > 0.0, name


def test_batched_parameter_gradient_equals_plain_scan_gradient(setup, grads):
  layer, params, x = setup
  plain = tkan.TKAN(H, n_sublayers=M, fast_grad=False)
  g_plain = _grad(plain)(params, x)
  for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(g_plain)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
  np.testing.assert_array_equal(
    jax.jit(plain.apply)({"params": params}, x), jax.jit(layer.apply)({"params": params}, x)
  )


def test_stacked_layers_are_causal(setup):
  layer, params, x = setup
  second = tkan.TKAN(H, n_sublayers=M)
  params2 = second.init(jax.random.key(2), jnp.zeros((B, T, H)))["params"]
  run = jax.jit(lambda x_: second.apply({"params": params2}, layer.apply({"params": params}, x_)))
  y = run(x)
  s = 4
  y_perturbed = run(x.at[:, s:].add(10.0))
  np.testing.assert_array_equal(y[:, :s], y_perturbed[:, :s])
  assert not np.allclose(y[:, s:], y_perturbed[:, s:])


def test_rejects_bad_rank(setup):
  layer, params, _ = setup
  with pytest.raises(ValueError, match=r"\[B, T, D\]"):
    layer.apply({"params": params}, jnp.zeros((B, D)))
