"""Times the authors' `lems` package (the `parity` extra) on random inputs of a configuration's shapes.

`lemjax.bench --peer` runs `time_peer` in a fresh subprocess beside each of its own
measurements, so that the two are timed on the same machine within minutes of each other.
The peer is `lems.models.LargeExecutionModel` compiled with `lems.loss.lem_loss` and Adam
(`jit_compile=True`, Keras on its JAX backend), timed with `train_on_batch`.
"""

from __future__ import annotations

import importlib.util
import os
import time
from importlib import metadata

import numpy as np


def available() -> bool:
  """True when `lems` and Keras are installed (`pip install -e ".[parity]"`)."""
  return all(importlib.util.find_spec(name) is not None for name in ("lems", "keras"))


def peer_inputs(batch: int, lookback: int, n_ahead: int, n_features: int, seed: int = 0):
  """Random (x, y) in the package's layout.

  x = [inputs [B, T, F + 2], r_min [B, 1], r_max [B, 1]]: the package reads the bar's price and
  volume from the last two input columns and replaces them by the order's rate bounds, so its
  encoder sees F + 2 columns where lemjax's sees F (the bounds enter lemjax's allocator).
  y = `lems.add_config_to_y` of (volumes, prices) of the N execution bars, [B, N, N + 1, 4, 2].
  """
  import lems

  r = np.random.default_rng(seed)
  t = lookback + n_ahead - 1
  prices_BxT = np.exp(np.cumsum(0.002 * r.standard_normal((batch, t)), axis=1))
  volumes_BxT = r.uniform(0.5, 1.5, size=(batch, t))
  inputs = np.concatenate(
    [r.standard_normal((batch, t, n_features)), prices_BxT[..., None], volumes_BxT[..., None]], -1
  ).astype(np.float32)
  r_min, r_max = np.zeros((batch, 1), np.float32), np.ones((batch, 1), np.float32)
  execution = np.stack([volumes_BxT[:, -n_ahead:], prices_BxT[:, -n_ahead:]], axis=-1)
  return [inputs, r_min, r_max], lems.add_config_to_y(execution).astype(np.float32)


def time_peer(shapes: dict, steps: int, warmup: int) -> dict:
  """Compile time and median train-step time of the `lems` model at `shapes`.

  Args:
    shapes: batch_size, lookback, n_ahead, hidden, embed_dim, attention_heads,
      allocator_width, n_features (as `lemjax.bench.run_one` reports them).
    steps: timed `train_on_batch` calls (>= 1); the median is reported.
    warmup: untimed calls after the first (compiling) one.

  Returns:
    dict: package, version, compile_s (first call, compilation included), step_s_median,
    step_s_all, samples_per_s, loss_finite.
  """
  if steps < 1 or warmup < 0:
    raise ValueError(f"steps={steps} must be >= 1 and warmup={warmup} >= 0")
  if shapes["n_ahead"] < 3:
    raise ValueError(f"n_ahead={shapes['n_ahead']}: the lems model needs at least 3 bars")
  os.environ.setdefault("KERAS_BACKEND", "jax")
  import keras
  import lems

  x, y = peer_inputs(
    shapes["batch_size"], shapes["lookback"], shapes["n_ahead"], shapes["n_features"]
  )
  model = lems.LargeExecutionModel(
    lookback=shapes["lookback"],
    n_ahead=shapes["n_ahead"],
    hidden_size=shapes["hidden"],
    num_embedding=shapes["embed_dim"],
    num_heads=shapes["attention_heads"],
    fused_mlp_hidden_dim=shapes["allocator_width"],
  )
  model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=lems.lem_loss, jit_compile=True)
  tick = time.perf_counter()
  loss = model.train_on_batch(x, y)
  compile_s = time.perf_counter() - tick
  for _ in range(warmup):
    loss = model.train_on_batch(x, y)
  times = []
  for _ in range(steps):
    tick = time.perf_counter()
    loss = model.train_on_batch(x, y)  # returns a host float: each call has finished
    times.append(time.perf_counter() - tick)
  step_s = float(np.median(times))
  return {
    "package": "lems",
    "version": metadata.version("lems"),
    "compile_s": compile_s,
    "step_s_median": step_s,
    "step_s_all": times,
    "samples_per_s": shapes["batch_size"] / step_s,
    "loss_finite": bool(np.isfinite(float(np.ravel(loss)[0]))),
  }
