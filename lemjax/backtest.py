"""Backtest over a user's order file: the trained LEM and every baseline on each order, net of costs.

  python -m lemjax.backtest --workdir runs/<exp> --orders orders.csv [--data folder] [--skip-bad]

Each row of the order file is one parent order (columns in `COLUMNS`, optional ones in
`OPTIONAL`): id, asset, side (buy/sell), target (quantity/notional), size (shares for quantity,
currency for notional), start (ISO time of the first execution bar's open, or the first bar
opening after it), min_bars (1..N), r_min, r_max (fractions of the order per bar), benchmark
(vwap/twap), and optionally max_bars (must be N: the model's projection completes orders by bar
N only) and participation_cap (rho, default the run's). A bad row raises an error naming its row
and column; with --skip-bad it goes to rejected.csv with the reason instead.

Every strategy pays the same costs (lemjax/costs.py, with the run's cost parameters; a run
trained without costs is charged the default ones): each order's size relative to the expected
volume over its N bars (N x its lookback's mean bar volume) sets its participation cap and its
impact. The baselines are fitted on the run's training orders (validation orders choose the best
causal one) at the median size of the file's orders.

Writes into --out (default <workdir>/backtest_<file name>): fills.parquet and fills.csv (every
child: order, strategy, bar time, child size, fill price net of costs, cost), results.csv (per
order and strategy: net and gross improvement, cost, shortfall), rejected.csv (with --skip-bad)
and report.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import time

import jax.numpy as jnp
import numpy as np
import polars as pl

from lemjax import allocation
from lemjax import baselines
from lemjax import config as config_lib
from lemjax import costs as costs_lib
from lemjax import evaluate as evaluate_lib
from lemjax import heads
from lemjax import lsm
from lemjax import markdown
from lemjax import objectives
from lemjax import scenarios
from lemjax import stats as stats_lib
from lemjax import workdir as workdir_lib
from lemjax.data import make_datasets
from lemjax.data import tables
from lemjax.data import windows

COLUMNS = ("id", "asset", "side", "target", "size", "start", "min_bars", "r_min", "r_max")
OPTIONAL = ("benchmark", "max_bars", "participation_cap")


class BadRow(ValueError):
  """An order-file row that cannot be run: names the row, its id, the column and why."""

  def __init__(self, row: int, order_id: str, column: str, reason: str):
    super().__init__(f"orders row {row} (id {order_id!r}), column {column}: {reason}")
    self.row, self.order_id, self.column, self.reason = row, order_id, column, reason


@dataclasses.dataclass(frozen=True)
class Market:
  """What parsing a row needs to know: the bars, the model's horizon and the cost parameters."""

  store: windows.BarStore
  lookback: int
  n_ahead: int
  costs: config_lib.CostConfig


# --- Orders ---------------------------------------------------------------------------------------


def read_orders(path: str) -> pl.DataFrame:
  """The order file as text columns (parsing, with row-level errors, is `parse_row`'s)."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"order file {path} not found")
  frame = pl.read_csv(path, infer_schema=False)
  missing = [c for c in COLUMNS if c not in frame.columns]
  if missing:
    raise ValueError(f"order file {path} lacks the column(s) {missing}; it needs {list(COLUMNS)}")
  return frame


def _number(row: int, oid: str, column: str, text, kind=float):
  try:
    value = kind(str(text).strip())
  except (TypeError, ValueError):
    raise BadRow(row, oid, column, f"{text!r} is not a number") from None
  if not np.isfinite(value):
    raise BadRow(row, oid, column, f"{text!r} is not finite")
  return value


def _choice(row: int, oid: str, column: str, text, allowed: tuple) -> str:
  value = str(text or "").strip().lower()
  if value not in allowed:
    raise BadRow(row, oid, column, f"{text!r} is not one of {allowed}")
  return value


def _start_bar(row: int, oid: str, market: Market, asset: int, text) -> int:
  """Global store row of the order's first execution bar, checked for history and horizon."""
  try:
    start_ms = np.datetime64(str(text).strip().replace("Z", ""), "ms").astype(np.int64)
  except ValueError:
    raise BadRow(row, oid, "start", f"{text!r} is not an ISO time") from None
  s = market.store
  times = s.asset_times(asset)
  t0 = int(np.searchsorted(times, start_ms, side="left"))
  if t0 + market.n_ahead > times.size:
    last = tables.ms_to_iso(times[-1])
    raise BadRow(
      row, oid, "start", f"{text} leaves fewer than N={market.n_ahead} bars (data ends {last})"
    )
  if t0 - market.lookback < s.warmup[asset]:
    need = market.lookback + int(s.warmup[asset])
    raise BadRow(row, oid, "start", f"{text} has fewer than {need} bars of history before it")
  return int(s.offsets[asset]) + t0


def _duration(i: int, oid: str, raw: dict, n: int) -> int:
  """min_bars in [1, N]; max_bars, when given, must be N."""
  min_bars = _number(i, oid, "min_bars", raw.get("min_bars"), int)
  if not 1 <= min_bars <= n:
    raise BadRow(i, oid, "min_bars", f"{min_bars} must lie in [1, N={n}]")
  if (raw.get("max_bars") or "").strip():
    max_bars = _number(i, oid, "max_bars", raw.get("max_bars"), int)
    if max_bars != n:
      raise BadRow(
        i, oid, "max_bars", f"{max_bars} != N={n}: this model completes orders by bar N only "
        "(its projection has no earlier deadline); train one with model.n_ahead for that horizon",
      )  # fmt: skip
  return min_bars


def _bounds(i: int, oid: str, raw: dict, market: Market) -> tuple[float, float, float]:
  """(r_min, r_max, rho): the rate bounds, checked for N bars, and the participation cap."""
  r_min, r_max = (_number(i, oid, c, raw.get(c)) for c in ("r_min", "r_max"))
  try:
    allocation.validate_bounds(r_min, r_max, market.n_ahead)
  except ValueError as err:
    first = str(err).split(": ", 1)[-1]  # the first problem names the bound at fault
    raise BadRow(i, oid, "r_min" if first.startswith("r_min") else "r_max", str(err)) from None
  rho = market.costs.participation_cap
  if (raw.get("participation_cap") or "").strip():
    rho = _number(i, oid, "participation_cap", raw.get("participation_cap"))
    if not 0 < rho <= 1:
      raise BadRow(i, oid, "participation_cap", f"{rho} must lie in (0, 1]")
  return r_min, r_max, rho


def _size_fraction(i: int, oid: str, market: Market, g0: int, order: dict) -> tuple[float, float]:
  """(size over the expected volume of the N bars, r_max with the participation cap)."""
  s, n, lb = market.store, market.n_ahead, market.lookback
  mean_volume = (s.volume_cumsum[g0] - s.volume_cumsum[g0 - lb]) / lb
  size = order["size"]
  shares = size if order["target"] == "quantity" else size / s.close[g0 - 1]
  frac = shares / (n * mean_volume)
  try:
    cfg = dataclasses.replace(market.costs, participation_cap=order["rho"])
    costs_lib.check_orders(frac, order["r_min"], order["r_max"], n, cfg, names=[oid])
  except ValueError as err:
    raise BadRow(i, oid, "size", str(err)) from None
  return frac, min(order["r_max"], costs_lib.participation_limit(frac, n, order["rho"]))


def parse_row(i: int, raw: dict, market: Market) -> dict:
  """One order's terms, or BadRow naming the first bad column."""
  oid = str(raw.get("id") or "").strip()
  if not oid:
    raise BadRow(i, oid, "id", "is empty")
  names = market.store.asset_names
  asset_name = str(raw.get("asset") or "").strip()
  if asset_name not in names:
    raise BadRow(i, oid, "asset", f"{asset_name!r} is not in the data ({', '.join(names)})")
  order = {"row": i, "id": oid, "asset": asset_name, "asset_index": names.index(asset_name)}
  order["side"] = _choice(i, oid, "side", raw.get("side"), scenarios.SIDES)
  order["target"] = _choice(i, oid, "target", raw.get("target"), scenarios.TARGETS)
  bench = _choice(i, oid, "benchmark", raw.get("benchmark") or "vwap", scenarios.BENCHMARKS)
  order["benchmark"] = bench
  order["size"] = _number(i, oid, "size", raw.get("size"))
  if order["size"] <= 0:
    raise BadRow(i, oid, "size", f"{order['size']!r} must be positive (shares or currency)")
  order["min_bars"] = _duration(i, oid, raw, market.n_ahead)
  order["head"] = order["min_bars"] - 1
  order["scenario"] = scenarios.scenario_index(order["side"], bench, order["target"])
  order["r_min"], order["r_max"], order["rho"] = _bounds(i, oid, raw, market)
  order["t0"] = _start_bar(i, oid, market, order["asset_index"], raw.get("start"))
  order["size_frac"], order["r_max_capped"] = _size_fraction(i, oid, market, order["t0"], order)
  return order


def parse_orders(frame: pl.DataFrame, market: Market, skip_bad: bool):
  """(accepted orders as a list of dicts, rejected rows as a frame with reasons)."""
  good, bad, seen = [], [], set()
  for i, raw in enumerate(frame.iter_rows(named=True), start=1):
    try:
      order = parse_row(i, raw, market)
      if order["id"] in seen:
        raise BadRow(i, order["id"], "id", "duplicates an earlier row's id")
      seen.add(order["id"])
      good.append(order)
    except BadRow as err:
      if not skip_bad:
        raise
      bad.append({**{k: str(v) for k, v in raw.items()}, "row": i, "column": err.column,
                  "reason": err.reason})  # fmt: skip
  rejected = pl.DataFrame(bad) if bad else pl.DataFrame({"row": [], "column": [], "reason": []})
  return good, rejected


# --- Strategies -----------------------------------------------------------------------------------


def apply_baselines(b: dict, fitted: dict, bar_ms: int, r_min_B, r_max_B, score) -> dict:
  """Every baseline's allocations [B, N, K, S] on the orders `b`, with per-order bounds."""
  p, v, c, vol = b["prices"], b["volumes"], b["closes"], b["lookback_vol"]
  n = p.shape[1]
  buckets, _ = baselines.calendar_buckets(b["origin"], n, bar_ms)
  out = {
    "uniform": baselines.uniform(p.shape[0], n),
    "vwap_profile": baselines.vwap_schedule(fitted["profile"], buckets, r_min_B, r_max_B),
    "optional_stopping": baselines.optional_stopping(
      p, v, c, fitted["theta_KxS"], r_min_B, r_max_B
    ),
    "vol_stopping": baselines.vol_stopping(p, v, c, vol, fitted["vol_theta_KxS"], r_min_B, r_max_B),
    "lsm_stopping": lsm.lsm_stopping(p, v, c, vol, fitted["lsm_coef_NxKxSxP"], r_min_B, r_max_B),
  }
  out["best_causal"] = baselines.pick(out, fitted["best_causal_choice"])
  out["oracle"] = baselines.oracle(p, v, score, r_min_B, r_max_B, spread_candidates=True)
  return out


def fit_baselines(tune: dict, val: dict, bar_ms: int, ecfg, cost, size: float, n: int) -> dict:
  """The baselines' fitted terms (profile, thresholds, LSM, best-causal choice) at one size."""
  r_max = float(costs_lib.capped_r_max(ecfg.r_max, size, n, cost))
  score_for = lambda b: costs_lib.batch_scorer(cost, size, b)  # noqa: E731
  one = {k: v[:1] for k, v in val.items()}  # the fit's own test orders are not used here
  _, fitted = evaluate_lib.baseline_allocations(one, tune, val, bar_ms, ecfg, score_for, r_max)
  return fitted


def _own(x_BxKxS, orders: list) -> np.ndarray:
  """Each order's own head and scenario: [B, ...] from [B, K, S, ...]."""
  rows = np.arange(len(orders))
  heads = np.array([o["head"] for o in orders])
  scens = np.array([o["scenario"] for o in orders])
  return np.asarray(x_BxKxS)[rows, heads, scens]


# --- Outputs --------------------------------------------------------------------------------------


def _fills_frame(name, alloc, fills, batch, orders, store) -> pl.DataFrame:
  """Every child of strategy `name` with a positive size: bar time, size, net fill price, cost."""
  a_BxN = _own(np.moveaxis(np.asarray(alloc), 1, 3), orders)
  f_BxN = _own(np.moveaxis(np.asarray(fills), 1, 3), orders)
  arrival = np.array([store.close[o["t0"] - 1] for o in orders])
  t0 = np.array([o["t0"] for o in orders])
  b, s = np.nonzero(a_BxN > 0)
  price = batch["prices"][b, s].astype(np.float64)
  return pl.DataFrame(
    {
      "order": [orders[i]["id"] for i in b],
      "strategy": [name] * b.size,
      "bar": s,
      "bar_time": [tables.ms_to_iso(store.time[t0[i] + j]) for i, j in zip(b, s)],
      "child_fraction": a_BxN[b, s],
      "child_size": a_BxN[b, s] * np.array([orders[i]["size"] for i in b]),
      "market_price": price * arrival[b],
      "fill_price": f_BxN[b, s] * arrival[b],
      "cost_bps": np.abs(f_BxN[b, s] / price - 1.0) * 1e4,
    }
  )


def _results_frame(name, summary, orders) -> pl.DataFrame:
  own = {k: _own(v, orders) for k, v in summary.items()}
  side = np.array([scenarios.SIDE_SIGN_S[o["scenario"]] for o in orders])
  return pl.DataFrame(
    {
      "order": [o["id"] for o in orders],
      "strategy": [name] * len(orders),
      "asset": [o["asset"] for o in orders],
      "size_frac": [o["size_frac"] for o in orders],
      "net_improvement_bps": own["improvement_bps"],
      "gross_improvement_bps": own["gross_improvement_bps"],
      "cost_bps": own["cost_bps"],
      "shortfall_bps": side * (own["price"].astype(np.float64) - 1.0) * 1e4,
      "ended_early": own["ended_early"],
      "last_bar": own["window_end"],
    }
  )


def _report(results: pl.DataFrame, origin_B, orders, rejected, meta: dict, ecfg) -> str:
  """report.md: what ran, the mean net/gross/cost per strategy and net by size bucket."""
  group_B, g = stats_lib.start_groups(origin_B)
  block = stats_lib.fitted_block_length(ecfg.block_length, g) if g > 1 else 1
  lines = [
    "# Backtest",
    "",
    f"Run: {meta['workdir']} (checkpoint {meta['checkpoint']}). {meta['source']}.",
    f"Orders: {meta['file']}: {len(orders)} run, {rejected.height} rejected. Baselines fitted on "
    f"training orders at size {meta['fit_size']:.4g} of horizon volume. Wall time "
    f"{meta['seconds']:.1f} s.",
    f"Costs: {meta['costs']}.",
    "",
  ]
  rows = []
  buckets = meta["buckets"]
  bucket_B = np.argmin(np.abs(np.log(np.array([o["size_frac"] for o in orders]))[:, None]
                              - np.log(np.asarray(buckets))[None, :]), axis=1)  # fmt: skip
  size_rows = []
  for name in dict.fromkeys(results["strategy"].to_list()):
    r = results.filter(pl.col("strategy") == name)
    x = r.select(["net_improvement_bps", "gross_improvement_bps", "cost_bps"]).to_numpy()
    ci = _interval(x, group_B, block, ecfg)
    cells = [markdown.ci(ci["mean"][j], ci["ci_lo"][j], ci["ci_hi"][j]) for j in range(3)]
    rows.append([name, *cells])
    per_bucket = []
    for q in range(len(buckets)):
      sel = bucket_B == q
      per_bucket.append(f"{np.mean(x[sel, 0]):+.2f} ({int(sel.sum())})" if sel.any() else "-")
    size_rows.append([name, *per_bucket])
  lines += [
    "## Per strategy (each order's own head and scenario)",
    "",
    f"Mean bps [95% interval over {g} start-time clusters].",
    "",
    markdown.md_table(["strategy", "net improvement", "gross improvement", "cost"], rows),
    "",
    "## Net improvement by order size (nearest bucket; orders in brackets)",
    "",
    markdown.md_table(["strategy", *(f"{100 * q:g}%" for q in buckets)], size_rows),
    "",
  ]
  return "\n".join(lines)


def _interval(x_BxM, group_B, block: int, ecfg) -> dict:
  if int(group_B.max()) + 1 < 2:  # one start time: no interval to draw
    mean = x_BxM.mean(0)
    return {"mean": mean, "ci_lo": mean * np.nan, "ci_hi": mean * np.nan}
  return stats_lib.cluster_interval(
    x_BxM, group_B, block_length=block, n_boot=ecfg.bootstrap, seed=ecfg.seed, level=0.95
  )


# --- Orchestration --------------------------------------------------------------------------------


def _known_fields(cls, saved) -> dict:
  """A saved section's fields that `cls` still has (JSON's "inf" strings back to floats); runs
  saved by other versions of the code keep working, missing fields taking today's defaults."""
  names = {f.name for f in dataclasses.fields(cls)}
  out = {}
  for key, value in (saved or {}).items():
    if key in names:
      out[key] = (
        [float(v) if isinstance(v, str) else v for v in value] if isinstance(value, list) else value
      )
  return out


def run_backtest(
  workdir: str, orders_path: str, data: str = "", skip_bad: bool = False, out: str = ""
) -> dict:
  """Runs the LEM of `workdir` and every baseline over the orders of `orders_path`.

  Returns:
    {"out": folder, "orders": accepted count, "rejected": rejected count, "report": path}.
  """
  tick = time.perf_counter()
  # --- Run and data.
  saved = workdir_lib.read_config(workdir)
  data_cfg = config_lib.data_config(saved["data"])
  if data:
    data_cfg = dataclasses.replace(data_cfg, path=data, source="files")
  model_cfg = workdir_lib.trained_model_config(workdir, config_lib.model_config(saved["model"]))
  ecfg = config_lib.eval_config(_known_fields(config_lib.EvalConfig, saved.get("eval")))
  cost = config_lib.costs_config(saved.get("costs"))
  cost = cost if cost.enabled else dataclasses.replace(cost, enabled=True)
  params, ckpt = workdir_lib.restore_params(workdir, model_cfg, ecfg.checkpoint)
  train_ds, val_ds, _, report = make_datasets(data_cfg)
  if train_ds.num_windows < 1 or val_ds.num_windows < 1:
    raise ValueError("the data's training or validation split is empty: the baselines fit there")
  store, n, lb = train_ds.store, model_cfg.n_ahead, model_cfg.lookback
  market = Market(store, lb, n, cost)

  # --- Orders.
  good, rejected = parse_orders(read_orders(orders_path), market, skip_bad)
  out = out or os.path.join(workdir, "backtest_" + os.path.basename(orders_path).split(".")[0])
  os.makedirs(out, exist_ok=True)
  if skip_bad:
    rejected.write_csv(os.path.join(out, "rejected.csv"))
  if not good:
    raise ValueError(f"no order of {orders_path} can be run ({rejected.height} rejected)")
  ds = windows.WindowDataset(
    store, np.array([o["asset_index"] for o in good]), np.array([o["t0"] for o in good]), lb, n
  )
  batch = ds.batch(np.arange(len(good)))
  col = lambda k: np.array([o[k] for o in good], np.float32)  # noqa: E731
  size_B, r_min_B, r_max_B = col("size_frac"), col("r_min"), col("r_max_capped")

  # --- Strategies, all paying the same costs.
  model_size = size_B if model_cfg.allocator.size_input else None
  lem = evaluate_lib.lem_allocations(
    params, model_cfg, batch, r_min_B, r_max_B, ecfg.batch_size, model_size
  )
  # The heads `make eval` chose to serve each min period (head_map.json), as the online API does.
  head_map = heads.load_head_map(workdir, n + 1, scenarios.NUM_SCENARIOS, int(ckpt["step"]))
  allocs = {"LEM": lem if head_map is None else heads.serve(lem, head_map)}
  fit_size = float(np.median(size_B))
  tune = evaluate_lib.gather(
    train_ds, evaluate_lib.spread_indices(train_ds.num_windows, ecfg.tune_orders)
  )
  val = evaluate_lib.gather(
    val_ds, evaluate_lib.spread_indices(val_ds.num_windows, ecfg.val_orders)
  )
  fitted = fit_baselines(tune, val, store.step_ms, ecfg, cost, fit_size, n)
  score = costs_lib.batch_scorer(cost, size_B, batch)
  allocs.update(apply_baselines(batch, fitted, store.step_ms, r_min_B, r_max_B, score))

  # --- Scores, fills and report.
  fills_frames, result_frames = [], []
  for name, alloc in allocs.items():
    alloc = jnp.asarray(alloc)
    fills = costs_lib.batch_fill_prices(alloc, batch, size_B, cost)
    summary = objectives.execution_summary(alloc, batch["prices"], batch["volumes"], fills)
    result_frames.append(_results_frame(name, {k: np.asarray(v) for k, v in summary.items()}, good))
    fills_frames.append(_fills_frame(name, alloc, fills, batch, good, store))
  results, fills_all = pl.concat(result_frames), pl.concat(fills_frames)
  fills_all.write_parquet(os.path.join(out, "fills.parquet"))
  fills_all.write_csv(os.path.join(out, "fills.csv"))
  results.write_csv(os.path.join(out, "results.csv"))
  meta = {
    "workdir": workdir,
    "checkpoint": f"{ckpt['which']} step {ckpt['step']}",
    "source": workdir_lib.data_source_line(data_cfg, report),
    "file": orders_path,
    "fit_size": fit_size,
    "seconds": time.perf_counter() - tick,
    "buckets": cost.size_buckets,
    "costs": f"fee {cost.fee_bps:g} bps, {costs_lib.half_spread_text(cost)}, impact eta "
    f"{cost.impact_eta:g}, participation cap {cost.participation_cap:g} (default per order)",
  }
  path = os.path.join(out, "report.md")
  with open(path, "w") as f:
    f.write(_report(results, batch["origin"], good, rejected, meta, ecfg))
  logging.info("backtest of %d orders written to %s", len(good), out)
  return {"out": out, "orders": len(good), "rejected": rejected.height, "report": path}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
    prog="python -m lemjax.backtest", description=__doc__.split("\n")[0]
  )
  parser.add_argument("--workdir", required=True, help="trained run, e.g. runs/crypto_intraday")
  parser.add_argument("--orders", required=True, help="order file (CSV), one parent order a row")
  parser.add_argument("--data", default="", help="folder of bar files (default: the run's data)")
  parser.add_argument("--skip-bad", action="store_true", help="write bad rows to rejected.csv")
  parser.add_argument("--out", default="", help="output folder (default <workdir>/backtest_<file>)")
  args = parser.parse_args(argv)
  logging.basicConfig(level=logging.INFO, format="%(message)s")
  try:
    out = run_backtest(args.workdir, args.orders, args.data, args.skip_bad, args.out)
  except (FileNotFoundError, ValueError) as err:
    print(f"error: {err}", file=sys.stderr)
    return 1
  print(f"{out['orders']} orders ({out['rejected']} rejected): {out['report']}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
