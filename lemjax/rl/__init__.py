"""Reinforcement-learning baseline: a JAX execution environment over the LEM's orders and a PPO agent.

env.py     ExecutionEnv (gymnax-style reset/step), EnvParams from a data batch, rollout
policy.py  the actor-critic network, saving and loading an agent, `rl_allocations` [B, N, K, S]
ppo.py     PPO: rollouts, GAE, clipped updates, all in one jitted lax.scan
train.py   `train_rl(config, workdir)`: training-split pool, validation checks, <workdir>/rl/
"""
