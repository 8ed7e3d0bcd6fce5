"""The fused clipped AdamW against optax's chain of clip_by_global_norm and adamw."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lemjax import optim


def _tree(seed):
  r = np.random.default_rng(seed)
  return {"w": jnp.asarray(r.normal(size=(5, 7)), jnp.float32),
          "b": {"x": jnp.asarray(r.normal(size=(3,)), jnp.float32)}}


def _run(tx, steps, grad_scale):
  params, state = _tree(0), None
  state = tx.init(params)
  update = jax.jit(lambda p, s, g: (lambda u, s: (optax.apply_updates(p, u), s))(
      *tx.update(g, s, p)))
  for i in range(steps):
    grads = jax.tree.map(lambda x: x * grad_scale, _tree(i + 1))
    params, state = update(params, state, grads)
  return params


@pytest.mark.parametrize("clip_norm,grad_scale", [(1.0, 10.0), (1.0, 0.01), (0.0, 1.0)])
def test_matches_optax_chain(clip_norm, grad_scale):
  schedule = optax.warmup_cosine_decay_schedule(0.0, 1e-2, 2, 10, end_value=1e-3)
  reference = optax.adamw(schedule, weight_decay=1e-2)
  if clip_norm:
    reference = optax.chain(optax.clip_by_global_norm(clip_norm), reference)
  fused = optim.clipped_adamw(schedule, weight_decay=1e-2, clip_norm=clip_norm)
  expected, got = _run(reference, 6, grad_scale), _run(fused, 6, grad_scale)
  moved = max(float(jnp.max(jnp.abs(a - b))) for a, b in
              zip(jax.tree.leaves(expected), jax.tree.leaves(_tree(0))))
  assert moved > 1e-3  # the comparison is not between two untouched trees
  for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(got)):
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7)


def test_weight_decay_needs_params():
  tx = optim.clipped_adamw(1e-3, weight_decay=1e-4)
  params = _tree(0)
  with pytest.raises(ValueError, match="params"):
    tx.update(params, tx.init(params))
