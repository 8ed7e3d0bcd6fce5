"""Allocation heads: one scan over decision steps of independent MLPs per head and scenario.

At decision s (bars 0..N-2; the last bar takes the remainder) every head k (K = N + 1) and
scenario (S = 8) runs its own small MLP on
  * the encoder context at the position of bar s-1 (sequence position L-1+s, SPEC section 2),
  * the order's terms (r_min, r_max, scaled by N so the uniform schedule reads 1; with
    `size_input`, also the order's size, lemjax/costs.py, whose participation cap is already
    inside r_max),
  * its own allocations and average fill price so far (fixed-size buffers, zero beyond s),
  * the running market VWAP and TWAP of the bars executed so far, and the last executed
    bar's fill price with its gaps to both (what an optional-stopping rule reads),
with prices as bps relative to the arrival price (divided by 100 so the inputs are O(1)).
The MLP's output is a factor in (0, max_scale) on the share of the remaining order that a
learned base schedule (a softmax over steps per head and scenario) would trade at step s.
A projection then enforces the order's bounds exactly (SPEC section 1):
  a_s in [lo, hi], lo = max(min(r_min, rem), rem - r_max * (N - 1 - s)), hi = min(rem, r_max),
which keeps rem <= r_max * (bars left) at every step, so the order always completes by bar N.
Bounds are exact (a hard clip); gradients flow through the proposal whenever it lies inside
them and through the remaining quantity otherwise.

The per-step pieces are pure functions so that a live executor can take one decision per
bar with trained parameters:
  carry = init_carry(config, batch)
  for s in range(N - 1):
    a_BxKxS = decide(step_params(params, s), config, carry, ctx_BxH, s, r_min_B, r_max_B)
    carry = advance(carry, a_BxKxS, price_B, volume_B)   # once bar s has executed
  a_last_BxKxS = carry.remaining
`Allocator.__call__` is a `lax.scan` of these: exactly so for "per_step"; for "shared" the scan
accumulates the histories' share of each MLP's first layer as bars execute instead of carrying
the N-length histories (`_Scan`), the same function summed in another order (equal to float32
rounding), with O(1) instead of O(N) work per head and step.

Parameters ({"step": ..., "shared": ...}):
  variant "per_step" (the paper's): every step has its own MLP per head and scenario, stacked
    on a leading step axis of length N-1 under "step"; one batched einsum over K*S per step.
  variant "shared": one MLP per head and scenario under "shared", plus a learned step
    embedding under "step" (far fewer parameters).
  "shared" also holds the base schedule logits [K, S, N].
  With `tie_heads`, the K heads of a scenario share their MLP's weights (stored with a head axis
  of length 1) and keep their own biases, base schedule and inputs: a head's first-layer bias is
  its learned embedding, and what one head learns about the market moves its neighbours too.
  `tie_scope="trunk"` shares only the context and hidden layers; each head keeps its own-state
  input layer and its readout.

Differences from the `lems` package's allocation network (SPEC section 8), all deliberate:
decision s reads bar s-1 (not bar s) and the market curves only include executed bars; the
base schedule is a softmax over steps (not normalised across heads); r_max is enforced
exactly; the experiments' heads share their trunk (`tie_heads`, `tie_scope="trunk"`), and
independent heads are initialised independently (not identical copies; `head_init="copies"`
starts a scenario's heads from one draw; both measured in docs/study.md); the
notional targets' price history is their average fill price (not cumulative notional).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lemjax import costs
from lemjax import scenarios
from lemjax.config import AllocatorConfig

_HIGHEST = jax.lax.Precision.HIGHEST
_STEP_EMBED_DIM = 16  # width of the "shared" variant's learned step embedding
_PRICE_INPUT_SCALE = 1e-2  # bps -> hundreds of bps, so MLP inputs stay O(1)
_LAST_LAYER_STD = 0.1  # small output layer: at init every head is close to its base schedule


class Carry(NamedTuple):
  """Execution state after `step` bars: fixed-size buffers, zero beyond `step`."""

  step: jax.Array  # int32 [], bars executed so far
  remaining_BxKxS: jax.Array  # fraction of the order still to trade
  shares_BxKxS: jax.Array  # shares traded so far (order value at arrival = 1)
  cash_BxKxS: jax.Array  # cash spent so far (units of the order's arrival value)
  alloc_BxKxSxN: jax.Array  # own allocation of each executed bar
  price_bps_BxKxSxN: jax.Array  # own average fill price after each executed bar, bps vs arrival
  mkt_volume_B: jax.Array  # sum of executed bars' market volumes
  mkt_notional_B: jax.Array  # sum of executed bars' volume * price
  mkt_price_sum_B: jax.Array  # sum of executed bars' prices
  mkt_vwap_bps_BxN: jax.Array  # running market VWAP after each executed bar, bps vs arrival
  mkt_twap_bps_BxN: jax.Array  # running market TWAP after each executed bar, bps vs arrival
  last_price_bps_B: (
    jax.Array
  )  # fill price of the last executed bar, bps vs arrival (0 before bar 0)


# ----------------------------------------------------------------------------- order bounds


def validate_bounds(r_min, r_max, n_ahead: int) -> None:
  """Checks per-order rate bounds with concrete (numpy) values.

  Args:
    r_min: scalar or [B], minimum fraction of the order per bar.
    r_max: scalar or [B], maximum fraction of the order per bar.
    n_ahead: N, execution bars.

  Raises:
    ValueError naming every infeasible bound.
  """
  r_min = np.atleast_1d(np.asarray(r_min, np.float64))
  r_max = np.atleast_1d(np.asarray(r_max, np.float64))
  tol = 1e-6
  checks = (
    (~np.isfinite(r_min), "r_min is not finite"),
    (~np.isfinite(r_max), "r_max is not finite"),
    (r_min < 0, "r_min is negative"),
    (r_max < 0, "r_max is negative"),
    (r_min > r_max + tol, "r_min > r_max"),
    (
      r_min * n_ahead > 1 + tol,
      f"r_min * n_ahead > 1 (n_ahead={n_ahead}): the minimum rate over-fills the order",
    ),
    (r_max * n_ahead < 1 - tol, f"r_max * n_ahead < 1 (n_ahead={n_ahead}): cannot finish by bar N"),
  )
  problems = []
  for bad, what in checks:
    bad = np.broadcast_to(bad, np.broadcast_shapes(r_min.shape, r_max.shape))
    if np.any(bad):
      i = int(np.argmax(bad))
      problems.append(
        f"{what} (first at index {i}: r_min={r_min[i % r_min.size]:.6g}, "
        f"r_max={r_max[i % r_max.size]:.6g})"
      )
  if problems:
    raise ValueError("infeasible order bounds: " + "; ".join(problems))


def _is_concrete(*xs) -> bool:
  return not any(isinstance(x, jax.core.Tracer) for x in xs)


def project(proposal_BxKxS, remaining_BxKxS, s, n_ahead: int, r_min_B, r_max_B):
  """Clips proposed allocations to the exact feasible interval of step s.

  Args:
    proposal_BxKxS: unconstrained proposals (fractions of the order).
    remaining_BxKxS: fraction of the order left before step s.
    s: decision step (int or int32 scalar), 0..N-1.
    n_ahead: N.
    r_min_B, r_max_B: per-order rate bounds.

  Returns:
    a_BxKxS with 0 <= a <= remaining, a >= min(r_min, remaining),
    a >= remaining - r_max * (N - 1 - s), and a <= r_max wherever that is feasible.
  """
  r_min = r_min_B[:, None, None]
  r_max = r_max_B[:, None, None]
  steps_after = (n_ahead - 1 - jnp.asarray(s, jnp.int32)).astype(jnp.float32)
  rem = remaining_BxKxS
  lo = jnp.maximum(jnp.minimum(r_min, rem), rem - r_max * steps_after)
  lo = jnp.clip(lo, 0.0, rem)
  hi = jnp.maximum(jnp.minimum(rem, r_max), lo)
  return jnp.clip(proposal_BxKxS, lo, hi)


# ----------------------------------------------------------------------------- parameters


def input_dims(config: AllocatorConfig, hidden: int) -> tuple[int, int]:
  """(Dc, Do): widths of the inputs shared by all heads and of each head's own inputs."""
  n = config.n_ahead
  # context, (r_min, r_max[, size]), market VWAP/TWAP curves, last price and its gaps to both
  d_ctx = hidden + 2 + int(config.size_input) + 2 * (n - 1) + 3
  if config.variant == "shared":
    d_ctx += _STEP_EMBED_DIM
  d_own = 2 * (n - 1) + 1  # own allocations, own average prices, remaining
  return d_ctx, d_own


def _init_mlp(key, lead: tuple[int, ...], config: AllocatorConfig, hidden: int) -> dict:
  """He-normal MLP weights with every head/scenario (and step) slice drawn independently; with
  `tie_heads`, the weights of `TIE_SCOPES[tie_scope]` (never the biases) have a head axis of
  length 1, shared by the K heads; with `head_init="copies"`, the K heads of a scenario start
  from one draw (scenarios and steps still differ)."""
  k, width = config.n_ahead + 1, config.width
  d_ctx, d_own = input_dims(config, hidden)
  copies = config.head_init == "copies"
  keys = jax.random.split(key, 4)
  tied = TIE_SCOPES[config.tie_scope] if config.tie_heads else ()
  kw = {name: 1 if name in tied else k for name in TIE_SCOPES["all"]}
  he_in = math.sqrt(2.0 / (d_ctx + d_own))
  s = scenarios.NUM_SCENARIOS

  def normal(key, shape, head_axis):
    # With `copies`, one draw along the head axis, repeated over the heads.
    draw = shape[:head_axis] + (1,) + shape[head_axis + 1 :] if copies else shape
    return jnp.broadcast_to(jax.random.normal(key, lead + draw, jnp.float32), lead + shape)

  zeros = lambda shape: jnp.zeros(lead + shape, jnp.float32)
  return {
    # [Dc, K, S, W]: the shared inputs meet all heads in one plain matmul.
    "w_ctx": normal(keys[0], (d_ctx, kw["w_ctx"], s, width), 1) * he_in,
    "w_own": normal(keys[1], (kw["w_own"], s, d_own, width), 0) * he_in,
    "b1": zeros((k, s, width)),
    "w2": normal(keys[2], (kw["w2"], s, width, width), 0) * math.sqrt(2.0 / width),
    "b2": zeros((k, s, width)),
    "w3": normal(keys[3], (kw["w3"], s, width), 0) * (_LAST_LAYER_STD / math.sqrt(width)),
    "b3": zeros((k, s)),
  }


HEAD_INITS = ("independent", "copies")
# The weights a scenario's heads share under `tie_heads`: "all" of them, or the "trunk" (the
# context layer and the hidden layer), each head keeping its own-state input layer and readout.
TIE_SCOPES = {"all": ("w_ctx", "w_own", "w2", "w3"), "trunk": ("w_ctx", "w2")}


def _check_config(config: AllocatorConfig) -> None:
  if config.head_init not in HEAD_INITS:
    raise ValueError(f"config.head_init={config.head_init!r} is not one of {HEAD_INITS}")
  if config.tie_scope not in TIE_SCOPES:
    raise ValueError(f"config.tie_scope={config.tie_scope!r} is not one of {tuple(TIE_SCOPES)}")
  if config.variant not in ("per_step", "shared"):
    raise ValueError(f"config.variant={config.variant!r} is not one of ('per_step', 'shared')")
  if not config.max_scale > 1.0:
    raise ValueError(
      f"config.max_scale={config.max_scale} must exceed 1 (factor 1 = base schedule)"
    )
  if config.n_ahead < 2:
    raise ValueError(f"config.n_ahead={config.n_ahead} must be at least 2")


def init_step_params(key, config: AllocatorConfig, hidden: int) -> dict:
  """Per-step parameters, every leaf with a leading step axis of length N-1."""
  _check_config(config)
  n = config.n_ahead
  if config.variant == "per_step":
    return {"mlp": _init_mlp(key, (n - 1,), config, hidden)}
  return {"embed": jax.random.normal(key, (n - 1, _STEP_EMBED_DIM), jnp.float32)}


def init_shared_params(key, config: AllocatorConfig, hidden: int) -> dict:
  """Parameters used at every step: base schedule logits (and the "shared" variant's MLP)."""
  _check_config(config)
  n, k = config.n_ahead, config.n_ahead + 1
  shared = {"base_logits": jnp.zeros((k, scenarios.NUM_SCENARIOS, n), jnp.float32)}
  if config.variant == "shared":
    shared["mlp"] = _init_mlp(key, (), config, hidden)
  return shared


def init_params(key, config: AllocatorConfig, hidden: int) -> dict:
  """All allocator parameters: {"step": leaves with leading axis N-1, "shared": ...}.

  Args:
    key: PRNG key.
    config: allocator config (n_ahead, width, variant, max_scale).
    hidden: H, width of the encoder context.

  Returns:
    Parameter pytree; `step_params(params, s)` slices one step.
  """
  key_step, key_shared = jax.random.split(key)
  return {
    "step": init_step_params(key_step, config, hidden),
    "shared": init_shared_params(key_shared, config, hidden),
  }


def step_params(params: dict, s) -> dict:
  """Parameters of decision step s only (what `decide` takes)."""
  return {"step": jax.tree.map(lambda p: p[s], params["step"]), "shared": params["shared"]}


def num_params(params) -> int:
  return int(sum(np.prod(p.shape) for p in jax.tree.leaves(params)))


# ----------------------------------------------------------------------------- one step


def init_carry(config: AllocatorConfig, batch_size: int) -> Carry:
  """Execution state before bar 0 (nothing traded, nothing observed)."""
  b, n, k, s = batch_size, config.n_ahead, config.n_ahead + 1, scenarios.NUM_SCENARIOS
  z = lambda *shape: jnp.zeros(shape, jnp.float32)
  return Carry(
    step=jnp.zeros((), jnp.int32),
    remaining_BxKxS=jnp.ones((b, k, s), jnp.float32),
    shares_BxKxS=z(b, k, s),
    cash_BxKxS=z(b, k, s),
    alloc_BxKxSxN=z(b, k, s, n),
    price_bps_BxKxSxN=z(b, k, s, n),
    mkt_volume_B=z(b),
    mkt_notional_B=z(b),
    mkt_price_sum_B=z(b),
    mkt_vwap_bps_BxN=z(b, n),
    mkt_twap_bps_BxN=z(b, n),
    last_price_bps_B=z(b),
  )


def _order_terms(config: AllocatorConfig, r_min_B, r_max_B, size_B):
  """The order's terms as MLP inputs [B, 2 (+1 with `size_input`)]: bounds x N (uniform = 1)."""
  n = config.n_ahead
  terms = [r_min_B * n, jnp.minimum(r_max_B * n, float(n))]
  if config.size_input:
    terms.append(costs.size_feature(size_B))
  return jnp.stack(terms, axis=-1)


def _features(config: AllocatorConfig, carry: Carry, ctx_BxH, r_min_B, r_max_B, embed_E, size_B):
  """(x_BxDc shared by all heads, x_BxKxSxDo per head) for one decision."""
  n = config.n_ahead
  scale = _PRICE_INPUT_SCALE
  terms_BxD = _order_terms(config, r_min_B, r_max_B, size_B)
  # The last fill price against the running benchmarks is what an optional-stopping rule
  # reads; giving it directly spares every per-step MLP from differencing the curves.
  at_last_N = jax.nn.one_hot(carry.step - 1, n, dtype=jnp.float32)  # all zero before bar 0
  vwap_B = jnp.sum(carry.mkt_vwap_bps_BxN * at_last_N[None], axis=-1)
  twap_B = jnp.sum(carry.mkt_twap_bps_BxN * at_last_N[None], axis=-1)
  last_Bx3 = jnp.stack(
    [carry.last_price_bps_B, carry.last_price_bps_B - vwap_B, carry.last_price_bps_B - twap_B],
    axis=-1,
  )
  parts = [
    ctx_BxH,
    terms_BxD,
    carry.mkt_vwap_bps_BxN[:, : n - 1] * scale,
    carry.mkt_twap_bps_BxN[:, : n - 1] * scale,
    last_Bx3 * scale,
  ]
  if embed_E is not None:
    parts.append(jnp.broadcast_to(embed_E[None, :], (ctx_BxH.shape[0], embed_E.shape[0])))
  x_ctx = jnp.concatenate(parts, axis=-1)
  x_own = jnp.concatenate(
    [
      carry.alloc_BxKxSxN[..., : n - 1] * n,
      carry.price_bps_BxKxSxN[..., : n - 1] * scale,
      carry.remaining_BxKxS[..., None],
    ],
    axis=-1,
  )
  return x_ctx, x_own


def _per_head(mlp: dict) -> dict:
  """One step's MLP with every head-indexed weight at its full K heads: weights tied across heads
  (head axis 1, `tie_heads`) are broadcast, so their gradient sums over the heads; the context
  weights `w_ctx` stay as they are (their first-layer term broadcasts when added)."""
  k = mlp["b1"].shape[0]
  out = dict(mlp)
  for name in ("w_own", "w2", "w3"):
    out[name] = jnp.broadcast_to(mlp[name], (k,) + mlp[name].shape[1:])
  return out


def _mlp(mlp: dict, x_BxDc, x_BxKxSxDo):
  """All K x S MLPs at once; returns their scalar outputs [B, K, S]."""
  mlp = _per_head(mlp)
  h = (
    jnp.einsum("bd,dksw->ksbw", x_BxDc, mlp["w_ctx"], precision=_HIGHEST)
    + jnp.einsum("bksd,ksdw->ksbw", x_BxKxSxDo, mlp["w_own"], precision=_HIGHEST)
    + mlp["b1"][:, :, None]
  )
  return _mlp_tail(mlp, h)


def _mlp_tail(mlp: dict, h_KxSxBxW):
  """The MLPs after their first layer's pre-activation: outputs [B, K, S].

  Activations are head-major ([K, S, B, W]): every head's layer is then one contiguous matmul,
  several times faster on CPU than with the batch axis in front.
  """
  h = jax.nn.relu(h_KxSxBxW)
  h = jnp.einsum("ksbw,ksvw->ksbv", h, mlp["w2"], precision=_HIGHEST)
  h = jax.nn.relu(h + mlp["b2"][:, :, None])
  z_KxSxB = jnp.einsum("ksbw,ksw->ksb", h, mlp["w3"], precision=_HIGHEST) + mlp["b3"][:, :, None]
  return jnp.moveaxis(z_KxSxB, -1, 0)


def _factor(config: AllocatorConfig, z_BxKxS):
  """The MLP output as a factor in (0, max_scale) on the base share; z = 0 gives 1."""
  offset = math.log(1.0 / (config.max_scale - 1.0))
  return config.max_scale * jax.nn.sigmoid(z_BxKxS + offset)


def _base_share_KxS(base_logits_KxSxN, s):
  """Share of the remaining order that the base schedule trades at step s ([K, S]; an array of
  steps gives [K, S, steps])."""
  base = jax.nn.softmax(base_logits_KxSxN, axis=-1)
  tail = jnp.flip(jnp.cumsum(jnp.flip(base, -1), axis=-1), -1)
  return jnp.take(base, s, axis=-1) / jnp.take(tail, s, axis=-1)


def decide(
  params: dict, config: AllocatorConfig, carry: Carry, ctx_BxH, s, r_min_B, r_max_B, size_B=None
):
  """Allocations of bar s for every head and scenario, from information before bar s.

  Args:
    params: one step's parameters, `step_params(all_params, s)`.
    config: allocator config.
    carry: execution state after bars 0..s-1 (`init_carry`, then `advance`).
    ctx_BxH: encoder context at the position of bar s-1 (sequence position L-1+s).
    s: decision step, 0..N-2 (int or int32 scalar).
    r_min_B, r_max_B: per-order rate bounds (fractions of the order per bar); r_max already
      holds any participation cap (`costs.capped_r_max`).
    size_B: order sizes (fractions of horizon volume), read only with `config.size_input`.

  Returns:
    a_BxKxS: fractions of the order to trade in bar s, exactly within the bounds.
  """
  proposal = propose(params, config, carry, ctx_BxH, s, r_min_B, r_max_B, size_B)
  return project(proposal, carry.remaining_BxKxS, s, config.n_ahead, r_min_B, r_max_B)


def propose(
  params: dict, config: AllocatorConfig, carry: Carry, ctx_BxH, s, r_min_B, r_max_B, size_B=None
):
  """The proposal of `decide` before the projection onto the bounds: [B, K, S] (same arguments).

  remaining * factor * base share, the factor in (0, max_scale) from the head's MLP.
  """
  _check_size(config, size_B)
  mlp = params["step"]["mlp"] if "mlp" in params["step"] else params["shared"]["mlp"]
  embed = params["step"].get("embed")
  x_ctx, x_own = _features(config, carry, ctx_BxH, r_min_B, r_max_B, embed, size_B)
  factor = _factor(config, _mlp(mlp, x_ctx, x_own))
  share = _base_share_KxS(params["shared"]["base_logits"], s)[None]
  return carry.remaining_BxKxS * factor * share


def _account(carry, a_BxKxS, price_B, volume_B):
  """Fills and market sums after bar `carry.step` (any carry with `Carry`'s accounting fields).

  Returns (shares, cash, own average price in bps, market volume, notional and price sums,
  running VWAP and TWAP in bps relative to arrival).
  """
  p = price_B[:, None, None]
  notional = jnp.asarray(scenarios.IS_NOTIONAL_S)[None, None, :]
  # Quantity targets trade shares at price p; notional targets spend cash.
  shares = carry.shares_BxKxS + jnp.where(notional, a_BxKxS / p, a_BxKxS)
  cash = carry.cash_BxKxS + jnp.where(notional, a_BxKxS, a_BxKxS * p)
  avg_bps = jnp.where(shares > 0, (cash / jnp.where(shares > 0, shares, 1.0) - 1.0) * 1e4, 0.0)
  mkt_volume = carry.mkt_volume_B + volume_B
  mkt_notional = carry.mkt_notional_B + volume_B * price_B
  mkt_price_sum = carry.mkt_price_sum_B + price_B
  twap = mkt_price_sum / (carry.step + 1).astype(jnp.float32)
  # A VWAP over bars without volume is undefined; fall back to their TWAP.
  vwap = jnp.where(mkt_volume > 0, mkt_notional / jnp.where(mkt_volume > 0, mkt_volume, 1.0), twap)
  vwap_bps, twap_bps = (vwap - 1.0) * 1e4, (twap - 1.0) * 1e4
  return shares, cash, avg_bps, mkt_volume, mkt_notional, mkt_price_sum, vwap_bps, twap_bps


def advance(carry: Carry, a_BxKxS, price_B, volume_B) -> Carry:
  """Accounts for bar `carry.step` once it has executed at `price_B` with `volume_B`.

  Args:
    carry: state before the bar.
    a_BxKxS: allocations traded in the bar.
    price_B: the bar's fill price divided by the arrival price.
    volume_B: the bar's market volume (any positive scale).

  Returns:
    The state after the bar.
  """
  n = carry.alloc_BxKxSxN.shape[-1]
  at_N = jax.nn.one_hot(carry.step, n, dtype=jnp.float32)
  shares, cash, avg_bps, mkt_volume, mkt_notional, mkt_price_sum, vwap_bps, twap_bps = _account(
    carry, a_BxKxS, price_B, volume_B
  )
  return Carry(
    step=carry.step + 1,
    remaining_BxKxS=carry.remaining_BxKxS - a_BxKxS,
    shares_BxKxS=shares,
    cash_BxKxS=cash,
    alloc_BxKxSxN=carry.alloc_BxKxSxN + a_BxKxS[..., None] * at_N[None, None, None],
    price_bps_BxKxSxN=carry.price_bps_BxKxSxN + avg_bps[..., None] * at_N[None, None, None],
    mkt_volume_B=mkt_volume,
    mkt_notional_B=mkt_notional,
    mkt_price_sum_B=mkt_price_sum,
    mkt_vwap_bps_BxN=carry.mkt_vwap_bps_BxN + vwap_bps[:, None] * at_N[None],
    mkt_twap_bps_BxN=carry.mkt_twap_bps_BxN + twap_bps[:, None] * at_N[None],
    last_price_bps_B=(price_B - 1.0) * 1e4,
  )


# ----------------------------------------------------------------------------- the scan


def _check_size(config: AllocatorConfig, size_B) -> None:
  if config.size_input and size_B is None:
    raise ValueError("size_B is required: config.size_input=True (execution costs on)")
  if not config.size_input and size_B is not None:
    raise ValueError("size_B given, but config.size_input=False: this model has no size input")


def _check_inputs(
  config: AllocatorConfig, lookback: int, ctx_BxTxH, r_min_B, r_max_B, prices_BxN, volumes_BxN
) -> None:
  _check_config(config)
  n = config.n_ahead
  if ctx_BxTxH.ndim != 3 or ctx_BxTxH.shape[1] != lookback + n - 1:
    raise ValueError(
      f"ctx_BxTxH.shape={ctx_BxTxH.shape}, expected [B, L+N-1={lookback + n - 1}, H]"
    )
  b = ctx_BxTxH.shape[0]
  for name, x, shape in (
    ("r_min_B", r_min_B, (b,)),
    ("r_max_B", r_max_B, (b,)),
    ("prices_BxN", prices_BxN, (b, n)),
    ("volumes_BxN", volumes_BxN, (b, n)),
  ):
    if tuple(x.shape) != shape:
      raise ValueError(f"{name}.shape={tuple(x.shape)}, expected {shape}")
  if _is_concrete(r_min_B, r_max_B):
    validate_bounds(np.asarray(r_min_B), np.asarray(r_max_B), n)


def _decision_contexts(
  config: AllocatorConfig,
  lookback: int,
  ctxs_BxTxH,
  r_min_B,
  r_max_B,
  prices_BxN,
  volumes_BxN,
  decision_lag: int,
  size_B,
):
  """Checks the scan's inputs; returns ([S, B, H] context per member, r_min, r_max, size)."""
  for ctx in ctxs_BxTxH:
    _check_inputs(config, lookback, ctx, r_min_B, r_max_B, prices_BxN, volumes_BxN)
  _check_size(config, size_B)
  if size_B is not None:
    if tuple(size_B.shape) != (ctxs_BxTxH[0].shape[0],):
      raise ValueError(f"size_B.shape={tuple(size_B.shape)}, expected ({ctxs_BxTxH[0].shape[0]},)")
    size_B = jnp.asarray(size_B, jnp.float32)
  if decision_lag not in (0, 1):
    raise ValueError(f"decision_lag={decision_lag!r} must be 1 (causal) or 0 (look-ahead)")
  n = config.n_ahead
  # Decision s reads position L-1+s+(1-lag): with lag 1 the bar before the one it trades.
  first = lookback - decision_lag
  ctxs_SxBxH = [jnp.swapaxes(c[:, first : first + n - 1], 0, 1) for c in ctxs_BxTxH]
  return ctxs_SxBxH, jnp.asarray(r_min_B, jnp.float32), jnp.asarray(r_max_B, jnp.float32), size_B


def _execute(
  config: AllocatorConfig, propose_fn, step_xs, r_min_B, r_max_B, prices_BxN, volumes_BxN
):
  """The scan over s = 0..N-2: propose, project onto the bounds, execute the bar.

  propose_fn(carry, step_xs_s, s) -> [B, K, S] proposal, from the state before bar s and the
  s-th slice of `step_xs` (a pytree with leading axis N-1). Returns alloc_BxNxKxS; the last bar
  trades whatever remains.
  """
  n = config.n_ahead

  def body(carry, step_xs_s, price_B, volume_B, s):
    proposal = propose_fn(carry, step_xs_s, s)
    a_BxKxS = project(proposal, carry.remaining_BxKxS, s, n, r_min_B, r_max_B)
    return advance(carry, a_BxKxS, price_B, volume_B), a_BxKxS

  init = init_carry(config, prices_BxN.shape[0])
  return _scan_bars(body, init, step_xs, prices_BxN, volumes_BxN)


def _scan_bars(body, init, step_xs, prices_BxN, volumes_BxN):
  """lax.scan of body(carry, step_xs_s, price_B, volume_B, s) -> (carry, a_BxKxS) over the
  decisions s = 0..N-2 (`step_xs`: a pytree with leading axis N-1); the last bar trades what
  `carry.remaining_BxKxS` holds then. Returns alloc_BxNxKxS."""
  n = prices_BxN.shape[1]
  xs = (
    step_xs,
    prices_BxN[:, : n - 1].T,
    volumes_BxN[:, : n - 1].T,
    jnp.arange(n - 1, dtype=jnp.int32),
  )
  carry, a_SxBxKxS = jax.lax.scan(lambda c, x: body(c, *x), init, xs)
  alloc = jnp.concatenate([a_SxBxKxS, carry.remaining_BxKxS[None]], axis=0)
  return jnp.moveaxis(alloc, 0, 1)


class _Scan(NamedTuple):
  """`allocate`'s scan state for the "shared" variant: `Carry` without its N-length histories.

  The histories (own allocations and average prices, market VWAP and TWAP after each bar) only
  ever enter the MLPs through their first layer, a sum over input rows, and every entry is
  written once and then fixed; so their contribution is accumulated in `history_KxSxBxW` as bars
  execute. The decisions equal `decide` on the full `Carry` (the same sum, in another order), with
  O(1) instead of O(N) work per head and step and no history buffers to carry.
  """

  step: jax.Array
  remaining_BxKxS: jax.Array
  shares_BxKxS: jax.Array
  cash_BxKxS: jax.Array
  mkt_volume_B: jax.Array
  mkt_notional_B: jax.Array
  mkt_price_sum_B: jax.Array
  last_price_bps_B: jax.Array
  last_vwap_bps_B: jax.Array  # running market VWAP after the last executed bar (0 before bar 0)
  last_twap_bps_B: jax.Array
  history_KxSxBxW: jax.Array  # the histories' share of every first-layer pre-activation


def _head_major(x_BxKxS):
  """[B, K, S] -> [K, S, B, 1], to scale head-major first-layer rows."""
  return jnp.moveaxis(x_BxKxS, 0, -1)[..., None]


def _allocate_shared(
  config: AllocatorConfig, params, ctx_SxBxH, r_min_B, r_max_B, p_BxN, v_BxN, size_B
):
  """`_execute` of `propose` for the "shared" variant, with the histories accumulated (`_Scan`)."""
  n, b = config.n_ahead, p_BxN.shape[0]
  scale = _PRICE_INPUT_SCALE
  mlp = _per_head(params["shared"]["mlp"])
  # Rows of w_ctx and w_own in `_features`' order.
  n_terms = 2 + int(config.size_input)
  cuts = np.cumsum([ctx_SxBxH.shape[-1], n_terms, n - 1, n - 1, 3])
  w_ctx, w_terms, w_vwap, w_twap, w_last, w_embed = jnp.split(mlp["w_ctx"], cuts, axis=0)
  w_own_DxKxSxW = jnp.moveaxis(mlp["w_own"], 2, 0)
  w_alloc, w_price, w_rem = w_own_DxKxSxW[: n - 1], w_own_DxKxSxW[n - 1 : -1], w_own_DxKxSxW[-1]
  # What stays fixed during an execution, and each step's embedding, through the first layer.
  terms_BxD = _order_terms(config, r_min_B, r_max_B, size_B)
  fixed_BxKxSxW = (
    jnp.einsum("bd,dksw->ksbw", terms_BxD, w_terms, precision=_HIGHEST) + mlp["b1"][:, :, None]
  )
  embed_SxKxSxW = jnp.einsum("te,eksw->tksw", params["step"]["embed"], w_embed, precision=_HIGHEST)
  steps = jnp.arange(n - 1)
  share_SxKxS = jnp.moveaxis(_base_share_KxS(params["shared"]["base_logits"], steps), -1, 0)

  def body(c: _Scan, step_xs_s, price_B, volume_B, s):
    ctx_BxH, embed_KxSxW, share_KxS, w_bar = step_xs_s
    last_Bx3 = jnp.stack(
      [
        c.last_price_bps_B,
        c.last_price_bps_B - c.last_vwap_bps_B,
        c.last_price_bps_B - c.last_twap_bps_B,
      ],
      axis=-1,
    )
    h = (
      jnp.einsum("bh,hksw->ksbw", ctx_BxH, w_ctx, precision=_HIGHEST)
      + jnp.einsum("bd,dksw->ksbw", last_Bx3 * scale, w_last, precision=_HIGHEST)
      + fixed_BxKxSxW
      + embed_KxSxW[:, :, None]
      + c.history_KxSxBxW
      + _head_major(c.remaining_BxKxS) * w_rem[:, :, None]
    )
    proposal = c.remaining_BxKxS * _factor(config, _mlp_tail(mlp, h)) * share_KxS[None]
    a = project(proposal, c.remaining_BxKxS, s, n, r_min_B, r_max_B)
    shares, cash, avg_bps, mkt_volume, mkt_notional, mkt_price_sum, vwap_bps, twap_bps = _account(
      c, a, price_B, volume_B
    )
    # Bar s's entries of the four histories, through their rows of the first layer.
    w_a, w_p, w_v, w_t = w_bar
    history = (
      c.history_KxSxBxW
      + _head_major(a * n) * w_a[:, :, None]
      + _head_major(avg_bps * scale) * w_p[:, :, None]
      + (vwap_bps * scale)[None, None, :, None] * w_v[:, :, None]
      + (twap_bps * scale)[None, None, :, None] * w_t[:, :, None]
    )
    last_price = (price_B - 1.0) * 1e4
    new = _Scan(
      c.step + 1,
      c.remaining_BxKxS - a,
      shares,
      cash,
      mkt_volume,
      mkt_notional,
      mkt_price_sum,
      last_price,
      vwap_bps,
      twap_bps,
      history,
    )
    return new, a

  k, n_s = n + 1, scenarios.NUM_SCENARIOS
  z = lambda *shape: jnp.zeros(shape, jnp.float32)
  init = _Scan(
    jnp.zeros((), jnp.int32),
    jnp.ones((b, k, n_s), jnp.float32),
    z(b, k, n_s),
    z(b, k, n_s),
    z(b),
    z(b),
    z(b),
    z(b),
    z(b),
    z(b),
    z(k, n_s, b, config.width),
  )
  step_xs = (ctx_SxBxH, embed_SxKxSxW, share_SxKxS, (w_alloc, w_price, w_vwap, w_twap))
  return _scan_bars(body, init, step_xs, p_BxN, v_BxN)


def allocate(
  params: dict,
  config: AllocatorConfig,
  lookback: int,
  ctx_BxTxH,
  r_min_B,
  r_max_B,
  prices_BxN,
  volumes_BxN,
  decision_lag: int = 1,
  size_B=None,
):
  """Runs all decisions: a lax.scan of `decide` then `advance` over s = 0..N-2.

  Args:
    params: `init_params` pytree.
    config: allocator config.
    lookback: L.
    ctx_BxTxH: encoder context, T = L + N - 1 (bars t0-L .. t0+N-2).
    r_min_B, r_max_B: per-order rate bounds (validated here when concrete).
    prices_BxN, volumes_BxN: executed bars' prices (relative to arrival) and volumes, read
      only after each decision.
    decision_lag: 1 (causal): decision s reads position L-1+s, bar s-1; 0 reads position L+s,
      bar s itself (the `lems` package's one-bar look-ahead, research only).
    size_B: [B] order sizes, required exactly when `config.size_input` (lemjax/costs.py).

  Returns:
    alloc_BxNxKxS: allocations summing to 1 over N for every head and scenario.
  """
  (ctx_SxBxH,), r_min_B, r_max_B, size_B = _decision_contexts(
    config, lookback, [ctx_BxTxH], r_min_B, r_max_B, prices_BxN, volumes_BxN, decision_lag, size_B
  )
  if config.variant == "shared":
    return _allocate_shared(
      config, params, ctx_SxBxH, r_min_B, r_max_B, prices_BxN, volumes_BxN, size_B
    )

  def propose_fn(carry, xs, s):
    params_s, ctx_BxH = xs
    step = {"step": params_s, "shared": params["shared"]}
    return propose(step, config, carry, ctx_BxH, s, r_min_B, r_max_B, size_B)

  return _execute(
    config, propose_fn, (params["step"], ctx_SxBxH), r_min_B, r_max_B, prices_BxN, volumes_BxN
  )


ENSEMBLE_RULES = ("mean_proposal", "median_proposal")


def allocate_ensemble(
  params_M: list,
  config: AllocatorConfig,
  lookback: int,
  ctx_MxBxTxH: list,
  r_min_B,
  r_max_B,
  prices_BxN,
  volumes_BxN,
  rule: str = "median_proposal",
  decision_lag: int = 1,
  size_B=None,
):
  """One execution steered by several trained allocators of the same config (a seed ensemble).

  At every decision each member reads the ensemble's own execution state (one carry) and its
  own encoder context, and proposes a trade (`propose`); the proposals are combined across
  members (`rule`: their mean, or their median, a majority vote on whether to end now) and the
  combination is projected onto the bounds once. Unlike averaging the members' finished
  allocations, an order ends early as soon as the combined proposal says so, not only once every
  member has ended it. Causal and exactly within the bounds, like `allocate`.

  Args:
    params_M: the members' allocator parameter trees (`init_params`), M >= 1.
    ctx_MxBxTxH: each member's encoder context [B, L+N-1, H] (its own encoder).
    rule: "mean_proposal" or "median_proposal".
    the rest: as `allocate`.

  Returns:
    alloc_BxNxKxS: allocations summing to 1 over N for every head and scenario.
  """
  if rule not in ENSEMBLE_RULES:
    raise ValueError(f"rule={rule!r} must be one of {ENSEMBLE_RULES}")
  if not params_M or len(params_M) != len(ctx_MxBxTxH):
    raise ValueError(
      f"{len(params_M)} members' parameters and {len(ctx_MxBxTxH)} contexts: need M >= 1 of each"
    )
  ctx_MxSxBxH, r_min_B, r_max_B, size_B = _decision_contexts(
    config, lookback, ctx_MxBxTxH, r_min_B, r_max_B, prices_BxN, volumes_BxN, decision_lag, size_B
  )
  combine = jnp.mean if rule == "mean_proposal" else jnp.median

  def propose_fn(carry, xs, s):
    steps_M, ctxs_M = xs
    proposals = [
      propose({"step": st, "shared": p["shared"]}, config, carry, c, s, r_min_B, r_max_B, size_B)
      for st, p, c in zip(steps_M, params_M, ctxs_M)
    ]
    return combine(jnp.stack(proposals), axis=0)

  step_xs = ([p["step"] for p in params_M], ctx_MxSxBxH)
  return _execute(config, propose_fn, step_xs, r_min_B, r_max_B, prices_BxN, volumes_BxN)


class Allocator(nn.Module):
  """Linen wrapper: parameters "step" and "shared" (see `init_params`), call = `allocate`."""

  config: AllocatorConfig
  lookback: int
  decision_lag: int = 1

  @nn.compact
  def __call__(self, ctx_BxTxH, r_min_B, r_max_B, prices_BxN, volumes_BxN, size_B=None):
    """Returns alloc_BxNxKxS; see `allocate`."""
    hidden = ctx_BxTxH.shape[-1]
    step = self.param("step", init_step_params, self.config, hidden)
    shared = self.param("shared", init_shared_params, self.config, hidden)
    return allocate(
      {"step": step, "shared": shared},
      self.config,
      self.lookback,
      ctx_BxTxH,
      r_min_B,
      r_max_B,
      prices_BxN,
      volumes_BxN,
      self.decision_lag,
      size_B,
    )
