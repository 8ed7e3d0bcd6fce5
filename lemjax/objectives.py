"""Execution accounting and the training loss (SPEC sections 1 and 4); statistics are in stats.py.

Accounting (every function is pure and vectorised over orders, heads and scenarios):
  * achieved price: quantity targets `P = sum a p / sum a`; notional targets
    `P = sum a / sum (a / p)` (a harmonic mean, SPEC section 1);
  * benchmark window of head k < N: bars 0 .. max(k, tau), tau the last bar with a positive
    allocation; the fixed-duration head k = N always uses all N bars;
  * VWAP(W) = sum v p / sum v, TWAP(W) = mean p (a window without market volume falls back
    to its TWAP for VWAP);
  * improvement `imp = side * (1 - P / benchmark) * 1e4` bps, side +1 buy and -1 sell, so
    positive is good for both sides; the paper's raw slippage is `(P / benchmark - 1) * 1e4`;
  * with execution costs on (lemjax/costs.py), P uses each child's fill price net of costs (the
    improvement is then net; `execution_summary` also reports it gross); benchmarks stay the
    market's.

Training loss (`lem_loss`, configured by `LossConfig`): flexible heads pay
softplus(buy-minus-sell slippage / scale) per benchmark and target (or, with `per_side`,
softplus(-imp / scale) per side); the fixed head pays softplus(|slippage| / scale); scale is
100 bps by default, i.e. the paper's percent. Windows are soft: bar n of head k weighs 1 if
n <= k, else 1 - exp(-r_n / temperature) with r_n the fraction still to trade at or after n,
which is exactly 0 once the order is complete.
At the final temperature (2e-3) a bar's weight moves only once less than ~1% of the order
is left, so a head that trades a share of every bar (as every head does at initialisation) gets
no gradient towards ending early, and on a martingale its fills give none either: it may never
find the end-date option. Training therefore starts warm (`mask_temperature_start`, 0.05, where
the last bar of a uniform schedule already answers) and sharpens geometrically to the final
temperature (`mask_temperature`), see `mask_temperature`.

Where the defaults differ from the `lems` package (`reference_compat=True` reproduces it,
see lemjax/reference.py), and why:
  * finished bars weigh exactly 0 in the soft window, not sigmoid(0) = 0.5: a benchmark that
    half counts bars after completion rewards the wrong end date;
  * the achieved price uses the allocations as traded; the package weighs fills by the soft
    window too, which moves the price of a finished order;
  * no epsilon in denominators (prices and sums of allocations are positive); a window
    without market volume falls back to TWAP, where the package instead extends the window
    over leading bars until some volume has printed;
  * bps everywhere (the loss divides by `softplus_scale_bps` = 100, so its value matches the
    package's percent-based loss up to the fixes above).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lemjax import reference
from lemjax import scenarios
from lemjax.config import LossConfig

_SIDE_S = scenarios.SIDE_SIGN_S


def _check_alloc(alloc_BxNxKxS, prices_BxN, volumes_BxN=None) -> None:
  if alloc_BxNxKxS.ndim != 4 or alloc_BxNxKxS.shape[3] != scenarios.NUM_SCENARIOS:
    raise ValueError(f"alloc_BxNxKxS.shape={alloc_BxNxKxS.shape}, expected [B, N, K, 8]")
  b, n, k, _ = alloc_BxNxKxS.shape
  if k != n + 1:
    raise ValueError(f"alloc_BxNxKxS.shape={alloc_BxNxKxS.shape}: K={k} must be N+1={n + 1}")
  if prices_BxN.shape != (b, n):
    raise ValueError(f"prices_BxN.shape={prices_BxN.shape}, expected {(b, n)}")
  if volumes_BxN is not None and volumes_BxN.shape != (b, n):
    raise ValueError(f"volumes_BxN.shape={volumes_BxN.shape}, expected {(b, n)}")


# ----------------------------------------------------------------------------- accounting


def required_window_NxK(n_ahead: int) -> np.ndarray:
  """1 where bar n lies inside head k's minimum period (all bars for the fixed head)."""
  steps, heads = np.arange(n_ahead)[:, None], np.arange(n_ahead + 1)[None, :]
  return ((steps <= heads) | (heads == n_ahead)).astype(np.float32)


def remaining_BxNxKxS(alloc_BxNxKxS):
  """Fraction of the order traded at or after each bar (a reverse cumulative sum)."""
  return jnp.flip(jnp.cumsum(jnp.flip(alloc_BxNxKxS, 1), axis=1), 1)


def window_mask(alloc_BxNxKxS, *, temperature: float | None = None):
  """Benchmark window weights per bar, head and scenario.

  Args:
    alloc_BxNxKxS: allocations.
    temperature: None for the hard window (1 up to max(k, tau), else 0); otherwise bars after
      the minimum period weigh 1 - exp(-remaining / temperature), exactly 0 once complete (a
      scalar, or [K, S] per head and scenario).

  Returns:
    w_BxNxKxS in [0, 1].
  """
  req = jnp.asarray(required_window_NxK(alloc_BxNxKxS.shape[1]))[None, :, :, None]
  left = remaining_BxNxKxS(alloc_BxNxKxS)
  if temperature is None:
    active = (left > 0).astype(jnp.float32)
  else:
    t = temperature if jnp.ndim(temperature) == 0 else jnp.asarray(temperature)[None, None]
    active = -jnp.expm1(-jnp.maximum(left, 0.0) / t)
  return req + (1.0 - req) * active


def achieved_price(alloc_BxNxKxS, prices_BxN):
  """Average fill price P_BxKxS (relative to arrival) of each head and scenario's schedule.

  prices_BxN may also be [B, N, K, S] fill prices per child (net of costs, lemjax/costs.py).
  """
  p = prices_BxN if prices_BxN.ndim == 4 else prices_BxN[:, :, None, None]
  total = jnp.sum(alloc_BxNxKxS, axis=1)
  price_qty = jnp.sum(alloc_BxNxKxS * p, axis=1) / total
  price_ntl = total / jnp.sum(alloc_BxNxKxS / p, axis=1)
  return jnp.where(jnp.asarray(scenarios.IS_NOTIONAL_S)[None, None, :], price_ntl, price_qty)


def benchmark_price(w_BxNxKxS, prices_BxN, volumes_BxN):
  """VWAP or TWAP (by scenario) of the bars weighted by w_BxNxKxS; returns [B, K, S]."""
  p = prices_BxN[:, :, None, None]
  v = volumes_BxN[:, :, None, None]
  twap = jnp.sum(w_BxNxKxS * p, axis=1) / jnp.sum(w_BxNxKxS, axis=1)
  vol_w = jnp.sum(w_BxNxKxS * v, axis=1)
  vwap = jnp.sum(w_BxNxKxS * v * p, axis=1) / jnp.where(vol_w > 0, vol_w, 1.0)
  vwap = jnp.where(vol_w > 0, vwap, twap)
  return jnp.where(jnp.asarray(scenarios.IS_TWAP_S)[None, None, :], twap, vwap)


def window_end(alloc_BxNxKxS):
  """(end_BxKxS, ended_early_BxKxS): last bar of each benchmark window, and whether the
  order completed before its last bar N-1 (tau < N-1)."""
  n, k = alloc_BxNxKxS.shape[1:3]
  steps = jnp.arange(n, dtype=jnp.int32)[None, :, None, None]
  tau = jnp.max(jnp.where(alloc_BxNxKxS > 0, steps, 0), axis=1)
  heads = jnp.arange(k, dtype=jnp.int32)[None, :, None]
  end = jnp.where(heads == n, n - 1, jnp.maximum(tau, jnp.minimum(heads, n - 1)))
  return end, tau < n - 1


def _check_fills(alloc_BxNxKxS, fill_prices_BxNxKxS) -> None:
  if fill_prices_BxNxKxS is not None and fill_prices_BxNxKxS.shape != alloc_BxNxKxS.shape:
    raise ValueError(
      f"fill_prices_BxNxKxS.shape={fill_prices_BxNxKxS.shape}, expected {alloc_BxNxKxS.shape}"
    )


def execution_summary(alloc_BxNxKxS, prices_BxN, volumes_BxN, fill_prices_BxNxKxS=None) -> dict:
  """Hard-window accounting of every order, head and scenario.

  Args:
    alloc_BxNxKxS: allocations (non-negative, summing to 1 over N).
    prices_BxN: fill prices divided by the arrival price.
    volumes_BxN: market volumes.
    fill_prices_BxNxKxS: optional per-child fill prices net of costs (lemjax/costs.py); the
      achieved price uses them, the benchmark the market's prices_BxN.

  Returns:
    dict of [B, K, S] arrays: price (achieved P), benchmark, improvement_bps, slippage_bps,
    window_end (int), ended_early (bool); with fill prices also gross_price and
    gross_improvement_bps (before costs) and cost_bps (gross minus net improvement).
  """
  _check_alloc(alloc_BxNxKxS, prices_BxN, volumes_BxN)
  _check_fills(alloc_BxNxKxS, fill_prices_BxNxKxS)
  fills = prices_BxN if fill_prices_BxNxKxS is None else fill_prices_BxNxKxS
  price = achieved_price(alloc_BxNxKxS, fills)
  bench = benchmark_price(window_mask(alloc_BxNxKxS), prices_BxN, volumes_BxN)
  side = -jnp.asarray(_SIDE_S)[None, None, :]
  slip = (price - bench) / bench * 1e4
  end, early = window_end(alloc_BxNxKxS)
  out = {
    "price": price,
    "benchmark": bench,
    "slippage_bps": slip,
    "improvement_bps": side * slip,
    "window_end": end,
    "ended_early": early,
  }
  if fill_prices_BxNxKxS is not None:
    gross = achieved_price(alloc_BxNxKxS, prices_BxN)
    out["gross_price"] = gross
    out["gross_improvement_bps"] = side * (gross - bench) / bench * 1e4
    out["cost_bps"] = out["gross_improvement_bps"] - out["improvement_bps"]
  return out


def improvement_bps(
  alloc_BxNxKxS,
  prices_BxN,
  volumes_BxN,
  *,
  reference_compat: bool = False,
  fill_prices=None,
):
  """imp_BxKxS = side * (1 - P / benchmark) * 1e4 with hard windows (positive is good).

  With reference_compat, the `lems` package's accounting (its masks and epsilons); with
  fill_prices [B, N, K, S] (net of costs), P is the net achieved price.
  """
  _check_alloc(alloc_BxNxKxS, prices_BxN, volumes_BxN)
  if reference_compat:
    if fill_prices is not None:
      raise ValueError("fill_prices (execution costs) cannot be combined with reference_compat")
    slip_pct = reference.slippage_pct(alloc_BxNxKxS, prices_BxN, volumes_BxN)
    return -jnp.asarray(_SIDE_S)[None, None, :] * slip_pct * 100.0
  return execution_summary(alloc_BxNxKxS, prices_BxN, volumes_BxN, fill_prices)["improvement_bps"]


# ----------------------------------------------------------------------------- training loss


def mask_temperature(loss_config: LossConfig, step, anneal_start=0):
  """Soft-window temperature of training step `step`: geometric from the start value to the final
  one over `mask_anneal_steps`, restarting every `mask_rewarm_every` steps when that is > 0.

  anneal_start: the step each anneal began (an int or an int array, e.g. [K, S] per head and
  scenario, where a collapsed cell's anneal was restarted); the result has its shape.
  """
  cfg = loss_config
  if cfg.mask_temperature_start <= 0 or cfg.mask_anneal_steps <= 0:
    return jnp.full(jnp.shape(anneal_start), cfg.mask_temperature, jnp.float32)
  step = jnp.asarray(step, jnp.int32) - jnp.asarray(anneal_start, jnp.int32)
  if cfg.mask_rewarm_every > 0:
    step = step % cfg.mask_rewarm_every
  frac = jnp.clip(step.astype(jnp.float32) / cfg.mask_anneal_steps, 0.0, 1.0)
  log_t = (1 - frac) * np.log(cfg.mask_temperature_start) + frac * np.log(cfg.mask_temperature)
  return jnp.exp(log_t)


def lem_loss(
  alloc_BxNxKxS,
  prices_BxN,
  volumes_BxN,
  loss_config: LossConfig = LossConfig(),
  temperature=None,
  fill_prices=None,
):
  """The training objective of every head and scenario at once.

  Args:
    alloc_BxNxKxS: allocations.
    prices_BxN: fill prices divided by the arrival price.
    volumes_BxN: market volumes.
    loss_config: weights, per-side variant, soft-window temperature, reference_compat.
    temperature: soft-window temperature (a scalar or [K, S], may be traced); None uses
      `loss_config.mask_temperature`.
    fill_prices: optional [B, N, K, S] child fill prices net of costs (lemjax/costs.py, a
      function of the allocations, so the loss sees the cost of every schedule); the benchmark
      stays the market's.

  Returns:
    (loss scalar, aux dict with loss_flexible, loss_fixed and imp_bps_KxS, the batch mean
    hard-window improvement, gradient-free).
  """
  _check_alloc(alloc_BxNxKxS, prices_BxN, volumes_BxN)
  cfg = loss_config
  n = alloc_BxNxKxS.shape[1]
  _check_fills(alloc_BxNxKxS, fill_prices)
  if cfg.reference_compat:
    if fill_prices is not None:
      raise ValueError("fill_prices (execution costs) cannot be combined with reference_compat")
    slip = reference.slippage_pct(alloc_BxNxKxS, prices_BxN, volumes_BxN, alpha=cfg.reference_alpha)
  else:
    w = window_mask(
      alloc_BxNxKxS, temperature=cfg.mask_temperature if temperature is None else temperature
    )
    price = achieved_price(alloc_BxNxKxS, prices_BxN if fill_prices is None else fill_prices)
    bench = benchmark_price(w, prices_BxN, volumes_BxN)
    slip = (price - bench) / bench * (1e4 / cfg.softplus_scale_bps)
  b, k = slip.shape[:2]
  slip = slip.reshape(b, k, 2, 2, 2)  # side, benchmark, target
  bench_w = jnp.array([cfg.vwap_weight, cfg.twap_weight], jnp.float32)
  if cfg.per_side:
    side = jnp.array([1.0, -1.0], jnp.float32)[None, None, :, None, None]
    flex = jax.nn.softplus(side * slip[:, :n])
    flex_w = jnp.broadcast_to(bench_w[None, None, None, :, None], flex.shape)
  else:
    flex = jax.nn.softplus(slip[:, :n, 0] - slip[:, :n, 1])
    flex_w = jnp.broadcast_to(bench_w[None, None, :, None], flex.shape)
  fixed = jax.nn.softplus(jnp.abs(slip[:, n]))
  fixed_w = jnp.broadcast_to(bench_w[None, None, :, None], fixed.shape)
  total = cfg.flexible_weight * jnp.sum(flex * flex_w) + cfg.fixed_weight * jnp.sum(fixed * fixed_w)
  loss = total / (flex.size + fixed.size)
  imp = jax.lax.stop_gradient(
    improvement_bps(
      alloc_BxNxKxS,
      prices_BxN,
      volumes_BxN,
      reference_compat=cfg.reference_compat,
      fill_prices=fill_prices,
    )
  )
  aux = {
    "loss_flexible": jnp.mean(flex),
    "loss_fixed": jnp.mean(fixed),
    "imp_bps_KxS": jnp.mean(imp, axis=0),
  }
  return loss, aux
