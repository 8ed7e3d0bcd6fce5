"""`make_datasets`: files (or the synthetic market) to train / validation / test window datasets."""

from __future__ import annotations

import collections
import dataclasses
import logging
from pathlib import Path

import numpy as np

from lemjax.config import DataConfig
from lemjax.data import binance
from lemjax.data import daily
from lemjax.data import resample
from lemjax.data import synthetic
from lemjax.data import tables
from lemjax.data import windows
from lemjax.data.data_report import DataReport

SPLITS = ("train", "val", "test")
_SUFFIXES = (".csv", ".csv.gz", ".zip")


def find_files(path: str | Path) -> dict[str, list[Path]]:
  """Bar files under `path` (recursive), by detected kind: {"binance": [...], "daily": [...]}."""
  root = Path(path)
  found: dict[str, list[Path]] = {"binance": [], "daily": []}
  if not root.exists():
    return found
  candidates = [root] if root.is_file() else sorted(root.rglob("*"))
  for file in candidates:
    if file.is_file() and file.name.lower().endswith(_SUFFIXES):
      found["daily" if daily.is_daily_file(file) else "binance"].append(file)
  return found


def _choose_kind(config: DataConfig, found: dict[str, list[Path]], notes: list[str]) -> str:
  if config.kind != "auto":
    if config.kind not in found:
      raise ValueError(f"DataConfig.kind {config.kind!r} is not 'auto', 'binance' or 'daily'")
    if not found[config.kind]:
      raise ValueError(f"no {config.kind} files under {config.path}")
    return config.kind
  kinds = [k for k, files in found.items() if files]
  if len(kinds) == 2:
    kind = "daily" if config.interval == "1d" else "binance"
    notes.append(
      f"both kline and daily files under {config.path}: using {kind} "
      f"(interval {config.interval}); set DataConfig.kind to choose"
    )
    return kind
  return kinds[0]


def _load_binance(config, files, notes):
  """symbol -> bar table, symbol -> corrections, files used, bar length (ms)."""
  step_ms = tables.interval_ms(config.interval)
  groups: dict[str, list[Path]] = collections.defaultdict(list)
  other = []
  for file in files:
    symbol, interval = binance.symbol_of(file)
    if interval is not None and tables.interval_ms(interval) != step_ms:
      other.append(file.name)
      continue
    groups[symbol].append(file)
  if other:
    notes.append(f"skipped {len(other)} kline files of other bar lengths than {config.interval}")
  if not groups:
    raise ValueError(f"no {config.interval} kline files under {config.path}")
  frames, corrections = {}, {}
  for symbol in _select(sorted(groups), config):
    frames[symbol], corrections[symbol] = binance.load_symbol(groups[symbol], step_ms)
  used = [str(f) for s in frames for f in sorted(groups[s])]
  return frames, corrections, used, step_ms


def _load_daily(config, files, notes):
  """Daily tables on the union trading calendar; same outputs as `_load_binance`."""
  if config.interval != "1d":
    notes.append(
      f"daily bar files: bar length 1d (DataConfig.interval {config.interval!r} ignored)"
    )
  loaded = {}
  for file in files:
    symbol, table, counts = daily.load_file(file)
    if symbol in loaded:
      raise ValueError(f"{file}: symbol {symbol} also in {loaded[symbol][2]}")
    loaded[symbol] = (table, counts, str(file))
  keep = _select(sorted(loaded), config)
  frames, inserted = daily.align_calendar({s: loaded[s][0] for s in keep})
  corrections = {s: {**loaded[s][1], "missing_bars_inserted": inserted[s]} for s in keep}
  return frames, corrections, [loaded[s][2] for s in keep], tables.MS_PER_DAY


def _select(available: list[str], config: DataConfig) -> list[str]:
  if not config.symbols:
    return available
  wanted = [s.upper() for s in config.symbols]
  missing = [s for s in wanted if s not in available]
  if missing:
    raise ValueError(f"symbols {missing} not found under {config.path}; available: {available}")
  return wanted


def _split_ranges(config: DataConfig, frames, step_ms: int, synthetic_source: bool):
  """name -> (start_ms, end_ms exclusive, start text, end text)."""
  if synthetic_source:
    first = min(int(f["time"][0]) for f in frames.values())
    last = max(int(f["time"][-1]) for f in frames.values()) + step_ms
    cuts = first + np.cumsum([0.0, *config.synthetic_split]) / sum(config.synthetic_split) * (
      last - first
    )
    cuts[-1] = last
    return {
      name: (cuts[i], cuts[i + 1], tables.ms_to_iso(cuts[i]), tables.ms_to_iso(cuts[i + 1]))
      for i, name in enumerate(SPLITS)
    }
  ranges = {}
  for name in SPLITS:
    start, end = getattr(config, f"{name}_start"), getattr(config, f"{name}_end")
    start_ms = tables.date_ms(start) if start else -np.inf
    end_ms = tables.date_ms(end) + tables.MS_PER_DAY if end else np.inf
    ranges[name] = (start_ms, end_ms, start or "first bar", end or "last bar")
  spans = sorted((r[0], r[1], n) for n, r in ranges.items())
  for (_, end_a, a), (start_b, _, b) in zip(spans, spans[1:]):
    if start_b < end_a:
      raise ValueError(f"split date ranges overlap: {a} and {b} (DataConfig *_start/*_end)")
  return ranges


def _source(config: DataConfig) -> tuple[str, dict[str, list[Path]]]:
  if config.source not in ("auto", "files", "synthetic"):
    raise ValueError(f"DataConfig.source {config.source!r} is not 'auto', 'files' or 'synthetic'")
  if config.source == "synthetic":
    return "synthetic", {}
  found = find_files(config.path)
  if any(found.values()):
    return "files", found
  if config.source == "files":
    raise ValueError(
      f"DataConfig.source='files' but no .csv/.csv.gz/.zip bar files under "
      f"{Path(config.path).resolve()}"
    )
  logging.warning(
    "No bar files under %s: using the SYNTHETIC market (%s regime).",
    Path(config.path).resolve(),
    config.synthetic_regime,
  )
  return "synthetic", {}


def make_datasets(config: DataConfig, **overrides):
  """Train, validation and test window datasets and the data report.

  Args:
    config: DataConfig; `overrides` replace fields (e.g. symbols=("BTCUSDT",), val_end="...").
  Returns:
    (train, val, test, report): three `windows.WindowDataset` sharing one store of bars, and a
    `DataReport` whose `source` is "SYNTHETIC" or the folder read.
  """
  config = dataclasses.replace(config, **overrides) if overrides else config
  if config.lookback < 1 or config.n_ahead < 1 or config.stride < 1:
    raise ValueError(
      f"lookback, n_ahead and stride must be >= 1, got {config.lookback}, "
      f"{config.n_ahead}, {config.stride}"
    )
  notes: list[str] = []
  # --- Bars: files or the synthetic market.
  origin, found = _source(config)
  if origin == "synthetic":
    step_ms = tables.interval_ms(config.interval)
    frames = synthetic.synthetic_market(
      config.synthetic_regime,
      config.synthetic_assets,
      config.synthetic_bars,
      config.synthetic_seed,
      config.martingale,
      config.interval,
      config.synthetic_start,
    )
    frames = {s: frames[s] for s in _select(list(frames), config)}
    corrections = {s: {} for s in frames}
    source, kind, used = "SYNTHETIC", f"synthetic-{config.synthetic_regime}", []
    notes.append(
      f"SYNTHETIC market (seed {config.synthetic_seed}, martingale={config.martingale}); "
      f"splits by fractions {tuple(config.synthetic_split)} of its time range"
    )
  else:
    kind = _choose_kind(config, found, notes)
    loader = _load_binance if kind == "binance" else _load_daily
    frames, corrections, used, step_ms = loader(config, found[kind], notes)
    source = str(Path(config.path).resolve())
  interval = config.interval if kind != "daily" else "1d"
  # --- Optional coarser bars.
  if config.resample_to:
    if kind == "daily":
      raise ValueError("DataConfig.resample_to is not supported for daily bars")
    target_ms = tables.interval_ms(config.resample_to)
    for symbol in frames:
      frames[symbol], dropped = resample.resample(frames[symbol], step_ms, target_ms)
      corrections[symbol]["resample_dropped_bars"] = dropped
    step_ms, interval = target_ms, config.resample_to
  # --- Features, windows and splits.
  store = windows.BarStore.build(frames, step_ms, tables.interval_ms(config.volume_window))
  report = DataReport(
    source=source,
    kind=kind,
    interval=interval,
    files=used,
    assets=list(frames),
    notes=notes,
    config=dataclasses.asdict(config),
  )
  for symbol, frame in frames.items():
    report.bars[symbol] = frame.height
    report.first_bar[symbol] = tables.ms_to_iso(frame["time"][0])
    report.last_bar[symbol] = tables.ms_to_iso(frame["time"][-1])
    report.corrections[symbol] = corrections[symbol]
  datasets = []
  for name, (start_ms, end_ms, start, end) in _split_ranges(
    config, frames, step_ms, origin == "synthetic"
  ).items():
    asset_M, t0_M, counts = windows.split_windows(
      store, start_ms, end_ms, config.lookback, config.n_ahead, config.stride
    )
    report.splits[name] = {"start": start, "end": end, **counts}
    if counts["kept"] == 0:
      notes.append(f"split {name} ({start} .. {end}) has no windows")
    datasets.append(
      windows.WindowDataset(store, asset_M, t0_M, config.lookback, config.n_ahead, name, source)
    )
  logging.info("%s", report.summary())
  return (*datasets, report)
