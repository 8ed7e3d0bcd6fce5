"""Tests for lemjax/heads.py: serving a min period with a validated head of larger minimum."""

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lemjax import heads
from lemjax import objectives


@settings(max_examples=60, deadline=None)
@given(
  hnp.arrays(
    np.float64,
    hnp.array_shapes(min_dims=2, max_dims=2, min_side=2, max_side=9),
    elements=st.floats(-50, 50) | st.just(np.nan),
  )
)
def test_nested_map_serves_the_best_feasible_head(means_KxS):
  head_map = heads.nested_head_map(means_KxS)
  k, s = means_KxS.shape
  n = k - 1
  assert head_map.shape == (k, s) and (head_map[n] == n).all()
  own = np.arange(n)[:, None]
  assert ((head_map[:n] >= own) & (head_map[:n] < n)).all()
  served = np.nan_to_num(means_KxS, nan=-np.inf)[head_map, np.arange(s)[None, :]]
  # Each flexible min period gets the best of its own and every larger flexible minimum ...
  for kk in range(n):
    np.testing.assert_array_equal(served[kk], np.nan_to_num(means_KxS[kk:n], nan=-np.inf).max(0))
  # ... so the served validation means never rise with the minimum.
  assert (served[1:n] <= served[: n - 1]).all()


def test_nested_map_prefers_own_head_on_ties_and_never_remaps_fixed():
  means = np.array([[5.0, 1.0], [5.0, 3.0], [2.0, 3.0], [99.0, 99.0]])
  head_map = heads.nested_head_map(means)
  np.testing.assert_array_equal(head_map, [[0, 1], [1, 1], [2, 2], [3, 3]])
  with pytest.raises(ValueError, match="val_mean_KxS"):
    heads.nested_head_map(np.zeros(4))


_BOOT = {"block_length": 1, "n_boot": 400, "seed": 0}


@settings(max_examples=40, deadline=None)
@given(
  st.integers(2, 6),
  st.integers(1, 3),
  st.integers(0, 2**31 - 1),
  st.floats(0.0, 3.0),
)
def test_chained_map_keeps_its_own_head_only_on_evidence(n, s, seed, n_se):
  rng = np.random.default_rng(seed)
  b = 40
  score = rng.normal(size=(b, n + 1, s)) * rng.uniform(0.1, 5.0) + rng.normal(size=(1, n + 1, s))
  origin = rng.integers(0, 10, size=b)
  head_map = heads.chained_head_map(score, origin, n_se=n_se, **_BOOT)
  assert (
    head_map.shape == (n + 1, s) and (head_map[n] == n).all() and (head_map[n - 1] == n - 1).all()
  )
  means = score.mean(0)
  for k in range(n - 1):
    nxt = head_map[k + 1]
    assert ((head_map[k] == k) | (head_map[k] == nxt)).all()
    served_k, served_next = means[head_map[k], np.arange(s)], means[nxt, np.arange(s)]
    # A smaller minimum departs from the larger one's head only for a higher validation mean.
    assert (served_k >= served_next).all()
    assert (served_k[head_map[k] == k] > served_next[head_map[k] == k]).all()
  heads.check_head_map(head_map, n + 1, s)


def test_chained_map_needs_a_lead_beyond_the_start_groups_noise():
  """A lead that is clear over independent orders but rides on two shared market moves is noise."""
  rng = np.random.default_rng(0)
  b, n = 200, 3
  score = np.zeros((b, n + 1, 1))
  origin = np.repeat([0, 1], b // 2)  # two start times
  shock = np.where(origin == 0, 8.0, -6.0)  # head 0's edge over head 1 differs by start time
  score[:, 0, 0] = shock + 0.1 * rng.standard_normal(b)
  score[:, 1, 0] = 0.0
  score[:, 2, 0] = -5.0 + 0.1 * rng.standard_normal(b)
  independent = heads.chained_head_map(score, np.arange(b), **_BOOT)
  grouped = heads.chained_head_map(score, origin, **_BOOT)
  # Head 1 beats head 2 by 5 bps in every order: kept either way.
  assert independent[1, 0] == 1 and grouped[1, 0] == 1
  # Head 0's +1 bp mean lead over head 1 is 70 standard errors over orders, under one over groups.
  assert independent[0, 0] == 0 and grouped[0, 0] == 1
  # The best-mean rule takes head 0 regardless.
  assert heads.nested_head_map(score.mean(0))[0, 0] == 0
  # A NaN score leaves that order out of the comparison instead of poisoning it.
  score[0, 1, 0] = np.nan
  assert heads.chained_head_map(score, np.arange(b), **_BOOT)[1, 0] == 1
  with pytest.raises(ValueError, match="score_BxKxS"):
    heads.chained_head_map(score[:, :, 0], origin, **_BOOT)
  with pytest.raises(ValueError, match="group_B"):
    heads.chained_head_map(score, origin[:-1], **_BOOT)


def test_serve_takes_the_mapped_heads_schedule_and_stays_feasible():
  rng = np.random.default_rng(0)
  b, n, s = 3, 4, 2
  alloc = rng.dirichlet(np.ones(n), size=(b, n + 1, s)).transpose(0, 3, 1, 2)
  head_map = np.array([[2, 0], [1, 3], [3, 2], [3, 3], [4, 4]])
  out = heads.serve(alloc, head_map)
  for k in range(n + 1):
    for sc in range(s):
      np.testing.assert_array_equal(out[:, :, k, sc], alloc[:, :, head_map[k, sc], sc])
  np.testing.assert_allclose(out.sum(1), 1.0)
  np.testing.assert_array_equal(
    heads.serve(alloc, np.repeat(np.arange(n + 1)[:, None], s, 1)), alloc
  )
  # A head that would end before its slot's minimum, or the fixed head remapped, is refused.
  for bad in ([[0, 0], [0, 1], [2, 2], [3, 3], [4, 4]], [[0, 0], [1, 1], [2, 2], [3, 3], [3, 4]]):
    with pytest.raises(ValueError, match="head map entry"):
      heads.serve(alloc, np.array(bad))


def test_serving_a_larger_minimum_keeps_the_slots_scoring():
  """A schedule scored in the slot of a smaller minimum scores as in its own slot (same end)."""
  rng = np.random.default_rng(1)
  b, n, s = 16, 5, 8
  alloc = rng.dirichlet(np.ones(n), size=(b, n + 1, s)).transpose(0, 3, 1, 2).astype(np.float32)
  alloc[:, :, 2] = 0.0
  alloc[:, :3, 2] = 1.0 / 3.0  # head 2 (minimum 3) ends after bar 3
  prices = (1 + 0.01 * rng.standard_normal((b, n))).astype(np.float32)
  volumes = rng.uniform(0.5, 2.0, (b, n)).astype(np.float32)
  head_map = np.repeat(np.arange(n + 1)[:, None], s, 1)
  head_map[0] = 2
  own = np.asarray(objectives.improvement_bps(alloc, prices, volumes))
  served = np.asarray(objectives.improvement_bps(heads.serve(alloc, head_map), prices, volumes))
  np.testing.assert_allclose(served[:, 0], own[:, 2], atol=1e-4)
  np.testing.assert_allclose(served[:, 1:], own[:, 1:], atol=1e-6)


def test_head_map_file_roundtrip_and_checkpoint_guard(tmp_path):
  k, s = 5, 8
  assert heads.load_head_map(str(tmp_path), k, s, 10) is None
  head_map = heads.nested_head_map(np.random.default_rng(2).normal(size=(k, s)))
  heads.save_head_map(str(tmp_path), head_map, np.zeros((k, s)), 64, step=10)
  np.testing.assert_array_equal(heads.load_head_map(str(tmp_path), k, s, 10), head_map)
  assert heads.load_head_map(str(tmp_path), k, s, 11) is None  # chosen for another checkpoint
  with pytest.raises(ValueError, match="head map must be"):
    heads.load_head_map(str(tmp_path), k + 1, s, 10)
  saved = json.loads((tmp_path / heads.HEAD_MAP_FILE).read_text())
  saved["head_map_KxS"][0][0] = 4  # the fixed head serving a flexible minimum
  (tmp_path / heads.HEAD_MAP_FILE).write_text(json.dumps(saved))
  with pytest.raises(ValueError, match="head_map.json: head map entry"):
    heads.load_head_map(str(tmp_path), k, s, 10)
