"""Tests for lemjax/objectives.py: accounting identities, windows, loss, evaluation metrics."""

import jax
import jax.numpy as jnp
import numpy as np
import polars as pl
import pytest

from lemjax import objectives
from lemjax import scenarios
from lemjax import stats as stats_lib
from lemjax.config import LossConfig

N, K, S = 5, 6, 8
BUY_TWAP_QTY = scenarios.scenario_index("buy", "twap", "quantity")
BUY_TWAP_NTL = scenarios.scenario_index("buy", "twap", "notional")
_loss = jax.jit(objectives.lem_loss, static_argnums=3)  # one compile per config, not per op
_summary = jax.jit(objectives.execution_summary)


def _random_alloc(rng, b, early=True):
  """Random schedules summing to 1; with `early`, each ends at a random bar."""
  a = rng.random((b, N, K, S))
  if early:
    ends = rng.integers(0, N, size=(b, 1, K, S))
    a = np.where(np.arange(N)[None, :, None, None] <= ends, a, 0.0)
  return (a / a.sum(axis=1, keepdims=True)).astype(np.float32)


def _market(rng, b):
  prices = np.exp(np.cumsum(0.01 * rng.standard_normal((b, N)), axis=1)).astype(np.float32)
  volumes = rng.lognormal(size=(b, N)).astype(np.float32)
  return prices, volumes


def test_constant_prices_give_zero_slippage_everywhere():
  rng = np.random.default_rng(0)
  alloc = _random_alloc(rng, 32)
  prices = np.full((32, N), 1.0137, np.float32)
  _, volumes = _market(rng, 32)
  summary = _summary(alloc, prices, volumes)
  np.testing.assert_allclose(summary["slippage_bps"], 0.0, atol=1e-2)
  np.testing.assert_allclose(summary["improvement_bps"], 0.0, atol=1e-2)
  loss, aux = _loss(jnp.asarray(alloc), jnp.asarray(prices), jnp.asarray(volumes), LossConfig())
  np.testing.assert_allclose(loss, np.log(2.0), rtol=1e-5)  # softplus(0) for every term
  np.testing.assert_allclose(aux["imp_bps_KxS"], 0.0, atol=1e-2)


def test_unit_volumes_make_vwap_equal_twap():
  rng = np.random.default_rng(1)
  alloc = np.repeat(_random_alloc(rng, 16)[..., :1], S, axis=3)  # same schedule in every scenario
  prices, _ = _market(rng, 16)
  summary = _summary(alloc, prices, np.ones((16, N), np.float32))
  bench = np.asarray(summary["benchmark"])
  for side in scenarios.SIDES:
    for target in scenarios.TARGETS:
      vwap = bench[..., scenarios.scenario_index(side, "vwap", target)]
      twap = bench[..., scenarios.scenario_index(side, "twap", target)]
      np.testing.assert_allclose(vwap, twap, rtol=1e-6)
  _, volumes = _market(rng, 16)  # and with real volumes they differ
  bench = np.asarray(_summary(alloc, prices, volumes)["benchmark"])
  assert np.max(np.abs(bench[..., 0] - bench[..., 2])) > 1e-5


def test_uniform_schedule_on_fixed_head_scores_zero_against_twap():
  rng = np.random.default_rng(2)
  prices, volumes = _market(rng, 64)
  alloc = np.full((64, N, K, S), 1.0 / N, np.float32)
  imp = np.asarray(objectives.improvement_bps(alloc, prices, volumes))
  np.testing.assert_allclose(imp[:, N, BUY_TWAP_QTY], 0.0, atol=1e-2)
  np.testing.assert_allclose(
    imp[:, N, scenarios.scenario_index("sell", "twap", "quantity")], 0.0, atol=1e-2
  )
  # A fixed notional buys more shares when cheap: harmonic <= arithmetic mean, so buy >= 0.
  assert np.all(imp[:, N, BUY_TWAP_NTL] >= -1e-2) and np.mean(imp[:, N, BUY_TWAP_NTL]) > 1e-3


def test_head_finishing_at_bar_zero_is_benchmarked_on_its_minimum_period():
  rng = np.random.default_rng(3)
  prices, volumes = _market(rng, 8)
  alloc = np.zeros((8, N, K, S), np.float32)
  alloc[:, 0] = 1.0  # every head and scenario trades everything in bar 0
  summary = _summary(alloc, prices, volumes)
  end = np.asarray(summary["window_end"])
  np.testing.assert_array_equal(end[:, :N], np.broadcast_to(np.arange(N)[None, :, None], (8, N, S)))
  np.testing.assert_array_equal(end[:, N], N - 1)
  assert np.all(summary["ended_early"])
  # Min period 1: window is bar 0 only, so the benchmark is bar 0's price and improvement 0.
  np.testing.assert_allclose(summary["benchmark"][:, 0], np.repeat(prices[:, :1], S, 1), rtol=1e-6)
  np.testing.assert_allclose(summary["improvement_bps"][:, 0], 0.0, atol=1e-2)
  # Min period 3: TWAP over bars 0..2.
  np.testing.assert_allclose(
    summary["benchmark"][:, 2, BUY_TWAP_QTY], prices[:, :3].mean(1), rtol=1e-6
  )


def test_hand_computed_prices_and_sign_convention():
  prices = np.array([[1.0, 1.02, 0.99, 1.01, 1.0]], np.float32)
  volumes = np.array([[1.0, 2.0, 1.0, 1.0, 4.0]], np.float32)
  alloc = np.zeros((1, N, K, S), np.float32)
  alloc[0, 0], alloc[0, 2] = 0.5, 0.5  # ends at bar 2
  summary = _summary(alloc, prices, volumes)
  qty, ntl = 0.5 * (1.0 + 0.99), 1.0 / (0.5 / 1.0 + 0.5 / 0.99)
  np.testing.assert_allclose(summary["price"][0, 0, BUY_TWAP_QTY], qty, rtol=1e-6)
  np.testing.assert_allclose(summary["price"][0, 0, BUY_TWAP_NTL], ntl, rtol=1e-6)
  # Head 0 (min period 1) ends at tau = 2; head 3 must wait until bar 3.
  vwap_0 = (1.0 + 2 * 1.02 + 0.99) / 4
  vwap_3 = (1.0 + 2 * 1.02 + 0.99 + 1.01) / 5
  i = scenarios.scenario_index("buy", "vwap", "quantity")
  np.testing.assert_allclose(summary["benchmark"][0, 0, i], vwap_0, rtol=1e-6)
  np.testing.assert_allclose(summary["benchmark"][0, 3, i], vwap_3, rtol=1e-6)
  imp = np.asarray(summary["improvement_bps"])[0, 0]
  np.testing.assert_allclose(imp[i], (1 - qty / vwap_0) * 1e4, rtol=1e-4)  # bought below VWAP: > 0
  assert imp[i] > 0 and imp[scenarios.scenario_index("sell", "vwap", "quantity")] < 0
  np.testing.assert_allclose(summary["slippage_bps"][0, 0, i], -imp[i], rtol=1e-6)


def test_soft_window_weighs_finished_bars_zero():
  alloc = np.zeros((1, N, K, S), np.float32)
  alloc[0, :2] = 0.5  # complete after bar 1
  w = np.asarray(objectives.window_mask(jnp.asarray(alloc), temperature=2e-3))
  assert np.all(w[0, 2:, :2] == 0.0), "bars after completion beyond the minimum period weigh 0"
  assert np.all(w[0, :2] > 0.999)
  np.testing.assert_array_equal(w[0, :, N], 1.0)  # fixed head: all bars
  np.testing.assert_array_equal(w[0, :4, 3], 1.0)  # min period 4
  np.testing.assert_array_equal(w, objectives.window_mask(jnp.asarray(alloc)))


def test_sharp_soft_window_has_no_gradient_towards_ending_early_until_annealed():
  """The plateau that left flexible heads never ending early, and the annealing that removes it.

  At the final temperature a schedule that keeps 1/N of the order for each later bar gets no
  gradient from its benchmark window (the weight of bar n moves only once less than about 1% of
  the order is left), although the hard window drops those bars once the order completes.
  Training starts at a warm temperature, where the window answers from anywhere.
  """
  uniform = jnp.full((1, N, K, S), 1.0 / N, jnp.float32)

  def late_weight(alloc, temperature):  # head 0 (min period 1): bars 1..N-1 are optional
    return jnp.sum(objectives.window_mask(alloc, temperature=temperature)[0, 1:, 0, 0])

  cfg = LossConfig(mask_temperature_start=0.05, mask_anneal_steps=100)
  sharp = np.asarray(jax.grad(late_weight)(uniform, objectives.mask_temperature(cfg, 100)))
  warm = np.asarray(jax.grad(late_weight)(uniform, objectives.mask_temperature(cfg, 0)))
  assert np.max(np.abs(sharp)) < 1e-12
  assert warm[0, N - 1, 0, 0] > 0.1, "trading less in the last bar must shorten the warm window"
  temps = [float(objectives.mask_temperature(cfg, t)) for t in (0, 50, 100, 1000)]
  np.testing.assert_allclose(temps, [0.05, np.sqrt(0.05 * 2e-3), 2e-3, 2e-3], rtol=1e-5)
  assert float(objectives.mask_temperature(LossConfig(mask_anneal_steps=0), 0)) == np.float32(2e-3)
  # Per-cell anneal starts (a collapsed cell restarted at step 100) give per-cell temperatures.
  per_cell = objectives.mask_temperature(cfg, 150, np.array([[0, 100]]))
  np.testing.assert_allclose(np.asarray(per_cell), [[2e-3, np.sqrt(0.05 * 2e-3)]], rtol=1e-5)
  flat = objectives.mask_temperature(LossConfig(mask_anneal_steps=0), 150, np.zeros((2, 3), int))
  assert flat.shape == (2, 3)
  # Re-warming restarts the anneal every `mask_rewarm_every` steps, so a head stuck on the plateau
  # gets the warm window's gradient again.
  cycle = LossConfig(mask_temperature_start=0.05, mask_anneal_steps=100, mask_rewarm_every=300)
  again = [float(objectives.mask_temperature(cycle, t)) for t in (0, 150, 299, 300, 350, 600)]
  np.testing.assert_allclose(again, [0.05, 2e-3, 2e-3, 0.05, np.sqrt(0.05 * 2e-3), 0.05], rtol=1e-5)
  rewarmed = objectives.mask_temperature(cycle, 300)
  assert np.asarray(jax.grad(late_weight)(uniform, rewarmed))[0, N - 1, 0, 0] > 0.1


def test_loss_variants_and_weights():
  rng = np.random.default_rng(4)
  alloc = jnp.asarray(_random_alloc(rng, 16))
  prices, volumes = (jnp.asarray(x) for x in _market(rng, 16))
  base, aux = _loss(alloc, prices, volumes, LossConfig())
  assert np.isfinite(base) and set(aux) == {"loss_flexible", "loss_fixed", "imp_bps_KxS"}
  assert aux["imp_bps_KxS"].shape == (K, S)
  per_side, _ = _loss(alloc, prices, volumes, LossConfig(per_side=True))
  assert abs(float(per_side) - float(base)) > 1e-6
  no_fixed, aux2 = _loss(alloc, prices, volumes, LossConfig(fixed_weight=0.0))
  n_flex, n_fixed = 16 * N * 2 * 2, 16 * S
  np.testing.assert_allclose(
    no_fixed, aux2["loss_flexible"] * n_flex / (n_flex + n_fixed), rtol=1e-5
  )
  twap_only, _ = _loss(alloc, prices, volumes, LossConfig(vwap_weight=0.0))
  assert float(twap_only) < float(base)
  grad = jax.jit(jax.grad(lambda a: objectives.lem_loss(a, prices, volumes)[0]))(alloc)
  assert np.all(np.isfinite(grad)) and np.any(grad != 0)


def test_summarize_matches_numpy_and_frame_is_tidy():
  rng = np.random.default_rng(5)
  imp = rng.standard_normal((200, K, S)) * 10 + 1.0
  early = rng.random((200, K, S)) < 0.3
  stats, frame = stats_lib.summarize_improvement(
    imp, early, None, block_length=1, n_boot=500, seed=0
  )
  np.testing.assert_allclose(stats["mean_bps"], imp.mean(0))
  np.testing.assert_allclose(stats["std_bps"], imp.std(0, ddof=1))
  np.testing.assert_allclose(stats["p5_bps"], np.percentile(imp, 5, axis=0))
  np.testing.assert_allclose(stats["q75_bps"], np.percentile(imp, 75, axis=0))
  np.testing.assert_allclose(stats["ended_early"], early.mean(0))
  assert np.all(stats["ci_lo"] < stats["mean_bps"]) and np.all(stats["mean_bps"] < stats["ci_hi"])
  # The 95% interval of a mean is about +-1.96 standard errors.
  half = (stats["ci_hi"] - stats["ci_lo"]) / 2 / (imp.std(0) / np.sqrt(200))
  assert 1.6 < np.median(half) < 2.3
  again, _ = stats_lib.summarize_improvement(imp, early, None, block_length=1, n_boot=500, seed=0)
  np.testing.assert_array_equal(again["ci_lo"], stats["ci_lo"])
  assert isinstance(frame, pl.DataFrame) and frame.height == K * S
  for col in (
    "side",
    "benchmark",
    "target",
    "head",
    "min_period",
    "n",
    "mean_bps",
    "ci_lo",
    "ci_hi",
    "ended_early",
  ):
    assert col in frame.columns
  row = frame.filter(
    (pl.col("side") == "sell")
    & (pl.col("benchmark") == "twap")
    & (pl.col("target") == "notional")
    & (pl.col("head") == 2)
  )
  np.testing.assert_allclose(
    row["mean_bps"][0], imp[:, 2, scenarios.scenario_index("sell", "twap", "notional")].mean()
  )
  assert row["min_period"][0] == 3 and frame.filter(pl.col("fixed_duration"))[
    "head"
  ].unique().to_list() == [N]


def test_evaluation_metrics_end_to_end():
  rng = np.random.default_rng(6)
  alloc = _random_alloc(rng, 40)
  prices, volumes = _market(rng, 40)
  stats, frame = stats_lib.evaluation_metrics(
    alloc, prices, volumes, None, block_length=1, n_boot=200
  )
  imp = np.asarray(objectives.improvement_bps(alloc, prices, volumes))
  np.testing.assert_allclose(stats["mean_bps"], imp.mean(0, dtype=np.float64), atol=1e-5)
  assert frame.height == K * S and np.all(stats["n"] == 40)


def test_paired_difference():
  rng = np.random.default_rng(7)
  a = rng.standard_normal((300, K, S))
  shifted = stats_lib.paired_difference(a + 2.5, a, None, block_length=1, n_boot=200)
  np.testing.assert_allclose(shifted["mean"], 2.5)
  np.testing.assert_allclose(shifted["ci_lo"], 2.5)
  np.testing.assert_allclose(shifted["ci_hi"], 2.5)
  noisy = stats_lib.paired_difference(
    a, rng.standard_normal((300, K, S)), None, block_length=1, n_boot=300, seed=1
  )
  assert noisy["mean"].shape == (K, S) and noisy["n"] == 300
  assert np.all(noisy["ci_lo"] < noisy["mean"]) and np.all(noisy["mean"] < noisy["ci_hi"])
  with pytest.raises(ValueError, match="a_Bx.shape"):
    stats_lib.paired_difference(a, a[:10], None, block_length=1)


def test_bad_shapes_raise():
  alloc = np.full((2, N, K, S), 1.0 / N, np.float32)
  prices = np.ones((2, N), np.float32)
  with pytest.raises(ValueError, match="prices_BxN"):
    _summary(alloc, prices[:, 1:], prices)
  with pytest.raises(ValueError, match="K=5"):
    _summary(alloc[:, :, 1:], prices, prices)
  with pytest.raises(ValueError, match="imp_BxKxS"):
    stats_lib.summarize_improvement(np.zeros((3, K)), np.zeros((3, K)), None, block_length=1)
