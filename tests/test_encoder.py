"""Tests for lemjax.encoder and lemjax.attention: shapes, causality, jit, no recompiles."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lemjax.attention import CausalSelfAttention
from lemjax.config import EncoderConfig
from lemjax.encoder import Encoder

CFG = EncoderConfig(
  n_features=3, embed_dim=4, hidden=8, n_tkan_layers=2, n_kan_sublayers=2, n_attention_heads=2
)
B, T = 3, 6


@pytest.fixture(scope="module")
def setup():
  # Small chunks, so the row-chunked blocks run several chunks and pad the last one.
  model = Encoder(CFG, chunk_rows=4, chunk_sequences=2)
  x = jax.random.normal(jax.random.key(0), (B, T, CFG.n_features))
  params = jax.jit(model.init)(jax.random.key(1), x)["params"]
  traces = []

  def apply(params, x):
    traces.append(1)  # Python side effect: runs once per trace, never on cached calls.
    return model.apply({"params": params}, x)

  return model, params, x, jax.jit(apply), traces


def test_shapes_finite_and_jit_matches_eager(setup):
  model, params, x, apply, _ = setup
  ctx = apply(params, x)
  assert ctx.shape == (B, T, CFG.hidden) and ctx.dtype == jnp.float32
  assert np.all(np.isfinite(ctx))
  np.testing.assert_allclose(model.apply({"params": params}, x), ctx, rtol=1e-5, atol=1e-5)


def test_chunking_does_not_change_values(setup):
  model, params, x, apply, _ = setup
  whole = Encoder(CFG, chunk_rows=10**6, chunk_sequences=10**6)
  np.testing.assert_allclose(
    jax.jit(whole.apply)({"params": params}, x), apply(params, x), rtol=1e-5, atol=1e-5
  )


def test_second_call_does_not_retrace(setup):
  _, params, x, apply, traces = setup
  apply(params, x)
  before = len(traces)
  apply(params, x + 1.0)
  apply(jax.tree.map(lambda a: a * 1.01, params), x)
  assert len(traces) == before


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_future_inputs_do_not_move_the_past(setup, seed):
  _, params, x, apply, _ = setup
  t = int(np.random.default_rng(seed).integers(0, T - 1))
  noise = jax.random.normal(jax.random.key(seed + 10), x.shape) * 5.0
  x_future = x.at[:, t + 1 :].add(noise[:, t + 1 :])
  ctx, ctx_future = apply(params, x), apply(params, x_future)
  np.testing.assert_array_equal(ctx[:, : t + 1], ctx_future[:, : t + 1])
  assert not np.allclose(ctx[:, t + 1 :], ctx_future[:, t + 1 :])


def test_jacobian_of_position_t_wrt_later_inputs_is_exactly_zero(setup):
  model, params, x, _, _ = setup
  jac = jax.jit(jax.jacrev(lambda x_: model.apply({"params": params}, x_)))(x)
  jac = np.asarray(jac)  # [B, T, H, B, T, F]
  for t in range(T):
    assert np.all(jac[:, t, :, :, t + 1 :, :] == 0.0), f"output {t} sees the future"
    assert np.any(jac[:, t, :, :, t, :] != 0.0), f"output {t} ignores its own bar"
  # Rows of the batch are independent.
  for b in range(B):
    others = [o for o in range(B) if o != b]
    assert np.all(jac[b][:, :, others] == 0.0), f"batch row {b} sees other rows"


def test_gradients_reach_every_parameter(setup):
  model, params, x, _, _ = setup
  weights = jnp.arange(1.0, T + 1.0)[None, :, None]
  loss = lambda p: jnp.sum(jnp.sin(model.apply({"params": p}, x)) * weights)
  grads = jax.jit(jax.grad(loss))(params)
  for path, g in jax.tree_util.tree_leaves_with_path(grads):
    assert np.all(np.isfinite(g)) and np.any(g != 0.0), jax.tree_util.keystr(path)


def test_rejects_wrong_shapes_and_configs(setup):
  model, params, x, _, _ = setup
  with pytest.raises(ValueError, match="n_features"):
    model.apply({"params": params}, x[..., :2])
  with pytest.raises(ValueError, match=r"\[B, T, F\]"):
    model.apply({"params": params}, x[0])
  bad = Encoder(dataclasses.replace(CFG, n_attention_heads=3))
  with pytest.raises(ValueError, match="n_attention_heads"):
    bad.init(jax.random.key(0), x)
  with pytest.raises(ValueError, match="activation"):
    Encoder(dataclasses.replace(CFG, kan_activation="nope")).init(jax.random.key(0), x)


def test_dropout_needs_rng_and_is_off_when_deterministic():
  cfg = dataclasses.replace(CFG, dropout=0.5, n_tkan_layers=1, n_kan_sublayers=1)
  model = Encoder(cfg)
  x = jax.random.normal(jax.random.key(0), (B, T, cfg.n_features))
  params = jax.jit(model.init)(jax.random.key(1), x)["params"]
  run = jax.jit(
    lambda p, x_, k, det: model.apply({"params": p}, x_, deterministic=det, rngs={"dropout": k}),
    static_argnums=3,
  )
  a, b = run(params, x, jax.random.key(2), False), run(params, x, jax.random.key(3), False)
  assert not np.allclose(a, b)
  np.testing.assert_array_equal(
    run(params, x, jax.random.key(2), True), run(params, x, jax.random.key(3), True)
  )


def test_attention_matches_naive_causal_softmax():
  att = CausalSelfAttention(num_heads=2)
  x = jax.random.normal(jax.random.key(0), (B, T, 8))
  params = att.init(jax.random.key(1), x)["params"]
  got = att.apply({"params": params}, x)
  qkv = np.asarray(x.reshape(B * T, 8) @ params["qkv"]["kernel"] + params["qkv"]["bias"][None])
  q, k, v = (qkv.reshape(B, T, 3, 2, 4)[:, :, i] for i in range(3))
  want = np.zeros((B, T, 2, 4))
  for b in range(B):
    for h in range(2):
      for t in range(T):
        s = k[b, : t + 1, h] @ q[b, t, h] / 2.0
        w = np.exp(s - s.max())
        want[b, t, h] = (w / w.sum()) @ v[b, : t + 1, h]
  want = want.reshape(B * T, 8) @ params["out"]["kernel"] + params["out"]["bias"][None]
  np.testing.assert_allclose(got, want.reshape(B, T, 8), rtol=1e-4, atol=1e-5)
