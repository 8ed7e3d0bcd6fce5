"""The backtest over an order file: outputs, costs on every child, and bad rows named or rejected."""

import os

import numpy as np
import polars as pl
import pytest

from lemjax import backtest
from lemjax import evaluate as evaluate_lib
from lemjax import experiment

N, L = 4, 16  # the smoke config's horizon and lookback


@pytest.fixture(scope="module")
def run(costs_run):
  config, path = costs_run
  _, _, test_ds, _, _ = experiment.load_data(config)
  store = test_ds.store
  starts = test_ds.origins[::7][:6]
  assets = [
    store.asset_names[a] for a in test_ds.batch(np.arange(0, test_ds.num_windows, 7)[:6])["asset"]
  ]
  return {"path": path, "store": store, "starts": starts, "assets": assets}


def _iso(ms) -> str:
  return str(np.datetime64(int(ms), "ms").astype("datetime64[m]"))


def _good_rows(run) -> list[dict]:
  terms = [
    ("buy", "quantity", "vwap", "1", "0"),
    ("sell", "quantity", "twap", "2", ""),
    ("buy", "notional", "vwap", "4", ""),
    ("sell", "notional", "twap", "3", "0.3"),
    ("buy", "quantity", "twap", "2", ""),
    ("sell", "quantity", "vwap", "1", ""),
  ]
  rows = []
  for i, ((side, target, bench, m, cap), start, asset) in enumerate(
    zip(terms, run["starts"], run["assets"])
  ):
    rows.append(
      {
        "id": f"o{i}",
        "asset": asset,
        "side": side,
        "target": target,
        "size": "50" if target == "quantity" else "5000",
        "start": _iso(start),
        "min_bars": m,
        "max_bars": str(N) if i == 0 else "",
        "r_min": "0.0",
        "r_max": "1.0",
        "benchmark": bench,
        "participation_cap": cap if cap != "0" else "",
      }
    )
  return rows


def _write(tmp_path, rows, name="orders.csv") -> str:
  path = str(tmp_path / name)
  pl.DataFrame(rows).write_csv(path)
  return path


def test_backtest_writes_fills_results_and_report(run, tmp_path):
  path = _write(tmp_path, _good_rows(run))
  out = backtest.run_backtest(run["path"], path, out=str(tmp_path / "out"))
  assert out["orders"] == 6 and out["rejected"] == 0
  results = pl.read_csv(os.path.join(out["out"], "results.csv"))
  strategies = {"LEM", *evaluate_lib.CAUSAL_BASELINES, "best_causal", "oracle"}
  assert set(results["strategy"]) == strategies and results.height == 6 * len(strategies)
  assert np.isfinite(results["net_improvement_bps"].to_numpy()).all()
  gap = results["gross_improvement_bps"] - results["net_improvement_bps"] - results["cost_bps"]
  assert np.all(results["cost_bps"].to_numpy() > 0) and np.allclose(gap.to_numpy(), 0, atol=1e-3)
  fills = pl.read_parquet(os.path.join(out["out"], "fills.parquet"))
  csv = pl.read_csv(os.path.join(out["out"], "fills.csv"))
  assert csv.columns == fills.columns and csv.height == fills.height > 0
  total = fills.group_by(["order", "strategy"]).agg(pl.col("child_fraction").sum())
  np.testing.assert_allclose(total["child_fraction"].to_numpy(), 1.0, atol=1e-5)
  buys = fills.filter(pl.col("order").is_in(["o0", "o2", "o4"]))
  assert np.all(buys["fill_price"].to_numpy() > buys["market_price"].to_numpy())
  sells = fills.filter(pl.col("order").is_in(["o1", "o3", "o5"]))
  assert np.all(sells["fill_price"].to_numpy() < sells["market_price"].to_numpy())
  with open(out["report"]) as f:
    text = f.read()
  assert "6 run, 0 rejected" in text and "| LEM |" in text and "by order size" in text


BAD = [
  ("asset", "NOPE", "'NOPE' is not in the data"),
  ("side", "hold", "'hold' is not one of"),
  ("target", "shares", "'shares' is not one of"),
  ("start", "2099-01-01T00:00", "leaves fewer than N=4 bars"),
  ("start", "1990-01-01T00:00", "bars of history"),
  ("max_bars", "2", "2 != N=4"),
  ("r_min", "", "is not a number"),
  ("r_max", "0.1", "r_max \\* n_ahead < 1"),
  ("size", "1e12", "infeasible"),
  ("min_bars", "9", "must lie in \\[1, N=4\\]"),
]


@pytest.mark.parametrize("column, value, message", BAD)
def test_a_bad_row_raises_naming_row_and_column(run, tmp_path, column, value, message):
  rows = _good_rows(run)
  rows[2][column] = value
  path = _write(tmp_path, rows)
  with pytest.raises(ValueError, match=rf"row 3 \(id 'o2'\), column {column}.*{message}"):
    backtest.run_backtest(run["path"], path, out=str(tmp_path / "out"))


def test_skip_bad_writes_every_bad_row_to_rejected_csv(run, tmp_path):
  rows = _good_rows(run)
  for i, (column, value, _) in enumerate(BAD[:5]):
    bad = dict(rows[i % len(rows)], id=f"bad{i}")
    bad[column] = value
    rows.append(bad)
  rows.append(dict(rows[0]))  # a duplicate id
  path = _write(tmp_path, rows)
  out = backtest.run_backtest(run["path"], path, skip_bad=True, out=str(tmp_path / "out"))
  assert out["orders"] == 6 and out["rejected"] == 6
  rejected = pl.read_csv(os.path.join(out["out"], "rejected.csv"))
  assert rejected["column"].to_list() == ["asset", "side", "target", "start", "start", "id"]
  assert rejected["row"].to_list() == [7, 8, 9, 10, 11, 12]


def test_missing_column_and_cli_exit_codes(run, tmp_path, capsys):
  rows = [{k: v for k, v in r.items() if k != "r_max"} for r in _good_rows(run)]
  path = _write(tmp_path, rows)
  with pytest.raises(ValueError, match=r"lacks the column\(s\) \['r_max'\]"):
    backtest.run_backtest(run["path"], path)
  assert backtest.main(["--workdir", run["path"], "--orders", path]) == 1
  assert "error: order file" in capsys.readouterr().err
  good = _write(tmp_path, _good_rows(run), "good.csv")
  assert (
    backtest.main(["--workdir", run["path"], "--orders", good, "--out", str(tmp_path / "o")]) == 0
  )
