"""Tests for lemjax/compare.py on small fake published tables, stats.csv and orders.parquet files."""

import json
import os
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from experiments import crypto_15m
from lemjax import compare
from lemjax import config as config_lib
from lemjax import scenarios

N = 12
PAPER = Path(__file__).resolve().parents[1] / ".." / "shared" / "paper_tables"
STRATEGY_BASE = {"LEM": 10.0, "best_causal": 20.0, "optional_stopping": 30.0, "uniform": 40.0}


def _write_published(folder: Path) -> None:
  folder.mkdir()
  cols = (
    "Order Type,Min Period,Mean (bps),Std (bps),Median (bps),P5 (bps),P95 (bps),Q25 (bps),Q75 (bps)"
  )
  rows = [
    "TWAP Notional,All,0.93,1,1,1,1,1,1",
    "TWAP Volume,All,1.3,1,1,1,1,1,1",
    "BUY,0,-6.96,1,1,1,1,1,1",
    "BUY,1,-6.96,1,1,1,1,1,1",
    "BUY,6,-5.5,1,1,1,1,1,1",
    "BUY,12,1.13,1,1,1,1,1,1",
    "SELL,0,8.8,1,1,1,1,1,1",
    "SELL,1,8.8,1,1,1,1,1,1",
    "SELL,6,7.0,1,1,1,1,1,1",
    "SELL,12,1.12,1,1,1,1,1,1",
  ]
  (folder / "crypto_results_table_15.0_table1_comprehensive.csv").write_text(
    "\n".join([cols, *rows]) + "\n"
  )
  cols = (
    "Order Type,Strategy,Mean (bps),Std (bps),Median (bps),P5 (bps),P95 (bps),Q25 (bps),Q75 (bps)"
  )
  rows = [
    "BUY,TWAP Volume vs TWAP,-7.96,1,1,1,1,1,1",
    "BUY,VWAP Notional vs VWAP,-7.07,1,1,1,1,1,1",
    "SELL,TWAP Notional vs TWAP,7.42,1,1,1,1,1,1",
    "BUY,VWAP Volume vs VWAP,-5.5,1,1,1,1,1,1",
  ]
  (folder / "crypto_results_table_15.0_table2_min_period_6.csv").write_text(
    "\n".join([cols, *rows]) + "\n"
  )
  rows = [
    "BUY,TWAP Notional vs TWAP,-0.25,1,1,1,1,1,1",
    "SELL,TWAP Notional vs TWAP,-0.25,1,1,1,1,1,1",
  ]
  (folder / "crypto_results_table_15.0_table_min_period_12.csv").write_text(
    "\n".join([cols, *rows]) + "\n"
  )


def _fake_mean(strategy, side, bench, target, k, shift):
  """A distinct number per cell: strategy base + head + 0.5 (sell) + 0.25 (twap) + 0.125 (notional)."""
  return (
    STRATEGY_BASE[strategy]
    + k
    + 0.5 * (side == "sell")
    + 0.25 * (bench == "twap")
    + 0.125 * (target == "notional")
    + shift
  )


def _write_run(folder: Path, lag: int, shift: float) -> None:
  folder.mkdir(parents=True)
  rows = []
  for strategy in STRATEGY_BASE:
    for k in range(N + 1):
      for side, bench, target in scenarios.SCENARIOS:
        m = _fake_mean(strategy, side, bench, target, k, shift if strategy == "LEM" else 0.0)
        rows.append(
          {
            "strategy": strategy,
            "side": side,
            "benchmark": bench,
            "target": target,
            "head": k,
            "min_period": min(k + 1, N),
            "fixed_duration": k == N,
            "n": 700,
            "mean_bps": m,
            "std_bps": 9.0,
            "ci_lo": m - 1.0,
            "ci_hi": m + 1.0,
            "ended_early": 0.5,
            "n_clusters": 100,
            "n_blocks": 20,
            "mad_bps": 3.0,
            "rmse_bps": 4.0,
          }
        )
  pl.DataFrame(rows).write_csv(folder / "stats.csv")
  data = {"kind": "binance", "interval": "15m", "resample_to": "", "train_start": "2024-12-30"}
  (folder / "config.json").write_text(
    json.dumps(
      {
        "experiment": {"seed": 0},
        "data_source": "Data source: fake",
        "resolved": {"data": data, "model": {"n_ahead": N, "decision_lag": lag}},
      }
    )
  )


def _config(paper_dir):
  config = crypto_15m.get_config()
  config.eval.paper_tables = str(paper_dir)
  config.eval.bootstrap = 50
  return config


def _row(frame, side, bench, target, mp):
  return frame.filter(
    (pl.col("side") == side)
    & (pl.col("benchmark") == bench)
    & (pl.col("target") == target)
    & (pl.col("paper_min_period") == mp)
  ).row(0, named=True)


def test_published_buy_numbers_change_sign_and_sell_numbers_keep_it():
  assert compare.to_our_sign("buy", -6.96) == pytest.approx(6.96)
  assert compare.to_our_sign("sell", 8.8) == pytest.approx(8.8)
  assert compare.to_our_sign("buy", 1.13) == pytest.approx(-1.13)
  with pytest.raises(ValueError, match="side"):
    compare.to_our_sign("BUY", 1.0)


def test_load_published_reads_both_layouts(tmp_path):
  _write_published(tmp_path / "paper")
  pub = compare.load_published(str(tmp_path / "paper"), "crypto_results_table_15.0")
  get = lambda *key: pub.filter(
    (pl.col("side") == key[0])
    & (pl.col("benchmark") == key[1])
    & (pl.col("target") == key[2])
    & (pl.col("min_period") == key[3])
  )
  assert get("buy", "vwap", "quantity", 1)["paper_bps"].to_list() == [6.96]
  assert get("sell", "vwap", "quantity", 1)["paper_bps"].to_list() == [8.8]
  assert get("buy", "twap", "quantity", 6)["paper_bps"].to_list() == [7.96]
  assert get("sell", "twap", "notional", 12)["paper_bps"].to_list() == [-0.25]
  assert get("buy", "vwap", "quantity", 6).height == 1  # table1 and table2 agree: one row
  assert pub.filter(pl.col("min_period") == 0).height == 0  # min period 0 is min period 1
  assert set(pub["side"]) == {"buy", "sell"}  # the pooled TWAP "All" rows are left out


def test_paper_prefix_maps_bar_lengths(tmp_path):
  _write_published(tmp_path / "paper")
  folder = str(tmp_path / "paper")
  assert (
    compare.paper_prefix({"kind": "binance", "interval": "15m"}, folder)
    == "crypto_results_table_15.0"
  )
  assert (
    compare.paper_prefix({"kind": "binance", "interval": "1h", "resample_to": ""}, folder) is None
  )
  assert (
    compare.paper_prefix(config_lib.DataConfig(interval="15m"), folder)
    == "crypto_results_table_15.0"
  )


@pytest.mark.skipif(not PAPER.is_dir(), reason="../shared/paper_tables not present")
def test_the_real_tables_map_to_our_experiments():
  folder = str(PAPER)
  assert (
    compare.paper_prefix({"kind": "binance", "interval": "15m", "resample_to": "90m"}, folder)
    == "crypto_results_table_90.0"
  )
  assert compare.paper_prefix({"kind": "daily", "interval": "1d"}, folder) == "dow_results_table"
  pub = compare.load_published(folder, "crypto_results_table_15.0")
  row = pub.filter(
    (pl.col("side") == "buy")
    & (pl.col("benchmark") == "vwap")
    & (pl.col("target") == "quantity")
    & (pl.col("min_period") == 1)
  )
  assert row["raw_bps"].to_list() == [-6.96] and row["paper_bps"].to_list() == [6.96]


def test_compare_puts_published_causal_leaky_and_baselines_side_by_side(tmp_path):
  _write_published(tmp_path / "paper")
  _write_run(tmp_path / "runs" / "crypto_15m", lag=1, shift=0.0)
  _write_run(tmp_path / "runs" / "crypto_15m_LEAKY", lag=0, shift=2.5)
  out = compare.compare(_config(tmp_path / "paper"), str(tmp_path / "runs" / "crypto_15m_LEAKY"))
  assert out["markdown"] == str(tmp_path / "runs" / "crypto_15m" / "paper_comparison.md")
  frame = pl.read_csv(tmp_path / "runs" / "crypto_15m" / "paper_comparison.csv")
  r = _row(frame, "buy", "vwap", "quantity", 1)
  assert r["paper_bps"] == pytest.approx(6.96)
  assert r["causal_bps"] == pytest.approx(10.0)  # LEM, head 0 (min period 1), buy vwap quantity
  assert r["leaky_bps"] == pytest.approx(12.5)
  assert r["leaky_minus_causal_bps"] == pytest.approx(2.5)
  assert r["best_causal_bps"] == pytest.approx(20.0) and r[
    "optional_stopping_bps"
  ] == pytest.approx(30.0)
  assert (r["causal_ci_lo"], r["causal_ci_hi"]) == pytest.approx((9.0, 11.0))
  r = _row(frame, "sell", "twap", "notional", 12)  # the fixed-duration head, not head 11
  assert r["causal_bps"] == pytest.approx(10.0 + N + 0.5 + 0.25 + 0.125)
  assert r["paper_bps"] == pytest.approx(-0.25)
  r = _row(frame, "sell", "twap", "quantity", 6)
  assert r["causal_bps"] == pytest.approx(10.0 + 5 + 0.5 + 0.25) and r["paper_bps"] is None
  text = (tmp_path / "runs" / "crypto_15m" / "paper_comparison.md").read_text()
  assert text.splitlines()[0].startswith("> **LEAKY")
  assert "+6.96" in text and "not published" in text and "Sign convention" in text


def test_a_missing_causal_run_reads_not_trained(tmp_path):
  _write_published(tmp_path / "paper")
  _write_run(tmp_path / "runs" / "djia_LEAKY", lag=0, shift=2.5)
  out = compare.compare(_config(tmp_path / "paper"), str(tmp_path / "runs" / "djia"))
  r = _row(out["frame"], "buy", "vwap", "quantity", 1)
  assert r["causal_bps"] is None and r["leaky_bps"] == pytest.approx(12.5)
  assert r["best_causal_bps"] == pytest.approx(20.0)  # baselines from the leaky run
  assert "| not trained |" in Path(out["markdown"]).read_text()


def _write_orders(folder: Path, imp_BxM: np.ndarray, heads=(0, N)) -> None:
  b = imp_BxM.shape[0]
  cells = [(k, *sc) for k in heads for sc in scenarios.SCENARIOS]
  rows = {
    "strategy": [],
    "order": [],
    "origin": [],
    "asset": [],
    "head": [],
    "side": [],
    "benchmark": [],
    "target": [],
    "improvement_bps": [],
  }
  for i in range(b):
    for j, (k, side, bench, target) in enumerate(cells):
      for key, value in zip(
        rows,
        (
          "LEM",
          i,
          1_700_000_000_000 + 900_000 * (i // 2),
          f"A{i % 2}",
          k,
          side,
          bench,
          target,
          float(imp_BxM[i, j]),
        ),
      ):
        rows[key].append(value)
  pl.DataFrame(rows).with_columns(pl.col("origin").cast(pl.Datetime("ms", "UTC"))).write_parquet(
    folder / "orders.parquet"
  )


def test_paired_difference_of_the_two_runs(tmp_path):
  rng = np.random.default_rng(0)
  causal = rng.normal(size=(40, 2 * scenarios.NUM_SCENARIOS))
  for name, imp in (("c", causal), ("l", causal + 1.5)):
    (tmp_path / name).mkdir()
    _write_orders(tmp_path / name, imp)
  ecfg = config_lib.EvalConfig(bootstrap=50)
  d = compare.paired_leaky_minus_causal(str(tmp_path / "c"), str(tmp_path / "l"), [0, N], ecfg)
  assert len(d) == 2 * scenarios.NUM_SCENARIOS
  mean, lo, hi = d[(N, "sell", "twap", "notional")]
  assert mean == pytest.approx(1.5) and lo == pytest.approx(1.5) and hi == pytest.approx(1.5)
  _write_orders(tmp_path / "l", np.delete(causal + 1.5, 0, axis=0))  # other orders: no pairing
  assert (
    compare.paired_leaky_minus_causal(str(tmp_path / "c"), str(tmp_path / "l"), [0, N], ecfg)
    is None
  )
  assert os.path.isfile(tmp_path / "c" / "orders.parquet")
