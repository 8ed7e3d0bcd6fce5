"""Execution costs in the online API: the Order's size and cap, and the same costs as the batch."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

from lemjax import costs
from lemjax import model as model_lib
from lemjax import objectives
from lemjax import online
from lemjax import scenarios
from lemjax.config import CostConfig
from lemjax.data import tables

from .common import HOUR
from .common import T0S
from .common import bar
from .common import history
from .common import order

ON = CostConfig(enabled=True, fee_bps=1.0, half_spread_bps=2.0, impact_eta=1.0)


@pytest.fixture(scope="module")
def policy_on(run):
  model = run["policy0"].model_config
  model = dataclasses.replace(
    model, allocator=dataclasses.replace(model.allocator, size_input=True)
  )
  span = tables.interval_ms(run["config"].data.volume_window)
  return online.init_policy(model, HOUR, span, seed=2, costs=ON)


def _shares(run, policy, t0, frac):
  """Shares of an order that is `frac` of the expected volume over its N bars."""
  lb = policy.lookback
  return float(frac * policy.n_ahead * run["cols"]["volume"][t0 - lb : t0].mean())


@pytest.mark.parametrize("sc", [0, 3, 5, 6])
def test_online_order_pays_the_batch_costs_within_its_cap(run, policy_on, sc):
  n, i, frac = policy_on.n_ahead, 1, 0.15
  t0 = T0S[i]
  side, _, target = scenarios.SCENARIOS[sc]
  size = _shares(run, policy_on, t0, frac)
  if target == "notional":
    size *= float(run["cols"]["close"][t0 - 1])
  exe = online.Executor.start(policy_on, order(sc, 1, n, size=size), history(run, t0))
  np.testing.assert_allclose(float(exe.carry.size_frac), frac, rtol=1e-5)
  cap = ON.participation_cap / (frac * n)
  np.testing.assert_allclose(float(exe.carry.r_max), min(1.0, cap), rtol=1e-6)
  fractions, out = [float(exe.status.fraction)], exe.status
  for s in range(n):
    out = exe.on_bar(bar(run, t0 + s))
    fractions.append(float(out.fraction))
  a_N = np.array(fractions[:n], np.float32)
  assert np.all(a_N <= cap * (1 + 1e-5)) and abs(a_N.sum() - 1) < 1e-5
  # The batched model, given the same size and capped r_max, decides the same schedule.
  b = run["batch"]
  batched = model_lib.build_model(policy_on.model_config).apply(
    {"params": policy_on.params},
    b["inputs"][i : i + 1],
    jnp.zeros(1),
    jnp.full((1,), min(1.0, cap), jnp.float32),
    b["prices"][i : i + 1],
    b["volumes"][i : i + 1],
    jnp.full((1,), float(exe.carry.size_frac), jnp.float32),
  )
  np.testing.assert_allclose(a_N, np.asarray(batched)[0, :, 1, sc], atol=2e-6)
  # The batch accounting of the same schedule, with the same costs, gives the same numbers.
  alloc = jnp.broadcast_to(jnp.asarray(a_N)[None, :, None, None], (1, n, n + 1, 8))
  prices, volumes = jnp.asarray(b["prices"][i : i + 1]), jnp.asarray(b["volumes"][i : i + 1])
  size_B = jnp.asarray([frac], jnp.float32)
  fills = costs.fill_prices(alloc, prices, volumes, size_B, b["lookback_vol"][i : i + 1], ON)
  summary = objectives.execution_summary(alloc, prices, volumes, fills)
  np.testing.assert_allclose(
    float(out.improvement_bps), summary["improvement_bps"][0, 1, sc], atol=0.05
  )
  np.testing.assert_allclose(float(out.cost_bps), summary["cost_bps"][0, 1, sc], atol=0.05)
  assert float(out.cost_bps) > 3.0  # at least fee + half-spread


def test_costs_off_policy_reports_no_cost(run, policy):
  exe = online.Executor.start(policy, order(0, 1, policy.n_ahead), history(run, T0S[0]))
  out = exe.on_bar(bar(run, T0S[0]))
  assert float(out.cost_bps) == 0.0


def test_order_too_large_for_its_cap_raises_with_the_numbers(run, policy_on):
  t0, n = T0S[0], policy_on.n_ahead
  big = _shares(run, policy_on, t0, 0.5)  # 0.5 > rho = 0.25 of the horizon's volume
  with pytest.raises(ValueError, match=r"Order\(buy .*infeasible: size=0.5 .*rho=0.25"):
    online.start(policy_on, order(0, 1, n, size=big), history(run, t0))
  ok = dataclasses.replace(order(0, 1, n, size=big), participation_cap=0.6)
  online.start(policy_on, ok, history(run, t0))  # its own, looser cap fits
  with pytest.raises(ValueError, match="participation_cap=1.5"):
    dataclasses.replace(ok, participation_cap=1.5).check(n)


@pytest.fixture(scope="module")
def policy_high_low(run, policy_on):
  return dataclasses.replace(policy_on, costs=dataclasses.replace(ON, spread="high_low"))


def test_online_order_pays_its_lookback_high_low_half_spread(run, policy_high_low):
  policy, n, i, frac, sc = policy_high_low, policy_high_low.n_ahead, 2, 0.1, 0
  t0, frame = T0S[i], run["frame"]
  cols = {**run["cols"], "high": frame["high"].to_numpy(), "low": frame["low"].to_numpy()}
  size = _shares(run, policy, t0, frac)
  hist = {c: v[:t0] for c, v in cols.items()}
  exe = online.Executor.start(policy, order(sc, 1, n, size=size), hist)
  b = run["batch"]
  assert float(b["lookback_half_spread"][i]) > 0
  np.testing.assert_allclose(float(exe.carry.half_spread_bps), b["lookback_half_spread"][i], 1e-6)
  fractions = [float(exe.status.fraction)]
  for s in range(n):
    out = exe.on_bar({c: v[t0 + s] for c, v in cols.items()})
    fractions.append(float(out.fraction))
  # The batch accounting of the same schedule with the order's own half-spread.
  alloc = jnp.broadcast_to(jnp.asarray(fractions[:n])[None, :, None, None], (1, n, n + 1, 8))
  prices, volumes = jnp.asarray(b["prices"][i : i + 1]), jnp.asarray(b["volumes"][i : i + 1])
  fills = costs.fill_prices(
    alloc,
    prices,
    volumes,
    jnp.asarray([frac], jnp.float32),
    b["lookback_vol"][i : i + 1],
    policy.costs,
    b["lookback_half_spread"][i : i + 1],
  )
  summary = objectives.execution_summary(alloc, prices, volumes, fills)
  np.testing.assert_allclose(float(out.cost_bps), summary["cost_bps"][0, 1, sc], atol=0.05)
  assert float(out.cost_bps) > 1.0 + float(b["lookback_half_spread"][i]) - 0.05
  with pytest.raises(ValueError, match="lacks field 'high'"):
    online.start(policy, order(sc, 1, n, size=size), history(run, t0))


def test_carry_saved_before_the_half_spread_field_loads_under_a_config_policy(run, policy_on):
  exe = online.Executor.start(policy_on, order(0, 1, policy_on.n_ahead), history(run, T0S[0]))
  saved = online.carry_to_dict(exe.carry)
  saved.pop(".half_spread_bps")
  loaded = online.carry_from_dict(policy_on, saved)
  assert float(loaded.half_spread_bps) == 0.0
  with pytest.raises(ValueError, match="half_spread_bps"):
    online.carry_from_dict(
      dataclasses.replace(policy_on, costs=CostConfig(spread="high_low")), saved
    )
