"""The Large Execution Model (encoder, then per-head, per-scenario allocator) and its construction."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lemjax import allocation
from lemjax.allocation import Allocator
from lemjax.config import ModelConfig
from lemjax.encoder import Encoder

MODEL_KEYS = ("inputs", "prices", "volumes")  # the Batch arrays the model reads
# What execution costs also read (lemjax/costs.py), when present.
COST_KEYS = ("lookback_vol", "lookback_half_spread")


def check_inputs(config: ModelConfig, inputs_BxTxF, r_min_B, r_max_B, prices_BxN, volumes_BxN):
  """Raises ValueError naming the first argument whose shape does not fit `config`."""
  if inputs_BxTxF.ndim != 3 or inputs_BxTxF.shape[1] != config.seq_len:
    raise ValueError(
      f"inputs_BxTxF must be [B, T={config.seq_len}, F] (T = L + N - 1), "
      f"got shape {inputs_BxTxF.shape}"
    )
  batch = inputs_BxTxF.shape[0]
  for name, value in (("prices_BxN", prices_BxN), ("volumes_BxN", volumes_BxN)):
    if value.shape != (batch, config.n_ahead):
      raise ValueError(f"{name} must be [B={batch}, N={config.n_ahead}], got shape {value.shape}")
  for name, value in (("r_min_B", r_min_B), ("r_max_B", r_max_B)):
    if value.shape != (batch,):
      raise ValueError(f"{name} must be [B={batch}], got shape {value.shape}")


class LEM(nn.Module):
  """Encoder + allocator: features and order terms in, allocations for every head and scenario out.

  The model never sees which asset an order belongs to, so a trained model applies to assets
  it was not trained on.
  """

  config: ModelConfig

  @nn.compact
  def __call__(
    self,
    inputs_BxTxF: jax.Array,
    r_min_B: jax.Array,
    r_max_B: jax.Array,
    prices_BxN: jax.Array,
    volumes_BxN: jax.Array,
    size_B: jax.Array | None = None,
    *,
    deterministic: bool = True,
  ) -> jax.Array:
    """Allocates every order of the batch.

    Args:
      inputs_BxTxF: [B, T, F] causal features of bars t0-L .. t0+N-2.
      r_min_B: [B] per-step lower rate bound (fraction of the order).
      r_max_B: [B] per-step upper rate bound (fraction of the order).
      prices_BxN: [B, N] fill prices of the execution bars over the arrival price; read only
        after each decision, for the running accounting.
      volumes_BxN: [B, N] market volumes of the execution bars, read the same way.
      size_B: [B] order sizes (fractions of the expected volume over N bars), required exactly
        when `config.allocator.size_input` (execution costs on, lemjax/costs.py).
      deterministic: disables dropout when True; otherwise needs a 'dropout' rng.

    Returns:
      [B, N, K, S] allocations, K = N + 1 heads, S = 8 scenarios; each column sums to 1.
    """
    check_inputs(self.config, inputs_BxTxF, r_min_B, r_max_B, prices_BxN, volumes_BxN)
    ctx_BxTxH = Encoder(self.config.encoder, name="encoder")(
      inputs_BxTxF, deterministic=deterministic
    )
    return Allocator(
      self.config.allocator, self.config.lookback, self.config.decision_lag, name="allocator"
    )(ctx_BxTxH, r_min_B, r_max_B, prices_BxN, volumes_BxN, size_B)


def ensemble_apply(
  config: ModelConfig,
  params_M: list,
  inputs_BxTxF,
  r_min_B,
  r_max_B,
  prices_BxN,
  volumes_BxN,
  size_B=None,
  rule: str = "median_proposal",
) -> jax.Array:
  """Allocations [B, N, K, S] of a seed ensemble of LEMs of one config, combined inside the scan.

  Every member runs its own encoder; their allocators steer one execution, their proposals
  combined at each decision by `rule` (`allocation.allocate_ensemble`). Deterministic (no dropout).
  """
  check_inputs(config, inputs_BxTxF, r_min_B, r_max_B, prices_BxN, volumes_BxN)
  encoder = Encoder(config.encoder)
  ctx_M = [encoder.apply({"params": p["encoder"]}, inputs_BxTxF) for p in params_M]
  return allocation.allocate_ensemble(
    [p["allocator"] for p in params_M],
    config.allocator,
    config.lookback,
    ctx_M,
    r_min_B,
    r_max_B,
    prices_BxN,
    volumes_BxN,
    rule,
    config.decision_lag,
    size_B,
  )


# --- Construction ---------------------------------------------------------------------------------


@functools.cache
def build_model(config: ModelConfig) -> LEM:
  # One module object per config, so jitted functions see equal static fields and never retrace.
  return LEM(config)


def dummy_inputs(config: ModelConfig) -> tuple[jax.Array, ...]:
  """One order of the model's shapes, for `init`: (inputs [1, T, F], r_min [1], r_max [1],
  prices [1, N], volumes [1, N], and size [1] with a size input); feasible bounds, unit prices
  and volumes, and a 1% size."""
  n, t, f = config.n_ahead, config.seq_len, config.encoder.n_features
  out = (jnp.zeros((1, t, f)), jnp.zeros((1,)), jnp.ones((1,)), jnp.ones((1, n)), jnp.ones((1, n)))
  return out + (jnp.full((1,), 0.01),) if config.allocator.size_input else out


def init_params(config: ModelConfig, rng: jax.Array):
  """Freshly initialised parameters of the LEM for `config`."""
  return _init_fn(config)(rng)


def param_shapes(config: ModelConfig):
  """The parameter tree of `config` as jax.ShapeDtypeStruct leaves (traced, nothing compiled)."""
  return jax.eval_shape(_init_fn(config), jax.random.PRNGKey(0))


@functools.cache
def _init_fn(config: ModelConfig):
  """Jitted parameter init (an eager one dispatches every op of the scans one by one)."""
  model = build_model(config)
  return jax.jit(lambda rng: model.init(rng, *dummy_inputs(config))["params"])


def model_batch(batch: dict) -> dict:
  """The float arrays of a Batch that the model and its costs read (asset and origin stay on the
  host)."""
  keys = MODEL_KEYS + tuple(k for k in COST_KEYS if k in batch)
  return {k: np.asarray(batch[k], np.float32) for k in keys}
