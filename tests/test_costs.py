"""Tests for lemjax/costs.py: hand-computed costs, costs off = today, the exact participation cap,
infeasible orders, and that large orders pay for dumping (in the score and the loss gradient)."""

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from lemjax import allocation
from lemjax import baselines
from lemjax import config as config_lib
from lemjax import costs
from lemjax import objectives
from lemjax import scenarios
from lemjax.config import AllocatorConfig
from lemjax.config import CostConfig

ON = CostConfig(enabled=True, fee_bps=1.0, half_spread_bps=2.0, impact_eta=0.5, volume_floor=0.01)
L, N, H = 3, 5, 6


def _alloc_BxNxKxS(a_BxN):
  """One schedule per order for every head and scenario."""
  return jnp.asarray(baselines.broadcast(np.asarray(a_BxN, np.float32)))


def test_cost_of_a_small_schedule_by_hand():
  a = np.array([[0.25, 0.75]], np.float32)
  prices = np.array([[1.0, 1.01]], np.float32)
  volumes = np.array([[1.0, 0.5]], np.float32)
  size, sigma = np.array([0.1], np.float32), np.array([80.0], np.float32)
  cost = np.asarray(
    costs.child_cost_bps(_alloc_BxNxKxS(a), prices, volumes, size, sigma, ON), np.float64
  )
  # Parent = 0.1 * N = 0.2 expected bar volumes: children of 0.05 and 0.15 shares.
  qty = [3.0 + 0.5 * 80.0 * math.sqrt(0.05 / 1.0), 3.0 + 0.5 * 80.0 * math.sqrt(0.15 / 0.5)]
  ntl = [3.0 + 0.5 * 80.0 * math.sqrt(0.05 / 1.0), 3.0 + 0.5 * 80.0 * math.sqrt(0.15 / 1.01 / 0.5)]
  buy_qty = scenarios.scenario_index("buy", "vwap", "quantity")
  buy_ntl = scenarios.scenario_index("buy", "vwap", "notional")
  np.testing.assert_allclose(cost[0, :, 0, buy_qty], qty, rtol=1e-5)
  np.testing.assert_allclose(cost[0, :, 0, buy_ntl], ntl, rtol=1e-5)
  # Net achieved prices: a buy pays p (1 + c), a sell receives p (1 - c).
  fills = costs.fill_prices(_alloc_BxNxKxS(a), prices, volumes, size, sigma, ON)
  summary = objectives.execution_summary(_alloc_BxNxKxS(a), prices, volumes, fills)
  p_buy = 0.25 * 1.0 * (1 + qty[0] * 1e-4) + 0.75 * 1.01 * (1 + qty[1] * 1e-4)
  sell = scenarios.scenario_index("sell", "vwap", "quantity")
  p_sell = 0.25 * 1.0 * (1 - qty[0] * 1e-4) + 0.75 * 1.01 * (1 - qty[1] * 1e-4)
  np.testing.assert_allclose(float(summary["price"][0, 0, buy_qty]), p_buy, rtol=1e-6)
  np.testing.assert_allclose(float(summary["price"][0, 0, sell]), p_sell, rtol=1e-6)
  bench = (1.0 * 1.0 + 0.5 * 1.01) / 1.5  # the market VWAP of both bars, not net of costs
  np.testing.assert_allclose(
    float(summary["improvement_bps"][0, 0, buy_qty]), (1 - p_buy / bench) * 1e4, rtol=1e-4
  )
  gross = (1 - (0.25 + 0.75 * 1.01) / bench) * 1e4
  np.testing.assert_allclose(
    float(summary["gross_improvement_bps"][0, 0, buy_qty]), gross, atol=1e-3
  )
  assert np.all(np.asarray(summary["cost_bps"]) > 0)


def test_costs_off_reproduces_the_cost_free_numbers_exactly():
  rng = np.random.default_rng(0)
  a = rng.dirichlet(np.ones(N), size=(3,)).astype(np.float32)
  prices = (1 + 0.01 * rng.standard_normal((3, N))).astype(np.float32)
  volumes = rng.lognormal(size=(3, N)).astype(np.float32)
  sigma = np.full(3, 50.0, np.float32)
  off = costs.scorer(CostConfig(), 0.2, sigma)(_alloc_BxNxKxS(a), prices, volumes)
  plain = objectives.improvement_bps(_alloc_BxNxKxS(a), jnp.asarray(prices), jnp.asarray(volumes))
  np.testing.assert_array_equal(off, np.asarray(plain))
  assert costs.capped_r_max(0.3, 0.2, N, CostConfig()) == 0.3
  # Zero fees, spread and impact: the net price equals the gross one.
  zero = CostConfig(enabled=True, fee_bps=0.0, half_spread_bps=0.0, impact_eta=0.0)
  free = costs.scorer(zero, 0.2, sigma)(_alloc_BxNxKxS(a), prices, volumes)
  np.testing.assert_allclose(free, np.asarray(plain), atol=1e-6)


def test_costs_grow_with_size_and_are_finite_on_zero_volume():
  a = _alloc_BxNxKxS(np.full((2, N), 1.0 / N))
  prices = np.ones((2, N), np.float32)
  volumes = np.array([[1.0] * N, [0.0] * N], np.float32)
  sigma = np.full(2, 60.0, np.float32)
  small = costs.child_cost_bps(a, prices, volumes, np.full(2, 0.001, np.float32), sigma, ON)
  large = costs.child_cost_bps(a, prices, volumes, np.full(2, 0.2, np.float32), sigma, ON)
  assert np.all(np.isfinite(large)) and np.all(np.asarray(large) > np.asarray(small))


def test_sizes_are_log_uniform_in_range():
  size = np.asarray(costs.sample_sizes(jax.random.PRNGKey(0), 4000, (1e-3, 0.1)))
  assert size.min() >= 1e-3 * (1 - 1e-6) and size.max() <= 0.1 * (1 + 1e-6)
  logs = np.log10(size)
  assert abs(np.mean(logs) - (-2.0)) < 0.05  # log-uniform: mean of log10 at the midpoint
  with pytest.raises(ValueError, match="size_range"):
    costs.sample_sizes(jax.random.PRNGKey(0), 4, (0.0, 0.1))


def test_config_rejects_bad_values_by_name():
  with pytest.raises(ValueError, match=r"costs.size_range=\(0.01, 0.5\)"):
    config_lib.costs_config({"size_range": (0.01, 0.5), "participation_cap": 0.25})
  with pytest.raises(ValueError, match="costs.fee_bps=-1"):
    config_lib.costs_config({"fee_bps": -1.0})
  with pytest.raises(ValueError, match="unknown config key costs.fees"):
    config_lib.costs_config({"fees": 1.0})


def test_infeasible_order_raises_naming_the_order_and_the_numbers():
  cfg = dataclasses.replace(ON, participation_cap=0.1)
  costs.check_orders([0.05, 0.1], 0.0, 1.0, N, cfg, names=["a", "b"])
  with pytest.raises(ValueError, match=r"order 'big' is infeasible: size=0.2 .*rho=0.1"):
    costs.check_orders([0.05, 0.2], 0.0, 1.0, N, cfg, names=["ok", "big"])
  # The cap and r_max together: a tight r_max is named too.
  with pytest.raises(ValueError, match=r"order 0 is infeasible.*r_max=0.15.* at most 0.75"):
    costs.check_orders(0.01, 0.0, 0.15, 5, cfg)


@functools.cache
def _allocator():
  config = AllocatorConfig(n_ahead=N, width=8, variant="shared", size_input=True)
  params = allocation.init_params(jax.random.PRNGKey(0), config, H)
  # Large output weights and random base schedules: proposals hit every bound.
  params["shared"]["mlp"]["w3"] = params["shared"]["mlp"]["w3"] * 300.0
  logits = params["shared"]["base_logits"]
  params["shared"]["base_logits"] = 3.0 * jax.random.normal(jax.random.PRNGKey(1), logits.shape)
  run = jax.jit(functools.partial(allocation.allocate, config=config, lookback=L))
  return params, run


@settings(max_examples=25, deadline=None)
@given(
  seed=st.integers(0, 10_000),
  log_size=st.floats(-3.5, np.log10(0.25)),
  r_min=st.floats(0.0, 0.2),
  r_max=st.floats(0.2, 1.0),
)
def test_participation_cap_holds_exactly_on_random_orders(seed, log_size, r_min, r_max):
  cfg = CostConfig(enabled=True, participation_cap=0.25)
  size = 10.0**log_size
  cap = costs.participation_limit(size, N, cfg.participation_cap)
  r_min = min(r_min, cap, 1.0 / N)
  hi = float(costs.capped_r_max(np.float32(r_max), np.float32(size), N, cfg))
  if hi * N < 1:  # a cap this tight cannot finish the order: rejected, never run
    with pytest.raises(ValueError, match="infeasible"):
      costs.check_orders(size, r_min, r_max, N, cfg)
    return
  costs.check_orders(size, r_min, r_max, N, cfg)
  params, run = _allocator()
  rng = np.random.default_rng(seed)
  b = 4
  alloc = run(
    params,
    ctx_BxTxH=jnp.asarray(rng.standard_normal((b, L + N - 1, H)), jnp.float32),
    r_min_B=jnp.full((b,), r_min, jnp.float32),
    r_max_B=jnp.full((b,), hi, jnp.float32),
    prices_BxN=jnp.asarray(1 + 0.01 * rng.standard_normal((b, N)), jnp.float32),
    volumes_BxN=jnp.asarray(rng.lognormal(size=(b, N)), jnp.float32),
    size_B=jnp.full((b,), size, jnp.float32),
  )
  alloc = np.asarray(alloc)
  shares_per_bar = alloc * size * N  # in expected bar volumes
  assert np.all(shares_per_bar <= cfg.participation_cap * (1 + 1e-5) + 1e-7)
  np.testing.assert_allclose(alloc.sum(axis=1), 1.0, atol=1e-5)
  assert np.all(alloc >= -1e-7)


def test_size_input_is_required_exactly_when_configured():
  params, run = _allocator()
  ctx = jnp.zeros((1, L + N - 1, H))
  with pytest.raises(ValueError, match="size_B is required"):
    run(params, ctx_BxTxH=ctx, r_min_B=jnp.zeros(1), r_max_B=jnp.ones(1),
        prices_BxN=jnp.ones((1, N)), volumes_BxN=jnp.ones((1, N)))  # fmt: skip


def _dump_and_spread(n):
  """Two schedules: everything in bar 0 (dumping) and 1/N per bar (spreading); [2, N]."""
  dump = np.zeros(n, np.float32)
  dump[0] = 1.0
  return np.stack([dump, np.full(n, 1.0 / n, np.float32)])


@pytest.mark.parametrize("size, spread_wins", [(0.2, True), (0.0001, False)])
def test_large_orders_spread_rather_than_dump(size, spread_wins):
  # Bar 0 is 10 bps cheaper for a buyer: a tiny order should dump, a large one pays impact.
  n = N
  prices = np.tile(np.array([[0.999] + [1.0] * (n - 1)], np.float32), (2, 1))
  volumes = np.ones((2, n), np.float32)
  sigma = np.full(2, 100.0, np.float32)
  alloc = _alloc_BxNxKxS(_dump_and_spread(n))
  imp = costs.scorer(ON, size, sigma)(alloc, prices, volumes)
  fixed, buy = n, scenarios.scenario_index("buy", "twap", "quantity")
  dump, spread = imp[0, fixed, buy], imp[1, fixed, buy]
  assert (spread > dump) == spread_wins


def test_loss_gradient_pushes_large_orders_away_from_dumping():
  """At a dumping schedule, the cost gradient favours moving shares to the other bars."""
  n = N
  prices = jnp.ones((1, n), jnp.float32)
  volumes = jnp.ones((1, n), jnp.float32)
  sigma, size = jnp.full((1,), 100.0), jnp.full((1,), 0.2)
  a_N = jnp.asarray([0.6, 0.1, 0.1, 0.1, 0.1], jnp.float32)

  def loss(a_N, cfg):
    alloc = jnp.broadcast_to(a_N[None, :, None, None], (1, n, n + 1, 8))
    fills = costs.fill_prices(alloc, prices, volumes, size, sigma, cfg) if cfg.enabled else None
    cost_only = config_lib.LossConfig(flexible_weight=0.0)  # the fixed head tracks its benchmark
    return objectives.lem_loss(alloc, prices, volumes, cost_only, fill_prices=fills)[0]

  grad_on = np.asarray(jax.grad(loss)(a_N, ON))
  grad_off = np.asarray(jax.grad(loss)(a_N, CostConfig()))
  # Flat prices: without costs the loss does not care where shares go; with costs the heavy bar
  # is the most expensive place for the next share.
  np.testing.assert_allclose(grad_off, 0.0, atol=1e-7)
  assert grad_on[0] > grad_on[1] + 1e-6
  np.testing.assert_allclose(grad_on[1:], grad_on[1], rtol=1e-5)


def test_smoke_costs_variant_trains_one_step_with_a_size_input():
  from experiments import crypto_intraday  # noqa: PLC0415
  from lemjax import experiment  # noqa: PLC0415
  from lemjax import model as model_lib  # noqa: PLC0415
  from lemjax import train as train_lib  # noqa: PLC0415
  from lemjax import validation  # noqa: PLC0415
  from lemjax.data import Sampler  # noqa: PLC0415

  config = crypto_intraday.get_config("smoke,costs")
  assert config.name == "crypto_intraday_smoke_costs" and config.model.allocator.size_input
  train_ds, val_ds, _, _, _ = experiment.load_data(config)
  cfgs = experiment.resolve_configs(config, train_ds.batch(np.arange(1))["inputs"].shape[-1])
  off = dataclasses.replace(
    cfgs["model"], allocator=dataclasses.replace(cfgs["model"].allocator, size_input=False)
  )
  shapes_on = model_lib.param_shapes(cfgs["model"])["allocator"]["shared"]["mlp"]["w_ctx"].shape
  shapes_off = model_lib.param_shapes(off)["allocator"]["shared"]["mlp"]["w_ctx"].shape
  assert shapes_on[0] == shapes_off[0] + 1 and shapes_on[1:] == shapes_off[1:]
  state = train_lib.create_train_state(
    jax.random.PRNGKey(0), cfgs["model"], cfgs["train"], cfgs["loss"], cfgs["costs"]
  )
  batch = model_lib.model_batch(train_ds.batch(Sampler(train_ds.num_windows, 16, 0).next_indices()))
  state, metrics = train_lib.train_step_jit(state, batch, jax.random.PRNGKey(1))
  assert np.isfinite(float(metrics["loss"]))
  val = validation.validation_batches(val_ds, cfgs["train"], 4, 0, costs=cfgs["costs"])
  b, lo, hi = val[0]
  assert b["size"].shape == (32,)
  out = train_lib.eval_step_jit(state, b, lo, hi)
  assert np.isfinite(float(out["loss"])) and np.isfinite(float(out["imp_flexible_bps"]))
