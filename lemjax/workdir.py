"""The run directory: its name, the files a run writes into it, and reading a trained run back."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lemjax import checkpoint as ckpt_lib
from lemjax import config as config_lib
from lemjax import data as data_lib
from lemjax import lookahead
from lemjax import model as model_lib
from lemjax import sharding
from lemjax.data import tables

CONFIG_FILE = "config.json"  # the experiment and its resolved sections
DATA_REPORT_FILE = "data_report.json"  # what the data layer read and did
CHECKPOINTS = ("best", "latest")  # lowest validation loss; the newest (for resuming)
_SYNTHETIC_KEYS = (
  "synthetic_regime",
  "synthetic_seed",
  "synthetic_assets",
  "synthetic_bars",
  "martingale",
)


# --- Naming and finding ---------------------------------------------------------------------------


def uses_synthetic(data_config: config_lib.DataConfig) -> bool:
  """True when the run trains on the embedded synthetic market (no bar files, or asked for)."""
  if data_config.source == "synthetic":
    return True
  if data_config.source != "auto":
    return False
  return not any(data_lib.find_files(data_config.path).values())


def default_workdir(config) -> str:
  """runs/<name>, with loud _SYNTHETIC (synthetic market) and _LEAKY (look-ahead) suffixes."""
  name = config.name
  if uses_synthetic(config_lib.data_config(config.data)) and "SYNTHETIC" not in name:
    name += "_SYNTHETIC"
  return lookahead.workdir_for(os.path.join("runs", name), config.model)


def find_workdir(path: str) -> str:
  """The work directory holding config.json: `path` itself or a parent (e.g. .../checkpoints/best)."""
  here = os.path.abspath(path)
  if not os.path.exists(here):
    raise FileNotFoundError(f"{path}: no such work directory or checkpoint")
  for _ in range(4):
    if os.path.isfile(os.path.join(here, CONFIG_FILE)):
      return here
    here = os.path.dirname(here)
  raise FileNotFoundError(
    f"{path}: no config.json in it or its parents; not a lemjax work directory "
    "(train first with `python -m lemjax.main --mode=train ...`)"
  )


# --- Writing --------------------------------------------------------------------------------------


def synthetic_banner(data_config: config_lib.DataConfig) -> str:
  """The large-letter warning printed in logs and reports for synthetic runs."""
  kind = "martingale " if data_config.martingale else ""
  line = "#" * 78
  return (
    f"{line}\n#{'SYNTHETIC DATA':^76}#\n"
    f"#{f'embedded {kind}{data_config.synthetic_regime} market; no real bars were found or used':^76}#\n"
    f"#{f'(path searched: {data_config.path or None})':^76}#\n{line}"
  )


def data_source_line(data_config: config_lib.DataConfig, report: Any) -> str:
  """`Data source:` line: the folder and files read, or SYNTHETIC."""
  if uses_synthetic(data_config) or _report_get(report, "source") == "SYNTHETIC":
    kind = "martingale " if data_config.martingale else ""
    return (
      f"Data source: SYNTHETIC ({kind}{data_config.synthetic_regime} regime, "
      f"{data_config.synthetic_assets} assets, seed {data_config.synthetic_seed})"
    )
  files = _report_get(report, "files") or []
  names = ", ".join(os.path.basename(str(f)) for f in files) or "(see data_report.json)"
  return (
    f"Data source: {_report_get(report, 'source') or os.path.abspath(data_config.path)} [{names}]"
  )


def _report_get(report: Any, key: str, default=None):
  if isinstance(report, dict):
    return report.get(key, default)
  return getattr(report, key, default)


def to_jsonable(value: Any) -> Any:
  """Dataclasses, numpy scalars/arrays and tuples as plain JSON values."""
  if dataclasses.is_dataclass(value) and not isinstance(value, type):
    return to_jsonable(dataclasses.asdict(value))
  if hasattr(value, "to_dict") and callable(value.to_dict):
    return to_jsonable(value.to_dict())
  if isinstance(value, dict):
    return {str(k): to_jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [to_jsonable(v) for v in value]
  if isinstance(value, np.ndarray):
    return value.tolist()
  if isinstance(value, np.generic):
    return value.item()
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)
  if value is None or isinstance(value, (str, int, float, bool)):
    return value
  return str(value)


def write_run_files(workdir: str, config, cfgs: dict, report: Any, source_line: str) -> None:
  """Resolved config (JSON) and data report next to the checkpoints."""
  os.makedirs(workdir, exist_ok=True)
  resolved = {
    "experiment": json.loads(config.to_json_best_effort()),
    "resolved": {k: to_jsonable(v) for k, v in cfgs.items()},
    "data_source": source_line,
  }
  with open(os.path.join(workdir, CONFIG_FILE), "w") as f:
    json.dump(resolved, f, indent=2)
  with open(os.path.join(workdir, DATA_REPORT_FILE), "w") as f:
    json.dump({"data_source": source_line, "report": to_jsonable(report)}, f, indent=2)
  if "SYNTHETIC" in source_line:
    with open(os.path.join(workdir, "SYNTHETIC_DATA.txt"), "w") as f:
      f.write(synthetic_banner(cfgs["data"]) + "\n")


def write_train_summary(workdir: str, summary: dict) -> None:
  """`train_summary.json`: the finished run's step and early-stopping bookkeeping.

  `wall_s`, when given, is the wall time in seconds of the training call that wrote the file
  (data loading and compilation included; a resumed run counts only its last call).
  """
  with open(os.path.join(workdir, "train_summary.json"), "w") as f:
    json.dump(to_jsonable(summary), f, indent=2)


class MetricWriter:
  """Appends metric records to `<workdir>/metrics.jsonl` (process 0 only in multi-process runs)."""

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, "metrics.jsonl")
    self.enabled = sharding.is_primary()

  def truncate_after(self, step: int) -> None:
    """Drops records past `step` (written by a run that was killed before its next checkpoint)."""
    if not self.enabled or not os.path.exists(self.path):
      return
    with open(self.path) as f:
      keep = [line for line in f if line.strip() and json.loads(line)["step"] <= step]
    with open(self.path, "w") as f:
      f.writelines(keep)

  def write(self, step: int, split: str, values: dict) -> None:
    if not self.enabled:
      return
    record = {"step": int(step), "split": split, **{k: to_jsonable(v) for k, v in values.items()}}
    with open(self.path, "a") as f:
      f.write(json.dumps(record) + "\n")


# --- Reading a trained run ------------------------------------------------------------------------


def read_config(workdir: str) -> dict:
  """The resolved sections (model, data, train, ...) of the config.json a run saved.

  Raises:
    FileNotFoundError when `workdir` has no config.json; ValueError when it is not JSON or has
    no resolved model and data sections.
  """
  path = os.path.join(workdir, CONFIG_FILE)
  with open(path) as f:
    try:
      saved = json.load(f)
    except json.JSONDecodeError as err:
      raise ValueError(f"{path} is not valid JSON: {err}") from None
  resolved = saved.get("resolved") if isinstance(saved, dict) else None
  if not isinstance(resolved, dict) or not all(
    isinstance(resolved.get(k), dict) for k in ("model", "data")
  ):
    raise ValueError(f"{path} has no resolved model and data sections; not a lemjax run config")
  return resolved


def trained_model_config(
  workdir: str, model_config: config_lib.ModelConfig
) -> config_lib.ModelConfig:
  """The model config the run in `workdir` was trained with (its config.json), else `model_config`.

  A checkpoint only fits the sizes it was trained with, so a later change of the experiment
  file's model defaults must not break evaluating an earlier run.
  """
  if not os.path.exists(os.path.join(workdir, CONFIG_FILE)):
    return model_config
  trained = config_lib.saved_model_config(read_config(workdir)["model"])
  if trained != model_config:
    logging.warning(
      "evaluating with the model config this run was trained with (%s), not the "
      "experiment file's current one",
      os.path.join(workdir, CONFIG_FILE),
    )
  return trained


def trained_bar_ms(workdir: str) -> tuple[int, int]:
  """(bar length, trailing-volume span) in ms of the data the run in `workdir` trained on.

  The bar length is the data report's (what the data layer actually used), else the config's.
  """
  data = read_config(workdir)["data"]
  interval = "1d" if data.get("kind") == "daily" else (data.get("resample_to") or data["interval"])
  report_file = os.path.join(workdir, DATA_REPORT_FILE)
  if os.path.isfile(report_file):
    with open(report_file) as f:
      interval = (json.load(f).get("report") or {}).get("interval") or interval
  return tables.interval_ms(interval), tables.interval_ms(data["volume_window"])


def report_dir(workdir: str, data_config: config_lib.DataConfig) -> str:
  """The work directory itself, or `<workdir>/eval_<folder>` when evaluating on other data.

  A model trained on one folder of bars can be evaluated on another (asset identity is not an
  input); that report then lives next to, not over, the report of the training data.
  """
  if not os.path.exists(os.path.join(workdir, CONFIG_FILE)):
    return workdir
  trained = read_config(workdir)["data"]
  synthetic = data_config.source == "synthetic"
  if synthetic and trained.get("source") == "synthetic":
    same = all(trained.get(k) == getattr(data_config, k) for k in _SYNTHETIC_KEYS)
  elif not synthetic and trained.get("source") != "synthetic":
    same = os.path.abspath(trained.get("path", "")) == os.path.abspath(data_config.path)
  else:
    same = False
  if same:
    return workdir
  if synthetic:
    return os.path.join(workdir, f"eval_synthetic_seed{data_config.synthetic_seed}")
  return os.path.join(workdir, f"eval_{os.path.basename(os.path.normpath(data_config.path))}")


def restore_params(workdir: str, model_config: config_lib.ModelConfig, which: str = "best"):
  """Parameters of the best (or latest) checkpoint in `workdir`, and where they came from.

  Only the parameters are read (any optimiser state is ignored), into the shapes
  `model_config` implies; nothing is compiled.

  Returns:
    (params, info): info holds which, step, directory and the checkpoint's validation metrics.

  Raises:
    FileNotFoundError naming the directory and the command that creates a checkpoint;
    ValueError naming the first parameter that does not fit `model_config`.
  """
  if which not in CHECKPOINTS:
    raise ValueError(f"checkpoint {which!r} is not 'best' or 'latest'")
  directory = os.path.join(os.path.abspath(workdir), "checkpoints", which)
  missing_error = FileNotFoundError(
    f"no {which} checkpoint in {directory}; train first with `python -m lemjax.main "
    f"--mode=train --config=<experiment file> --workdir={workdir}` (or `make train EXP=<name>`)"
  )
  if not os.path.isdir(directory) or not os.listdir(directory):
    raise missing_error
  # Committed to the default device, as freshly initialised parameters would be.
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  expected = jax.tree.map(
    lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=device),
    model_lib.param_shapes(model_config),
  )
  target = {"step": jax.ShapeDtypeStruct((), jnp.int32, sharding=device), "params": expected}
  checkpointer = ckpt_lib.Checkpointer(workdir)
  try:
    step = checkpointer.latest_step(best=which == "best")
    restored = checkpointer.restore_subset(target, best=which == "best")
  except ValueError as err:  # orbax: a saved array's shape differs from the target's
    reason = str(err).split(" Metadata keys")[0]  # orbax appends every saved key
    raise _mismatch(directory, f"its parameters do not match ({reason[:300]})") from None
  finally:
    checkpointer.close()
  if restored is None:
    raise missing_error
  arrays, meta = restored
  _check_params(arrays["params"], expected, directory)
  params = jax.tree.unflatten(jax.tree.structure(expected), jax.tree.leaves(arrays["params"]))
  info = {"which": which, "step": int(step), "directory": directory, "val": meta.get("val")}
  return params, info


def _check_params(restored, expected, directory: str) -> None:
  """ValueError naming the first parameter the checkpoint lacks or holds with another shape."""
  got = dict(jax.tree_util.tree_flatten_with_path(restored)[0])
  flat = jax.tree_util.tree_flatten_with_path(expected)[0]
  # A partial restore leaves what the checkpoint lacks as abstract placeholders.
  missing = [
    jax.tree_util.keystr(path)
    for path, _ in flat
    if path not in got or isinstance(got[path], jax.ShapeDtypeStruct)
  ]
  if missing:
    raise _mismatch(directory, f"it has no parameter {missing[0]} (and {len(missing) - 1} more)")
  for path, leaf in flat:
    if tuple(got[path].shape) != tuple(leaf.shape):
      raise _mismatch(
        directory,
        f"parameter {jax.tree_util.keystr(path)} has shape "
        f"{tuple(got[path].shape)}, the model needs {tuple(leaf.shape)}",
      )


def _mismatch(directory: str, detail: str) -> ValueError:
  return ValueError(
    f"the checkpoint in {directory} does not fit the model of this config and code: {detail}. "
    "Use the config it was trained with (its config.json), or retrain into a fresh work directory"
  )
