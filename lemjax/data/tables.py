"""The common bar table (one row per bar, epoch-ms open time) and the checks every loader shares."""

from __future__ import annotations

import gzip
import io
import re
import zipfile
from pathlib import Path

import numpy as np
import polars as pl

# Columns of every bar table handed on by the loaders and the synthetic market.
#   time      int64    epoch milliseconds (UTC) of the bar's open
#   open..close float64 prices
#   volume    float64  traded quantity (base asset / shares); 0 for bars without trades
#   notional  float64  traded value (quote asset); 0 for bars without trades
#   vwap      float64  fill price of the bar: notional / volume, or the carried close when volume is 0
#   inserted  bool     the bar was missing from the source and inserted (zero volume, carried price)
BAR_COLUMNS = ("time", "open", "high", "low", "close", "volume", "notional", "vwap", "inserted")
PRICE_COLUMNS = ("open", "high", "low", "close")

_UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
MS_PER_DAY = _UNIT_MS["d"]


def interval_ms(interval: str) -> int:
  """Bar length like "15m", "1h", "1d" in milliseconds."""
  match = re.fullmatch(r"\s*(\d+)\s*([smhdw])\s*", str(interval))
  if not match or int(match.group(1)) <= 0:
    raise ValueError(f"bar length {interval!r} is not like '15m', '1h', '4h' or '1d'")
  return int(match.group(1)) * _UNIT_MS[match.group(2)]


def date_ms(date: str) -> int:
  """Epoch milliseconds of 00:00 UTC of an ISO date ("2024-12-31")."""
  try:
    return int(np.datetime64(date, "D").astype("datetime64[ms]").astype(np.int64))
  except ValueError as err:
    raise ValueError(f"date {date!r} is not an ISO date like '2024-12-31'") from err


def ms_to_iso(ms: int) -> str:
  """ISO text (minutes, UTC) of an epoch-millisecond time."""
  return str(np.datetime64(int(ms), "ms").astype("datetime64[m]"))


def read_bytes(path: Path) -> bytes:
  """The CSV bytes of a `.csv`, `.csv.gz` or single-CSV `.zip` file."""
  name = path.name.lower()
  if name.endswith(".zip"):
    with zipfile.ZipFile(path) as archive:
      members = [m for m in archive.namelist() if m.lower().endswith(".csv")]
      if len(members) != 1:
        raise ValueError(f"{path}: expected one .csv inside the zip, found {members}")
      return archive.read(members[0])
  if name.endswith(".gz"):
    with gzip.open(path, "rb") as handle:
      return handle.read()
  return path.read_bytes()


def read_strings(
  path: Path, data: bytes, has_header: bool, names=None, null_values=None
) -> pl.DataFrame:
  """All columns as strings (no inference), so that every bad value can be named."""
  try:
    return pl.read_csv(
      io.BytesIO(data),
      has_header=has_header,
      new_columns=names,
      infer_schema=False,
      null_values=null_values,
      raise_if_empty=False,
    )
  except Exception as err:  # polars raises several error types for malformed CSV
    raise ValueError(f"{path}: cannot parse as CSV: {err}") from err


def numeric(
  df: pl.DataFrame,
  column: str,
  path: Path,
  first_line: int,
  *,
  dtype=pl.Float64,
  allow_missing: bool = False,
) -> pl.Series:
  """Column `column` cast to `dtype`; ValueError naming the first bad value and its line.

  Args:
    df: string table as read by `read_strings`.
    column: column name.
    path: file the table came from (named in errors).
    first_line: line number (1-based) in the file of the table's first row.
    dtype: target dtype.
    allow_missing: keep missing cells as nulls instead of raising.
  Returns:
    The cast series (length = rows of `df`).
  """
  raw = df[column].str.strip_chars()
  value = raw.cast(dtype, strict=False)
  bad = value.is_null() & raw.is_not_null()
  if not allow_missing:
    bad = bad | raw.is_null()
  if dtype == pl.Float64:
    bad = bad | (value.is_not_null() & ~value.is_finite())
  if bad.any():
    row = int(bad.arg_max())
    raise ValueError(
      f"{path}: column {column!r}, line {row + first_line}: "
      f"value {raw[row]!r} is not a finite number"
    )
  return value


def check_times(times: np.ndarray, path: Path, column: str, first_line: int) -> None:
  """Raises ValueError unless `times` is strictly increasing (names the first offending line)."""
  steps = np.diff(times)
  if np.any(steps <= 0):
    row = int(np.argmax(steps <= 0)) + 1
    what = "duplicated" if steps[row - 1] == 0 else "unsorted"
    raise ValueError(
      f"{path}: column {column!r}, line {row + first_line}: {what} timestamp "
      f"{times[row]} (previous {times[row - 1]})"
    )


def check_nonnegative(
  df: pl.DataFrame, columns, path: Path, first_line: int, strict: tuple[str, ...] = ()
) -> None:
  """Raises ValueError at the first negative value (or non-positive, for `strict` columns)."""
  for column in columns:
    values = df[column].to_numpy()
    bad = (values <= 0) if column in strict else (values < 0)
    bad = bad & ~np.isnan(values)
    if bad.any():
      row = int(np.argmax(bad))
      kind = "non-positive" if column in strict else "negative"
      raise ValueError(
        f"{path}: column {column!r}, line {row + first_line}: {kind} value {values[row]!r}"
      )


def fill_grid(table: pl.DataFrame, step_ms: int) -> tuple[pl.DataFrame, int]:
  """Inserts every missing bar of a regular grid as a zero-volume bar at the last close.

  Args:
    table: bar table sorted by `time` (columns time, OHLC, volume, notional).
    step_ms: bar length; every `time` must be first time + a multiple of it.
  Returns:
    (table on the full grid with an `inserted` flag, number of inserted bars).
  """
  times = table["time"].to_numpy()
  grid = pl.DataFrame({"time": np.arange(times[0], times[-1] + 1, step_ms, dtype=np.int64)})
  full = grid.join(table.with_columns(pl.lit(False).alias("inserted")), on="time", how="left")
  n_inserted = full.height - table.height
  carried = pl.col("close").forward_fill()
  full = full.with_columns(
    [pl.col(c).fill_null(carried) for c in PRICE_COLUMNS]
    + [pl.col(c).fill_null(0.0) for c in ("volume", "notional")]
    + [pl.col("inserted").fill_null(True)]
  )
  return full, n_inserted


def with_vwap(table: pl.DataFrame) -> pl.DataFrame:
  """Adds `vwap` = notional / volume, carrying the close for bars without volume."""
  vwap = pl.when(pl.col("volume") > 0).then(pl.col("notional") / pl.col("volume"))
  table = table.with_columns(vwap.otherwise(pl.col("close")).alias("vwap"))
  if "inserted" not in table.columns:
    table = table.with_columns(pl.lit(False).alias("inserted"))
  return table.select(BAR_COLUMNS)
