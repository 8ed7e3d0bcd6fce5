"""The encoder's matmul policy (lemjax/precision.py): bf16 rounds the encoder's matmuls only; the
price accounting and the loss stay float32 and exact."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lemjax import config as C
from lemjax import model as model_lib
from lemjax import objectives
from lemjax import precision
from lemjax import train
from lemjax.encoder import Encoder

MODEL = C.ModelConfig(
  lookback=6,
  n_ahead=3,
  encoder=C.EncoderConfig(n_features=3, embed_dim=4, hidden=8, n_attention_heads=2),
  allocator=C.AllocatorConfig(n_ahead=3, width=8),
)
B = 64
# 0.01 bps: far above float32 rounding of prices near 1 (~1e-3 bps), far below what bfloat16
# operands in the accounting would cost (a 2^-9 relative step is ~20 bps).
ACCOUNTING_BPS = 0.01


def _with_policy(policy: str) -> C.ModelConfig:
  return dataclasses.replace(
    MODEL, encoder=dataclasses.replace(MODEL.encoder, matmul_precision=policy)
  )


def _batch(seed: int = 0) -> dict:
  r = np.random.default_rng(seed)
  n = MODEL.n_ahead
  return {
    "inputs": r.normal(size=(B, MODEL.seq_len, 3)).astype(np.float32),
    "prices": np.exp(np.cumsum(0.003 * r.normal(size=(B, n)), axis=1)).astype(np.float32),
    "volumes": r.lognormal(0.0, 0.5, size=(B, n)).astype(np.float32),
  }


def _orders(seed: int = 1):
  r_min_B = jnp.full((B,), 0.02, jnp.float32)
  r_max_B = jnp.asarray(np.random.default_rng(seed).uniform(0.4, 1.0, B), jnp.float32)
  return r_min_B, r_max_B


def test_unknown_policy_is_named():
  with pytest.raises(ValueError, match="matmul_precision='fp8'"):
    precision.dot("fp8", jnp.ones((2, 2)), jnp.ones((2, 2)))
  with pytest.raises(ValueError, match="matmul_precision='fp8'"):
    model_lib.init_params(_with_policy("fp8"), jax.random.PRNGKey(0))


@pytest.fixture(scope="module")
def states():
  """A TrainState per policy, all on the same parameters (initialised once, under "highest")."""
  state = train.create_train_state(
    jax.random.PRNGKey(0),
    MODEL,
    C.TrainConfig(warmup_steps=1, schedule="constant"),
    C.LossConfig(),
  )
  return {
    p: state.replace(apply_fn=model_lib.build_model(_with_policy(p)).apply)
    for p in precision.POLICIES
  }


@pytest.mark.parametrize("policy", ["default", "bf16"])
def test_parameters_do_not_depend_on_the_policy(policy):
  """So a checkpoint written under one policy loads under any other."""
  shapes = lambda p: jax.tree.map(lambda x: (x.shape, x.dtype), model_lib.param_shapes(p))
  assert shapes(_with_policy(policy)) == shapes(MODEL)


def test_bf16_rounds_the_encoder_and_keeps_float32_outputs(states):
  params = states["highest"].params["encoder"]
  x = jnp.asarray(_batch()["inputs"])
  out = {
    p: jax.jit(Encoder(_with_policy(p).encoder).apply)({"params": params}, x)
    for p in precision.POLICIES
  }
  assert all(v.dtype == jnp.float32 for v in out.values())
  gap = float(jnp.max(jnp.abs(out["bf16"] - out["highest"])))
  # Rounded (so the policy is in effect), but only by bfloat16's own relative step.
  assert 1e-4 < gap < 0.1, gap


def test_accounting_and_loss_stay_exact_under_bf16(states):
  state, batch = states["bf16"], _batch()
  r_min_B, r_max_B = _orders()
  alloc = jax.jit(state.apply_fn)(
    {"params": state.params}, batch["inputs"], r_min_B, r_max_B, batch["prices"], batch["volumes"]
  )
  assert alloc.dtype == jnp.float32
  np.testing.assert_allclose(np.sum(alloc, axis=1), 1.0, atol=1e-5)
  summary = jax.jit(objectives.execution_summary)(alloc, batch["prices"], batch["volumes"])
  metrics = train.eval_step_jit(state, batch, r_min_B, r_max_B)
  with jax.enable_x64(True):
    exact = {k: jnp.asarray(np.asarray(v, np.float64)) for k, v in batch.items()}
    alloc64 = jnp.asarray(np.asarray(alloc, np.float64))
    imp64 = objectives.execution_summary(alloc64, exact["prices"], exact["volumes"])
    imp64 = np.asarray(imp64["improvement_bps"])
    loss64 = float(objectives.lem_loss(alloc64, exact["prices"], exact["volumes"])[0])
  assert summary["improvement_bps"].dtype == jnp.float32
  assert np.max(np.abs(imp64)) > 10 * ACCOUNTING_BPS  # the orders do gain or lose
  np.testing.assert_allclose(summary["improvement_bps"], imp64, rtol=0, atol=ACCOUNTING_BPS)
  np.testing.assert_allclose(metrics["imp_bps_KxS"], imp64.mean(0), rtol=0, atol=ACCOUNTING_BPS)
  np.testing.assert_allclose(float(metrics["loss"]), loss64, rtol=1e-6)


def test_train_step_under_bf16_is_finite_and_moves(states):
  state = jax.tree.map(jnp.copy, states["bf16"])  # the step donates its state
  before = jax.tree.map(np.asarray, state.params)
  batch = _batch()
  for _ in range(2):  # the warm-up learning rate is 0 at step 0
    state, metrics = train.train_step_jit(state, batch, jax.random.PRNGKey(1))
  assert np.isfinite(float(metrics["loss"])) and np.isfinite(float(metrics["grad_norm"]))
  moved = max(
    float(np.max(np.abs(a - np.asarray(b))))
    for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(state.params))
  )
  assert moved > 1e-5
