"""Incremental causal encoder for live orders: prefill a history once, then one position per bar.

The encoder (lemjax/encoder.py) is causal: embedding, variable selection, gated skip and GRN are
position-wise, TKAN is a recurrence and attention is causally masked. So its state after
position t is small and of fixed shape: the carry of every TKAN layer and the attention keys
and values of positions 0..t, held in a [T, ...] buffer with a position counter (masked beyond
it). `prefill` runs the first P positions in one batched pass and returns that carry; `step`
then costs one position: the position-wise blocks on one row, one TKAN step per layer and one
query against the cached keys. Both run the Encoder's own blocks (`lemjax.encoder.select`,
`tkan`, `enrich`, `qkv`, `attend`) on its parameter tree (`params["encoder"]` of a LEM) and give
its outputs up to float rounding (deterministic, no dropout).

  carry, ctx_BxPxH = prefill(config, params, x_BxPxF, length=T)
  carry, ctx_BxH = step(config, params, carry, x_BxF)       # position carry.pos; jit once
"""

from __future__ import annotations

from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp

from lemjax import encoder as encoder_lib
from lemjax import tkan as tkan_lib
from lemjax.config import EncoderConfig


class Carry(NamedTuple):
  """Encoder state of B sequences after positions 0..pos-1; the same shapes for every pos."""

  tkan: tuple[tkan_lib.Carry, ...]  # per TKAN layer: (h [B, H], c [B, H], sub [B, M, H])
  keys_BxhxTxd: jax.Array  # attention keys per head; zero at positions >= pos
  values_BxhxTxd: jax.Array  # attention values per head; zero at positions >= pos
  pos: jax.Array  # int32 [], the next position `step` computes


def init_carry(config: EncoderConfig, batch: int, length: int) -> Carry:
  """The empty state (nothing seen) of `batch` sequences of up to `length` positions."""
  encoder_lib.check_config(config)
  hid, heads = config.hidden, config.n_attention_heads
  tkan = tkan_lib.initial_carry(batch, hid, config.n_kan_sublayers)
  kv = jnp.zeros((batch, heads, length, hid // heads), jnp.float32)
  return Carry(tuple(tkan for _ in range(config.n_tkan_layers)), kv, kv, jnp.zeros((), jnp.int32))


def _tkan_stack(config: EncoderConfig, params: Any, carries, h_BxTxH):
  """Every TKAN layer in turn over T positions: (their carries, [B, T, H])."""
  out = []
  for i, carry in enumerate(carries):
    carry, h_BxTxH = encoder_lib.tkan(config, params, i, carry, h_BxTxH)
    out.append(carry)
  return tuple(out), h_BxTxH


def prefill(
  config: EncoderConfig, params: Any, x_BxPxF: jax.Array, length: int
) -> tuple[Carry, jax.Array]:
  """Encodes the first P positions in one batched pass and returns the state after them.

  Args:
    config: the encoder's EncoderConfig.
    params: the Encoder's parameters.
    x_BxPxF: [B, P, F] feature rows of positions 0..P-1, 1 <= P <= length.
    length: T, the most positions the state will hold (static).

  Returns:
    (Carry with pos = P; ctx [B, P, H], the encoder's outputs at positions 0..P-1).
  """
  encoder_lib.check_config(config)
  if x_BxPxF.ndim != 3 or x_BxPxF.shape[-1] != config.n_features:
    raise ValueError(f"x_BxPxF must be [B, P, F={config.n_features}], got shape {x_BxPxF.shape}")
  b, p, f = x_BxPxF.shape
  if not 1 <= p <= length:
    raise ValueError(f"x_BxPxF has P={p} positions; need 1 <= P <= length={length}")
  carry = init_carry(config, b, length)
  sel_NxH = encoder_lib.select(config, params, x_BxPxF.reshape(b * p, f))
  tkan, h_BxPxH = _tkan_stack(config, params, carry.tkan, sel_NxH.reshape(b, p, -1))
  h_NxH = encoder_lib.enrich(config, params, h_BxPxH.reshape(b * p, -1), sel_NxH)
  q, k, v = encoder_lib.qkv(config, params, h_NxH.reshape(b, p, -1))
  ctx_BxPxH = encoder_lib.attend(config, params, q, k, v, jnp.tril(jnp.ones((p, p), jnp.bool_)))
  keys = jax.lax.dynamic_update_slice_in_dim(carry.keys_BxhxTxd, k, 0, axis=2)
  values = jax.lax.dynamic_update_slice_in_dim(carry.values_BxhxTxd, v, 0, axis=2)
  return Carry(tkan, keys, values, jnp.asarray(p, jnp.int32)), ctx_BxPxH


def step(
  config: EncoderConfig, params: Any, carry: Carry, x_BxF: jax.Array
) -> tuple[Carry, jax.Array]:
  """Encodes position `carry.pos` from its feature row and the state of the positions before it.

  Args:
    config: the encoder's EncoderConfig.
    params: the Encoder's parameters.
    carry: the state after positions 0..pos-1 (`prefill` or a previous `step`).
    x_BxF: [B, F] feature rows of position pos.

  Returns:
    (Carry with pos + 1; ctx [B, H], the encoder's output at position pos). At pos >= T (the
    carry's length) nothing more is stored and ctx is not the encoder's: stop at T.
  """
  b, _, length, _ = carry.keys_BxhxTxd.shape
  if x_BxF.ndim != 2 or x_BxF.shape != (b, config.n_features):
    raise ValueError(f"x_BxF must be [B={b}, F={config.n_features}], got shape {x_BxF.shape}")
  sel_BxH = encoder_lib.select(config, params, x_BxF)
  tkan, h_Bx1xH = _tkan_stack(config, params, carry.tkan, sel_BxH[:, None])
  h_BxH = encoder_lib.enrich(config, params, h_Bx1xH[:, 0], sel_BxH)
  q, k, v = encoder_lib.qkv(config, params, h_BxH[:, None])
  # mode="drop": a position past the buffer is not written (a clamped write would overwrite T-1).
  keys = carry.keys_BxhxTxd.at[:, :, carry.pos].set(k[:, :, 0], mode="drop")
  values = carry.values_BxhxTxd.at[:, :, carry.pos].set(v[:, :, 0], mode="drop")
  visible_1xT = (jnp.arange(length) <= carry.pos)[None]
  ctx_BxH = encoder_lib.attend(config, params, q, keys, values, visible_1xT)[:, 0]
  return Carry(tkan, keys, values, carry.pos + 1), ctx_BxH
