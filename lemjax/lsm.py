"""Least-squares optimal stopping (Longstaff-Schwartz) as a causal baseline on the LEM's orders.

Trades uniformly and finishes the remainder once a regression of the continuation value on
causal state says stopping is better; fitted per head and scenario on training orders by
backward induction, scored with the evaluation's own accounting.
"""

from __future__ import annotations

import numpy as np

from lemjax import baselines
from lemjax import scenarios

LSM_FEATURES = ("1", "gain", "gain^2", "vol", "gain*vol", "gain/(vol*sqrt(left))")  # the P axis


def lsm_basis(gain_BxNxS: np.ndarray, lookback_vol_B: np.ndarray) -> np.ndarray:
  """Regression features of the causal state at every decision, in LSM_FEATURES order; [B, N, S, P].

  gain: last close vs running benchmark (bps, `baselines.gains`); vol: lookback volatility (bps per
  bar, floored at 1); left = N - s bars still to trade. Bars left is the same for every
  order at one decision, so it enters through the per-decision coefficients and the
  volatility-scaled gain.
  """
  n = gain_BxNxS.shape[1]
  g = np.asarray(gain_BxNxS, np.float64)
  vol = np.broadcast_to(
    np.maximum(np.asarray(lookback_vol_B, np.float64), 1.0)[:, None, None], g.shape
  )
  left = np.sqrt(n - np.arange(n, dtype=np.float64))[None, :, None]
  return np.stack([np.ones_like(g), g, g * g, vol, g * vol, g / (vol * left)], axis=-1)


def stop_values(
  score: baselines.ScoreFn, prices_BxN: np.ndarray, volumes_BxN: np.ndarray, r_min=0.0, r_max=1.0
) -> np.ndarray:
  """Exact improvement [B, N, K, S] of trading uniformly and stopping at decision t (axis 1).

  Stopping at t finishes the remainder from bar t on as fast as r_max allows, the schedule
  `baselines.stopping_schedule` produces; stopping at the last bar is the uniform schedule. Entries
  where head k may not stop at t (`baselines.eligible_NxK`) hold the uniform schedule's improvement.
  """
  batch, n = prices_BxN.shape
  out = []
  for t in range(n):
    stop_BxNxKxS = np.zeros((batch, n, n + 1, scenarios.NUM_SCENARIOS), bool)
    stop_BxNxKxS[:, t] = True
    alloc = baselines.stopping_schedule(stop_BxNxKxS, r_min, r_max)
    out.append(np.asarray(score(alloc, prices_BxN, volumes_BxN), np.float64))
  return np.stack(out, axis=1)


def _ridge(x_RxP: np.ndarray, y_RxH: np.ndarray, ridge: float) -> np.ndarray:
  """Ridge least squares on standardised columns (column 0, the intercept, unpenalised); [P, H].

  The coefficients are returned in the raw features' units, so that x @ beta predicts y.
  """
  mu_P = x_RxP[:, 1:].mean(0)
  sd_P = x_RxP[:, 1:].std(0)
  sd_P = np.where(sd_P > 0, sd_P, 1.0)
  xs = np.concatenate([x_RxP[:, :1], (x_RxP[:, 1:] - mu_P) / sd_P], axis=1)
  penalty = ridge * x_RxP.shape[0] * np.diag(np.r_[0.0, np.ones(mu_P.size)])
  beta = np.linalg.lstsq(xs.T @ xs + penalty, xs.T @ y_RxH, rcond=None)[0]
  slopes = beta[1:] / sd_P[:, None]
  return np.concatenate([beta[:1] - mu_P @ slopes, slopes], axis=0)


def lsm_fit(
  prices_BxN: np.ndarray,
  volumes_BxN: np.ndarray,
  closes_BxN: np.ndarray,
  lookback_vol_B: np.ndarray,
  score: baselines.ScoreFn,
  ridge: float = 1e-3,
  r_min=0.0,
  r_max=1.0,
) -> np.ndarray:
  """Longstaff-Schwartz stopping rule of every head and scenario, fitted on training orders.

  Backward induction from the last decision. At decision t, the realised value of continuing
  (the exact improvement of the policy already found for decisions after t) minus the exact
  improvement of stopping at t is regressed on `lsm_basis` (ridge, on the in-the-money
  orders, gain > 0; an order out of the money never stops). Stopping at t trades at bar t's
  VWAP, unknown at decision t, so the stopping value is estimated from the same basis as the
  continuation value, and regressing their difference is the same least-squares fit. The
  rule stops where the fitted advantage of continuing is negative.

  Args:
    prices_BxN, volumes_BxN, closes_BxN, lookback_vol_B: the training orders' batch arrays.
    score: exact improvement in bps [B, K, S] of full schedules.
    ridge: penalty on standardised features, relative to the number of orders fitted.
    r_min, r_max: per-step bounds (scalars or [B] arrays).

  Returns:
    [N, K, S, P] coefficients of the continuation advantage (zero where a head may not stop).
  """
  batch, n = prices_BxN.shape
  baselines.check_lookback_vol(lookback_vol_B, batch)
  gain_BxNxS = baselines.gains(prices_BxN, volumes_BxN, closes_BxN)
  x_BxNxSxP = lsm_basis(gain_BxNxS, lookback_vol_B)
  stop_BxNxKxS = stop_values(score, prices_BxN, volumes_BxN, r_min, r_max)
  p = len(LSM_FEATURES)
  coef_NxKxSxP = np.zeros((n, n + 1, scenarios.NUM_SCENARIOS, p))
  value_BxKxS = stop_BxNxKxS[:, n - 1]  # stopping at the last bar is the uniform schedule
  for t in range(n - 2, 0, -1):
    heads = baselines.eligible_NxK(n)[t]
    for c in range(scenarios.NUM_SCENARIOS):
      rows = gain_BxNxS[:, t, c] > 0
      if rows.sum() <= p:
        continue
      advantage_RxH = value_BxKxS[rows][:, heads, c] - stop_BxNxKxS[rows, t][:, heads, c]
      coef_NxKxSxP[t, heads, c] = _ridge(x_BxNxSxP[rows, t, c], advantage_RxH, ridge).T
    stop_BxKxS = _lsm_stops(gain_BxNxS[:, t], x_BxNxSxP[:, t], coef_NxKxSxP[t])
    value_BxKxS = np.where(stop_BxKxS, stop_BxNxKxS[:, t], value_BxKxS)
  return coef_NxKxSxP


def _lsm_stops(gain_BxS, x_BxSxP, coef_KxSxP) -> np.ndarray:
  """[B, K, S] stop signal: in the money and a negative fitted advantage of continuing."""
  advantage_BxKxS = np.einsum("bsp,ksp->bks", np.nan_to_num(x_BxSxP), coef_KxSxP)  # NaN at s = 0
  return (gain_BxS[:, None, :] > 0) & (advantage_BxKxS < 0)


def lsm_stopping(
  prices_BxN: np.ndarray,
  volumes_BxN: np.ndarray,
  closes_BxN: np.ndarray,
  lookback_vol_B: np.ndarray,
  coef_NxKxSxP: np.ndarray,
  r_min=0.0,
  r_max=1.0,
) -> np.ndarray:
  """Applies `lsm_fit`'s coefficients to orders: uniform until the rule says stop.

  Returns:
    [B, N, K, S] float32 allocations.
  """
  batch, n = prices_BxN.shape
  want = (n, n + 1, scenarios.NUM_SCENARIOS, len(LSM_FEATURES))
  if np.shape(coef_NxKxSxP) != want:
    raise ValueError(f"coef_NxKxSxP must have shape {want}, got {np.shape(coef_NxKxSxP)}")
  baselines.check_lookback_vol(lookback_vol_B, batch)
  gain_BxNxS = baselines.gains(prices_BxN, volumes_BxN, closes_BxN)
  x_BxNxSxP = lsm_basis(gain_BxNxS, lookback_vol_B)
  stop_BxNxKxS = np.stack(
    [_lsm_stops(gain_BxNxS[:, t], x_BxNxSxP[:, t], coef_NxKxSxP[t]) for t in range(n)], axis=1
  )
  return baselines.stopping_schedule(stop_BxNxKxS, r_min, r_max)
