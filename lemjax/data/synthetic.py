"""Embedded, seeded synthetic market (crypto-like 24/7 or equity-like sessions) as bar tables."""

from __future__ import annotations

import numpy as np
import polars as pl
from scipy import signal

from lemjax.data import tables

_SUBSTEPS = 6  # price path points inside a bar: the bar VWAP averages them
_TAIL_DF = 4.0  # Student-t degrees of freedom of the return shocks (heavy tails)
_MEAN_REVERSION = -0.08  # lag-1 autocorrelation of bar returns when martingale=False
_SESSION_OPEN_MS = 14 * 3_600_000 + 30 * 60_000  # equity session 14:30-21:00 UTC
_SESSION_MS = 390 * 60_000
_YEAR = {"crypto": 365 * tables.MS_PER_DAY, "equity": 252 * _SESSION_MS}
_ANNUAL_VOL = {"crypto": 0.6, "equity": 0.25}


def calendar(regime: str, n_bars: int, step_ms: int, start_ms: int) -> np.ndarray:
  """Bar open times [n_bars] (epoch ms): 24/7 for crypto; weekday sessions or days for equity."""
  if regime == "crypto":
    return start_ms + step_ms * np.arange(n_bars, dtype=np.int64)
  if regime != "equity":
    raise ValueError(f"synthetic_regime {regime!r} is not 'crypto' or 'equity'")
  per_day = 1 if step_ms >= tables.MS_PER_DAY else max(1, _SESSION_MS // step_ms)
  first_day = start_ms // tables.MS_PER_DAY
  days = first_day + np.arange(n_bars // per_day * 7 // 5 + 14, dtype=np.int64)
  days = days[(days + 3) % 7 < 5]  # epoch day 0 was a Thursday; keep Monday..Friday
  if per_day == 1:
    return (days * tables.MS_PER_DAY)[:n_bars]
  offsets = _SESSION_OPEN_MS + step_ms * np.arange(per_day, dtype=np.int64)
  return (days[:, None] * tables.MS_PER_DAY + offsets[None, :]).reshape(-1)[:n_bars]


def _seasonality(regime: str, times: np.ndarray, step_ms: int):
  """(log-volume effect, volatility factor, session-open flag), each [n], from the calendar."""
  day = times // tables.MS_PER_DAY
  dow = (day + 3) % 7  # Monday = 0
  tod = (times % tables.MS_PER_DAY) / tables.MS_PER_DAY
  if regime == "crypto":
    # Activity peaks in the European/US overlap (~15:00 UTC) and sags at weekends.
    wave = np.cos(2 * np.pi * (tod - 0.62))
    weekend = (dow >= 5).astype(np.float64)
    return 0.45 * wave - 0.4 * weekend, 1.0 + 0.25 * wave - 0.15 * weekend, np.zeros_like(tod, bool)
  dow_effect = np.array([-0.12, 0.0, 0.03, 0.05, 0.08])[np.minimum(dow, 4)]
  if step_ms >= tables.MS_PER_DAY:
    return dow_effect, np.ones_like(tod), np.ones_like(tod, bool)
  # U-shaped intraday profile: heavy open and close, quiet lunch.
  x = ((times % tables.MS_PER_DAY) - _SESSION_OPEN_MS) / _SESSION_MS
  u_shape = (2.0 * x - 1.0) ** 2
  first = np.concatenate([[True], day[1:] != day[:-1]])
  return 0.9 * u_shape - 0.3 + dow_effect, 0.8 + 0.6 * u_shape, first


def _ar1(shocks: np.ndarray, phi: float) -> np.ndarray:
  """AR(1) filter along the last axis: y_t = phi * y_{t-1} + shocks_t."""
  return signal.lfilter([1.0], [1.0, -phi], shocks, axis=-1)


def _shocks(rng: np.random.Generator, shape) -> np.ndarray:
  """Unit-variance Student-t shocks (heavy tails, symmetric)."""
  return rng.standard_t(_TAIL_DF, size=shape) / np.sqrt(_TAIL_DF / (_TAIL_DF - 2.0))


def _price_paths(rng, sigma_AxN, first_N, martingale: bool):
  """Sub-bar price paths [A, N, M] relative to 1 and their sub-step shocks.

  Each path point is the previous one times (1 + increment); increments are symmetric and
  independent of the past (clipped symmetrically), so with martingale=True the prices are an
  exact martingale and every future bar VWAP has the last close as its conditional mean.
  """
  n_assets, n_bars = sigma_AxN.shape
  z_AxNxM = _shocks(rng, (n_assets, n_bars, _SUBSTEPS))
  scale_AxNxM = np.repeat((sigma_AxN / np.sqrt(_SUBSTEPS))[..., None], _SUBSTEPS, axis=-1)
  scale_AxNxM[:, first_N, 0] *= 3.0  # overnight gap at a session's first bar
  step_AxNxM = np.clip(scale_AxNxM * z_AxNxM, -0.5, 0.5)
  if not martingale:
    # Predictable structure: bar returns mean-revert at lag 1, spread evenly over the bar.
    shock_AxN = step_AxNxM.sum(-1)
    drift_AxN = _ar1(shock_AxN, _MEAN_REVERSION) - shock_AxN
    step_AxNxM = step_AxNxM + drift_AxN[..., None] / _SUBSTEPS
  path = np.cumprod(1.0 + step_AxNxM.reshape(n_assets, -1), axis=-1)
  return path.reshape(n_assets, n_bars, _SUBSTEPS), z_AxNxM


def synthetic_market(
  regime: str = "crypto",
  n_assets: int = 4,
  n_bars: int = 8760,
  seed: int = 0,
  martingale: bool = False,
  interval: str = "1h",
  start: str = "2022-01-03",
) -> dict[str, pl.DataFrame]:
  """Deterministic synthetic bar tables, the same columns as the loaders' (`tables.BAR_COLUMNS`).

  Stochastic volatility (log-AR(1)), Student-t shocks, time-of-day and day-of-week volume and
  volatility seasonality, and volume correlated with absolute returns.

  Args:
    regime: "crypto" (24/7 bars) or "equity" (weekday sessions; daily bars when interval >= 1d).
    n_assets: number of assets, named SYN0, SYN1, ...
    n_bars: bars per asset.
    seed: random seed; the same arguments always give the same tables.
    martingale: prices a pure martingale (no predictable price structure; SPEC section 7).
    interval: bar length, e.g. "1h".
    start: ISO date of the first bar.
  Returns:
    symbol -> bar table with n_bars rows.
  """
  if n_assets < 1 or n_bars < 2:
    raise ValueError(
      f"synthetic market needs n_assets >= 1 and n_bars >= 2, got {n_assets}, {n_bars}"
    )
  step_ms = tables.interval_ms(interval)
  times = calendar(regime, n_bars, step_ms, tables.date_ms(start))
  rng = np.random.default_rng([seed, n_assets, n_bars, int(martingale)])
  season_volume_N, season_vol_N, first_N = _seasonality(regime, times, step_ms)
  # Stochastic volatility: log-vol AR(1) with a half-life of about three days.
  phi = float(np.exp(-min(step_ms, tables.MS_PER_DAY) / (3 * tables.MS_PER_DAY)))
  logvol_AxN = _ar1(0.5 * np.sqrt(1 - phi**2) * rng.standard_normal((n_assets, n_bars)), phi)
  base_vol_A = (
    _ANNUAL_VOL[regime] * np.sqrt(step_ms / _YEAR[regime]) * rng.uniform(0.6, 1.6, n_assets)
  )
  sigma_AxN = base_vol_A[:, None] * np.exp(logvol_AxN - 0.125) * season_vol_N[None, :]
  path_AxNxM, z_AxNxM = _price_paths(rng, sigma_AxN, first_N, martingale)
  price0_A = np.exp(rng.uniform(np.log(5.0), np.log(500.0), n_assets))
  return {
    f"SYN{a}": _bars(
      rng,
      times,
      price0_A[a],
      price0_A[a] * path_AxNxM[a],
      z_AxNxM[a],
      logvol_AxN[a],
      season_volume_N,
    )
    for a in range(n_assets)
  }


def _bars(rng, times, price0, path_NxM, z_NxM, logvol_N, season_volume_N) -> pl.DataFrame:
  """One asset's bar table from its sub-bar price path and shocks."""
  n_bars = path_NxM.shape[0]
  close_N = path_NxM[:, -1]
  open_N = np.concatenate([[price0], close_N[:-1]])
  # Sub-bar volume leans on large moves, so the bar VWAP weighs them more.
  weight_NxM = np.exp(0.5 * np.abs(z_NxM) + 0.3 * rng.standard_normal(z_NxM.shape))
  weight_NxM /= weight_NxM.sum(-1, keepdims=True)
  vwap_N = (weight_NxM * path_NxM).sum(-1)
  abs_move_N = np.abs(z_NxM).sum(-1) / np.sqrt(z_NxM.shape[-1])
  liquidity_N = _ar1(0.1 * rng.standard_normal(n_bars), 0.98)
  log_volume_N = (
    np.log(rng.uniform(1e3, 1e5))
    + season_volume_N
    + 0.6 * logvol_N
    + 0.35 * (abs_move_N - 0.8)
    + liquidity_N
    + 0.25 * rng.standard_normal(n_bars)
  )
  volume_N = np.exp(log_volume_N)
  table = pl.DataFrame(
    {
      "time": times,
      "open": open_N,
      "high": np.maximum(open_N, path_NxM.max(-1)),
      "low": np.minimum(open_N, path_NxM.min(-1)),
      "close": close_N,
      "volume": volume_N,
      "notional": vwap_N * volume_N,
    }
  )
  return tables.with_vwap(table)
