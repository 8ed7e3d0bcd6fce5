"""Execution costs (SPEC section 6): order sizes, the participation cap, and each child's fee, spread and impact.

Units. An order's size q is its parent quantity as a fraction of the expected market volume over
its N bars, N times the lookback's mean bar volume (known at arrival, so causal). The batches'
volumes are already over that mean bar volume, so a bar's expected volume is 1 and a child that
trades the fraction a of the order trades a * q * N shares in those units (notional targets:
a * q * N / p, the order's value being measured at the arrival price).

Participation cap. A child may not exceed rho times its bar's expected volume: a <= rho / (q N).
It is one more per-bar upper bound, so it joins r_max in the exact projection (`capped_r_max`);
an order with q > rho cannot finish in N bars and is rejected (`check_orders`).

Cost of a child, in bps of its bar's price:
  c = fee + half_spread + eta * sigma * sqrt(child shares / max(realised bar volume, floor)),
sigma the lookback volatility in bps per bar (the square-root law of temporary impact).

Half-spread. With spread="config" every child pays the constant `half_spread_bps`. With
spread="high_low" each order pays its own estimate (the batches' `lookback_half_spread`, from
`lemjax.data.features.high_low_half_spread_bps`) from the high, low and close of its L lookback
bars t0-L .. t0-1, strictly before its first execution bar: Abdi & Ranaldo (2017) with
eta_t = (ln H_t + ln L_t) / 2 and c_t = ln C_t give S^2 = 4 E[(c_t - eta_t)(c_t - eta_{t+1})],
estimated over the L - 1 pairs of neighbouring lookback bars and floored at 0 (bars with
high = low = close, as the daily loader fills missing ones, contribute 0); the half-spread is
1e4 * S / 2 bps. `cost_bps` is the one place that picks between them.

Fills. A buy fills at p (1 + c / 1e4), a sell at p (1 - c / 1e4); `fill_prices` gives these per
bar, head and scenario, and the objectives module turns them into the achieved (net) price with its
usual accounting.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lemjax import objectives
from lemjax import scenarios
from lemjax.config import CostConfig


def sample_sizes(rng: jax.Array, batch: int, size_range: tuple[float, float]) -> jax.Array:
  """Order sizes [batch] drawn log-uniformly from `size_range` (fractions of horizon volume)."""
  lo, hi = size_range
  if not 0 < lo <= hi:
    raise ValueError(f"size_range={size_range!r} must satisfy 0 < lo <= hi")
  u = jax.random.uniform(rng, (batch,), jnp.float32)
  return jnp.exp(np.log(lo) + u * (np.log(hi) - np.log(lo)))


def size_feature(size_B):
  """The model's view of an order's size: log10(size) + 2 (0 at 1% of horizon volume)."""
  return jnp.log10(size_B) + 2.0


def participation_limit(size_B, n_ahead: int, rho: float):
  """Largest fraction of the order one bar may take under the cap: rho / (size * N)."""
  return rho / (size_B * n_ahead)


def capped_r_max(r_max_B, size_B, n_ahead: int, cfg: CostConfig):
  """r_max tightened by the participation cap (r_max itself when costs are off)."""
  if not cfg.enabled:
    return r_max_B
  xp = jnp if isinstance(r_max_B, jax.Array) or isinstance(size_B, jax.Array) else np
  return xp.minimum(r_max_B, participation_limit(size_B, n_ahead, cfg.participation_cap))


def check_orders(size_B, r_min_B, r_max_B, n_ahead: int, cfg: CostConfig, names=None) -> None:
  """Raises ValueError naming the first order whose capped bounds cannot complete it in N bars.

  Args:
    size_B, r_min_B, r_max_B: sizes and rate bounds, scalars or [B] (concrete values).
    n_ahead: N.
    cfg: cost config (its participation cap).
    names: optional [B] order names used in the message (default: the index).
  """
  size, r_min, r_max = np.broadcast_arrays(
    *(np.atleast_1d(np.asarray(x, np.float64)) for x in (size_B, r_min_B, r_max_B))
  )
  bad = ~np.isfinite(size) | (size <= 0)
  if np.any(bad):
    i = int(np.argmax(bad))
    raise ValueError(f"order {_name(names, i)}: size={size[i]!r} must be finite and positive")
  cap = participation_limit(size, n_ahead, cfg.participation_cap)
  hi = np.minimum(r_max, cap)
  bad = (hi * n_ahead < 1 - 1e-6) | (r_min > hi + 1e-6)
  if np.any(bad):
    i = int(np.argmax(bad))
    raise ValueError(
      f"order {_name(names, i)} is infeasible: size={size[i]:.6g} of the expected volume over "
      f"N={n_ahead} bars, participation cap rho={cfg.participation_cap:.6g} allows at most "
      f"{cap[i]:.6g} of the order per bar; with r_min={r_min[i]:.6g}, r_max={r_max[i]:.6g} the "
      f"{n_ahead} bars can take at most {hi[i] * n_ahead:.6g} of it (need 1, and r_min <= cap)"
    )


def _name(names, i: int) -> str:
  return str(i) if names is None else repr(str(np.asarray(names)[i]))


def _check_shapes(alloc_BxNxKxS, prices_BxN, volumes_BxN, size_B, sigma_B, half_spread_B) -> None:
  b, n = alloc_BxNxKxS.shape[:2]
  for name, x, shape in (
    ("prices_BxN", prices_BxN, (b, n)),
    ("volumes_BxN", volumes_BxN, (b, n)),
    ("size_B", size_B, (b,)),
    ("sigma_B", sigma_B, (b,)),
    ("half_spread_B", half_spread_B, (b,)),
  ):
    if x is not None and tuple(np.shape(x)) != shape:
      raise ValueError(f"{name}.shape={tuple(np.shape(x))}, expected {shape}")


def _safe_sqrt(x):
  """sqrt with a zero (not NaN) gradient at 0, where an empty child's impact vanishes."""
  pos = x > 0
  return jnp.where(pos, jnp.sqrt(jnp.where(pos, x, 1.0)), 0.0)


def half_spread_bps(cfg: CostConfig, order_half_spread=None):
  """The half-spread an order's children pay, bps: `cfg.half_spread_bps` (spread="config"), or
  the order's own lookback estimate `order_half_spread` (spread="high_low"; required then)."""
  if cfg.spread == "config":
    return cfg.half_spread_bps
  if order_half_spread is None:
    raise ValueError(
      f"costs.spread={cfg.spread!r} charges each order its lookback high-low half-spread, but "
      "none was given (the batches' `lookback_half_spread`)"
    )
  return order_half_spread


def cost_bps(participation, sigma, cfg: CostConfig, order_half_spread=None):
  """Cost in bps of a child that trades `participation` times its bar's (floored) volume.

  fee + half-spread + eta * sigma * sqrt(participation); sigma in bps per bar, the half-spread as
  `half_spread_bps` resolves it (order_half_spread broadcasts like sigma). Every strategy, the
  training loss and the online API charge through this one function.
  """
  spread = half_spread_bps(cfg, order_half_spread)
  return cfg.fee_bps + spread + cfg.impact_eta * sigma * _safe_sqrt(participation)


def half_spread_text(cfg: CostConfig) -> str:
  """The half-spread term as the reports state it."""
  if cfg.spread == "high_low":
    return "each order's lookback high-low half-spread (Abdi-Ranaldo)"
  return f"half-spread {cfg.half_spread_bps:g} bps"


def child_cost_bps(
  alloc_BxNxKxS, prices_BxN, volumes_BxN, size_B, sigma_B, cfg: CostConfig, half_spread_B=None
):
  """Cost of every child order in bps of its bar's price; [B, N, K, S].

  Args:
    alloc_BxNxKxS: allocations (fractions of the parent order).
    prices_BxN: bar prices over the arrival price.
    volumes_BxN: realised bar volumes over the lookback's mean bar volume.
    size_B: order sizes (fractions of the expected volume over N bars).
    sigma_B: lookback volatility, bps per bar.
    cfg: fee, half-spread (or its source), eta and volume floor.
    half_spread_B: the orders' lookback high-low half-spreads, bps (the batches'
      `lookback_half_spread`); charged when cfg.spread == "high_low", ignored otherwise.
  """
  _check_shapes(alloc_BxNxKxS, prices_BxN, volumes_BxN, size_B, sigma_B, half_spread_B)
  n = alloc_BxNxKxS.shape[1]
  p = prices_BxN[:, :, None, None]
  notional = jnp.asarray(scenarios.IS_NOTIONAL_S)[None, None, None, :]
  parent = (size_B * n)[:, None, None, None]
  shares = jnp.where(notional, alloc_BxNxKxS * parent / p, alloc_BxNxKxS * parent)
  volume = jnp.maximum(volumes_BxN, cfg.volume_floor)[:, :, None, None]
  spread = None if half_spread_B is None else jnp.asarray(half_spread_B)[:, None, None, None]
  return cost_bps(shares / volume, sigma_B[:, None, None, None], cfg, spread)


def fill_prices(
  alloc_BxNxKxS, prices_BxN, volumes_BxN, size_B, sigma_B, cfg: CostConfig, half_spread_B=None
):
  """Net fill price of every child: p (1 + side * cost / 1e4); [B, N, K, S] (`child_cost_bps`)."""
  cost = child_cost_bps(alloc_BxNxKxS, prices_BxN, volumes_BxN, size_B, sigma_B, cfg, half_spread_B)
  side = jnp.asarray(scenarios.SIDE_SIGN_S, jnp.float32)[None, None, None, :]
  return prices_BxN[:, :, None, None] * (1.0 + side * cost * 1e-4)


def batch_fill_prices(alloc_BxNxKxS, batch: dict, size_B, cfg: CostConfig):
  """`fill_prices` of the orders of a data-layer batch (prices, volumes, lookback_vol and, when
  present, lookback_half_spread)."""
  return fill_prices(
    alloc_BxNxKxS,
    batch["prices"],
    batch["volumes"],
    jnp.asarray(size_B),
    batch["lookback_vol"],
    cfg,
    batch.get("lookback_half_spread"),
  )


def batch_scorer(cfg: CostConfig, size, batch: dict):
  """`scorer` of the orders of a data-layer batch, at size `size` (scalar or [B])."""
  return scorer(cfg, size, batch["lookback_vol"], batch.get("lookback_half_spread"))


def scorer(cfg: CostConfig, size, sigma_B, half_spread_B=None):
  """A baselines.ScoreFn `(alloc, prices, volumes) -> net improvement [B, K, S]` at fixed sizes.

  Args:
    cfg: cost config (enabled: net of costs; disabled: the cost-free improvement).
    size: scalar or [B] order size shared by every call.
    sigma_B: [B] lookback volatility (bps per bar) of the orders the score is applied to.
    half_spread_B: [B] their lookback high-low half-spreads, bps (used when cfg.spread ==
      "high_low"; None otherwise is fine).
  """
  sigma = jnp.asarray(sigma_B, jnp.float32)
  spread = None if half_spread_B is None else jnp.asarray(half_spread_B, jnp.float32)

  def score(alloc_BxNxKxS, prices_BxN, volumes_BxN) -> np.ndarray:
    alloc = jnp.asarray(alloc_BxNxKxS, jnp.float32)
    prices, volumes = jnp.asarray(prices_BxN), jnp.asarray(volumes_BxN)
    fills = None
    if cfg.enabled:
      size_B = jnp.broadcast_to(jnp.asarray(size, jnp.float32), sigma.shape)
      fills = fill_prices(alloc, prices, volumes, size_B, sigma, cfg, spread)
    return np.asarray(objectives.improvement_bps(alloc, prices, volumes, fill_prices=fills))

  return score
