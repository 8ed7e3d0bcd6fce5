"""Parity with the authors' `lems` 0.1.1 package: loss and metrics in reference_compat mode.

Identical random allocations, prices and volumes go to `lems.loss.lem_loss`, each
`lems.metrics.*_avg_imp` and lemjax; they must agree to 1e-5 relative. The metrics are means
of signed slippages that largely cancel, so they are compared in float64 (float32 rounding
alone moves them by ~1e-5); the loss is compared in float32 too.
"""

import contextlib
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")
lems = pytest.importorskip("lems")
keras = pytest.importorskip("keras")

from lemjax import objectives  # noqa: E402
from lemjax import reference  # noqa: E402
from lemjax import scenarios  # noqa: E402
from lemjax.config import LossConfig  # noqa: E402

pytestmark = pytest.mark.parity
N = 6
RTOL = 1e-5


def _case(seed, dtype):
  """Random schedules (many ending early), prices and volumes, some bars without volume."""
  rng = np.random.default_rng(seed)
  b, k = 24, N + 1
  a = rng.random((b, N, k, 8))
  ends = rng.integers(0, N, size=(b, 1, k, 8))
  a = np.where(np.arange(N)[None, :, None, None] <= ends, a, 0.0)
  a = a / a.sum(axis=1, keepdims=True)
  prices = np.exp(np.cumsum(0.01 * rng.standard_normal((b, N)), axis=1))
  volumes = rng.lognormal(size=(b, N))
  volumes[:3, 0] = 0.0  # the package then widens the VWAP window to the first traded bar
  volumes[0, 1] = 0.0
  a, prices, volumes = (x.astype(dtype) for x in (a, prices, volumes))
  y_true = lems.add_config_to_y(np.stack([volumes, prices], axis=-1)).astype(dtype)
  return a, prices, volumes, y_true


@contextlib.contextmanager
def _precision(dtype):
  """float64 in both JAX and Keras for the duration of a comparison."""
  if dtype == np.float32:
    yield
    return
  old = keras.config.floatx()
  with jax.enable_x64(True):
    keras.config.set_floatx("float64")
    try:
      yield
    finally:
      keras.config.set_floatx(old)


def _rel(ours, theirs):
  return abs(float(ours) - float(theirs)) / abs(float(theirs))


def test_layout_round_trip_matches_package_channels():
  a = np.arange(2 * N * (N + 1) * 8, dtype=np.float32).reshape(2, N, N + 1, 8)
  ref = reference.to_reference_layout(a)
  assert ref.shape == (2, N, N + 1, 4, 2)
  # Package channel (pair 1 = buy twap, target 1 = notional) is our buy/twap/notional.
  np.testing.assert_array_equal(
    ref[..., 1, 1], a[..., scenarios.scenario_index("buy", "twap", "notional")]
  )
  np.testing.assert_array_equal(
    ref[..., 2, 0], a[..., scenarios.scenario_index("sell", "vwap", "quantity")]
  )
  np.testing.assert_array_equal(reference.from_reference_layout(ref), a)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", [0, 1])
def test_loss_matches_package(seed, dtype):
  with _precision(dtype):
    a, prices, volumes, y_true = _case(seed, dtype)
    theirs = lems.lem_loss(y_true, reference.to_reference_layout(a))
    ours, _ = objectives.lem_loss(
      jnp.asarray(a), jnp.asarray(prices), jnp.asarray(volumes), LossConfig(reference_compat=True)
    )
    assert _rel(ours, theirs) < RTOL, (float(ours), float(theirs))
    default, _ = objectives.lem_loss(jnp.asarray(a), jnp.asarray(prices), jnp.asarray(volumes))
    assert _rel(default, theirs) > 1e-4, "the default loss fixes the package's mask and prices"


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("pair", reference.REFERENCE_PAIRS)
def test_avg_improvement_matches_package(seed, pair):
  with _precision(np.float64):
    a, prices, volumes, y_true = _case(seed, np.float64)
    theirs = getattr(lems, f"{pair}_avg_imp")(y_true, reference.to_reference_layout(a))
    ours = reference.avg_improvement_pct(jnp.asarray(a), jnp.asarray(prices), jnp.asarray(volumes))
    assert _rel(ours[pair], theirs) < RTOL, (float(ours[pair]), float(theirs))
    # The compat improvement (bps, per order) averages to the same number.
    imp = objectives.improvement_bps(
      jnp.asarray(a), jnp.asarray(prices), jnp.asarray(volumes), reference_compat=True
    )
    side, bench = pair.split("_")
    idx = [scenarios.scenario_index(side, bench, t) for t in scenarios.TARGETS]
    assert _rel(jnp.mean(imp[:, :N][..., np.array(idx)]) / 100.0, theirs) < RTOL


def test_default_metrics_agree_with_package_when_no_volume_is_missing():
  """With volume in every bar the hard-window conventions coincide, up to its 1e-7 epsilons."""
  with _precision(np.float64):
    a, prices, volumes, y_true = _case(3, np.float64)
    volumes = np.maximum(volumes, 0.1)
    y_true = lems.add_config_to_y(np.stack([volumes, prices], axis=-1))
    imp = objectives.improvement_bps(jnp.asarray(a), jnp.asarray(prices), jnp.asarray(volumes))
    theirs = lems.sell_vwap_avg_imp(y_true, reference.to_reference_layout(a))
    idx = np.array([scenarios.scenario_index("sell", "vwap", t) for t in scenarios.TARGETS])
    assert _rel(jnp.mean(imp[:, :N][..., idx]) / 100.0, theirs) < 1e-3
