"""`train_rl(config, workdir)`: PPO on training-split orders, checked on validation orders, saved in `<workdir>/rl/`.

Run:  python -m lemjax.main --mode=train_rl --config=experiments/crypto_intraday.py
      make train-rl EXP=crypto_intraday            (VARIANT=smoke: a tiny synthetic run)
Then `make eval` adds a "PPO" row (the deterministic policy) next to the LEM and the baselines.
Expect (crypto_intraday on ../shared/data, defaults, seed 0): 348 s of training on 2 shared CPU
cores; validation min period 1, VWAP, quantity: +23.6 (buy) / +32.6 (sell) bps, optional stopping
+21.7 / +23.2; mean over all heads and scenarios +16.2 (optional stopping +14.3).
Hyper-parameters (validation mean over all cells, 250 updates): learning rate 3e-4 (+15.8) over
1e-3 (+12.6); entropy bonus 1e-2 (+16.2) over 1e-3 (+15.8); 500 updates reached +15.5.

Writes agent.json + params.npz (the parameters with the best validation mean improvement over
all heads and scenarios), config.json (the resolved `rl`, `data` and bounds), metrics.jsonl
(one record per validation check) and summary.json (wall time, env steps, validation means of
the agent, the uniform schedule and optional stopping tuned on training orders).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time

import jax
import numpy as np

from lemjax import baselines
from lemjax import config as config_lib
from lemjax import objectives
from lemjax import scenarios
from lemjax.data import datasets as datasets_lib
from lemjax.rl import env as env_lib
from lemjax.rl import policy as policy_lib
from lemjax.rl import ppo

_POOL_KEYS = ("inputs", "prices", "volumes", "closes", "lookback_vol")


def spread(num_windows: int, count: int) -> np.ndarray:
  """`count` window indices evenly spaced over [0, num_windows) (all of them for count 0)."""
  if count <= 0 or count >= num_windows:
    return np.arange(num_windows)
  return np.unique(np.linspace(0, num_windows, count, endpoint=False).astype(np.int64))


def gather_orders(dataset, idx: np.ndarray, span: int, chunk: int = 4096) -> dict:
  """The arrays the environment reads for windows `idx`, inputs cut to their last `span` positions."""
  parts = []
  for start in range(0, idx.size, chunk):
    b = dataset.batch(idx[start : start + chunk])
    b["inputs"] = b["inputs"][:, -span:]
    parts.append({k: b[k] for k in _POOL_KEYS})
  return {k: np.concatenate([p[k] for p in parts]) for k in _POOL_KEYS}


def improvement_KxS(alloc_BxNxKxS, batch: dict) -> np.ndarray:
  """Mean hard-window improvement (bps) per head and scenario, the evaluator's accounting."""
  imp = objectives.improvement_bps(alloc_BxNxKxS, batch["prices"], batch["volumes"])
  return np.nanmean(np.asarray(imp), axis=0)


def context_baselines(train: dict, val: dict, eval_cfg: config_lib.EvalConfig) -> dict:
  """Validation means [K, S] of the uniform schedule and of optional stopping (theta tuned on `train`)."""
  bounds = (eval_cfg.r_min, eval_cfg.r_max)

  def stopping(b, theta_KxS):
    return baselines.optional_stopping(b["prices"], b["volumes"], b["closes"], theta_KxS, *bounds)

  def score(alloc, prices, volumes):
    return np.asarray(objectives.improvement_bps(alloc, prices, volumes))

  theta_KxS, _ = baselines.tune_theta(
    lambda th: stopping(train, th),
    eval_cfg.theta_grid_bps,
    score,
    train["prices"],
    train["volumes"],
  )
  n = val["prices"].shape[1]
  return {
    "uniform": improvement_KxS(baselines.uniform(val["prices"].shape[0], n), val),
    "optional_stopping": improvement_KxS(stopping(val, theta_KxS), val),
  }


def headline(means_KxS: np.ndarray) -> dict:
  """Min period 1 (head 0), VWAP, quantity: buy and sell, and the mean over every cell."""
  buy = scenarios.scenario_index("buy", "vwap", "quantity")
  sell = scenarios.scenario_index("sell", "vwap", "quantity")
  return {
    "m1_buy_vwap_qty": float(means_KxS[0, buy]),
    "m1_sell_vwap_qty": float(means_KxS[0, sell]),
    "all_cells": float(np.mean(means_KxS)),
  }


def _write_json(path: str, value) -> None:
  with open(path, "w") as f:
    json.dump(value, f, indent=2, default=lambda x: x.tolist() if hasattr(x, "tolist") else str(x))


def train_rl(config, workdir: str) -> dict:
  """Trains the PPO agent of `config.rl` into `<workdir>/rl/`; returns the summary dict."""
  tick = time.perf_counter()
  # --- Configs and data.
  rcfg = config_lib.rl_config(config.get("rl"))
  ecfg = config_lib.eval_config(config.get("eval"))
  dcfg = config_lib.data_config(config.data)
  ppo.check_config(rcfg)
  train_ds, val_ds, _, report = datasets_lib.make_datasets(dcfg)
  if train_ds.num_windows < 1 or val_ds.num_windows < 1:
    raise ValueError(
      f"the RL agent needs training and validation orders; got {train_ds.num_windows} "
      f"and {val_ds.num_windows} windows (data.train_*/val_* dates)"
    )
  n, span = dcfg.n_ahead, rcfg.obs_bars + dcfg.n_ahead - 1
  pool = gather_orders(train_ds, spread(train_ds.num_windows, rcfg.pool_orders), span)
  val = gather_orders(val_ds, spread(val_ds.num_windows, rcfg.val_orders), span)
  env = env_lib.ExecutionEnv(n, rcfg.obs_bars, pool["inputs"].shape[-1])
  env_params = env_lib.make_params(pool, rcfg.obs_bars, rcfg.r_min_range, rcfg.r_max_range)
  outdir = os.path.join(workdir, "rl")
  os.makedirs(outdir, exist_ok=True)
  _write_json(
    os.path.join(outdir, "config.json"),
    {
      "rl": dataclasses.asdict(rcfg),
      "data": dataclasses.asdict(dcfg),
      "data_source": report.source,
      "pool_orders": int(pool["prices"].shape[0]),
      "val_orders": int(val["prices"].shape[0]),
      "val_bounds": {"r_min": ecfg.r_min, "r_max": ecfg.r_max},
    },
  )
  logging.info(
    "RL: %d training orders in the pool, %d validation orders, obs size %d (%s)",
    pool["prices"].shape[0],
    val["prices"].shape[0],
    env.obs_size,
    report.source,
  )

  # --- PPO in chunks of `eval_every` updates, a validation check after each; the best is kept.
  meta = policy_lib.agent_meta(env, rcfg.hidden, rcfg.layers, rcfg.action_stretch)
  runner = ppo.init_runner(rcfg, env, env_params, jax.random.PRNGKey(rcfg.seed))
  best = {"all_cells": -np.inf}
  metrics_path = os.path.join(outdir, "metrics.jsonl")
  open(metrics_path, "w").close()
  done = 0
  while done < rcfg.updates:
    chunk = min(rcfg.eval_every, rcfg.updates - done)
    runner, metrics = ppo.train_updates(runner, env_params, cfg=rcfg, env=env, n_updates=chunk)
    metrics = {k: float(np.mean(v)) for k, v in jax.device_get(metrics).items()}
    if not all(np.isfinite(v) for v in metrics.values()):
      raise FloatingPointError(f"non-finite PPO metrics after update {done + chunk}: {metrics}")
    done += chunk
    val_KxS = improvement_KxS(
      policy_lib.allocations(runner.params, meta, val, ecfg.r_min, ecfg.r_max), val
    )
    record = {
      "update": done,
      "env_steps": done * rcfg.num_envs * rcfg.num_steps,
      "seconds": time.perf_counter() - tick,
      "train": metrics,
      "val": headline(val_KxS),
    }
    with open(metrics_path, "a") as f:
      f.write(json.dumps(record) + "\n")
    logging.info(
      "RL update %d/%d: train imp %.2f bps, val %s",
      done,
      rcfg.updates,
      metrics["improvement_bps"],
      record["val"],
    )
    if record["val"]["all_cells"] > best["all_cells"]:
      best = {**record["val"], "update": done, "val_KxS": val_KxS}
      policy_lib.save(outdir, runner.params, meta)
  train_s = time.perf_counter() - tick

  # --- Summary, with the simplest baselines on the same validation orders for context.
  tune = gather_orders(train_ds, spread(train_ds.num_windows, ecfg.tune_orders), span)
  context = {name: headline(v) for name, v in context_baselines(tune, val, ecfg).items()}
  summary = {
    "train_seconds": train_s,
    "env_steps": rcfg.updates * rcfg.num_envs * rcfg.num_steps,
    "best_update": best["update"],
    "val_PPO": {k: best[k] for k in headline(best["val_KxS"])},
    "val_PPO_KxS": best["val_KxS"],
    "val_baselines": context,
  }
  _write_json(os.path.join(outdir, "summary.json"), summary)
  logging.info(
    "RL done in %.0f s; validation (bps) PPO %s, baselines %s", train_s, summary["val_PPO"], context
  )
  return summary
