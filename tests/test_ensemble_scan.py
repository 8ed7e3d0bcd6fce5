"""A seed ensemble steering one execution: members' proposals combined inside the scan."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from lemjax import allocation
from lemjax import model as model_lib
from lemjax.config import AllocatorConfig
from lemjax.config import EncoderConfig
from lemjax.config import ModelConfig

L, N, H, B, WIDTH = 3, 5, 6, 4, 8
RULES = allocation.ENSEMBLE_RULES


def _inputs(seed, m):
  rng = np.random.default_rng(seed)
  ctx = [rng.standard_normal((B, L + N - 1, H)).astype(np.float32) for _ in range(m)]
  prices = np.exp(np.cumsum(0.01 * rng.standard_normal((B, N)), axis=1)).astype(np.float32)
  volumes = rng.lognormal(size=(B, N)).astype(np.float32)
  return ctx, prices, volumes


@functools.cache
def _members(variant, m):
  """m allocators of one config with different weights, large enough to hit the bounds."""
  config = AllocatorConfig(n_ahead=N, width=WIDTH, variant=variant)
  out = []
  for i in range(m):
    params = allocation.init_params(jax.random.PRNGKey(i), config, H)
    mlp = params["step"]["mlp"] if "mlp" in params["step"] else params["shared"]["mlp"]
    mlp["w3"] = mlp["w3"] * 30.0
    logits = params["shared"]["base_logits"]
    params["shared"]["base_logits"] = jax.random.normal(jax.random.PRNGKey(100 + i), logits.shape)
    out.append(params)
  return config, out


@functools.cache
def _single(config):
  return jax.jit(functools.partial(allocation.allocate, config=config, lookback=L))


def _own(config, params, ctx, r_min, r_max, prices, volumes):
  return _single(config)(
    params,
    ctx_BxTxH=ctx,
    r_min_B=jnp.asarray(r_min, jnp.float32),
    r_max_B=jnp.asarray(r_max, jnp.float32),
    prices_BxN=prices,
    volumes_BxN=volumes,
  )


@functools.cache
def _jitted(config, rule):
  return jax.jit(
    lambda members, ctx, r_min, r_max, prices, volumes: allocation.allocate_ensemble(
      members, config, L, ctx, r_min, r_max, prices, volumes, rule
    )
  )


def _ensemble(config, members, ctx, prices, volumes, rule, r_min=0.02, r_max=0.6):
  if rule not in RULES:  # the error is raised while tracing; call the function itself
    allocation.allocate_ensemble(members, config, L, ctx, 0.0, 1.0, prices, volumes, rule)
  run = _jitted(config, rule)
  full = lambda x: jnp.full(B, x, jnp.float32)  # noqa: E731
  return np.asarray(
    run(list(members), [jnp.asarray(c) for c in ctx], full(r_min), full(r_max), prices, volumes),
    np.float64,
  )


@pytest.mark.parametrize(
  "variant, rule", [("shared", "mean_proposal"), ("per_step", "median_proposal")]
)
def test_one_member_or_identical_members_are_the_single_model(rule, variant):
  config, members = _members(variant, 1)
  ctx, prices, volumes = _inputs(0, 1)
  r_min, r_max = np.full(B, 0.02, np.float32), np.full(B, 0.6, np.float32)
  single = np.asarray(_own(config, members[0], ctx[0], r_min, r_max, prices, volumes))
  # The single "shared" model sums its first layer in another order (it accumulates the
  # histories, `allocation._Scan`), so the two agree to float32 rounding, not bit for bit.
  np.testing.assert_allclose(
    _ensemble(config, members, ctx, prices, volumes, rule), single, atol=2e-5
  )
  three = _ensemble(config, members * 3, ctx * 3, prices, volumes, rule)
  # (x + x + x) / 3 rounds in float32 and the rounding travels through the carry.
  np.testing.assert_allclose(three, single, atol=2e-5)


@pytest.mark.parametrize("rule", RULES)
def test_first_decision_is_the_projected_combination_of_the_members_proposals(rule):
  config, members = _members("shared", 3)
  ctx, prices, volumes = _inputs(1, 3)
  r_min, r_max = jnp.full(B, 0.02), jnp.full(B, 0.6)
  carry = allocation.init_carry(config, B)
  proposals = np.stack(
    [
      allocation.propose(
        allocation.step_params(p, 0), config, carry, jnp.asarray(c[:, L - 1]), 0, r_min, r_max
      )
      for p, c in zip(members, ctx)
    ]
  )
  combined = proposals.mean(0) if rule == "mean_proposal" else np.median(proposals, 0)
  expected = allocation.project(jnp.asarray(combined), carry.remaining_BxKxS, 0, N, r_min, r_max)
  got = _ensemble(config, members, ctx, prices, volumes, rule)
  np.testing.assert_allclose(got[:, 0], expected, atol=1e-6)
  # The members disagree, so the combination differs from every member's own first decision.
  for p, c in zip(members, ctx):
    own = _own(config, p, c, r_min, r_max, prices, volumes)
    assert np.abs(np.asarray(own)[:, 0] - got[:, 0]).max() > 1e-4


@pytest.mark.parametrize("rule", RULES)
@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), tight=st.booleans())
def test_ensemble_allocations_are_feasible(rule, seed, tight):
  config, members = _members("shared", 3)
  ctx, prices, volumes = _inputs(seed, 3)
  r_min, r_max = (1.0 / N, 1.0 / N) if tight else (0.05, 0.4)
  a = _ensemble(config, members, ctx, prices, volumes, rule, r_min, r_max)
  tol = 1e-6
  np.testing.assert_allclose(a.sum(axis=1), 1.0, atol=tol)
  remaining = 1.0 - np.concatenate([np.zeros((B, 1) + a.shape[2:]), np.cumsum(a, 1)[:, :-1]], 1)
  assert np.all(a <= r_max + tol)
  assert np.all(a >= np.minimum(r_min, remaining) - tol)
  assert np.all(a >= remaining - r_max * (N - 1 - np.arange(N))[None, :, None, None] - tol)


@pytest.mark.parametrize("rule", RULES)
@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), s=st.integers(0, N - 3))
def test_ensemble_is_causal(rule, seed, s):
  """Perturbing bars >= s in every member's context and in prices and volumes leaves decisions
  0..s bit-for-bit equal, and moves a later one."""
  config, members = _members("shared", 3)
  rng = np.random.default_rng(seed)
  ctx, prices, volumes = _inputs(seed, 3)
  ctx2 = [c.copy() for c in ctx]
  for c in ctx2:
    c[:, L + s :] += rng.standard_normal(c[:, L + s :].shape).astype(np.float32)
  prices2, volumes2 = prices.copy(), volumes.copy()
  prices2[:, s:] *= rng.uniform(0.9, 1.1, prices2[:, s:].shape).astype(np.float32)
  volumes2[:, s:] *= rng.uniform(0.1, 10.0, volumes2[:, s:].shape).astype(np.float32)
  a = _ensemble(config, members, ctx, prices, volumes, rule)
  a2 = _ensemble(config, members, ctx2, prices2, volumes2, rule)
  np.testing.assert_array_equal(a[:, : s + 1], a2[:, : s + 1])
  assert np.any(a[:, s + 1 :] != a2[:, s + 1 :])


def test_bad_rule_or_member_count_raises():
  config, members = _members("shared", 3)
  ctx, prices, volumes = _inputs(0, 3)
  with pytest.raises(ValueError, match="rule="):
    _ensemble(config, members, ctx, prices, volumes, "vote")
  with pytest.raises(ValueError, match="3 members' parameters and 2 contexts"):
    _ensemble(config, members, ctx[:2], prices, volumes, "mean_proposal")


def test_model_ensemble_apply_runs_each_members_encoder():
  """ensemble_apply of one LEM is that LEM; of two LEMs it is neither of them."""
  config = ModelConfig(
    lookback=L,
    n_ahead=N,
    encoder=EncoderConfig(hidden=H, embed_dim=4, n_attention_heads=2),
    allocator=AllocatorConfig(n_ahead=N, width=WIDTH),
  )
  p0 = model_lib.init_params(config, jax.random.PRNGKey(0))
  p1 = model_lib.init_params(config, jax.random.PRNGKey(1))
  rng = np.random.default_rng(0)
  inputs = rng.standard_normal((B, config.seq_len, config.encoder.n_features)).astype(np.float32)
  _, prices, volumes = _inputs(0, 1)
  r_min, r_max = jnp.full(B, 0.02), jnp.full(B, 0.6)
  lem = model_lib.build_model(config)
  forward = jax.jit(lambda p: lem.apply({"params": p}, inputs, r_min, r_max, prices, volumes))
  ensemble = jax.jit(
    lambda ps, rule: model_lib.ensemble_apply(
      config, ps, inputs, r_min, r_max, prices, volumes, rule=rule
    ),
    static_argnums=1,
  )
  own = [np.asarray(forward(p)) for p in (p0, p1)]
  np.testing.assert_allclose(ensemble([p0], "median_proposal"), own[0], atol=1e-6)
  two = np.asarray(ensemble([p0, p1], "mean_proposal"))
  assert min(np.abs(two - o).max() for o in own) > 1e-5
  np.testing.assert_allclose(two.sum(axis=1), 1.0, atol=1e-5)
