"""Tests of the execution environment: causality, exact baselines, terminal reward, vectorisation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lemjax import baselines
from lemjax import objectives
from lemjax import scenarios
from lemjax.rl import env as env_lib

N, W, F = 5, 2, 8
K, S = N + 1, scenarios.NUM_SCENARIOS
ENV = env_lib.ExecutionEnv(N, W)
FIELDS = env_lib.obs_fields(N, W)


def _batch(seed, m=12, vol_bps=40.0):
  """Orders like `Dataset.batch`: a random walk of closes, VWAPs between open and close."""
  rng = np.random.default_rng(seed)
  log_close = np.cumsum(rng.normal(0, vol_bps * 1e-4, (m, N)), axis=1)
  log_open = np.concatenate([np.zeros((m, 1)), log_close[:, :-1]], axis=1)
  mix = rng.uniform(0.2, 0.8, (m, N))
  return {
    "inputs": rng.normal(size=(m, 6 + N - 1, F)).astype(np.float32),
    "prices": np.exp(mix * log_open + (1 - mix) * log_close).astype(np.float32),
    "volumes": rng.lognormal(0, 0.5, (m, N)).astype(np.float32),
    "closes": np.exp(log_open).astype(np.float32),
    "lookback_vol": rng.uniform(20, 60, m).astype(np.float32),
  }


def _every_cell(m, r_min, r_max):
  """Initial states of every (order, head, scenario), in [B, K, S] order."""
  order, head, scen = (
    x.ravel() for x in np.meshgrid(np.arange(m), np.arange(K), np.arange(S), indexing="ij")
  )
  return jax.vmap(ENV.init_state, in_axes=(0, 0, 0, None, None))(order, scen, head, r_min, r_max)


@jax.jit
def _run(params, state, actions_ExN):
  """Applies fixed action sequences; returns observations [E, N-1, D] and final states."""

  def body(state, a_E):
    obs = jax.vmap(ENV.observe, in_axes=(0, None))(state, params)
    new = jax.vmap(ENV.advance)(state, a_E)
    done = jax.vmap(ENV.done)(state)
    keep = lambda old, nxt: jnp.where(done.reshape((-1,) + (1,) * (old.ndim - 1)), old, nxt)
    return jax.tree.map(keep, state, new), obs

  state, obs = jax.lax.scan(body, state, actions_ExN[:, : N - 1].T)
  return jnp.swapaxes(obs, 0, 1), state


def _as_BxNxKxS(alloc_ExN, m):
  return np.asarray(alloc_ExN).reshape(m, K, S, N).transpose(0, 3, 1, 2)


def test_observation_reads_only_bars_before_the_decision():
  batch = _batch(0)
  m = batch["prices"].shape[0]
  rng = np.random.default_rng(1)
  state = _every_cell(m, 0.05, 0.5)
  actions = jnp.asarray(rng.uniform(0, 1, (m * K * S, N)), jnp.float32)
  obs_ref, _ = _run(env_lib.make_params(batch, W), state, actions)
  for s in range(N - 1):
    future = {k: np.array(v, copy=True) for k, v in batch.items()}
    noise = lambda x: x * rng.uniform(0.5, 1.5, x.shape).astype(np.float32)
    future["prices"][:, s:] = noise(future["prices"][:, s:])
    future["volumes"][:, s:] = noise(future["volumes"][:, s:])
    future["closes"][:, s + 1 :] = noise(
      future["closes"][:, s + 1 :]
    )  # closes[:, j]: bar j-1's close
    future["inputs"][:, -(N - 1 - s) :] = noise(
      future["inputs"][:, -(N - 1 - s) :] + 1.0
    )  # bars s..N-2
    obs_new, _ = _run(env_lib.make_params(future, W), state, actions)
    np.testing.assert_array_equal(np.asarray(obs_new[:, : s + 1]), np.asarray(obs_ref[:, : s + 1]))
    if s < N - 2:  # the test can fail: later decisions do see the change
      assert not np.array_equal(np.asarray(obs_new[:, s + 1 :]), np.asarray(obs_ref[:, s + 1 :]))


def test_uniform_policy_reproduces_the_uniform_baseline():
  batch = _batch(2)
  m = batch["prices"].shape[0]
  params = env_lib.make_params(batch, W)
  policy = lambda obs: 1.0 / (obs[FIELDS["bars_left"]][0] * N)  # 1/(N-s) of the remaining order
  final = jax.jit(jax.vmap(lambda st: env_lib.rollout(ENV, policy, params, st)))(
    _every_cell(m, 0.0, 1.0)
  )
  alloc = _as_BxNxKxS(final.alloc_N, m)
  want = baselines.uniform(m, N)
  np.testing.assert_allclose(alloc, want, atol=1e-6)
  imp = np.asarray(objectives.improvement_bps(alloc, batch["prices"], batch["volumes"]))
  want_imp = np.asarray(objectives.improvement_bps(want, batch["prices"], batch["volumes"]))
  np.testing.assert_allclose(imp, want_imp, atol=5e-3)  # float32 rounding of the allocations
  env_imp = jax.vmap(ENV.improvement_bps, in_axes=(0, None))(final, params)
  np.testing.assert_allclose(np.asarray(env_imp).reshape(m, K, S), imp, atol=1e-4)


@pytest.mark.parametrize("r_min,r_max", [(0.0, 1.0), (0.05, 0.45)])
def test_stopping_policy_reproduces_optional_stopping(r_min, r_max):
  batch = _batch(3, m=16)
  m = batch["prices"].shape[0]
  params = env_lib.make_params(batch, W)
  theta_KxS = np.random.default_rng(4).choice([0.0, 5.0, 20.0, np.inf], (K, S))
  state = _every_cell(m, r_min, r_max)
  theta_E = jnp.asarray(np.broadcast_to(theta_KxS, (m, K, S)).ravel(), jnp.float32)

  def body(carry, _):
    state, stopped = carry
    obs = jax.vmap(ENV.observe, in_axes=(0, None))(state, params)
    gain_bps = obs[:, FIELDS["gain"]][:, 0] * 100.0
    stopped = stopped | ((obs[:, FIELDS["can_stop"]][:, 0] > 0) & (gain_bps > theta_E))
    # Stopped: finish (as fast as r_max allows); else 1/N of the order, as a share of what is left.
    action = jnp.where(stopped, 1.0, (1.0 / N) / jnp.maximum(state.remaining, 1e-12))
    new = jax.vmap(ENV.advance)(state, action)
    done = jax.vmap(ENV.done)(state)
    keep = lambda old, nxt: jnp.where(done.reshape((-1,) + (1,) * (old.ndim - 1)), old, nxt)
    return (jax.tree.map(keep, state, new), stopped), None

  (final, _), _ = jax.jit(
    lambda s: jax.lax.scan(body, (s, jnp.zeros(m * K * S, bool)), None, length=N - 1)
  )(state)
  alloc = _as_BxNxKxS(final.alloc_N, m)
  want = baselines.optional_stopping(
    batch["prices"], batch["volumes"], batch["closes"], theta_KxS, r_min, r_max
  )
  assert np.any(want[:, -1] == 0), "no order stopped early: the test would not test stopping"
  np.testing.assert_array_equal(alloc > 0, want > 0)  # the same decisions, bar for bar
  np.testing.assert_allclose(alloc, want, atol=1e-6)
  imp = np.asarray(objectives.improvement_bps(alloc, batch["prices"], batch["volumes"]))
  want_imp = np.asarray(objectives.improvement_bps(want, batch["prices"], batch["volumes"]))
  np.testing.assert_allclose(imp, want_imp, atol=5e-3)


def test_thousands_of_episodes_step_in_one_vmapped_call_with_terminal_reward():
  batch = _batch(5, m=64)
  params = env_lib.make_params(batch, W)
  n_env = 4096
  keys = jax.random.split(jax.random.PRNGKey(0), n_env)
  obs, state = jax.vmap(ENV.reset, in_axes=(0, None))(keys, params)
  assert obs.shape == (n_env, ENV.obs_size) and obs.dtype == jnp.float32

  @jax.jit
  def episode(state, key):
    def body(state, key):
      keys = jax.random.split(key, n_env)
      action = jax.random.uniform(key, (n_env,))
      obs, nxt, reward, done, info = jax.vmap(ENV.step, in_axes=(0, 0, 0, None))(
        keys, state, action, params
      )
      return nxt, (obs, reward, done, info["improvement_bps"])

    return jax.lax.scan(body, state, jax.random.split(key, N - 1))

  _, (obs, reward, done, imp) = episode(state, jax.random.PRNGKey(1))
  obs, reward, done, imp = map(np.asarray, (obs, reward, done, imp))
  assert obs.shape == (N - 1, n_env, ENV.obs_size) and np.all(np.isfinite(obs))
  first_done = np.argmax(done, axis=0)
  assert np.all(done.any(axis=0)), "every episode ends within N - 1 decisions"
  # Sparse terminal reward: zero before the end, the exact improvement at the end.
  before = np.arange(N - 1)[:, None] < first_done[None, :]
  assert np.all(reward[before] == 0)
  np.testing.assert_array_equal(
    reward[first_done, np.arange(n_env)], imp[first_done, np.arange(n_env)]
  )
  assert np.std(reward[done]) > 0


def test_make_params_names_a_bad_shape():
  batch = _batch(6)
  batch["closes"] = batch["closes"][:, :-1]
  with pytest.raises(ValueError, match="closes"):
    env_lib.make_params(batch, W)
  with pytest.raises(ValueError, match="obs_bars"):
    env_lib.make_params(_batch(6), 50)
