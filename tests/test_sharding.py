"""Sharded training on 4 forced CPU devices (in a subprocess) against the single-device step."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec

from lemjax import checkpoint as ckpt_lib
from lemjax import config as config_lib
from lemjax import sharding

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEVICES = 4

# Shared by the 4-device subprocess and this (1-device) process: a tiny model and batch.
_SETUP = """
import jax, jax.numpy as jnp, numpy as np
from lemjax import config as C, train
MODEL = C.ModelConfig(lookback=6, n_ahead=3, encoder=C.EncoderConfig(
    n_features=3, embed_dim=4, hidden=8, n_attention_heads=2),
    allocator=C.AllocatorConfig(n_ahead=3, width=8))
# Adam divides each gradient entry by its own scale, so an entry whose true gradient is 0 (the
# attention key bias) turns summation-order noise into a step of up to ~lr: a small rate keeps
# that under 1e-6. The gradients themselves are compared through Adam's moments (opt_state).
TRAIN = C.TrainConfig(batch_size=8, steps=10, learning_rate=1e-5, warmup_steps=1,
                      schedule="constant")
def make_state():
  return train.create_train_state(jax.random.PRNGKey(0), MODEL, TRAIN, C.LossConfig())
def make_batch():
  r = np.random.default_rng(0)
  return {"inputs": r.normal(size=(8, MODEL.seq_len, 3)).astype(np.float32),
          "prices": (1 + 0.01 * r.normal(size=(8, 3))).astype(np.float32),
          "volumes": r.uniform(0.5, 1.5, size=(8, 3)).astype(np.float32)}
"""

# Runs with 4 CPU devices: plain steps, then data-parallel and FSDP steps; saves the FSDP state.
_SCRIPT = (
  _SETUP
  + """
import json, sys
from lemjax import checkpoint as ckpt_lib, sharding
from lemjax.config import MeshConfig
assert jax.device_count() == 4, jax.devices()
copy = lambda s: jax.tree.map(jnp.array, s)
state, batch, rng = make_state(), make_batch(), jax.random.PRNGKey(1)
single, metrics_1 = copy(state), []
for _ in range(2):   # the warm-up learning rate is 0 at step 0: step twice so parameters move
  single, m = train.train_step_jit(single, batch, rng)
  metrics_1.append(m)
out = {}
for name, cfg in (("dp", MeshConfig(data=4)), ("fsdp", MeshConfig(data=4, fsdp=True, fsdp_min_size=64))):
  mesh = sharding.make_mesh(cfg)
  shardings = sharding.tree_shardings(state, mesh, cfg)
  step = sharding.jit_sharded_step(train.train_step, shardings, mesh)
  sharded, b4 = sharding.shard_tree(copy(state), shardings), sharding.put_batch(batch, mesh)
  metrics_4 = []
  for _ in range(2):
    sharded, m = step(sharded, b4, rng)
    metrics_4.append(m)
  diff = lambda a, b: max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in
                          zip(jax.tree.leaves(a), jax.tree.leaves(b)))
  out[name] = {"params": diff(single.params, sharded.params),
               "opt_state": diff(single.opt_state, sharded.opt_state),
               "metrics": diff(metrics_1, metrics_4),
               "moved": diff(state.params, sharded.params),
               "split_leaves": sum(len(l.sharding.device_set) == 4 and not l.is_fully_replicated
                                   for l in jax.tree.leaves(sharded.params))}
ckpt = ckpt_lib.Checkpointer(sys.argv[1])
ckpt.save(2, {**sharded.arrays(), "rng": rng}, {"note": "fsdp"})
ckpt.close()
np.savez(sys.argv[1] + "/expected.npz", *[np.asarray(x) for x in jax.tree.leaves(sharded.params)])
print("RESULT" + json.dumps(out))
"""
)


@pytest.fixture(scope="module")
def four_devices(tmp_path_factory):
  """Runs the 4-device script once; returns (diffs per mode, checkpoint work directory)."""
  workdir = str(tmp_path_factory.mktemp("sharded"))
  env = {
    **os.environ,
    "XLA_FLAGS": f"--xla_force_host_platform_device_count={DEVICES}",
    "JAX_PLATFORMS": "cpu",
    "PYTHONPATH": REPO,
  }
  proc = subprocess.run(
    [sys.executable, "-c", _SCRIPT, workdir],
    env=env,
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert proc.returncode == 0, proc.stderr[-4000:]
  line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT")][-1]
  return json.loads(line[len("RESULT") :]), workdir


@pytest.mark.parametrize("mode", ["dp", "fsdp"])
def test_sharded_step_equals_single_device(four_devices, mode):
  diffs = four_devices[0][mode]
  assert diffs["moved"] > 5e-6, "parameters did not move: the comparison would be vacuous"
  assert diffs["params"] < 1e-6, diffs
  assert diffs["opt_state"] < 1e-6, diffs
  assert diffs["metrics"] < 1e-6, diffs


def test_fsdp_splits_parameters(four_devices):
  assert four_devices[0]["dp"]["split_leaves"] == 0
  assert four_devices[0]["fsdp"]["split_leaves"] > 0


def test_checkpoint_saved_on_4_devices_restores_on_1(four_devices):
  workdir = four_devices[1]
  assert jax.device_count() == 1  # this process keeps the default single CPU device
  scope = {}
  exec(_SETUP, scope)
  state = scope["make_state"]()
  target = {**state.arrays(), "rng": jax.random.PRNGKey(0)}
  checkpointer = ckpt_lib.Checkpointer(workdir)
  arrays, meta = checkpointer.restore(target)
  checkpointer.close()
  assert meta["note"] == "fsdp"
  expected = np.load(os.path.join(workdir, "expected.npz"))
  restored = jax.tree.leaves(arrays["params"])
  assert len(restored) == len(expected.files)
  for i, leaf in enumerate(restored):
    assert len(leaf.sharding.device_set) == 1
    np.testing.assert_array_equal(np.asarray(leaf), expected[f"arr_{i}"])


def test_leaf_spec_rules():
  fsdp = config_lib.MeshConfig(fsdp=True, fsdp_min_size=100)
  assert sharding.leaf_spec((11, 13, 8, 200, 200), 4, fsdp) == PartitionSpec(
    None, None, None, None, "data"
  )
  assert sharding.leaf_spec((7, 32), 4, fsdp) == PartitionSpec(None, "data")
  assert sharding.leaf_spec((7, 30), 4, fsdp) == PartitionSpec()  # nothing divisible
  assert sharding.leaf_spec((4, 5), 4, fsdp) == PartitionSpec()  # too small
  assert sharding.leaf_spec((11, 200), 4, config_lib.MeshConfig()) == PartitionSpec()


def test_mesh_and_batch_checks():
  mesh = sharding.make_mesh(config_lib.MeshConfig())
  assert mesh.shape["data"] == jax.device_count()
  with pytest.raises(ValueError, match="MeshConfig.data"):
    sharding.make_mesh(config_lib.MeshConfig(data=jax.device_count() + 1))
  with pytest.raises(ValueError, match="enabled"):
    sharding.initialize_distributed(config_lib.DistributedConfig(enabled="maybe"))
  with pytest.raises(ValueError, match="cpu_collectives='nccl'"):
    sharding.initialize_distributed(config_lib.DistributedConfig(cpu_collectives="nccl"))
  assert not sharding.initialize_distributed(config_lib.DistributedConfig(enabled="off"))
  np.testing.assert_array_equal(sharding.host_rows(np.arange(8)), np.arange(8))
  assert sharding.is_primary()


# A tiny synthetic run on 4 devices with FSDP: killed after step 3 (checkpoint at 2), resumed to 4.
_RUN_SCRIPT = """
import json, sys
import jax
from experiments import crypto_intraday
from lemjax import train
assert jax.device_count() == 4, jax.devices()
def config(**overrides):
  c = crypto_intraday.get_config("smoke")
  c.train.update(dict(steps=4, eval_every=2, log_every=2, progress=False, **overrides))
  c.mesh.fsdp, c.mesh.fsdp_min_size = True, 64
  return c
killed = train.train_and_evaluate(config(stop_after=3), sys.argv[1])
resumed = train.train_and_evaluate(config(), sys.argv[1])
print("RESULT" + json.dumps({"killed": killed, "resumed": resumed}))
"""


def test_train_and_evaluate_on_4_devices_checkpoints_and_resumes(tmp_path):
  workdir = str(tmp_path / "run")
  env = {
    **os.environ,
    "XLA_FLAGS": f"--xla_force_host_platform_device_count={DEVICES}",
    "JAX_PLATFORMS": "cpu",
    "PYTHONPATH": REPO,
  }
  proc = subprocess.run(
    [sys.executable, "-c", _RUN_SCRIPT, workdir],
    env=env,
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert proc.returncode == 0, proc.stderr[-4000:]
  line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT")][-1]
  out = json.loads(line[len("RESULT") :])
  assert out["killed"]["interrupted"] and out["killed"]["step"] == 3
  assert out["resumed"]["step"] == 4 and out["resumed"]["finished"]
  checkpointer = ckpt_lib.Checkpointer(workdir)
  assert checkpointer.latest_step() == 4
  checkpointer.close()
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f]
  # Each record once: the resumed run starts from the step-2 checkpoint, not from scratch.
  assert sorted((r["step"], r["split"]) for r in records) == [
    (2, "train"),
    (2, "val"),
    (4, "train"),
    (4, "val"),
  ]
  for r in records:
    assert np.isfinite(r["loss"]), r
