"""PPO (clipped surrogate, GAE, squashed-Gaussian policy) on the execution environment, jitted end to end.

One update: `num_steps` steps of `num_envs` vmapped episodes (auto-reset), GAE advantages,
then `epochs` passes of `minibatches` shuffled minibatches. `train_updates` runs a chunk of
updates as one `lax.scan`, so a host loop only syncs between chunks (for validation).
One agent serves every scenario, head and pair of bounds: they are observation inputs.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from lemjax.config import RLConfig
from lemjax.rl import env as env_lib
from lemjax.rl import policy as policy_lib


class Runner(NamedTuple):
  """Everything a PPO update reads and writes."""

  params: dict
  opt_state: optax.OptState
  env_state: env_lib.EnvState  # [E] episodes in flight
  obs_ExD: jax.Array
  key: jax.Array
  update: jax.Array  # int32 [], updates done


class Transition(NamedTuple):
  obs: jax.Array
  z: jax.Array
  log_prob: jax.Array
  value: jax.Array
  reward: jax.Array
  done: jax.Array
  improvement_bps: jax.Array


def check_config(cfg: RLConfig) -> None:
  """ValueError naming a setting that cannot run."""
  if cfg.num_envs * cfg.num_steps % cfg.minibatches:
    raise ValueError(
      f"rl.num_envs * rl.num_steps = {cfg.num_envs * cfg.num_steps} is not divisible "
      f"by rl.minibatches={cfg.minibatches}"
    )
  for name in (
    "num_envs",
    "num_steps",
    "updates",
    "epochs",
    "minibatches",
    "hidden",
    "layers",
    "obs_bars",
  ):
    if getattr(cfg, name) < 1:
      raise ValueError(f"rl.{name}={getattr(cfg, name)} must be >= 1")


def make_optimizer(cfg: RLConfig) -> optax.GradientTransformation:
  """Adam with the step size annealed linearly to 0 over all minibatch steps, after a norm clip."""
  total = cfg.updates * cfg.epochs * cfg.minibatches
  schedule = optax.linear_schedule(cfg.learning_rate, 0.0, total)
  return optax.chain(optax.clip_by_global_norm(cfg.max_grad_norm), optax.adam(schedule, eps=1e-5))


def network(cfg: RLConfig) -> policy_lib.ActorCritic:
  return policy_lib.ActorCritic(cfg.hidden, cfg.layers)


def init_runner(
  cfg: RLConfig, env: env_lib.ExecutionEnv, env_params: env_lib.EnvParams, key: jax.Array
) -> Runner:
  """Fresh parameters, optimiser state and `num_envs` reset episodes."""
  check_config(cfg)
  k_init, k_env, key = jax.random.split(key, 3)
  params = network(cfg).init(k_init, jnp.zeros((1, env.obs_size)))["params"]
  obs, state = jax.vmap(env.reset, in_axes=(0, None))(
    jax.random.split(k_env, cfg.num_envs), env_params
  )
  return Runner(params, make_optimizer(cfg).init(params), state, obs, key, jnp.zeros((), jnp.int32))


def _rollout(cfg: RLConfig, env, env_params, runner: Runner):
  """`num_steps` vmapped steps with sampled actions; ([T, E] transitions, runner after them)."""
  net = network(cfg)

  def body(carry, _):
    state, obs, key = carry
    key, k_act, k_env = jax.random.split(key, 3)
    mu, log_std, value = net.apply({"params": runner.params}, obs)
    z = policy_lib.sample_z(k_act, mu, log_std)
    action = policy_lib.to_action(z, cfg.action_stretch)
    obs_next, state, reward, done, info = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
      jax.random.split(k_env, cfg.num_envs), state, action, env_params
    )
    t = Transition(
      obs,
      z,
      policy_lib.log_prob(z, mu, log_std),
      value,
      reward / cfg.reward_scale_bps,
      done,
      info["improvement_bps"],
    )
    return (state, obs_next, key), t

  (state, obs, key), traj = jax.lax.scan(
    body, (runner.env_state, runner.obs_ExD, runner.key), None, length=cfg.num_steps
  )
  return traj, runner._replace(env_state=state, obs_ExD=obs, key=key)


def gae(cfg: RLConfig, traj: Transition, last_value_E):
  """(advantages, returns) [T, E]; an episode's end cuts the bootstrap (auto-reset follows)."""

  def body(carry, t):
    advantage, next_value = carry
    keep = 1.0 - t.done.astype(jnp.float32)
    delta = t.reward + cfg.gamma * next_value * keep - t.value
    advantage = delta + cfg.gamma * cfg.gae_lambda * keep * advantage
    return (advantage, t.value), advantage

  _, adv = jax.lax.scan(body, (jnp.zeros_like(last_value_E), last_value_E), traj, reverse=True)
  return adv, adv + traj.value


def loss_fn(params, cfg: RLConfig, batch: tuple):
  """Clipped surrogate + clipped value loss - entropy bonus; (loss, metrics)."""
  traj, adv, ret = batch
  mu, log_std, value = network(cfg).apply({"params": params}, traj.obs)
  ratio = jnp.exp(policy_lib.log_prob(traj.z, mu, log_std) - traj.log_prob)
  adv = (adv - adv.mean()) / (adv.std() + 1e-8)
  clipped = jnp.clip(ratio, 1.0 - cfg.clip_eps, 1.0 + cfg.clip_eps)
  policy_loss = -jnp.mean(jnp.minimum(ratio * adv, clipped * adv))
  value_clipped = traj.value + jnp.clip(value - traj.value, -cfg.clip_eps, cfg.clip_eps)
  value_loss = 0.5 * jnp.mean(jnp.maximum((value - ret) ** 2, (value_clipped - ret) ** 2))
  entropy = policy_lib.entropy(log_std)
  loss = policy_loss + cfg.vf_coef * value_loss - cfg.ent_coef * entropy
  return loss, {
    "policy_loss": policy_loss,
    "value_loss": value_loss,
    "entropy": entropy,
    "approx_kl": jnp.mean((ratio - 1.0) - jnp.log(ratio)),
  }


def _learn(cfg: RLConfig, runner: Runner, traj: Transition, adv, ret):
  """`epochs` passes of shuffled minibatch steps; (runner, mean metrics)."""
  tx = make_optimizer(cfg)
  size = cfg.num_envs * cfg.num_steps
  flat = jax.tree.map(lambda x: x.reshape((size,) + x.shape[2:]), (traj, adv, ret))

  def minibatch(carry, idx):
    params, opt_state = carry
    batch = jax.tree.map(lambda x: x[idx], flat)
    grads, metrics = jax.grad(loss_fn, has_aux=True)(params, cfg, batch)
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), metrics

  def epoch(carry, key):
    idx = jax.random.permutation(key, size).reshape(cfg.minibatches, -1)
    return jax.lax.scan(minibatch, carry, idx)

  key, k_perm = jax.random.split(runner.key)
  (params, opt_state), metrics = jax.lax.scan(
    epoch, (runner.params, runner.opt_state), jax.random.split(k_perm, cfg.epochs)
  )
  runner = runner._replace(params=params, opt_state=opt_state, key=key)
  return runner, jax.tree.map(jnp.mean, metrics)


def update(cfg: RLConfig, env, env_params, runner: Runner):
  """One PPO update; (runner, metrics including the mean improvement of finished episodes)."""
  traj, runner = _rollout(cfg, env, env_params, runner)
  _, _, last_value = network(cfg).apply({"params": runner.params}, runner.obs_ExD)
  adv, ret = gae(cfg, traj, last_value)
  runner, metrics = _learn(cfg, runner, traj, adv, ret)
  episodes = jnp.sum(traj.done)
  metrics["episodes"] = episodes
  metrics["improvement_bps"] = jnp.sum(
    jnp.where(traj.done, traj.improvement_bps, 0.0)
  ) / jnp.maximum(episodes, 1)
  return runner._replace(update=runner.update + 1), metrics


@functools.partial(
  jax.jit, static_argnames=("cfg", "env", "n_updates"), donate_argnames=("runner",)
)
def train_updates(
  runner: Runner,
  env_params: env_lib.EnvParams,
  *,
  cfg: RLConfig,
  env: env_lib.ExecutionEnv,
  n_updates: int,
):
  """`n_updates` PPO updates in one lax.scan; (runner, metrics with a leading [n_updates] axis)."""

  def body(runner, _):
    return update(cfg, env, env_params, runner)

  return jax.lax.scan(body, runner, None, length=n_updates)
