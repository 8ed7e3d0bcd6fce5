"""Tests for lemjax/online/encoder.py: prefill + step equal the full encoder, fixed-shape carry."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lemjax.config import EncoderConfig
from lemjax.encoder import Encoder
from lemjax.online import encoder as oe

CFG = EncoderConfig(
  n_features=3, embed_dim=4, hidden=8, n_tkan_layers=2, n_kan_sublayers=2, n_attention_heads=2
)
B, T = 3, 7


@pytest.fixture(scope="module")
def setup():
  model = Encoder(CFG)
  params = jax.jit(model.init)(jax.random.key(1), jnp.zeros((B, T, CFG.n_features)))["params"]
  traces = []

  def step(params, carry, x_BxF):
    traces.append(1)  # Python side effect: runs once per trace, never on cached calls.
    return oe.step(CFG, params, carry, x_BxF)

  prefill = jax.jit(functools.partial(oe.prefill, CFG), static_argnums=(2,))
  return jax.jit(model.apply), params, prefill, jax.jit(step), traces


def _inputs(seed):
  # Scaled so that the KAN splines see values inside and outside their grid.
  return 2.0 * jax.random.normal(jax.random.key(seed), (B, T, CFG.n_features))


@pytest.mark.parametrize("seed, p", [(0, 1), (1, 3), (2, T - 1), (3, T)])
def test_prefill_then_step_equals_full_encoder(setup, seed, p):
  full, params, prefill, step, _ = setup
  x = _inputs(seed)
  want = np.asarray(full({"params": params}, x))
  carry, ctx = prefill(params, x[:, :p], T)
  assert ctx.shape == (B, p, CFG.hidden) and int(carry.pos) == p
  np.testing.assert_allclose(ctx, want[:, :p], rtol=1e-5, atol=1e-5)
  for t in range(p, T):
    carry, ctx_t = step(params, carry, x[:, t])
    assert int(carry.pos) == t + 1
    np.testing.assert_allclose(ctx_t, want[:, t], rtol=1e-5, atol=1e-5, err_msg=f"position {t}")


def test_carry_has_fixed_shapes_and_step_compiles_once(setup):
  _, params, prefill, step, traces = setup
  x = _inputs(4)
  carry, _ = prefill(params, x[:, :2], T)
  spec = lambda c: jax.tree.map(lambda a: (a.shape, a.dtype), c)
  first = spec(carry)
  assert first == spec(oe.init_carry(CFG, B, T))
  step(params, carry, x[:, 2])  # compiles at most once here
  before = len(traces)
  for t in range(2, T):
    carry, _ = step(params, carry, x[:, t])
    assert spec(carry) == first
  assert len(traces) == before


def test_unseen_positions_stay_empty_and_past_the_end_is_dropped(setup):
  _, params, prefill, step, _ = setup
  x = _inputs(5)
  carry, _ = prefill(params, x[:, :3], T)
  for cached in (carry.keys_BxhxTxd, carry.values_BxhxTxd):
    assert np.all(np.asarray(cached)[:, :, 3:] == 0.0) and np.any(
      np.asarray(cached)[:, :, :3] != 0.0
    )
  full, _ = prefill(params, x, T)
  after, _ = step(params, full, x[:, 0])  # pos = T: nothing to store
  np.testing.assert_array_equal(after.keys_BxhxTxd, full.keys_BxhxTxd)
  np.testing.assert_array_equal(after.values_BxhxTxd, full.values_BxhxTxd)


def test_step_agrees_under_vmap_over_orders(setup):
  """The online API vmaps one-order carries (B = 1) over orders; same values as the batch."""
  _, params, prefill, step, _ = setup
  x = _inputs(6)
  carry, _ = prefill(params, x[:, :4], T)
  _, want = step(params, carry, x[:, 4])
  single = jax.tree.map(lambda a: a[:, None] if a.ndim else jnp.broadcast_to(a, (B,)), carry)
  _, got = jax.jit(jax.vmap(lambda c, r: oe.step(CFG, params, c, r)))(single, x[:, 4][:, None])
  np.testing.assert_allclose(got[:, 0], want, rtol=1e-5, atol=1e-6)


def test_bad_shapes_raise(setup):
  _, params, prefill, step, _ = setup
  x = _inputs(7)
  with pytest.raises(ValueError, match="x_BxPxF"):
    prefill(params, x[:, :, :2], T)
  with pytest.raises(ValueError, match="P=7"):
    prefill(params, x, T - 1)
  carry, _ = prefill(params, x[:, :2], T)
  with pytest.raises(ValueError, match="x_BxF"):
    step(params, carry, x[:2, 2])
