"""Tests for lemjax/stats.py: coverage of the block bootstrap under dependent orders, identities."""

import hypothesis
import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import strategies as st

from lemjax import scenarios
from lemjax import stats as stats_lib

K, S = 3, scenarios.NUM_SCENARIOS
HOUR_MS = 3_600_000


def _dependent_orders(rng, n_starts: int, n_assets: int, n_sets: int, phi: float, mean: float):
  """[G * A, D] improvements: mean + a shock shared by each start time + idiosyncratic noise.

  The shock is AR(1) across neighbouring starts (lag-1 correlation phi, unit variance); the noise
  has unit variance. Each of the D columns is an independent data set; rows are start-major.
  """
  shock_GxD = np.empty((n_starts, n_sets))
  shock_GxD[0] = rng.standard_normal(n_sets)
  innovation_GxD = np.sqrt(1.0 - phi**2) * rng.standard_normal((n_starts, n_sets))
  for t in range(1, n_starts):
    shock_GxD[t] = phi * shock_GxD[t - 1] + innovation_GxD[t]
  noise_GxAxD = rng.standard_normal((n_starts, n_assets, n_sets))
  return (mean + shock_GxD[:, None, :] + noise_GxAxD).reshape(n_starts * n_assets, n_sets)


def _coverage(ci: dict, truth: float) -> float:
  return float(np.mean((ci["ci_lo"] <= truth) & (truth <= ci["ci_hi"])))


# ----------------------------------------------------------------------------- coverage


def test_block_bootstrap_covers_the_mean_of_dependent_orders_and_iid_does_not():
  # 1000 independent data sets, one per column, each 400 start times x 4 assets.
  rng = np.random.default_rng(0)
  g, a = 400, 4
  x_BxD = _dependent_orders(rng, g, a, 1000, phi=0.3, mean=1.0)
  origin_B = np.repeat(1_700_000_000_000 + HOUR_MS * np.arange(g), a)
  perm_B = rng.permutation(g * a)  # row order must not matter, only the start times
  group_B, n_groups = stats_lib.start_groups(origin_B[perm_B])
  x_BxD = x_BxD[perm_B]
  block = stats_lib.cluster_interval(
    x_BxD, group_B, block_length=10, n_boot=1000, seed=1, level=0.95
  )
  iid = stats_lib.cluster_interval(x_BxD, None, block_length=1, n_boot=1000, seed=1, level=0.95)
  starts = stats_lib.cluster_interval(
    x_BxD, group_B, block_length=1, n_boot=1000, seed=1, level=0.95
  )
  assert n_groups == g and block["n_clusters"] == g and block["n_blocks"] == 40
  assert 0.90 <= _coverage(block, 1.0) <= 0.99  # 0.94 with this seed
  assert _coverage(iid, 1.0) < 0.85  # 0.64
  # Clusters without blocks miss the serial correlation of neighbouring starts (0.87).
  assert _coverage(starts, 1.0) < _coverage(block, 1.0) - 0.03
  # The shared, serially correlated shock dominates the variance of the mean.
  width = lambda ci: np.median(ci["ci_hi"] - ci["ci_lo"])  # noqa: E731
  assert width(block) > 1.6 * width(iid)


# ----------------------------------------------------------------------------- exact identities


def test_one_order_per_group_and_unit_blocks_is_the_plain_bootstrap():
  x_BxM = np.random.default_rng(1).standard_normal((50, 4))
  boot = stats_lib.block_bootstrap_means(x_BxM, np.arange(50), block_length=1, n_boot=300, seed=7)
  idx_RxB = np.random.default_rng(7).integers(0, 50, size=(300, 50))
  np.testing.assert_allclose(boot, x_BxM[idx_RxB].mean(1), rtol=1e-12, atol=1e-12)
  no_groups = stats_lib.block_bootstrap_means(x_BxM, None, block_length=1, n_boot=300, seed=7)
  np.testing.assert_array_equal(no_groups, boot)


def test_bootstrap_means_centre_on_the_sample_mean():
  rng = np.random.default_rng(2)
  x_BxM = rng.standard_normal((120, 3)) + 5.0
  group_B = np.repeat(np.arange(40), 3)
  boot = stats_lib.block_bootstrap_means(x_BxM, group_B, block_length=4, n_boot=4000, seed=0)
  assert boot.shape == (4000, 3) and boot.dtype == np.float64
  standard_error = boot.std(0) / np.sqrt(4000)
  assert np.all(np.abs(boot.mean(0) - x_BxM.mean(0)) < 4 * standard_error)


def test_blocks_wrap_circularly_and_weigh_groups_by_their_orders():
  # Start groups of 1, 1 and 2 orders; blocks of 2 are {0, 1}, {1, 2} and, wrapping, {2, 0}.
  x_B = np.array([0.0, 10.0, 100.0, 300.0])
  group_B = np.array([0, 1, 2, 2])
  block_sum_count = [(10.0, 2), (410.0, 3), (400.0, 3)]
  possible = {
    round((si + sj) / (ci + cj), 9) for si, ci in block_sum_count for sj, cj in block_sum_count
  }
  boot = stats_lib.block_bootstrap_means(x_B[:, None], group_B, block_length=2, n_boot=500, seed=0)
  assert set(np.round(boot[:, 0], 9)) == possible


def test_chunking_leaves_the_resamples_unchanged():
  rng = np.random.default_rng(3)
  x_BxM = rng.standard_normal((90, 5))
  group_B = rng.integers(0, 30, size=90)
  kw = dict(block_length=3, n_boot=64, seed=11)
  whole = stats_lib.block_bootstrap_means(x_BxM, group_B, **kw)
  row_by_row = stats_lib.block_bootstrap_means(x_BxM, group_B, max_cells=1, **kw)
  np.testing.assert_allclose(row_by_row, whole, rtol=1e-12, atol=1e-12)


def test_bootstrap_ratios_are_means_over_valid_orders_of_each_resample():
  rng = np.random.default_rng(4)
  x_BxM = rng.standard_normal((60, 3))
  valid_BxM = rng.uniform(size=(60, 3)) > 0.3
  group_B = rng.integers(0, 20, size=60)
  kw = dict(block_length=2, n_boot=40, seed=5)
  ratio = stats_lib.block_bootstrap_ratios(
    np.where(valid_BxM, x_BxM, 0.0), valid_BxM, group_B, **kw
  )
  # The same resamples, taken apart: the mean of the values and of the validity flags.
  boot = stats_lib.block_bootstrap_means(np.where(valid_BxM, x_BxM, 0.0), group_B, **kw)
  share = stats_lib.block_bootstrap_means(valid_BxM.astype(float), group_B, **kw)
  np.testing.assert_allclose(ratio, boot / share, rtol=1e-12)
  assert not np.allclose(ratio, boot)  # the invalid orders are left out, not counted as zeros
  with pytest.raises(ValueError, match="must match"):
    stats_lib.block_bootstrap_ratios(x_BxM, x_BxM[:, :2], group_B, **kw)


@pytest.mark.parametrize("block_length, n_blocks", [(1, 10), (3, 4), (5, 2), (9, 2)])
def test_counts_of_clusters_and_blocks(block_length, n_blocks):
  origin_B = np.repeat(np.arange(10)[::-1] * HOUR_MS, 3)  # 10 start times, latest first
  group_B, g = stats_lib.start_groups(origin_B)
  assert g == 10 and group_B.dtype == np.int64 and group_B[0] == 9 and group_B[-1] == 0
  ci = stats_lib.cluster_interval(
    np.ones((30, 2)), group_B, block_length=block_length, n_boot=20, seed=0, level=0.9
  )
  assert (ci["n_clusters"], ci["n_blocks"]) == (10, n_blocks)
  np.testing.assert_allclose(ci["ci_lo"], 1.0)
  np.testing.assert_allclose(ci["ci_hi"], 1.0)


def test_paired_difference_of_identical_arrays_is_exactly_zero():
  a_BxKxS = np.random.default_rng(4).standard_normal((60, K, S)) * 30.0
  group_B = np.repeat(np.arange(20), 3)
  d = stats_lib.paired_difference(a_BxKxS, a_BxKxS.copy(), group_B, block_length=4)
  for key in ("mean", "ci_lo", "ci_hi"):
    np.testing.assert_array_equal(d[key], np.zeros((K, S)))
  assert (d["n"], d["n_clusters"], d["n_blocks"]) == (60, 20, 5)


def test_summary_reports_tracking_error_and_cluster_counts():
  rng = np.random.default_rng(5)
  imp_BxKxS = rng.standard_normal((90, K, S)) * 5.0 + 2.0
  early = rng.random((90, K, S)) < 0.5
  group_B, _ = stats_lib.start_groups(np.repeat(np.arange(30) * HOUR_MS, 3))
  kw = dict(block_length=5, n_boot=200, seed=3, level=0.9)
  st_, frame = stats_lib.summarize_improvement(imp_BxKxS, early, group_B, **kw)
  np.testing.assert_allclose(st_["mad_bps"], np.abs(imp_BxKxS).mean(0))
  # Deviation from 0, not from the mean: rmse^2 = variance + mean^2.
  np.testing.assert_allclose(st_["rmse_bps"] ** 2, imp_BxKxS.var(0) + imp_BxKxS.mean(0) ** 2)
  assert type(st_["n_clusters"]) is int and (st_["n_clusters"], st_["n_blocks"]) == (30, 6)
  ci = stats_lib.cluster_interval(imp_BxKxS.reshape(90, -1), group_B, **kw)
  np.testing.assert_array_equal(st_["ci_lo"], ci["ci_lo"].reshape(K, S))
  assert (
    frame["n_clusters"].to_list() == [30] * K * S and frame["n_blocks"].to_list() == [6] * K * S
  )
  assert {"mad_bps", "rmse_bps"} <= set(frame.columns)


def test_bad_inputs_raise():
  x_BxM = np.zeros((6, 2))
  kw = dict(n_boot=5, seed=0)
  with pytest.raises(ValueError, match="block_length=3"):
    stats_lib.block_bootstrap_means(x_BxM, np.repeat(np.arange(3), 2), block_length=3, **kw)
  with pytest.raises(ValueError, match="block_length=0"):
    stats_lib.block_bootstrap_means(x_BxM, None, block_length=0, **kw)
  with pytest.raises(ValueError, match="group_B"):
    stats_lib.block_bootstrap_means(x_BxM, np.arange(5), block_length=1, **kw)
  with pytest.raises(ValueError, match="group_B"):
    stats_lib.block_bootstrap_means(x_BxM, np.zeros(6), block_length=1, **kw)
  with pytest.raises(ValueError, match="x_BxM"):
    stats_lib.block_bootstrap_means(np.zeros(6), None, block_length=1, **kw)
  with pytest.raises(ValueError, match="origin_B"):
    stats_lib.start_groups(np.zeros((2, 3)))
  with pytest.raises(ValueError, match="level=95"):
    stats_lib.cluster_interval(x_BxM, None, block_length=1, level=95, **kw)


# ----------------------------------------------------------------------------- properties


@hypothesis.settings(max_examples=40, deadline=None)
@hypothesis.given(st.data())
def test_resamples_are_weighted_means_invariant_to_labels_and_shift_equivariant(data):
  b = data.draw(st.integers(2, 30))
  labels_B = data.draw(hnp.arrays(np.int64, b, elements=st.integers(0, 8)))
  g = np.unique(labels_B).size
  block_length = data.draw(st.integers(1, max(1, g - 1)))
  x_BxM = data.draw(hnp.arrays(np.float64, (b, 2), elements=st.floats(-1e3, 1e3)))
  shift = data.draw(st.floats(-1e3, 1e3))
  kw = dict(block_length=block_length, n_boot=50, seed=data.draw(st.integers(0, 2**32 - 1)))
  boot = stats_lib.block_bootstrap_means(x_BxM, labels_B, **kw)
  assert boot.shape == (50, 2)
  assert np.all(boot >= x_BxM.min(0) - 1e-9) and np.all(boot <= x_BxM.max(0) + 1e-9)
  np.testing.assert_allclose(
    stats_lib.block_bootstrap_means(x_BxM + shift, labels_B, **kw), boot + shift, atol=1e-8
  )
  # Only the order of the labels matters: gaps and offsets leave every resample as it was.
  np.testing.assert_array_equal(
    stats_lib.block_bootstrap_means(x_BxM, 3 * labels_B + 100, **kw), boot
  )
  # Shuffling the rows together with their labels changes nothing but rounding.
  perm_B = data.draw(st.permutations(range(b)))
  np.testing.assert_allclose(
    stats_lib.block_bootstrap_means(x_BxM[perm_B], labels_B[perm_B], **kw), boot, atol=1e-9
  )
