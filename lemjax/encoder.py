"""Market-context encoder: embedding, variable selection, TKAN stack, gated skip, GRN, causal attention."""

from __future__ import annotations

import flax.linen as nn
import jax

from lemjax.attention import CausalSelfAttention
from lemjax.config import EncoderConfig
from lemjax.kan import activation
from lemjax.selection import GRN, FeatureEmbedding, GatedSkipNorm, VariableSelection
from lemjax.tkan import TKAN


def check_config(config: EncoderConfig) -> None:
  """Raises ValueError on sizes the encoder cannot use."""
  for name in ("n_features", "embed_dim", "hidden", "n_tkan_layers", "n_kan_sublayers",
               "kan_grid", "n_attention_heads"):
    if getattr(config, name) < 1:
      raise ValueError(f"EncoderConfig.{name} must be >= 1, got {getattr(config, name)}")
  if config.hidden % config.n_attention_heads:
    raise ValueError(f"EncoderConfig.hidden={config.hidden} is not divisible by "
                     f"n_attention_heads={config.n_attention_heads}")
  if not 0.0 <= config.dropout < 1.0:
    raise ValueError(f"EncoderConfig.dropout must be in [0, 1), got {config.dropout}")
  activation(config.kan_activation)


class Encoder(nn.Module):
  """Causal market-context encoder: features [B, T, F] -> context [B, T, H].

  Every block is position-wise except the TKAN scans (forward in time) and the causally
  masked attention, so the context at t depends only on inputs at positions <= t.
  """
  config: EncoderConfig

  @nn.compact
  def __call__(self, x_BxTxF: jax.Array, *, deterministic: bool = True) -> jax.Array:
    """Encodes a batch of feature sequences.

    Args:
      x_BxTxF: [B, T, F] float features, F = config.n_features.
      deterministic: disables dropout when True; otherwise needs a 'dropout' rng.

    Returns:
      [B, T, H] context, H = config.hidden.
    """
    cfg = self.config
    check_config(cfg)
    if x_BxTxF.ndim != 3:
      raise ValueError(f"x_BxTxF must be [B, T, F], got shape {x_BxTxF.shape}")
    if x_BxTxF.shape[-1] != cfg.n_features:
      raise ValueError(f"x_BxTxF has F={x_BxTxF.shape[-1]} features, "
                       f"config.n_features={cfg.n_features}")
    b, t, f = x_BxTxF.shape
    hid = cfg.hidden
    # Embedding and variable selection, position-wise on flattened rows N = B * T.
    e_NxFxE = FeatureEmbedding(cfg.embed_dim, name="embedding")(x_BxTxF.reshape(b * t, f))
    sel_NxH = VariableSelection(hid, cfg.embed_dim, name="selection")(e_NxFxE)
    sel_NxH = nn.Dropout(cfg.dropout)(sel_NxH, deterministic=deterministic)
    # Recurrent TKAN stack, forward in time.
    h_BxTxH = sel_NxH.reshape(b, t, hid)
    for i in range(cfg.n_tkan_layers):
      h_BxTxH = TKAN(hid, cfg.n_kan_sublayers, cfg.kan_grid, cfg.kan_order,
                     tuple(cfg.kan_range), cfg.kan_activation, name=f"tkan_{i}")(h_BxTxH)
    # Gated skip around the stack and enrichment GRN (position-wise), then causal attention.
    h_NxH = GatedSkipNorm(name="skip")(h_BxTxH.reshape(b * t, hid), sel_NxH)
    h_NxH = GRN(hid, hid, name="grn")(h_NxH)
    return CausalSelfAttention(cfg.n_attention_heads, cfg.dropout, name="attention")(
        h_NxH.reshape(b, t, hid), deterministic=deterministic)
