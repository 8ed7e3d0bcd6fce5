"""Tests of training: schedule, order terms, the jitted step, resume equality, NaN stop, golden loss."""

import copy
import dataclasses
import functools
import json
import os

import jax
import numpy as np
import pytest

from experiments import crypto_intraday
from lemjax import checkpoint as ckpt_lib
from lemjax import config as config_lib
from lemjax import diagnostics
from lemjax import experiment
from lemjax import model as model_lib
from lemjax import objectives
from lemjax import train as train_lib
from lemjax import validation
from lemjax import workdir as workdir_lib
from lemjax.data import Sampler


def smoke_config(**train):
  config = crypto_intraday.get_config("smoke")
  config.train.progress = False
  for key, value in train.items():
    config.train[key] = value
  return config


def _train_data(config):
  """The training split and the resolved config dataclasses of `config`."""
  train_ds, _, _, _, _ = experiment.load_data(config)
  return train_ds, experiment.resolve_configs(
    config, train_ds.batch(np.arange(1))["inputs"].shape[-1]
  )


def _latest(workdir):
  """(arrays, meta) of the latest checkpoint, restored without a template."""
  checkpointer = ckpt_lib.Checkpointer(workdir)
  try:
    step = checkpointer.latest_step()
    import orbax.checkpoint as ocp

    manager = checkpointer._latest
    out = manager.restore(
      step, args=ocp.args.Composite(state=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore())
    )
    return out["state"], dict(out["meta"])
  finally:
    checkpointer.close()


def _train_records(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f]
  for r in records:
    r.pop("samples_per_s", None)
  return records


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """An uninterrupted smoke run, and one killed after step 12 then resumed (checkpoints at 8, 16, 24)."""
  root = tmp_path_factory.mktemp("train")
  full, killed = str(root / "full"), str(root / "killed")
  compiled_before = train_lib.train_step_jit._cache_size()
  summary_full = train_lib.train_and_evaluate(smoke_config(), full)
  interrupted = train_lib.train_and_evaluate(smoke_config(stop_after=12), killed)
  after_kill = ckpt_lib.Checkpointer(killed)
  kill_step = after_kill.latest_step()
  after_kill.close()
  summary_resumed = train_lib.train_and_evaluate(smoke_config(), killed)
  compiled = train_lib.train_step_jit._cache_size() - compiled_before
  return dict(
    full=full,
    killed=killed,
    summary_full=summary_full,
    interrupted=interrupted,
    kill_step=kill_step,
    summary_resumed=summary_resumed,
    compiled=compiled,
  )


def test_sample_order_terms_are_always_feasible():
  n = 12
  r_min, r_max = validation.sample_order_terms(
    jax.random.PRNGKey(0), 4096, n, (0.0, 0.5), (0.0, 1.0)
  )
  r_min, r_max = np.asarray(r_min), np.asarray(r_max)
  assert (r_min * n <= 1 + 1e-6).all() and (r_max * n >= 1 - 1e-6).all() and (r_min <= r_max).all()
  assert r_min.std() > 0 and r_max.std() > 0  # drawn per order, not one contract for the batch


def test_schedule_warms_up_then_decays():
  cfg = config_lib.TrainConfig(
    learning_rate=1e-2, warmup_steps=10, steps=100, final_lr_fraction=0.1
  )
  sched = train_lib.make_schedule(cfg)
  np.testing.assert_allclose(
    [sched(0), sched(10), sched(100)], [0.0, 1e-2, 1e-3], rtol=1e-5, atol=1e-9
  )
  flat = train_lib.make_schedule(
    config_lib.TrainConfig(learning_rate=1e-2, warmup_steps=10, schedule="constant")
  )
  np.testing.assert_allclose([flat(5), flat(50), flat(5000)], [5e-3, 1e-2, 1e-2], rtol=1e-5)
  with pytest.raises(ValueError, match="schedule"):
    train_lib.make_schedule(config_lib.TrainConfig(schedule="step"))


def test_interrupted_run_resumes_to_identical_parameters(runs):
  assert runs["interrupted"]["interrupted"] and runs["kill_step"] == 8
  full, _ = _latest(runs["full"])
  resumed, meta = _latest(runs["killed"])
  assert int(full["step"]) == int(resumed["step"]) == 24 and meta["finished"]
  jax.tree.map(np.testing.assert_array_equal, full["params"], resumed["params"])
  jax.tree.map(np.testing.assert_array_equal, full["opt_state"], resumed["opt_state"])
  # The killed run's metrics past its checkpoint were dropped and written again, identically.
  assert _train_records(runs["full"]) == _train_records(runs["killed"])
  assert runs["summary_full"]["best_step"] == runs["summary_resumed"]["best_step"]


def test_no_recompilation_across_steps_and_runs(runs):
  assert runs["compiled"] <= 1  # three runs (one resumed from disk) share one compiled step
  config = smoke_config()
  train_ds, cfgs = _train_data(config)
  state = train_lib.create_train_state(
    jax.random.PRNGKey(0), cfgs["model"], cfgs["train"], cfgs["loss"]
  )
  state, rng = jax.device_put((state, jax.random.PRNGKey(1)), jax.devices()[0])  # as the loop does
  sampler = Sampler(train_ds.num_windows, cfgs["train"].batch_size, 0)
  sizes = []
  for _ in range(3):
    batch = model_lib.model_batch(train_ds.batch(sampler.next_indices()))
    state, metrics = train_lib.train_step_jit(state, batch, rng)
    sizes.append(train_lib.train_step_jit._cache_size())
  assert sizes[1] == sizes[2] == sizes[0] and int(state.step) == 3
  assert isinstance(metrics["loss"], jax.Array)  # metrics stay on device until fetched


def test_run_directory_holds_config_metrics_and_report(runs):
  files = set(os.listdir(runs["full"]))
  assert {
    "config.json",
    "data_report.json",
    "metrics.jsonl",
    "checkpoints",
    "SYNTHETIC_DATA.txt",
    "train_summary.json",
  } <= files
  with open(os.path.join(runs["full"], "config.json")) as f:
    saved = json.load(f)
  assert saved["resolved"]["model"]["encoder"]["n_features"] > 0
  assert saved["data_source"].startswith("Data source: SYNTHETIC")
  steps = [r["step"] for r in _train_records(runs["full"]) if r["split"] == "val"]
  assert steps == [8, 16, 24]
  with open(os.path.join(runs["full"], "train_summary.json")) as f:
    summary = json.load(f)
  assert summary["step"] == 24 and summary["finished"] and summary["wall_s"] > 0


def test_finished_run_is_not_trained_again(runs):
  before = _latest(runs["full"])[1]
  summary = train_lib.train_and_evaluate(smoke_config(), runs["full"])
  assert summary["step"] == 24 and _latest(runs["full"])[1] == before


def test_non_finite_loss_stops_with_the_step_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
  calls = {"n": 0}
  real = train_lib.model_batch

  def poisoned(batch):
    out = real(batch)
    if out["prices"].shape[0] == 16:  # training batches (validation ones hold 32 orders)
      calls["n"] += 1
      if calls["n"] == 10:  # the batch of step 10
        out["prices"][:] = np.nan
    return out

  monkeypatch.setattr(train_lib, "model_batch", poisoned)
  with pytest.raises(FloatingPointError, match="step 10.*last good checkpoint is step 8"):
    train_lib.train_and_evaluate(smoke_config(), str(tmp_path))
  checkpointer = ckpt_lib.Checkpointer(str(tmp_path))
  assert checkpointer.latest_step() == 8
  checkpointer.close()


def test_default_workdir_says_synthetic():
  config = smoke_config()
  assert workdir_lib.default_workdir(config) == os.path.join(
    "runs", "crypto_intraday_smoke_SYNTHETIC"
  )
  config.data.source = "files"
  assert workdir_lib.default_workdir(config) == os.path.join("runs", "crypto_intraday_smoke")


@pytest.mark.parametrize("tie_heads", (True, False))
def test_golden_loss_after_one_step(tie_heads):
  """Pinned loss of the smoke config's first step and of the same batch after that step.

  Update these numbers only when a change is meant to alter the model's numbers (the
  encoder, allocator, objectives, initialisation, optimiser, synthetic market or sampler),
  and say so in the commit message.
  """
  config = smoke_config()
  config.model.allocator.tie_heads = tie_heads
  train_ds, cfgs = _train_data(config)
  init_rng, rng = jax.random.split(jax.random.PRNGKey(config.seed))
  state = train_lib.create_train_state(init_rng, cfgs["model"], cfgs["train"], cfgs["loss"])
  state, rng = jax.device_put((state, rng), jax.devices()[0])
  batch = model_lib.model_batch(train_ds.batch(Sampler(train_ds.num_windows, 16, 0).next_indices()))
  state, metrics = train_lib.train_step_jit(state, copy.deepcopy(batch), rng)
  r_min, r_max = np.zeros(16, np.float32), np.ones(16, np.float32)
  after = train_lib.eval_step_jit(state, batch, r_min, r_max)
  losses = [float(metrics["loss"]), float(after["loss"])]
  np.testing.assert_allclose(losses, GOLDEN if tie_heads else GOLDEN_INDEPENDENT_HEADS, rtol=2e-5)


# The training loss of step 0 uses the annealed soft window's start temperature
# (loss.mask_temperature_start, 0.05 instead of 2e-3 before annealing existed); the loss after
# the step is a validation loss at the sharp temperature, and the first step's learning rate is 0
# (warm-up), so it is unchanged. Both changed when a scenario's heads came to share their trunk
# by default (model.allocator.tie_heads=True, tie_scope="trunk", docs/study.md): the shared
# weights are drawn once per scenario instead of once per head, so the initial model differs;
# with tie_heads=False the previous pair is unchanged (GOLDEN_INDEPENDENT_HEADS).
GOLDEN = (0.7039211988449097, 0.7041335105895996)
GOLDEN_INDEPENDENT_HEADS = (0.703702449798584, 0.7039006948471069)


def test_rewarm_collapsed_restarts_only_named_cells_whose_anneal_ended():
  loss = config_lib.LossConfig(mask_temperature_start=0.05, mask_anneal_steps=100)
  early = np.full((6, 8), 0.5)
  early[1, 2] = 0.0  # collapsed: its neighbours (min periods 1 and 3) end half of the orders early
  early[3, 4] = 0.01  # collapsed too
  start = np.zeros((6, 8), np.int32)
  start[3, 4] = 150  # ... but its anneal, restarted at step 150, runs until step 250
  out = train_lib.rewarm_collapsed(start, early, 200, loss, last_step=1000)
  expected = start.copy()
  expected[1, 2] = 200
  np.testing.assert_array_equal(out, expected)
  assert start[1, 2] == 0  # the input is not modified
  # No restart that cannot finish before the last step, nor without an anneal.
  np.testing.assert_array_equal(train_lib.rewarm_collapsed(start, early, 950, loss, 1000), start)
  flat = config_lib.LossConfig(mask_anneal_steps=0)
  np.testing.assert_array_equal(train_lib.rewarm_collapsed(start, early, 200, flat, 1000), start)


def test_per_cell_anneal_starts_give_the_default_step_when_nothing_restarted():
  """The option's [K, S] temperatures equal the scalar schedule until a cell restarts, so the
  steps are the default's (bit for bit at these sizes; XLA may fuse larger models differently,
  within float rounding); a restarted cell's loss changes."""
  config = smoke_config()
  train_ds, cfgs = _train_data(config)
  batch = model_lib.model_batch(train_ds.batch(Sampler(train_ds.num_windows, 16, 0).next_indices()))

  def two_steps(loss_config, anneal_start=None):
    state = train_lib.create_train_state(
      jax.random.PRNGKey(0), cfgs["model"], cfgs["train"], loss_config
    )
    if anneal_start is not None:
      state = state.replace(anneal_start=anneal_start)
    state, rng = jax.device_put((state, jax.random.PRNGKey(1)), jax.devices()[0])
    losses = []
    for _ in range(2):
      state, metrics = train_lib.train_step_jit(state, copy.deepcopy(batch), rng)
      losses.append(float(metrics["loss"]))
    return state, losses, metrics

  default, default_losses, _ = two_steps(cfgs["loss"])
  option = dataclasses.replace(cfgs["loss"], mask_rewarm_collapsed=True)
  fresh = train_lib.create_train_state(jax.random.PRNGKey(0), cfgs["model"], cfgs["train"], option)
  assert fresh.anneal_start is None  # the scalar schedule until a cell restarts
  none_yet = np.zeros((config.model.n_ahead + 1, 8), np.int32)
  same, same_losses, metrics = two_steps(option, none_yet)
  np.testing.assert_allclose(same_losses, default_losses, rtol=1e-6)
  assert int(metrics["rewarmed_cells"]) == 0
  jax.tree.map(
    functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-6), default.params, same.params
  )
  restarted = np.zeros((config.model.n_ahead + 1, 8), np.int32)
  restarted[:-1] = 1  # the flexible cells restarted at step 1: warmer than the fixed head's
  _, losses, metrics = two_steps(option, restarted)
  np.testing.assert_allclose(losses[0], default_losses[0], rtol=1e-6)
  assert abs(losses[1] - default_losses[1]) > 1e-5
  assert int(metrics["rewarmed_cells"]) == config.model.n_ahead * 8
  warm = objectives.mask_temperature(option, 1, 1)
  assert (
    float(metrics["mask_temperature"])
    == float(warm)
    > float(objectives.mask_temperature(option, 1))
  )


def test_restarted_anneals_are_logged_checkpointed_and_resumed_exactly(tmp_path, monkeypatch):
  """Head 0 x scenario 0 is named collapsed at every validation (steps 8, 16, 24; anneals of 8
  steps): its anneal restarts at 8 and 16, not at 24 (it could not finish); a run killed after
  step 12 resumes from step 8's checkpoint with that restart and ends identical."""

  def named(early_KxS):
    out = np.zeros(np.shape(early_KxS), bool)
    out[0, 0] = True
    return out

  monkeypatch.setattr(diagnostics, "collapsed_against_neighbours", named)
  config = smoke_config()
  config.loss.mask_rewarm_collapsed = True
  full, killed = str(tmp_path / "full"), str(tmp_path / "killed")
  train_lib.train_and_evaluate(config, full)
  stopped = copy.deepcopy(config)
  stopped.train.stop_after = 12
  train_lib.train_and_evaluate(stopped, killed)
  train_lib.train_and_evaluate(config, killed)
  records = _train_records(full)
  starts = {r["step"]: np.asarray(r["anneal_start_KxS"]) for r in records if r["split"] == "val"}
  assert [int(s[0, 0]) for s in starts.values()] == [8, 16, 16]
  assert all(int(s.sum()) == int(s[0, 0]) for s in starts.values())  # no other cell restarted
  rewarmed = [r.get("rewarmed_cells", 0) for r in records if r["split"] == "train"]
  assert rewarmed[:2] == [0, 0] and rewarmed[2:] == [1] * (len(rewarmed) - 2)
  full_arrays, meta = _latest(full)
  assert meta["anneal_start"][0][0] == 16
  resumed_arrays, _ = _latest(killed)
  jax.tree.map(np.testing.assert_array_equal, full_arrays["params"], resumed_arrays["params"])
  assert _train_records(killed) == records


def test_collapse_warning_names_the_cell_and_points_to_the_restart(caplog):
  early = np.full((6, 8), 0.5)
  early[1, 2] = 0.0
  with caplog.at_level("WARNING"):
    lines = validation.log_collapsed_heads(500, {"early_KxS": early})
    validation.log_collapsed_heads(750, {"early_KxS": early}, rewarming=True)
  assert len(lines) == 1 and "head 1 (min period 2) buy/twap/quantity" in lines[0]
  first, second = (r.getMessage() for r in caplog.records)
  assert "mask_rewarm_collapsed=True" in first and "mask_rewarm_collapsed" not in second
  assert "step 750" in second and lines[0] in second


def test_a_run_in_which_no_cell_restarts_is_the_run_without_the_option(tmp_path, monkeypatch):
  monkeypatch.setattr(diagnostics, "collapsed_against_neighbours", lambda e: np.zeros_like(e, bool))
  on, off = str(tmp_path / "on"), str(tmp_path / "off")
  config = smoke_config()
  config.loss.mask_rewarm_collapsed = True
  train_lib.train_and_evaluate(config, on)
  config.loss.mask_rewarm_collapsed = False
  train_lib.train_and_evaluate(config, off)
  records = _train_records(on)
  for r in records:
    if r["split"] == "val":
      assert not np.any(r.pop("anneal_start_KxS"))
  assert records == _train_records(off)
  with_option, _ = _latest(on)
  without, _ = _latest(off)
  jax.tree.map(np.testing.assert_array_equal, without["params"], with_option["params"])


def test_parameter_average_follows_the_optimiser_without_steering_it():
  """`train.ema_decay`: the optimiser's parameters are those of the run without the average,
  the average is the recursion a <- d a + (1 - d) p from the initial parameters, and validation
  scores the average."""
  config = smoke_config()
  train_ds, cfgs = _train_data(config)
  batch = model_lib.model_batch(train_ds.batch(Sampler(train_ds.num_windows, 16, 0).next_indices()))
  decay = 0.5  # short, so that three steps leave every step's weight visible

  def three_steps(train_config):
    state = train_lib.create_train_state(
      jax.random.PRNGKey(0), cfgs["model"], train_config, cfgs["loss"]
    )
    state, rng = jax.device_put((state, jax.random.PRNGKey(1)), jax.devices()[0])
    trajectory = [jax.tree.map(np.asarray, state.params)]
    for _ in range(3):
      state, _ = train_lib.train_step_jit(state, copy.deepcopy(batch), rng)
      trajectory.append(jax.tree.map(np.asarray, state.params))
    return state, trajectory

  plain, trajectory = three_steps(cfgs["train"])
  assert plain.ema_params is None and set(plain.arrays()) == {"step", "params", "opt_state"}
  averaged, _ = three_steps(dataclasses.replace(cfgs["train"], ema_decay=decay))
  jax.tree.map(np.testing.assert_array_equal, plain.params, averaged.params)
  expected = trajectory[0]
  for params in trajectory[1:]:
    expected = jax.tree.map(lambda a, p: decay * a + (1 - decay) * p, expected, params)
  jax.tree.map(
    functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-7),
    averaged.ema_params,
    expected,
  )
  moved = [np.max(np.abs(a - p)) for a, p in zip(*map(jax.tree.leaves, (expected, plain.params)))]
  assert max(moved) > 1e-4  # the average lags the optimiser: a real difference to detect
  assert averaged.served_params() is averaged.ema_params
  r_min, r_max = np.zeros(16, np.float32), np.ones(16, np.float32)
  served = train_lib.eval_step_jit(averaged, batch, r_min, r_max)["loss"]
  as_plain = train_lib.eval_step_jit(plain.replace(params=averaged.ema_params), batch, r_min, r_max)
  np.testing.assert_allclose(float(served), float(as_plain["loss"]), rtol=1e-6)
  assert abs(float(served) - float(train_lib.eval_step_jit(plain, batch, r_min, r_max)["loss"])) > 0
  with pytest.raises(ValueError, match="ema_decay=1.0"):
    train_lib.create_train_state(
      jax.random.PRNGKey(0),
      cfgs["model"],
      dataclasses.replace(cfgs["train"], ema_decay=1.0),
      cfgs["loss"],
    )


def test_averaged_run_serves_the_average_and_resumes_exactly(tmp_path):
  """Checkpoints hold the average as "params" (what evaluation restores) and the optimiser's
  parameters as "train_params"; a run killed after step 12 resumes to the same arrays and metrics."""
  config = smoke_config(ema_decay=0.9)
  full, killed = str(tmp_path / "full"), str(tmp_path / "killed")
  train_lib.train_and_evaluate(config, full)
  train_lib.train_and_evaluate(smoke_config(ema_decay=0.9, stop_after=12), killed)
  train_lib.train_and_evaluate(config, killed)
  full_arrays, meta = _latest(full)
  resumed, _ = _latest(killed)
  assert int(full_arrays["step"]) == 24 and meta["finished"]
  for key in ("params", "train_params", "opt_state"):
    jax.tree.map(np.testing.assert_array_equal, full_arrays[key], resumed[key])
  assert _train_records(killed) == _train_records(full)
  gaps = jax.tree.leaves(
    jax.tree.map(
      lambda a, b: np.max(np.abs(a - b)), full_arrays["params"], full_arrays["train_params"]
    )
  )
  assert max(gaps) > 1e-5
  _, cfgs = _train_data(config)
  served, info = workdir_lib.restore_params(full, cfgs["model"], "latest")
  assert info["step"] == 24
  jax.tree.map(np.testing.assert_array_equal, served, full_arrays["params"])
