"""Replays one order of a trained LEM over a bar file, bar by bar: `python -m lemjax.online.replay --help`.

  python -m lemjax.online.replay --workdir runs/crypto_intraday --bars BTCUSDT_1h.csv.gz \\
      --side buy --quantity 10 --min-bars 4 [--benchmark twap] [--start 2025-07-01T12:00]

Prints the schedule (child order per bar), the achieved price, the benchmark and the
improvement in bps. The final numbers come from lemjax.objectives on the realised schedule,
as in the evaluation report.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import polars as pl

from lemjax import costs as costs_lib
from lemjax import objectives
from lemjax import online
from lemjax import scenarios
from lemjax.data import binance
from lemjax.data import daily
from lemjax.data import resample
from lemjax.data import tables


def load_bars(path: str, step_ms: int) -> pl.DataFrame:
  """The bar table of one file, read by the data layer's loaders, at the model's bar length.

  Args:
    path: a Binance kline file or a daily-bar file (.csv, .csv.gz or .zip).
    step_ms: the policy's bar length; finer kline files are aggregated to it.
  Returns:
    bar table (`tables.BAR_COLUMNS`), sorted, missing bars filled as the data layer does.
  """
  file = Path(path)
  if not file.is_file():
    raise FileNotFoundError(f"--bars {path}: no such file")
  if daily.is_daily_file(file):
    _, table, _ = daily.load_file(file)
    if step_ms != tables.MS_PER_DAY:
      raise ValueError(f"--bars {path} holds daily bars; the model's bars are {step_ms} ms long")
    return table
  table, _ = binance.load_symbol([file], None)
  file_ms = int(np.median(np.diff(table["time"].to_numpy()))) if table.height > 1 else step_ms
  if file_ms != step_ms:
    table, _ = resample.resample(table, file_ms, step_ms)  # raises unless step_ms is a multiple
  return table


def parse_time(text: str) -> int:
  """Epoch ms of an ISO time ("2025-07-01T12:00", UTC) or of an integer epoch-ms string."""
  text = text.strip()
  if text.lstrip("-").isdigit():
    return int(text)
  try:
    return int(np.datetime64(text.replace(" ", "T"), "ms").astype(np.int64))
  except ValueError as err:
    raise ValueError(f"--start {text!r} is not an ISO time like 2025-07-01T12:00 (UTC)") from err


def _origin_row(table: pl.DataFrame, start: str | None, n_ahead: int) -> int:
  """Row of bar t0: the bar opening at --start, else the last order the file can hold."""
  times = table["time"].to_numpy()
  if start is None:
    return times.size - n_ahead
  t = parse_time(start)
  row = int(np.searchsorted(times, t))
  if row >= times.size or times[row] != t:
    raise ValueError(f"--start {start}: no bar opens at {tables.ms_to_iso(t)} in the file")
  if row + n_ahead > times.size:
    raise ValueError(f"--start {start}: the file ends before the order's N={n_ahead} bars")
  return row


def replay(policy: online.Policy, order: online.Order, table: pl.DataFrame, row: int) -> dict:
  """Runs the order from bar `row` of `table` (earlier bars are its history).

  Returns:
    dict with the schedule rows, the step outputs' running numbers and the final summary
    from lemjax.objectives (price, benchmark, improvement_bps, window_end, ended_early).
  """
  names = ("time", "close", "volume", "vwap", "high", "low")
  cols = {c: table[c].to_numpy() for c in names if c in table.columns}
  n = policy.n_ahead
  exe = online.Executor.start(policy, order, {c: v[:row] for c, v in cols.items()})
  frac_N, rows = np.zeros(n), []
  out = exe.status
  for s in range(n):
    child, frac = float(out.child), float(out.fraction)
    frac_N[s] = frac
    bar = {c: v[row + s] for c, v in cols.items()}
    out = exe.on_bar(bar)
    rows.append(
      {
        "bar": s,
        "time": tables.ms_to_iso(bar["time"]),
        "fill_price": float(bar["vwap"]),
        "child": child,
        "fraction": frac,
        "remaining": float(out.remaining),
      }
    )
    if bool(out.done):
      break
  # The evaluation's accounting on the realised schedule (prices and volumes as the data layer scales them).
  arrival = cols["close"][row - 1]
  mean_volume = cols["volume"][row - policy.lookback : row].sum() / policy.lookback
  prices = (cols["vwap"][row : row + n] / arrival).astype(np.float32)[None]
  volumes = (cols["volume"][row : row + n] / mean_volume).astype(np.float32)[None]
  alloc = np.broadcast_to(frac_N.astype(np.float32)[None, :, None, None], (1, n, n + 1, 8))
  fills = None
  if policy.costs.enabled:  # the same costs as the step charged (lemjax/costs.py)
    c = exe.carry
    size_1, sigma_1, spread_1 = (
      jnp.asarray(x)[None] for x in (c.size_frac, c.sigma_bps, c.half_spread_bps)
    )
    fills = costs_lib.fill_prices(
      jnp.asarray(alloc),
      jnp.asarray(prices),
      jnp.asarray(volumes),
      size_1,
      sigma_1,
      policy.costs,
      spread_1,
    )
  summary = objectives.execution_summary(
    jnp.asarray(alloc), jnp.asarray(prices), jnp.asarray(volumes), fills
  )
  k, sc = order.check(n)
  final = {name: np.asarray(value)[0, k, sc].item() for name, value in summary.items()}
  final["price"] *= arrival
  if "gross_price" in final:
    final["gross_price"] *= arrival
  final["benchmark"] *= arrival
  return {
    "schedule": rows,
    "final": final,
    "running": {
      "price": float(out.price),
      "benchmark": float(out.benchmark),
      "improvement_bps": float(out.improvement_bps),
    },
    "arrival": float(arrival),
    "origin": tables.ms_to_iso(cols["time"][row]),
  }


def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
    prog="python -m lemjax.online.replay", description=__doc__.split("\n")[0]
  )
  p.add_argument(
    "--workdir", required=True, help="trained run's work directory (or its checkpoint folder)"
  )
  p.add_argument(
    "--bars", required=True, help="bar file: Binance klines or daily bars (.csv/.csv.gz/.zip)"
  )
  p.add_argument("--side", required=True, choices=scenarios.SIDES)
  size = p.add_mutually_exclusive_group(required=True)
  size.add_argument("--quantity", type=float, help="parent order size in shares (fixed quantity)")
  size.add_argument("--notional", type=float, help="parent order size in cash (fixed notional)")
  p.add_argument("--benchmark", default="vwap", choices=scenarios.BENCHMARKS)
  dur = p.add_mutually_exclusive_group(required=True)
  dur.add_argument("--min-bars", type=int, help="minimum duration in bars (1..N)")
  dur.add_argument("--fixed", action="store_true", help="fixed duration: trade over all N bars")
  p.add_argument(
    "--r-min", type=float, default=0.0, help="per-bar lower bound, fraction of the order"
  )
  p.add_argument(
    "--r-max", type=float, default=1.0, help="per-bar upper bound, fraction of the order"
  )
  p.add_argument(
    "--start",
    default=None,
    help="open of the first execution bar (ISO UTC or epoch ms); "
    "default: the last order the file holds",
  )
  p.add_argument("--checkpoint", default="best", choices=("best", "latest"))
  return p


def main(argv: list[str] | None = None) -> dict:
  args = _parser().parse_args(argv)
  policy = online.load_policy(args.workdir, args.checkpoint)
  target = "quantity" if args.quantity is not None else "notional"
  order = online.Order(
    side=args.side,
    size=args.quantity if target == "quantity" else args.notional,
    target=target,
    benchmark=args.benchmark,
    min_bars=args.min_bars,
    r_min=args.r_min,
    r_max=args.r_max,
    fixed_duration=args.fixed,
  )
  order.check(policy.n_ahead)
  table = load_bars(args.bars, policy.step_ms)
  row = _origin_row(table, args.start, policy.n_ahead)
  result = replay(policy, order, table, row)
  unit = "shares" if target == "quantity" else "cash"
  print(f"policy: {policy.source}")
  print(
    f"order: {args.side} {order.size:g} ({target}) vs {args.benchmark.upper()}, "
    f"{'fixed duration' if args.fixed else f'min {args.min_bars} bars'}, max {policy.n_ahead} bars; "
    f"arrival {result['arrival']:.6g} (close before {result['origin']})"
  )
  print(
    f"{'bar':>3}  {'open (UTC)':16}  {'fill price':>12}  {'child (' + unit + ')':>16}  {'fraction':>8}"
  )
  for r in result["schedule"]:
    print(
      f"{r['bar']:>3}  {r['time']:16}  {r['fill_price']:>12.6g}  {r['child']:>16.6g}  {r['fraction']:>8.4f}"
    )
  f = result["final"]
  print(f"achieved price: {f['price']:.8g}")
  print(f"benchmark ({args.benchmark.upper()} of bars 0..{f['window_end']}): {f['benchmark']:.8g}")
  print(f"improvement: {f['improvement_bps']:+.4f} bps (positive = better than the benchmark)")
  print(f"ended early: {bool(f['ended_early'])}")
  return result


if __name__ == "__main__":
  try:
    main()
  except (ValueError, FileNotFoundError) as err:
    sys.exit(f"error: {err}")
