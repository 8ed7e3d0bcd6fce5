"""Test-wide settings: strict rank promotion and CPU-only, deterministic JAX.

The tests' tiny configs spend most of their time in XLA compilation, so XLA's optimisation
passes are skipped (`jax_disable_most_optimizations`: the same programs, compiled with less
work). Set JAX_DISABLE_MOST_OPTIMIZATIONS=0 to run the suite fully optimised. Both settings are
environment variables, so the processes that tests start inherit them.
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")

import jax  # noqa: E402
import pytest  # noqa: E402

from experiments import crypto_intraday  # noqa: E402
from lemjax import train as train_lib  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture(scope="session")
def costs_run(tmp_path_factory):
  """A smoke model trained for 8 steps with execution costs on: (config, work directory).

  Shared by the size-report and backtest tests (each reads the run, none writes over it).
  """
  config = crypto_intraday.get_config("smoke,costs")
  config.train.progress = False
  config.train.steps = 8
  config.eval.bootstrap = 100
  config.eval.tune_orders = 128
  config.eval.val_orders = 128
  config.eval.max_orders = 96
  path = str(tmp_path_factory.mktemp("costs") / "run")
  train_lib.train_and_evaluate(config, path)
  return config, path
