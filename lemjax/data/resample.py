"""Aggregates a regular bar table to a coarser bar length (e.g. 15m -> 1h, 1h -> 4h)."""

from __future__ import annotations

import polars as pl

from lemjax.data import tables


def resample(table: pl.DataFrame, step_ms: int, target_ms: int) -> tuple[pl.DataFrame, int]:
  """Sums volume and notional over buckets aligned on multiples of the target bar length.

  Buckets start at epoch multiples of `target_ms` (4h bars open at 00:00, 04:00, ... UTC).
  Incomplete buckets (at either end of the table) are dropped and counted.

  Args:
    table: bar table on a full grid of `step_ms` (as the Binance loader returns it).
    step_ms: bar length of `table` in ms.
    target_ms: new bar length in ms, a whole multiple of `step_ms`.
  Returns:
    (bar table of `target_ms` bars, number of source bars dropped in incomplete buckets).
  """
  if target_ms % step_ms or target_ms < step_ms:
    raise ValueError(
      f"resample_to of {target_ms} ms is not a multiple of the bar length {step_ms} ms"
    )
  per_bucket = target_ms // step_ms
  bucket = (pl.col("time") // target_ms) * target_ms
  out = (
    table.with_columns(bucket.alias("bucket"))
    .group_by("bucket", maintain_order=True)
    .agg(
      pl.col("open").first(),
      pl.col("high").max(),
      pl.col("low").min(),
      pl.col("close").last(),
      pl.col("volume").sum(),
      pl.col("notional").sum(),
      pl.col("inserted").all(),
      pl.len().alias("bars"),
    )
    .rename({"bucket": "time"})
  )
  complete = out.filter(pl.col("bars") == per_bucket)
  dropped = int(out.filter(pl.col("bars") != per_bucket)["bars"].sum())
  return tables.with_vwap(complete.drop("bars")), dropped
