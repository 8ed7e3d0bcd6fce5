"""The look-ahead switch: decision_lag 0 sees the traded bar, 1 does not; leaky runs are marked and
refused."""

import dataclasses
import functools
import json
import os

import jax
import numpy as np
import pytest

from experiments import base
from experiments import crypto_15m
from lemjax import allocation
from lemjax import config as config_lib
from lemjax import lookahead
from lemjax import online
from lemjax import workdir as workdir_lib
from lemjax.data import features
from lemjax.model import LEM

L, N, H, F, B = 4, 5, 6, 3, 3


@functools.cache
def _allocator(lag):
  config = config_lib.AllocatorConfig(n_ahead=N, width=8, variant="shared")
  params = allocation.init_params(jax.random.PRNGKey(0), config, H)
  # Large output weights: every context change shows in the allocations.
  params["shared"]["mlp"]["w3"] = params["shared"]["mlp"]["w3"] * 300.0
  run = jax.jit(functools.partial(allocation.allocate, params, config, L, decision_lag=lag))
  return run


def _market(seed):
  rng = np.random.default_rng(seed)
  ctx = rng.standard_normal((B, L + N - 1, H)).astype(np.float32)
  prices = np.exp(np.cumsum(0.01 * rng.standard_normal((B, N)), axis=1)).astype(np.float32)
  volumes = rng.lognormal(size=(B, N)).astype(np.float32)
  bounds = (np.full(B, 0.0, np.float32), np.full(B, 0.8, np.float32))
  return ctx, bounds, prices, volumes


def _with_bar_perturbed(ctx, first_bar, seed):
  """A copy of ctx with the encoder outputs of bars >= first_bar (position L + bar) redrawn."""
  out = ctx.copy()
  out[:, L + first_bar :] += np.random.default_rng(seed).standard_normal(
    out[:, L + first_bar :].shape
  )
  return out


@pytest.mark.parametrize("s", range(N - 1))
def test_lag0_decision_moves_with_the_bar_it_trades(s):
  """Lag 0: changing bar s's encoder output moves decision s; lag 1 keeps decisions 0..s fixed."""
  ctx, bounds, prices, volumes = _market(s)
  moved_ctx = _with_bar_perturbed(ctx, s, seed=100 + s)
  leaky = [np.asarray(_allocator(0)(c, *bounds, prices, volumes)) for c in (ctx, moved_ctx)]
  causal = [np.asarray(_allocator(1)(c, *bounds, prices, volumes)) for c in (ctx, moved_ctx)]
  np.testing.assert_array_equal(leaky[0][:, :s], leaky[1][:, :s])
  assert np.any(leaky[0][:, s] != leaky[1][:, s]), "lag 0 must see the bar it trades"
  np.testing.assert_array_equal(causal[0][:, : s + 1], causal[1][:, : s + 1])


@pytest.mark.parametrize("s", range(N - 1))
def test_lag0_looks_exactly_one_bar_ahead(s):
  """Lag 0 still ignores bars after the traded one: bars >= s+1 leave decisions 0..s fixed."""
  ctx, bounds, prices, volumes = _market(10 + s)
  moved_ctx = _with_bar_perturbed(ctx, s + 1, seed=200 + s)
  a = np.asarray(_allocator(0)(ctx, *bounds, prices, volumes))
  b = np.asarray(_allocator(0)(moved_ctx, *bounds, prices, volumes))
  np.testing.assert_array_equal(a[:, : s + 1], b[:, : s + 1])


def test_model_with_lag0_sees_the_traded_bars_features():
  """End to end: with lag 0 the features of bar s (input position L+s) move decision s."""
  base_cfg = config_lib.ModelConfig(
    lookback=L,
    n_ahead=N,
    encoder=config_lib.EncoderConfig(n_features=F, embed_dim=3, hidden=8, n_attention_heads=2),
    allocator=config_lib.AllocatorConfig(n_ahead=N, width=8),
  )
  rng = np.random.default_rng(0)
  x = rng.normal(size=(B, base_cfg.seq_len, F)).astype(np.float32)
  p = (1 + 0.01 * rng.normal(size=(B, N))).astype(np.float32)
  v = rng.lognormal(size=(B, N)).astype(np.float32)
  r_min, r_max = np.zeros(B, np.float32), np.full(B, 0.8, np.float32)
  s = 2
  x2 = x.copy()
  x2[:, L + s] += 3.0  # bar t0+s only
  out = {}
  for lag in (0, 1):
    model = LEM(dataclasses.replace(base_cfg, decision_lag=lag))
    params = model.init(jax.random.PRNGKey(1), x, r_min, r_max, p, v)["params"]
    out[lag] = [
      np.asarray(model.apply({"params": params}, xi, r_min, r_max, p, v)) for xi in (x, x2)
    ]
  assert np.any(out[0][0][:, s] != out[0][1][:, s])
  np.testing.assert_array_equal(out[1][0][:, : s + 1], out[1][1][:, : s + 1])


@pytest.mark.parametrize("lag", [2, -1, True, 0.0, "0"])
def test_config_rejects_lags_other_than_0_and_1(lag):
  with pytest.raises(ValueError, match="decision_lag"):
    config_lib.ModelConfig(decision_lag=lag)
  ctx, bounds, prices, volumes = _market(0)
  if isinstance(lag, int) and not isinstance(lag, bool):
    with pytest.raises(ValueError, match="decision_lag"):
      allocation.allocate(
        {},
        config_lib.AllocatorConfig(n_ahead=N),
        L,
        ctx,
        *bounds,
        prices,
        volumes,
        decision_lag=lag,
      )


def test_require_causal():
  lookahead.require_causal(config_lib.ModelConfig())
  lookahead.require_causal({"lookback": 120})  # saved configs from before the field: causal
  for leaky in (config_lib.ModelConfig(decision_lag=0), {"decision_lag": 0}):
    with pytest.raises(ValueError, match="decision_lag=0"):
      lookahead.require_causal(leaky)


def test_saved_config_without_the_field_reads_as_causal():
  saved = workdir_lib.to_jsonable(config_lib.ModelConfig())
  del saved["decision_lag"]
  assert config_lib.saved_model_config(saved).decision_lag == 1


def test_load_policy_refuses_a_leaky_run(tmp_path):
  model = config_lib.ModelConfig(
    decision_lag=0, encoder=config_lib.EncoderConfig(n_features=features.N_FEATURES)
  )
  resolved = {
    "model": workdir_lib.to_jsonable(model),
    "data": workdir_lib.to_jsonable(config_lib.DataConfig()),
  }
  (tmp_path / "config.json").write_text(json.dumps({"resolved": resolved}))
  with pytest.raises(ValueError, match="decision_lag=0"):
    online.load_policy(str(tmp_path))


def test_leaky_variant_names_and_marks_the_run():
  causal, leaky = crypto_15m.get_config("smoke"), crypto_15m.get_config("smoke,leaky")
  assert causal.model.decision_lag == 1 and leaky.model.decision_lag == 0
  assert leaky.model.lookback == causal.model.lookback == 16  # smoke sizes kept
  assert workdir_lib.default_workdir(leaky) == workdir_lib.default_workdir(causal) + "_LEAKY"
  assert lookahead.workdir_for("runs/x/", leaky.model) == os.path.normpath("runs/x_LEAKY")
  assert lookahead.workdir_for("runs/x_LEAKY", leaky.model) == "runs/x_LEAKY"
  assert lookahead.workdir_for("runs/x", causal.model) == "runs/x"
  assert lookahead.causal_workdir("runs/x_LEAKY") == "runs/x"
  assert lookahead.report_lines(leaky.model)[0].startswith("> **LEAKY")
  assert lookahead.report_lines(causal.model) == []
  with pytest.raises(ValueError, match="unknown config variant"):
    base.with_variant(crypto_15m.get_config(), "leaky,nope")
