"""Tests for lemjax/online/replay.py: the replay CLI's numbers equal the evaluation's accounting."""

import jax.numpy as jnp
import numpy as np
import polars as pl

from lemjax import objectives
from lemjax import scenarios
from lemjax.data import tables
from lemjax.data import windows
from lemjax.online import replay

from .common import HOUR
from .common import T0S


def test_cli_matches_objectives_on_the_window(run, policy, tmp_path, capsys):
  frame = run["frame"]
  kline = pl.DataFrame(
    {
      "open_time": frame["time"],
      "open": frame["open"],
      "high": frame["high"],
      "low": frame["low"],
      "close": frame["close"],
      "volume": frame["volume"],
      "close_time": frame["time"] + HOUR - 1,
      "quote_volume": frame["notional"],
      "count": 1,
      "taker_buy_volume": 0.0,
      "taker_buy_quote_volume": 0.0,
      "ignore": 0,
    }
  )
  path = tmp_path / "SYN0-1h.csv"
  kline.write_csv(path)
  table = replay.load_bars(str(path), HOUR)
  t0 = int(T0S[1])
  result = replay.main(
    [
      "--workdir",
      run["workdir"],
      "--bars",
      str(path),
      "--side",
      "sell",
      "--notional",
      "5000",
      "--benchmark",
      "twap",
      "--min-bars",
      "2",
      "--r-max",
      "0.5",
      "--start",
      tables.ms_to_iso(frame["time"][t0]),
    ]
  )
  printed = capsys.readouterr().out
  # The evaluation's numbers for this order: batched model on the data layer's window, objectives.
  store = windows.BarStore.build({"SYN0": table}, HOUR, policy.volume_window_ms)
  batch = windows.WindowDataset(
    store, np.zeros(1), np.array([t0]), policy.lookback, policy.n_ahead
  ).batch(np.zeros(T0S.size, np.int64))  # compiled size
  alloc = run["forward"](
    {"params": policy.params},
    batch["inputs"],
    np.zeros(T0S.size, np.float32),
    np.full(T0S.size, 0.5, np.float32),
    batch["prices"],
    batch["volumes"],
  )
  summary = objectives.execution_summary(
    alloc, jnp.asarray(batch["prices"]), jnp.asarray(batch["volumes"])
  )
  sc, arrival = scenarios.scenario_index("sell", "twap", "notional"), table["close"][t0 - 1]
  final = result["final"]
  np.testing.assert_allclose(final["price"], float(summary["price"][0, 1, sc]) * arrival, rtol=1e-6)
  np.testing.assert_allclose(
    final["benchmark"], float(summary["benchmark"][0, 1, sc]) * arrival, rtol=1e-6
  )
  np.testing.assert_allclose(
    final["improvement_bps"], float(summary["improvement_bps"][0, 1, sc]), atol=1e-2
  )
  np.testing.assert_allclose(
    result["running"]["improvement_bps"], final["improvement_bps"], atol=1e-2
  )
  assert f"{final['improvement_bps']:+.4f} bps" in printed and "achieved price" in printed
  np.testing.assert_allclose(sum(r["child"] for r in result["schedule"]), 5000.0, rtol=1e-5)
