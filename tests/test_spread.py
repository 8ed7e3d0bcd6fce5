"""Tests of the per-order high-low half-spread (costs.spread="high_low"): the estimator by hand,
its causality, "config" unchanged, a child's cost by hand, and bad values named."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import polars as pl
import pytest

from experiments import base
from experiments import crypto_intraday
from lemjax import config as config_lib
from lemjax import costs
from lemjax import experiment
from lemjax import model as model_lib
from lemjax import scenarios
from lemjax import train as train_lib
from lemjax.config import CostConfig
from lemjax.data import Sampler
from lemjax.data import features
from lemjax.data import synthetic
from lemjax.data import windows

HOUR = 3_600_000
ON = CostConfig(enabled=True, fee_bps=1.0, half_spread_bps=2.0, impact_eta=0.5)
HIGH_LOW = dataclasses.replace(ON, spread="high_low")

# Three bars given by (ln H, ln L, ln C); worked by hand below.
LOG_HLC = np.array([[0.02, 0.00, 0.018], [0.03, 0.01, 0.012], [0.025, 0.005, 0.022]])
# eta = (ln H + ln L) / 2 = 0.01, 0.02, 0.015; c = 0.018, 0.012, 0.022.
# (c1 - eta1)(c1 - eta2) = 0.008 * -0.002 = -1.6e-5; (c2 - eta2)(c2 - eta3) = -0.008 * -0.003
# = 2.4e-5; mean 4e-6, S^2 = 1.6e-5, S = 0.004: half-spread 1e4 * 0.004 / 2 = 20 bps.
HAND_BPS = 20.0


def _estimate(log_hlc):
  h, lo, c = np.exp(np.asarray(log_hlc)).T
  return features.high_low_half_spread_bps(h, lo, c)


def test_estimator_by_hand():
  np.testing.assert_allclose(_estimate(LOG_HLC), HAND_BPS, rtol=1e-9)
  # A negative S^2 (here 4 * 0.01 * -0.02 < 0) is floored at 0.
  assert _estimate([[0.02, 0.0, 0.02], [0.05, 0.03, 0.04]]) == 0.0
  # Bars whose high and low equal the close (a daily bar with both missing): 0, finite.
  flat = np.log([100.0, 101.0, 99.5, 100.2])
  assert _estimate(np.stack([flat, flat, flat], axis=1)) == 0.0
  # Leading axes are rows of orders.
  rows = features.high_low_half_spread_bps(
    *np.exp(np.stack([LOG_HLC.T, LOG_HLC.T])).transpose(1, 0, 2)
  )
  np.testing.assert_allclose(rows, [HAND_BPS, HAND_BPS], rtol=1e-9)
  with pytest.raises(ValueError, match="L >= 2"):
    features.high_low_half_spread_bps([1.0], [1.0], [1.0])


def _frame(n=10, t0=6, with_high_low=True):
  """One asset of n hourly bars whose lookback bars t0-3 .. t0-1 are LOG_HLC."""
  rng = np.random.default_rng(0)
  close = 100 * np.exp(np.cumsum(0.002 * rng.standard_normal(n)))
  high, low = close * 1.003, close * 0.996
  h, lo, c = np.exp(LOG_HLC).T * 100.0
  high[t0 - 3 : t0], low[t0 - 3 : t0], close[t0 - 3 : t0] = h, lo, c
  cols = {
    "time": np.arange(n, dtype=np.int64) * HOUR,
    "close": close,
    "volume": np.full(n, 10.0) + np.arange(n),
    "vwap": close * 1.0005,
  }
  if with_high_low:
    cols.update(high=high, low=low)
  return pl.DataFrame(cols)


def _batch(frame, t0, lookback, n_ahead=2):
  store = windows.BarStore.build({"A": frame}, HOUR, 2 * HOUR)
  return windows.WindowDataset(store, np.zeros(1), np.array([t0]), lookback, n_ahead).batch(
    np.arange(1)
  )


def test_batches_carry_the_lookback_estimate_and_missing_high_low_give_zero():
  b = _batch(_frame(), 6, 3)
  assert b["lookback_half_spread"].dtype == np.float32 and b["lookback_half_spread"].shape == (1,)
  np.testing.assert_allclose(b["lookback_half_spread"], [HAND_BPS], rtol=1e-5)
  assert _batch(_frame(with_high_low=False), 6, 3)["lookback_half_spread"][0] == 0.0
  missing = _frame().with_columns(pl.lit(None, pl.Float64).alias("high"))
  assert np.isfinite(_batch(missing, 6, 3)["lookback_half_spread"][0])


def test_only_lookback_bars_enter_the_estimate():
  lb, n, t0 = 24, 6, 150
  frame = synthetic.synthetic_market("crypto", 1, 220, seed=7)["SYN0"]
  before = _batch(frame, t0, lb, n)["lookback_half_spread"]
  assert before[0] > 0

  def perturbed(rows):
    x = {c: frame[c].to_numpy().copy() for c in ("high", "low", "close")}
    x["high"][rows] *= 1.01
    x["low"][rows] *= 0.985
    x["close"][rows] *= 1.004
    changed = frame.with_columns(*(pl.Series(c, v) for c, v in x.items()))
    return _batch(changed, t0, lb, n)["lookback_half_spread"]

  # The first execution bar, the rest of the order, later bars and bars before the lookback.
  for rows in ([t0], list(range(t0, t0 + n)), list(range(t0 + n, 220)), [t0 - lb - 1]):
    np.testing.assert_array_equal(perturbed(rows), before)
  for rows in ([t0 - 1], [t0 - 2], [t0 - lb]):  # lookback bars do move it
    assert perturbed(rows)[0] != before[0], rows


def _costs_section(**changes):
  section = dict(base.get_config().costs)
  section.update(enabled=True, **changes)
  return section


def test_config_spread_leaves_every_cost_exactly_as_before():
  absent = _costs_section()
  absent.pop("spread")
  cfg_absent = config_lib.costs_config(absent)
  cfg_config = config_lib.costs_config(_costs_section(spread="config"))
  assert cfg_absent == cfg_config and cfg_config.spread == "config"
  b = _batch(synthetic.synthetic_market("crypto", 1, 220, seed=7)["SYN0"], 150, 24, 6)
  b = {k: np.repeat(v, 3, axis=0) for k, v in b.items()}
  rng = np.random.default_rng(1)
  alloc = jnp.asarray(rng.dirichlet(np.ones(6), size=(3, 7, 8)).transpose(0, 3, 1, 2), jnp.float32)
  size = jnp.asarray([0.001, 0.01, 0.2], jnp.float32)
  args = (alloc, b["prices"], b["volumes"], size, b["lookback_vol"])
  plain = costs.child_cost_bps(*args, cfg_absent)
  np.testing.assert_array_equal(
    plain, costs.child_cost_bps(*args, cfg_config, b["lookback_half_spread"])
  )
  # The formula of the constant half-spread, term by term as before the option existed.
  p = jnp.float32(0.3)
  old = cfg_config.fee_bps + cfg_config.half_spread_bps + cfg_config.impact_eta * 50.0 * jnp.sqrt(p)
  assert costs.cost_bps(p, 50.0, cfg_config, 123.0) == old
  score = costs.scorer(cfg_absent, 0.01, b["lookback_vol"])
  score_config = costs.scorer(cfg_config, 0.01, b["lookback_vol"], b["lookback_half_spread"])
  np.testing.assert_array_equal(
    score(alloc, b["prices"], b["volumes"]), score_config(alloc, b["prices"], b["volumes"])
  )


def test_high_low_child_pays_fee_plus_its_own_half_spread_plus_impact_by_hand():
  frame, t0 = _frame(), 6
  b = _batch(frame, t0, 3)
  a = np.zeros((1, 2, 3, 8), np.float32)
  a[0, :, :, :] = np.array([0.4, 0.6], np.float32)[:, None, None]
  size = np.array([0.05], np.float32)
  cost = np.asarray(
    costs.child_cost_bps(
      jnp.asarray(a),
      b["prices"],
      b["volumes"],
      size,
      b["lookback_vol"],
      HIGH_LOW,
      b["lookback_half_spread"],
    ),
    np.float64,
  )
  # By hand: sigma from the lookback closes, volumes over the lookback's mean volume.
  close, volume = frame["close"].to_numpy(), frame["volume"].to_numpy()
  sigma = 1e4 * np.std(np.diff(np.log(close[t0 - 3 : t0])))
  mean_volume = volume[t0 - 3 : t0].mean()
  parent = 0.05 * 2  # expected bar volumes
  buy_qty = scenarios.scenario_index("buy", "vwap", "quantity")
  for s, frac in enumerate((0.4, 0.6)):
    participation = frac * parent / (volume[t0 + s] / mean_volume)
    want = 1.0 + HAND_BPS + 0.5 * sigma * math.sqrt(participation)
    np.testing.assert_allclose(cost[0, s, 1, buy_qty], want, rtol=1e-5)
  # The constant half-spread (2 bps) is not what it pays.
  const = costs.child_cost_bps(
    jnp.asarray(a), b["prices"], b["volumes"], size, b["lookback_vol"], ON
  )
  np.testing.assert_allclose(np.asarray(const) + HAND_BPS - 2.0, cost, rtol=1e-5)


def test_training_loss_charges_each_orders_half_spread():
  config = crypto_intraday.get_config("smoke,costs")
  train_ds, _, _, _, _ = experiment.load_data(config)
  cfgs = experiment.resolve_configs(config, train_ds.batch(np.arange(1))["inputs"].shape[-1])
  cost = dataclasses.replace(cfgs["costs"], half_spread_bps=2.0)
  state = train_lib.create_train_state(
    jax.random.PRNGKey(0), cfgs["model"], cfgs["train"], cfgs["loss"], cost
  )
  batch = model_lib.model_batch(train_ds.batch(Sampler(train_ds.num_windows, 8, 0).next_indices()))
  assert "lookback_half_spread" in batch and np.all(batch["lookback_half_spread"] >= 0)
  batch["size"] = np.full(8, 0.01, np.float32)
  r_min, r_max = np.zeros(8, np.float32), np.ones(8, np.float32)
  loss = lambda s, b: float(train_lib.eval_step_jit(s, b, r_min, r_max)["loss"])  # noqa: E731
  hl_state = state.replace(costs=dataclasses.replace(cost, spread="high_low"))
  flat = {**batch, "lookback_half_spread": np.full(8, 2.0, np.float32)}
  np.testing.assert_allclose(loss(hl_state, flat), loss(state, batch), rtol=1e-6)
  wide = {**batch, "lookback_half_spread": np.full(8, 40.0, np.float32)}
  assert loss(hl_state, wide) != loss(hl_state, flat)


def test_bad_spread_value_raises_naming_it_and_the_choices():
  with pytest.raises(ValueError, match=r"costs.spread='bid_ask' must be one of config, high_low"):
    config_lib.costs_config({"spread": "bid_ask"})
  with pytest.raises(ValueError, match=r"costs.spread='HIGH_LOW'"):
    CostConfig(spread="HIGH_LOW")
  with pytest.raises(ValueError, match="unknown config key costs.spreads"):
    config_lib.costs_config({"spreads": "config"})
  # "high_low" without the orders' estimates is an error, never a silent constant.
  with pytest.raises(ValueError, match="lookback_half_spread"):
    costs.cost_bps(0.1, 50.0, HIGH_LOW)
