"""Tests of the baseline schedules: bounds, causality, stopping rules, best causal choice, the oracle."""

import hypothesis
import hypothesis.strategies as st
import numpy as np
import pytest

from lemjax import baselines
from lemjax import lsm as lsm_lib
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


def _closes(prices):
  """Last known prices taken as the previous bar's price (closes[:, 0] = 1)."""
  return np.concatenate([np.ones_like(prices[:, :1]), prices[:, :-1]], axis=1)


def _walk(seed, batch=256, n=N, vol_bps=30.0):
  """A drift-free random walk of closes, per-order volatility, VWAPs between a bar's open and close.

  Returns a batch dict like `Dataset.batch` (prices, volumes, closes, lookback_vol, origin).
  """
  rng = np.random.default_rng(seed)
  vol_B = vol_bps * rng.uniform(0.5, 1.5, batch)
  log_close = np.cumsum(rng.normal(0, 1, (batch, n)) * vol_B[:, None] * 1e-4, axis=1)
  log_open = np.concatenate([np.zeros((batch, 1)), log_close[:, :-1]], axis=1)
  mix = rng.uniform(0.2, 0.8, (batch, n))
  return {
    "prices": np.exp(mix * log_open + (1 - mix) * log_close).astype(np.float32),
    "volumes": rng.lognormal(0, 0.5, (batch, n)).astype(np.float32),
    "closes": np.exp(log_open).astype(np.float32),
    "lookback_vol": vol_B.astype(np.float32),
    "origin": rng.integers(0, 5000, batch).astype(np.int64) * HOUR,
  }


def _score(alloc, prices, volumes):
  return np.asarray(objectives.improvement_bps(alloc, prices, volumes))


def test_uniform_is_one_over_n_everywhere():
  a = baselines.uniform(3, N)
  assert a.shape == (3, N, K, S)
  np.testing.assert_allclose(a, 1.0 / N)


@hypothesis.settings(max_examples=25, deadline=None)
@hypothesis.given(
  r_min_units=st.floats(0.0, 1.0), r_max_units=st.floats(1.0, float(N)), seed=st.integers(0, 10_000)
)
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
  a = baselines.optional_stopping(prices, volumes, _closes(prices), np.full((K, S), np.inf))
  np.testing.assert_allclose(a, baselines.uniform(prices.shape[0], N), atol=1e-7)


def test_optional_stopping_finishes_on_a_favourable_price():
  prices = np.array([[1.0, 0.99, 0.99, 0.99, 0.99, 0.99]], np.float32)
  volumes = np.ones_like(prices)
  closes = np.array([[1.0, 1.0, 0.99, 0.99, 0.99, 0.99]], np.float32)
  buy = scenarios.scenario_index("buy", "twap", "quantity")
  sell = scenarios.scenario_index("sell", "twap", "quantity")
  for a in (
    baselines.optional_stopping(prices, volumes, closes, np.full((K, S), 5.0)),
    baselines.optional_stopping(prices, volumes, None, np.full((K, S), 5.0), last_price="vwap"),
  ):
    # Decision 2 sees bar 1 at 0.99 against a running mean of 0.995: ~50 bps better for a buy.
    np.testing.assert_allclose(a[0, :, 0, buy], [1 / N, 1 / N, 1 - 2 / N, 0, 0, 0], atol=1e-6)
    # Head k = 3 must wait for decision 3; sells and the fixed head never stop here.
    np.testing.assert_allclose(a[0, :, 3, buy], [1 / N] * 3 + [1 - 3 / N, 0, 0], atol=1e-6)
    np.testing.assert_allclose(a[0, :, 0, sell], 1 / N, atol=1e-7)
    np.testing.assert_allclose(a[0, :, N, buy], 1 / N, atol=1e-7)


def test_close_and_vwap_rules_read_different_prices():
  # Bar 0 trades at a VWAP of 1 but closes at 0.98: only the close-based rule sees the drop.
  prices = np.array([[1.0, 1.0, 1.0, 1.0, 1.0, 1.0]], np.float32)
  closes = np.array([[1.0, 0.98, 1.0, 1.0, 1.0, 1.0]], np.float32)
  theta = np.full((K, S), 10.0)
  buy = scenarios.scenario_index("buy", "vwap", "quantity")
  by_close = baselines.optional_stopping(prices, np.ones_like(prices), closes, theta)
  by_vwap = baselines.optional_stopping(
    prices, np.ones_like(prices), closes, theta, last_price="vwap"
  )
  np.testing.assert_allclose(by_close[0, :, 0, buy], [1 / N, 1 - 1 / N, 0, 0, 0, 0], atol=1e-6)
  np.testing.assert_allclose(by_vwap[0, :, 0, buy], 1 / N, atol=1e-7)


def test_gains_sign_and_first_decision():
  prices = np.array([[1.0, 1.0, 1.0]], np.float32)
  closes = np.array([[1.0, 0.99, 1.01]], np.float32)
  g = baselines.gains(prices, np.ones_like(prices), closes)
  assert g.shape == (1, 3, S) and np.isnan(g[:, 0]).all()
  np.testing.assert_allclose(g[0, 1], 100.0 * scenarios.SIDE_SIGN_S, rtol=1e-4)
  np.testing.assert_allclose(g[0, 2], -100.0 * scenarios.SIDE_SIGN_S, rtol=1e-4)


def test_vol_stopping_threshold_scales_with_volatility_and_bars_left():
  prices = np.ones((2, N), np.float32)
  closes = np.array(
    [[1.0, 0.995] + [1.0] * (N - 2)] * 2, np.float32
  )  # a 50 bps gain for buys at s = 1
  vol = np.array([10.0, 40.0], np.float32)
  theta = np.full((K, S), 1.0)
  a = baselines.vol_stopping(prices, np.ones_like(prices), closes, vol, theta)
  buy = scenarios.scenario_index("buy", "vwap", "quantity")
  # Threshold at s = 1 is theta * vol * sqrt(N - 1): 22 bps stops, 89 bps does not.
  np.testing.assert_allclose(a[0, :, 0, buy], [1 / N, 1 - 1 / N] + [0] * (N - 2), atol=1e-6)
  np.testing.assert_allclose(a[1, :, 0, buy], 1 / N, atol=1e-7)


def _rule(name, data, seed):
  """Allocations of one causal stopping rule with random parameters (stops happen often)."""
  rng = np.random.default_rng(seed)
  args = (data["prices"], data["volumes"], data["closes"])
  if name == "optional_stopping":
    return baselines.optional_stopping(*args, rng.uniform(0, 20, (K, S)))
  if name == "optional_stopping_vwap":
    return baselines.optional_stopping(*args, rng.uniform(0, 20, (K, S)), last_price="vwap")
  if name == "vol_stopping":
    return baselines.vol_stopping(*args, data["lookback_vol"], rng.uniform(0, 1, (K, S)))
  coef = rng.normal(0, 1, (N, K, S, len(lsm_lib.LSM_FEATURES)))
  return lsm_lib.lsm_stopping(*args, data["lookback_vol"], coef)


RULES = ("optional_stopping", "optional_stopping_vwap", "vol_stopping", "lsm_stopping")


@pytest.mark.parametrize("name", RULES)
@hypothesis.settings(max_examples=10, deadline=None)
@hypothesis.given(seed=st.integers(0, 10_000), s=st.integers(0, N - 1))
def test_stopping_rules_are_causal(name, seed, s):
  data = _walk(seed, batch=16)
  a = _rule(name, data, seed)
  future = dict(
    data, prices=data["prices"].copy(), volumes=data["volumes"].copy(), closes=data["closes"].copy()
  )
  # Decision s reads closes[:, s] (bar s-1's close); everything of bar s and later changes.
  future["prices"][:, s:] *= 1.05
  future["volumes"][:, s:] *= 3.0
  future["closes"][:, s + 1 :] *= 0.95
  b = _rule(name, future, seed)
  np.testing.assert_array_equal(a[:, : s + 1], b[:, : s + 1])
  assert not np.array_equal(a, baselines.uniform(16, N)), "the rule never stopped: a weak test"


@pytest.mark.parametrize("name", RULES)
@pytest.mark.parametrize("r_min,r_max", [(0.0, 1.0), (0.05, 0.4)])
def test_stopping_rules_keep_bounds(name, r_min, r_max):
  data = _walk(4, batch=32)
  rng = np.random.default_rng(5)
  args = (data["prices"], data["volumes"], data["closes"])
  if name.startswith("optional_stopping"):
    a = baselines.optional_stopping(
      *args,
      rng.uniform(0, 20, (K, S)),
      r_min,
      r_max,
      last_price="vwap" if name.endswith("vwap") else "close",
    )
  elif name == "vol_stopping":
    a = baselines.vol_stopping(*args, data["lookback_vol"], rng.uniform(0, 1, (K, S)), r_min, r_max)
  else:
    coef = rng.normal(0, 1, (N, K, S, len(lsm_lib.LSM_FEATURES)))
    a = lsm_lib.lsm_stopping(*args, data["lookback_vol"], coef, r_min, r_max)
  np.testing.assert_allclose(a.sum(1), 1.0, atol=1e-6)
  assert (a >= 0).all() and (a[:, :-1] <= r_max + 1e-6).all()
  remaining = 1.0 - np.concatenate([np.zeros_like(a[:, :1]), np.cumsum(a, 1)[:, :-1]], 1)
  assert (a[:, :-1] >= np.minimum(r_min, remaining[:, :-1]) - 1e-6).all()


def test_tune_theta_picks_the_best_grid_value():
  data = _walk(1, batch=64)
  grid = (0.0, 10.0, np.inf)

  def rule(theta_KxS):
    return baselines.optional_stopping(data["prices"], data["volumes"], data["closes"], theta_KxS)

  theta, means = baselines.tune_theta(rule, grid, _score, data["prices"], data["volumes"])
  assert theta.shape == (K, S) and means.shape == (3, K, S)
  np.testing.assert_array_equal(theta, np.asarray(grid)[means.argmax(0)])
  np.testing.assert_allclose(
    means[2], _score(baselines.uniform(64, N), data["prices"], data["volumes"]).mean(0), atol=1e-5
  )
  with pytest.raises(ValueError, match="grid"):
    baselines.tune_theta(rule, (), _score, data["prices"], data["volumes"])


def test_stop_values_score_the_schedules_the_rules_trade():
  data = _walk(2, batch=8)
  values = lsm_lib.stop_values(_score, data["prices"], data["volumes"])
  stop = np.zeros((8, N, K, S), bool)
  stop[:, 2] = True
  a = baselines.stopping_schedule(stop)
  head = 1  # may stop at decision 2
  np.testing.assert_array_equal(
    values[:, 2, head], _score(a, data["prices"], data["volumes"])[:, head]
  )
  np.testing.assert_array_equal(
    values[:, N - 1], _score(baselines.uniform(8, N), data["prices"], data["volumes"])
  )


@pytest.fixture(scope="module")
def lsm():
  """Coefficients fitted on a drift-free random walk, and the training orders."""
  data = _walk(11, batch=3000)
  coef = lsm_lib.lsm_fit(
    data["prices"], data["volumes"], data["closes"], data["lookback_vol"], _score, ridge=1e-3
  )
  return coef, data


def test_lsm_stops_a_sensible_share_and_beats_uniform_in_sample(lsm):
  coef, data = lsm
  assert coef.shape == (N, K, S, len(lsm_lib.LSM_FEATURES)) and np.isfinite(coef).all()
  # Heads may not stop before their minimum, nor at decision 0, nor on the fixed head.
  assert not coef[0].any() and not coef[:, N].any() and not coef[2, 3:].any()
  a = lsm_lib.lsm_stopping(
    data["prices"], data["volumes"], data["closes"], data["lookback_vol"], coef
  )
  early_KxS = (a[:, -1] < 1e-9).mean(0)
  assert (early_KxS[0] > 0.1).all() and (early_KxS[0] < 0.95).all()
  assert (early_KxS[N] == 0).all()
  gain_KxS = (
    _score(a, data["prices"], data["volumes"])
    - _score(baselines.uniform(a.shape[0], N), data["prices"], data["volumes"])
  ).mean(0)
  assert (gain_KxS[: N - 1] > 0).all() and (gain_KxS[N - 1 :] == 0).all()


def test_lsm_stops_after_a_favourable_jump(lsm):
  coef, _ = lsm
  # Flat, then bar 1 closes 60 bps lower: a buy is 2 to 3 sigma in the money at decision 2.
  closes = np.array([[1.0, 1.0, 0.994, 0.994, 0.994, 0.994]], np.float32)
  prices = np.array([[1.0, 0.997, 0.994, 0.994, 0.994, 0.994]], np.float32)
  vol = np.array([30.0], np.float32)
  a = lsm_lib.lsm_stopping(prices, np.ones_like(prices), closes, vol, coef)
  for bench in ("vwap", "twap"):
    for target in ("quantity", "notional"):
      buy = scenarios.scenario_index("buy", bench, target)
      sell = scenarios.scenario_index("sell", bench, target)
      np.testing.assert_allclose(a[0, :, 0, buy], [1 / N, 1 / N, 1 - 2 / N, 0, 0, 0], atol=1e-6)
      np.testing.assert_allclose(a[0, :, 0, sell], 1 / N, atol=1e-7)  # out of the money


def test_best_per_cell_and_pick():
  rng = np.random.default_rng(0)
  means = {name: rng.normal(size=(K, S)) for name in ("a", "b", "c")}
  means["c"][0, 0] = np.nan
  choice = baselines.best_per_cell(means)
  assert choice.shape == (K, S)
  stacked = np.stack([np.nan_to_num(m, nan=-np.inf) for m in means.values()])
  np.testing.assert_array_equal(choice, np.array(list(means))[stacked.argmax(0)])
  allocs = {name: rng.uniform(size=(3, N, K, S)).astype(np.float32) for name in means}
  best = baselines.pick(allocs, choice)
  for k in range(K):
    for s in range(S):
      np.testing.assert_array_equal(best[:, :, k, s], allocs[choice[k, s]][:, :, k, s])


def test_best_causal_is_chosen_on_validation_orders_only():
  from lemjax import config as config_lib
  from lemjax import evaluate as evaluate_lib

  cfg = config_lib.EvalConfig(theta_grid_bps=(0.0, 20.0, np.inf), vol_theta_grid=(0.0, 1.0, np.inf))
  tune, val, test = _walk(21, batch=400), _walk(22, batch=300), _walk(23, batch=50)
  allocs, fitted = evaluate_lib.baseline_allocations(test, tune, val, HOUR, cfg)
  assert tuple(allocs) == evaluate_lib.STRATEGIES[1:]
  choice = fitted["best_causal_choice"]
  means = np.stack([fitted["val_means"][name] for name in evaluate_lib.CAUSAL_BASELINES])
  np.testing.assert_array_equal(choice, np.asarray(evaluate_lib.CAUSAL_BASELINES)[means.argmax(0)])
  assert len(np.unique(choice)) > 1
  for k in range(K):
    for s in range(S):
      np.testing.assert_array_equal(
        allocs["best_causal"][:, :, k, s], allocs[choice[k, s]][:, :, k, s]
      )
  # Other test orders change no choice.
  _, refit = evaluate_lib.baseline_allocations(_walk(24, batch=50), tune, val, HOUR, cfg)
  np.testing.assert_array_equal(refit["best_causal_choice"], choice)


@pytest.mark.parametrize("r_min,r_max", [(0.0, 1.0), (0.05, 0.4)])
def test_oracle_beats_every_causal_schedule(r_min, r_max):
  prices, volumes = _market(2, batch=48)
  best = _score(baselines.oracle(prices, volumes, _score, r_min, r_max), prices, volumes)
  rng = np.random.default_rng(3)
  others = [
    baselines.uniform(48, N),
    baselines.optional_stopping(
      prices, volumes, _closes(prices), np.full((K, S), 5.0), r_min, r_max
    ),
  ]
  wish = rng.uniform(0, 1, (N, 48, K, S))
  others.append(
    np.moveaxis(
      baselines.project(lambda s, rem: wish[s], N, r_min, r_max, (48, K, S)), 0, 1
    ).astype(np.float32)
  )
  for alloc in others:
    assert (best >= _score(alloc, prices, volumes) - 0.05).all()
  assert best.mean() > _score(others[0], prices, volumes).mean() + 1.0


def test_bad_shapes_raise():
  prices, volumes = _market(0)
  with pytest.raises(ValueError, match="theta_KxS"):
    baselines.optional_stopping(prices, volumes, _closes(prices), np.zeros((2, 2)))
  with pytest.raises(ValueError, match="closes_BxN"):
    baselines.optional_stopping(prices, volumes, None, np.zeros((K, S)))
  with pytest.raises(ValueError, match="lookback_vol_B"):
    baselines.vol_stopping(prices, volumes, _closes(prices), np.ones(3), np.zeros((K, S)))
  with pytest.raises(ValueError, match="coef_NxKxSxP"):
    lsm_lib.lsm_stopping(
      prices, volumes, _closes(prices), np.ones(len(prices)), np.zeros((N, K, S))
    )
  with pytest.raises(ValueError, match="prices_BxN"):
    baselines.oracle(prices[:, :3], volumes, _score)


def test_batch_closes_and_lookback_vol_from_the_bars():
  from lemjax.data import synthetic
  from lemjax.data import windows

  lookback = 10
  frames = synthetic.synthetic_market("crypto", 1, 200, seed=4)
  store = windows.BarStore.build(frames, HOUR, 12 * HOUR)
  asset_M, t0_M, _ = windows.split_windows(store, -np.inf, np.inf, lookback, N)
  data = windows.WindowDataset(store, asset_M, t0_M, lookback, N)
  batch = data.batch(np.arange(0, data.num_windows, 7))
  close, time = frames["SYN0"]["close"].to_numpy(), frames["SYN0"]["time"].to_numpy()
  assert batch["closes"].shape == batch["prices"].shape and batch["closes"].dtype == np.float32
  assert batch["lookback_vol"].shape == (batch["prices"].shape[0],)
  np.testing.assert_array_equal(batch["closes"][:, 0], 1.0)
  for b, origin in enumerate(batch["origin"]):
    i0 = int(np.flatnonzero(time == origin)[0])
    np.testing.assert_allclose(
      batch["closes"][b], close[i0 - 1 : i0 + N - 1] / close[i0 - 1], rtol=1e-6
    )
    returns = np.log(
      close[i0 - lookback + 1 : i0] / close[i0 - lookback : i0 - 1]
    )  # bars t0-L .. t0-1
    np.testing.assert_allclose(batch["lookback_vol"][b], 1e4 * returns.std(), rtol=1e-5)
