"""The pure online step: `step(policy, carry, bar) -> (carry, out)`, one bar of one live order.

The Policy binds the static settings (model config, bar length) once and carries the traced
parameters; `carry` is the order's Carry (lemjax/online/carry.py). `start` runs the L history
bars through the encoder once (`encoder.prefill`) and decides bar 0; each `step` then costs one
encoder position (`encoder.step`) and one allocator decision for the order's own head and
scenario. `step_jit` jits it; `step_many` vmaps it over orders stacked on a leading axis.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from lemjax import allocation
from lemjax import costs as costs_lib
from lemjax import scenarios
from lemjax.data import features
from lemjax.online import carry as carry_lib
from lemjax.online import encoder as encoder_lib
from lemjax.online.bars import LiveBar
from lemjax.online.carry import Carry
from lemjax.online.carry import StepOutput
from lemjax.online.orders import Order
from lemjax.online.policy import Policy

_ONLINE_FEATURES = ("log_volume_rel", "return_bps", "price_vs_arrival_bps")  # then the calendar
if features.FEATURE_NAMES[:3] != _ONLINE_FEATURES or features.N_FEATURES != 8:
  raise ImportError(
    f"lemjax.online computes the features {_ONLINE_FEATURES} + calendar, but the "
    f"data layer now defines {features.FEATURE_NAMES}"
  )


def start(policy: Policy, order: Order, history_bars) -> Carry:
  """A new order's carry, arriving after the last history bar, with bar 0's decision made.

  Args:
    policy: the Policy.
    order: the Order (checked here).
    history_bars: bars up to the order's arrival (the last one is bar t0-1), oldest first: a
      polars table or mapping of arrays with time (epoch ms), close, volume and vwap (or
      notional), and high and low when the policy's costs.spread is "high_low"; at least L
      bars plus the trailing volume window before them.

  Returns:
    Carry; `next_child(carry)` is the size to trade in the first bar.
  """
  return _first_decision_jit(policy, carry_lib.from_history(policy, order, history_bars))


# --- The step -------------------------------------------------------------------------------------


def _ratio(a_2, b_2):
  """float32 a / b of (hi, lo) pairs, correcting the quotient of the his by the los."""
  q = a_2[0] / b_2[0]
  return q + (a_2[1] - q * b_2[1]) / b_2[0]


def _rel_bps(a_2, b_2):
  """(a / b - 1) * 1e4 from (hi, lo) pairs without float32 cancellation (a - b is near exact)."""
  return 1e4 * ((a_2[0] - b_2[0]) + (a_2[1] - b_2[1])) / b_2[0]


def _own_head(tree, head, scenario, k: int, s: int):
  """Slices every leaf with adjacent [K, S] axes (allocator parameters, carry) to [1, 1] at the
  order's (head, scenario); other leaves pass through.

  Weights shared by a scenario's heads (`tie_heads`, head axis of length 1) are sliced to their
  scenario. Every head x scenario cell keeps its own accounting and, shared weights aside, its
  own MLP, so an order's decision needs only its own slice. Vmapped over orders at different
  steps, picking a traced step's parameters copies them per order: cut to one head first, that
  is one small MLP per order instead of all K x S (1024 orders at paper size: 38 GB).
  """

  def pick(a):
    axes = [i for i in range(a.ndim - 1) if a.shape[i : i + 2] == (k, s)]
    if axes:
      a = jax.lax.dynamic_slice_in_dim(a, head, 1, axis=axes[0])
      return jax.lax.dynamic_slice_in_dim(a, scenario, 1, axis=axes[0] + 1)
    # A weight the heads share (`tie_heads`): head axis of length 1, only the scenario to pick.
    tied = [i for i in range(a.ndim - 1) if a.shape[i : i + 2] == (1, s)]
    if tied:
      return jax.lax.dynamic_slice_in_dim(a, scenario, 1, axis=tied[0] + 1)
    return a

  return jax.tree.map(pick, tree)


def _decide_next(policy: Policy, ctx_H, alloc_carry, s, carry: Carry):
  """Allocations [K, S] of bar s from the context at position L-1+s, decided for the order's own
  head and scenario (zero elsewhere): the model's decision for s <= N-2, the remainder at N-1."""
  cfg = policy.model_config
  n, k, sc = cfg.n_ahead, cfg.n_ahead + 1, scenarios.NUM_SCENARIOS
  s_dec = jnp.clip(s, 0, n - 2)
  own = functools.partial(_own_head, head=carry.head, scenario=carry.scenario, k=k, s=sc)
  a = allocation.decide(
    allocation.step_params(own(policy.params["allocator"]), s_dec),
    cfg.allocator,
    own(alloc_carry),
    ctx_H[None],
    s_dec,
    carry.r_min[None],
    carry.r_max[None],
    carry.size_frac[None] if cfg.allocator.size_input else None,
  )[0, 0, 0]
  a = jnp.where(s == n - 1, alloc_carry.remaining_BxKxS[0, carry.head, carry.scenario], a)
  a_KxS = jnp.zeros((k, sc), jnp.float32).at[carry.head, carry.scenario].set(a)
  return jnp.where(s >= n, 0.0, a_KxS)


def _first_decision(policy: Policy, carry: Carry) -> Carry:
  """Prefills the encoder with the L history positions (one batched pass), then decides bar 0."""
  cfg = policy.model_config
  encoder, ctx_1xLxH = encoder_lib.prefill(
    cfg.encoder, policy.params["encoder"], carry.inputs_TxF[None, : cfg.lookback], cfg.seq_len
  )
  next_KxS = _decide_next(policy, ctx_1xLxH[0, -1], carry.allocator, 0, carry)
  return carry._replace(encoder=encoder, next_KxS=next_KxS)


def _feature_row(policy: Policy, carry: Carry, bar: LiveBar, volume_W, age_W):
  """The new bar's features [F], as lemjax/data/features.py computes them for training."""
  inside_W = age_W.astype(jnp.float32) < policy.volume_window_ms / policy.step_ms
  mean = jnp.sum(jnp.where(inside_W, volume_W, 0.0)) / jnp.sum(inside_W.astype(jnp.float32))
  ratio = jnp.where(mean > 0, bar.volume_2[0] / jnp.where(mean > 0, mean, 1.0), 0.0)
  head_3 = jnp.stack(
    [
      jnp.log(ratio + features.VOLUME_FLOOR),
      _rel_bps(bar.close_2, carry.close_2),
      _rel_bps(bar.close_2, carry.arrival_2),
    ]
  )
  return jnp.concatenate([head_3, bar.calendar_C.astype(jnp.float32)])


def _net_fill(policy: Policy, carry: Carry, price, volume):
  """(net shares, net cash) after the order's own child of this bar pays its costs (costs.py)."""
  n, k, sc = policy.n_ahead, carry.head, carry.scenario
  a = carry.next_KxS[k, sc]
  notional = jnp.asarray(scenarios.IS_NOTIONAL_S)[sc]
  shares = a * carry.size_frac * n / jnp.where(notional, price, 1.0)
  participation = shares / jnp.maximum(volume, policy.costs.volume_floor)
  cost = costs_lib.cost_bps(participation, carry.sigma_bps, policy.costs, carry.half_spread_bps)
  fill = price * (1.0 + jnp.asarray(scenarios.SIDE_SIGN_S)[sc] * cost * 1e-4)
  net_shares = carry.net_shares + jnp.where(notional, a / fill, a)
  net_cash = carry.net_cash + jnp.where(notional, a, a * fill)
  return net_shares, net_cash


def _output(carry: Carry, costs_on: bool = False) -> StepOutput:
  alloc, k, sc = carry.allocator, carry.head, carry.scenario
  shares, cash = alloc.shares_BxKxS[0, k, sc], alloc.cash_BxKxS[0, k, sc]
  gross = jnp.where(shares > 0, cash / jnp.where(shares > 0, shares, 1.0), jnp.nan)
  price = gross
  if costs_on:
    bought = carry.net_shares > 0
    price = jnp.where(bought, carry.net_cash / jnp.where(bought, carry.net_shares, 1.0), jnp.nan)
  bars = alloc.step.astype(jnp.float32)
  twap = jnp.where(bars > 0, alloc.mkt_price_sum_B[0] / jnp.maximum(bars, 1.0), jnp.nan)
  vol = alloc.mkt_volume_B[0]
  vwap = jnp.where(vol > 0, alloc.mkt_notional_B[0] / jnp.where(vol > 0, vol, 1.0), twap)
  bench = jnp.where(jnp.asarray(scenarios.IS_TWAP_S)[sc], twap, vwap)
  side = jnp.asarray(scenarios.SIDE_SIGN_S)[sc]
  child, frac = carry_lib.next_child(carry)
  arrival = carry.arrival_2[0] + carry.arrival_2[1]
  return StepOutput(
    child=child,
    fraction=frac,
    done=carry.done,
    bars=alloc.step,
    remaining=alloc.remaining_BxKxS[0, k, sc],
    price=price * arrival,
    benchmark=bench * arrival,
    improvement_bps=side * (1.0 - price / bench) * 1e4,
    cost_bps=side * (price - gross) / bench * 1e4 if costs_on else jnp.zeros_like(price),
  )


def step(policy: Policy, carry: Carry, bar: LiveBar) -> tuple[Carry, StepOutput]:
  """Executes the bar that just closed and decides the next one. Pure: jit it, vmap it over orders.

  Args:
    policy: the Policy (its params are traced; its configs are static).
    carry: one order's Carry.
    bar: the bar, as `check_bar` returns it (validate on the host first).

  Returns:
    (new carry, StepOutput with the child size for the next bar, the done flag and the running
    achieved price, benchmark and improvement). Once done, the carry no longer changes.
  """
  cfg = policy.model_config
  n, lb = cfg.n_ahead, cfg.lookback
  s = carry.allocator.step
  # Accounting of bar s at the allocations decided before it opened (prices vs arrival).
  price = _ratio(bar.vwap_2, carry.arrival_2)
  volume = _ratio(bar.volume_2, carry.mean_volume_2)
  alloc = allocation.advance(carry.allocator, carry.next_KxS[None], price[None], volume[None])
  net_shares, net_cash = carry.net_shares, carry.net_cash
  if policy.costs.enabled:
    net_shares, net_cash = _net_fill(policy, carry, price, volume)
  # The bar's features go to encoder position L + s; the last bar's (s = N-1) lies past T, unread.
  age_W = jnp.minimum(carry.age_W + bar.gap, carry_lib.EMPTY_AGE)
  volume_W = jnp.concatenate([carry.volume_W[1:], bar.volume_2[:1]])
  age_W = jnp.concatenate([age_W[1:], jnp.zeros((1,), jnp.int32)])
  row_F = _feature_row(policy, carry, bar, volume_W, age_W)
  inputs_TxF = carry.inputs_TxF.at[lb + s].set(row_F, mode="drop")
  # One encoder position (L + s, the encoder carry's next) gives the context of decision s + 1.
  encoder, ctx_1xH = encoder_lib.step(
    cfg.encoder, policy.params["encoder"], carry.encoder, row_F[None]
  )
  next_KxS = _decide_next(policy, ctx_1xH[0], alloc, s + 1, carry)
  # Done once complete and past the minimum period (the benchmark window has closed).
  remaining = alloc.remaining_BxKxS[0, carry.head, carry.scenario]
  done = (alloc.step >= n) | ((remaining <= 0) & (alloc.step > carry.head))
  new = carry._replace(
    inputs_TxF=inputs_TxF,
    encoder=encoder,
    allocator=alloc,
    next_KxS=next_KxS,
    volume_W=volume_W,
    age_W=age_W,
    close_2=bar.close_2,
    day=bar.day,
    ms=bar.ms,
    done=done,
    net_shares=net_shares,
    net_cash=net_cash,
  )
  new = jax.tree.map(lambda x, y: jnp.where(carry.done, y, x), new, carry)
  return new, _output(new, policy.costs.enabled)


step_jit = jax.jit(step)
step_many = jax.jit(jax.vmap(step, in_axes=(None, 0, 0)))
_first_decision_jit = jax.jit(_first_decision)


def output(carry: Carry, costs_on: bool = False) -> StepOutput:
  """The StepOutput of a carry (e.g. right after `start` or `load_carry`); costs_on: the
  policy charges costs (`policy.costs.enabled`), so the price is net of them."""
  fn = functools.partial(_output, costs_on=costs_on)
  return fn(carry) if jnp.ndim(carry.head) == 0 else jax.vmap(fn)(carry)
