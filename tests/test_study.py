"""Tests for lemjax/study.py: paired comparison of candidates on the same orders."""

import json
import os

import numpy as np
import polars as pl
import pytest

from lemjax import size_report
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


def _write_run(path, score, buy, sell, minus_next, summary):
  """A run directory with the three report files `run_row` reads and a train_summary.json."""
  rdir = path / "val_report"
  rdir.mkdir(parents=True)
  (rdir / "study_score.json").write_text(
    json.dumps(
      {"mean_bps": score, "ci_lo": score - 1, "ci_hi": score + 1, "n": 90, "n_clusters": 30}
    )
  )
  paired = []
  for baseline, shift in (("best_causal", 0.0), ("uniform", 50.0)):
    for side, v in (("buy", buy), ("sell", sell)):
      for target in ("quantity", "notional"):
        for k in (1, 2):
          val = v + shift + (0 if target == "quantity" and k == 1 else 100)
          paired.append((baseline, side, "vwap", target, k - 1, k, False, val, val - 2, val + 2))
  cols = ["baseline", "side", "benchmark", "target", "head", "min_period", "fixed_duration"]
  cols += ["lem_minus_baseline_bps", "ci_lo", "ci_hi"]
  pl.DataFrame(paired, schema=cols, orient="row").write_csv(rdir / "paired_differences.csv")
  health = pl.DataFrame(
    {
      "min_period": [1, 2, 3, 1, 2, 3],
      "ended_early": [0.6, 0.02, 0.0, 0.5, 0.5, 0.0],
      "reference_early": [0.6, 0.5, 0.0, 0.6, 0.5, 0.0],
      "minus_next_bps": [minus_next, -1.0, float("nan"), -9.0, -9.0, float("nan")],
      "minus_next_lo": [minus_next - 2, -3.0, float("nan"), -11.0, -11.0, float("nan")],
      "minus_next_hi": [minus_next + 2, 1.0, float("nan"), -7.0, -7.0, float("nan")],
      "collapsed": [False, True, False, False, False, False],
      "monotonicity_break": [minus_next < -3, False, False, True, True, False],
      "heads": ["served"] * 3 + ["own"] * 3,
    }
  )
  health.write_csv(rdir / "head_health.csv")
  if summary is not None:
    (path / "train_summary.json").write_text(json.dumps(summary))
  return str(path)


def test_rows_read_each_runs_study_row_and_the_spread_of_seeds(tmp_path, capsys):
  a = _write_run(
    tmp_path / "a", 1.5, 2.0, -3.0, -4.0, {"step": 2000, "best_step": 1500, "wall_s": 512.3}
  )
  b = _write_run(tmp_path / "b", -0.5, 0.5, 1.0, -1.0, None)
  row = study.run_row(a)
  assert row["score_bps"] == 1.5 and (row["n"], row["n_clusters"]) == (90, 30)
  # Min period 1, VWAP, quantity, against best_causal only.
  assert row["buy"] == {"lem_minus_baseline_bps": 2.0, "ci_lo": 0.0, "ci_hi": 4.0}
  assert row["sell"]["lem_minus_baseline_bps"] == -3.0
  # Served rows only; the largest min period is not flexible.
  assert (row["collapsed"], row["breaks"], row["worst_minus_next_bps"]) == (1, 1, -4.0)
  assert row["ended_early"] == pytest.approx(0.31) and row["reference_early"] == pytest.approx(0.55)
  assert (row["best_step"], row["last_step"], row["wall_s"]) == (1500, 2000, 512.3)
  no_summary = study.run_row(b)
  assert (no_summary["breaks"], no_summary["wall_s"]) == (0, None)
  text = study.rows_markdown([row, no_summary])
  assert "+1.50 [+0.50, +2.50]" in text and "1 / 1 / -4.00" in text and "512 s" in text
  assert "| n/a |" in text and "+0.50 ± 1.41 bps (mean ± std)" in text
  out = study.main([f"--rows={a},{b}", f"--out={tmp_path / 'rows.json'}"])
  assert [r["score_bps"] for r in out["rows"]] == [1.5, -0.5]
  assert "Across 2 run(s)" in capsys.readouterr().out
  assert "by_size" not in row and "Study score by order size" not in text
  # With costs on, the study score at each order size, and its spread over runs.
  for run, values in ((a, (-2.0, 3.0)), (b, (-1.0, 1.0))):
    pl.DataFrame(
      {
        "size": [0.001, 0.2],
        "lem_minus_best_causal_bps": values,
        "ci_lo": [v - 1 for v in values],
        "ci_hi": [v + 1 for v in values],
      }
    ).write_csv(os.path.join(run, "val_report", size_report.SCORE_FILE))
  sized = [study.run_row(a), study.run_row(b)]
  assert sized[0]["by_size"][0.2] == {"mean_bps": 3.0, "ci_lo": 2.0, "ci_hi": 4.0}
  text = study.rows_markdown(sized)
  assert "| run | 0.1% | 20% |" in text and "+3.00 [+2.00, +4.00]" in text
  assert "| mean ± std | -1.50 ± 0.71 | +2.00 ± 1.41 |" in text
  with pytest.raises(ValueError, match="study_score.json does not exist"):
    study.run_row(str(tmp_path / "missing"))
  with pytest.raises(SystemExit):
    study.main([f"--candidate={a}"])  # a comparison needs both sides
