"""Tests of features and windows against direct recomputation, causality, splits and the Sampler."""

import datetime
import json

import numpy as np
import polars as pl
import pytest

from lemjax.config import DataConfig
from lemjax.data import features
from lemjax.data import make_datasets
from lemjax.data import synthetic
from lemjax.data import windows

L, N = 24, 6
HOUR = 3_600_000
SPAN = 12 * HOUR  # volume_window "12h"


@pytest.fixture(scope="module")
def frames():
  """Two synthetic 1h assets; asset SYN0 gets zero-volume stretches that void some windows."""
  market = synthetic.synthetic_market("crypto", 2, 600, seed=3)
  volume = market["SYN0"]["volume"].to_numpy().copy()
  volume[200:240] = 0.0  # longer than L: lookbacks with no volume at all
  volume[400:409] = 0.0  # longer than N: execution periods with no volume
  volume[100] = 0.0  # a single zero-volume bar inside kept windows
  market["SYN0"] = market["SYN0"].with_columns(
    pl.Series("volume", volume), pl.Series("notional", volume * market["SYN0"]["vwap"].to_numpy())
  )
  return market


@pytest.fixture(scope="module")
def dataset(frames):
  store = windows.BarStore.build(frames, HOUR, SPAN)
  asset_M, t0_M, counts = windows.split_windows(store, -np.inf, np.inf, L, N)
  return windows.WindowDataset(store, asset_M, t0_M, L, N, "all"), counts


def direct_window(table, origin, lookback, n_ahead, span_ms, step_ms):
  """Inputs [T, F], prices [N], volumes [N] recomputed bar by bar from a bar table."""
  time, close = table["time"].to_numpy(), table["close"].to_numpy()
  volume, vwap = table["volume"].to_numpy(), table["vwap"].to_numpy()
  i0 = int(np.flatnonzero(time == origin)[0])
  arrival = close[i0 - 1]
  rows = []
  for j, bar in enumerate(range(i0 - lookback, i0 + n_ahead - 1)):
    mean = volume[(time > time[bar] - span_ms) & (time <= time[bar])].mean()
    when = datetime.datetime.fromtimestamp(time[bar] / 1000, tz=datetime.timezone.utc)
    tod = 2 * np.pi * (when.hour * 60 + when.minute) / 1440
    dow = 2 * np.pi * when.weekday() / 7
    ratio = volume[bar] / mean if mean > 0 else 0.0  # no volume in the whole trailing window
    rows.append(
      [
        np.log(ratio + 0.01),
        1e4 * (close[bar] / close[bar - 1] - 1) if bar > 0 else 0.0,
        1e4 * (close[bar] / arrival - 1) if j >= lookback - 1 else 0.0,
        np.sin(tod),
        np.cos(tod),
        np.sin(dow),
        np.cos(dow),
        np.log(step_ms / HOUR),
      ]
    )
  prices = vwap[i0 : i0 + n_ahead] / arrival
  volumes = volume[i0 : i0 + n_ahead] / volume[i0 - lookback : i0].mean()
  return np.array(rows), prices, volumes


def test_kept_windows_match_direct_recomputation(frames, dataset):
  data, _ = dataset
  rng = np.random.default_rng(0)
  idx = rng.choice(data.num_windows, 25, replace=False)
  batch = data.batch(idx)
  assert batch["inputs"].shape == (25, L + N - 1, features.N_FEATURES)
  assert batch["inputs"].dtype == batch["prices"].dtype == batch["volumes"].dtype == np.float32
  assert batch["asset"].dtype == np.int32 and batch["origin"].dtype == np.int64
  for b in range(25):
    table = frames[data.asset_names[batch["asset"][b]]]
    inputs, prices, volumes = direct_window(table, batch["origin"][b], L, N, SPAN, HOUR)
    np.testing.assert_allclose(batch["inputs"][b], inputs, rtol=1e-5, atol=2e-3)
    np.testing.assert_allclose(batch["prices"][b], prices, rtol=1e-6)
    np.testing.assert_allclose(batch["volumes"][b], volumes, rtol=1e-5)


def test_windows_without_volume_are_skipped_and_counted(frames, dataset):
  data, counts = dataset
  assert counts["zero_volume_lookback"] > 0 and counts["zero_volume_execution"] > 0
  assert counts["kept"] == data.num_windows
  assert counts["candidates"] == sum(counts[k] for k in ("kept",) + windows.SKIP_REASONS)
  # Every bar t0 with a full history and horizon is either kept or skipped for zero volume.
  expected_history = 2 * (L + features.warmup_bars(frames["SYN0"]["time"].to_numpy(), SPAN))
  assert counts["history"] == expected_history and counts["horizon"] == 2 * (N - 1)
  batch = data.batch(np.arange(data.num_windows))
  assert np.all(batch["volumes"].sum(1) > 0)
  # The single zero-volume bar stays in place inside kept windows.
  t100 = frames["SYN0"]["time"][100]
  inside = (batch["asset"] == 0) & (batch["origin"] <= t100) & (batch["origin"] > t100 - N * HOUR)
  assert inside.sum() == N and np.all(batch["volumes"][inside].min(1) == 0)


def test_features_are_causal(frames):
  table = frames["SYN1"]
  base = features.bar_features(table, HOUR, SPAN)
  rng = np.random.default_rng(1)
  for t in rng.integers(1, table.height - 1, 5):
    noise = np.where(np.arange(table.height) >= t, rng.uniform(0.5, 2.0, table.height), 1.0)
    changed = table.with_columns(
      [pl.col(c) * noise for c in ("close", "vwap", "volume", "notional")]
    )
    moved = features.bar_features(changed, HOUR, SPAN)
    np.testing.assert_array_equal(moved[:t], base[:t])
    assert not np.array_equal(moved[t:], base[t:])


def test_batch_is_causal_in_the_execution_bars(frames, dataset):
  data, _ = dataset
  rng = np.random.default_rng(2)
  for index in rng.integers(0, data.num_windows, 4):
    before = data.batch(np.array([index]))
    name = data.asset_names[before["asset"][0]]
    i0 = int(np.flatnonzero(frames[name]["time"].to_numpy() == before["origin"][0])[0])
    s = int(rng.integers(0, N))
    noise = np.where(
      np.arange(frames[name].height) >= i0 + s, rng.uniform(0.5, 2.0, frames[name].height), 1.0
    )
    changed = dict(frames)
    changed[name] = frames[name].with_columns(
      [pl.col(c) * noise for c in ("close", "vwap", "volume", "notional")]
    )
    store = windows.BarStore.build(changed, HOUR, SPAN)
    after = windows.WindowDataset(store, data._asset_M, data._t0_M, L, N).batch(np.array([index]))
    np.testing.assert_array_equal(after["inputs"][:, : L + s], before["inputs"][:, : L + s])
    np.testing.assert_array_equal(after["prices"][:, :s], before["prices"][:, :s])
    np.testing.assert_array_equal(after["volumes"][:, :s], before["volumes"][:, :s])


def test_volume_window_is_measured_in_time():
  """A 12h window spans 12 bars at 1h and 48 at 15m: constant-rate volume gives ratio 1 at both."""
  for step in (HOUR, HOUR // 4):
    t = np.arange(200, dtype=np.int64) * step
    mean = features.trailing_mean(t, np.full(200, 2.0) * step / HOUR, SPAN)
    assert np.allclose(mean, 2.0 * step / HOUR)
    assert features.warmup_bars(t, SPAN) == SPAN // step


@pytest.fixture(scope="module")
def splits():
  config = DataConfig(
    source="synthetic",
    synthetic_assets=3,
    synthetic_bars=1500,
    lookback=L,
    n_ahead=N,
    stride=3,
    volume_window="12h",
  )
  return make_datasets(config)


def test_splits_are_embargoed_and_strided(splits):
  train, val, test, report = splits
  assert report.source == "SYNTHETIC" and "SYNTHETIC" in report.summary()
  for early, late in ((train, val), (val, test)):
    for a in range(len(train.asset_names)):
      last = early.batch(np.arange(early.num_windows))
      first = late.batch(np.arange(late.num_windows))
      end = last["origin"][last["asset"] == a].max() + (N - 1) * HOUR  # last bar of early split
      start = first["origin"][first["asset"] == a].min() - L * HOUR  # first bar of late split
      assert start > end and start - end >= HOUR
      gap_bars = (
        first["origin"][first["asset"] == a].min() - last["origin"][last["asset"] == a].max()
      ) // HOUR
      assert gap_bars >= L + N
  origins = train.origins[np.asarray(train.batch(np.arange(train.num_windows))["asset"]) == 0]
  assert np.all(np.diff(np.sort(origins)) % (3 * HOUR) == 0)
  assert report.splits["train"]["kept"] == train.num_windows
  assert json.loads(report.to_json())["splits"]["val"]["kept"] == val.num_windows


def test_batch_rejects_bad_indices(splits):
  train = splits[0]
  with pytest.raises(ValueError, match="out of range"):
    train.batch(np.array([train.num_windows]))
  with pytest.raises(ValueError, match="1-D int"):
    train.batch(np.zeros((2, 2), np.int64))


def test_sampler_is_deterministic_and_resumable():
  a = windows.Sampler(103, 10, seed=7)
  seen = [a.next_indices() for _ in range(10)]  # one full epoch (tail of 3 dropped)
  assert all(i.shape == (10,) for i in seen)
  assert len(set(np.concatenate(seen))) == 100
  state = json.loads(json.dumps(a.state))
  upcoming = [a.next_indices() for _ in range(5)]
  b = windows.Sampler(103, 10, seed=0).restore(state)
  for expected in upcoming:
    np.testing.assert_array_equal(b.next_indices(), expected)
  assert b.state["epoch"] == 1
  c = windows.Sampler(103, 10, seed=8)
  assert not np.array_equal(c.next_indices(), seen[0])
  small = windows.Sampler(3, 8, seed=0)
  assert sorted(set(small.next_indices())) == [0, 1, 2]


def test_eval_indices_pad_the_last_batch():
  batches = list(windows.eval_indices(7, 3))
  assert [v.sum() for _, v in batches] == [3, 3, 1]
  assert np.array_equal(batches[-1][0], [6, 6, 6])
  assert all(i.shape == (3,) for i, _ in batches)
