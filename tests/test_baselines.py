"""Tests of the baseline schedules: bounds, causality, calendar buckets and the oracle's upper bound."""

import hypothesis
import hypothesis.strategies as st
import numpy as np
import pytest

from lemjax import baselines
from lemjax import objectives
from lemjax import scenarios

N = 6
K = N + 1
S = scenarios.NUM_SCENARIOS
HOUR = 3_600_000


def _market(seed, batch=32, n=N, vol=30e-4):
  rng = np.random.default_rng(seed)
  prices = np.exp(np.cumsum(rng.normal(0, vol, (batch, n)), axis=1)).astype(np.float32)
  volumes = rng.lognormal(0, 0.5, (batch, n)).astype(np.float32)
  return prices, volumes


def _score(alloc, prices, volumes):
  return np.asarray(objectives.improvement_bps(alloc, prices, volumes))


def test_uniform_is_one_over_n_everywhere():
  a = baselines.uniform(3, N)
  assert a.shape == (3, N, K, S)
  np.testing.assert_allclose(a, 1.0 / N)


@hypothesis.settings(max_examples=25, deadline=None)
@hypothesis.given(r_min_units=st.floats(0.0, 1.0), r_max_units=st.floats(1.0, float(N)),
                  seed=st.integers(0, 10_000))
def test_project_keeps_bounds_and_completes(r_min_units, r_max_units, seed):
  r_min, r_max = r_min_units / N, r_max_units / N
  wish = np.random.default_rng(seed).uniform(0, 1, (N, 16))
  a = baselines.project(lambda s, rem: wish[s], N, r_min, r_max, (16,))
  np.testing.assert_allclose(a.sum(0), 1.0, atol=1e-9)
  assert (a >= -1e-12).all()
  assert (a[:-1] <= r_max + 1e-9).all()
  remaining = 1.0 - np.cumsum(a, 0)
  for s in range(N - 1):
    done = remaining[s - 1] if s else np.ones(16)
    assert (a[s] >= np.minimum(r_min, done) - 1e-9).all()
  # Completion never needs more than r_max on the last bar.
  assert (a[-1] <= r_max + 1e-9).all()


def test_calendar_buckets_hours_and_weekdays():
  origin = np.array([23 * HOUR], np.int64)  # 1970-01-01 23:00 UTC
  buckets, n_buckets = baselines.calendar_buckets(origin, 3, HOUR)
  assert n_buckets == 24 and buckets.tolist() == [[23, 0, 1]]
  friday = np.array([np.datetime64("2024-01-05", "ms").astype(np.int64)])
  days, n_days = baselines.calendar_buckets(friday, 3, 24 * HOUR)
  assert n_days == 7 and days.tolist() == [[4, 0, 1]]  # Friday, then Monday and Tuesday


def test_vwap_schedule_follows_profile():
  profile = np.array([3.0, 1.0, 1.0, 1.0, 1.0, 1.0])
  buckets = np.tile(np.arange(N), (2, 1))
  a = baselines.vwap_schedule(profile, buckets)
  np.testing.assert_allclose(a[0, :, 0, 0], profile / profile.sum(), atol=1e-6)
  flat = baselines.vwap_schedule(np.ones(N), buckets)
  np.testing.assert_allclose(flat, baselines.uniform(2, N), atol=1e-6)


def test_volume_profile_means_per_bucket():
  volumes = np.array([[1.0, 2.0], [3.0, 6.0]])
  buckets = np.array([[0, 1], [0, 1]])
  np.testing.assert_allclose(baselines.volume_profile(volumes, buckets, 3), [2.0, 4.0, 3.0])


def test_optional_stopping_never_stopping_is_uniform():
  prices, volumes = _market(0)
  a = baselines.optional_stopping(prices, volumes, np.full((K, S), np.inf))
  np.testing.assert_allclose(a, baselines.uniform(prices.shape[0], N), atol=1e-7)


def test_optional_stopping_finishes_on_a_favourable_price():
  prices = np.array([[1.0, 0.99, 0.99, 0.99, 0.99, 0.99]], np.float32)
  volumes = np.ones_like(prices)
  a = baselines.optional_stopping(prices, volumes, np.full((K, S), 5.0))
  buy = scenarios.scenario_index("buy", "twap", "quantity")
  sell = scenarios.scenario_index("sell", "twap", "quantity")
  # Decision 2 sees bar 1 at 0.99 against a running mean of 0.995: ~50 bps better for a buy.
  np.testing.assert_allclose(a[0, :, 0, buy], [1 / N, 1 / N, 1 - 2 / N, 0, 0, 0], atol=1e-6)
  # Head k = 3 must wait for decision 3; sells and the fixed head never stop here.
  np.testing.assert_allclose(a[0, :, 3, buy], [1 / N] * 3 + [1 - 3 / N, 0, 0], atol=1e-6)
  np.testing.assert_allclose(a[0, :, 0, sell], 1 / N, atol=1e-7)
  np.testing.assert_allclose(a[0, :, N, buy], 1 / N, atol=1e-7)


@hypothesis.settings(max_examples=15, deadline=None)
@hypothesis.given(seed=st.integers(0, 10_000), s=st.integers(0, N - 1))
def test_optional_stopping_is_causal(seed, s):
  prices, volumes = _market(seed, batch=8)
  theta = np.random.default_rng(seed).uniform(0, 20, (K, S))
  a = baselines.optional_stopping(prices, volumes, theta)
  p2, v2 = prices.copy(), volumes.copy()
  p2[:, s:] *= 1.05
  v2[:, s:] *= 3.0
  b = baselines.optional_stopping(p2, v2, theta)
  np.testing.assert_array_equal(a[:, :s + 1], b[:, :s + 1])


def test_tune_theta_picks_the_best_grid_value():
  prices, volumes = _market(1, batch=64)
  grid = (0.0, 10.0, np.inf)
  theta, means = baselines.tune_theta(prices, volumes, grid, _score)
  assert theta.shape == (K, S) and means.shape == (3, K, S)
  np.testing.assert_array_equal(theta, np.asarray(grid)[means.argmax(0)])
  with pytest.raises(ValueError, match="grid_bps"):
    baselines.tune_theta(prices, volumes, (), _score)


@pytest.mark.parametrize("r_min,r_max", [(0.0, 1.0), (0.05, 0.4)])
def test_oracle_beats_every_causal_schedule(r_min, r_max):
  prices, volumes = _market(2, batch=48)
  best = _score(baselines.oracle(prices, volumes, _score, r_min, r_max), prices, volumes)
  rng = np.random.default_rng(3)
  others = [baselines.uniform(48, N),
            baselines.optional_stopping(prices, volumes, np.full((K, S), 5.0), r_min, r_max)]
  wish = rng.uniform(0, 1, (N, 48, K, S))
  others.append(np.moveaxis(baselines.project(lambda s, rem: wish[s], N, r_min, r_max,
                                              (48, K, S)), 0, 1).astype(np.float32))
  for alloc in others:
    assert (best >= _score(alloc, prices, volumes) - 0.05).all()
  assert best.mean() > _score(others[0], prices, volumes).mean() + 1.0


def test_bad_shapes_raise():
  prices, volumes = _market(0)
  with pytest.raises(ValueError, match="theta_KxS"):
    baselines.optional_stopping(prices, volumes, np.zeros((2, 2)))
  with pytest.raises(ValueError, match="prices_BxN"):
    baselines.oracle(prices[:, :3], volumes, _score)
