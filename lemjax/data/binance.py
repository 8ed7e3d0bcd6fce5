"""Binance spot kline files (public archive layout: CSV, CSV.gz or monthly zip) to one bar table."""

from __future__ import annotations

import collections
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from lemjax.data import tables

# The archive's columns; older and newer files carry the trailing `ignore` column, some not.
KLINE_COLUMNS = (
  "open_time",
  "open",
  "high",
  "low",
  "close",
  "volume",
  "close_time",
  "quote_volume",
  "count",
  "taker_buy_volume",
  "taker_buy_quote_volume",
  "ignore",
)
_NEEDED = ("open_time", "open", "high", "low", "close", "volume", "quote_volume")
# Epoch microseconds are > 1e14 for any date after 1973; epoch milliseconds stay below until year 5138.
_MICROSECOND_THRESHOLD = 10**14


def _has_header(data: bytes) -> bool:
  first = data.split(b"\n", 1)[0].split(b",", 1)[0].strip()
  return not first.lstrip(b"-").isdigit()


def read_file(path: Path, step_ms: int | None = None) -> tuple[pl.DataFrame, int]:
  """One kline file as a checked table (time in epoch ms, OHLC, volume, notional).

  Args:
    path: `.csv`, `.csv.gz` or `.zip` file with or without a header row, 11 or 12 columns.
    step_ms: expected bar length in ms; None takes the file's most common step.
  Returns:
    (table with columns time, open, high, low, close, volume, notional sorted by time,
    bar length in ms).
  Raises:
    ValueError naming the file, the column and the first offending line for: an empty file,
    missing or misnamed columns, non-numeric values, unsorted or duplicated timestamps,
    negative (or zero) prices, negative volumes, mixed bar lengths.
  """
  path = Path(path)
  data = tables.read_bytes(path)
  if not data.strip():
    raise ValueError(f"{path}: empty file")
  header = _has_header(data)
  width = len(data.split(b"\n", 1)[0].split(b","))
  names = None
  if not header:
    if width not in (11, 12):
      raise ValueError(f"{path}: {width} columns, expected the 11 or 12 kline columns")
    names = list(KLINE_COLUMNS[:width])
  raw = tables.read_strings(path, data, header, names)
  if raw.height == 0:
    raise ValueError(f"{path}: empty file (header only)")
  raw = raw.rename({c: c.strip().lower() for c in raw.columns})
  missing = [c for c in _NEEDED if c not in raw.columns]
  if missing:
    raise ValueError(f"{path}: missing column {missing[0]!r} (found columns {raw.columns})")
  first_line = 2 if header else 1
  table = _parse(raw, path, first_line)
  return table, check_bar_length(table, path, step_ms, first_line)


def _parse(raw: pl.DataFrame, path: Path, first_line: int) -> pl.DataFrame:
  time = tables.numeric(raw, "open_time", path, first_line, dtype=pl.Int64).to_numpy()
  # Since 2025 the archive writes microseconds; convert per row so mixed files concatenate.
  time = np.where(time >= _MICROSECOND_THRESHOLD, time // 1000, time)
  table = pl.DataFrame(
    {
      "time": time,
      **{c: tables.numeric(raw, c, path, first_line) for c in tables.PRICE_COLUMNS},
      "volume": tables.numeric(raw, "volume", path, first_line),
      "notional": tables.numeric(raw, "quote_volume", path, first_line),
    }
  )
  tables.check_nonnegative(
    table,
    tables.PRICE_COLUMNS + ("volume", "notional"),
    path,
    first_line,
    strict=tables.PRICE_COLUMNS,
  )
  tables.check_times(time, path, "open_time", first_line)
  return table


def check_bar_length(
  table: pl.DataFrame, path: Path, step_ms: int | None, first_line: int = 1
) -> int:
  """The file's bar length in ms; ValueError for mixed bar lengths or a length other than `step_ms`.

  Missing bars are allowed (steps that are whole multiples of the bar length); any other step,
  or a most common step different from the expected bar length, is a mixed or wrong bar length.
  """
  steps = np.diff(table["time"].to_numpy())
  if steps.size == 0:
    return step_ms or 0
  values, counts = np.unique(steps, return_counts=True)
  mode = int(values[np.argmax(counts)])
  expected = step_ms or mode
  if mode != expected:
    raise ValueError(
      f"{path}: column 'open_time': bars are {mode} ms apart, "
      f"expected the configured bar length of {expected} ms"
    )
  bad = steps % expected != 0
  if bad.any():
    row = int(np.argmax(bad)) + 1
    raise ValueError(
      f"{path}: column 'open_time', line {row + first_line}: mixed bar lengths: "
      f"step of {int(steps[row - 1])} ms after a bar length of {expected} ms"
    )
  return expected


def load_symbol(
  paths: Sequence[Path], step_ms: int | None = None
) -> tuple[pl.DataFrame, dict[str, int]]:
  """Concatenates, de-duplicates and grid-fills the kline files of one symbol.

  Args:
    paths: the symbol's files (any mix of layouts and time units), in any order.
    step_ms: expected bar length in ms; None detects it from the first file.
  Returns:
    (bar table with the columns of `tables.BAR_COLUMNS`, counts of every correction:
    rows_read, duplicates_removed, duplicate_conflicts, missing_bars_inserted, zero_volume_bars).
  """
  parts = []
  for path in sorted(paths):
    part, step_ms = read_file(path, step_ms)
    parts.append(part)
  table = pl.concat(parts)
  rows = table.height
  table = table.sort("time", maintain_order=True)
  unique = table.unique(subset="time", keep="first", maintain_order=True)
  conflicts = table.unique(maintain_order=True).height - unique.height
  if step_ms:
    bad = (unique["time"].to_numpy() - int(unique["time"][0])) % step_ms != 0
    if bad.any():
      raise ValueError(
        f"{[str(p) for p in paths]}: column 'open_time': bar at "
        f"{int(unique['time'][int(np.argmax(bad))])} is off the {step_ms} ms grid"
      )
    unique, inserted = tables.fill_grid(unique, step_ms)
  else:
    inserted = 0
  zero = int((unique["volume"] == 0).sum()) - inserted
  counts = collections.OrderedDict(
    rows_read=rows,
    duplicates_removed=rows - (unique.height - inserted),
    duplicate_conflicts=conflicts,
    missing_bars_inserted=inserted,
    zero_volume_bars=zero,
  )
  return tables.with_vwap(unique), dict(counts)


def symbol_of(path: Path) -> tuple[str, str | None]:
  """(symbol, interval or None) from `BTCUSDT_1h.csv.gz` or the archive's `BTCUSDT-1h-2024-01.zip`."""
  stem = path.name.split(".")[0]
  for sep in ("-", "_"):
    parts = stem.split(sep)
    if len(parts) >= 2 and parts[1][:1].isdigit():
      try:
        tables.interval_ms(parts[1])
        return parts[0].upper(), parts[1]
      except ValueError:
        pass
  return stem.upper(), None
