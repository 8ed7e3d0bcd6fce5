"""Causal per-bar features: feature(t) depends only on bars <= t (and, per window, the arrival price)."""

from __future__ import annotations

import numpy as np
import polars as pl

from lemjax.data import tables

# Column order of the F = 8 input features (Batch.inputs[..., f]).
FEATURE_NAMES = (
  "log_volume_rel",  # log(volume / trailing mean volume over `volume_window` + 0.01)
  "return_bps",  # bar close-to-close return, bps
  "price_vs_arrival_bps",  # close / arrival price - 1 in bps from bar t0-1 on; 0 before (per window)
  "time_of_day_sin",
  "time_of_day_cos",  # of the bar's open, UTC
  "day_of_week_sin",
  "day_of_week_cos",  # Monday = 0
  "log_bar_hours",  # log of the bar length in hours (0 for 1h bars)
)
N_FEATURES = len(FEATURE_NAMES)
ARRIVAL_FEATURE = FEATURE_NAMES.index("price_vs_arrival_bps")
VOLUME_FLOOR = 0.01  # keeps log finite for zero-volume bars: log(0.01) = -4.6


def bar_features(table: pl.DataFrame, step_ms: int, volume_window_ms: int) -> np.ndarray:
  """Per-bar features [n, F] (float32); the window-dependent arrival column is left at 0.

  Args:
    table: bar table (`tables.BAR_COLUMNS`), sorted by time.
    step_ms: nominal bar length in ms (the bar-length feature).
    volume_window_ms: time span of the trailing mean volume; the mean over bars with open
      time in (t - span, t] so it means the same at every bar length.
  Returns:
    feats_NxF float32.
  """
  time_N = table["time"].to_numpy()
  close_N = table["close"].to_numpy()
  volume_N = table["volume"].to_numpy()
  mean_N = trailing_mean(time_N, volume_N, volume_window_ms)
  ratio_N = np.divide(volume_N, mean_N, out=np.zeros_like(volume_N), where=mean_N > 0)
  return_N = np.zeros_like(close_N)
  return_N[1:] = 1e4 * (close_N[1:] / close_N[:-1] - 1.0)
  feats = np.concatenate(
    [
      np.stack([np.log(ratio_N + VOLUME_FLOOR), return_N, np.zeros_like(close_N)], axis=-1),
      calendar_features(time_N, step_ms),
    ],
    axis=-1,
  )
  return feats.astype(np.float32)


def calendar_features(time_N: np.ndarray, step_ms: int) -> np.ndarray:
  """The features known before a bar opens: time of day, day of week, bar length [n, 5] (float64).

  Args:
    time_N: bar open times, epoch ms (int64).
    step_ms: nominal bar length in ms.
  Returns:
    cal_Nx5: the last five columns of `FEATURE_NAMES`.
  """
  time_N = np.asarray(time_N, np.int64)
  tod_N = 2 * np.pi * (time_N % tables.MS_PER_DAY) / tables.MS_PER_DAY
  dow_N = 2 * np.pi * ((time_N // tables.MS_PER_DAY + 3) % 7) / 7.0  # epoch day 0: Thursday
  return np.stack(
    [
      np.sin(tod_N),
      np.cos(tod_N),
      np.sin(dow_N),
      np.cos(dow_N),
      np.full(tod_N.shape, np.log(step_ms / 3_600_000)),
    ],
    axis=-1,
  )


def trailing_mean(time_N: np.ndarray, value_N: np.ndarray, span_ms: int) -> np.ndarray:
  """Mean of `value` over bars with time in (t - span_ms, t], for every bar t (causal)."""
  frame = pl.DataFrame({"t": time_N, "v": value_N}).with_columns(
    pl.col("t").cast(pl.Datetime("ms"))
  )
  span = f"{int(span_ms)}ms"
  return frame.select(pl.col("v").rolling_mean_by("t", window_size=span))["v"].to_numpy()


def warmup_bars(time_N: np.ndarray, volume_window_ms: int) -> int:
  """Index of the first bar whose trailing volume window lies fully inside the data."""
  return int(np.searchsorted(time_N, time_N[0] + volume_window_ms, side="left"))


def price_vs_arrival(close_BxT: np.ndarray, arrival_B: np.ndarray, lookback: int) -> np.ndarray:
  """Close relative to the arrival price in bps from bar t0-1 (position L-1) on, 0 before.

  Before t0-1 the arrival price lies in the future of the bar, so the feature is 0 there and
  feature(t) never reads a bar after t.

  Args:
    close_BxT: closes of bars t0-L .. t0+N-2.
    arrival_B: close of bar t0-1.
    lookback: L.
  Returns:
    rel_BxT float32.
  """
  live_T = np.arange(close_BxT.shape[1]) >= lookback - 1
  rel_BxT = 1e4 * (close_BxT / arrival_B[:, None] - 1.0)
  return np.where(live_T[None, :], rel_BxT, 0.0).astype(np.float32)


def lookback_sigma_bps(close_L) -> np.ndarray:
  """Lookback volatility of each row of L >= 2 closes: std of close-to-close log returns, bps/bar.

  [...] from [..., L] (float64); the batches' `lookback_vol` and the online carry's sigma.
  """
  return 1e4 * np.std(np.diff(np.log(np.asarray(close_L, np.float64)), axis=-1), axis=-1)


def high_low_half_spread_bps(high_L, low_L, close_L) -> np.ndarray:
  """Abdi & Ranaldo (2017) half-spread of each row of L >= 2 bars, bps: [...] from [..., L].

  eta_t = (ln H_t + ln L_t) / 2, c_t = ln C_t, S^2 = 4 * mean_t (c_t - eta_t)(c_t - eta_{t+1}) over
  the L - 1 neighbouring pairs, S = sqrt(max(S^2, 0)); returns 1e4 * S / 2 (float64). Pass only
  bars before the order's first execution bar (the lookback bars t0-L .. t0-1).
  """
  h, lo, c = (np.log(np.asarray(x, np.float64)) for x in (high_L, low_L, close_L))
  if not h.shape == lo.shape == c.shape or c.ndim < 1 or c.shape[-1] < 2:
    raise ValueError(
      f"high, low and close must share a shape [..., L] with L >= 2, got {h.shape}, {lo.shape}, "
      f"{c.shape}"
    )
  eta = 0.5 * (h + lo)
  s2 = 4.0 * np.mean((c[..., :-1] - eta[..., :-1]) * (c[..., :-1] - eta[..., 1:]), axis=-1)
  return 1e4 * np.sqrt(np.maximum(s2, 0.0)) / 2.0
