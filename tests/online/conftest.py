"""Fixtures of the online tests: a work directory with a smoke-size checkpoint, and its policy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import crypto_intraday
from lemjax import checkpoint as ckpt_lib
from lemjax import experiment
from lemjax import model as model_lib
from lemjax import online
from lemjax import train
from lemjax import workdir as workdir_lib
from lemjax.data import synthetic
from lemjax.data import tables
from lemjax.data import windows

from .common import HOUR
from .common import N_BARS
from .common import R_MAX
from .common import R_MIN
from .common import T0S


@pytest.fixture(scope="package")
def run(tmp_path_factory):
  """A work directory with a randomly initialised smoke-size checkpoint, bars, and batched allocations."""
  config = crypto_intraday.get_config("smoke")
  cfgs = experiment.resolve_configs(config, 8)
  model = cfgs["model"]
  span = tables.interval_ms(config.data.volume_window)
  policy0 = online.init_policy(model, HOUR, span, seed=1)
  workdir = str(tmp_path_factory.mktemp("run"))
  workdir_lib.write_run_files(workdir, config, cfgs, {"interval": "1h"}, "Data source: test")
  tx = train.make_optimizer(cfgs["train"])
  arrays = {
    "step": jnp.int32(8),
    "params": policy0.params,
    "opt_state": jax.jit(tx.init)(policy0.params),
    "rng": jax.random.PRNGKey(0),
  }
  checkpointer = ckpt_lib.Checkpointer(workdir)
  checkpointer.save(8, arrays, {"sampler": {}}, best=True)
  checkpointer.close()
  frame = synthetic.synthetic_market("crypto", 1, N_BARS, seed=5)["SYN0"]
  store = windows.BarStore.build({"SYN0": frame}, HOUR, span)
  batch = windows.WindowDataset(
    store, np.zeros(T0S.size), T0S, model.lookback, model.n_ahead
  ).batch(np.arange(T0S.size))
  forward = jax.jit(model_lib.build_model(model).apply)
  alloc = np.asarray(
    forward(
      {"params": policy0.params}, batch["inputs"], R_MIN, R_MAX, batch["prices"], batch["volumes"]
    )
  )
  cols = {c: frame[c].to_numpy() for c in ("time", "close", "volume", "vwap")}
  return {
    "workdir": workdir,
    "policy0": policy0,
    "frame": frame,
    "cols": cols,
    "batch": batch,
    "alloc": alloc,
    "forward": forward,
    "config": config,
  }


@pytest.fixture(scope="package")
def policy(run):
  return online.load_policy(run["workdir"])
