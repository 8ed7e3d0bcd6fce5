"""Tests of the composed LEM: shapes, valid allocations, causality end to end, and input checks."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lemjax import config as config_lib
from lemjax import scenarios
from lemjax.model import LEM

L, N, F, B = 8, 4, 5, 3
CONFIG = config_lib.ModelConfig(
  lookback=L,
  n_ahead=N,
  encoder=config_lib.EncoderConfig(n_features=F, embed_dim=3, hidden=8, n_attention_heads=2),
  allocator=config_lib.AllocatorConfig(n_ahead=N, width=8),
)
T = CONFIG.seq_len


def _inputs(seed):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(B, T, F)).astype(np.float32)
  prices = (1 + 0.01 * rng.normal(size=(B, N))).astype(np.float32)
  volumes = rng.lognormal(size=(B, N)).astype(np.float32)
  return x, prices, volumes


@pytest.fixture(scope="module")
def model_fn():
  model = LEM(CONFIG)
  x, p, v = _inputs(0)
  r_min, r_max = jnp.full((B,), 0.05), jnp.full((B,), 0.6)
  params = jax.jit(model.init)(jax.random.PRNGKey(0), x, r_min, r_max, p, v)["params"]
  apply = jax.jit(lambda x, p, v: model.apply({"params": params}, x, r_min, r_max, p, v))
  return apply


def test_allocations_are_valid(model_fn):
  x, p, v = _inputs(1)
  a = np.asarray(model_fn(x, p, v))
  assert a.shape == (B, N, N + 1, scenarios.NUM_SCENARIOS) and a.dtype == np.float32
  assert np.isfinite(a).all() and (a >= 0).all()
  np.testing.assert_allclose(a.sum(1), 1.0, atol=1e-5)
  assert (a[:, :-1] <= 0.6 + 1e-5).all()


def test_decisions_ignore_the_future(model_fn):
  """Perturbing every input at bars >= s leaves the allocations of bars 0..s unchanged."""
  x, p, v = _inputs(2)
  base = np.asarray(model_fn(x, p, v))
  for s in (0, 2, N - 1):
    x2, p2, v2 = x.copy(), p.copy(), v.copy()
    x2[:, L + s :] += 5.0  # encoder position L-1+s holds bar t0+s-1; later ones are bars >= s
    p2[:, s:] *= 1.1
    v2[:, s:] *= 4.0
    moved = np.asarray(model_fn(x2, p2, v2))
    np.testing.assert_array_equal(base[:, : s + 1], moved[:, : s + 1])
    if s < N - 2:  # bars after s react (the last bar only takes the remainder of 0..N-2)
      assert not np.array_equal(base, moved)


def test_bad_shapes_raise():
  model = LEM(CONFIG)
  x, p, v = _inputs(0)
  r = jnp.zeros((B,))
  with pytest.raises(ValueError, match="inputs_BxTxF"):
    model.init(jax.random.PRNGKey(0), x[:, 1:], r, r + 1, p, v)
  with pytest.raises(ValueError, match="prices_BxN"):
    model.init(jax.random.PRNGKey(0), x, r, r + 1, p[:, 1:], v)
  with pytest.raises(ValueError, match="r_max_B"):
    model.init(jax.random.PRNGKey(0), x, r, jnp.ones((B, 1)), p, v)


def test_seq_len_matches_lookback_and_horizon():
  assert dataclasses.replace(CONFIG, lookback=120, n_ahead=12).seq_len == 131
