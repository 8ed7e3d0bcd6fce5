"""Test-wide settings: strict rank promotion and CPU-only, deterministic JAX."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
