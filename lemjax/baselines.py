"""Baseline schedules on the same orders as the LEM: uniform, historical VWAP profile, optional stopping, oracle.

Every baseline returns allocations [B, N, K, S] so that the objectives module scores it with
the same code as the model. All but the oracle are causal: the share traded at bar s depends
only on the calendar, the training split, and prices/volumes of bars before s.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from lemjax import scenarios

MS_PER_DAY = 86_400_000
_SLIVER = 1e-5  # oracle: share put on a window's last bar so that the window ends there
ScoreFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]  # alloc, prices, volumes -> imp


def _check_prices(prices_BxN: np.ndarray, volumes_BxN: np.ndarray) -> None:
  if prices_BxN.ndim != 2 or volumes_BxN.shape != prices_BxN.shape:
    raise ValueError(f"prices_BxN and volumes_BxN must be equal [B, N] arrays, got shapes "
                     f"{prices_BxN.shape} and {volumes_BxN.shape}")


def broadcast(a_BxN: np.ndarray) -> np.ndarray:
  """One schedule per order, copied to every head and scenario: [B, N] -> [B, N, K, S]."""
  n = a_BxN.shape[1]
  return np.broadcast_to(a_BxN[:, :, None, None],
                         a_BxN.shape + (n + 1, scenarios.NUM_SCENARIOS)).astype(np.float32)


def project(proposal_fn, n_ahead: int, r_min, r_max, lead_shape) -> np.ndarray:
  """Runs a causal proposal through the order's bounds, bar by bar (SPEC section 1).

  Args:
    proposal_fn: (s, remaining) -> desired share of the parent order at bar s, broadcastable
      to `lead_shape`; it may read only what is known before bar s.
    n_ahead: N.
    r_min, r_max: per-step bounds, scalars or arrays broadcastable to `lead_shape`.
    lead_shape: shape of one bar's allocation, e.g. (B,) or (B, K, S).

  Returns:
    [N, *lead_shape] allocations: in [max(min(r_min, rem), rem - r_max * bars_left), min(rem, r_max)]
    at each bar, the last bar taking the remainder.
  """
  remaining = np.ones(lead_shape, np.float64)
  out = np.zeros((n_ahead,) + tuple(lead_shape), np.float64)
  for s in range(n_ahead):
    if s == n_ahead - 1:
      a = remaining
    else:
      lo = np.maximum(np.minimum(r_min, remaining), remaining - r_max * (n_ahead - 1 - s))
      hi = np.minimum(remaining, r_max)
      a = np.clip(np.broadcast_to(proposal_fn(s, remaining), lead_shape), lo, hi)
    out[s] = a
    remaining = np.maximum(remaining - a, 0.0)
  return out


def uniform(batch: int, n_ahead: int) -> np.ndarray:
  """The TWAP schedule: 1/N of the order at every bar, for every head and scenario."""
  return broadcast(np.full((batch, n_ahead), 1.0 / n_ahead, np.float32))


# --- Historical volume profile (classical VWAP schedule) ----------------------------------------

def calendar_buckets(origin_B: np.ndarray, n_ahead: int, bar_ms: int) -> tuple[np.ndarray, int]:
  """Calendar bucket of every execution bar: time of day (intraday bars) or weekday (daily bars).

  Execution bar s of an order opening at `origin` is taken to open at origin + s bars
  (intraday) or s business days later (daily bars; exchange holidays are not known here).

  Returns:
    ([B, N] int bucket ids, number of buckets).
  """
  origin_B = np.asarray(origin_B, np.int64)
  steps_N = np.arange(n_ahead, dtype=np.int64)
  if bar_ms < MS_PER_DAY and MS_PER_DAY % bar_ms == 0:
    times_BxN = origin_B[:, None] + steps_N[None, :] * bar_ms
    return (times_BxN % MS_PER_DAY) // bar_ms, MS_PER_DAY // bar_ms
  if bar_ms >= MS_PER_DAY:
    days_B = (origin_B // MS_PER_DAY).astype("datetime64[D]")
    days_BxN = np.busday_offset(days_B[:, None], steps_N[None, :], roll="forward")
    return ((days_BxN.astype(np.int64) + 3) % 7).astype(np.int64), 7  # 1970-01-01 was a Thursday
  return np.zeros((origin_B.shape[0], n_ahead), np.int64), 1


def volume_profile(volumes_BxN: np.ndarray, buckets_BxN: np.ndarray, n_buckets: int) -> np.ndarray:
  """Mean (per-order scaled) market volume per calendar bucket over training orders; [n_buckets].

  Buckets never seen in training get the overall mean, so the profile is flat where unknown.
  """
  sums = np.bincount(buckets_BxN.ravel(), weights=volumes_BxN.ravel(), minlength=n_buckets)
  counts = np.bincount(buckets_BxN.ravel(), minlength=n_buckets)
  overall = float(np.mean(volumes_BxN)) if volumes_BxN.size else 1.0
  profile = np.where(counts > 0, sums / np.maximum(counts, 1), overall)
  return np.maximum(profile, 1e-12)


def vwap_schedule(profile: np.ndarray, buckets_BxN: np.ndarray, r_min=0.0, r_max=1.0) -> np.ndarray:
  """Trades in proportion to the historical volume of each bar's calendar bucket; [B, N, K, S]."""
  weights_BxN = profile[buckets_BxN]
  target_BxN = weights_BxN / weights_BxN.sum(axis=1, keepdims=True)
  batch, n = target_BxN.shape
  # The share of what is left that the profile would trade now keeps the schedule on its curve.
  left_BxN = np.cumsum(target_BxN[:, ::-1], axis=1)[:, ::-1]
  a_NxB = project(lambda s, rem: rem * target_BxN[:, s] / np.maximum(left_BxN[:, s], 1e-12),
                  n, r_min, r_max, (batch,))
  return broadcast(a_NxB.T)


# --- Causal optional stopping ---------------------------------------------------------------------

def running_benchmarks(prices_BxN: np.ndarray, volumes_BxN: np.ndarray) -> np.ndarray:
  """Benchmark of bars 0..s-1 known at decision s, per scenario: [B, N, S] (NaN at s = 0).

  VWAP falls back to TWAP while no volume has traded.
  """
  p = np.asarray(prices_BxN, np.float64)
  v = np.asarray(volumes_BxN, np.float64)
  count = np.arange(p.shape[1], dtype=np.float64)
  csum_p = np.concatenate([np.zeros_like(p[:, :1]), np.cumsum(p, 1)[:, :-1]], 1)
  csum_v = np.concatenate([np.zeros_like(v[:, :1]), np.cumsum(v, 1)[:, :-1]], 1)
  csum_pv = np.concatenate([np.zeros_like(p[:, :1]), np.cumsum(p * v, 1)[:, :-1]], 1)
  with np.errstate(invalid="ignore", divide="ignore"):
    twap = np.where(count > 0, csum_p / np.maximum(count, 1), np.nan)
    vwap = np.where(csum_v > 0, csum_pv / np.where(csum_v > 0, csum_v, 1.0), twap)
  return np.where(scenarios.IS_TWAP_S[None, None, :], twap[..., None], vwap[..., None])


def optional_stopping(prices_BxN: np.ndarray, volumes_BxN: np.ndarray, theta_KxS: np.ndarray,
                      r_min=0.0, r_max=1.0) -> np.ndarray:
  """Uniform trading that finishes early once past the minimum when the price is favourable.

  At decision s >= max(k, 1) of a flexible head k (min period k + 1 bars), the order
  finishes its remainder (as fast as r_max allows) when the last known price, bar s-1's,
  beats the running benchmark of bars 0..s-1 by theta bps: below it for buys, above for
  sells. The fixed head (k = N) never stops early.

  Args:
    prices_BxN, volumes_BxN: executed bars' prices and volumes (read causally).
    theta_KxS: [K, S] thresholds in bps (inf: never stop).
    r_min, r_max: per-step bounds (scalars or [B] arrays).

  Returns:
    [B, N, K, S] float32 allocations.
  """
  _check_prices(prices_BxN, volumes_BxN)
  batch, n = prices_BxN.shape
  k_heads = n + 1
  if theta_KxS.shape != (k_heads, scenarios.NUM_SCENARIOS):
    raise ValueError(f"theta_KxS must be [K={k_heads}, S], got shape {theta_KxS.shape}")
  bench_BxNxS = running_benchmarks(prices_BxN, volumes_BxN)
  side_S = scenarios.SIDE_SIGN_S.astype(np.float64)
  head_K = np.arange(k_heads)
  stopped = np.zeros((batch, k_heads, scenarios.NUM_SCENARIOS), bool)
  r_min, r_max = _per_order(r_min, batch), _per_order(r_max, batch)

  def proposal(s, remaining):
    if s >= 1:
      last_B = np.asarray(prices_BxN[:, s - 1], np.float64)
      # Gain in bps of trading at the last price instead of the running benchmark (> 0 good).
      gain_BxS = side_S * (1.0 - last_B[:, None] / bench_BxNxS[:, s, :]) * 1e4
      eligible_K = (head_K < n) & (s >= head_K)
      stopped[...] |= eligible_K[None, :, None] & (gain_BxS[:, None, :] > theta_KxS[None])
    return np.where(stopped, remaining, 1.0 / n)

  a = project(proposal, n, r_min, r_max, (batch, k_heads, scenarios.NUM_SCENARIOS))
  return np.moveaxis(a, 0, 1).astype(np.float32)


def _per_order(r, batch: int):
  r = np.asarray(r, np.float64)
  return r.reshape(-1, 1, 1) if r.ndim == 1 else r


def tune_theta(prices_BxN, volumes_BxN, grid_bps, score: ScoreFn, r_min=0.0, r_max=1.0):
  """The threshold of each head and scenario with the best mean improvement on training orders.

  Returns:
    ([K, S] theta in bps, [G, K, S] mean improvement of every grid value).
  """
  grid = np.asarray(grid_bps, np.float64)
  if grid.ndim != 1 or grid.size == 0:
    raise ValueError(f"grid_bps must be a non-empty 1-D sequence, got {grid_bps!r}")
  k_heads = prices_BxN.shape[1] + 1
  means = []
  for theta in grid:
    theta_KxS = np.full((k_heads, scenarios.NUM_SCENARIOS), theta)
    alloc = optional_stopping(prices_BxN, volumes_BxN, theta_KxS, r_min, r_max)
    means.append(np.nanmean(np.asarray(score(alloc, prices_BxN, volumes_BxN)), axis=0))
  means_GxKxS = np.stack(means)
  return grid[np.argmax(means_GxKxS, axis=0)], means_GxKxS


# --- Perfect-foresight oracle (not causal: an upper bound) ----------------------------------------

def oracle(prices_BxN: np.ndarray, volumes_BxN: np.ndarray, score: ScoreFn,
           r_min: float = 0.0, r_max: float = 1.0) -> np.ndarray:
  """Best ex-post schedule per order, head and scenario, knowing every price in advance.

  For each candidate last bar e, every bar 0..e gets r_min and the rest goes to the
  best-priced bars there (lowest for buys, highest for sells) up to r_max each, with a sliver
  on bar e so the window ends there. Both targets' achieved prices are monotone in the
  allocation, so this is optimal for a given window (to within the sliver); the candidate
  with the best exact score is kept per order, head and scenario.

  Returns:
    [B, N, K, S] float32 allocations.
  """
  _check_prices(prices_BxN, volumes_BxN)
  batch, n = prices_BxN.shape
  k_heads, num_s = n + 1, scenarios.NUM_SCENARIOS
  best_imp = np.full((batch, k_heads, num_s), -np.inf)
  best = np.zeros((batch, n, k_heads, num_s), np.float32)
  for e in range(n):
    if (e + 1) * r_min > 1.0 + 1e-9 or (e + 1) * r_max < 1.0 - 1e-9:
      continue
    cand_BxNxS = np.stack([_greedy(prices_BxN, e, r_min, r_max, side > 0)
                           for side in scenarios.SIDE_SIGN_S], axis=-1)
    cand = np.broadcast_to(cand_BxNxS[:, :, None, :], (batch, n, k_heads, num_s))
    # A schedule ending at e is valid for every head (before k, the window still runs to k).
    imp = np.asarray(score(cand, prices_BxN, volumes_BxN), np.float64)
    better = imp > best_imp
    best_imp = np.where(better, imp, best_imp)
    best = np.where(better[:, None], cand, best)
  return best


def _greedy(prices_BxN, last: int, r_min: float, r_max: float, buy: bool) -> np.ndarray:
  """r_min on bars 0..last, the rest to the best prices there up to r_max each; [B, N]."""
  batch, n = prices_BxN.shape
  window = prices_BxN[:, :last + 1].astype(np.float64)
  order = np.argsort(window if buy else -window, axis=1, kind="stable")
  a = np.full((batch, last + 1), r_min)
  left = np.full(batch, 1.0 - r_min * (last + 1))
  rows = np.arange(batch)
  for j in range(last + 1):
    take = np.minimum(left, r_max - r_min)
    a[rows, order[:, j]] += take
    left -= take
  # A sliver on bar `last` makes it the last traded bar, so the benchmark window ends there.
  empty = a[:, last] <= 0.0
  donor = np.argmax(a, axis=1)
  a[rows[empty], donor[empty]] -= _SLIVER
  a[rows[empty], last] += _SLIVER
  out = np.zeros((batch, n))
  out[:, :last + 1] = a
  return out.astype(np.float32)
