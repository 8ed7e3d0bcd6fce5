"""Daily equity bars (Yahoo- or Kaggle-style CSV) to bar tables, and their alignment on one calendar."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import polars as pl

from lemjax.data import tables

_NEEDED = ("date", "open", "high", "low", "close", "volume")
_NULLS = ["", "null", "NULL", "NaN", "nan", "NA", "N/A"]
_MAX_MEDIAN_GAP_DAYS = 4  # a median step above this means weekly/monthly bars, not daily


def is_daily_file(path: Path) -> bool:
  """True when the file's first line is a header with a Date column."""
  first = tables.read_bytes(Path(path)).split(b"\n", 1)[0].decode(errors="replace")
  return "date" in [c.strip().lower() for c in first.split(",")]


def load_file(path: Path) -> tuple[str, pl.DataFrame, dict[str, int]]:
  """One daily-bar file as a bar table.

  Columns: Date, Open, High, Low, Close, [Adj Close], Volume, [Name] (any order and case).
  VWAP is approximated by the typical price (High + Low + Close) / 3, notional by typical
  price x volume; `time` is 00:00 UTC of the date.

  Args:
    path: `.csv`, `.csv.gz` or `.zip` file.
  Returns:
    (symbol from the Name column or the file name, bar table, counts of corrections:
    rows_read, filled_open, filled_high, filled_low, dropped_missing_close,
    dropped_missing_volume, zero_volume_bars, zero_prices_as_missing).
  Raises:
    ValueError naming the file, column and first offending line for an empty file, missing
    columns, non-numeric values, unsorted or duplicated dates, intraday or non-daily dates,
    negative prices or volumes.
  """
  path = Path(path)
  data = tables.read_bytes(path)
  if not data.strip():
    raise ValueError(f"{path}: empty file")
  raw = tables.read_strings(path, data, True, null_values=_NULLS)
  raw = raw.rename({c: c.strip().lower() for c in raw.columns})
  missing = [c for c in _NEEDED if c not in raw.columns]
  if missing:
    raise ValueError(f"{path}: missing column {missing[0]!r} (found columns {raw.columns})")
  if raw.height == 0:
    raise ValueError(f"{path}: empty file (header only)")
  symbol = _symbol(raw, path)
  table = pl.DataFrame(
    {"time": _dates(raw, path)}
    | {c: tables.numeric(raw, c, path, 2, allow_missing=True) for c in _NEEDED[1:]}
  )
  tables.check_nonnegative(table, tables.PRICE_COLUMNS + ("volume",), path, 2)
  tables.check_times(table["time"].to_numpy(), path, "Date", 2)
  # A zero price is a data error in these files (e.g. a Low of 0.0): treated as missing, counted.
  zeros = sum(int((table[c] == 0).sum()) for c in tables.PRICE_COLUMNS)
  table = table.with_columns(
    [pl.when(pl.col(c) == 0).then(None).otherwise(pl.col(c)).alias(c) for c in tables.PRICE_COLUMNS]
  )
  table, counts = _repair(table)
  counts["zero_prices_as_missing"] = zeros
  _check_daily(table, path)
  return symbol, tables.with_vwap(table), counts


def _symbol(raw: pl.DataFrame, path: Path) -> str:
  if "name" in raw.columns:
    names = raw["name"].drop_nulls().unique().to_list()
    if len(names) > 1:
      raise ValueError(f"{path}: column 'Name' holds several symbols {sorted(names)[:5]}")
    if names:
      return str(names[0]).strip().upper()
  return path.name.split(".")[0].upper()


def _dates(raw: pl.DataFrame, path: Path) -> np.ndarray:
  text = raw["date"].str.strip_chars()
  dates = text.str.to_date("%Y-%m-%d", strict=False)
  bad = dates.is_null()
  if bad.any():
    row = int(bad.arg_max())
    raise ValueError(
      f"{path}: column 'Date', line {row + 2}: value {text[row]!r} is not a "
      "date like 2017-12-29 (daily bars only)"
    )
  return dates.cast(pl.Datetime("ms")).cast(pl.Int64).to_numpy()


def _repair(table: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, int]]:
  """Fills missing Open/High/Low from Close and drops rows without Close or Volume, counted."""
  counts = {"rows_read": table.height}
  for column in ("close", "volume"):
    counts[f"dropped_missing_{column}"] = int(table[column].is_null().sum())
  table = table.filter(pl.col("close").is_not_null() & pl.col("volume").is_not_null())
  for column in ("open", "high", "low"):
    counts[f"filled_{column}"] = int(table[column].is_null().sum())
  table = table.with_columns(
    [pl.col(c).fill_null(pl.col("close")) for c in ("open", "high", "low")]
  )
  counts["zero_volume_bars"] = int((table["volume"] == 0).sum())
  typical = (pl.col("high") + pl.col("low") + pl.col("close")) / 3.0
  return table.with_columns((typical * pl.col("volume")).alias("notional")), counts


def _check_daily(table: pl.DataFrame, path: Path) -> None:
  if table.height < 2:
    return
  gaps = np.diff(table["time"].to_numpy()) / tables.MS_PER_DAY
  if np.median(gaps) > _MAX_MEDIAN_GAP_DAYS:
    raise ValueError(
      f"{path}: column 'Date': median step of {np.median(gaps):.0f} days: "
      "mixed or non-daily bar lengths"
    )


def align_calendar(
  frames: Mapping[str, pl.DataFrame],
) -> tuple[dict[str, pl.DataFrame], dict[str, int]]:
  """Puts every asset on the union trading calendar of all assets, within its own date range.

  A date on which some assets traded but this one has no row is a missing bar: it is inserted
  as a zero-volume bar at the last close, so that bar offsets mean the same for every asset.

  Args:
    frames: symbol -> bar table.
  Returns:
    (symbol -> aligned bar table, symbol -> number of inserted bars).
  """
  calendar = np.unique(np.concatenate([f["time"].to_numpy() for f in frames.values()]))
  aligned, inserted = {}, {}
  for symbol, frame in frames.items():
    times = frame["time"].to_numpy()
    days = calendar[(calendar >= times[0]) & (calendar <= times[-1])]
    full = pl.DataFrame({"time": days}).join(frame, on="time", how="left")
    inserted[symbol] = full.height - frame.height
    carried = pl.col("close").forward_fill()
    full = full.with_columns(
      [pl.col(c).fill_null(carried) for c in ("open", "high", "low", "vwap")]
      + [
        pl.col("volume").fill_null(0.0),
        pl.col("notional").fill_null(0.0),
        pl.col("inserted").fill_null(True),
      ]
    )
    aligned[symbol] = full.with_columns(pl.col("close").forward_fill()).select(tables.BAR_COLUMNS)
  return aligned, inserted
