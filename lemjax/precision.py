"""Matmul precision policy of the encoder; the allocator's accounting and the loss stay float32.

Policies (`EncoderConfig.matmul_precision`):
  "highest": float32 operands at full precision (the reference, and the default).
  "default": the backend's own float32 matmul (TF32 passes on recent NVIDIA GPUs, bfloat16
    passes on TPUs, full float32 on CPUs).
  "bf16": bfloat16 operands, products accumulated and returned in float32.
Parameters and activations stay float32 under every policy: only the matmul operands are rounded.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

POLICIES = ("highest", "default", "bf16")
_PRECISION = {
  "highest": jax.lax.Precision.HIGHEST,
  "default": jax.lax.Precision.DEFAULT,
  "bf16": jax.lax.Precision.DEFAULT,
}


def check_policy(policy: str) -> str:
  """Returns `policy`; ValueError naming it when it is not one of POLICIES."""
  if policy not in POLICIES:
    raise ValueError(f"matmul_precision={policy!r} is not one of {POLICIES}")
  return policy


def _operands(policy: str, *arrays: jax.Array) -> tuple[jax.Array, ...]:
  if policy == "bf16":
    return tuple(a.astype(jnp.bfloat16) for a in arrays)
  return arrays


def _float32_out(policy: str) -> dict:
  return {"preferred_element_type": jnp.float32} if policy == "bf16" else {}


def einsum(policy: str, subscripts: str, a: jax.Array, b: jax.Array) -> jax.Array:
  """`jnp.einsum(subscripts, a, b)` under `policy`; the result is float32."""
  a, b = _operands(check_policy(policy), a, b)
  return jnp.einsum(subscripts, a, b, precision=_PRECISION[policy], **_float32_out(policy))


def dot(policy: str, a: jax.Array, b: jax.Array) -> jax.Array:
  """`jnp.dot(a, b)` under `policy`; the result is float32."""
  a, b = _operands(check_policy(policy), a, b)
  return jnp.dot(a, b, precision=_PRECISION[policy], **_float32_out(policy))


def _dot_general(policy: str) -> Callable:
  def dot_general(lhs, rhs, dimension_numbers, precision=None, **kwargs):
    del precision  # the policy's
    lhs, rhs = _operands(policy, lhs, rhs)
    return jax.lax.dot_general(
      lhs, rhs, dimension_numbers, precision=_PRECISION[policy], **_float32_out(policy), **kwargs
    )

  return dot_general


# One function object per policy: modules built twice compare equal, so nothing retraces.
_DOT_GENERALS = {policy: _dot_general(policy) for policy in POLICIES}


def dense(policy: str, features: int, **kwargs) -> nn.Dense:
  """`nn.Dense(features, **kwargs)` whose matmul follows `policy` (float32 parameters)."""
  if check_policy(policy) == "highest":  # the plain layer, as before policies existed
    return nn.Dense(features, precision=_PRECISION[policy], **kwargs)
  return nn.Dense(features, dot_general=_DOT_GENERALS[policy], **kwargs)
