"""The linear probe of the coming price path (lemjax.predictability)."""

import json

import numpy as np
import pytest

from lemjax import config as config_lib
from lemjax import predictability

L, N, F = 6, 4, 8
SMOKE = "experiments/crypto_intraday.py:smoke"


def _batch(rng, b=32):
  return {
    "inputs": rng.normal(size=(b, L + N - 1, F)).astype(np.float32),
    "prices": (1 + 1e-3 * rng.normal(size=(b, N))).astype(np.float32),
    "lookback_vol": rng.uniform(10, 50, size=b).astype(np.float32),
    "lookback_half_spread": rng.uniform(1, 5, size=b).astype(np.float32),
  }


def test_predictors_read_only_the_lookback():
  rng = np.random.default_rng(0)
  batch = _batch(rng)
  x = predictability.predictors(batch, L)
  assert x.shape == (32, len(predictability.PREDICTOR_NAMES))
  future = {**batch, "inputs": batch["inputs"].copy(), "prices": batch["prices"] * 1.01}
  future["inputs"][:, L:] += 100.0  # bars t0 .. t0+N-2: traded bars, unknown at arrival
  np.testing.assert_array_equal(predictability.predictors(future, L), x)
  past = {**batch, "inputs": batch["inputs"].copy()}
  past["inputs"][:, L - 1] += 1.0  # the last lookback bar is known and is read
  assert not np.allclose(predictability.predictors(past, L), x)


def test_targets_are_the_path_its_mean_and_slope():
  prices = np.array([[1.0, 1.001, 1.002, 1.003]])
  y = predictability.targets({"prices": prices})
  np.testing.assert_allclose(y[0], [0, 10, 20, 30, 15, 20], atol=1e-9)


def test_ridge_recovers_a_planted_signal_and_finds_none_in_noise():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(8000, 3))
  y = np.column_stack([2 * x[:, 0] + 2 * rng.normal(size=8000), rng.normal(size=8000)])
  origin = np.repeat(np.arange(2000), 4)  # four orders share each start
  model = predictability.fit_ridge(x[:4000], y[:4000])
  r2 = predictability.out_of_sample_r2(
    y[4000:], predictability.predict(model, x[4000:]), model["intercept"], origin[4000:]
  )
  assert r2["r2"][0] == pytest.approx(0.5, abs=0.05)  # var(signal) / var(total) = 4 / 8
  assert r2["ci_lo"][0] > 0.4
  assert abs(r2["r2"][1]) < 0.01 and r2["ci_hi"][1] < 0.01  # noise: nothing to predict
  assert r2["n_clusters"] == 1000


def test_fit_ridge_rejects_bad_input():
  with pytest.raises(ValueError, match="NaN"):
    predictability.fit_ridge(np.array([[1.0], [np.nan]]), np.zeros((2, 1)))
  with pytest.raises(ValueError, match="same B"):
    predictability.fit_ridge(np.zeros((3, 2)), np.zeros((2, 1)))


def test_tilt_gain_is_the_side_neutral_gain_over_twap():
  rng = np.random.default_rng(2)
  path = rng.normal(size=(50, N)) * 30
  y = predictability.targets({"prices": 1 + path / 1e4})
  t = rng.uniform(-1.5, 1.5, size=50)
  c = (N - 1) / 2
  w_buy = (1 + np.clip(t, -1, 1)[:, None] * (c - np.arange(N)) / c) / N
  assert np.all(w_buy >= -1e-12) and np.allclose(w_buy.sum(1), 1)
  buy_gain = path.mean(1) - (w_buy * path).sum(1)  # TWAP minus the buy's average price
  w_sell = 2.0 / N - w_buy  # the mirror tilt
  sell_gain = (w_sell * path).sum(1) - path.mean(1)
  gain = predictability.tilt_gain(t, y)
  np.testing.assert_allclose(gain, buy_gain, atol=1e-9)
  np.testing.assert_allclose(gain, sell_gain, atol=1e-9)
  rising = predictability.targets({"prices": 1 + np.arange(N)[None, :] / 1e4})
  assert predictability.tilt_gain(np.ones(1), rising)[0] > 0  # front-loading a buy in a rise


def test_command_line_on_the_synthetic_market(tmp_path):
  out = tmp_path / "probe.json"
  result = predictability.main([f"--config={SMOKE}", "--max_windows=3000", f"--out={out}"])
  saved = json.loads(out.read_text())
  assert saved["split"] == "val" and saved["train_orders"] > 0 and saved["orders"] > 0
  n = result["rows"][-3]["target"]  # the last bar
  assert [r["target"] for r in saved["rows"]][-2:] == ["horizon mean", "slope"]
  assert n == f"bar {len(saved['rows']) - 3}"
  assert all(np.isfinite(r["r2"]) and r["ci_lo"] <= r["ci_hi"] for r in saved["rows"])
  assert saved["tilt"]["scale_bps"] in predictability.TILT_SCALES_BPS
  with pytest.raises(ValueError, match="split"):
    predictability.probe(config_lib.load_experiment(SMOKE), split="train")
