"""Tests of the PPO agent: it learns on a tiny market, its allocations are feasible, it saves and loads."""

import jax
import numpy as np
import pytest

from lemjax import objectives
from lemjax.config import RLConfig
from lemjax.rl import env as env_lib
from lemjax.rl import policy
from lemjax.rl import ppo

M, N, W, F = 64, 4, 2, 8
CFG = RLConfig(
  obs_bars=W,
  num_envs=128,
  num_steps=8,
  updates=24,
  epochs=4,
  minibatches=4,
  hidden=32,
  learning_rate=3e-3,
)


def _trending_market(seed=0):
  """Each order trends +-40 bps per bar, visible in the observed returns: buyers of a rising
  order should finish at once, sellers wait (and the reverse when it falls)."""
  rng = np.random.default_rng(seed)
  drift_M = rng.choice([-40.0, 40.0], M)
  bars = np.arange(N)
  inputs = rng.normal(0, 0.1, (M, W + N - 1, F)).astype(np.float32)
  inputs[:, :, 1] = drift_M[:, None]  # return_bps
  return {
    "inputs": inputs,
    "prices": (1 + drift_M[:, None] * 1e-4 * (bars + 0.5)).astype(np.float32),
    "volumes": rng.uniform(0.5, 1.5, (M, N)).astype(np.float32),
    "closes": (1 + drift_M[:, None] * 1e-4 * bars).astype(np.float32),
    "lookback_vol": np.full(M, 40.0, np.float32),
  }


def _mean_improvement(params, meta, batch):
  alloc = policy.allocations(params, meta, batch, 0.0, 1.0, chunk=2048)
  return float(np.mean(objectives.improvement_bps(alloc, batch["prices"], batch["volumes"])))


@pytest.fixture(scope="module")
def trained():
  batch = _trending_market()
  env = env_lib.ExecutionEnv(N, W)
  env_params = env_lib.make_params(batch, W)
  runner = ppo.init_runner(CFG, env, env_params, jax.random.PRNGKey(0))
  meta = policy.agent_meta(env, CFG.hidden, CFG.layers, CFG.action_stretch)
  before = _mean_improvement(runner.params, meta, batch)
  runner, _ = ppo.train_updates(runner, env_params, cfg=CFG, env=env, n_updates=CFG.updates // 2)
  compiled = ppo.train_updates._cache_size()
  runner, metrics = ppo.train_updates(
    runner, env_params, cfg=CFG, env=env, n_updates=CFG.updates // 2
  )
  assert ppo.train_updates._cache_size() == compiled, "the second chunk recompiled"
  return {
    "batch": batch,
    "params": runner.params,
    "meta": meta,
    "before": before,
    "metrics": jax.device_get(metrics),
  }


def test_ppo_improves_on_its_initial_policy(trained):
  after = _mean_improvement(trained["params"], trained["meta"], trained["batch"])
  assert after > trained["before"] + 10.0, (trained["before"], after)
  assert all(np.all(np.isfinite(v)) for v in trained["metrics"].values())


def test_allocations_respect_the_bounds_and_sum_to_one(trained):
  r_min, r_max = 0.1, 0.4
  alloc = policy.allocations(trained["params"], trained["meta"], trained["batch"], r_min, r_max)
  assert alloc.shape == (M, N, N + 1, 8) and alloc.dtype == np.float32
  np.testing.assert_allclose(alloc.sum(axis=1), 1.0, atol=1e-6)
  remaining = 1.0 - np.concatenate(
    [np.zeros_like(alloc[:, :1]), np.cumsum(alloc, axis=1)[:, :-1]], 1
  )
  assert np.all(alloc <= r_max + 1e-6)
  assert np.all(alloc >= np.minimum(r_min, remaining) - 1e-6)
  with pytest.raises(ValueError, match="r_max"):
    policy.allocations(trained["params"], trained["meta"], trained["batch"], 0.0, 0.2)


def test_saved_agent_loads_and_allocates_identically(trained, tmp_path):
  policy.save(str(tmp_path / "rl"), trained["params"], trained["meta"])
  params, meta = policy.load(str(tmp_path / "rl"))
  assert meta == trained["meta"]
  jax.tree.map(np.testing.assert_array_equal, params, jax.device_get(trained["params"]))
  np.testing.assert_array_equal(
    policy.rl_allocations(str(tmp_path), trained["batch"], 0.0, 1.0),
    policy.allocations(trained["params"], meta, trained["batch"], 0.0, 1.0),
  )


def test_missing_agent_names_the_command(tmp_path):
  with pytest.raises(FileNotFoundError, match="train_rl"):
    policy.rl_allocations(str(tmp_path), _trending_market(), 0.0, 1.0)
