"""Market-context encoder: selection, TKAN stack, gated skip, GRN, causal attention.

`Encoder` runs its blocks over whole sequences; `select`, `tkan`, `enrich`, `qkv` and `attend`
run the same blocks on its parameter tree for any rows or positions (the online encoder's
one position per bar).
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from lemjax import attention
from lemjax import precision as precision_lib
from lemjax.attention import CausalSelfAttention
from lemjax.config import EncoderConfig
from lemjax.kan import activation
from lemjax.selection import GRN
from lemjax.selection import FeatureEmbedding
from lemjax.selection import GatedSkipNorm
from lemjax.selection import VariableSelection
from lemjax.tkan import TKAN
from lemjax.tkan import Carry


def check_config(config: EncoderConfig) -> None:
  """Raises ValueError on sizes the encoder cannot use."""
  for name in (
    "n_features",
    "embed_dim",
    "hidden",
    "n_tkan_layers",
    "n_kan_sublayers",
    "kan_grid",
    "n_attention_heads",
  ):
    if getattr(config, name) < 1:
      raise ValueError(f"EncoderConfig.{name} must be >= 1, got {getattr(config, name)}")
  if config.hidden % config.n_attention_heads:
    raise ValueError(
      f"EncoderConfig.hidden={config.hidden} is not divisible by "
      f"n_attention_heads={config.n_attention_heads}"
    )
  if not 0.0 <= config.dropout < 1.0:
    raise ValueError(f"EncoderConfig.dropout must be in [0, 1), got {config.dropout}")
  if config.matmul_precision not in precision_lib.POLICIES:
    raise ValueError(
      f"EncoderConfig.matmul_precision={config.matmul_precision!r} is not one of "
      f"{precision_lib.POLICIES}"
    )
  activation(config.kan_activation)


class _SelectBlock(nn.Module):
  """Embedding then variable selection of one chunk of rows: [R, F] -> [R, H]."""

  config: EncoderConfig

  @nn.compact
  def __call__(self, carry, x_RxF):
    cfg = self.config
    e_RxFxE = FeatureEmbedding(cfg.embed_dim, cfg.matmul_precision, name="embedding")(x_RxF)
    selection = VariableSelection(cfg.hidden, cfg.embed_dim, cfg.matmul_precision, name="selection")
    return carry, selection(e_RxFxE)


class _EnrichBlock(nn.Module):
  """Gated skip around the TKAN stack, then the GRN, on one chunk of rows: [R, H] -> [R, H]."""

  config: EncoderConfig

  @nn.compact
  def __call__(self, carry, inputs):
    h_RxH, sel_RxH = inputs
    cfg = self.config
    h_RxH = GatedSkipNorm(cfg.matmul_precision, name="skip")(h_RxH, sel_RxH)
    return carry, GRN(cfg.hidden, cfg.hidden, precision=cfg.matmul_precision, name="grn")(h_RxH)


class _AttendBlock(nn.Module):
  """Causal self-attention of one chunk of whole sequences: [R, T, H] -> [R, T, H]."""

  config: EncoderConfig
  deterministic: bool = True

  @nn.compact
  def __call__(self, carry, h_RxTxH):
    cfg = self.config
    att = CausalSelfAttention(cfg.n_attention_heads, cfg.dropout, cfg.matmul_precision, name="mha")
    return carry, att(h_RxTxH, deterministic=self.deterministic)


def _tkan_layer(config: EncoderConfig, name: str | None = None) -> TKAN:
  return TKAN(
    config.hidden,
    config.n_kan_sublayers,
    config.kan_grid,
    config.kan_order,
    tuple(config.kan_range),
    config.kan_activation,
    precision=config.matmul_precision,
    name=name,
  )


def _by_row_chunks(block: nn.Module, name: str, inputs, max_rows: int):
  """Applies a row-wise `block` (a partial of its class) to inputs [N, ...] in remat'd chunks.

  Returns:
    the block's output rows, [N, ...].
  """
  n = jax.tree.leaves(inputs)[0].shape[0]
  chunks = -(-n // max(1, max_rows))
  rows = -(-n // chunks)
  # Zero-pad to chunks * rows; rows are independent, so padding never mixes into real rows.
  pad = lambda a: jnp.pad(a, [(0, chunks * rows - n)] + [(0, 0)] * (a.ndim - 1))
  inputs = jax.tree.map(lambda a: pad(a).reshape(chunks, rows, *a.shape[1:]), inputs)
  scan = nn.scan(
    nn.remat(block.func),
    variable_broadcast="params",
    split_rngs={"params": False, "dropout": True},
    in_axes=0,
    out_axes=0,
    length=chunks,
  )
  _, out = scan(*block.args, **block.keywords, name=name)(None, inputs)
  return out.reshape(chunks * rows, *out.shape[2:])[:n]


class Encoder(nn.Module):
  """Causal market-context encoder: features [B, T, F] -> context [B, T, H].

  Every block is position-wise except the TKAN scans (forward in time) and the causally
  masked attention, so the context at t depends only on inputs at positions <= t.
  """

  config: EncoderConfig
  # Position-wise blocks run over row chunks of at most `chunk_rows` rows (attention over
  # `chunk_sequences` whole sequences), each rematerialised in the backward pass: the
  # [rows, F, H] per-feature GRN tensors then stay small and cache-resident instead of
  # streaming ~50 MB tensors through memory (about 2-3x faster on CPU). Values do not depend
  # on the chunking beyond float rounding.
  chunk_rows: int = 512
  chunk_sequences: int = 8

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
      raise ValueError(
        f"x_BxTxF has F={x_BxTxF.shape[-1]} features, config.n_features={cfg.n_features}"
      )
    b, t, f = x_BxTxF.shape
    hid = cfg.hidden
    # Embedding and variable selection, position-wise on flattened rows N = B * T.
    select = functools.partial(_SelectBlock, cfg)
    sel_NxH = _by_row_chunks(select, "select", x_BxTxF.reshape(b * t, f), self.chunk_rows)
    sel_NxH = nn.Dropout(cfg.dropout)(sel_NxH, deterministic=deterministic)
    # Recurrent TKAN stack, forward in time.
    h_BxTxH = sel_NxH.reshape(b, t, hid)
    for i in range(cfg.n_tkan_layers):
      h_BxTxH = _tkan_layer(cfg, f"tkan_{i}")(h_BxTxH)
    # Gated skip around the stack and enrichment GRN (position-wise), then causal attention
    # over chunks of whole sequences.
    enrich = functools.partial(_EnrichBlock, cfg)
    h_NxH = _by_row_chunks(
      enrich, "enrich", (h_BxTxH.reshape(b * t, hid), sel_NxH), self.chunk_rows
    )
    attend = functools.partial(_AttendBlock, cfg, deterministic)
    return _by_row_chunks(attend, "attention", h_NxH.reshape(b, t, hid), self.chunk_sequences)


# --- The blocks on an Encoder's parameters (deterministic: no dropout) ----------------------------


def select(config: EncoderConfig, params, x_NxF: jax.Array) -> jax.Array:
  """Embedding and variable selection of rows: [N, F] -> [N, H]."""
  return _SelectBlock(config).apply({"params": params["select"]}, None, x_NxF)[1]


def tkan(config: EncoderConfig, params, i: int, carry: Carry, x_BxTxH: jax.Array):
  """TKAN layer i over T steps from `carry`, as the Encoder runs it from zeros: (carry, [B, T, H])."""
  return _tkan_layer(config).apply(
    {"params": params[f"tkan_{i}"]}, carry, x_BxTxH, method=TKAN.scan
  )


def enrich(config: EncoderConfig, params, h_NxH: jax.Array, sel_NxH: jax.Array) -> jax.Array:
  """Gated skip around the TKAN stack, then the GRN, on rows: [N, H] -> [N, H]."""
  return _EnrichBlock(config).apply({"params": params["enrich"]}, None, (h_NxH, sel_NxH))[1]


def qkv(config: EncoderConfig, params, h_BxTxH: jax.Array):
  """The attention's scaled queries, keys and values of positions h, each [B, heads, T, H / heads]."""
  mha = params["attention"]["mha"]
  project = functools.partial(attention.dense, mha["qkv"], policy=config.matmul_precision)
  return attention.qkv(project, h_BxTxH, config.n_attention_heads)


def attend(config: EncoderConfig, params, q_BxhxQxd, k_BxhxKxd, v_BxhxKxd, visible_QxK):
  """The attention's output [B, Q, H] for queries over (cached) keys and values where visible."""
  mha = params["attention"]["mha"]  # the heads are in the shapes
  policy = config.matmul_precision
  project = functools.partial(attention.dense, mha["out"], policy=policy)
  return attention.attend(project, q_BxhxQxd, k_BxhxKxd, v_BxhxKxd, visible_QxK, policy=policy)
