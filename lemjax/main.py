"""Command-line entry point: `python -m lemjax.main --config=experiments/<name>.py --workdir=... --mode=train|eval`."""

import logging
import os
import re
import sys

from absl import app
from absl import flags
from absl import logging as absl_logging
from ml_collections import config_flags

from lemjax import compare
from lemjax import config as config_lib
from lemjax import evaluate
from lemjax import lookahead
from lemjax import seeds
from lemjax import sharding
from lemjax import train
from lemjax import workdir as workdir_lib

_CONFIG = config_flags.DEFINE_config_file(
  "config",
  None,
  "Experiment file, e.g. experiments/crypto_intraday.py[:smoke|:paper].",
  lock_config=True,
)
_WORKDIR = flags.DEFINE_string(
  "workdir",
  "",
  "Work directory of the run (default runs/<name>, with _SYNTHETIC on synthetic data).",
)
_MODE = flags.DEFINE_enum(
  "mode",
  "train",
  ["train", "eval", "null_test", "seeds", "compare", "train_rl"],
  "train: train (resuming) then stop; eval: evaluate the best checkpoint on the test split; "
  "null_test: train and evaluate on the synthetic martingale, then apply the null-test verdict; "
  "seeds: train and evaluate --seeds seeds into <workdir>_seed<i>, then tabulate their spread; "
  "compare: the causal run (<workdir>) and its look-ahead twin (<workdir>_LEAKY) beside the "
  "paper's published tables, into <workdir>/paper_comparison.md; "
  "train_rl: train the PPO baseline into <workdir>/rl/ (eval then adds its row).",
)
_SEEDS = flags.DEFINE_integer(
  "seeds", 3, "--mode=seeds: how many seeds (config.seed, config.seed + 1, ...)."
)
_TRACEBACK = flags.DEFINE_bool(
  "traceback", False, "On an error, show the Python traceback, not just the `error:` line."
)

# Errors of the user's making (no checkpoint yet, a bad config, data file or order): one line.
USER_ERRORS = (FileNotFoundError, ValueError)


class _QuietCheckpointLogs(logging.Filter):
  """Hides orbax's per-save INFO chatter; its warnings and errors still show."""

  def filter(self, record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING or "orbax" not in record.pathname


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  config = _CONFIG.value
  config_lib.check_config(config)
  # Before any JAX computation: joins the multi-process job when there is one.
  sharding.initialize_distributed(config_lib.distributed_config(config.get("distributed")))
  absl_logging.get_absl_handler().addFilter(_QuietCheckpointLogs())
  # A look-ahead model always lands in a directory ending in _LEAKY, even when --workdir names one.
  workdir = lookahead.workdir_for(
    _WORKDIR.value or workdir_lib.default_workdir(config), config.model
  )
  if _MODE.value == "train":
    train.train_and_evaluate(config, workdir)
  elif _MODE.value == "eval":
    evaluate.evaluate(config, workdir)
  elif _MODE.value == "compare":
    compare.compare(config, lookahead.causal_workdir(workdir))
  elif _MODE.value == "train_rl":
    from lemjax.rl import train as rl_train  # noqa: PLC0415 (only this mode needs the RL code)

    rl_train.train_rl(config, workdir)
  elif _MODE.value == "seeds":
    seeds.run_seeds(config, workdir, _SEEDS.value, train.train_and_evaluate, evaluate.evaluate)
  else:
    train.train_and_evaluate(config, workdir)
    evaluate.null_test(config, workdir)


def _flag_error_line(err: Exception, argv: list[str]) -> str:
  """One line from a flag error; ml_collections embeds the experiment file's traceback in it."""
  if isinstance(err, (AttributeError, KeyError)):  # `--config.a.b=v` names no key: a KeyError
    inner = err.args[0] if err.args and isinstance(err.args[0], KeyError) else err
    key, *hint = str(inner.args[0] if inner.args else inner).splitlines()
    key = key.strip("'\"")
    flag = next(
      (
        arg
        for arg in argv
        if arg.startswith("--config.") and key in arg.partition("=")[0].split(".")
      ),
      "--config",
    )
    return f"{flag}: unknown config key {key!r}" + "".join(
      f"; {h[:1].lower()}{h[1:]}" for h in hint
    )
  lines = [line.strip() for line in str(err).splitlines() if line.strip()]
  if "Traceback (most recent call last):" in lines:  # keep the flag and the final exception
    lines = [lines[0].split(" Error whilst parsing")[0], re.sub(r"^[\w.]+: ", "", lines[-1])]
  return " ".join(lines)


def _exit(message: str, status: int) -> None:
  print(f"error: {message}", file=sys.stderr)
  sys.exit(status)


def parse_flags(argv: list[str]) -> list[str]:
  """Absl flag parsing; a bad experiment file, variant or override is one `error:` line, exit 2."""
  try:
    args = flags.FLAGS(argv)
  except (flags.Error, AttributeError, KeyError) as err:
    if "--traceback" in argv:  # the flags that would say so did not parse
      raise
    _exit(_flag_error_line(err, argv), 2)
  path = config_flags.get_config_filename(flags.FLAGS["config"]).split(":")[0]
  if not os.path.isfile(path):  # ml_collections defers this error to the first read
    _exit(f"--config: experiment file {path} not found", 2)
  return args


def cli(argv):
  """`main` for the command line: a user error prints one `error: ...` line, exit status 1."""
  try:
    return main(argv)
  except USER_ERRORS as err:
    if _TRACEBACK.value:
      raise
    _exit(str(err), 1)


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  app.run(cli, flags_parser=parse_flags)
