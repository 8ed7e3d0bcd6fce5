"""Command-line entry point: `python -m lemjax.main --config=experiments/<name>.py --workdir=... --mode=train|eval`."""

import logging

from absl import app
from absl import flags
from absl import logging as absl_logging
from ml_collections import config_flags

from lemjax import config as config_lib
from lemjax import evaluate
from lemjax import seeds
from lemjax import sharding
from lemjax import train
from lemjax import workdir as workdir_lib

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment file, e.g. experiments/crypto_intraday.py[:smoke|:paper].",
    lock_config=True)
_WORKDIR = flags.DEFINE_string(
    "workdir", "", "Work directory of the run (default runs/<name>, with _SYNTHETIC on synthetic data).")
_MODE = flags.DEFINE_enum(
    "mode", "train", ["train", "eval", "null_test", "seeds"],
    "train: train (resuming) then stop; eval: evaluate the best checkpoint on the test split; "
    "null_test: train and evaluate on the synthetic martingale, then apply the null-test verdict; "
    "seeds: train and evaluate --seeds seeds into <workdir>_seed<i>, then tabulate their spread.")
_SEEDS = flags.DEFINE_integer(
    "seeds", 3, "--mode=seeds: how many seeds (config.seed, config.seed + 1, ...).")


class _QuietCheckpointLogs(logging.Filter):
  """Hides orbax's per-save INFO chatter; its warnings and errors still show."""

  def filter(self, record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING or "orbax" not in record.pathname


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  config = _CONFIG.value
  # Before any JAX computation: joins the multi-process job when there is one.
  sharding.initialize_distributed(config_lib.distributed_config(config.get("distributed")))
  absl_logging.get_absl_handler().addFilter(_QuietCheckpointLogs())
  workdir = _WORKDIR.value or workdir_lib.default_workdir(config)
  if _MODE.value == "train":
    train.train_and_evaluate(config, workdir)
  elif _MODE.value == "eval":
    evaluate.evaluate(config, workdir)
  elif _MODE.value == "seeds":
    seeds.run_seeds(config, workdir, _SEEDS.value, train.train_and_evaluate, evaluate.evaluate)
  else:
    train.train_and_evaluate(config, workdir)
    evaluate.null_test(config, workdir)


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  app.run(main)
