"""Benchmark: compile time, train-step throughput, peak memory, parameters and decision latency.

Run:  make bench                      (paper and smoke sizes; writes bench.json)
      make bench ARGS="--configs=smoke --steps=10"
      make bench ARGS="--configs=paper --override=model.allocator.variant=shared"
      make bench ARGS="--config=experiments/djia_multiday.py:smoke"   (an experiment, as in main)
      make bench ARGS="--configs= --rl_env_orders=1,1024,16384"   (RL environment steps/s only)
      make bench ARGS="--configs=paper --peer"   (the `lems` package beside it, and the ratio)
      make bench ARGS="--configs=paper --breakdown=false --scaling [--peer]"
          (compile and step time for N in 12, 24, 48 and B in 64, 256, 1024 -> bench_scaling.png)
Each configuration runs in a fresh subprocess so that its compile time and peak memory are its
own. The same command runs on CPU and, unchanged, on a GPU (peak memory is then the device's).
The input pipeline (window gathering and transfer) is timed at the largest benchmarked batch.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import resource
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app
from absl import flags

from experiments import base
from lemjax import allocation
from lemjax import config as config_lib
from lemjax import experiment
from lemjax import objectives
from lemjax import online
from lemjax import peer
from lemjax import plots
from lemjax import scenarios
from lemjax import train
from lemjax.data import Sampler
from lemjax.data import features
from lemjax.encoder import Encoder
from lemjax.model import model_batch

_CONFIGS = flags.DEFINE_list(
  "configs",
  ["paper", "smoke"],
  "Configurations to run: sizes of the base config (paper, smoke), or experiment files as "
  "lemjax.main's --config takes them (experiments/x.py:smoke; --config is an alias).",
)
_STEPS = flags.DEFINE_integer("steps", 10, "Timed train steps (the median is reported).")
_WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed train steps after compilation.")
_OVERRIDE = flags.DEFINE_list(
  "override",
  [],
  "key=value config overrides, e.g. model.allocator.variant=shared,train.batch_size=128.",
)
_BREAKDOWN = flags.DEFINE_bool(
  "breakdown", True, "Also time encoder, allocator+loss and optimiser separately (extra compiles)."
)
_LATENCY = flags.DEFINE_list("latency_orders", ["1", "1024"], "Live orders per timed decision.")
_OUT = flags.DEFINE_string("out", "bench.json", "Output JSON file.")
_CHILD = flags.DEFINE_string("child", "", "Internal: run one configuration and print its JSON.")
_PEER = flags.DEFINE_bool(
  "peer",
  False,
  "Also time the installed `lems` package (the `parity` extra) at the same shapes, each in a "
  "fresh subprocess right after lemjax's, and print the samples/s ratio.",
)
_SCALING = flags.DEFINE_bool(
  "scaling",
  False,
  "Also sweep N (--scaling_n, at the first B) and B (--scaling_b, at the first N) on the first "
  "of --configs: compile and step time into bench.json and --plot.",
)
_SCALING_N = flags.DEFINE_list("scaling_n", ["12", "24", "48"], "N (execution bars) of the sweep.")
_SCALING_B = flags.DEFINE_list("scaling_b", ["64", "256", "1024"], "Batch sizes of the sweep.")
_PLOT = flags.DEFINE_string("plot", "bench_scaling.png", "Figure of the scaling sweep.")
_PIPELINE_BATCHES = flags.DEFINE_integer(
  "pipeline_batches",
  20,
  "Batches gathered to time the input pipeline at the largest benchmarked batch (0: skip).",
)
_PEER_CHILD = flags.DEFINE_string("peer_child", "", "Internal: time `lems` at these JSON shapes.")
_RL_ENV = flags.DEFINE_list(
  "rl_env_orders",
  [],
  "Also time the RL execution environment's vmapped "
  "steps/s at these numbers of episodes, e.g. 1,1024,16384 (--configs= skips the LEM).",
)

N_FEATURES = features.N_FEATURES
_MARK = "BENCH_RESULT "


# --- Configurations -------------------------------------------------------------------------------


def _parse_value(text: str):
  try:
    return json.loads(text)
  except json.JSONDecodeError:
    return text


def make_config(name: str, overrides: list[str]):
  """The ConfigDict of `name` with `overrides` applied (an unknown key raises ValueError).

  Args:
    name: a size of the base config ("paper", "smoke") or an experiment file with an optional
      variant, "experiments/djia_multiday.py:smoke", as lemjax.main's --config takes it.
    overrides: "section.key=value" strings; values parse as JSON, else stay strings.
  """
  if name.partition(":")[0].endswith(".py"):
    config = config_lib.load_experiment(name)
  else:
    config = base.with_variant(base.get_config(), name)
  for item in overrides:
    key, _, value = item.partition("=")
    node, *path = key.strip().split(".")
    target = config[node]
    for part in path[:-1]:
      target = target[part]
    target[path[-1]] = _parse_value(value)
  config_lib.check_config(config)
  return config


def synthetic_batch(batch: int, seq_len: int, n_ahead: int, seed: int = 0) -> dict:
  """A random Batch of the model's shapes: prices near 1, positive volumes."""
  r = np.random.default_rng(seed)
  return {
    "inputs": r.normal(size=(batch, seq_len, N_FEATURES)).astype(np.float32),
    "prices": (1.0 + 0.01 * r.normal(size=(batch, n_ahead))).astype(np.float32),
    "volumes": r.uniform(0.5, 1.5, size=(batch, n_ahead)).astype(np.float32),
  }


# --- Measurements ---------------------------------------------------------------------------------


def _timed(fn, *args, repeats: int) -> list[float]:
  """Wall times of `repeats` blocking calls (after the caller's warm-up)."""
  times = []
  for _ in range(repeats):
    tick = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - tick)
  return times


def _compiled(fn, *args):
  tick = time.perf_counter()
  compiled = jax.jit(fn).lower(*args).compile()
  return compiled, time.perf_counter() - tick


def breakdown(state, batch: dict, mcfg, repeats: int) -> dict:
  """Median seconds of the step's parts, each jitted alone: encoder forward+backward,
  allocator scan forward+backward (from a fixed context), loss forward+backward (from fixed
  allocations), optimiser update."""
  enc = Encoder(mcfg.encoder)
  b = batch["prices"].shape[0]
  r_min, r_max = jnp.zeros((b,)), jnp.ones((b,))
  ctx = enc.apply({"params": state.params["encoder"]}, batch["inputs"])
  cot = jnp.ones_like(ctx) / ctx.size

  def encoder_grad(p, x):
    return jax.grad(lambda p: jnp.sum(enc.apply({"params": p}, x) * cot))(p)

  def allocate(p, c):
    return allocation.allocate(
      p, mcfg.allocator, mcfg.lookback, c, r_min, r_max, batch["prices"], batch["volumes"]
    )

  alloc = allocate(state.params["allocator"], ctx)
  alloc_cot = jnp.ones_like(alloc) / alloc.size

  def allocator_grad(p, c):
    return jax.grad(lambda p, c: jnp.sum(allocate(p, c) * alloc_cot), argnums=(0, 1))(p, c)

  def loss_grad(a):
    return jax.grad(
      lambda a: objectives.lem_loss(a, batch["prices"], batch["volumes"], state.loss_config)[0]
    )(a)

  def optimizer(params, opt_state, grads):
    updates, opt_state = state.tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  parts = {
    "encoder_fwd_bwd": (encoder_grad, state.params["encoder"], batch["inputs"]),
    "allocator_scan_fwd_bwd": (allocator_grad, state.params["allocator"], ctx),
    "loss_fwd_bwd": (loss_grad, alloc),
    "optimizer_update": (optimizer, state.params, state.opt_state, state.params),
  }
  out = {}
  for name, (fn, *args) in parts.items():
    compiled, _ = _compiled(fn, *args)
    jax.block_until_ready(compiled(*args))
    out[name + "_s"] = float(np.median(_timed(compiled, *args, repeats=repeats)))
  return out


def same_step_latency(mcfg, params, n_orders: int, repeats: int) -> dict:
  """Median seconds of one decision for `n_orders` orders at the same step, batched: the
  encoder over each order's window, then `allocation.decide` (a lower bound for the API)."""
  enc, acfg, s = Encoder(mcfg.encoder), mcfg.allocator, mcfg.n_ahead // 2

  def decide(params, inputs_BxTxF, carry, r_min_B, r_max_B):
    ctx_BxTxH = enc.apply({"params": params["encoder"]}, inputs_BxTxF)
    return allocation.decide(
      allocation.step_params(params["allocator"], s),
      acfg,
      carry,
      ctx_BxTxH[:, mcfg.lookback - 1 + s],
      s,
      r_min_B,
      r_max_B,
    )

  batch = synthetic_batch(n_orders, mcfg.seq_len, mcfg.n_ahead, seed=1)
  args = (
    params,
    jnp.asarray(batch["inputs"]),
    allocation.init_carry(acfg, n_orders),
    jnp.zeros((n_orders,)),
    jnp.ones((n_orders,)),
  )
  compiled, _ = _compiled(decide, *args)
  jax.block_until_ready(compiled(*args))
  return {
    "n_orders": n_orders,
    "median_s": float(np.median(_timed(compiled, *args, repeats=repeats))),
  }


def synthetic_history(policy: online.Policy, n_bars: int | None = None, seed: int = 0) -> dict:
  """A random-walk bar table long enough to start an order, plus its next N bars."""
  n_bars = n_bars or policy.lookback + policy.window_bars + 2 + policy.n_ahead
  rng = np.random.default_rng(seed)
  close = 100.0 * np.exp(np.cumsum(0.002 * rng.standard_normal(n_bars)))
  return {
    "time": 1_700_000_000_000 // policy.step_ms * policy.step_ms
    + policy.step_ms * np.arange(n_bars, dtype=np.int64),
    "close": close,
    "volume": rng.lognormal(3.0, 0.5, n_bars),
    "vwap": close * (1 + 0.0005 * rng.standard_normal(n_bars)),
  }


def step_latency(policy: online.Policy, n_orders: int = 1, repeats: int = 20) -> dict:
  """Median wall time of one online `step` for `n_orders` live orders (vmapped when > 1),
  after warm-up.

  Args:
    policy: the Policy (its size sets the cost).
    n_orders: orders stepped together.
    repeats: timed calls (>= 1) after one warm-up call.

  Returns:
    dict: n_orders, repeats, median_s, p10_s, p90_s, device.
  """
  bars = synthetic_history(policy)
  n_hist = bars["time"].size - policy.n_ahead
  carry = online.start(
    policy, online.Order("buy", 1.0, min_bars=1), {k: v[:n_hist] for k, v in bars.items()}
  )
  live = online.check_bar(policy, carry, {k: v[n_hist] for k, v in bars.items()})
  if n_orders > 1:
    k = policy.n_ahead + 1
    carry = jax.tree.map(lambda x: np.repeat(np.asarray(x)[None], n_orders, axis=0), carry)
    carry = carry._replace(
      head=(np.arange(n_orders) % k).astype(np.int32),
      scenario=(np.arange(n_orders) % scenarios.NUM_SCENARIOS).astype(np.int32),
    )
    live = jax.tree.map(lambda x: np.repeat(np.asarray(x)[None], n_orders, axis=0), live)
    fn = online.step_many
  else:
    fn = online.step_jit
  carry, live = jax.device_put((carry, live))
  jax.block_until_ready(fn(policy, carry, live))
  times = _timed(fn, policy, carry, live, repeats=max(int(repeats), 1))
  return {
    "n_orders": int(n_orders),
    "repeats": len(times),
    "median_s": float(np.median(times)),
    "p10_s": float(np.percentile(times, 10)),
    "p90_s": float(np.percentile(times, 90)),
    "device": str(jax.devices()[0]),
  }


def peak_memory_bytes() -> dict:
  """Peak device memory where the backend reports it (GPU), and the process's peak RSS."""
  out = {"peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
  stats = jax.local_devices()[0].memory_stats() or {}
  if "peak_bytes_in_use" in stats:
    out["peak_device_bytes"] = int(stats["peak_bytes_in_use"])
  return out


def run_one(
  name: str,
  overrides: list[str],
  steps: int,
  warmup: int,
  with_breakdown: bool,
  latency_orders: list[int],
) -> dict:
  """All measurements of one configuration (in this process)."""
  config = make_config(name, overrides)
  cfgs = experiment.resolve_configs(config, N_FEATURES)
  mcfg, tcfg = cfgs["model"], cfgs["train"]
  tick = time.perf_counter()
  state = train.create_train_state(jax.random.PRNGKey(0), mcfg, tcfg, cfgs["loss"])
  jax.block_until_ready(state.opt_state)
  init_s = time.perf_counter() - tick
  batch = jax.device_put(synthetic_batch(tcfg.batch_size, mcfg.seq_len, mcfg.n_ahead))
  rng = jax.random.PRNGKey(1)
  n_params = int(sum(x.size for x in jax.tree.leaves(state.params)))
  n_alloc = int(sum(x.size for x in jax.tree.leaves(state.params["allocator"])))
  # --- Compile, warm up, then time single steps (each blocks, so each time is one step).
  # CPU time next to wall time: on a shared machine it is the steadier of the two.
  tick, cpu_tick = time.perf_counter(), time.process_time()
  step = train.train_step_jit.lower(state, batch, rng).compile()
  compile_s, compile_cpu_s = time.perf_counter() - tick, time.process_time() - cpu_tick
  for _ in range(warmup):
    state, metrics = step(state, batch, rng)
  jax.block_until_ready(metrics if warmup else state)
  times = []
  for _ in range(steps):
    tick = time.perf_counter()
    state, metrics = step(state, batch, rng)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - tick)
  step_s = float(np.median(times))
  result = {
    "config": name,
    "overrides": overrides,
    "batch_size": tcfg.batch_size,
    "lookback": mcfg.lookback,
    "n_ahead": mcfg.n_ahead,
    "hidden": mcfg.encoder.hidden,
    "embed_dim": mcfg.encoder.embed_dim,
    "attention_heads": mcfg.encoder.n_attention_heads,
    "tkan_layers": mcfg.encoder.n_tkan_layers,
    "allocator_variant": mcfg.allocator.variant,
    "allocator_width": mcfg.allocator.width,
    "n_features": N_FEATURES,
    "params": n_params,
    "allocator_params": n_alloc,
    "init_s": init_s,
    "compile_s": compile_s,
    "compile_cpu_s": compile_cpu_s,
    "step_s_median": step_s,
    "step_s_min": float(np.min(times)),
    "step_s_all": times,
    "samples_per_s": tcfg.batch_size / step_s,
    "loss_finite": bool(np.isfinite(metrics["loss"])),
  }
  result.update(peak_memory_bytes())  # before the breakdown and latency runs add their own
  logging.info("%s: %.3f s/step, compile %.1f s", name, step_s, compile_s)
  if with_breakdown:
    result["breakdown"] = breakdown(state, batch, mcfg, max(steps // 2, 3))
  policy = online.init_policy(mcfg)
  result["decision_latency"], result["decision_latency_same_step"] = {}, {}
  for n in latency_orders:
    logging.info("%s: decision latency for %d orders", name, n)
    repeats = 5 if n > 64 else 20
    try:
      result["decision_latency"][str(n)] = step_latency(policy, n, repeats)
    except Exception as e:
      # Recorded, not raised: one failing size should not hide the other measurements.
      result["decision_latency"][str(n)] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
    result["decision_latency_same_step"][str(n)] = same_step_latency(
      mcfg, policy.params, n, repeats
    )
  return result


def rl_env_throughput(
  orders: list[int], n_ahead: int = 12, obs_bars: int = 4, steps: int = 64, repeats: int = 3
) -> list[dict]:
  """Steps per second of the RL environment (lemjax/rl/env.py) vmapped over `orders` episodes.

  Each timed call is one jitted lax.scan of `steps` vmapped `env.step`s (auto-reset) over a
  random pool of 4,096 orders; actions are read from the observations and rewards are summed,
  so that nothing the environment computes is dead code. The median of `repeats` calls.
  """
  from lemjax.rl import env as env_lib

  batch = synthetic_batch(4096, obs_bars + n_ahead - 1, n_ahead)
  batch["closes"] = np.concatenate(
    [np.ones_like(batch["prices"][:, :1]), batch["prices"][:, :-1]], 1
  )
  batch["lookback_vol"] = np.full(4096, 30.0, np.float32)
  env, params = env_lib.ExecutionEnv(n_ahead, obs_bars), env_lib.make_params(batch, obs_bars)
  out = []
  for n in orders:

    def run(carry, key, n=n):
      def body(carry, key):
        state, obs, total = carry
        action = jax.nn.sigmoid(jnp.mean(obs, axis=-1))
        obs, state, reward, _, _ = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
          jax.random.split(key, n), state, action, params
        )
        return (state, obs, total + jnp.sum(reward)), None

      return jax.lax.scan(body, carry, jax.random.split(key, steps))[0]

    obs, state = jax.vmap(env.reset, in_axes=(0, None))(
      jax.random.split(jax.random.PRNGKey(0), n), params
    )
    state = (state, obs, jnp.zeros(()))
    compiled, compile_s = _compiled(run, state, jax.random.PRNGKey(1))
    jax.block_until_ready(compiled(state, jax.random.PRNGKey(1)))
    median_s = float(np.median(_timed(compiled, state, jax.random.PRNGKey(2), repeats=repeats)))
    out.append({"orders": n, "steps_per_s": n * steps / median_s, "compile_s": compile_s})
    logging.info("RL environment, %d orders: %.3g steps/s", n, n * steps / median_s)
  return out


# --- Driver ---------------------------------------------------------------------------------------


def input_pipeline(name: str, overrides: list[str], batch_size: int, batches: int) -> dict:
  """Windows per second of the training loop's input side at `batch_size`: sampling indices,
  gathering the windows (`WindowDataset.batch`) and putting them on the device.

  The data is the embedded synthetic market at the configuration's L and N (the gathering
  cost depends on the shapes, not on the prices).
  """
  if batch_size < 1 or batches < 1:
    raise ValueError(f"batch_size={batch_size} and batches={batches} must be >= 1")
  config = make_config(name, [*overrides, "data.source=synthetic"])
  train_ds = experiment.load_data(config)[0]
  sampler = Sampler(train_ds.num_windows, batch_size, seed=0)
  jax.block_until_ready(jax.device_put(model_batch(train_ds.batch(sampler.next_indices()))))
  tick = time.perf_counter()
  for _ in range(batches):
    jax.block_until_ready(jax.device_put(model_batch(train_ds.batch(sampler.next_indices()))))
  elapsed = time.perf_counter() - tick
  return {
    "batch_size": batch_size,
    "batches": batches,
    "windows_per_s": batch_size * batches / elapsed,
    "train_windows": train_ds.num_windows,
  }


def pipeline_margin(pipeline: dict, results: list[dict]) -> dict:
  """The pipeline's windows/s over the train step's samples/s at the same (largest) batch."""
  same = [r for r in results if r["batch_size"] == pipeline["batch_size"]]
  if not same:
    raise ValueError(f"no result at batch_size={pipeline['batch_size']}")
  step = max(r["samples_per_s"] for r in same)  # the fastest step is the hardest to feed
  return {**pipeline, "step_samples_per_s": step, "ratio": pipeline["windows_per_s"] / step}


def _child(argv: list[str], what: str) -> dict:
  """Runs `python -m lemjax.bench argv` in a fresh interpreter; its BENCH_RESULT JSON."""
  command = [sys.executable, "-m", "lemjax.bench", *argv]
  proc = subprocess.run(command, capture_output=True, text=True, check=False)
  lines = [line for line in proc.stdout.splitlines() if line.startswith(_MARK)]
  if proc.returncode or not lines:
    raise RuntimeError(f"benchmark of {what} failed:\n{proc.stderr[-4000:]}")
  return json.loads(lines[-1][len(_MARK) :])


def _run_child(name: str, overrides: list[str], breakdown: bool, latency: list[str]) -> dict:
  """Runs one configuration in a fresh interpreter (own compile caches and peak memory)."""
  argv = [
    f"--child={name}",
    f"--steps={_STEPS.value}",
    f"--warmup={_WARMUP.value}",
    f"--breakdown={breakdown}",
    f"--latency_orders={','.join(latency)}",
  ]
  if overrides:
    argv.append(f"--override={','.join(overrides)}")
  return _child(argv, repr(name) + "".join(" " + o for o in overrides))


PEER_SHAPES = (
  "batch_size",
  "lookback",
  "n_ahead",
  "hidden",
  "embed_dim",
  "attention_heads",
  "allocator_width",
  "n_features",
)


def with_peer(result: dict) -> dict:
  """`result` with the `lems` package timed at its shapes (fresh interpreter) and the ratio."""
  shapes = {k: result[k] for k in PEER_SHAPES}
  argv = [
    f"--peer_child={json.dumps(shapes)}",
    f"--steps={_STEPS.value}",
    f"--warmup={_WARMUP.value}",
  ]
  timing = _child(argv, f"lems at {shapes}")
  ratio = result["samples_per_s"] / timing["samples_per_s"]
  print(
    f"{result['config']} B={shapes['batch_size']} N={shapes['n_ahead']}: lemjax "
    f"{result['samples_per_s']:.1f} samples/s, lems {timing['samples_per_s']:.1f}: "
    f"{ratio:.2f}x (compile {result['compile_s']:.1f} s vs {timing['compile_s']:.1f} s)",
    flush=True,
  )
  return {**result, "peer": timing, "peer_ratio": ratio}


def scaling_sweep(name: str, overrides: list[str], ns: list[int], bs: list[int], peer: bool):
  """Compile and step time over N (at B = bs[0]) and over B (at N = ns[0]), L unchanged.

  Returns:
    {"n_ahead": [result per N], "batch_size": [result per B]}, each a `run_one` result
    (without breakdown or latency), with the `lems` timing when `peer`.
  """
  out, done = {"n_ahead": [], "batch_size": []}, {}
  points = [("n_ahead", n, bs[0]) for n in ns] + [("batch_size", ns[0], b) for b in bs]
  for axis, n, b in points:
    if (n, b) not in done:  # (ns[0], bs[0]) lies on both axes: measured once
      print(f"scaling {name}: N={n}, B={b} ...", flush=True)
      extra = [f"model.n_ahead={n}", f"train.batch_size={b}"]
      result = _run_child(name, [*overrides, *extra], False, [])
      done[n, b] = with_peer(result) if peer else result
    out[axis].append(done[n, b])
  return out


def format_table(results: list[dict]) -> str:
  """One row per configuration, the numbers the README quotes."""
  header = (
    "config",
    "params",
    "compile s (cpu)",
    "step s",
    "samples/s",
    "peak MB",
    "latency 1 ms",
    "latency 1024 ms",
  )
  rows = [header]
  for r in results:
    peak = r.get("peak_device_bytes", r["peak_rss_bytes"]) / 2**20
    lat = {k: v.get("median_s", float("nan")) * 1e3 for k, v in r["decision_latency"].items()}
    label = r["config"] + "".join("+" + o for o in r["overrides"])
    rows.append(
      (
        label,
        f"{r['params'] / 1e6:.2f}M",
        f"{r['compile_s']:.1f} ({r['compile_cpu_s']:.1f})",
        f"{r['step_s_median']:.3f}",
        f"{r['samples_per_s']:.1f}",
        f"{peak:.0f}",
        f"{lat.get('1', float('nan')):.1f}",
        f"{lat.get('1024', float('nan')):.1f}",
      )
    )
  widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
  lines = ["  ".join(str(c).rjust(w) for c, w in zip(row, widths)) for row in rows]
  for r in results:
    if "breakdown" in r:
      parts = ", ".join(f"{k[:-2]} {v:.3f}s" for k, v in r["breakdown"].items())
      lines.append(f"{r['config']} breakdown: {parts}")
  return "\n".join(lines)


def format_scaling(scaling: dict) -> str:
  """One row per sweep point: N, B, compile and step time, samples/s (and the peer's)."""
  header = ("N", "B", "compile s", "step s", "samples/s", "lems compile s", "lems samples/s", "x")
  rows = [header]
  for r in scaling["n_ahead"] + scaling["batch_size"]:
    p = r.get("peer", {})
    rows.append(
      (
        r["n_ahead"],
        r["batch_size"],
        f"{r['compile_s']:.1f}",
        f"{r['step_s_median']:.3f}",
        f"{r['samples_per_s']:.1f}",
        f"{p['compile_s']:.1f}" if p else "-",
        f"{p['samples_per_s']:.1f}" if p else "-",
        f"{r['peer_ratio']:.2f}" if p else "-",
      )
    )
  widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
  return "\n".join("  ".join(str(c).rjust(w) for c, w in zip(row, widths)) for row in rows)


def main(argv):
  del argv
  if _PEER_CHILD.value:
    result = peer.time_peer(json.loads(_PEER_CHILD.value), _STEPS.value, _WARMUP.value)
    print(_MARK + json.dumps(result), flush=True)
    return
  if _CHILD.value:
    result = run_one(
      _CHILD.value,
      _OVERRIDE.value,
      _STEPS.value,
      _WARMUP.value,
      _BREAKDOWN.value,
      [int(n) for n in _LATENCY.value],
    )
    print(_MARK + json.dumps(result), flush=True)
    return
  if _STEPS.value < 1:
    raise app.UsageError("--steps must be >= 1")
  if (_PEER.value or _SCALING.value) and not _CONFIGS.value:
    raise app.UsageError("--peer and --scaling need at least one of --configs")
  if _PEER.value and not peer.available():
    raise app.UsageError('--peer needs the `lems` package: pip install -e ".[parity]"')
  rl_env = rl_env_throughput([int(n) for n in _RL_ENV.value]) if _RL_ENV.value else None
  results = []
  for name in _CONFIGS.value:
    print(f"benchmarking {name} ...", flush=True)
    result = _run_child(name, _OVERRIDE.value, _BREAKDOWN.value, _LATENCY.value)
    results.append(with_peer(result) if _PEER.value else result)
  scaling = None
  if _SCALING.value:
    ns, bs = [int(n) for n in _SCALING_N.value], [int(b) for b in _SCALING_B.value]
    scaling = scaling_sweep(_CONFIGS.value[0], _OVERRIDE.value, ns, bs, _PEER.value)
    print(format_scaling(scaling))
    print(f"wrote {plots.bench_scaling(_PLOT.value, scaling)}")
  pipeline = None
  timed = results + ([r for rows in scaling.values() for r in rows] if scaling else [])
  if _PIPELINE_BATCHES.value and timed:
    largest = max(timed, key=lambda r: r["batch_size"])
    pipeline = pipeline_margin(
      input_pipeline(
        largest["config"], largest["overrides"], largest["batch_size"], _PIPELINE_BATCHES.value
      ),
      timed,
    )
    print(
      f"input pipeline at B={pipeline['batch_size']}: {pipeline['windows_per_s']:.0f} windows/s, "
      f"{pipeline['ratio']:.1f}x the train step's {pipeline['step_samples_per_s']:.1f} samples/s"
    )
  table = format_table(results)
  print(table)
  env = {
    "device": str(jax.devices()[0]),
    "backend": jax.default_backend(),
    "cpu_count": os.cpu_count(),
    "jax": jax.__version__,
    "python": platform.python_version(),
    "machine": platform.machine(),
    "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
  }
  os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
  with open(_OUT.value, "w") as f:
    out = {"environment": env, "results": results, "table": table, "rl_env": rl_env}
    json.dump({**out, "scaling": scaling, "input_pipeline": pipeline}, f, indent=2)
  print(f"wrote {_OUT.value}")


if __name__ == "__main__":
  # Only on the command line: lemjax.main, imported beside this module in the tests, owns --config.
  flags.DEFINE_alias("config", "configs")
  app.run(main)
