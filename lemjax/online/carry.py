"""A live order's carry: all that its next decision needs, as a pytree of small fixed-shape arrays.

* the encoder input buffer [T, F]: the history's features, then each executed bar's
  features as it arrives; positions not yet seen stay zero. The encoder is causal, so
  decision s, read at position L-1+s, never depends on them (SPEC section 2);
* the encoder's carry (`lemjax.online.encoder`: TKAN carries and attention keys/values of
  the positions seen);
* the allocator's carry for every head and scenario (`allocation.init_carry`/`advance`);
* a rolling buffer of recent volumes (the trailing-mean volume feature), the last close,
  the arrival price and the lookback mean volume, as float32 (hi, lo) pairs;
* the order's terms: head k, scenario, rate bounds (r_max holding the participation cap when
  the policy charges costs), size, and its size relative to the expected volume over N bars;
* the lookback volatility, the lookback high-low half-spread (charged when costs.spread is
  "high_low") and the order's own fills net of costs (lemjax/costs.py).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import polars as pl

from lemjax import allocation
from lemjax import costs as costs_lib
from lemjax import scenarios
from lemjax.data import features
from lemjax.data import tables
from lemjax.online import bars as bars_lib
from lemjax.online import encoder as encoder_lib
from lemjax.online.orders import Order
from lemjax.online.policy import Policy

EMPTY_AGE = 2**30  # age (in bars) of an empty volume-buffer slot: never inside the window


class Carry(NamedTuple):
  """One live order (or several, stacked on leading axes): a pytree of small arrays."""

  inputs_TxF: jax.Array  # encoder input buffer; unseen positions are zero
  encoder: encoder_lib.Carry  # encoder carry after the positions seen (batch of 1)
  allocator: allocation.Carry  # allocator accounting, batch of 1, every head and scenario
  next_KxS: jax.Array  # allocation of the next bar at [head, scenario], zero elsewhere
  volume_W: jax.Array  # raw volumes of the latest W bars, newest last
  age_W: jax.Array  # int32, bars between each of them and the latest bar
  close_2: jax.Array  # last close (hi, lo)
  arrival_2: jax.Array  # arrival price: close of bar t0-1 (hi, lo)
  mean_volume_2: jax.Array  # mean volume of the L lookback bars (hi, lo): the volume scale
  day: jax.Array  # int32, last bar's open: UTC day
  ms: jax.Array  # int32, and ms within it
  head: jax.Array  # int32, k: min_bars - 1, or N for fixed duration
  scenario: jax.Array  # int32, index into scenarios.SCENARIOS
  r_min: jax.Array  # float32 per-bar bounds (fractions)
  r_max: jax.Array
  size: jax.Array  # float32 parent order size (shares or cash)
  done: jax.Array  # bool: complete and past its benchmark window
  size_frac: jax.Array  # float32 size / expected volume over N bars (N x lookback mean volume)
  sigma_bps: jax.Array  # float32 lookback volatility, bps per bar (the impact's scale)
  half_spread_bps: jax.Array  # float32 lookback high-low half-spread, bps (costs.spread="high_low")
  net_shares: jax.Array  # float32 shares bought/sold so far at fill prices net of costs
  net_cash: jax.Array  # float32 cash paid/received so far, net of costs (order value = 1)


class StepOutput(NamedTuple):
  """What a caller needs after each bar (absolute prices; NaN before the first fill)."""

  child: jax.Array  # shares (quantity) or cash (notional) to trade in the next bar
  fraction: jax.Array  # the same as a fraction of the parent order
  done: jax.Array  # the order is complete and its benchmark window closed
  bars: jax.Array  # int32, bars executed so far
  remaining: jax.Array  # fraction of the order not yet traded
  price: jax.Array  # running achieved average price
  benchmark: jax.Array  # running benchmark (VWAP or TWAP of the bars executed so far)
  improvement_bps: jax.Array  # side * (1 - price / benchmark) * 1e4
  cost_bps: jax.Array  # costs paid so far, bps: gross minus net improvement (0 without costs)


def from_history(policy: Policy, order: Order, history_bars) -> Carry:
  """A new order's carry before any decision: history features, volumes and the order's terms.

  Args:
    policy: the Policy.
    order: the Order (checked here).
    history_bars: bars up to the order's arrival (see `lemjax.online.step.start`).

  Returns:
    Carry of numpy arrays; the encoder has seen nothing yet and next_KxS is zero.
  """
  head, scenario = order.check(policy.n_ahead)
  head = policy.serving_head(head, scenario)  # a larger minimum's head where evaluation chose one
  hist = bars_lib.check_history(policy, history_bars)
  lb, cfg = policy.lookback, policy.model_config
  table = pl.DataFrame({"time": hist["time"], "close": hist["close"], "volume": hist["volume"]})
  feats_NxF = features.bar_features(table, policy.step_ms, policy.volume_window_ms)[-lb:]
  arrival = hist["close"][-1]
  feats_NxF[:, features.ARRIVAL_FEATURE] = features.price_vs_arrival(
    hist["close"][None, -lb:], np.array([arrival]), lb
  )[0]
  mean_volume = hist["volume"][-lb:].sum() / lb
  if not mean_volume > 0:
    raise ValueError(f"history_bars: the last L={lb} bars have no volume; no order can start here")
  size_frac, r_max = _size_and_cap(policy, order, arrival, mean_volume)
  inputs_TxF = np.zeros((cfg.seq_len, features.N_FEATURES), np.float32)
  inputs_TxF[:lb] = feats_NxF
  w = policy.window_bars
  volume_W, age_W = np.zeros(w, np.float32), np.full(w, EMPTY_AGE, np.int32)
  tail = slice(-min(w, hist["time"].size), None)
  volume_W[tail] = hist["volume"][tail]
  age_W[tail] = (hist["time"][-1] - hist["time"][tail]) // policy.step_ms
  k, s = policy.n_ahead + 1, scenarios.NUM_SCENARIOS
  split = bars_lib.split
  return Carry(
    inputs_TxF=inputs_TxF,
    encoder=encoder_lib.init_carry(cfg.encoder, 1, cfg.seq_len),
    allocator=allocation.init_carry(cfg.allocator, 1),
    next_KxS=np.zeros((k, s), np.float32),
    volume_W=volume_W,
    age_W=age_W,
    close_2=split(arrival),
    arrival_2=split(arrival),
    mean_volume_2=split(mean_volume),
    day=np.int32(hist["time"][-1] // tables.MS_PER_DAY),
    ms=np.int32(hist["time"][-1] % tables.MS_PER_DAY),
    head=np.int32(head),
    scenario=np.int32(scenario),
    r_min=np.float32(order.r_min),
    r_max=np.float32(r_max),
    size=np.float32(order.size),
    done=np.bool_(False),
    size_frac=np.float32(size_frac),
    sigma_bps=np.float32(features.lookback_sigma_bps(hist["close"][-lb:])),
    half_spread_bps=np.float32(_half_spread(policy, hist)),
    net_shares=np.float32(0.0),
    net_cash=np.float32(0.0),
  )


def _half_spread(policy: Policy, hist: dict) -> float:
  """The L lookback bars' high-low half-spread, bps, as the batches compute it (costs.py); a
  history without high and low gives 0, unless the policy charges it (then ValueError)."""
  lb = policy.lookback
  if not {"high", "low"} <= set(hist):
    if policy.costs.enabled and policy.costs.spread == "high_low":
      raise ValueError(
        "history_bars lacks field 'high' or 'low': costs.spread='high_low' charges each order "
        f"the half-spread estimated from its L={lb} lookback bars' high, low and close"
      )
    return 0.0
  close = hist["close"][-lb:]
  return float(features.high_low_half_spread_bps(hist["high"][-lb:], hist["low"][-lb:], close))


def _size_and_cap(policy: Policy, order: Order, arrival: float, mean_volume: float):
  """(size relative to the expected volume over N bars, r_max with the participation cap).

  Raises ValueError naming the order and the numbers when the cap cannot complete it.
  """
  n, cost = policy.n_ahead, policy.costs
  shares = order.size if order.target == "quantity" else order.size / arrival
  size_frac = shares / (n * mean_volume)
  if not cost.enabled:
    return size_frac, order.r_max
  if order.participation_cap is not None:
    cost = dataclasses.replace(cost, participation_cap=order.participation_cap)
  name = f"Order({order.side} {order.size:g} {order.target})"
  costs_lib.check_orders(size_frac, order.r_min, order.r_max, n, cost, names=[name])
  return size_frac, float(costs_lib.capped_r_max(order.r_max, size_frac, n, cost))


def template(policy: Policy) -> Carry:
  """A carry of the policy's shapes and dtypes (zeros); trace it with `jax.eval_shape`."""
  cfg, k, s, w = (
    policy.model_config,
    policy.n_ahead + 1,
    scenarios.NUM_SCENARIOS,
    policy.window_bars,
  )
  f32, i32 = jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32)
  return Carry(
    jnp.zeros((cfg.seq_len, features.N_FEATURES)),
    encoder_lib.init_carry(cfg.encoder, 1, cfg.seq_len),
    allocation.init_carry(cfg.allocator, 1),
    jnp.zeros((k, s)),
    jnp.zeros((w,)),
    jnp.zeros((w,), jnp.int32),
    jnp.zeros(2),
    jnp.zeros(2),
    jnp.zeros(2),
    i32,
    i32,
    i32,
    i32,
    f32,
    f32,
    f32,
    jnp.zeros((), bool),
    f32,
    f32,
    f32,
    f32,
    f32,
  )


def next_child(carry: Carry):
  """(child size, fraction) to trade in the next bar: shares or cash, and of the parent order.

  Works for one carry or carries stacked on leading axes.
  """
  k, s = carry.next_KxS.shape[-2:]
  flat = jnp.reshape(carry.next_KxS, carry.next_KxS.shape[:-2] + (k * s,))
  idx = jnp.asarray(carry.head * s + carry.scenario, jnp.int32)
  frac = jnp.take_along_axis(flat, idx[..., None], axis=-1)[..., 0]
  frac = jnp.where(carry.done, 0.0, frac)
  return frac * carry.size, frac


def stack(items):
  """Stacks Carries (or LiveBars) of several orders on a new leading axis, for `step_many`."""
  return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *items)
