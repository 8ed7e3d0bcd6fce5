"""The Large Execution Model: the shared market encoder followed by the per-head, per-scenario allocator."""

from __future__ import annotations

import flax.linen as nn
import jax

from lemjax.allocation import Allocator
from lemjax.config import ModelConfig
from lemjax.encoder import Encoder


def check_inputs(config: ModelConfig, inputs_BxTxF, r_min_B, r_max_B, prices_BxN, volumes_BxN):
  """Raises ValueError naming the first argument whose shape does not fit `config`."""
  if inputs_BxTxF.ndim != 3 or inputs_BxTxF.shape[1] != config.seq_len:
    raise ValueError(f"inputs_BxTxF must be [B, T={config.seq_len}, F] (T = L + N - 1), "
                     f"got shape {inputs_BxTxF.shape}")
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
  def __call__(self, inputs_BxTxF: jax.Array, r_min_B: jax.Array, r_max_B: jax.Array,
               prices_BxN: jax.Array, volumes_BxN: jax.Array, *,
               deterministic: bool = True) -> jax.Array:
    """Allocates every order of the batch.

    Args:
      inputs_BxTxF: [B, T, F] causal features of bars t0-L .. t0+N-2.
      r_min_B: [B] per-step lower rate bound (fraction of the order).
      r_max_B: [B] per-step upper rate bound (fraction of the order).
      prices_BxN: [B, N] fill prices of the execution bars over the arrival price; read only
        after each decision, for the running accounting.
      volumes_BxN: [B, N] market volumes of the execution bars, read the same way.
      deterministic: disables dropout when True; otherwise needs a 'dropout' rng.

    Returns:
      [B, N, K, S] allocations, K = N + 1 heads, S = 8 scenarios; each column sums to 1.
    """
    check_inputs(self.config, inputs_BxTxF, r_min_B, r_max_B, prices_BxN, volumes_BxN)
    ctx_BxTxH = Encoder(self.config.encoder, name="encoder")(
        inputs_BxTxF, deterministic=deterministic)
    return Allocator(self.config.allocator, self.config.lookback, name="allocator")(
        ctx_BxTxH, r_min_B, r_max_B, prices_BxN, volumes_BxN)
