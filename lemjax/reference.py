"""The `lems` 0.1.1 package's execution conventions, reproduced for parity tests (SPEC section 8).

Its tensors are laid out [B, N, N+1, 4, 2]: steps, min-period heads (the last one fixed
duration), the pairs (buy vwap, buy twap, sell vwap, sell twap) and the targets (quantity,
notional). Our scenario axis S enumerates (side, benchmark, target) with the target fastest,
so the two layouts differ by a reshape of S into [4, 2] (`to_reference_layout`).

Its conventions, as implemented here (the defaults of lemjax/objectives.py differ, see there):
  * performance in percent, raw slippage `(P / benchmark - 1) * 100` (buy: negative is good);
  * TWAP is a VWAP with unit volumes (its targets carry volume 1 in the TWAP channels);
  * window of bar n for head k: required if n <= k (every bar for the fixed head), or while no
    market volume has printed before bar n, or (hard) while some allocation remains at or
    after n; the training loss replaces the last test by sigmoid(alpha * remaining), so bars
    after completion still weigh 0.5;
  * the achieved price weighs each fill by its allocation times that window weight;
  * a Keras epsilon of 1e-7 in every denominator (and, in the loss, in the benchmark's
    numerator too).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lemjax import scenarios

KERAS_EPSILON = 1e-7
REFERENCE_PAIRS = ("buy_vwap", "buy_twap", "sell_vwap", "sell_twap")


def to_reference_layout(alloc_BxNxKxS):
  """[B, N, K, S] -> [B, N, K, 4, 2] (pairs x targets), the package's output layout."""
  b, n, k, s = alloc_BxNxKxS.shape
  if s != scenarios.NUM_SCENARIOS:
    raise ValueError(f"alloc_BxNxKxS.shape={alloc_BxNxKxS.shape}: last axis must be S=8")
  return alloc_BxNxKxS.reshape(b, n, k, 4, 2)


def from_reference_layout(alloc_BxNxKx4x2):
  """[B, N, K, 4, 2] -> [B, N, K, S]."""
  if alloc_BxNxKx4x2.ndim != 5 or alloc_BxNxKx4x2.shape[-2:] != (4, 2):
    raise ValueError(f"alloc.shape={alloc_BxNxKx4x2.shape}, expected [B, N, K, 4, 2]")
  b, n, k = alloc_BxNxKx4x2.shape[:3]
  return alloc_BxNxKx4x2.reshape(b, n, k, scenarios.NUM_SCENARIOS)


def _window(alloc_BxNxKxS, volumes_BxN, alpha):
  """The package's window weights [B, N, K, S] (hard if alpha is None, else sigmoid)."""
  _, n, k, _ = alloc_BxNxKxS.shape
  steps, heads = np.arange(n)[:, None], np.arange(k)[None, :]
  required_NxK = ((steps <= heads) | (heads == n)).astype(np.float32)
  vol_BxNxS = jnp.where(
    jnp.asarray(scenarios.IS_TWAP_S)[None, None, :], 1.0, volumes_BxN[:, :, None]
  )
  seen_BxNxS = jnp.cumsum(vol_BxNxS, axis=1)
  no_volume_yet = jnp.concatenate(
    [jnp.ones_like(seen_BxNxS[:, :1]), (seen_BxNxS[:, :-1] <= 0).astype(jnp.float32)], axis=1
  )
  needed = (
    required_NxK[None, :, :, None]
    + (1 - required_NxK[None, :, :, None]) * no_volume_yet[:, :, None, :]
  )
  left = jnp.flip(jnp.cumsum(jnp.flip(alloc_BxNxKxS, 1), axis=1), 1)
  active = (left > 0).astype(jnp.float32) if alpha is None else jax.nn.sigmoid(alpha * left)
  return needed + (1 - needed) * active


def slippage_pct(alloc_BxNxKxS, prices_BxN, volumes_BxN, *, alpha=None):
  """The package's raw slippage `(P / benchmark - 1) * 100` per order, head and scenario.

  Args:
    alloc_BxNxKxS: allocations.
    prices_BxN: fill prices relative to arrival.
    volumes_BxN: market volumes.
    alpha: None for its metrics (hard window); its loss's soft-mask sharpness otherwise.

  Returns:
    slip_BxKxS in percent.
  """
  eps = KERAS_EPSILON
  w = _window(alloc_BxNxKxS, volumes_BxN, alpha)
  p = prices_BxN[:, :, None, None]
  traded = alloc_BxNxKxS * w
  price_qty = jnp.sum(traded * p, axis=1) / (jnp.sum(traded, axis=1) + eps)
  price_ntl = jnp.sum(traded, axis=1) / (jnp.sum(traded / p, axis=1) + eps)
  achieved = jnp.where(jnp.asarray(scenarios.IS_NOTIONAL_S)[None, None, :], price_ntl, price_qty)
  vol = jnp.where(
    jnp.asarray(scenarios.IS_TWAP_S)[None, None, None, :], 1.0, volumes_BxN[:, :, None, None]
  )
  num = jnp.sum(vol * w * p, axis=1)
  den = jnp.sum(vol * w, axis=1) + eps
  bench = num / den if alpha is None else (num + eps) / den
  return (achieved / bench - 1.0) * 100.0


def lem_loss(alloc_BxNxKxS, prices_BxN, volumes_BxN, alpha: float = 50.0):
  """The package's training loss (softplus of buy-minus-sell percent slippage; |.| for fixed)."""
  n = alloc_BxNxKxS.shape[1]
  slip = slippage_pct(alloc_BxNxKxS, prices_BxN, volumes_BxN, alpha=alpha)
  b, k = slip.shape[:2]
  slip = slip.reshape(b, k, 2, 2, 2)  # side, benchmark, target
  spread = jax.nn.softplus(slip[:, :n, 0] - slip[:, :n, 1])
  fixed = jax.nn.softplus(jnp.abs(slip[:, n]))
  return (jnp.sum(spread) + jnp.sum(fixed)) / (spread.size + fixed.size)


def avg_improvement_pct(alloc_BxNxKxS, prices_BxN, volumes_BxN) -> dict:
  """The package's `{pair}_avg_imp` metrics: mean side-signed slippage over orders, flexible
  heads and both targets, in percent, for pairs buy_vwap, buy_twap, sell_vwap, sell_twap."""
  n = alloc_BxNxKxS.shape[1]
  slip = slippage_pct(alloc_BxNxKxS, prices_BxN, volumes_BxN)
  pairs = slip[:, :n].reshape(slip.shape[0], n, 4, 2)
  sign = np.array([-1.0, -1.0, 1.0, 1.0], np.float32)  # buy gains when P is below the benchmark
  means = jnp.mean(pairs, axis=(0, 1, 3)) * sign
  return {name: means[i] for i, name in enumerate(REFERENCE_PAIRS)}
