"""Head health, regimes and the null-test verdict (the pure parts; the leak test is in test_null_test)."""

import numpy as np
import polars as pl
import pytest
import scipy.stats

from lemjax import diagnostics
from lemjax import scenarios

N = 4
K = N + 1
S = scenarios.NUM_SCENARIOS


def test_holm_rejects_in_step_down_order():
  p = np.array([0.001, 0.04, 0.012, 0.5])
  # Sorted: 0.001 <= 0.05/4, 0.012 <= 0.05/3, 0.04 > 0.05/2: stop.
  np.testing.assert_array_equal(diagnostics.holm_reject(p, 0.05), [True, False, True, False])
  assert not diagnostics.holm_reject(np.full(96, 0.02), 0.05).any()  # 96 chance misses
  assert diagnostics.holm_reject(np.full(3, 1e-6), 0.05).all()


def _orders(rng, n_groups=120, per_group=4):
  group_B = np.repeat(np.arange(n_groups), per_group)
  shock = rng.normal(0, 5, n_groups)[group_B]
  return group_B, shock


def test_head_health_flags_collapse_and_monotonicity_break():
  rng = np.random.default_rng(0)
  group_B, shock = _orders(rng)
  b = group_B.size
  imp = 10.0 + shock[:, None, None] + rng.normal(0, 3, (b, K, S))
  imp[:, 1, 0] -= 8.0  # head 1 (min period 2) of buy/vwap/quantity lags
  early = rng.random((b, K, S)) < 0.5
  early[:, 1, 0] = False  # ... and never ends early
  reference = np.full((K, S), 0.45)
  frame = diagnostics.head_health(
    imp, early, reference, group_B, block_length=3, n_boot=400, seed=0
  )
  assert frame.height == N * S
  flagged = frame.filter(frame["collapsed"])
  assert flagged["head"].to_list() == [1] and flagged["scenario"].to_list() == ["buy/vwap/quantity"]
  broken = frame.filter(frame["monotonicity_break"])
  assert broken["head"].to_list() == [1] and broken["scenario"].to_list() == ["buy/vwap/quantity"]
  row = frame.filter((frame["head"] == 0) & (frame["scenario"] == "buy/vwap/quantity"))
  assert row["minus_next_bps"][0] == pytest.approx(imp[:, 0, 0].mean() - imp[:, 1, 0].mean())
  assert np.isnan(frame.filter(frame["head"] == N - 1)["minus_next_bps"].to_numpy()).all()


def test_regime_terciles_from_reference_orders():
  edges = diagnostics.tercile_edges(np.arange(1.0, 10.0))
  np.testing.assert_allclose(edges, [11 / 3, 19 / 3])
  np.testing.assert_array_equal(diagnostics.regime_of([1.0, 5.0, 9.0], edges), [0, 1, 2])
  with pytest.raises(ValueError, match="at least 3"):
    diagnostics.tercile_edges([1.0, np.nan])


def _paired(mean, half_width):
  return {
    "mean": np.full((K, S), mean),
    "ci_lo": np.full((K, S), mean - half_width),
    "ci_hi": np.full((K, S), mean + half_width),
    "n_clusters": 50,
  }


def _lem(mean, half_width):
  return {
    "mean_bps": np.full((K, S), mean),
    "ci_lo": np.full((K, S), mean - half_width),
    "ci_hi": np.full((K, S), mean + half_width),
  }


def test_null_verdict_passes_noise_and_fails_a_gain():
  ok = diagnostics.null_test_verdict(_paired(0.1, 1.0), _lem(-0.2, 1.0), N)
  assert ok["passed"] and len(ok["rows"]) == K * S and len(ok["fixed_rows"]) == S
  gain = _paired(0.1, 1.0)
  gain["mean"][0, 3] = 5.0  # one flexible cell 10 standard errors up
  gain["ci_lo"][0, 3], gain["ci_hi"][0, 3] = 4.0, 6.0
  bad = diagnostics.null_test_verdict(gain, _lem(-0.2, 1.0), N)
  assert not bad["passed"]
  assert [r["scenario"] for r in bad["rows"] if r["significant"]] == [scenarios.scenario_name(3)]
  # A fixed head beating the best causal fixed schedule fails too ...
  fixed_gain = _paired(0.0, 1.0)
  fixed_gain["mean"][N], fixed_gain["ci_lo"][N], fixed_gain["ci_hi"][N] = 6.0, 5.0, 7.0
  assert not diagnostics.null_test_verdict(fixed_gain, _lem(0.0, 1.0), N)["passed"]
  # ... but neither a head significantly *worse* than the rule, nor a fixed head off its benchmark
  # (a notional order beats TWAP by Jensen's inequality) is a leak.
  assert diagnostics.null_test_verdict(_paired(-6.0, 1.0), _lem(0.0, 1.0), N)["passed"]
  assert diagnostics.null_test_verdict(_paired(0.0, 1.0), _lem(6.0, 1.0), N)["passed"]
  text = diagnostics.null_test_markdown(bad)
  assert "FAIL" in text and "Significant rows" in text and "Jensen" in text


def test_training_warning_names_heads_that_collapse_next_to_active_neighbours():
  early = np.zeros((N + 1, 8))
  early[: N - 1, :] = 0.5
  early[1, 2] = 0.01  # neighbours 0 and 2 active: collapsed
  early[0:3, 7] = [0.4, 0.0, 0.0]  # head 1 collapsed (head 0 active), head 2 not (1, 3 idle)
  early[3, 7] = 0.0
  flags = diagnostics.collapsed_against_neighbours(early)
  assert set(zip(*np.nonzero(flags))) == {(1, 2), (1, 7)}
  lines = diagnostics.collapse_warnings(early)
  assert len(lines) == 2 and "head 1 (min period 2) buy/twap/quantity" in lines[0]


def test_break_calibration_predicts_the_breaks_of_heads_without_a_true_gap():
  # Every head draws from the same distribution: each flagged break is chance. Over many
  # replications the flagged count should match break_calibration's expectation, which is
  # four times smaller here than an interval-only rule (no 3 bps tolerance) would predict.
  rng = np.random.default_rng(1)
  flagged, expected = 0, 0.0
  for rep in range(150):
    group_B, shock = _orders(rng, n_groups=160, per_group=3)
    imp = shock[:, None, None] + rng.normal(0, 18.0, (group_B.size, K, S))
    frame = diagnostics.head_health(
      imp, np.zeros_like(imp, bool), np.zeros((K, S)), group_B, block_length=1, n_boot=200, seed=rep
    )
    c = diagnostics.health_counts(frame)
    assert c["tested_pairs"] == (N - 1) * S
    flagged += c["breaks"]
    expected += c["chance_breaks"]
  assert 0.6 * expected <= flagged <= 1.5 * expected
  assert expected > 12.0


def test_holm_keeps_a_clear_break_and_drops_a_marginal_one_among_many_pairs():
  def rows(extra):
    base = [(0.0, -2.0, 2.0, False)] * 60 + [(0.0, 0.0, 0.0, False)] * 10  # 10 identical heads
    data = base + extra
    return pl.DataFrame(
      {
        "minus_next_bps": [m for m, _, _, _ in data],
        "minus_next_lo": [lo for _, lo, _, _ in data],
        "minus_next_hi": [hi for _, _, hi, _ in data],
        "monotonicity_break": [b for _, _, _, b in data],
        "collapsed": [False] * len(data),
      }
    )

  clear = diagnostics.health_counts(rows([(-20.0, -25.0, -15.0, True)]))
  marginal = diagnostics.health_counts(rows([(-3.5, -6.9, -0.1, True)]))
  assert clear["tested_pairs"] == marginal["tested_pairs"] == 61
  assert (clear["breaks"], clear["holm_breaks"]) == (1, 1)
  assert (marginal["breaks"], marginal["holm_breaks"]) == (1, 0)
  # 60 null pairs with se ~1.02: the 3 bps tolerance binds, probability Phi(-3 / se) each; the
  # wide pair (se ~2.55) is flagged only beyond its interval, Phi(-1.96).
  se = 4.0 / (2 * 1.959964)
  assert clear["chance_breaks"] == pytest.approx(
    60 * scipy.stats.norm.cdf(-3.0 / se) + 0.025, rel=1e-3
  )
