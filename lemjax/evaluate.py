"""Test-split evaluation: the trained LEM and every baseline on the same orders, scored by the same code."""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lemjax import allocation
from lemjax import baselines
from lemjax import config as config_lib
from lemjax import costs as costs_lib
from lemjax import diagnostics
from lemjax import experiment
from lemjax import heads
from lemjax import lookahead
from lemjax import lsm
from lemjax import model as model_lib
from lemjax import objectives
from lemjax import report as report_lib
from lemjax import scenarios
from lemjax import size_report
from lemjax import workdir as workdir_lib

CAUSAL_BASELINES = ("uniform", "vwap_profile", "optional_stopping", "vol_stopping", "lsm_stopping")
STRATEGIES = ("LEM", *CAUSAL_BASELINES, "best_causal", "oracle")
VAL_REPORT_DIR = "val_report"  # report of `eval.split="val"` inside the work directory
ENSEMBLE_DIR = "ensemble"  # report of an `eval.ensemble` inside the work directory
# `eval.ensemble_rule`: average the members' finished allocations, or combine their proposals.
ENSEMBLE_RULES = ("allocations", *allocation.ENSEMBLE_RULES)
SUMMARY_KEYS = ("price", "benchmark", "improvement_bps", "window_end", "ended_early")
COST_KEYS = ("gross_improvement_bps", "cost_bps")  # summaries with execution costs only


# --- Orders ---------------------------------------------------------------------------------------


def select_orders(dataset, n_ahead: int, cfg: config_lib.EvalConfig, chunk: int = 4096):
  """Test orders: every `order_stride`-th window of each asset (default N: no overlap), capped.

  Returns:
    int array of window indices, sorted by asset then origin.
  """
  if dataset.num_windows < 1:
    raise ValueError("the test split holds no windows; widen data.test_start/test_end")
  asset = np.concatenate(
    [
      dataset.batch(np.arange(s, min(s + chunk, dataset.num_windows)))["asset"]
      for s in range(0, dataset.num_windows, chunk)
    ]
  )
  origin = np.asarray(dataset.origins, np.int64)
  stride = cfg.order_stride or n_ahead
  order = np.lexsort((origin, asset))
  keep = []
  for a in np.unique(asset):
    rows = order[asset[order] == a]
    keep.append(rows[::stride])
  idx = np.sort(np.concatenate(keep))
  if cfg.max_orders and idx.size > cfg.max_orders:
    idx = idx[np.linspace(0, idx.size, cfg.max_orders, endpoint=False).astype(np.int64)]
  return idx


def gather(dataset, idx: np.ndarray, chunk: int = 4096) -> dict:
  """The Batch of windows `idx`, gathered in chunks (numpy)."""
  parts = [dataset.batch(idx[s : s + chunk]) for s in range(0, idx.size, chunk)]
  return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


# --- Strategies -----------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnums=0)
def _forward(model_config, params, inputs, r_min_B, r_max_B, prices, volumes, size_B=None):
  return model_lib.build_model(model_config).apply(
    {"params": params}, inputs, r_min_B, r_max_B, prices, volumes, size_B
  )


@functools.partial(jax.jit, static_argnums=(0, 1))
def _forward_ensemble(
  model_config, rule, params_M, inputs, r_min_B, r_max_B, prices, volumes, size_B=None
):
  return model_lib.ensemble_apply(
    model_config, list(params_M), inputs, r_min_B, r_max_B, prices, volumes, size_B, rule
  )


def lem_allocations(
  params,
  model_config,
  batch: dict,
  r_min,
  r_max,
  batch_size: int,
  size=None,
  rule: str = "allocations",
) -> np.ndarray:
  """The model's allocations [B, N, K, S] in fixed-shape chunks (the last one padded).

  params: one parameter tree, or a list of trees of the same model (a seed ensemble).
  r_min, r_max: scalars or per-order [B] rate bounds.
  size: scalar or [B] order sizes (lemjax/costs.py), for a model with a size input; r_max must
  already hold the participation cap (`costs.capped_r_max`).
  rule: how a list of trees is combined (`eval.ensemble_rule`): "allocations" averages the
    members' finished allocations (each is feasible and causal, so their mean is too);
    "mean_proposal" / "median_proposal" combine the members' proposals at every decision inside
    one execution (`model.ensemble_apply`).
  """
  members = params if isinstance(params, list) else [params]
  if rule not in ENSEMBLE_RULES:
    raise ValueError(f"ensemble rule {rule!r} must be one of {ENSEMBLE_RULES}")
  n_orders = batch["prices"].shape[0]
  out = []
  for start in range(0, n_orders, batch_size):
    rows = np.arange(start, start + batch_size)
    rows = np.minimum(rows, n_orders - 1)  # pad by repeating the last order
    b = model_lib.model_batch({k: batch[k][rows] for k in model_lib.MODEL_KEYS})
    r_min_B, r_max_B = _rows(r_min, n_orders, rows), _rows(r_max, n_orders, rows)
    size_B = None if size is None else _rows(size, n_orders, rows)
    args = (b["inputs"], r_min_B, r_max_B, b["prices"], b["volumes"], size_B)
    if rule != "allocations" and len(members) > 1:
      alloc = np.asarray(_forward_ensemble(model_config, rule, tuple(members), *args))
    else:
      alloc = np.mean([np.asarray(_forward(model_config, p, *args)) for p in members], axis=0)
    out.append(alloc[: min(batch_size, n_orders - start)])
  return np.concatenate(out)


def _rows(x, n_orders: int, rows: np.ndarray) -> jax.Array:
  """Rows `rows` of a scalar or per-order [B] value, as float32."""
  return jnp.asarray(np.broadcast_to(np.asarray(x, np.float32), (n_orders,))[rows])


def score(alloc_BxNxKxS, prices_BxN, volumes_BxN) -> np.ndarray:
  """Hard-window improvement in bps [B, K, S] (the objectives module's accounting)."""
  return np.asarray(
    objectives.improvement_bps(
      jnp.asarray(alloc_BxNxKxS, jnp.float32), jnp.asarray(prices_BxN), jnp.asarray(volumes_BxN)
    )
  )


def _scorer(score_for):
  """batch -> its score function: `score_for` (net of costs) or the cost-free `score`."""
  return (lambda b: score) if score_for is None else score_for


def baseline_allocations(
  test: dict,
  tune: dict,
  val: dict,
  bar_ms: int,
  cfg: config_lib.EvalConfig,
  score_for=None,
  r_max: float | None = None,
):
  """Allocations [B, N, K, S] of every baseline on the test orders, and what was fitted.

  The volume profile, the stopping thresholds and the least-squares stopping rule are fitted
  on training orders (`tune`); `best_causal` takes, per head and scenario, the causal
  baseline with the best mean improvement on validation orders (`val`). Test orders are
  only scored, never used for a choice.

  With execution costs, `score_for(batch)` gives the net score of that batch's orders
  (`costs.scorer`), so every fit, choice and the oracle pay the same costs, and `r_max` is the
  participation-capped upper bound; by default the cost-free `score` and `cfg.r_max`.

  Returns:
    ({strategy: allocations}, fitted: profile, theta_KxS and theta_means (optional stopping),
    vol_theta_KxS and vol_theta_means, lsm_coef_NxKxSxP and lsm_features, val_means
    {baseline: [K, S]}, best_causal_choice [K, S] strategy names).
  """
  n = test["prices"].shape[1]
  bounds = (cfg.r_min, cfg.r_max if r_max is None else r_max)
  scored = _scorer(score_for)
  buckets_train, n_buckets = baselines.calendar_buckets(tune["origin"], n, bar_ms)
  profile = baselines.volume_profile(tune["volumes"], buckets_train, n_buckets)

  def stopping(b, theta_KxS):
    return baselines.optional_stopping(b["prices"], b["volumes"], b["closes"], theta_KxS, *bounds)

  def vol_stopping(b, theta_KxS):
    return baselines.vol_stopping(
      b["prices"], b["volumes"], b["closes"], b["lookback_vol"], theta_KxS, *bounds
    )

  score_tune = scored(tune)
  theta_KxS, theta_means = baselines.tune_theta(
    functools.partial(stopping, tune),
    cfg.theta_grid_bps,
    score_tune,
    tune["prices"],
    tune["volumes"],
  )
  vol_theta_KxS, vol_means = baselines.tune_theta(
    functools.partial(vol_stopping, tune),
    cfg.vol_theta_grid,
    score_tune,
    tune["prices"],
    tune["volumes"],
  )
  coef = lsm.lsm_fit(
    tune["prices"],
    tune["volumes"],
    tune["closes"],
    tune["lookback_vol"],
    score_tune,
    cfg.lsm_ridge,
    *bounds,
  )

  def causal(b):
    buckets, _ = baselines.calendar_buckets(b["origin"], n, bar_ms)
    return {
      "uniform": baselines.uniform(b["prices"].shape[0], n),
      "vwap_profile": baselines.vwap_schedule(profile, buckets, *bounds),
      "optional_stopping": stopping(b, theta_KxS),
      "vol_stopping": vol_stopping(b, vol_theta_KxS),
      "lsm_stopping": lsm.lsm_stopping(
        b["prices"], b["volumes"], b["closes"], b["lookback_vol"], coef, *bounds
      ),
    }

  val_means = {
    name: np.nanmean(scored(val)(alloc, val["prices"], val["volumes"]), axis=0)
    for name, alloc in causal(val).items()
  }
  choice_KxS = baselines.best_per_cell(val_means)
  allocs = causal(test)
  allocs["best_causal"] = baselines.pick(allocs, choice_KxS)
  allocs["oracle"] = baselines.oracle(
    test["prices"], test["volumes"], scored(test), *bounds, spread_candidates=score_for is not None
  )
  fitted = {
    "profile": profile,
    "theta_KxS": theta_KxS,
    "theta_means": theta_means,
    "vol_theta_KxS": vol_theta_KxS,
    "vol_theta_means": vol_means,
    "lsm_coef_NxKxSxP": coef,
    "lsm_features": lsm.LSM_FEATURES,
    "val_means": val_means,
    "best_causal_choice": choice_KxS,
  }
  return allocs, fitted


def lem_served(
  params,
  model_config,
  test: dict,
  val: dict,
  ecfg,
  outdir: str | None,
  step: int,
  r_max=None,
  size=None,
  score_for=None,
):
  """The LEM's test allocations as served, and its own heads' when a head map applies.

  With `eval.nested_heads`, every min period is served by a head of equal or larger minimum,
  chosen on the validation orders by `eval.head_rule` (lemjax/heads.py); the map is written to
  `<outdir>/head_map.json` (unless outdir is None), where the online policy finds it.
  With execution costs: r_max holds the participation cap, size is the model's size input and
  `score_for(batch)` the net score (see `strategies_at_size`).

  Returns:
    (allocations [B, N, K, S] as served, None or {"alloc": own heads' allocations,
    "head_map_KxS": the map}).
  """
  if ecfg.head_rule not in heads.HEAD_RULES:
    raise ValueError(f"eval.head_rule={ecfg.head_rule!r} must be one of {heads.HEAD_RULES}")
  r_max = ecfg.r_max if r_max is None else r_max
  alloc = lem_allocations(
    params, model_config, test, ecfg.r_min, r_max, ecfg.batch_size, size, ecfg.ensemble_rule
  )
  if not ecfg.nested_heads:
    if outdir is not None and os.path.exists(os.path.join(outdir, heads.HEAD_MAP_FILE)):
      # The online policy must not serve a map this report did not use.
      os.remove(os.path.join(outdir, heads.HEAD_MAP_FILE))
    return alloc, None
  val_alloc = lem_allocations(
    params, model_config, val, ecfg.r_min, r_max, ecfg.batch_size, size, ecfg.ensemble_rule
  )
  val_score_BxKxS = _scorer(score_for)(val)(val_alloc, val["prices"], val["volumes"])
  val_mean_KxS = np.nanmean(val_score_BxKxS, axis=0)
  if ecfg.head_rule == "chain":
    head_map = heads.chained_head_map(
      val_score_BxKxS,
      val["origin"],
      block_length=ecfg.block_length,
      n_boot=ecfg.bootstrap,
      seed=ecfg.seed,
    )
  else:
    head_map = heads.nested_head_map(val_mean_KxS)
  if outdir is not None:
    os.makedirs(outdir, exist_ok=True)
    heads.save_head_map(
      outdir, head_map, val_mean_KxS, val["prices"].shape[0], step, ecfg.head_rule
    )
  moved = int((head_map != np.arange(head_map.shape[0])[:, None]).sum())
  logging.info(
    "head map: %d of %d head x scenario cells served by a larger minimum", moved, head_map.size
  )
  return heads.serve(alloc, head_map), {"alloc": alloc, "head_map_KxS": head_map}


def spread_indices(num_windows: int, count: int) -> np.ndarray:
  """Up to `count` window indices evenly spaced over [0, num_windows), sorted."""
  return np.unique(
    np.linspace(0, num_windows, min(count, num_windows), endpoint=False).astype(np.int64)
  )


def summaries(allocs: dict, prices_BxN, volumes_BxN, fills_for=None) -> dict:
  """Hard-window execution summary (numpy [B, K, S] arrays) of every strategy.

  Besides `SUMMARY_KEYS`, `shortfall_bps` is the implementation shortfall against the arrival
  price, side x (P / arrival - 1) x 1e4 (positive = cost); prices are already over arrival.
  With execution costs, `fills_for(alloc)` gives the net fill prices: price, improvement and
  shortfall are then net, and gross_improvement_bps and cost_bps are added.
  """
  out = {}
  for name, alloc in allocs.items():
    alloc = jnp.asarray(alloc)
    fills = None if fills_for is None else fills_for(alloc)
    summary = objectives.execution_summary(
      alloc, jnp.asarray(prices_BxN), jnp.asarray(volumes_BxN), fills
    )
    keys = SUMMARY_KEYS + tuple(k for k in COST_KEYS if k in summary)
    out[name] = {k: np.asarray(summary[k]) for k in keys}
    price = out[name]["price"].astype(np.float64)
    out[name]["shortfall_bps"] = scenarios.SIDE_SIGN_S * (price - 1.0) * 1e4
  return out


# --- Orchestration --------------------------------------------------------------------------------


def ensemble_dir(rule: str) -> str:
  """Report folder of a seed ensemble inside the work directory: `ensemble` for averaged
  allocations, `ensemble_<rule>` for proposals combined inside the scan."""
  return ENSEMBLE_DIR if rule == "allocations" else f"{ENSEMBLE_DIR}_{rule}"


def ensemble_members(workdir: str, ensemble: str) -> list[str]:
  """The other work directories named by `eval.ensemble` (comma-separated), checked."""
  members = [w.strip() for w in ensemble.split(",") if w.strip()]
  paths = [os.path.abspath(w) for w in [workdir, *members]]
  for i, path in enumerate(paths[1:], 1):
    if path in paths[:i]:
      raise ValueError(
        f"eval.ensemble={ensemble!r} names {members[i - 1]!r} twice (or the evaluated run "
        f"itself, {workdir!r}); each run enters the average once"
      )
  return members


def ensemble_params(workdir: str, ecfg, model_config) -> list:
  """The parameters of every other run of `eval.ensemble`; each must be trained like this one."""
  out = []
  for member in ensemble_members(workdir, ecfg.ensemble):
    trained = workdir_lib.trained_model_config(member, model_config)
    if trained != model_config:
      raise ValueError(
        f"eval.ensemble: {member} was trained with another model config than {workdir} "
        f"(compare the 'model' sections of their config.json); only runs of one model average"
      )
    out.append(workdir_lib.restore_params(member, model_config, ecfg.checkpoint)[0])
  return out


@dataclasses.dataclass(frozen=True)
class LoadedRun:
  """A trained run ready to evaluate: its splits, resolved configs and served parameters."""

  train_ds: Any
  val_ds: Any
  test_ds: Any
  report: Any  # the data report (files read, corrections, split ranges)
  cfgs: dict  # resolved config dataclasses; "model" is the one the run was trained with
  params: Any
  ckpt_info: dict  # which checkpoint, its step and validation metrics (workdir.restore_params)


def load_run(config, workdir: str) -> LoadedRun:
  """Loads the data, resolves and checks the evaluation configs, and restores `workdir`'s
  parameters (its `eval.checkpoint`) into the model config it was trained with.

  Raises:
    ValueError naming the setting when the eval settings or the data's splits cannot serve an
    evaluation; FileNotFoundError when `workdir` holds no checkpoint.
  """
  train_ds, val_ds, test_ds, report, data_config = experiment.load_data(config)
  cfgs = experiment.resolve_configs(config, int(test_ds.batch(np.arange(1))["inputs"].shape[-1]))
  cfgs["data"] = data_config
  ecfg, n = cfgs["eval"], cfgs["model"].n_ahead
  if not 1 <= ecfg.min_period <= n:
    raise ValueError(f"eval.min_period={ecfg.min_period} must lie in [1, N={n}]")
  if ecfg.r_min * n > 1 + 1e-9 or ecfg.r_max * n < 1 - 1e-9 or ecfg.r_min > ecfg.r_max:
    raise ValueError(f"eval bounds r_min={ecfg.r_min}, r_max={ecfg.r_max} are infeasible for N={n}")
  if train_ds.num_windows < 1:
    raise ValueError(
      "the training split holds no windows, but the VWAP-profile and optional-"
      "stopping baselines are fitted on it; set data.train_start/train_end"
    )
  if ecfg.split not in ("test", "val"):
    raise ValueError(f"eval.split={ecfg.split!r} must be 'test' or 'val'")
  if ecfg.ensemble_rule not in ENSEMBLE_RULES:
    raise ValueError(f"eval.ensemble_rule={ecfg.ensemble_rule!r} must be one of {ENSEMBLE_RULES}")
  if val_ds.num_windows < 1:
    raise ValueError(
      "the validation split holds no windows, but the best causal baseline is "
      "chosen on it; set data.val_start/val_end"
    )

  cfgs["model"] = workdir_lib.trained_model_config(workdir, cfgs["model"])
  params, ckpt_info = workdir_lib.restore_params(workdir, cfgs["model"], ecfg.checkpoint)
  return LoadedRun(train_ds, val_ds, test_ds, report, cfgs, params, ckpt_info)


def evaluate(config, workdir: str) -> dict:
  """Evaluates the experiment's checkpoint on the test split; writes report.md, CSVs, plots, orders.

  Returns:
    dict with the report path and the per-strategy stats.
  """
  # --- Data, configs and the trained parameters.
  run = load_run(config, workdir)
  train_ds, val_ds, test_ds = run.train_ds, run.val_ds, run.test_ds
  cfgs, params, ckpt_info, data_config = run.cfgs, run.params, run.ckpt_info, run.cfgs["data"]
  ecfg, n = cfgs["eval"], cfgs["model"].n_ahead
  lookahead.announce(cfgs["model"])
  outdir = workdir_lib.report_dir(workdir, data_config)
  if ecfg.ensemble:  # a seed ensemble: its own report folder, this run's report stays
    params = [params, *ensemble_params(workdir, ecfg, cfgs["model"])]
    outdir = os.path.join(outdir, ensemble_dir(ecfg.ensemble_rule))
  tune = gather(train_ds, spread_indices(train_ds.num_windows, ecfg.tune_orders))
  if ecfg.split == "val":  # study mode: score validation orders, choose on training orders
    outdir = os.path.join(outdir, VAL_REPORT_DIR)
    test_ds = val_ds
    val = tune
  else:
    val = gather(val_ds, spread_indices(val_ds.num_windows, ecfg.val_orders))
  idx = select_orders(test_ds, n, ecfg)
  test = gather(test_ds, idx)
  logging.info(
    "evaluating %d test orders (%d assets) from checkpoint %s step %d",
    idx.size,
    len(np.unique(test["asset"])),
    ckpt_info["which"],
    ckpt_info["step"],
  )

  # --- Strategies, all scored by the same accounting (net of costs when costs are on).
  at_size = functools.partial(
    strategies_at_size, params, cfgs, test, tune, val, test_ds.store.step_ms, workdir
  )
  main_size = cfgs["costs"].eval_size if cfgs["costs"].enabled else None
  allocs, fitted, results = at_size(main_size, outdir, int(ckpt_info["step"]))

  # --- Report, tables, per-order results and plots.
  source = workdir_lib.data_source_line(data_config, run.report)
  context = report_lib.Context(
    workdir=outdir,
    config=config,
    cfgs=cfgs,
    source_line=source,
    checkpoint=ckpt_info,
    asset_names=tuple(test_ds.asset_names),
    split_ranges=_split_ranges(run.report, train_ds, test["origin"]),
  )
  out = report_lib.write_all(context, test, allocs, results, fitted, tune)
  if cfgs["costs"].enabled:  # net improvement by order size, appended to report.md
    out["size_buckets"] = size_report.write(outdir, cfgs, test, lambda q: at_size(q)[2], out)
  logging.info("report written to %s", out["report"])
  return out


def strategies_at_size(
  params, cfgs, test, tune, val, bar_ms, workdir, size=None, outdir=None, step: int = 0
):
  """(allocations, fitted baselines, summaries) of the LEM and every baseline on the test orders.

  size None: cost-free. Otherwise every order has that size (lemjax/costs.py): r_max holds its
  participation cap, the LEM reads the size, and every strategy (fits included, the LEM's head
  map too) pays the same costs through `costs.scorer` and `costs.fill_prices`. The head map is
  written to `outdir` (None: not written, as for the size buckets).
  """
  ecfg, n, cost = cfgs["eval"], cfgs["model"].n_ahead, cfgs["costs"]
  r_max, score_for, fills_for = ecfg.r_max, None, None
  if size is not None:
    costs_lib.check_orders(size, ecfg.r_min, ecfg.r_max, n, cost, names=[f"size {size:g}"])
    r_max = float(costs_lib.capped_r_max(ecfg.r_max, size, n, cost))
    score_for = lambda b: costs_lib.batch_scorer(cost, size, b)  # noqa: E731
    fills_for = lambda a: costs_lib.batch_fill_prices(a, test, jnp.full(a.shape[:1], size), cost)  # noqa: E731
  model_size = size if cfgs["model"].allocator.size_input else None
  lem, own_heads = lem_served(
    params, cfgs["model"], test, val, ecfg, outdir, step, r_max, model_size, score_for
  )
  allocs = {"LEM": lem}
  if os.path.isdir(os.path.join(workdir, "rl")):  # the PPO baseline of `--mode=train_rl`
    from lemjax.rl import policy as rl_policy  # noqa: PLC0415 (only runs with a PPO agent)

    allocs["PPO"] = rl_policy.rl_allocations(workdir, test, ecfg.r_min, r_max)
  base_allocs, fitted = baseline_allocations(test, tune, val, bar_ms, ecfg, score_for, r_max)
  allocs.update(base_allocs)
  results = summaries(allocs, test["prices"], test["volumes"], fills_for)
  if own_heads is not None:
    fitted["lem_head_map_KxS"] = own_heads["head_map_KxS"]
    fitted["lem_head_rule"] = ecfg.head_rule
    own = summaries({"LEM": own_heads["alloc"]}, test["prices"], test["volumes"], fills_for)
    fitted["lem_own_heads"] = own["LEM"]
  return allocs, fitted, results


def _split_ranges(report, train_ds, test_origins) -> dict:
  """The data report's split ranges and the origin range of the train and test orders."""

  def iso(ms):
    return str(np.datetime64(int(ms), "ms").astype("datetime64[m]"))

  splits = getattr(report, "splits", {}) or {}
  return {
    "configured": {name: f"{v.get('start')} .. {v.get('end')}" for name, v in splits.items()},
    "train_origins": (iso(np.min(train_ds.origins)), iso(np.max(train_ds.origins))),
    "test_origins": (iso(np.min(test_origins)), iso(np.max(test_origins))),
  }


def null_test(config, workdir: str) -> dict:
  """SPEC section 7 after `evaluate` on a martingale: no gain beyond the best causal baseline.

  Applies `diagnostics.null_test_verdict` (flexible heads vs the best causal baseline, fixed
  head vs its benchmark, clustered intervals, Holm over all rows) and writes
  null_test.json/.md next to the report.
  """
  out = evaluate(config, workdir)
  verdict = diagnostics.null_test_verdict(
    out["paired"]["best_causal"], out["stats"]["LEM"], config.model.n_ahead
  )
  outdir = os.path.dirname(out["report"])
  with open(os.path.join(outdir, "null_test.json"), "w") as f:
    json.dump(verdict, f, indent=2)
  text = "\n".join(lookahead.report_lines(config.model)) + diagnostics.null_test_markdown(verdict)
  with open(os.path.join(outdir, "null_test.md"), "w") as f:
    f.write(text)
  print(text.split("## All rows")[0])
  return verdict
