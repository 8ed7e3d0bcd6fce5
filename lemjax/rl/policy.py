"""The PPO agent's actor-critic, its saved form in `<workdir>/rl/`, and its allocations [B, N, K, S].

The actor is a squashed Gaussian: z ~ Normal(mu(obs), sigma) with a learned, state-independent
sigma, u = sigmoid(z), and the environment's action (the share of the remaining order traded
this bar) is clip((1 + 2x) u - x, 0, 1) with x = `action_stretch`, so that pausing (0) and
finishing the order (1) are reachable exactly: finishing "almost" would leave a sliver for the
last bar and stretch the benchmark window to it. PPO's ratios use the density of z (the
squashing Jacobian cancels in them). The deterministic policy uses z = mu.
(A Beta policy was tried first: its sampler alone took ~10 s to compile on 2 CPU cores.)
"""

from __future__ import annotations

import functools
import json
import math
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from lemjax import allocation
from lemjax import scenarios
from lemjax.rl import env as env_lib

_LOG_2PI_E = math.log(2.0 * math.pi * math.e)


class ActorCritic(nn.Module):
  """Separate tanh MLPs: the actor's mean mu of z (plus a free log sigma) and the critic's value."""

  hidden: int = 128
  layers: int = 2

  @nn.compact
  def __call__(self, obs_BxD):
    """Returns (mu_B, log_std [], value_B)."""

    def mlp(x, name):
      for i in range(self.layers):
        x = nn.tanh(
          nn.Dense(
            self.hidden, kernel_init=nn.initializers.orthogonal(np.sqrt(2.0)), name=f"{name}_{i}"
          )(x)
        )
      return x

    mu = nn.Dense(1, kernel_init=nn.initializers.orthogonal(0.01), name="actor_out")(
      mlp(obs_BxD, "actor")
    )
    value = nn.Dense(1, kernel_init=nn.initializers.orthogonal(1.0), name="critic_out")(
      mlp(obs_BxD, "critic")
    )
    log_std = self.param("log_std", nn.initializers.zeros, ())
    return mu[..., 0], log_std, value[..., 0]


def log_prob(z, mu, log_std):
  """log density of Normal(mu, exp(log_std)) at z."""
  return -0.5 * jnp.square((z - mu) * jnp.exp(-log_std)) - log_std - 0.5 * math.log(2.0 * math.pi)


def entropy(log_std):
  """Differential entropy of Normal(., exp(log_std))."""
  return log_std + 0.5 * _LOG_2PI_E


def sample_z(key, mu, log_std):
  return mu + jnp.exp(log_std) * jax.random.normal(key, mu.shape, mu.dtype)


def to_action(z, stretch: float):
  """Environment action from z: clip((1 + 2 stretch) sigmoid(z) - stretch, 0, 1)."""
  return jnp.clip((1.0 + 2.0 * stretch) * jax.nn.sigmoid(z) - stretch, 0.0, 1.0)


def mean_action(network: ActorCritic, params, obs, stretch: float):
  """The deterministic policy: the action of z = mu."""
  mu, _, _ = network.apply({"params": params}, obs)
  return to_action(mu, stretch)


# --- Saving and loading ---------------------------------------------------------------------------


def save(directory: str, params, meta: dict) -> None:
  """Writes params.npz (flat 'layer/kernel' keys) and agent.json (sizes and settings)."""
  os.makedirs(directory, exist_ok=True)
  flat = traverse_util.flatten_dict(jax.device_get(params), sep="/")
  np.savez(os.path.join(directory, "params.npz"), **{k: np.asarray(v) for k, v in flat.items()})
  with open(os.path.join(directory, "agent.json"), "w") as f:
    json.dump(meta, f, indent=2)


def load(directory: str):
  """(params, meta) saved by `save`; FileNotFoundError naming the command that creates them."""
  paths = [os.path.join(directory, name) for name in ("params.npz", "agent.json")]
  missing = [p for p in paths if not os.path.exists(p)]
  if missing:
    raise FileNotFoundError(
      f"no trained agent in {directory} ({missing[0]} is missing); train one "
      "with `python -m lemjax.main --mode=train_rl --config=<experiment file>` "
      "(or `make train-rl EXP=<name>`)"
    )
  with np.load(paths[0]) as data:
    params = traverse_util.unflatten_dict({k: jnp.asarray(data[k]) for k in data.files}, sep="/")
  with open(paths[1]) as f:
    return params, json.load(f)


def agent_meta(env: env_lib.ExecutionEnv, hidden: int, layers: int, stretch: float) -> dict:
  """What `load` needs to rebuild the environment and network of a saved agent."""
  return {
    "n_ahead": env.n_ahead,
    "obs_bars": env.obs_bars,
    "n_features": env.n_features,
    "obs_size": env.obs_size,
    "hidden": hidden,
    "layers": layers,
    "action_stretch": stretch,
  }


# --- Deterministic allocations --------------------------------------------------------------------


@functools.cache
def _allocate_fn(env: env_lib.ExecutionEnv, hidden: int, layers: int, stretch: float):
  network = ActorCritic(hidden, layers)

  def run(params, env_params, order_E, scenario_E, head_E, r_min, r_max):
    policy = functools.partial(mean_action, network, params, stretch=stretch)
    state = jax.vmap(env.init_state, in_axes=(0, 0, 0, None, None))(
      order_E, scenario_E, head_E, r_min, r_max
    )
    final = jax.vmap(lambda s: env_lib.rollout(env, policy, env_params, s))(state)
    return final.alloc_N

  return jax.jit(run)


def allocations(
  params, meta: dict, batch: dict, r_min: float, r_max: float, chunk: int = 8192
) -> np.ndarray:
  """The deterministic policy's allocations [B, N, K, S] of every order, head and scenario.

  Args:
    params: the actor-critic's parameters.
    meta: `agent_meta` of the agent.
    batch: a data batch (inputs, prices, volumes, closes, lookback_vol) of B orders.
    r_min, r_max: rate bounds of every order (fractions of the parent order).
    chunk: episodes per call (fixed shape: the last chunk is padded).
  """
  n, num_s = int(meta["n_ahead"]), scenarios.NUM_SCENARIOS
  if np.shape(batch["prices"])[1:] != (n,):
    raise ValueError(
      f"batch['prices'].shape={np.shape(batch['prices'])}: the agent was trained with N={n} bars"
    )
  allocation.validate_bounds(r_min, r_max, n)
  env = env_lib.ExecutionEnv(n, int(meta["obs_bars"]), int(meta["n_features"]))
  env_params = env_lib.make_params(batch, env.obs_bars)
  b = np.shape(batch["prices"])[0]
  order, head, scen = (
    x.ravel().astype(np.int32)
    for x in np.meshgrid(np.arange(b), np.arange(n + 1), np.arange(num_s), indexing="ij")
  )
  run = _allocate_fn(env, int(meta["hidden"]), int(meta["layers"]), float(meta["action_stretch"]))
  out = []
  for start in range(0, order.size, chunk):
    rows = np.minimum(np.arange(start, start + chunk), order.size - 1)
    alloc = run(
      params, env_params, order[rows], scen[rows], head[rows], np.float32(r_min), np.float32(r_max)
    )
    out.append(np.asarray(alloc)[: min(chunk, order.size - start)])
  return np.concatenate(out).reshape(b, n + 1, num_s, n).transpose(0, 3, 1, 2)


def rl_allocations(workdir: str, test_batch: dict, r_min: float, r_max: float) -> np.ndarray:
  """Allocations [B, N, K, S] of the agent trained into `<workdir>/rl/` (deterministic policy)."""
  params, meta = load(os.path.join(workdir, "rl"))
  return allocations(params, meta, test_batch, r_min, r_max)
