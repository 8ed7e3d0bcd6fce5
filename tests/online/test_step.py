"""Tests for lemjax/online/step.py: online decisions equal the batched model's, bar by bar."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lemjax import allocation
from lemjax import objectives
from lemjax import online
from lemjax import scenarios
from lemjax.config import AllocatorConfig
from lemjax.online import step as step_lib

from .common import R_MAX
from .common import R_MIN
from .common import T0S
from .common import bar
from .common import history
from .common import order


def _all_orders(run, policy):
  """Every scenario x heads {0, 1, N-1, N} x window, started; with their (window, head, scenario)."""
  n = policy.n_ahead
  carries, keys = [], []
  for i, t0 in enumerate(T0S):
    for sc in range(scenarios.NUM_SCENARIOS):
      for head in (0, 1, n - 1, n):
        carries.append(
          online.start(policy, order(sc, head, n, R_MIN[i], R_MAX[i]), history(run, t0))
        )
        keys.append((i, head, sc))
  return carries, keys


def test_vmapped_orders_match_batched_allocations(run, policy):
  n = policy.n_ahead
  carries, keys = _all_orders(run, policy)
  carry = online.stack(carries)
  idx = np.array([k[0] for k in keys])
  got = np.zeros((len(keys), n), np.float32)
  got[:, 0] = np.asarray(online.next_child(carry)[1])
  done = np.zeros(len(keys), bool)
  for s in range(n):
    live = online.check_bar(policy, carry, {c: v[T0S[idx] + s] for c, v in run["cols"].items()})
    carry, out = online.step_many(policy, carry, live)
    if s + 1 < n:
      got[:, s + 1] = np.where(done, 0.0, np.asarray(out.fraction))
    done = np.asarray(out.done)
  want = np.stack([run["alloc"][i, :, head, sc] for i, head, sc in keys])
  np.testing.assert_allclose(got, want, atol=2e-6)
  assert done.all()
  # Every order completes: the fractions sum to 1 and children are fraction x size.
  np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-5)
  summary = objectives.execution_summary(
    jnp.asarray(run["alloc"]),
    jnp.asarray(run["batch"]["prices"]),
    jnp.asarray(run["batch"]["volumes"]),
  )
  arrival = run["cols"]["close"][T0S - 1]
  for name in ("price", "benchmark"):
    want = np.array([summary[name][i, head, sc] * arrival[i] for i, head, sc in keys])
    np.testing.assert_allclose(np.asarray(getattr(out, name)), want, rtol=2e-6)
  want = np.array([summary["improvement_bps"][i, head, sc] for i, head, sc in keys])
  np.testing.assert_allclose(np.asarray(out.improvement_bps), want, atol=2e-2)


def test_single_order_loop_features_and_early_end(run, policy):
  """One order bar by bar (Executor): the encoder buffer equals the batch's features."""
  n, i = policy.n_ahead, 1
  exe = online.Executor.start(policy, order(0, n, n, R_MIN[i], R_MAX[i]), history(run, T0S[i]))
  inputs = run["batch"]["inputs"][i]
  lb = policy.lookback
  np.testing.assert_array_equal(np.asarray(exe.carry.inputs_TxF)[:lb], inputs[:lb])
  assert not np.asarray(exe.carry.inputs_TxF)[lb:].any()  # nothing from the future
  fractions = [float(exe.status.fraction)]
  for s in range(n):
    out = exe.on_bar(bar(run, T0S[i] + s))
    fractions.append(float(out.fraction))
    assert int(out.bars) == s + 1 and bool(out.done) == (s == n - 1)
    np.testing.assert_allclose(float(out.child), 7.0 * fractions[-1], rtol=1e-6)
  np.testing.assert_allclose(np.asarray(exe.carry.inputs_TxF), inputs, rtol=1e-6, atol=1e-5)
  np.testing.assert_allclose(fractions[:n], run["alloc"][i, :, n, 0], atol=2e-6)
  with pytest.raises(ValueError, match="already complete"):
    exe.on_bar(bar(run, T0S[i] + n))


def test_decisions_ignore_future_bars(run, policy):
  """Decisions 0..s come before bar s exists; a different bar s changes only what follows it."""
  n, t0 = policy.n_ahead, T0S[0]
  carry = online.start(policy, order(1, 1, n), history(run, t0))
  first = [float(online.next_child(carry)[1])]
  carry, out = online.step_jit(policy, carry, online.check_bar(policy, carry, bar(run, t0)))
  first.append(float(out.fraction))
  np.testing.assert_allclose(first, run["alloc"][0, :2, 1, 1], atol=2e-6)
  other = dict(bar(run, t0 + 1), close=bar(run, t0 + 1)["close"] * 1.5, volume=1e9)
  _, out_other = online.step_jit(policy, carry, online.check_bar(policy, carry, other))
  _, out_same = online.step_jit(policy, carry, online.check_bar(policy, carry, bar(run, t0 + 1)))
  np.testing.assert_allclose(float(out_same.fraction), run["alloc"][0, 2, 1, 1], atol=2e-6)
  assert float(out_other.fraction) != float(out_same.fraction)


def test_head_map_serves_a_larger_minimums_schedule(run, policy):
  """With an evaluation's head map, an order of min period 1 trades head 2's schedule."""
  n, i, sc = policy.n_ahead, 2, 5
  head_map = np.repeat(np.arange(n + 1)[:, None], scenarios.NUM_SCENARIOS, 1)
  head_map[0, sc] = 2
  mapped = policy.replace(head_map=tuple(map(tuple, head_map.tolist())))
  exe = online.Executor.start(mapped, order(sc, 0, n, R_MIN[i], R_MAX[i]), history(run, T0S[i]))
  fractions = [float(exe.status.fraction)]
  for s in range(n):
    out = exe.on_bar(bar(run, T0S[i] + s))
    fractions.append(float(out.fraction))
    if bool(out.done):
      break
  got = np.zeros(n, np.float32)
  got[: min(n, len(fractions))] = fractions[:n]
  np.testing.assert_allclose(got, run["alloc"][i, :, 2, sc], atol=2e-6)
  assert not np.allclose(run["alloc"][i, :, 2, sc], run["alloc"][i, :, 0, sc], atol=1e-4)


@pytest.mark.parametrize("variant", ("per_step", "shared"))
@pytest.mark.parametrize("tie", ((False, "all"), (True, "all"), (True, "trunk")))
def test_an_orders_own_slice_decides_as_the_full_model(variant, tie):
  """`step._own_head` cuts the allocator to one head x scenario, shared (`tie_heads`) weights
  to their scenario: the slice's decision is the full model's at that cell."""
  n, h = 5, 6
  config = AllocatorConfig(n_ahead=n, width=8, variant=variant, tie_heads=tie[0], tie_scope=tie[1])
  params = allocation.init_params(jax.random.PRNGKey(0), config, h)
  rng = np.random.default_rng(0)  # every weight different, scenarios and heads far apart
  params = jax.tree.map(lambda p: p + 0.5 * rng.standard_normal(p.shape).astype(np.float32), params)
  carry = allocation.init_carry(config, 1)
  ctx = jnp.asarray(rng.standard_normal((1, h)), jnp.float32)
  r_min, r_max = jnp.zeros(1), jnp.full(1, 0.6)
  full = allocation.decide(allocation.step_params(params, 0), config, carry, ctx, 0, r_min, r_max)
  assert float(jnp.std(full[0])) > 1e-3  # cells decide differently: a wrong slice would show
  for head, scenario in ((0, 0), (2, 5), (n, 7), (3, 1)):
    own = functools.partial(step_lib._own_head, head=head, scenario=scenario, k=n + 1, s=8)
    a = allocation.decide(
      allocation.step_params(own(params), 0), config, own(carry), ctx, 0, r_min, r_max
    )
    assert a.shape == (1, 1, 1)
    np.testing.assert_allclose(
      float(a[0, 0, 0]), float(full[0, head, scenario]), rtol=1e-5, atol=1e-7
    )
