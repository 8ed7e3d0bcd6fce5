"""Tests for lemjax/allocation.py: bounds, causality, scan == loop, gradients, initialisation."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from lemjax import allocation
from lemjax import objectives
from lemjax.config import AllocatorConfig
from lemjax.config import LossConfig

L, N, H, B, WIDTH = 3, 5, 6, 4, 8
K, S = N + 1, 8


def _inputs(seed, b=B):
  rng = np.random.default_rng(seed)
  ctx = rng.standard_normal((b, L + N - 1, H)).astype(np.float32)
  prices = np.exp(np.cumsum(0.01 * rng.standard_normal((b, N)), axis=1)).astype(np.float32)
  volumes = rng.lognormal(size=(b, N)).astype(np.float32)
  return ctx, prices, volumes


def _wild(params, seed):
  """Large output weights and random base schedules: proposals hit every bound."""
  rng = np.random.default_rng(seed)
  params = jax.tree.map(lambda p: p, params)
  mlp = params["step"]["mlp"] if "mlp" in params["step"] else params["shared"]["mlp"]
  mlp["w3"] = mlp["w3"] * 300.0
  logits = params["shared"]["base_logits"]
  params["shared"]["base_logits"] = jnp.asarray(
    2.0 * rng.standard_normal(logits.shape), jnp.float32
  )
  return params


@functools.cache
def _setup(variant, tie_heads=False, tie_scope="all"):
  config = AllocatorConfig(
    n_ahead=N, width=WIDTH, variant=variant, tie_heads=tie_heads, tie_scope=tie_scope
  )
  params = allocation.init_params(jax.random.PRNGKey(0), config, H)
  run = jax.jit(functools.partial(allocation.allocate, config=config, lookback=L))
  return config, params, run


def _call(run, params, ctx, r_min, r_max, prices, volumes):
  return run(
    params, ctx_BxTxH=ctx, r_min_B=r_min, r_max_B=r_max, prices_BxN=prices, volumes_BxN=volumes
  )


VARIANTS = ("per_step", "shared")


@pytest.mark.parametrize("variant", VARIANTS)
def test_linen_module_matches_pure_function(variant):
  config, _, run = _setup(variant)
  ctx, prices, volumes = _inputs(1)
  r_min, r_max = np.full(B, 0.05, np.float32), np.full(B, 0.5, np.float32)
  module = allocation.Allocator(config, lookback=L)
  variables = module.init(jax.random.PRNGKey(3), ctx, r_min, r_max, prices, volumes)
  alloc = module.apply(variables, ctx, r_min, r_max, prices, volumes)
  assert alloc.shape == (B, N, K, S) and alloc.dtype == jnp.float32
  assert np.all(np.isfinite(alloc))
  np.testing.assert_allclose(
    _call(run, variables["params"], ctx, r_min, r_max, prices, volumes), alloc, atol=1e-6
  )


@pytest.mark.parametrize("variant", VARIANTS)
@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), wild=st.booleans(), tight=st.booleans())
def test_allocations_are_feasible(variant, seed, wild, tight):
  config, params, run = _setup(variant)
  rng = np.random.default_rng(seed)
  if tight:  # r_min = r_max = 1/N leaves exactly one feasible schedule
    r_min = r_max = np.full(B, 1.0 / N, np.float32)
  else:
    r_min = rng.uniform(0.0, 1.0 / N, B).astype(np.float32)
    r_max = rng.uniform(np.maximum(r_min, 1.0 / N), 1.0).astype(np.float32)
  ctx, prices, volumes = _inputs(seed)
  a = np.asarray(
    _call(run, _wild(params, seed) if wild else params, ctx, r_min, r_max, prices, volumes),
    np.float64,
  )
  tol = 1e-6
  np.testing.assert_allclose(a.sum(axis=1), 1.0, atol=tol)
  assert a.min() >= 0.0
  remaining = 1.0 - np.concatenate([np.zeros((B, 1, K, S)), np.cumsum(a, axis=1)[:, :-1]], axis=1)
  r_min_b, r_max_b = r_min[:, None, None, None], r_max[:, None, None, None]
  assert np.all(a <= r_max_b + tol), "r_max is always feasible with validated bounds"
  assert np.all(a >= np.minimum(r_min_b, remaining) - tol)
  steps_after = (N - 1 - np.arange(N))[None, :, None, None]
  assert np.all(a >= remaining - r_max_b * steps_after - tol), "must stay able to finish by bar N"
  if tight:
    np.testing.assert_allclose(a, 1.0 / N, atol=tol)


@pytest.mark.parametrize(
  "r_min, r_max, named",
  [
    (0.3, 0.5, "r_min * n_ahead > 1"),
    (0.0, 0.1, "r_max * n_ahead < 1"),
    (0.15, 0.12, "r_min > r_max"),
    (-0.1, 0.5, "r_min is negative"),
    (0.0, np.nan, "r_max is not finite"),
  ],
)
def test_infeasible_bounds_raise_naming_them(r_min, r_max, named):
  with pytest.raises(ValueError, match=named.replace("*", r"\*")):
    allocation.validate_bounds(np.full(B, r_min), np.full(B, r_max), N)
  config, params, _ = _setup("shared")
  ctx, prices, volumes = _inputs(0)
  bad_min = np.full(B, 0.05, np.float32)
  bad_max = np.full(B, 0.5, np.float32)
  bad_min[2], bad_max[2] = r_min, r_max
  with pytest.raises(ValueError, match="r_m"):
    allocation.allocate(params, config, L, ctx, bad_min, bad_max, prices, volumes)


def test_feasible_edge_bounds_pass():
  allocation.validate_bounds(np.array([0.0, 1.0 / N]), np.array([1.0 / N, 1.0 / N]), N)


@pytest.mark.parametrize("variant", VARIANTS)
@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), s=st.integers(0, N - 1))
def test_causality(variant, seed, s):
  """Perturbing bars >= s (context, prices, volumes) leaves decisions 0..s bit-for-bit equal."""
  _, params, run = _setup(variant)
  params = _wild(params, seed)
  rng = np.random.default_rng(seed)
  ctx, prices, volumes = _inputs(seed)
  r_min, r_max = np.full(B, 0.02, np.float32), np.full(B, 0.6, np.float32)
  ctx2, prices2, volumes2 = ctx.copy(), prices.copy(), volumes.copy()
  ctx2[:, L + s :] += rng.standard_normal(ctx2[:, L + s :].shape).astype(
    np.float32
  )  # bar j sits at L + j
  prices2[:, s:] *= rng.uniform(0.9, 1.1, prices2[:, s:].shape).astype(np.float32)
  volumes2[:, s:] *= rng.uniform(0.1, 10.0, volumes2[:, s:].shape).astype(np.float32)
  a = np.asarray(_call(run, params, ctx, r_min, r_max, prices, volumes))
  a2 = np.asarray(_call(run, params, ctx2, r_min, r_max, prices2, volumes2))
  np.testing.assert_array_equal(a[:, : s + 1], a2[:, : s + 1])
  if s <= N - 3:  # the perturbation must reach later decisions, or this test proves nothing
    assert np.any(a[:, s + 1 :] != a2[:, s + 1 :])


def _decide_advance_loop(config, params, ctx, r_min, r_max, prices, volumes, size=None):
  """`allocate` written out as the online API runs it: `decide` then `advance` per bar.

  Returns (alloc [B, N, K, S], the carry after bar N-2).
  """
  carry = allocation.init_carry(config, ctx.shape[0])
  steps = []
  for s in range(N - 1):
    one_step = allocation.step_params(params, s)
    a = allocation.decide(one_step, config, carry, ctx[:, L - 1 + s], s, r_min, r_max, size)
    carry = allocation.advance(carry, a, prices[:, s], volumes[:, s])
    steps.append(a)
  return jnp.stack([*steps, carry.remaining_BxKxS], axis=1), carry


@pytest.mark.parametrize("tie_heads", (False, True))
@pytest.mark.parametrize("variant", VARIANTS)
def test_scan_equals_python_loop_of_decide_and_advance(variant, tie_heads):
  config, params, run = _setup(variant, tie_heads)
  ctx, prices, volumes = _inputs(7)
  r_min, r_max = np.full(B, 0.05, np.float32), np.full(B, 0.45, np.float32)
  looped, carry = _decide_advance_loop(
    config, params, *(jnp.asarray(x) for x in (ctx, r_min, r_max, prices, volumes))
  )
  scanned = _call(run, params, ctx, r_min, r_max, prices, volumes)
  np.testing.assert_allclose(scanned, looped, atol=1e-6, rtol=0)
  assert int(carry.step) == N - 1


@pytest.mark.parametrize("size_input, tie_heads", ((False, False), (True, False), (False, True)))
def test_shared_scan_accumulating_histories_matches_decide_and_advance_with_gradients(
  size_input, tie_heads
):
  """The "shared" scan never builds the N-length histories; values and gradients must not move."""
  config = AllocatorConfig(
    n_ahead=N, width=WIDTH, variant="shared", size_input=size_input, tie_heads=tie_heads
  )
  params = _wild(allocation.init_params(jax.random.PRNGKey(5), config, H), 5)
  ctx, prices, volumes = (jnp.asarray(x) for x in _inputs(9))
  r_min, r_max = jnp.full(B, 0.02, jnp.float32), jnp.full(B, 0.5, jnp.float32)
  size = jnp.full(B, 0.01, jnp.float32) if size_input else None
  weights = jnp.asarray(np.random.default_rng(2).standard_normal((B, N, K, S)), jnp.float32)

  def scanned(p, c):
    return allocation.allocate(p, config, L, c, r_min, r_max, prices, volumes, size_B=size)

  def looped(p, c):
    return _decide_advance_loop(config, p, c, r_min, r_max, prices, volumes, size)[0]

  def objective(fn):
    return lambda p, c: jnp.sum(fn(p, c) * weights * prices[:, :, None, None])

  np.testing.assert_allclose(jax.jit(scanned)(params, ctx), looped(params, ctx), atol=2e-5)
  grads_scan = jax.jit(jax.grad(objective(scanned), argnums=(0, 1)))(params, ctx)
  grads_loop = jax.grad(objective(looped), argnums=(0, 1))(params, ctx)
  for (path, g_scan), g_loop in zip(
    jax.tree_util.tree_leaves_with_path(grads_scan), jax.tree.leaves(grads_loop)
  ):
    scale = float(jnp.max(jnp.abs(g_loop)))
    assert scale > 0, jax.tree_util.keystr(path)
    np.testing.assert_allclose(
      g_scan, g_loop, atol=1e-4 * scale, err_msg=jax.tree_util.keystr(path)
    )


def test_advance_accounts_fills_and_market():
  config = AllocatorConfig(n_ahead=3, width=4)
  carry = allocation.init_carry(config, 1)
  a = jnp.full((1, 4, S), 0.5)
  carry = allocation.advance(carry, a, jnp.array([1.0]), jnp.array([1.0]))
  carry = allocation.advance(carry, a * 0.5, jnp.array([1.02]), jnp.array([3.0]))
  # Quantity: 0.5 @ 1.00 + 0.25 @ 1.02 -> 1.00667; notional: 0.75 / (0.5 + 0.25 / 1.02).
  qty, ntl = (0.5 + 0.25 * 1.02) / 0.75, 0.75 / (0.5 + 0.25 / 1.02)
  np.testing.assert_allclose(carry.price_bps_BxKxSxN[0, 0, 0, 1], (qty - 1) * 1e4, rtol=1e-4)
  np.testing.assert_allclose(carry.price_bps_BxKxSxN[0, 0, 1, 1], (ntl - 1) * 1e4, rtol=1e-4)
  np.testing.assert_allclose(
    carry.mkt_vwap_bps_BxN[0], [0.0, (1 + 3 * 1.02) / 4 * 1e4 - 1e4, 0.0], atol=1e-2
  )
  np.testing.assert_allclose(carry.mkt_twap_bps_BxN[0], [0.0, 100.0, 0.0], atol=1e-2)
  np.testing.assert_allclose(carry.remaining_BxKxS, 0.25)
  assert float(carry.alloc_BxKxSxN[0, 0, 0, 2]) == 0.0


@pytest.mark.parametrize("variant", VARIANTS)
def test_heads_are_initialised_independently(variant):
  config, params, _ = _setup(variant)
  mlp = params["step"]["mlp"] if variant == "per_step" else params["shared"]["mlp"]
  w = np.asarray(mlp["w2"]).reshape(-1, K, S, WIDTH, WIDTH)
  flat = w.reshape(w.shape[0], K * S, -1)
  for i in range(flat.shape[0]):
    corr = np.corrcoef(flat[i])
    assert np.max(np.abs(corr - np.eye(K * S))) < 0.5, "no two heads may start as copies"


def test_shared_variant_has_far_fewer_parameters():
  per_step = allocation.num_params(_setup("per_step")[1])
  shared = allocation.num_params(_setup("shared")[1])
  assert shared * (N - 1) < per_step * 1.5


@pytest.mark.parametrize("variant", VARIANTS)
def test_loss_gradient_reaches_every_parameter(variant):
  _, params, run = _setup(variant)
  ctx, prices, volumes = _inputs(11, b=16)
  r_min, r_max = np.full(16, 0.0, np.float32), np.full(16, 0.8, np.float32)

  def loss_fn(p):
    alloc = run(
      p, ctx_BxTxH=ctx, r_min_B=r_min, r_max_B=r_max, prices_BxN=prices, volumes_BxN=volumes
    )
    return objectives.lem_loss(alloc, jnp.asarray(prices), jnp.asarray(volumes))[0]

  grads = jax.grad(loss_fn)(params)
  for path, g in jax.tree_util.tree_leaves_with_path(grads):
    g = np.asarray(g)
    assert np.all(np.isfinite(g)), path
    assert np.any(g != 0), f"zero gradient for {jax.tree_util.keystr(path)}"
  if variant == "per_step":  # every step's MLP is trained
    w1 = np.asarray(grads["step"]["mlp"]["w_ctx"])
    assert all(np.any(w1[s] != 0) for s in range(N - 1))


@pytest.mark.parametrize("scope", tuple(allocation.TIE_SCOPES))
@pytest.mark.parametrize("variant", VARIANTS)
def test_tied_heads_are_the_untied_model_with_copied_weights_and_summed_gradients(variant, scope):
  """`tie_heads`: tied weights have one head slice, the rest and the biases K; the model equals
  the untied one whose heads all hold that slice, and a tied weight's gradient is the sum of the
  copies' gradients."""
  config, tied, run = _setup(variant, True, scope)
  untied_config = AllocatorConfig(n_ahead=N, width=WIDTH, variant=variant)
  mlp_key = "step" if variant == "per_step" else "shared"
  all_axes = {"w_ctx": -3, "w_own": -4, "w2": -4, "w3": -3}
  head_axis = {name: all_axes[name] for name in allocation.TIE_SCOPES[scope]}
  for name in set(all_axes) - set(head_axis):
    assert tied[mlp_key]["mlp"][name].shape[all_axes[name]] == K, name
  rng = np.random.default_rng(4)
  tied = jax.tree.map(lambda p: p + 0.1 * rng.standard_normal(p.shape).astype(np.float32), tied)
  tied_mlp = tied[mlp_key]["mlp"]
  for name, axis in head_axis.items():
    assert tied_mlp[name].shape[axis] == 1, name
  assert tied_mlp["b1"].shape[-3] == K and tied_mlp["b3"].shape[-2] == K
  fewer = allocation.num_params(tied) / allocation.num_params(_setup(variant)[1])
  assert fewer < (1 / 3 if scope == "all" else 0.8), fewer

  def untie(p):
    p = jax.tree.map(lambda x: x, p)
    mlp = dict(p[mlp_key]["mlp"])
    for name, axis in head_axis.items():
      shape = list(mlp[name].shape)
      shape[axis] = K
      mlp[name] = jnp.broadcast_to(mlp[name], shape)
    p[mlp_key] = {**p[mlp_key], "mlp": mlp}
    return p

  ctx, prices, volumes = _inputs(13)
  r_min, r_max = np.full(B, 0.0, np.float32), np.full(B, 0.6, np.float32)
  untied_run = jax.jit(functools.partial(allocation.allocate, config=untied_config, lookback=L))
  weights = jnp.asarray(rng.standard_normal((B, N, K, S)), jnp.float32)

  def loss(run_fn, p):
    return jnp.sum(_call(run_fn, p, ctx, r_min, r_max, prices, volumes) * weights)

  np.testing.assert_allclose(
    _call(run, tied, ctx, r_min, r_max, prices, volumes),
    _call(untied_run, untie(tied), ctx, r_min, r_max, prices, volumes),
    atol=1e-6,
  )
  g_tied = jax.grad(functools.partial(loss, run))(tied)[mlp_key]["mlp"]
  g_copies = jax.grad(functools.partial(loss, untied_run))(untie(tied))[mlp_key]["mlp"]
  for name in g_tied:
    want = g_copies[name]
    if name in head_axis:
      want = jnp.sum(want, axis=head_axis[name], keepdims=True)
    scale = float(jnp.max(jnp.abs(want)))
    assert scale > 0, name
    np.testing.assert_allclose(g_tied[name], want, atol=1e-4 * scale, err_msg=name)


@pytest.mark.parametrize("variant", VARIANTS)
def test_copied_heads_start_equal_within_a_scenario_and_their_losses_pull_them_apart(variant):
  config = AllocatorConfig(n_ahead=N, width=WIDTH, variant=variant, head_init="copies")
  params = allocation.init_params(jax.random.PRNGKey(0), config, H)
  run = jax.jit(functools.partial(allocation.allocate, config=config, lookback=L))
  ctx, prices, volumes = _inputs(11, b=16)
  r_min, r_max = np.full(16, 0.0, np.float32), np.full(16, 0.8, np.float32)
  alloc = np.asarray(_call(run, params, ctx, r_min, r_max, prices, volumes))
  np.testing.assert_array_equal(alloc, np.broadcast_to(alloc[:, :, :1], alloc.shape))
  assert not np.allclose(alloc[..., 0], alloc[..., 2]), "scenarios must still start apart"

  def loss_fn(p):  # at the warm window training starts from (on the sharp one, heads that
    # never end early all see the full horizon: equal losses, and copies would stay copies)
    a = _call(run, p, ctx, r_min, r_max, prices, volumes)
    warm = LossConfig().mask_temperature_start
    return objectives.lem_loss(a, jnp.asarray(prices), jnp.asarray(volumes), temperature=warm)[0]

  mlp_key = "step" if variant == "per_step" else "shared"
  w2 = np.asarray(jax.grad(loss_fn)(params)[mlp_key]["mlp"]["w2"])  # [..., K, S, W, W]
  head_gaps = np.abs(w2 - w2[..., :1, :, :, :]).max(axis=(-3, -2, -1)).reshape(-1, K)
  assert np.all(head_gaps.max(0)[1:] > 0), "each head's own loss must move it off the copy"


@pytest.mark.parametrize(
  "option, match",
  (
    ({"head_init": "twins"}, "head_init='twins'"),
    ({"tie_heads": True, "tie_scope": "torso"}, "tie_scope='torso'"),
  ),
)
def test_unknown_head_options_raise(option, match):
  with pytest.raises(ValueError, match=match):
    allocation.init_params(
      jax.random.PRNGKey(0), AllocatorConfig(n_ahead=N, width=WIDTH, **option), H
    )


def test_bad_shapes_raise():
  config, params, _ = _setup("shared")
  ctx, prices, volumes = _inputs(0)
  r = np.full(B, 0.2, np.float32)
  with pytest.raises(ValueError, match="ctx_BxTxH"):
    allocation.allocate(params, config, L, ctx[:, 1:], r, r, prices, volumes)
  with pytest.raises(ValueError, match="prices_BxN"):
    allocation.allocate(params, config, L, ctx, r, r, prices[:, 1:], volumes)
  with pytest.raises(ValueError, match="variant"):
    allocation.init_params(jax.random.PRNGKey(0), AllocatorConfig(variant="bogus"), H)
