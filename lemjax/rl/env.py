"""A pure, jittable execution environment over the LEM's orders, with gymnax's reset/step API.

One episode executes one parent order of a pool (the windows the LEM trains on) under one
scenario (side, benchmark, target), one head k (minimum duration k + 1 bars, or fixed
duration for k = N) and one pair of rate bounds, all drawn at reset.

  obs, state = env.reset(key, params)
  obs, state, reward, done, info = env.step(key, state, action, params)   # auto-resets when done

Decision s = 0 .. N-2 chooses the share of the *remaining* order to trade in bar s; it is
projected exactly onto the order's bounds by the LEM's own rule (`allocation.project`:
min(r_min, rem) <= a <= r_max and a >= rem - r_max * bars after s). After decision N-2 the
last bar takes the remainder, so an episode has at most N-1 decisions; it ends earlier when
nothing is left (once the order is complete, no later choice changes the score).

Reward: sparse and terminal, the episode's exact improvement in bps (positive is good),
computed by `objectives.improvement_bps` on the complete allocation, the same accounting the
evaluator applies to the LEM and every baseline; 0 on the other steps. With gamma = 1 the
return is exactly the score of the order.

Observation (all known before bar s, SPEC section 2), in `obs_fields` order:
  * features of bars s-W .. s-1 (positions of the window's inputs; bps features / 100);
  * execution state: bars done and left (/ N), remaining, the feasible interval [lo, hi] of
    this decision as shares of the remaining order, whether the head may finish early now;
  * prices in bps / 100: last close vs arrival, the scenario's running benchmark of bars
    0..s-1 vs arrival, its gain (side * (1 - last close / benchmark), what optional-stopping
    rules read), the gain over lookback volatility x sqrt(bars left), the own average fill vs
    arrival and its gain over the running benchmark, the lookback volatility;
  * order terms: r_min * N, r_max * N, scenario one-hot [S], head one-hot [K].
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from lemjax import allocation
from lemjax import objectives
from lemjax import scenarios
from lemjax.data import features

_BPS = 1e-2  # bps -> hundreds of bps, so observations are O(1)
_OBS_CLIP = 10.0  # observations are clipped to +-this (fat-tailed returns)
_STATE_FIELDS = (
  "bars_done",
  "bars_left",
  "remaining",
  "lo",
  "hi",
  "can_stop",
  "last_close",
  "benchmark",
  "gain",
  "vol_gain",
  "fill",
  "fill_gain",
  "lookback_vol",
  "r_min",
  "r_max",
)


@struct.dataclass
class EnvParams:
  """The pool of orders (device arrays, M orders) and the distributions of the order terms."""

  feats_MxWxF: jax.Array  # scaled features of bars t0-W .. t0+N-2 (W + N - 1 positions)
  prices_MxN: jax.Array  # bar VWAP / arrival
  volumes_MxN: jax.Array  # bar volume / lookback mean volume
  closes_MxN: jax.Array  # closes[:, s] = close of bar s-1 / arrival (closes[:, 0] = 1)
  lookback_vol_M: jax.Array  # bps per bar
  r_min_range: jax.Array  # [2], uniform range of r_min (clipped to <= 1/N)
  r_max_range: jax.Array  # [2], uniform range of r_max (clipped to >= 1/N)


@struct.dataclass
class EnvState:
  """One episode: the order, its terms, and the allocation so far."""

  order: jax.Array  # int32 [], index in the pool
  scenario: jax.Array  # int32 [], index on the S axis
  head: jax.Array  # int32 [], k in 0..N (N: fixed duration)
  r_min: jax.Array  # float32 []
  r_max: jax.Array  # float32 []
  step: jax.Array  # int32 [], bars executed
  remaining: jax.Array  # float32 [], fraction of the order still to trade
  alloc_N: jax.Array  # float32 [N], allocation of each executed bar (0 beyond)


def scale_features(inputs_BxTxF: np.ndarray) -> np.ndarray:
  """Input features as observed: bps features / 100, everything clipped to +-10."""
  scale_F = np.array(
    [_BPS if name.endswith("_bps") else 1.0 for name in features.FEATURE_NAMES], np.float32
  )
  if inputs_BxTxF.shape[-1] != scale_F.size:
    raise ValueError(f"inputs_BxTxF.shape={inputs_BxTxF.shape}: expected F={scale_F.size} features")
  return np.clip(inputs_BxTxF * scale_F, -_OBS_CLIP, _OBS_CLIP).astype(np.float32)


def make_params(
  batch: dict, obs_bars: int, r_min_range=(0.0, 0.05), r_max_range=(0.25, 1.0)
) -> EnvParams:
  """EnvParams over the orders of a data batch (`Dataset.batch`: inputs, prices, volumes,
  closes, lookback_vol); only the last W + N - 1 positions of the inputs are kept."""
  prices = np.asarray(batch["prices"], np.float32)
  if prices.ndim != 2 or prices.shape[1] < 2:
    raise ValueError(f"batch['prices'].shape={prices.shape}, expected [M, N] with N >= 2")
  m, n = prices.shape
  inputs = np.asarray(batch["inputs"])
  span = obs_bars + n - 1
  if inputs.ndim != 3 or inputs.shape[0] != m or inputs.shape[1] < span or obs_bars < 1:
    raise ValueError(
      f"batch['inputs'].shape={inputs.shape}: expected [M={m}, T >= W+N-1={span}, F] "
      f"with obs_bars W={obs_bars} >= 1 (lookback >= W)"
    )
  for key in ("volumes", "closes"):
    if np.shape(batch[key]) != (m, n):
      raise ValueError(f"batch[{key!r}].shape={np.shape(batch[key])}, expected {(m, n)}")
  if np.shape(batch["lookback_vol"]) != (m,):
    raise ValueError(
      f"batch['lookback_vol'].shape={np.shape(batch['lookback_vol'])}, expected ({m},)"
    )
  return EnvParams(
    feats_MxWxF=jnp.asarray(scale_features(inputs[:, -span:])),
    prices_MxN=jnp.asarray(prices),
    volumes_MxN=jnp.asarray(batch["volumes"], jnp.float32),
    closes_MxN=jnp.asarray(batch["closes"], jnp.float32),
    lookback_vol_M=jnp.asarray(batch["lookback_vol"], jnp.float32),
    r_min_range=jnp.asarray(r_min_range, jnp.float32),
    r_max_range=jnp.asarray(r_max_range, jnp.float32),
  )


def obs_fields(n_ahead: int, obs_bars: int, n_features: int = features.N_FEATURES) -> dict:
  """Name -> slice of the observation vector (for readers such as rule-based policies)."""
  sizes = [("bar_features", obs_bars * n_features)] + [(name, 1) for name in _STATE_FIELDS]
  sizes += [("scenario", scenarios.NUM_SCENARIOS), ("head", n_ahead + 1)]
  out, start = {}, 0
  for name, size in sizes:
    out[name] = slice(start, start + size)
    start += size
  return out


@dataclasses.dataclass(frozen=True)
class ExecutionEnv:
  """The environment's static settings; every method is pure (jit and vmap them freely)."""

  n_ahead: int  # N, execution bars
  obs_bars: int = 4  # W, bars of features in the observation
  n_features: int = features.N_FEATURES

  @property
  def obs_size(self) -> int:
    return obs_fields(self.n_ahead, self.obs_bars, self.n_features)["head"].stop

  # --- reset ---------------------------------------------------------------------------------

  def init_state(self, order, scenario, head, r_min, r_max) -> EnvState:
    """The state before bar 0 of a given order, scenario, head and bounds (no randomness)."""
    return EnvState(
      order=jnp.asarray(order, jnp.int32),
      scenario=jnp.asarray(scenario, jnp.int32),
      head=jnp.asarray(head, jnp.int32),
      r_min=jnp.asarray(r_min, jnp.float32),
      r_max=jnp.asarray(r_max, jnp.float32),
      step=jnp.zeros((), jnp.int32),
      remaining=jnp.ones((), jnp.float32),
      alloc_N=jnp.zeros((self.n_ahead,), jnp.float32),
    )

  def reset_env(self, key, params: EnvParams) -> tuple[jax.Array, EnvState]:
    """Draws an order, a scenario, a head and feasible bounds (r_min <= 1/N <= r_max).

    One uniform draw per term (integer terms by flooring), far cheaper to compile than
    `jax.random.randint`.
    """
    u_5 = jax.random.uniform(key, (5,), jnp.float32)
    sizes = (params.prices_MxN.shape[0], scenarios.NUM_SCENARIOS, self.n_ahead + 1)
    order, scenario, head = (
      jnp.minimum((u_5[i] * size).astype(jnp.int32), size - 1) for i, size in enumerate(sizes)
    )
    lo, hi = params.r_min_range, params.r_max_range
    uniform = 1.0 / self.n_ahead
    state = self.init_state(
      order,
      scenario,
      head,
      jnp.minimum(lo[0] + u_5[3] * (lo[1] - lo[0]), uniform),
      jnp.maximum(hi[0] + u_5[4] * (hi[1] - hi[0]), uniform),
    )
    return self.observe(state, params), state

  def reset(self, key, params: EnvParams) -> tuple[jax.Array, EnvState]:
    return self.reset_env(key, params)

  # --- observation ---------------------------------------------------------------------------

  def bounds(self, state: EnvState):
    """(lo, hi) of this decision's allocation: `allocation.project`'s interval."""
    rem = state.remaining
    ends_1x2x1 = allocation.project(
      jnp.stack([jnp.zeros_like(rem), rem])[None, :, None],
      jnp.broadcast_to(rem, (1, 2, 1)),
      jnp.minimum(state.step, self.n_ahead - 1),
      self.n_ahead,
      state.r_min[None],
      state.r_max[None],
    )
    return ends_1x2x1[0, 0, 0], ends_1x2x1[0, 1, 0]

  def observe(self, state: EnvState, params: EnvParams) -> jax.Array:
    """The observation [obs_size] before the decision at bar `state.step` (reads bars < step)."""
    n, s = self.n_ahead, jnp.minimum(state.step, self.n_ahead - 1)
    past_N = jnp.arange(n) < state.step
    p_N, v_N = params.prices_MxN[state.order], params.volumes_MxN[state.order]
    started = state.step > 0
    # Running benchmark of the executed bars (VWAP falls back to TWAP without volume).
    count = jnp.maximum(state.step, 1).astype(jnp.float32)
    twap = jnp.sum(jnp.where(past_N, p_N, 0.0)) / count
    vol = jnp.sum(jnp.where(past_N, v_N, 0.0))
    vwap = jnp.where(
      vol > 0, jnp.sum(jnp.where(past_N, v_N * p_N, 0.0)) / jnp.where(vol > 0, vol, 1.0), twap
    )
    bench = jnp.where(
      started, jnp.where(jnp.asarray(scenarios.IS_TWAP_S)[state.scenario], twap, vwap), 1.0
    )
    side = jnp.asarray(scenarios.SIDE_SIGN_S)[state.scenario]
    last = params.closes_MxN[state.order, s]
    gain = jnp.where(started, side * (1.0 - last / bench) * 1e4, 0.0)
    # Own average fill (a harmonic mean for notional targets).
    a_N = jnp.where(past_N, state.alloc_N, 0.0)
    traded = jnp.sum(a_N)
    notional = jnp.asarray(scenarios.IS_NOTIONAL_S)[state.scenario]
    fill = jnp.where(
      notional,
      traded / jnp.maximum(jnp.sum(a_N / p_N), 1e-30),
      jnp.sum(a_N * p_N) / jnp.maximum(traded, 1e-30),
    )
    fill = jnp.where(traded > 0, fill, 1.0)
    vol_bps = params.lookback_vol_M[state.order]
    left = (n - s).astype(jnp.float32)
    lo, hi = self.bounds(state)
    rem = jnp.maximum(state.remaining, 1e-30)
    values = jnp.stack(
      [
        state.step / n,
        left / n,
        state.remaining,
        lo / rem,
        hi / rem,
        ((state.head < n) & (state.step >= jnp.maximum(state.head, 1))).astype(jnp.float32),
        (last - 1.0) * 1e4 * _BPS,
        (bench - 1.0) * 1e4 * _BPS,
        gain * _BPS,
        gain / (jnp.maximum(vol_bps, 1.0) * jnp.sqrt(left)),
        (fill - 1.0) * 1e4 * _BPS,
        jnp.where(started & (traded > 0), side * (1.0 - fill / bench) * 1e4 * _BPS, 0.0),
        vol_bps * _BPS,
        state.r_min * n,
        state.r_max * n,
      ]
    ).astype(jnp.float32)
    bars = jax.lax.dynamic_slice_in_dim(params.feats_MxWxF[state.order], s, self.obs_bars, 0)
    obs = jnp.concatenate(
      [
        bars.reshape(-1),
        values,
        jax.nn.one_hot(state.scenario, scenarios.NUM_SCENARIOS),
        jax.nn.one_hot(state.head, n + 1),
      ]
    )
    return jnp.clip(obs, -_OBS_CLIP, _OBS_CLIP)

  # --- step ----------------------------------------------------------------------------------

  def done(self, state: EnvState) -> jax.Array:
    """True once the order is complete (then no later choice changes its score)."""
    return (state.step >= self.n_ahead) | (state.remaining <= 0.0)

  def advance(self, state: EnvState, action) -> EnvState:
    """Trades `action` (share of the remaining order, clipped to [0, 1]) in bar `state.step`,
    projected onto the bounds; after decision N-2 the last bar also takes the remainder."""
    n = self.n_ahead
    s = jnp.minimum(state.step, n - 1)
    proposal = jnp.clip(jnp.asarray(action, jnp.float32), 0.0, 1.0) * state.remaining
    a = allocation.project(
      proposal[None, None, None],
      state.remaining[None, None, None],
      s,
      n,
      state.r_min[None],
      state.r_max[None],
    )[0, 0, 0]
    alloc_N = state.alloc_N + a * jax.nn.one_hot(s, n)
    remaining = state.remaining - a  # exact: a <= remaining
    last = s + 1 == n - 1
    alloc_N = alloc_N + jnp.where(last, remaining, 0.0) * jax.nn.one_hot(n - 1, n)
    return state.replace(
      step=jnp.where(last, n, s + 1), remaining=jnp.where(last, 0.0, remaining), alloc_N=alloc_N
    )

  def improvement_bps(self, state: EnvState, params: EnvParams) -> jax.Array:
    """Exact improvement (bps) of the episode's allocation for its head and scenario.

    The accounting is `objectives.improvement_bps`'s own: the hard window up to
    `objectives.window_end` (max(k, tau), all bars for the fixed head), `achieved_price`,
    `benchmark_price`, then side * (1 - P / benchmark) * 1e4; evaluated for one head and the
    8 scenarios instead of all K x S cells, and without the reverse cumulative sum, whose
    CPU lowering dominated the step.
    """
    n, num_s = self.n_ahead, scenarios.NUM_SCENARIOS
    p_1xN = params.prices_MxN[state.order][None]
    v_1xN = params.volumes_MxN[state.order][None]
    end_1xKx1, _ = objectives.window_end(
      jnp.broadcast_to(state.alloc_N[None, :, None, None], (1, n, n + 1, 1))
    )
    w_N = (jnp.arange(n) <= end_1xKx1[0, state.head, 0]).astype(jnp.float32)
    w_1xNx1xS = jnp.broadcast_to(w_N[None, :, None, None], (1, n, 1, num_s))
    alloc_1xNx1xS = jnp.broadcast_to(state.alloc_N[None, :, None, None], (1, n, 1, num_s))
    price = objectives.achieved_price(alloc_1xNx1xS, p_1xN)[0, 0, state.scenario]
    bench = objectives.benchmark_price(w_1xNx1xS, p_1xN, v_1xN)[0, 0, state.scenario]
    side = jnp.asarray(scenarios.SIDE_SIGN_S)[state.scenario]
    return -side * ((price - bench) / bench * 1e4)

  def step_env(self, key, state: EnvState, action, params: EnvParams):
    """One decision without reset: (obs, state, reward, done, info)."""
    del key  # the market is the recorded one: transitions are deterministic
    state = self.advance(state, action)
    done = self.done(state)
    imp = self.improvement_bps(state, params)
    reward = jnp.where(done, imp, 0.0)
    return self.observe(state, params), state, reward, done, {"improvement_bps": imp}

  def step(self, key, state: EnvState, action, params: EnvParams):
    """One decision; a finished episode is replaced by a fresh one (its first observation).

    Returns (obs, state, reward, done, info); info["improvement_bps"] is the episode's score
    where done (the reward), and the running allocation's score elsewhere.
    """
    _, state, reward, done, info = self.step_env(key, state, action, params)
    _, fresh = self.reset_env(key, params)  # its observation is taken once, below
    state = jax.tree.map(lambda r, s: jnp.where(done, r, s), fresh, state)
    return self.observe(state, params), state, reward, done, info


def rollout(env: ExecutionEnv, policy, params: EnvParams, state: EnvState) -> EnvState:
  """Runs `policy(obs) -> action` from `state` to the end of the episode (no reset).

  Vmap it over episodes. Returns the final state (its alloc_N is the full allocation).
  """

  def body(state, _):
    new = env.advance(state, policy(env.observe(state, params)))
    return jax.tree.map(lambda a, b: jnp.where(env.done(state), a, b), state, new), None

  return jax.lax.scan(body, state, None, length=env.n_ahead - 1)[0]
