"""Online execution: a trained LEM on live orders, one bar at a time, with the batched model's decisions.

The batched model (lemjax/model.py) reads a whole window at once; a live order sees one bar at
a time. Each order keeps a small state pytree holding all that its next decision needs:
  * the encoder input buffer [T, F]: the history's features, then each executed bar's
    features as it arrives; positions not yet seen stay zero. The encoder is causal, so
    decision s, read at position L-1+s, never depends on them (SPEC section 2);
  * the encoder's incremental state (`online_encoder.Cache`: TKAN carries and attention
    keys/values of the positions seen): `start` prefills the L history positions in one pass,
    then each bar costs one encoder position (`online_encoder.extend`), not T;
  * the allocator's carry for every head and scenario (`allocation.init_carry`/`advance`);
  * a rolling buffer of recent volumes (the trailing-mean volume feature), the last close,
    the arrival price and the lookback mean volume; prices are float32 (hi, lo) pairs so
    that returns in bps come out as exact as the data layer's float64 ones;
  * the order's terms: head k, scenario, rate bounds, size.

  policy = load_policy("runs/crypto_intraday")
  state = start(policy, order, history_bars)        # host side: checks, history features
  child = next_child(state)                         # shares or cash to trade in bar 0
  live = check_bar(policy, state, bar)              # host side: ValueError naming a bad field
  state, out = step_jit(policy, state, live)        # pure: jit, vmap over orders (`step_many`)

`Executor` wraps these for one order; `save_state`/`load_state` let a restarted process
continue an order.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import time
from typing import Any, Mapping, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import polars as pl

from lemjax import allocation
from lemjax import config as config_lib
from lemjax import online_encoder
from lemjax import scenarios
from lemjax.config import ModelConfig
from lemjax.data import features
from lemjax.data import tables

_MS_PER_DAY = tables.MS_PER_DAY
_EMPTY_AGE = 2**30         # age (in bars) of an empty volume-buffer slot: never inside the window
_ONLINE_FEATURES = ("log_volume_rel", "return_bps", "price_vs_arrival_bps")  # then the calendar
if features.FEATURE_NAMES[:3] != _ONLINE_FEATURES or features.N_FEATURES != 8:
  raise ImportError(f"lemjax.execution computes the features {_ONLINE_FEATURES} + calendar, but the "
                    f"data layer now defines {features.FEATURE_NAMES}")


# ----------------------------------------------------------------------------- policy


@flax.struct.dataclass
class Policy:
  """Trained parameters and the static facts a live order needs (hashable, so jit can key on them)."""
  params: Any                                                     # LEM params {"encoder", "allocator"}
  model_config: ModelConfig = flax.struct.field(pytree_node=False)
  step_ms: int = flax.struct.field(pytree_node=False)            # bar length the model was trained on
  volume_window_ms: int = flax.struct.field(pytree_node=False)   # span of the trailing mean volume
  source: str = flax.struct.field(pytree_node=False, default="")  # checkpoint it came from

  @property
  def n_ahead(self) -> int:
    return self.model_config.n_ahead

  @property
  def lookback(self) -> int:
    return self.model_config.lookback

  @property
  def window_bars(self) -> int:
    """W: the most bars whose open lies in a trailing volume window (t - span, t]."""
    return max(1, math.ceil(self.volume_window_ms / self.step_ms))


def init_policy(model_config: ModelConfig, step_ms: int = 3_600_000,
                volume_window_ms: int = 7 * _MS_PER_DAY, seed: int = 0) -> Policy:
  """A randomly initialised policy (tests, latency benchmarks)."""
  from lemjax import train  # pylint: disable=g-import-not-at-top
  n, t, f = model_config.n_ahead, model_config.seq_len, model_config.encoder.n_features
  params = jax.jit(train.build_model(model_config).init)(
      jax.random.PRNGKey(seed), jnp.zeros((1, t, f)), jnp.zeros((1,)), jnp.ones((1,)),
      jnp.ones((1, n)), jnp.ones((1, n)))["params"]
  return Policy(params, model_config, int(step_ms), int(volume_window_ms), f"random(seed={seed})")


def _find_workdir(path: str) -> str:
  """The work directory holding config.json: `path` itself or a parent (e.g. .../checkpoints/best)."""
  here = os.path.abspath(path)
  if not os.path.exists(here):
    raise FileNotFoundError(f"{path}: no such work directory or checkpoint")
  for _ in range(4):
    if os.path.isfile(os.path.join(here, "config.json")):
      return here
    here = os.path.dirname(here)
  raise FileNotFoundError(f"{path}: no config.json in it or its parents; not a lemjax work directory "
                          "(train first with `python -m lemjax.main --mode=train ...`)")


def _model_config(saved: Mapping) -> ModelConfig:
  model = config_lib.saved_model_config(saved)
  if model.encoder.n_features != features.N_FEATURES:
    raise ValueError(f"config model.encoder.n_features={model.encoder.n_features}, but the data "
                     f"layer computes {features.N_FEATURES} features")
  return model


def load_policy(workdir_or_checkpoint: str, which: str = "best") -> Policy:
  """The trained policy of a work directory (its resolved config.json and best checkpoint).

  Args:
    workdir_or_checkpoint: a run's work directory, or a folder inside it (checkpoints/best).
    which: "best" (lowest validation loss, what the evaluation report uses) or "latest".

  Returns:
    Policy.

  Raises:
    FileNotFoundError when there is no config.json or checkpoint; ValueError when the saved
    config or parameter shapes do not match this code.
  """
  workdir = _find_workdir(workdir_or_checkpoint)
  with open(os.path.join(workdir, "config.json")) as f:
    saved = json.load(f)
  if "resolved" not in saved or "model" not in saved["resolved"]:
    raise ValueError(f"{workdir}/config.json has no resolved model config")
  resolved = saved["resolved"]
  model = _model_config(resolved["model"])
  data = resolved["data"]
  interval = "1d" if data.get("kind") == "daily" else (data.get("resample_to") or data["interval"])
  report_file = os.path.join(workdir, "data_report.json")
  if os.path.isfile(report_file):  # the bar length the data layer actually used
    with open(report_file) as f:
      interval = (json.load(f).get("report") or {}).get("interval") or interval
  params, where = _restore_params(workdir, resolved, model, which)
  _check_param_shapes(params, model, workdir)
  return Policy(params, model, tables.interval_ms(interval), tables.interval_ms(data["volume_window"]),
                where)


def _restore_params(workdir: str, resolved: Mapping, model: ModelConfig, which: str):
  """(params, description) of the best or latest checkpoint; the state's shapes come from
  `jax.eval_shape`, so nothing is compiled."""
  from lemjax import checkpoint as ckpt_lib  # pylint: disable=g-import-not-at-top
  from lemjax import train  # pylint: disable=g-import-not-at-top
  if which not in ("best", "latest"):
    raise ValueError(f"which={which!r} is not 'best' or 'latest'")
  directory = os.path.join(workdir, "checkpoints", which)
  if not os.path.isdir(directory) or not os.listdir(directory):
    raise FileNotFoundError(f"no {which} checkpoint in {directory}; train first with `python -m "
                            f"lemjax.main --mode=train --config=<experiment file> --workdir={workdir}`")
  train_cfg = config_lib.train_config(resolved.get("train", {}))
  loss_cfg = config_lib._build(config_lib.LossConfig, resolved.get("loss", {}))  # pylint: disable=protected-access
  key = jax.random.PRNGKey(0)
  target = jax.eval_shape(lambda: {**train.create_train_state(key, model, train_cfg, loss_cfg).arrays(),
                                   "rng": key})
  checkpointer = ckpt_lib.Checkpointer(workdir)
  try:
    step = checkpointer.latest_step(best=which == "best")
    arrays, _ = checkpointer.restore(target, best=which == "best")
    params = jax.tree.unflatten(jax.tree.structure(target["params"]), jax.tree.leaves(arrays["params"]))
  except Exception as err:  # pylint: disable=broad-except  # orbax raises several types
    reason = str(err).split(" Metadata keys")[0]  # orbax appends every saved key
    reason = reason if len(reason) < 400 else reason[:400] + " ..."
    raise ValueError(f"the checkpoint in {directory} does not match its config.json and this "
                     f"code (written by another model version or config?): {reason}") from None
  finally:
    checkpointer.close()
  return params, f"{directory} step {step}"


def _check_param_shapes(params, model: ModelConfig, where: str) -> None:
  from lemjax import train  # pylint: disable=g-import-not-at-top
  n, t, f = model.n_ahead, model.seq_len, model.encoder.n_features
  expected = jax.eval_shape(train.build_model(model).init, jax.random.PRNGKey(0), jnp.zeros((1, t, f)),
                            jnp.zeros((1,)), jnp.ones((1,)), jnp.ones((1, n)), jnp.ones((1, n)))["params"]
  got = dict(jax.tree_util.tree_flatten_with_path(params)[0])
  for path, leaf in jax.tree_util.tree_flatten_with_path(expected)[0]:
    if path not in got or tuple(got[path].shape) != tuple(leaf.shape):
      shape = None if path not in got else tuple(got[path].shape)
      raise ValueError(f"checkpoint in {where}: parameter {jax.tree_util.keystr(path)} has shape "
                       f"{shape}, its config.json implies {tuple(leaf.shape)}")


# ----------------------------------------------------------------------------- orders


@dataclasses.dataclass(frozen=True)
class Order:
  """A parent order's terms (SPEC section 1)."""
  side: str                      # "buy" or "sell"
  size: float                    # shares (target "quantity") or cash (target "notional")
  target: str = "quantity"       # "quantity" or "notional"
  benchmark: str = "vwap"        # "vwap" or "twap"
  min_bars: int | None = None    # minimum duration in bars, 1..N (None only with fixed_duration)
  max_bars: int | None = None    # maximum duration in bars: must be the model's N (None: N)
  r_min: float = 0.0             # per-bar lower bound, fraction of the order
  r_max: float = 1.0             # per-bar upper bound, fraction of the order
  fixed_duration: bool = False   # trade over all N bars, tracking the benchmark (head k = N)

  def check(self, n_ahead: int) -> tuple[int, int]:
    """(head k, scenario index); ValueError naming the first bad field."""
    try:
      scenario = scenarios.scenario_index(self.side, self.benchmark, self.target)
    except ValueError as err:
      raise ValueError(f"Order.{err}") from None
    if isinstance(self.size, bool) or not np.isfinite(self.size) or self.size <= 0:
      raise ValueError(f"Order.size={self.size!r} must be a finite positive number of shares or cash")
    if self.max_bars is not None and self.max_bars != n_ahead:
      raise ValueError(f"Order.max_bars={self.max_bars!r}: this model's maximum duration is N={n_ahead} "
                       "bars (train a model with model.n_ahead for another horizon)")
    if self.fixed_duration:
      if self.min_bars not in (None, n_ahead):
        raise ValueError(f"Order.min_bars={self.min_bars!r} contradicts fixed_duration=True (N={n_ahead})")
      head = n_ahead
    else:
      if self.min_bars is None:
        raise ValueError("Order.min_bars is required (1..N) unless fixed_duration=True")
      if isinstance(self.min_bars, bool) or int(self.min_bars) != self.min_bars \
          or not 1 <= self.min_bars <= n_ahead:
        raise ValueError(f"Order.min_bars={self.min_bars!r} must be an integer in [1, N={n_ahead}]")
      head = int(self.min_bars) - 1
    try:
      allocation.validate_bounds(self.r_min, self.r_max, n_ahead)
    except ValueError as err:
      raise ValueError(f"Order: {err}") from None
    return head, scenario


# ----------------------------------------------------------------------------- bars


class Bar(NamedTuple):
  """One bar as it arrives; `vwap` may be None when `notional` is given (vwap = notional / volume)."""
  time: int                      # open time, epoch ms UTC
  close: float
  volume: float                  # traded quantity (base asset / shares)
  vwap: float | None = None      # the bar's fill price
  notional: float | None = None  # traded value, used when vwap is None
  length_ms: int | None = None   # bar length, checked against the model's when given


class LiveBar(NamedTuple):
  """A checked bar in the jitted step's float32/int32 form (leading order axes allowed)."""
  close_2: jax.Array             # close as float32 (hi, lo)
  vwap_2: jax.Array              # fill price (hi, lo)
  volume_2: jax.Array            # volume (hi, lo)
  calendar_C: jax.Array          # the five calendar features, computed as the data layer does
  gap: jax.Array                 # int32, bars since the previous bar (1 for consecutive bars)
  day: jax.Array                 # int32, UTC day of the open (epoch days)
  ms: jax.Array                  # int32, ms of the open within its day


def _split(x) -> np.ndarray:
  """float64 -> float32 (hi, lo) with hi + lo == x to ~1e-14 relative; shape [..., 2]."""
  x = np.asarray(x, np.float64)
  hi = x.astype(np.float32)
  return np.stack([hi, (x - hi.astype(np.float64)).astype(np.float32)], axis=-1)


def _field(bar, name: str):
  value = bar.get(name) if isinstance(bar, Mapping) else getattr(bar, name, None)
  return None if value is None else np.asarray(value)


def _bar_arrays(bar) -> dict[str, np.ndarray]:
  """time (int64), close, volume, vwap (float64) and optional length_ms of a Bar/mapping/table."""
  if isinstance(bar, pl.DataFrame):
    bar = {c: bar[c].to_numpy() for c in bar.columns}
  out = {}
  for name in ("time", "close", "volume"):
    value = _field(bar, name)
    if value is None:
      raise ValueError(f"bar field {name!r} is missing")
    out[name] = value
  if not np.issubdtype(out["time"].dtype, np.integer):
    raise ValueError(f"bar field 'time' must be integer epoch milliseconds, got {out['time'].dtype}")
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
  return out


def _check_values(values: dict, what: str) -> None:
  """ValueError naming the first NaN/infinite/negative price or volume."""
  for name, strict in (("close", True), ("vwap", True), ("volume", False)):
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
      (gap_ms % step_ms != 0, f"is not a whole number of the model's {step_ms} ms bars after the "
                              "previous one: a bar of a different length"),
      ((gap_ms != step_ms) & (step_ms < _MS_PER_DAY),
       "skips bars: send each missing bar as a zero-volume bar at the last close (as the data "
       "layer does)")):
    if bad.any():
      i = int(np.argmax(bad))
      raise ValueError(f"{what}: field 'time' = {int(time_ms[i])} ({tables.ms_to_iso(time_ms[i])}) "
                       f"{why} (previous open {int(time_ms[i] - gap_ms[i])})")


def check_bar(policy: Policy, state: State, bar) -> LiveBar:
  """Host-side checks of a new bar against the order state, then its jittable form.

  Args:
    policy: the Policy.
    state: the order's State (or states stacked on a leading axis, with bar fields [O]).
    bar: Bar, mapping or one-row polars table: time, close, volume, vwap (or notional),
      optionally length_ms.

  Returns:
    LiveBar for `step`.

  Raises:
    ValueError naming the field (and order index) of a bar whose time is not after the
    previous bar, skips bars, or has another length than the model's; whose price or volume
    is NaN, infinite or negative; or arriving after a single order completed (stacked orders
    that are done are left unchanged by `step`). `state` is untouched.
  """
  values = _bar_arrays(bar)
  shape = np.shape(state.day)
  try:
    values = {k: np.broadcast_to(v.reshape(np.shape(v) if v.size > 1 else ()), shape)
              for k, v in values.items()}
  except ValueError:
    raise ValueError(f"bar fields have shape {np.shape(values['time'])}, the states {shape}") from None
  # Stacked orders that are done stay frozen in `step`; a single one gets a clear error.
  if not shape and bool(state.done):
    raise ValueError("the order is already complete: start a new order")
  if "length_ms" in values and np.any(values["length_ms"] != policy.step_ms):
    raise ValueError(f"bar field 'length_ms' = {np.atleast_1d(values['length_ms'])[0]}: the model's "
                     f"bars are {policy.step_ms} ms long")
  previous = np.asarray(state.day, np.int64) * _MS_PER_DAY + np.asarray(state.ms, np.int64)
  _check_gaps(values["time"] - previous, values["time"], policy.step_ms, "bar")
  _check_values(values, "bar")
  t = values["time"]
  return LiveBar(close_2=_split(values["close"]), vwap_2=_split(values["vwap"]),
                 volume_2=_split(values["volume"]),
                 calendar_C=features.calendar_features(t.reshape(-1), policy.step_ms)
                 .reshape(shape + (5,)).astype(np.float32),
                 gap=((t - previous) // policy.step_ms).astype(np.int32),
                 day=(t // _MS_PER_DAY).astype(np.int32), ms=(t % _MS_PER_DAY).astype(np.int32))


# ----------------------------------------------------------------------------- state


class State(NamedTuple):
  """One live order (or several, stacked on leading axes): a pytree of small arrays."""
  inputs_TxF: jax.Array          # encoder input buffer; unseen positions are zero
  encoder: online_encoder.Cache  # encoder state after the positions seen (batch of 1)
  carry: allocation.Carry        # allocator accounting, batch of 1, every head and scenario
  next_KxS: jax.Array            # allocation of the next bar at [head, scenario], zero elsewhere
  volume_W: jax.Array            # raw volumes of the latest W bars, newest last
  age_W: jax.Array               # int32, bars between each of them and the latest bar
  close_2: jax.Array             # last close (hi, lo)
  arrival_2: jax.Array           # arrival price: close of bar t0-1 (hi, lo)
  mean_volume_2: jax.Array       # mean volume of the L lookback bars (hi, lo): the volume scale
  day: jax.Array                 # int32, last bar's open: UTC day
  ms: jax.Array                  # int32, and ms within it
  head: jax.Array                # int32, k: min_bars - 1, or N for fixed duration
  scenario: jax.Array            # int32, index into scenarios.SCENARIOS
  r_min: jax.Array               # float32 per-bar bounds (fractions)
  r_max: jax.Array
  size: jax.Array                # float32 parent order size (shares or cash)
  done: jax.Array                # bool: complete and past its benchmark window


class StepOutput(NamedTuple):
  """What a caller needs after each bar (absolute prices; NaN before the first fill)."""
  child: jax.Array               # shares (quantity) or cash (notional) to trade in the next bar
  fraction: jax.Array            # the same as a fraction of the parent order
  done: jax.Array                # the order is complete and its benchmark window closed
  bars: jax.Array                # int32, bars executed so far
  remaining: jax.Array           # fraction of the order not yet traded
  price: jax.Array               # running achieved average price
  benchmark: jax.Array           # running benchmark (VWAP or TWAP of the bars executed so far)
  improvement_bps: jax.Array     # side * (1 - price / benchmark) * 1e4


def _history(policy: Policy, history_bars) -> dict[str, np.ndarray]:
  """Checked history arrays, cut to the bars whose features and volumes the order needs."""
  values = _bar_arrays(history_bars)
  if values["time"].ndim != 1:
    raise ValueError(f"history_bars must be a table of bars, got time of shape {values['time'].shape}")
  n, lb = values["time"].size, policy.lookback
  if n < lb + 1:
    raise ValueError(f"history_bars has {n} bars; the model needs L={lb} lookback bars plus a "
                     f"{policy.volume_window_ms} ms volume window before them")
  _check_values(values, "history_bars")
  _check_gaps(np.diff(values["time"]), values["time"][1:], policy.step_ms, "history_bars")
  if "length_ms" in values and np.any(values["length_ms"] != policy.step_ms):
    raise ValueError(f"history_bars field 'length_ms': the model's bars are {policy.step_ms} ms long")
  # As in the data layer (`features.warmup_bars`): the first lookback bar needs a full trailing
  # volume window, i.e. some bar at or before its open minus the span; older bars are not needed.
  time_N = values["time"]
  first = int(np.searchsorted(time_N, time_N[-lb] - policy.volume_window_ms, side="right")) - 1
  if first < 0:
    raise ValueError(f"history_bars starts at {tables.ms_to_iso(time_N[0])}: the model needs L={lb} "
                     f"bars plus a full {policy.volume_window_ms} ms volume window before them, i.e. "
                     f"bars from {tables.ms_to_iso(time_N[-lb] - policy.volume_window_ms)} on")
  return {k: v[first:] for k, v in values.items() if k != "length_ms"}


def start(policy: Policy, order: Order, history_bars) -> State:
  """A new order's state, arriving after the last history bar, with bar 0's decision made.

  Args:
    policy: the Policy.
    order: the Order (checked here).
    history_bars: bars up to the order's arrival (the last one is bar t0-1), oldest first: a
      polars table or mapping of arrays with time (epoch ms), close, volume and vwap (or
      notional); at least L bars plus the trailing volume window before them.

  Returns:
    State; `next_child(state)` is the size to trade in the first bar.
  """
  head, scenario = order.check(policy.n_ahead)
  hist = _history(policy, history_bars)
  lb, cfg = policy.lookback, policy.model_config
  table = pl.DataFrame({"time": hist["time"], "close": hist["close"], "volume": hist["volume"]})
  feats_NxF = features.bar_features(table, policy.step_ms, policy.volume_window_ms)[-lb:]
  arrival = hist["close"][-1]
  feats_NxF[:, features.ARRIVAL_FEATURE] = features.price_vs_arrival(
      hist["close"][None, -lb:], np.array([arrival]), lb)[0]
  mean_volume = hist["volume"][-lb:].sum() / lb
  if not mean_volume > 0:
    raise ValueError(f"history_bars: the last L={lb} bars have no volume; no order can start here")
  inputs_TxF = np.zeros((cfg.seq_len, features.N_FEATURES), np.float32)
  inputs_TxF[:lb] = feats_NxF
  w = policy.window_bars
  volume_W, age_W = np.zeros(w, np.float32), np.full(w, _EMPTY_AGE, np.int32)
  tail = slice(-min(w, hist["time"].size), None)
  volume_W[tail] = hist["volume"][tail]
  age_W[tail] = (hist["time"][-1] - hist["time"][tail]) // policy.step_ms
  k, s = policy.n_ahead + 1, scenarios.NUM_SCENARIOS
  state = State(
      inputs_TxF=inputs_TxF, encoder=online_encoder.init_cache(cfg.encoder, 1, cfg.seq_len),
      carry=allocation.init_carry(cfg.allocator, 1),
      next_KxS=np.zeros((k, s), np.float32), volume_W=volume_W, age_W=age_W,
      close_2=_split(arrival), arrival_2=_split(arrival), mean_volume_2=_split(mean_volume),
      day=np.int32(hist["time"][-1] // _MS_PER_DAY), ms=np.int32(hist["time"][-1] % _MS_PER_DAY),
      head=np.int32(head), scenario=np.int32(scenario), r_min=np.float32(order.r_min),
      r_max=np.float32(order.r_max), size=np.float32(order.size), done=np.bool_(False))
  return _first_decision_jit(policy, state)


def next_child(state: State):
  """(child size, fraction) to trade in the next bar: shares or cash, and of the parent order.

  Works for one state or states stacked on leading axes.
  """
  k, s = state.next_KxS.shape[-2:]
  flat = jnp.reshape(state.next_KxS, state.next_KxS.shape[:-2] + (k * s,))
  idx = jnp.asarray(state.head * s + state.scenario, jnp.int32)
  frac = jnp.take_along_axis(flat, idx[..., None], axis=-1)[..., 0]
  frac = jnp.where(state.done, 0.0, frac)
  return frac * state.size, frac


# ----------------------------------------------------------------------------- the pure step


def _ratio(a_2, b_2):
  """float32 a / b of (hi, lo) pairs, correcting the quotient of the his by the los."""
  q = a_2[0] / b_2[0]
  return q + (a_2[1] - q * b_2[1]) / b_2[0]


def _rel_bps(a_2, b_2):
  """(a / b - 1) * 1e4 from (hi, lo) pairs without float32 cancellation (a - b is near exact)."""
  return 1e4 * ((a_2[0] - b_2[0]) + (a_2[1] - b_2[1])) / b_2[0]


def _own_head(tree, head, scenario, k: int, s: int):
  """Slices every leaf with adjacent [K, S] axes (allocator parameters, carry) to [1, 1] at the
  order's (head, scenario); other leaves pass through.

  Heads and scenarios are independent MLPs with independent accounting, so an order's decision
  needs only its own slice. Vmapped over orders at different steps, picking a traced step's
  parameters copies them per order: cut to one head first, that is one small MLP per order
  instead of all K x S (1024 orders at paper size: 38 GB).
  """
  def pick(a):
    axes = [i for i in range(a.ndim - 1) if a.shape[i:i + 2] == (k, s)]
    if not axes:
      return a
    a = jax.lax.dynamic_slice_in_dim(a, head, 1, axis=axes[0])
    return jax.lax.dynamic_slice_in_dim(a, scenario, 1, axis=axes[0] + 1)
  return jax.tree.map(pick, tree)


def _decide_next(policy: Policy, ctx_H, carry, s, state: State):
  """Allocations [K, S] of bar s from the context at position L-1+s, decided for the order's own
  head and scenario (zero elsewhere): the model's decision for s <= N-2, the remainder at N-1."""
  cfg = policy.model_config
  n, k, sc = cfg.n_ahead, cfg.n_ahead + 1, scenarios.NUM_SCENARIOS
  s_dec = jnp.clip(s, 0, n - 2)
  own = functools.partial(_own_head, head=state.head, scenario=state.scenario, k=k, s=sc)
  a = allocation.decide(allocation.step_params(own(policy.params["allocator"]), s_dec),
                        cfg.allocator, own(carry), ctx_H[None], s_dec, state.r_min[None],
                        state.r_max[None])[0, 0, 0]
  a = jnp.where(s == n - 1, carry.remaining_BxKxS[0, state.head, state.scenario], a)
  a_KxS = jnp.zeros((k, sc), jnp.float32).at[state.head, state.scenario].set(a)
  return jnp.where(s >= n, 0.0, a_KxS)


def _first_decision(policy: Policy, state: State) -> State:
  """Prefills the encoder with the L history positions (one batched pass), then decides bar 0."""
  cfg = policy.model_config
  ctx_1xLxH, cache = online_encoder.prefill(cfg.encoder, policy.params["encoder"],
                                            state.inputs_TxF[None, :cfg.lookback], cfg.seq_len)
  next_KxS = _decide_next(policy, ctx_1xLxH[0, -1], state.carry, 0, state)
  return state._replace(encoder=cache, next_KxS=next_KxS)


def _feature_row(policy: Policy, state: State, bar: LiveBar, volume_W, age_W):
  """The new bar's features [F], as lemjax/data/features.py computes them for training."""
  inside_W = age_W.astype(jnp.float32) < policy.volume_window_ms / policy.step_ms
  mean = jnp.sum(jnp.where(inside_W, volume_W, 0.0)) / jnp.sum(inside_W.astype(jnp.float32))
  ratio = jnp.where(mean > 0, bar.volume_2[0] / jnp.where(mean > 0, mean, 1.0), 0.0)
  head_3 = jnp.stack([jnp.log(ratio + features.VOLUME_FLOOR), _rel_bps(bar.close_2, state.close_2),
                      _rel_bps(bar.close_2, state.arrival_2)])
  return jnp.concatenate([head_3, bar.calendar_C.astype(jnp.float32)])


def _output(state: State) -> StepOutput:
  carry, k, sc = state.carry, state.head, state.scenario
  shares, cash = carry.shares_BxKxS[0, k, sc], carry.cash_BxKxS[0, k, sc]
  price = jnp.where(shares > 0, cash / jnp.where(shares > 0, shares, 1.0), jnp.nan)
  bars = carry.step.astype(jnp.float32)
  twap = jnp.where(bars > 0, carry.mkt_price_sum_B[0] / jnp.maximum(bars, 1.0), jnp.nan)
  vol = carry.mkt_volume_B[0]
  vwap = jnp.where(vol > 0, carry.mkt_notional_B[0] / jnp.where(vol > 0, vol, 1.0), twap)
  bench = jnp.where(jnp.asarray(scenarios.IS_TWAP_S)[sc], twap, vwap)
  side = jnp.asarray(scenarios.SIDE_SIGN_S)[sc]
  child, frac = next_child(state)
  arrival = state.arrival_2[0] + state.arrival_2[1]
  return StepOutput(child=child, fraction=frac, done=state.done, bars=carry.step,
                    remaining=carry.remaining_BxKxS[0, k, sc], price=price * arrival,
                    benchmark=bench * arrival, improvement_bps=side * (1.0 - price / bench) * 1e4)


def step(policy: Policy, state: State, bar: LiveBar) -> tuple[State, StepOutput]:
  """Executes the bar that just closed and decides the next one. Pure: jit it, vmap it over orders.

  Args:
    policy: the Policy (its params are traced; its configs are static).
    state: one order's State.
    bar: the bar, as `check_bar` returns it (validate on the host first).

  Returns:
    (new state, StepOutput with the child size for the next bar, the done flag and the running
    achieved price, benchmark and improvement). Once done, the state no longer changes.
  """
  cfg = policy.model_config
  n, lb = cfg.n_ahead, cfg.lookback
  s = state.carry.step
  # Accounting of bar s at the allocations decided before it opened (prices vs arrival).
  price = _ratio(bar.vwap_2, state.arrival_2)
  volume = _ratio(bar.volume_2, state.mean_volume_2)
  carry = allocation.advance(state.carry, state.next_KxS[None], price[None], volume[None])
  # The bar's features go to encoder position L + s; the last bar's (s = N-1) lies past T, unread.
  age_W = jnp.minimum(state.age_W + bar.gap, _EMPTY_AGE)
  volume_W = jnp.concatenate([state.volume_W[1:], bar.volume_2[:1]])
  age_W = jnp.concatenate([age_W[1:], jnp.zeros((1,), jnp.int32)])
  row_F = _feature_row(policy, state, bar, volume_W, age_W)
  inputs_TxF = state.inputs_TxF.at[lb + s].set(row_F, mode="drop")
  # One encoder position (L + s, the cache's next) gives the context of decision s + 1.
  ctx_1xH, cache = online_encoder.extend(cfg.encoder, policy.params["encoder"], state.encoder,
                                         row_F[None])
  next_KxS = _decide_next(policy, ctx_1xH[0], carry, s + 1, state)
  # Done once complete and past the minimum period (the benchmark window has closed).
  remaining = carry.remaining_BxKxS[0, state.head, state.scenario]
  done = (carry.step >= n) | ((remaining <= 0) & (carry.step > state.head))
  new = state._replace(inputs_TxF=inputs_TxF, encoder=cache, carry=carry, next_KxS=next_KxS,
                       volume_W=volume_W, age_W=age_W, close_2=bar.close_2, day=bar.day, ms=bar.ms,
                       done=done)
  new = jax.tree.map(lambda x, y: jnp.where(state.done, y, x), new, state)
  return new, _output(new)


step_jit = jax.jit(step)
step_many = jax.jit(jax.vmap(step, in_axes=(None, 0, 0)))
_first_decision_jit = jax.jit(_first_decision)


def output(state: State) -> StepOutput:
  """The StepOutput of a state (e.g. right after `start` or `load_state`)."""
  return _output(state) if jnp.ndim(state.head) == 0 else jax.vmap(_output)(state)


def stack(items):
  """Stacks States (or LiveBars) of several orders on a new leading axis, for `step_many`."""
  return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *items)


# ----------------------------------------------------------------------------- saving


def state_to_dict(state: State) -> dict[str, np.ndarray]:
  """The state as named numpy arrays (e.g. for np.savez or a database row)."""
  return {jax.tree_util.keystr(path): np.asarray(leaf)
          for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]}


def state_from_dict(policy: Policy, arrays: Mapping[str, np.ndarray]) -> State:
  """Inverse of `state_to_dict`; ValueError when the arrays do not fit this policy."""
  template = jax.eval_shape(_template_state, policy)
  lead = np.shape(arrays.get(".done", np.zeros(())))
  leaves = []
  for path, leaf in jax.tree_util.tree_flatten_with_path(template)[0]:
    name = jax.tree_util.keystr(path)
    if name not in arrays:
      raise ValueError(f"saved state lacks {name!r}: not a lemjax.execution state")
    value = np.asarray(arrays[name])
    if value.shape != lead + tuple(leaf.shape) or value.dtype != leaf.dtype:
      raise ValueError(f"saved state {name!r} is {value.dtype}{list(value.shape)}, this policy "
                       f"needs {leaf.dtype}{list(lead + tuple(leaf.shape))}")
    leaves.append(value)
  return jax.tree.unflatten(jax.tree.structure(template), leaves)


def _template_state(policy: Policy) -> State:
  cfg, k, s, w = policy.model_config, policy.n_ahead + 1, scenarios.NUM_SCENARIOS, policy.window_bars
  f32, i32 = jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32)
  return State(jnp.zeros((cfg.seq_len, features.N_FEATURES)),
               online_encoder.init_cache(cfg.encoder, 1, cfg.seq_len),
               allocation.init_carry(cfg.allocator, 1), jnp.zeros((k, s)), jnp.zeros((w,)),
               jnp.zeros((w,), jnp.int32), jnp.zeros(2), jnp.zeros(2), jnp.zeros(2), i32, i32, i32,
               i32, f32, f32, f32, jnp.zeros((), bool))


def save_state(path: str, state: State) -> None:
  """Writes the state to an .npz file (atomically: a crash never leaves half a state)."""
  tmp = f"{path}.tmp.npz"
  np.savez(tmp, **state_to_dict(state))
  os.replace(tmp, path)


def load_state(policy: Policy, path: str) -> State:
  with np.load(path) as data:
    return state_from_dict(policy, {k: data[k] for k in data.files})


# ----------------------------------------------------------------------------- convenience


class Executor:
  """One live order: `on_bar` checks each bar, then runs the jitted step; the state is `self.state`."""

  def __init__(self, policy: Policy, state: State):
    self.policy, self.state = policy, state

  @classmethod
  def start(cls, policy: Policy, order: Order, history_bars) -> "Executor":
    return cls(policy, start(policy, order, history_bars))

  @classmethod
  def load(cls, policy: Policy, path: str) -> "Executor":
    return cls(policy, load_state(policy, path))

  @property
  def status(self) -> StepOutput:
    return jax.tree.map(np.asarray, output(self.state))

  def on_bar(self, bar) -> StepOutput:
    """Accounts for the bar that just closed; returns the next child order and running prices.

    Raises ValueError (from `check_bar`) with the state unchanged for a bad bar.
    """
    live = check_bar(self.policy, self.state, bar)
    state, out = step_jit(self.policy, self.state, live)
    self.state = state
    return jax.tree.map(np.asarray, out)

  def save(self, path: str) -> None:
    save_state(path, self.state)


# ----------------------------------------------------------------------------- latency


def synthetic_history(policy: Policy, n_bars: int | None = None, seed: int = 0) -> dict:
  """A random-walk bar table long enough to start an order, plus its next N bars."""
  n_bars = n_bars or policy.lookback + policy.window_bars + 2 + policy.n_ahead
  rng = np.random.default_rng(seed)
  close = 100.0 * np.exp(np.cumsum(0.002 * rng.standard_normal(n_bars)))
  return {"time": 1_700_000_000_000 // policy.step_ms * policy.step_ms
                  + policy.step_ms * np.arange(n_bars, dtype=np.int64),
          "close": close, "volume": rng.lognormal(3.0, 0.5, n_bars),
          "vwap": close * (1 + 0.0005 * rng.standard_normal(n_bars))}


def step_latency(policy: Policy, n_orders: int = 1, repeats: int = 20) -> dict:
  """Median wall time of one `step` for `n_orders` live orders (vmapped when > 1), after warm-up.

  Args:
    policy: the Policy (its size sets the cost).
    n_orders: orders stepped together.
    repeats: timed calls (>= 1) after one warm-up call.

  Returns:
    dict: n_orders, repeats, median_s, p10_s, p90_s, device.
  """
  bars = synthetic_history(policy)
  n_hist = bars["time"].size - policy.n_ahead
  state = start(policy, Order("buy", 1.0, min_bars=1), {k: v[:n_hist] for k, v in bars.items()})
  live = check_bar(policy, state, {k: v[n_hist] for k, v in bars.items()})
  if n_orders > 1:
    k = policy.n_ahead + 1
    state = jax.tree.map(lambda x: np.repeat(np.asarray(x)[None], n_orders, axis=0), state)
    state = state._replace(head=(np.arange(n_orders) % k).astype(np.int32),
                           scenario=(np.arange(n_orders) % scenarios.NUM_SCENARIOS).astype(np.int32))
    live = jax.tree.map(lambda x: np.repeat(np.asarray(x)[None], n_orders, axis=0), live)
    fn = step_many
  else:
    fn = step_jit
  state, live = jax.device_put((state, live))
  jax.block_until_ready(fn(policy, state, live))
  times = []
  for _ in range(max(int(repeats), 1)):
    tick = time.perf_counter()
    jax.block_until_ready(fn(policy, state, live))
    times.append(time.perf_counter() - tick)
  return {"n_orders": int(n_orders), "repeats": len(times), "median_s": float(np.median(times)),
          "p10_s": float(np.percentile(times, 10)), "p90_s": float(np.percentile(times, 90)),
          "device": str(jax.devices()[0])}
