"""Baseline schedules on the same orders as the LEM: uniform, VWAP profile, stopping rules, oracle.

Every baseline returns allocations [B, N, K, S] so that the objectives module scores it with
the same code as the model. All but the oracle are causal: the share traded at bar s depends
only on the calendar, the training split, and prices/volumes of bars before s.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from lemjax import scenarios

MS_PER_DAY = 86_400_000
_SLIVER = 1e-5  # oracle: share put on a window's last bar so that the window ends there
ScoreFn = Callable[
  [np.ndarray, np.ndarray, np.ndarray], np.ndarray
]  # alloc, prices, volumes -> imp


def _check_prices(prices_BxN: np.ndarray, volumes_BxN: np.ndarray) -> None:
  if prices_BxN.ndim != 2 or volumes_BxN.shape != prices_BxN.shape:
    raise ValueError(
      f"prices_BxN and volumes_BxN must be equal [B, N] arrays, got shapes "
      f"{prices_BxN.shape} and {volumes_BxN.shape}"
    )


def broadcast(a_BxN: np.ndarray) -> np.ndarray:
  """One schedule per order, copied to every head and scenario: [B, N] -> [B, N, K, S]."""
  n = a_BxN.shape[1]
  return np.broadcast_to(
    a_BxN[:, :, None, None], a_BxN.shape + (n + 1, scenarios.NUM_SCENARIOS)
  ).astype(np.float32)


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
  a_NxB = project(
    lambda s, rem: rem * target_BxN[:, s] / np.maximum(left_BxN[:, s], 1e-12),
    n,
    r_min,
    r_max,
    (batch,),
  )
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


def gains(
  prices_BxN: np.ndarray,
  volumes_BxN: np.ndarray,
  closes_BxN: np.ndarray | None = None,
  last_price: str = "close",
) -> np.ndarray:
  """Gain in bps of finishing at the last known price instead of the running benchmark; [B, N, S].

  gain[:, s] = side * (1 - last / benchmark of bars 0..s-1) * 1e4, positive when favourable
  (below the benchmark for buys, above for sells), NaN at s = 0.

  Args:
    prices_BxN, volumes_BxN: executed bars' prices (VWAPs) and volumes.
    closes_BxN: closes[:, s] is the close of bar s-1 (the batch's `closes`).
    last_price: "close" reads closes[:, s], the latest price the LEM can see at decision s;
      "vwap" reads bar s-1's VWAP prices[:, s-1] instead (closes unused).
  """
  _check_prices(prices_BxN, volumes_BxN)
  if last_price == "close":
    if closes_BxN is None or np.shape(closes_BxN) != prices_BxN.shape:
      raise ValueError(
        f"closes_BxN must be a [B, N] array like prices_BxN {prices_BxN.shape}, got "
        f"{None if closes_BxN is None else np.shape(closes_BxN)}"
      )
    last_BxN = np.asarray(closes_BxN, np.float64)
  elif last_price == "vwap":
    p = np.asarray(prices_BxN, np.float64)
    last_BxN = np.concatenate([np.full_like(p[:, :1], np.nan), p[:, :-1]], 1)
  else:
    raise ValueError(f"last_price={last_price!r} is not 'close' or 'vwap'")
  side_S = scenarios.SIDE_SIGN_S.astype(np.float64)
  return side_S * (1.0 - last_BxN[..., None] / running_benchmarks(prices_BxN, volumes_BxN)) * 1e4


def eligible_NxK(n_ahead: int) -> np.ndarray:
  """True where head k may stop at decision s: past its minimum, s >= max(k, 1); never the fixed head."""
  step_Nx1 = np.arange(n_ahead)[:, None]
  head_1xK = np.arange(n_ahead + 1)[None, :]
  return (head_1xK < n_ahead) & (step_Nx1 >= np.maximum(head_1xK, 1))


def stopping_schedule(stop_BxNxKxS: np.ndarray, r_min=0.0, r_max=1.0) -> np.ndarray:
  """Uniform trading that finishes the remainder, as fast as r_max allows, once a rule says stop.

  Args:
    stop_BxNxKxS: bool, the rule's signal at decision s (it must read only bars before s);
      signals before a head's minimum, and on the fixed head, are ignored.
    r_min, r_max: per-step bounds (scalars or [B] arrays).

  Returns:
    [B, N, K, S] float32 allocations.
  """
  batch, n = stop_BxNxKxS.shape[:2]
  if stop_BxNxKxS.shape[2:] != (n + 1, scenarios.NUM_SCENARIOS):
    raise ValueError(f"stop_BxNxKxS must be [B, N, K=N+1, S], got shape {stop_BxNxKxS.shape}")
  stop = stop_BxNxKxS & eligible_NxK(n)[None, :, :, None]
  stopped_BxNxKxS = np.logical_or.accumulate(stop, axis=1)
  a = project(
    lambda s, rem: np.where(stopped_BxNxKxS[:, s], rem, 1.0 / n),
    n,
    _per_order(r_min, batch),
    _per_order(r_max, batch),
    stop.shape[:1] + stop.shape[2:],
  )
  return np.moveaxis(a, 0, 1).astype(np.float32)


def _per_order(r, batch: int):
  r = np.asarray(r, np.float64)
  return r.reshape(-1, 1, 1) if r.ndim == 1 else r


def check_lookback_vol(lookback_vol_B: np.ndarray, batch: int) -> None:
  if np.shape(lookback_vol_B) != (batch,):
    raise ValueError(f"lookback_vol_B must be [B={batch}], got shape {np.shape(lookback_vol_B)}")


def _check_theta(theta_KxS: np.ndarray, n_ahead: int) -> None:
  if np.shape(theta_KxS) != (n_ahead + 1, scenarios.NUM_SCENARIOS):
    raise ValueError(f"theta_KxS must be [K={n_ahead + 1}, S], got shape {np.shape(theta_KxS)}")


def optional_stopping(
  prices_BxN: np.ndarray,
  volumes_BxN: np.ndarray,
  closes_BxN: np.ndarray | None,
  theta_KxS: np.ndarray,
  r_min=0.0,
  r_max=1.0,
  last_price: str = "close",
) -> np.ndarray:
  """Uniform trading that finishes early once past the minimum when the price is favourable.

  At decision s >= max(k, 1) of a flexible head k (min period k + 1 bars), the order
  finishes its remainder (as fast as r_max allows) when the last known price beats the
  running benchmark of bars 0..s-1 by more than theta bps. The fixed head (k = N) never
  stops early.

  Args:
    prices_BxN, volumes_BxN, closes_BxN: the batch's arrays (read causally).
    theta_KxS: [K, S] thresholds in bps (inf: never stop).
    r_min, r_max: per-step bounds (scalars or [B] arrays).
    last_price: "close" (the close of bar s-1, default) or "vwap" (bar s-1's VWAP); see `gains`.

  Returns:
    [B, N, K, S] float32 allocations.
  """
  gain_BxNxS = gains(prices_BxN, volumes_BxN, closes_BxN, last_price)
  _check_theta(theta_KxS, prices_BxN.shape[1])
  return stopping_schedule(
    gain_BxNxS[:, :, None, :] > np.asarray(theta_KxS)[None, None], r_min, r_max
  )


def vol_stopping(
  prices_BxN: np.ndarray,
  volumes_BxN: np.ndarray,
  closes_BxN: np.ndarray,
  lookback_vol_B: np.ndarray,
  theta_KxS: np.ndarray,
  r_min=0.0,
  r_max=1.0,
) -> np.ndarray:
  """Optional stopping with a volatility-scaled threshold.

  Past the minimum, finishes when the gain of the last close over the running benchmark
  exceeds theta * lookback_vol * sqrt(N - s) bps: theta in units of the typical price move
  over the bars s..N-1 still to trade.

  Args:
    prices_BxN, volumes_BxN, closes_BxN: the batch's arrays (read causally).
    lookback_vol_B: [B] lookback volatility in bps per bar (the batch's `lookback_vol`).
    theta_KxS: [K, S] dimensionless thresholds (inf: never stop).
    r_min, r_max: per-step bounds (scalars or [B] arrays).

  Returns:
    [B, N, K, S] float32 allocations.
  """
  gain_BxNxS = gains(prices_BxN, volumes_BxN, closes_BxN)
  batch, n = prices_BxN.shape
  _check_theta(theta_KxS, n)
  check_lookback_vol(lookback_vol_B, batch)
  scale_BxN = np.asarray(lookback_vol_B, np.float64)[:, None] * np.sqrt(n - np.arange(n))[None, :]
  with np.errstate(invalid="ignore"):  # inf * 0 volatility: NaN, which never stops
    threshold_BxNxKxS = np.asarray(theta_KxS)[None, None] * scale_BxN[:, :, None, None]
  return stopping_schedule(gain_BxNxS[:, :, None, :] > threshold_BxNxKxS, r_min, r_max)


def tune_theta(
  rule: Callable[[np.ndarray], np.ndarray],
  grid,
  score: ScoreFn,
  prices_BxN: np.ndarray,
  volumes_BxN: np.ndarray,
):
  """The threshold of each head and scenario with the best mean improvement on training orders.

  Args:
    rule: theta_KxS -> [B, N, K, S] allocations of a threshold rule on the training orders.
    grid: thresholds tried (one value for every head and scenario at a time).
    score: exact improvement in bps [B, K, S] of full schedules.
    prices_BxN, volumes_BxN: the training orders' bars, for `score`.

  Returns:
    ([K, S] theta, [G, K, S] mean improvement of every grid value).
  """
  grid = np.asarray(grid, np.float64)
  if grid.ndim != 1 or grid.size == 0:
    raise ValueError(f"grid must be a non-empty 1-D sequence, got {grid!r}")
  k_heads = prices_BxN.shape[1] + 1
  means = []
  for theta in grid:
    alloc = rule(np.full((k_heads, scenarios.NUM_SCENARIOS), theta))
    means.append(np.nanmean(np.asarray(score(alloc, prices_BxN, volumes_BxN)), axis=0))
  means_GxKxS = np.stack(means)
  return grid[np.argmax(means_GxKxS, axis=0)], means_GxKxS


# --- Best causal baseline -------------------------------------------------------------------------


def best_per_cell(means: dict[str, np.ndarray]) -> np.ndarray:
  """[K, S] name of the strategy with the highest mean in each cell (the first listed wins ties).

  Args:
    means: strategy name -> [K, S] mean improvement (validation orders); NaN never wins.
  """
  names = list(means)
  if not names:
    raise ValueError("means holds no strategy")
  stacked = np.stack([np.nan_to_num(np.asarray(means[k], np.float64), nan=-np.inf) for k in names])
  return np.asarray(names)[np.argmax(stacked, axis=0)]


def pick(allocs: dict[str, np.ndarray], choice_KxS: np.ndarray) -> np.ndarray:
  """[B, N, K, S] allocations taking head k and scenario s from strategy choice_KxS[k, s]."""
  first = allocs[str(choice_KxS.flat[0])]
  if choice_KxS.shape != first.shape[2:]:
    raise ValueError(f"choice_KxS must be [K, S] = {first.shape[2:]}, got {choice_KxS.shape}")
  out = np.zeros_like(first)
  for name in np.unique(choice_KxS):
    cell_KxS = choice_KxS == name
    out[:, :, cell_KxS] = allocs[str(name)][:, :, cell_KxS]
  return out


# --- Perfect-foresight oracle (not causal: an upper bound) ----------------------------------------


def oracle(
  prices_BxN: np.ndarray,
  volumes_BxN: np.ndarray,
  score: ScoreFn,
  r_min=0.0,
  r_max=1.0,
  spread_candidates: bool = False,
) -> np.ndarray:
  """Best ex-post schedule per order, head and scenario, knowing every price in advance.

  For each candidate last bar e, every bar 0..e gets r_min and the rest goes to the
  best-priced bars there (lowest for buys, highest for sells) up to r_max each, with a sliver
  on bar e so the window ends there. Both targets' achieved prices are monotone in the
  allocation, so this is optimal for a given window (to within the sliver); the candidate
  with the best exact score is kept per order, head and scenario.

  With execution costs (`score` net of costs, lemjax/costs.py) concentrating on the best bars
  pays impact, so `spread_candidates` also tries, for each e, the even split over bars 0..e;
  the oracle is then the best of both families, still an ex-post bound rather than a strategy.
  r_min and r_max are scalars or per-order [B] arrays (a window an order's bounds cannot fill
  is never its candidate).

  Returns:
    [B, N, K, S] float32 allocations.
  """
  _check_prices(prices_BxN, volumes_BxN)
  batch, n = prices_BxN.shape
  k_heads, num_s = n + 1, scenarios.NUM_SCENARIOS
  best_imp = np.full((batch, k_heads, num_s), -np.inf)
  best = np.zeros((batch, n, k_heads, num_s), np.float32)
  r_min_B = np.broadcast_to(np.asarray(r_min, np.float64), (batch,))
  r_max_B = np.broadcast_to(np.asarray(r_max, np.float64), (batch,))
  for e in range(n):
    fits_B = ((e + 1) * r_min_B <= 1.0 + 1e-9) & ((e + 1) * r_max_B >= 1.0 - 1e-9)
    if not fits_B.any():
      continue
    cand_BxNxS = np.stack(
      [_greedy(prices_BxN, e, r_min, r_max, side > 0) for side in scenarios.SIDE_SIGN_S], axis=-1
    )
    candidates = [cand_BxNxS]
    if spread_candidates:
      even_N = np.where(np.arange(n) <= e, 1.0 / (e + 1), 0.0).astype(np.float32)
      candidates.append(np.broadcast_to(even_N[None, :, None], cand_BxNxS.shape))
    for cand_BxNxS in candidates:
      cand = np.broadcast_to(cand_BxNxS[:, :, None, :], (batch, n, k_heads, num_s))
      # A schedule ending at e is valid for every head (before k, the window still runs to k).
      imp = np.asarray(score(cand, prices_BxN, volumes_BxN), np.float64)
      better = (imp > best_imp) & fits_B[:, None, None]
      best_imp = np.where(better, imp, best_imp)
      best = np.where(better[:, None], cand, best)
  return best


def _greedy(prices_BxN, last: int, r_min, r_max, buy: bool) -> np.ndarray:
  """r_min on bars 0..last, the rest to the best prices there up to r_max each; [B, N]."""
  batch, n = prices_BxN.shape
  window = prices_BxN[:, : last + 1].astype(np.float64)
  order = np.argsort(window if buy else -window, axis=1, kind="stable")
  r_min = np.broadcast_to(np.asarray(r_min, np.float64), (batch,))
  r_max = np.broadcast_to(np.asarray(r_max, np.float64), (batch,))
  a = np.repeat(r_min[:, None], last + 1, axis=1)
  left = 1.0 - r_min * (last + 1)
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
  out[:, : last + 1] = a
  return out.astype(np.float32)
