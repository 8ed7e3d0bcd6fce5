"""Execution windows over pooled per-asset bars: lazy batch gathering, date splits and the Sampler."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from collections.abc import Mapping

import numpy as np
import polars as pl

from lemjax.data import features

SKIP_REASONS = ("history", "horizon", "embargo", "zero_volume_lookback", "zero_volume_execution")


@dataclasses.dataclass(frozen=True)
class BarStore:
  """All assets' bars back to back (asset a holds rows offsets[a] .. offsets[a+1]-1)."""

  asset_names: tuple[str, ...]
  offsets: np.ndarray  # int64 [A+1]
  warmup: np.ndarray  # int64 [A], local index of the first bar with a full volume window
  time: np.ndarray  # int64 [n], bar open, epoch ms
  close: np.ndarray  # float64 [n]
  high: np.ndarray  # float64 [n] (the close where a table has no or a missing high)
  low: np.ndarray  # float64 [n] (likewise)
  vwap: np.ndarray  # float64 [n]
  volume: np.ndarray  # float64 [n]
  volume_cumsum: np.ndarray  # float64 [n+1], running sum of volume (window means in O(1))
  feats: np.ndarray  # float32 [n, F]
  step_ms: int  # nominal bar length

  @classmethod
  def build(cls, frames: Mapping[str, pl.DataFrame], step_ms: int, volume_window_ms: int):
    """Features and arrays of every asset (symbol -> bar table, in the given order)."""
    names = tuple(frames)
    sizes = [frames[n].height for n in names]
    cat = lambda c: np.concatenate([frames[n][c].to_numpy() for n in names])
    volume = cat("volume").astype(np.float64)
    close = cat("close").astype(np.float64)

    def extreme(c):  # high or low; the close where missing, as the daily loader fills them
      x = np.concatenate(
        [frames[n][c if c in frames[n].columns else "close"].to_numpy() for n in names]
      ).astype(np.float64)
      return np.where(np.isfinite(x), x, close)

    return cls(
      asset_names=names,
      offsets=np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
      warmup=np.array(
        [features.warmup_bars(frames[n]["time"].to_numpy(), volume_window_ms) for n in names],
        np.int64,
      ),
      time=cat("time").astype(np.int64),
      close=close,
      high=extreme("high"),
      low=extreme("low"),
      vwap=cat("vwap").astype(np.float64),
      volume=volume,
      volume_cumsum=np.concatenate([[0.0], np.cumsum(volume)]),
      feats=np.concatenate(
        [features.bar_features(frames[n], step_ms, volume_window_ms) for n in names]
      ),
      step_ms=step_ms,
    )

  def asset_times(self, a: int) -> np.ndarray:
    return self.time[self.offsets[a] : self.offsets[a + 1]]


class WindowDataset:
  """Samples (one parent order each) of one split; batches are gathered lazily from a BarStore."""

  def __init__(
    self,
    store: BarStore,
    asset_M: np.ndarray,
    t0_M: np.ndarray,
    lookback: int,
    n_ahead: int,
    name: str = "",
    source: str = "",
  ):
    self.store, self.lookback, self.n_ahead = store, lookback, n_ahead
    self.name, self.source = name, source
    self.asset_names = store.asset_names
    self._asset_M = np.asarray(asset_M, np.int32)
    self._t0_M = np.asarray(t0_M, np.int64)  # global row of bar t0 in the store

  @property
  def num_windows(self) -> int:
    return int(self._t0_M.size)

  @property
  def seq_len(self) -> int:
    return self.lookback + self.n_ahead - 1

  @property
  def origins(self) -> np.ndarray:
    """Epoch ms of the open of bar t0 of every window [M]."""
    return self.store.time[self._t0_M]

  def __len__(self) -> int:
    return self.num_windows

  def __repr__(self) -> str:
    return (
      f"WindowDataset({self.name!r}, source={self.source!r}, windows={self.num_windows}, "
      f"assets={len(self.asset_names)}, L={self.lookback}, N={self.n_ahead})"
    )

  def batch(self, indices) -> dict[str, np.ndarray]:
    """The batch of windows `indices`: inputs [B,T,F], prices [B,N], volumes [B,N],
    asset [B] int32, origin [B] int64, closes [B,N], lookback_vol [B], lookback_half_spread [B].

    prices are the execution bars' VWAPs over the arrival price (the close of bar t0-1) and
    volumes are over the lookback's mean bar volume. closes[:, s] is the close of bar t0+s-1
    over the arrival price: the last price known at decision s (closes[:, 0] = 1).
    lookback_vol is the standard deviation of the close-to-close log returns within the
    lookback bars t0-L .. t0-1, in bps per bar; lookback_half_spread is the Abdi-Ranaldo
    half-spread of the same bars' high, low and close, in bps (`features.high_low_half_spread_bps`).
    The model reads only inputs, prices, volumes.

    Args:
      indices: int array [B] of window indices in [0, num_windows).
    Returns:
      dict of numpy arrays.
    """
    idx_B = np.asarray(indices)
    if idx_B.ndim != 1 or not np.issubdtype(idx_B.dtype, np.integer):
      raise ValueError(f"indices must be a 1-D int array, got {idx_B.dtype} {idx_B.shape}")
    if idx_B.size and (idx_B.min() < 0 or idx_B.max() >= self.num_windows):
      raise ValueError(
        f"indices out of range [0, {self.num_windows}): {idx_B.min()}..{idx_B.max()}"
      )
    s, lb, na = self.store, self.lookback, self.n_ahead
    t0_B = self._t0_M[idx_B]
    rows_BxT = t0_B[:, None] + np.arange(-lb, na - 1)[None, :]
    arrival_B = s.close[t0_B - 1]
    inputs_BxTxF = s.feats[rows_BxT]
    inputs_BxTxF[..., features.ARRIVAL_FEATURE] = features.price_vs_arrival(
      s.close[rows_BxT], arrival_B, lb
    )
    exec_BxN = t0_B[:, None] + np.arange(na)[None, :]
    mean_volume_B = (s.volume_cumsum[t0_B] - s.volume_cumsum[t0_B - lb]) / lb
    lookback_BxL = t0_B[:, None] + np.arange(-lb, 0)[None, :]
    half_spread_B = features.high_low_half_spread_bps(
      s.high[lookback_BxL], s.low[lookback_BxL], s.close[lookback_BxL]
    )
    return {
      "inputs": inputs_BxTxF,
      "prices": (s.vwap[exec_BxN] / arrival_B[:, None]).astype(np.float32),
      "volumes": (s.volume[exec_BxN] / mean_volume_B[:, None]).astype(np.float32),
      "asset": self._asset_M[idx_B],
      "origin": s.time[t0_B],
      "closes": (s.close[exec_BxN - 1] / arrival_B[:, None]).astype(np.float32),
      "lookback_vol": features.lookback_sigma_bps(s.close[lookback_BxL]).astype(np.float32),
      "lookback_half_spread": half_spread_B.astype(np.float32),
    }


def _reasons(
  store: BarStore, a: int, start_ms: float, end_ms: float, lookback: int, n_ahead: int, stride: int
) -> tuple[np.ndarray, np.ndarray]:
  """Candidate origins of asset `a` (global rows [C]) and why each is skipped ("" = kept) [C]."""
  times, base = store.asset_times(a), int(store.offsets[a])
  first = int(np.searchsorted(times, start_ms, side="left"))
  last = int(np.searchsorted(times, end_ms, side="left")) - 1
  t0 = np.arange(first + (-first) % stride, last + 1, stride, dtype=np.int64)
  reason = np.full(t0.shape, "", dtype=object)
  for name, failed in (  # the first failing test names the reason
    ("history", t0 - lookback < store.warmup[a]),
    ("horizon", t0 + n_ahead > times.size),
    ("embargo", (t0 - lookback < first) | (t0 + n_ahead - 1 > last)),
  ):
    reason[(reason == "") & failed] = name
  g0 = base + t0
  # Volume sums from the running sum; rows of already skipped windows are clipped into range.
  g0_safe = np.clip(g0, base + lookback, base + times.size - n_ahead)
  cum = store.volume_cumsum
  reason[(reason == "") & (cum[g0_safe] - cum[g0_safe - lookback] <= 0)] = "zero_volume_lookback"
  reason[(reason == "") & (cum[g0_safe + n_ahead] - cum[g0_safe] <= 0)] = "zero_volume_execution"
  return g0, reason


def split_windows(
  store: BarStore, start_ms: float, end_ms: float, lookback: int, n_ahead: int, stride: int = 1
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
  """Windows whose every bar (t0-L .. t0+N-1) has open time in [start_ms, end_ms).

  Keeping whole windows inside their split leaves L + N bars between the origins of
  neighbouring splits (the embargo), so no bar feeds two splits.

  Args:
    store: pooled bars.
    start_ms, end_ms: split time range (epoch ms; +-inf for open ends).
    lookback, n_ahead: L and N.
    stride: bars between window origins (origins at local index multiples of it).
  Returns:
    (asset [M] int32, global row of t0 [M] int64, counts: candidates, kept and one per skip reason).
  """
  assets, starts = [], []
  counts = dict.fromkeys(("candidates", "kept") + SKIP_REASONS, 0)
  for a in range(len(store.asset_names)):
    g0, reason = _reasons(store, a, start_ms, end_ms, lookback, n_ahead, stride)
    keep = reason == ""
    counts["candidates"] += int(g0.size)
    for name in SKIP_REASONS:
      counts[name] += int((reason == name).sum())
    assets.append(np.full(int(keep.sum()), a, np.int32))
    starts.append(g0[keep])
  counts["kept"] = int(sum(x.size for x in starts))
  return np.concatenate(assets), np.concatenate(starts), counts


class Sampler:
  """Deterministic, checkpointable shuffled batches of window indices (fixed shape [B]).

  Epoch e visits a permutation seeded by (seed, e); the ragged tail of an epoch is dropped.
  When there are fewer windows than the batch size, the permutation is repeated to fill a batch.
  """

  def __init__(self, num_windows: int, batch_size: int, seed: int = 0):
    if num_windows < 1 or batch_size < 1:
      raise ValueError(
        f"Sampler needs num_windows >= 1 and batch_size >= 1, got {num_windows}, {batch_size}"
      )
    self.num_windows, self.batch_size = int(num_windows), int(batch_size)
    self.seed, self.epoch, self.position = int(seed), 0, 0
    self._perm, self._perm_epoch = None, None

  @property
  def state(self) -> dict[str, int]:
    """JSON-able position: {"epoch", "position", "seed"}."""
    return {"epoch": self.epoch, "position": self.position, "seed": self.seed}

  def restore(self, state: Mapping[str, int]) -> Sampler:
    self.epoch, self.position = int(state["epoch"]), int(state["position"])
    self.seed = int(state["seed"])
    self._perm_epoch = None
    return self

  def _permutation(self) -> np.ndarray:
    if self._perm_epoch != self.epoch:
      rng = np.random.default_rng([self.seed, self.epoch])
      self._perm, self._perm_epoch = rng.permutation(self.num_windows), self.epoch
    return self._perm

  def next_indices(self) -> np.ndarray:
    """The next batch of window indices, int64 [B]."""
    if self.num_windows < self.batch_size:
      idx = self._permutation()[np.arange(self.batch_size) % self.num_windows]
      self.epoch += 1
      return idx
    if self.position + self.batch_size > self.num_windows:
      self.epoch, self.position = self.epoch + 1, 0
    idx = self._permutation()[self.position : self.position + self.batch_size]
    self.position += self.batch_size
    return idx.astype(np.int64)


def eval_indices(num_windows: int, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """All windows in order as fixed-shape batches: (indices [B], valid [B] bool); the last batch
  is padded with its last index and valid=False."""
  for start in range(0, num_windows, batch_size):
    idx = np.arange(start, min(start + batch_size, num_windows))
    valid = np.zeros(batch_size, bool)
    valid[: idx.size] = True
    yield np.concatenate([idx, np.full(batch_size - idx.size, idx[-1])]), valid
