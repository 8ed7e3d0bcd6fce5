"""Tests for lemjax/head_choice.py: the split-half check of where the served heads are chosen."""

import numpy as np
import pytest

from lemjax import head_choice

N, S = 4, 8
K = N + 1
BOOT = {"block_length": 2, "n_boot": 200, "seed": 0}


def _orders(rng, b, origin_lo, origin_hi, head_means):
  origin = np.sort(rng.integers(origin_lo, origin_hi, b))
  imp = np.broadcast_to(np.asarray(head_means, np.float64)[None, :, None], (b, K, S))
  return imp + rng.standard_normal((b, K, S)), origin


def test_maps_come_from_their_samples_and_are_scored_on_the_second_half_only():
  rng = np.random.default_rng(0)
  # V1 (validation, first half) favours head 0 for min period 1; the training orders favour head
  # 1 strongly enough to outweigh V1 when pooled; on the scored half head 0 is 5 bps worse.
  sel, sel_origin = _orders(rng, 400, 0, 1000, [5.0, 0.0, 0.0, 0.0, 0.0])
  tune, _ = _orders(rng, 4000, -(10**6), -1, [0.0, 5.0, 0.0, 0.0, 0.0])
  scored, scored_origin = _orders(rng, 400, 0, 2000, [-5.0, 0.0, 0.0, 0.0, 0.0])
  # Selection orders too close to the split must not count: poison them.
  sel[sel_origin >= 900, 0] = -1000.0
  out = head_choice.split_half(sel, sel_origin, tune, scored, scored_origin, gap=100, **BOOT)
  mid = np.median(scored_origin)
  assert out["v1_orders"] == int((sel_origin < mid - 100).sum())
  assert np.all(out["origin"] >= mid) and out["origin"].size == int((scored_origin >= mid).sum())
  assert np.all(out["today_map"][0] == 0) and np.all(out["candidate_map"][:2] == 1)
  assert np.all(out["today_map"][N] == N) and np.all(out["candidate_map"][N] == N)
  # On V2 today's min period 1 trails the next by 5 bps (flagged in every scenario); the
  # candidate's serves the next head's schedule: +5 bps on one of the N flexible min periods.
  assert (out["today_breaks"], out["candidate_breaks"]) == (S, 0)
  assert out["today_worst"] == pytest.approx(-5.0, abs=0.5)
  gap = out["candidate_B"].mean() - out["today_B"].mean()
  np.testing.assert_allclose(gap, 5.0 / N, atol=0.1)


def test_pool_averages_the_seeds_per_order_and_refuses_different_orders():
  origin = np.repeat(np.arange(50), 2)
  runs = [
    {
      "origin": origin,
      "today_B": np.zeros(100),
      "candidate_B": np.full(100, d),
      "today_breaks": 1,
      "candidate_breaks": 0,
    }
    for d in (1.0, 2.0, 3.0)
  ]
  result = head_choice.pool(runs, block_length=2, n_boot=200)
  assert result["mean"] == pytest.approx(2.0) and result["ci_lo"] == pytest.approx(2.0)
  assert (result["today_breaks"], result["candidate_breaks"], result["start_times"]) == (3, 0, 50)
  runs[1] = {**runs[1], "origin": origin + 1}
  with pytest.raises(ValueError, match="different V2 orders"):
    head_choice.pool(runs)


def test_a_split_leaving_an_empty_half_is_refused():
  rng = np.random.default_rng(1)
  sel, sel_origin = _orders(rng, 10, 0, 10, [0.0] * K)
  scored, scored_origin = _orders(rng, 10, 0, 10, [0.0] * K)
  with pytest.raises(ValueError, match="both halves"):
    head_choice.split_half(sel, sel_origin, sel, scored, scored_origin, gap=100, **BOOT)


def test_command_line_pools_saved_runs_and_requires_a_run_or_a_pool(tmp_path, capsys):
  origin = np.repeat(np.arange(20), 3)
  paths = []
  for i, d in enumerate((0.5, -0.5)):
    paths.append(str(tmp_path / f"run{i}.npz"))
    np.savez(
      paths[-1],
      origin=origin,
      today_B=np.zeros(60),
      candidate_B=np.full(60, d + 1.0),
      today_breaks=i,
      candidate_breaks=0,
    )
  result = head_choice.main([f"--pool={','.join(paths)}"])
  assert result["mean"] == pytest.approx(1.0) and result["today_breaks"] == 1
  assert "+1.000 [+1.000, +1.000] bps; breaks today 1, candidate 0" in capsys.readouterr().out
  with pytest.raises(SystemExit):
    head_choice.main(["--exp=djia_multiday"])
