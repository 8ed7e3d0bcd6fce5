"""Incremental causal encoder for live orders: prefill a history once, then one position per bar.

The encoder (lemjax/encoder.py) is causal: embedding, variable selection, gated skip and GRN are
position-wise, TKAN is a recurrence and attention is causally masked. So its state after
position t is small and of fixed shape: the carry of every TKAN layer and the attention keys
and values of positions 0..t, held in a [T, ...] buffer with a position counter (masked beyond
it). `prefill` runs the first P positions in one batched pass and returns that state;
`extend` then costs one position: the position-wise blocks on one row, one TKAN step per layer
and one query against the cached keys. Both read the `Encoder`'s own parameter tree
(`params["encoder"]` of a LEM) and give its outputs up to float rounding (deterministic, no
dropout).

  ctx_BxPxH, cache = prefill(config, params, x_BxPxF, length=T)
  ctx_BxH, cache = extend(config, params, cache, x_BxF)     # position cache.pos; jit once
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from lemjax import encoder as encoder_lib
from lemjax import tkan as tkan_lib
from lemjax.config import EncoderConfig
from lemjax.kan import PRECISION, uniform_grid


class Cache(NamedTuple):
  """Encoder state of B sequences after positions 0..pos-1; the same shapes for every pos."""
  tkan: tuple[tkan_lib.Carry, ...]  # per TKAN layer: (h [B, H], c [B, H], sub [B, M, H])
  keys_BxhxTxd: jax.Array           # attention keys per head; zero at positions >= pos
  values_BxhxTxd: jax.Array         # attention values per head; zero at positions >= pos
  pos: jax.Array                    # int32 [], the next position `extend` computes


def init_cache(config: EncoderConfig, batch: int, length: int) -> Cache:
  """The empty state (nothing seen) of `batch` sequences of up to `length` positions."""
  encoder_lib.check_config(config)
  hid, heads = config.hidden, config.n_attention_heads
  carry = tkan_lib.initial_carry(batch, hid, config.n_kan_sublayers)
  kv = jnp.zeros((batch, heads, length, hid // heads), jnp.float32)
  return Cache(tuple(carry for _ in range(config.n_tkan_layers)), kv, kv, jnp.zeros((), jnp.int32))


# ----------------------------------------------------------------------------- blocks


def _select(config: EncoderConfig, params: Any, x_NxF: jax.Array) -> jax.Array:
  """Embedding and variable selection of rows: [N, F] -> [N, H]."""
  block = encoder_lib._SelectBlock(config)  # pylint: disable=protected-access
  return block.apply({"params": params["select"]}, None, x_NxF)[1]


def _enrich(config: EncoderConfig, params: Any, h_NxH: jax.Array, sel_NxH: jax.Array) -> jax.Array:
  """Gated skip around the TKAN stack, then the GRN, on rows: [N, H] -> [N, H]."""
  block = encoder_lib._EnrichBlock(config)  # pylint: disable=protected-access
  return block.apply({"params": params["enrich"]}, None, (h_NxH, sel_NxH))[1]


def _tkan(config: EncoderConfig, params: Any, i: int, carry: tkan_lib.Carry, x_BxTxD: jax.Array):
  """TKAN layer i over T steps from `carry`, as `TKAN.__call__` runs it: (carry, h [B, T, H])."""
  layer = tkan_lib.TKAN(config.hidden, config.n_kan_sublayers, config.kan_grid, config.kan_order,
                        tuple(config.kan_range), config.kan_activation)
  p = params[f"tkan_{i}"]
  xs_T = layer.apply({"params": p}, jnp.swapaxes(x_BxTxD, 0, 1), method=tkan_lib.TKAN.project)
  if layer.fast_grad:
    knots = tuple(float(k) for k in uniform_grid(layer.grid_size, layer.order, layer.grid_range))
    settings = (layer.n_sublayers, knots, layer.order, layer.base_activation)
    carry, h_TxBxH = tkan_lib.fast_scan(settings, p["cell"], carry, xs_T)
  else:
    cell = layer.make_cell()
    step = lambda c, x_t: tkan_lib.tkan_step(cell, p["cell"], c, x_t)
    carry, h_TxBxH = jax.lax.scan(step, carry, xs_T)
  return carry, jnp.swapaxes(h_TxBxH, 0, 1)


def _qkv(params: Any, heads: int, h_BxTxH: jax.Array):
  """Scaled queries, keys and values, each [B, heads, T, H / heads], as the attention makes them."""
  b, t, hid = h_BxTxH.shape
  dh = hid // heads
  qkv = nn.Dense(3 * hid, precision=PRECISION).apply({"params": params["qkv"]},
                                                     h_BxTxH.reshape(b * t, hid))
  qkv_3xBxhxTxd = jnp.transpose(qkv.reshape(b, t, 3, heads, dh), (2, 0, 3, 1, 4))
  return qkv_3xBxhxTxd[0] * dh ** -0.5, qkv_3xBxhxTxd[1], qkv_3xBxhxTxd[2]


def _attend(params: Any, q_BxhxQxd, keys_BxhxKxd, values_BxhxKxd, visible_QxK) -> jax.Array:
  """Masked attention of Q queries over K keys, then the output projection: [B, Q, H]."""
  b, heads, q_len, dh = q_BxhxQxd.shape
  logits = jnp.einsum("bhqd,bhkd->bhqk", q_BxhxQxd, keys_BxhxKxd, precision=PRECISION)
  # As in the encoder: exp of the most negative float is exactly 0, so hidden keys add nothing.
  logits = jnp.where(visible_QxK[None, None], logits, jnp.finfo(logits.dtype).min)
  probs = nn.softmax(logits, axis=-1)
  out = jnp.einsum("bhqk,bhkd->bhqd", probs, values_BxhxKxd, precision=PRECISION)
  out_NxH = jnp.transpose(out, (0, 2, 1, 3)).reshape(b * q_len, heads * dh)
  out_NxH = nn.Dense(heads * dh, precision=PRECISION).apply({"params": params["out"]}, out_NxH)
  return out_NxH.reshape(b, q_len, heads * dh)


# ----------------------------------------------------------------------------- public


def prefill(config: EncoderConfig, params: Any, x_BxPxF: jax.Array, length: int
            ) -> tuple[jax.Array, Cache]:
  """Encodes the first P positions in one batched pass and returns the state after them.

  Args:
    config: the encoder's EncoderConfig.
    params: the Encoder's parameters.
    x_BxPxF: [B, P, F] feature rows of positions 0..P-1, 1 <= P <= length.
    length: T, the most positions the state will hold (static).

  Returns:
    (ctx [B, P, H], the encoder's outputs at positions 0..P-1; Cache with pos = P).
  """
  encoder_lib.check_config(config)
  if x_BxPxF.ndim != 3 or x_BxPxF.shape[-1] != config.n_features:
    raise ValueError(f"x_BxPxF must be [B, P, F={config.n_features}], got shape {x_BxPxF.shape}")
  b, p, f = x_BxPxF.shape
  if not 1 <= p <= length:
    raise ValueError(f"x_BxPxF has P={p} positions; need 1 <= P <= length={length}")
  cache = init_cache(config, b, length)
  sel_NxH = _select(config, params, x_BxPxF.reshape(b * p, f))
  h_BxPxH, carries = sel_NxH.reshape(b, p, -1), []
  for i, carry in enumerate(cache.tkan):
    carry, h_BxPxH = _tkan(config, params, i, carry, h_BxPxH)
    carries.append(carry)
  h_NxH = _enrich(config, params, h_BxPxH.reshape(b * p, -1), sel_NxH)
  attn = params["attention"]["mha"]
  q, k, v = _qkv(attn, config.n_attention_heads, h_NxH.reshape(b, p, -1))
  ctx_BxPxH = _attend(attn, q, k, v, jnp.tril(jnp.ones((p, p), jnp.bool_)))
  keys = jax.lax.dynamic_update_slice_in_dim(cache.keys_BxhxTxd, k, 0, axis=2)
  values = jax.lax.dynamic_update_slice_in_dim(cache.values_BxhxTxd, v, 0, axis=2)
  return ctx_BxPxH, Cache(tuple(carries), keys, values, jnp.asarray(p, jnp.int32))


def extend(config: EncoderConfig, params: Any, cache: Cache, x_BxF: jax.Array
           ) -> tuple[jax.Array, Cache]:
  """Encodes position `cache.pos` from its feature row and the state of the positions before it.

  Args:
    config: the encoder's EncoderConfig.
    params: the Encoder's parameters.
    cache: the state after positions 0..pos-1 (`prefill` or a previous `extend`).
    x_BxF: [B, F] feature rows of position pos.

  Returns:
    (ctx [B, H], the encoder's output at position pos; Cache with pos + 1). At pos >= T (the
    cache's length) nothing more is stored and ctx is not the encoder's: stop at T.
  """
  b, heads, length, _ = cache.keys_BxhxTxd.shape
  if x_BxF.ndim != 2 or x_BxF.shape != (b, config.n_features):
    raise ValueError(f"x_BxF must be [B={b}, F={config.n_features}], got shape {x_BxF.shape}")
  sel_BxH = _select(config, params, x_BxF)
  h_BxH, carries = sel_BxH, []
  for i, carry in enumerate(cache.tkan):
    carry, h_Bx1xH = _tkan(config, params, i, carry, h_BxH[:, None])
    h_BxH = h_Bx1xH[:, 0]
    carries.append(carry)
  h_BxH = _enrich(config, params, h_BxH, sel_BxH)
  attn = params["attention"]["mha"]
  q, k, v = _qkv(attn, heads, h_BxH[:, None])
  # mode="drop": a position past the buffer is not written (a clamped write would overwrite T-1).
  keys = cache.keys_BxhxTxd.at[:, :, cache.pos].set(k[:, :, 0], mode="drop")
  values = cache.values_BxhxTxd.at[:, :, cache.pos].set(v[:, :, 0], mode="drop")
  visible_1xT = (jnp.arange(length) <= cache.pos)[None]
  ctx_BxH = _attend(attn, q, keys, values, visible_1xT)[:, 0]
  return ctx_BxH, Cache(tuple(carries), keys, values, cache.pos + 1)
