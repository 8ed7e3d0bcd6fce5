"""Tests for lemjax/study.py: paired comparison of candidates on the same orders."""

import json

import numpy as np
import polars as pl
import pytest

from lemjax import study

N, S = 4, 8  # heads 0..N: min periods 1..N, then the fixed head (min period N)


def _write_report(path, imp_BxKxS_by_strategy, origin_B):
  """A minimal orders.parquet: one row per strategy x order x head x scenario."""
  rows = []
  for name, imp in imp_BxKxS_by_strategy.items():
    b, k, s = imp.shape
    order = np.repeat(np.arange(b), k * s)
    head = np.tile(np.repeat(np.arange(k), s), b)
    rows.append(
      pl.DataFrame(
        {
          "strategy": name,
          "order": order.astype(np.int32),
          "origin": pl.Series(np.asarray(origin_B)[order]).cast(pl.Datetime("ms", "UTC")),
          "head": head.astype(np.int16),
          "min_period": np.minimum(head + 1, k - 1).astype(np.int16),
          "fixed_duration": head == k - 1,
          "improvement_bps": imp.ravel().astype(np.float32),
        }
      )
    )
  path.mkdir(parents=True, exist_ok=True)
  pl.concat(rows).write_parquet(path / study.ORDERS_FILE)
  return str(path)


def _market(seed, b=60):
  rng = np.random.default_rng(seed)
  origin = np.repeat(np.arange(b // 3) * 3_600_000, 3)  # three orders per start time
  lem = rng.normal(5.0, 10.0, (b, N + 1, S))
  best = rng.normal(4.0, 10.0, (b, N + 1, S))
  return lem, best, origin


def test_per_order_score_is_lem_minus_best_causal_over_min_periods_below_n(tmp_path):
  lem, best, origin = _market(0)
  other = np.full_like(lem, 1e6)  # another strategy never enters the score
  d = _write_report(tmp_path / "r", {"LEM": lem, "best_causal": best, "oracle": other}, origin)
  scores = study.per_order_scores(d)
  expected = (lem[:, : N - 1] - best[:, : N - 1]).mean(axis=(1, 2))
  assert scores["order"].to_list() == list(range(lem.shape[0]))
  np.testing.assert_allclose(scores["score_bps"].to_numpy(), expected, atol=1e-5)


def test_compare_pairs_orders_and_averages_seeds(tmp_path):
  lem, best, origin = _market(1)
  rng = np.random.default_rng(2)
  shift_B = rng.normal(0.0, 3.0, lem.shape[0])
  ref = [
    _write_report(tmp_path / f"ref{i}", {"LEM": lem + i, "best_causal": best}, origin)
    for i in (0, 2)
  ]
  cand = [
    _write_report(
      tmp_path / f"cand{i}",
      {"LEM": lem + 1 + shift_B[:, None, None] * i, "best_causal": best},
      origin,
    )
    for i in (0, 2)
  ]
  out = study.compare(cand, ref, block_length=2, n_boot=300, seed=0)
  base = (lem[:, : N - 1] - best[:, : N - 1]).mean(axis=(1, 2))
  # Seeds average per order: reference base + 1, candidate base + 1 + shift.
  np.testing.assert_allclose(out["reference"]["per_run"], [base.mean(), base.mean() + 2], atol=1e-4)
  np.testing.assert_allclose(out["difference_bps"], shift_B.mean(), atol=1e-4)
  assert out["ci_lo"] < out["difference_bps"] < out["ci_hi"]
  assert out["n"] == lem.shape[0] and out["n_clusters"] == lem.shape[0] // 3
  # A constant per-order gap has a zero-width interval: the orders' shared moves cancel.
  same = study.compare(ref[1:], ref[:1], block_length=2, n_boot=300, seed=0)
  assert same["difference_bps"] == pytest.approx(2.0, abs=1e-4)
  assert same["ci_hi"] - same["ci_lo"] < 1e-4
  text = study.markdown(out)
  assert "candidate minus reference" in text and f"{out['difference_bps']:+.2f}" in text
  json_path = tmp_path / "cmp.json"
  study.main(
    [
      f"--candidate={','.join(cand)}",
      f"--reference={','.join(ref)}",
      "--bootstrap=50",
      f"--out={json_path}",
    ]
  )
  assert json.loads(json_path.read_text())["n"] == lem.shape[0]


def test_compare_refuses_reports_of_other_orders_or_missing_rows(tmp_path):
  lem, best, origin = _market(3)
  a = _write_report(tmp_path / "a", {"LEM": lem, "best_causal": best}, origin)
  b = _write_report(tmp_path / "b", {"LEM": lem[:-3], "best_causal": best[:-3]}, origin[:-3])
  with pytest.raises(ValueError, match="did not score the same orders"):
    study.compare([a], [b], n_boot=10)
  c = _write_report(tmp_path / "c", {"LEM": lem}, origin)
  with pytest.raises(ValueError, match="needs LEM and best_causal rows"):
    study.per_order_scores(c)
  with pytest.raises(ValueError, match="does not exist"):
    study.per_order_scores(str(tmp_path / "none"))
  with pytest.raises(ValueError, match="at least one"):
    study.compare([], [a])
