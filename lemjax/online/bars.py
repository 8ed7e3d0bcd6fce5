"""Bars as they arrive: parsing, host-side checks and the float32 form the jitted step reads.

Prices and volumes travel as float32 (hi, lo) pairs (`split`), so that returns in bps come out
as exact as the data layer's float64 ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import jax
import numpy as np
import polars as pl

from lemjax.data import features
from lemjax.data import tables
from lemjax.online.policy import Policy


class Bar(NamedTuple):
  """One bar as it arrives; `vwap` may be None when `notional` is given (vwap = notional / volume)."""

  time: int  # open time, epoch ms UTC
  close: float
  volume: float  # traded quantity (base asset / shares)
  vwap: float | None = None  # the bar's fill price
  notional: float | None = None  # traded value, used when vwap is None
  length_ms: int | None = None  # bar length, checked against the model's when given
  high: float | None = None  # highest and lowest trade: history bars need them when the policy
  low: float | None = None  # charges each order its lookback high-low half-spread (costs.spread)


class LiveBar(NamedTuple):
  """A checked bar in the jitted step's float32/int32 form (leading order axes allowed)."""

  close_2: jax.Array  # close as float32 (hi, lo)
  vwap_2: jax.Array  # fill price (hi, lo)
  volume_2: jax.Array  # volume (hi, lo)
  calendar_C: jax.Array  # the five calendar features, computed as the data layer does
  gap: jax.Array  # int32, bars since the previous bar (1 for consecutive bars)
  day: jax.Array  # int32, UTC day of the open (epoch days)
  ms: jax.Array  # int32, ms of the open within its day


def split(x) -> np.ndarray:
  """float64 -> float32 (hi, lo) with hi + lo == x to ~1e-14 relative; shape [..., 2]."""
  x = np.asarray(x, np.float64)
  hi = x.astype(np.float32)
  return np.stack([hi, (x - hi.astype(np.float64)).astype(np.float32)], axis=-1)


def _field(bar, name: str):
  value = bar.get(name) if isinstance(bar, Mapping) else getattr(bar, name, None)
  return None if value is None else np.asarray(value)


def _bar_arrays(bar) -> dict[str, np.ndarray]:
  """time (int64), close, volume, vwap (float64) and optional length_ms, high, low (float64) of a
  Bar/mapping/table."""
  if isinstance(bar, pl.DataFrame):
    bar = {c: bar[c].to_numpy() for c in bar.columns}
  out = {}
  for name in ("time", "close", "volume"):
    value = _field(bar, name)
    if value is None:
      raise ValueError(f"bar field {name!r} is missing")
    out[name] = value
  if not np.issubdtype(out["time"].dtype, np.integer):
    raise ValueError(
      f"bar field 'time' must be integer epoch milliseconds, got {out['time'].dtype}"
    )
  out["time"] = out["time"].astype(np.int64)
  out["close"] = out["close"].astype(np.float64)
  out["volume"] = out["volume"].astype(np.float64)
  vwap, notional = _field(bar, "vwap"), _field(bar, "notional")
  if vwap is None and notional is None:
    raise ValueError("bar field 'vwap' is missing (or give 'notional')")
  if vwap is None:
    with np.errstate(divide="ignore", invalid="ignore"):
      vwap = np.asarray(notional, np.float64) / out["volume"]
  # As the loaders do: a bar without volume fills at its close.
  out["vwap"] = np.where(out["volume"] > 0, np.asarray(vwap, np.float64), out["close"])
  length = _field(bar, "length_ms")
  if length is not None:
    out["length_ms"] = length.astype(np.int64)
  for name in ("high", "low"):
    value = _field(bar, name)
    if value is not None:
      out[name] = value.astype(np.float64)
  return out


def _check_values(values: dict, what: str) -> None:
  """ValueError naming the first NaN/infinite/negative price or volume."""
  checks = [("close", True), ("vwap", True), ("volume", False)]
  checks += [(name, True) for name in ("high", "low") if name in values]
  for name, strict in checks:
    x = np.atleast_1d(values[name])
    bad = ~np.isfinite(x) | ((x <= 0) if strict else (x < 0))
    if bad.any():
      i = int(np.argmax(bad))
      kind = "a finite positive price" if strict else "a finite non-negative volume"
      where = f"{what} index {i}" if x.size > 1 else what
      raise ValueError(f"{where}: field {name!r} = {x[i]!r} is not {kind}")


def _check_gaps(gap_ms: np.ndarray, time_ms: np.ndarray, step_ms: int, what: str) -> None:
  """Bar open times must advance by whole bars (exactly one bar for intraday models)."""
  gap_ms, time_ms = np.atleast_1d(gap_ms), np.atleast_1d(time_ms)
  for bad, why in (
    (gap_ms <= 0, "is not after the previous bar's open"),
    (
      gap_ms % step_ms != 0,
      f"is not a whole number of the model's {step_ms} ms bars after the "
      "previous one: a bar of a different length",
    ),
    (
      (gap_ms != step_ms) & (step_ms < tables.MS_PER_DAY),
      "skips bars: send each missing bar as a zero-volume bar at the last close (as the data "
      "layer does)",
    ),
  ):
    if bad.any():
      i = int(np.argmax(bad))
      raise ValueError(
        f"{what}: field 'time' = {int(time_ms[i])} ({tables.ms_to_iso(time_ms[i])}) "
        f"{why} (previous open {int(time_ms[i] - gap_ms[i])})"
      )


def check_bar(policy: Policy, carry, bar) -> LiveBar:
  """Host-side checks of a new bar against the order's carry, then its jittable form.

  Args:
    policy: the Policy.
    carry: the order's Carry (or carries stacked on a leading axis, with bar fields [O]).
    bar: Bar, mapping or one-row polars table: time, close, volume, vwap (or notional),
      optionally length_ms.

  Returns:
    LiveBar for `step`.

  Raises:
    ValueError naming the field (and order index) of a bar whose time is not after the
    previous bar, skips bars, or has another length than the model's; whose price or volume
    is NaN, infinite or negative; or arriving after a single order completed (stacked orders
    that are done are left unchanged by `step`). `carry` is untouched.
  """
  values = _bar_arrays(bar)
  shape = np.shape(carry.day)
  try:
    values = {
      k: np.broadcast_to(v.reshape(np.shape(v) if v.size > 1 else ()), shape)
      for k, v in values.items()
    }
  except ValueError:
    raise ValueError(
      f"bar fields have shape {np.shape(values['time'])}, the orders {shape}"
    ) from None
  # Stacked orders that are done stay frozen in `step`; a single one gets a clear error.
  if not shape and bool(carry.done):
    raise ValueError("the order is already complete: start a new order")
  if "length_ms" in values and np.any(values["length_ms"] != policy.step_ms):
    raise ValueError(
      f"bar field 'length_ms' = {np.atleast_1d(values['length_ms'])[0]}: the model's "
      f"bars are {policy.step_ms} ms long"
    )
  previous = np.asarray(carry.day, np.int64) * tables.MS_PER_DAY + np.asarray(carry.ms, np.int64)
  _check_gaps(values["time"] - previous, values["time"], policy.step_ms, "bar")
  _check_values(values, "bar")
  t = values["time"]
  return LiveBar(
    close_2=split(values["close"]),
    vwap_2=split(values["vwap"]),
    volume_2=split(values["volume"]),
    calendar_C=features.calendar_features(t.reshape(-1), policy.step_ms)
    .reshape(shape + (5,))
    .astype(np.float32),
    gap=((t - previous) // policy.step_ms).astype(np.int32),
    day=(t // tables.MS_PER_DAY).astype(np.int32),
    ms=(t % tables.MS_PER_DAY).astype(np.int32),
  )


def check_history(policy: Policy, history_bars) -> dict[str, np.ndarray]:
  """Checked history arrays, cut to the bars whose features and volumes the order needs."""
  values = _bar_arrays(history_bars)
  if values["time"].ndim != 1:
    raise ValueError(
      f"history_bars must be a table of bars, got time of shape {values['time'].shape}"
    )
  n, lb = values["time"].size, policy.lookback
  if n < lb + 1:
    raise ValueError(
      f"history_bars has {n} bars; the model needs L={lb} lookback bars plus a "
      f"{policy.volume_window_ms} ms volume window before them"
    )
  _check_values(values, "history_bars")
  _check_gaps(np.diff(values["time"]), values["time"][1:], policy.step_ms, "history_bars")
  if "length_ms" in values and np.any(values["length_ms"] != policy.step_ms):
    raise ValueError(
      f"history_bars field 'length_ms': the model's bars are {policy.step_ms} ms long"
    )
  # As in the data layer (`features.warmup_bars`): the first lookback bar needs a full trailing
  # volume window, i.e. some bar at or before its open minus the span; older bars are not needed.
  time_N = values["time"]
  first = int(np.searchsorted(time_N, time_N[-lb] - policy.volume_window_ms, side="right")) - 1
  if first < 0:
    raise ValueError(
      f"history_bars starts at {tables.ms_to_iso(time_N[0])}: the model needs L={lb} "
      f"bars plus a full {policy.volume_window_ms} ms volume window before them, i.e. "
      f"bars from {tables.ms_to_iso(time_N[-lb] - policy.volume_window_ms)} on"
    )
  return {k: v[first:] for k, v in values.items() if k != "length_ms"}
