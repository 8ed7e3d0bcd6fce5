"""Training: the jitted train step, validation, early stopping, checkpoints and the resumable run loop."""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm

from lemjax import checkpoint as ckpt_lib
from lemjax import config as config_lib
from lemjax import costs as costs_lib
from lemjax import data as data_lib
from lemjax import diagnostics
from lemjax import experiment
from lemjax import lookahead
from lemjax import model as model_lib
from lemjax import objectives
from lemjax import scenarios
from lemjax import sharding
from lemjax import validation
from lemjax import workdir as workdir_lib
from lemjax.model import model_batch
from lemjax.workdir import MetricWriter
from lemjax.workdir import to_jsonable


@flax.struct.dataclass
class TrainState:
  """Everything a train step reads and writes; the static fields make the step module-level."""

  step: jax.Array  # int32 scalar, optimiser steps taken
  params: Any
  opt_state: Any
  apply_fn: Callable = flax.struct.field(pytree_node=False)
  tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)
  loss_config: config_lib.LossConfig = flax.struct.field(pytree_node=False)
  r_min_range: tuple[float, float] = flax.struct.field(pytree_node=False, default=(0.0, 0.0))
  r_max_range: tuple[float, float] = flax.struct.field(pytree_node=False, default=(1.0, 1.0))
  costs: config_lib.CostConfig = flax.struct.field(
    pytree_node=False, default=config_lib.CostConfig()
  )
  size_input: bool = flax.struct.field(pytree_node=False, default=False)  # the model reads sizes
  # int32 [K, S]: the step each head x scenario cell's soft-window anneal began, once
  # `loss_config.mask_rewarm_collapsed` has restarted a collapsed cell's anneal (`rewarm_collapsed`);
  # None until then: one anneal for every cell, the scalar schedule, so that a run in which no
  # cell restarts is the default run bit for bit (XLA fuses a [K, S] temperature differently).
  anneal_start: jax.Array | None = None
  # `train.ema_decay` > 0: an exponential moving average of the parameters after every step,
  # the parameters that are validated, checkpointed as "params" and served; None when off.
  ema_params: Any = None
  ema_decay: float = flax.struct.field(pytree_node=False, default=0.0)

  def served_params(self) -> Any:
    """The parameters validation scores and evaluation serves: the average when kept."""
    return self.params if self.ema_params is None else self.ema_params

  def arrays(self) -> dict:
    """The checkpointed part of the state.

    "params" are always the served parameters (what `workdir.restore_params` reads); with an
    average kept, the optimiser's own parameters follow as "train_params" for resuming.
    """
    out = {"step": self.step, "params": self.served_params(), "opt_state": self.opt_state}
    if self.ema_params is not None:
      out["train_params"] = self.params
    return out


# --- Building blocks ------------------------------------------------------------------------------


def make_schedule(cfg: config_lib.OptimizerConfig) -> optax.Schedule:
  """Linear warm-up to the peak, then cosine decay to `final_lr_fraction` or a flat rate."""
  warmup = max(int(cfg.warmup_steps), 0)
  if cfg.schedule == "cosine":
    return optax.warmup_cosine_decay_schedule(
      0.0,
      cfg.learning_rate,
      max(warmup, 1),
      max(cfg.steps, warmup + 1),
      end_value=cfg.learning_rate * cfg.final_lr_fraction,
    )
  if cfg.schedule == "constant":
    return optax.join_schedules(
      [
        optax.linear_schedule(0.0, cfg.learning_rate, max(warmup, 1)),
        optax.constant_schedule(cfg.learning_rate),
      ],
      [max(warmup, 1)],
    )
  raise ValueError(f"TrainConfig.schedule={cfg.schedule!r} is not 'cosine' or 'constant'")


def make_optimizer(cfg: config_lib.OptimizerConfig) -> optax.GradientTransformation:
  """AdamW on the warm-up schedule after global-norm clipping.

  Cached on the OptimizerConfig part of `cfg` (a TrainConfig), so runs that differ only in
  logging or checkpoint cadence share one transformation object and hence one compiled train step.
  """
  return _optimizer(config_lib.optimizer_config(cfg))


@functools.cache
def _optimizer(cfg: config_lib.OptimizerConfig) -> optax.GradientTransformation:
  adamw = optax.adamw(make_schedule(cfg), weight_decay=cfg.weight_decay)
  if cfg.clip_norm > 0:
    return optax.chain(optax.clip_by_global_norm(cfg.clip_norm), adamw)
  return adamw


def create_train_state(
  rng: jax.Array,
  model_config: config_lib.ModelConfig,
  train_config: config_lib.TrainConfig,
  loss_config: config_lib.LossConfig,
  costs: config_lib.CostConfig | None = None,
) -> TrainState:
  """Initialises parameters and optimiser state for `model_config` (costs: lemjax/costs.py)."""
  model = model_lib.build_model(model_config)
  params = model_lib.init_params(model_config, rng)
  tx = make_optimizer(train_config)
  decay = float(train_config.ema_decay)
  if not 0.0 <= decay < 1.0:
    raise ValueError(f"config.train.ema_decay={decay} is not in [0, 1) (0: no average)")
  return TrainState(
    step=jnp.zeros((), jnp.int32),
    params=params,
    opt_state=tx.init(params),
    apply_fn=model.apply,
    tx=tx,
    loss_config=loss_config,
    r_min_range=tuple(train_config.r_min_range),
    r_max_range=tuple(train_config.r_max_range),
    costs=costs or config_lib.CostConfig(),
    size_input=model_config.allocator.size_input,
    # A copy, not the same buffers: the train step donates its state.
    ema_params=jax.tree.map(jnp.copy, params) if decay > 0 else None,
    ema_decay=decay,
  )


def rewarm_collapsed(
  anneal_start_KxS, early_KxS, step: int, loss_config: config_lib.LossConfig, last_step: int
) -> np.ndarray:
  """The anneal starts after the validation at `step` (`loss.mask_rewarm_collapsed`).

  A cell that ends almost no validation order early next to a min period that ends many
  (`diagnostics.collapsed_against_neighbours`, the training warning) sits on the sharp window's
  plateau, where ending early earns no gradient. Its anneal restarts at `step`, so it gets the
  warm window's gradient again, if its previous anneal has finished and the new one can finish by
  `last_step`; every other cell keeps its temperature.
  """
  start = np.array(anneal_start_KxS, np.int32)
  anneal = loss_config.mask_anneal_steps
  if anneal <= 0 or loss_config.mask_temperature_start <= 0 or step + anneal > last_step:
    return start
  due = diagnostics.collapsed_against_neighbours(early_KxS) & (step - start >= anneal)
  start[due] = step
  return start


# --- Steps ----------------------------------------------------------------------------------------


def _loss(params, state: TrainState, batch: dict, r_min_B, r_max_B, rngs=None, temperature=None):
  """(loss, (aux, allocations, fill prices or None)); with costs, `batch["size"]` holds the
  orders' sizes and r_max is tightened by their participation cap here."""
  cost_cfg, size_B = state.costs, batch.get("size")
  if cost_cfg.enabled:
    r_max_B = costs_lib.capped_r_max(r_max_B, size_B, batch["prices"].shape[1], cost_cfg)
  model_size = size_B if state.size_input else None
  alloc_BxNxKxS = state.apply_fn(
    {"params": params},
    batch["inputs"],
    r_min_B,
    r_max_B,
    batch["prices"],
    batch["volumes"],
    model_size,
    deterministic=rngs is None,
    rngs=rngs,
  )
  fills = None
  if cost_cfg.enabled:
    fills = costs_lib.batch_fill_prices(alloc_BxNxKxS, batch, size_B, cost_cfg)
  loss, aux = objectives.lem_loss(
    alloc_BxNxKxS, batch["prices"], batch["volumes"], state.loss_config, temperature, fills
  )
  return loss, (aux, alloc_BxNxKxS, fills)


def train_step(state: TrainState, batch: dict, rng: jax.Array) -> tuple[TrainState, dict]:
  """One AdamW step on a batch of orders, for all K heads x S scenarios in one pass.

  Args:
    state: the TrainState (donated by `train_step_jit`).
    batch: {"inputs": [B, T, F], "prices": [B, N], "volumes": [B, N]} float32.
    rng: the run's base key; the step's randomness is `fold_in(rng, state.step)`.

  Returns:
    (new state, scalar metrics on device).
  """
  rng = jax.random.fold_in(rng, state.step)
  k_terms, k_dropout = jax.random.split(rng)
  if state.costs.enabled:  # a key of its own, so the cost-free path draws exactly as before
    size_B = costs_lib.sample_sizes(
      jax.random.fold_in(k_terms, 1), batch["prices"].shape[0], state.costs.size_range
    )
    batch = {**batch, "size": size_B}
  r_min_B, r_max_B = validation.sample_order_terms(
    k_terms,
    batch["prices"].shape[0],
    batch["prices"].shape[1],
    state.r_min_range,
    state.r_max_range,
  )
  grad_fn = jax.value_and_grad(_loss, has_aux=True)
  anneal_start = 0 if state.anneal_start is None else state.anneal_start
  temperature = objectives.mask_temperature(state.loss_config, state.step, anneal_start)
  (loss, (aux, _, _)), grads = grad_fn(
    state.params, state, batch, r_min_B, r_max_B, {"dropout": k_dropout}, temperature
  )
  updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  ema_params = state.ema_params
  if ema_params is not None:
    ema_params = optax.incremental_update(params, ema_params, 1.0 - state.ema_decay)
  metrics = {
    "loss": loss,
    "grad_norm": optax.tree.norm(grads),
    "mask_temperature": jnp.max(temperature),  # the warmest cell's
    **{k: v for k, v in aux.items() if jnp.ndim(v) == 0},
  }
  if state.anneal_start is not None:
    metrics["rewarmed_cells"] = jnp.sum(state.anneal_start > 0)
  new = state.replace(
    step=state.step + 1, params=params, opt_state=opt_state, ema_params=ema_params
  )
  return new, metrics


def eval_step(state: TrainState, batch: dict, r_min_B: jax.Array, r_max_B: jax.Array) -> dict:
  """Validation loss and hard-window metrics (bps) of a batch, without dropout, of the served
  parameters (the moving average when `train.ema_decay` > 0).

  imp_flexible_bps: mean improvement of the flexible heads (every scenario); abs_fixed_bps:
  mean |improvement| of the fixed head, its tracking error (its signed mean cancels over sides);
  early_KxS and imp_bps_KxS: per head and scenario, the share of orders ended before their
  last bar and the mean improvement (what reveals a collapsed head, lemjax/diagnostics.py).
  """
  loss, (_, alloc_BxNxKxS, fills) = _loss(state.served_params(), state, batch, r_min_B, r_max_B)
  summary = objectives.execution_summary(alloc_BxNxKxS, batch["prices"], batch["volumes"], fills)
  imp_BxKxS = summary["improvement_bps"]
  return {
    "loss": loss,
    "imp_flexible_bps": jnp.mean(imp_BxKxS[:, :-1]),
    "abs_fixed_bps": jnp.mean(jnp.abs(imp_BxKxS[:, -1])),
    "early_KxS": jnp.mean(summary["ended_early"].astype(jnp.float32), axis=0),
    "imp_bps_KxS": jnp.mean(imp_BxKxS, axis=0),
  }


train_step_jit = jax.jit(train_step, donate_argnums=0)
eval_step_jit = jax.jit(eval_step)


# --- The run loop ---------------------------------------------------------------------------------


def _flush(
  pending: list,
  first_step: int,
  writer: MetricWriter,
  tick: float,
  batch_size: int,
  last_good: int | None,
) -> dict:
  """Fetches the buffered step metrics (one host sync), fails on NaN/Inf, logs their mean."""
  values = jax.device_get(pending)
  elapsed = time.perf_counter() - tick  # after the sync, so it covers the steps' compute
  losses = np.array([v["loss"] for v in values])
  bad = np.flatnonzero(~np.isfinite(losses))
  if bad.size:
    raise FloatingPointError(
      f"non-finite training loss ({losses[bad[0]]}) at step {first_step + int(bad[0]) + 1}; "
      f"stopping. The last good checkpoint is step {last_good} in {writer.path.rsplit('/', 1)[0]}"
    )
  mean = {k: float(np.mean([v[k] for v in values])) for k in values[0]}
  mean["samples_per_s"] = len(values) * batch_size / max(elapsed, 1e-9)
  writer.write(first_step + len(values), "train", mean)
  return mean


def _rewarm(start_KxS: np.ndarray, val: dict, step: int, loss_config, last_step: int) -> np.ndarray:
  """`rewarm_collapsed`, logging the cells it restarts."""
  start = rewarm_collapsed(start_KxS, val["early_KxS"], step, loss_config, last_step)
  cells = np.argwhere(start != start_KxS)
  if cells.size:
    names = ", ".join(
      f"head {k} (min period {k + 1}) {scenarios.scenario_name(int(s))}" for k, s in cells
    )
    logging.warning(
      "step %d: restarting the soft-window anneal of %d cells: %s", step, len(cells), names
    )
  return start


def with_anneal_start(state: TrainState, start_KxS: np.ndarray) -> TrainState:
  """`state` with the anneal starts as an array once a cell has restarted, else None."""
  if not np.any(start_KxS):
    return state.replace(anneal_start=None)
  return state.replace(anneal_start=jnp.asarray(start_KxS, jnp.int32))


def _restore(checkpointer: ckpt_lib.Checkpointer, state: TrainState, rng: jax.Array):
  """(state, rng, meta) from the latest checkpoint, or None when the work directory has none."""
  target = {**state.arrays(), "rng": rng}
  restored = checkpointer.restore(target)
  if restored is None:
    return None
  arrays, meta = restored
  # Rebuild with the target's tree structure (optax states are named tuples).
  arrays = jax.tree.unflatten(jax.tree.structure(target), jax.tree.leaves(arrays))
  if state.ema_params is None:
    state = state.replace(params=arrays["params"])
  else:
    state = state.replace(params=arrays["train_params"], ema_params=arrays["params"])
  state = state.replace(step=arrays["step"], opt_state=arrays["opt_state"])
  return state, arrays["rng"], meta


def place_state(
  state: TrainState, rng: jax.Array, mesh: jax.sharding.Mesh, mesh_config: config_lib.MeshConfig
) -> tuple[TrainState, jax.Array, Any]:
  """Puts the state and key on `mesh`: (state, rng, state shardings or None on one device).

  One device: everything committed to it (restored arrays come back committed, and a different
  commitment would compile the step a second time). Several: the state follows
  `sharding.tree_shardings` (replicated, or FSDP), the key is replicated.
  """
  if mesh.size == 1:
    state, rng = jax.device_put((state, rng), mesh.devices.flat[0])
    return state, rng, None
  shardings = sharding.tree_shardings(state, mesh, mesh_config)
  state, rng = _to_mesh((state, rng), (shardings, sharding.replicated(mesh)))
  return state, rng, shardings


def _to_mesh(tree: Any, shardings: Any) -> Any:
  """`sharding.shard_tree`, also from arrays that live on one device of this process.

  Such arrays (freshly created ones) cannot be moved to other processes' devices; their host
  copies, equal on every process, can.
  """
  placed = jax.tree.leaves(tree)
  targets = jax.tree.leaves(shardings, is_leaf=lambda x: isinstance(x, jax.sharding.Sharding))
  if jax.process_count() > 1 and not all(
    isinstance(x, jax.Array) and x.sharding == s for x, s in zip(placed, targets)
  ):
    tree = jax.tree.map(np.asarray, tree)
  return sharding.shard_tree(tree, shardings)


def train_and_evaluate(config, workdir: str) -> dict:
  """Trains the experiment in `config`, resuming from `workdir` when it holds a checkpoint.

  Validation runs every `train.eval_every` steps on a fixed set; the latest checkpoint (for
  resuming) and the best one (lowest validation loss, for evaluation) live in
  `<workdir>/checkpoints/`. Returns a summary dict (final step, best step and loss).

  The batch is split over the `data` axis of a mesh of every device (`config.mesh`, see
  lemjax/sharding.py); on one device the plain jitted step runs unchanged. In a multi-process
  job each process loads its rows of every batch and process 0 writes the run files and metrics.
  """
  started = time.perf_counter()
  # --- Data, configs and run files.
  train_ds, val_ds, _, report, data_config = experiment.load_data(config)
  cfgs = experiment.resolve_configs(config, int(train_ds.batch(np.arange(1))["inputs"].shape[-1]))
  cfgs["data"] = data_config
  tcfg, mcfg = cfgs["train"], cfgs["model"]
  mesh_cfg = config_lib.mesh_config(config.get("mesh"))
  mesh = sharding.make_mesh(mesh_cfg)
  sharding.check_batch_size(tcfg.batch_size, mesh)
  source = workdir_lib.data_source_line(data_config, report)
  if sharding.is_primary():
    workdir_lib.write_run_files(workdir, config, cfgs, report, source)
  lookahead.announce(mcfg, workdir if sharding.is_primary() else None)
  logging.info(
    "%s; %d train / %d validation windows; work directory %s",
    source,
    train_ds.num_windows,
    val_ds.num_windows,
    workdir,
  )
  if mesh.size > 1:
    logging.info(
      "mesh: %d devices on '%s' (%d processes), fsdp=%s",
      mesh.size,
      sharding.DATA_AXIS,
      jax.process_count(),
      mesh_cfg.fsdp,
    )

  # --- State, sampler, resume.
  init_rng, rng = jax.random.split(jax.random.PRNGKey(config.seed))
  state = create_train_state(init_rng, mcfg, tcfg, cfgs["loss"], cfgs["costs"])
  sampler = data_lib.Sampler(train_ds.num_windows, tcfg.batch_size, config.seed)
  checkpointer = ckpt_lib.Checkpointer(workdir, tcfg.max_checkpoints)
  writer = MetricWriter(workdir)
  meta = {"best_val": None, "best_step": None, "bad_rounds": 0, "finished": False}
  if mesh.size > 1:  # first, so that a checkpoint is restored straight into the mesh layout
    state, rng, _ = place_state(state, rng, mesh, mesh_cfg)
  restored = _restore(checkpointer, state, rng)
  # Host copy of the anneal starts per cell (`loss.mask_rewarm_collapsed`), None when off.
  anneal_start = None
  if cfgs["loss"].mask_rewarm_collapsed:
    anneal_start = np.zeros((mcfg.n_ahead + 1, scenarios.NUM_SCENARIOS), np.int32)
  if restored is not None:
    state, rng, saved = restored
    sampler.restore(saved["sampler"])
    meta.update({k: saved[k] for k in meta})
    if anneal_start is not None and "anneal_start" in saved:
      anneal_start = np.asarray(saved["anneal_start"], np.int32)
      state = with_anneal_start(state, anneal_start)
    logging.info("resumed from step %d in %s", int(state.step), checkpointer.root)
  state, rng, state_shardings = place_state(state, rng, mesh, mesh_cfg)
  step = int(state.step)
  writer.truncate_after(step)
  if meta["finished"] or step >= tcfg.steps:
    logging.info("training already finished at step %d (%s)", step, workdir)
    checkpointer.close()
    return {"step": step, **meta}

  # --- Loop: steps are dispatched asynchronously; the host syncs only at log/validation steps.
  if mesh.size == 1:
    step_fn, eval_fn = train_step_jit, eval_step_jit
  else:
    step_fn = sharding.jit_sharded_step(train_step, state_shardings, mesh)
    eval_fn = jax.jit(eval_step, out_shardings=sharding.replicated(mesh))
  val_batches = validation.validation_batches(
    val_ds, tcfg, mcfg.n_ahead, config.seed, mesh, cfgs["costs"]
  )
  bar = tqdm.tqdm(
    total=tcfg.steps,
    initial=step,
    unit="step",
    dynamic_ncols=True,
    disable=not (tcfg.progress and sharding.is_primary()),
  )
  pending, first, tick, last_good, postfix = (
    [],
    step,
    time.perf_counter(),
    checkpointer.latest_step(),
    {},
  )
  try:
    while step < tcfg.steps:
      indices = sampler.next_indices()
      if mesh.size == 1:
        batch = model_batch(train_ds.batch(indices))
      else:  # every process draws the same global batch and loads only its own rows
        batch = sharding.put_batch(model_batch(train_ds.batch(sharding.host_rows(indices))), mesh)
      state, metrics = step_fn(state, batch, rng)
      pending.append(metrics)
      step += 1
      if tcfg.stop_after and step >= tcfg.stop_after:
        logging.warning("stop_after=%d reached: leaving without a checkpoint", tcfg.stop_after)
        return {"step": step, "interrupted": True, **meta}
      validate_now = step % tcfg.eval_every == 0 or step == tcfg.steps
      if step % tcfg.log_every == 0 or validate_now:
        mean = _flush(pending, first, writer, tick, tcfg.batch_size, last_good)
        postfix.update(loss=f"{mean['loss']:.4f}", sps=f"{mean['samples_per_s']:.0f}")
        bar.set_postfix(postfix)
        bar.update(step - first)
        pending, first, tick = [], step, time.perf_counter()
      if validate_now:
        val = validation.validate(state, val_batches, eval_fn)
        record = validation.val_record(val)
        if anneal_start is not None:
          restarted = _rewarm(anneal_start, val, step, state.loss_config, tcfg.steps)
          if np.any(restarted != anneal_start):  # the state changes shape once: place it again
            state = with_anneal_start(state, restarted)
            state, rng, state_shardings = place_state(state, rng, mesh, mesh_cfg)
            if mesh.size > 1:
              step_fn = sharding.jit_sharded_step(train_step, state_shardings, mesh)
          anneal_start = record["anneal_start_KxS"] = restarted
        writer.write(step, "val", record)
        validation.log_collapsed_heads(step, val, rewarming=anneal_start is not None)
        if not math.isfinite(val["loss"]):
          raise FloatingPointError(
            f"non-finite validation loss at step {step}; the last good "
            f"checkpoint is step {last_good} in {checkpointer.root}"
          )
        improved = meta["best_val"] is None or val["loss"] < meta["best_val"]
        if improved:
          meta.update(best_val=val["loss"], best_step=step, bad_rounds=0)
        else:
          meta["bad_rounds"] += 1
        stop = tcfg.patience > 0 and meta["bad_rounds"] >= tcfg.patience
        meta["finished"] = bool(stop or step >= tcfg.steps)
        saved = {
          **meta,
          "sampler": to_jsonable(sampler.state),
          "step": step,
          "val": {k: v for k, v in val.items() if np.ndim(v) == 0},
        }
        if anneal_start is not None:
          saved["anneal_start"] = anneal_start.tolist()
        arrays = {**state.arrays(), "rng": rng}
        if improved:
          checkpointer.save(step, arrays, saved, best=True)
        checkpointer.save(step, arrays, saved)
        last_good = step
        postfix["val"] = f"{val['loss']:.4f}"
        bar.set_postfix(postfix)
        tick = time.perf_counter()  # validation time does not count against samples/s
        if stop:
          logging.info(
            "early stop at step %d: no improvement in %d validations (best %.5f at %d)",
            step,
            tcfg.patience,
            meta["best_val"],
            meta["best_step"],
          )
          break
  finally:
    bar.close()
    checkpointer.close()
  summary = {"step": step, **meta}
  if sharding.is_primary():
    wall_s = round(time.perf_counter() - started, 1)
    workdir_lib.write_train_summary(workdir, {**summary, "wall_s": wall_s})
  return summary
