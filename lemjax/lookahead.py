"""The one-bar look-ahead switch (`model.decision_lag = 0`): how a leaky run is named, shown and refused.

With decision_lag 0 the decision for bar s reads the encoder output at bar s, so it sees the
volume and return of the bar it trades: the `lems` package's alignment (SPEC section 8). It exists
only to measure how much of the published gain that look-ahead explains. A leaky run lives in a
work directory ending in `_LEAKY`, says LEAKY in its log and on the first line of every report,
and `require_causal` keeps it out of live execution and backtests.
"""

from __future__ import annotations

import logging
import os
from typing import Any

SUFFIX = "_LEAKY"
MARKER_FILE = "LEAKY_LOOKAHEAD.txt"
REPORT_LINE = (
  "> **LEAKY: decision_lag=0, every decision sees the bar it trades (one-bar look-ahead, "
  "research only); these numbers are not achievable.**"
)


def decision_lag(model_config: Any) -> int:
  """`decision_lag` of a ModelConfig, a ConfigDict `model` section or a saved mapping (default 1)."""
  if hasattr(model_config, "decision_lag"):
    return int(model_config.decision_lag)
  if hasattr(model_config, "get"):
    return int(model_config.get("decision_lag", 1))
  raise ValueError(f"model_config={model_config!r} is not a model config")


def is_leaky(model_config: Any) -> bool:
  """True when decisions see the bar they trade (decision_lag 0)."""
  return decision_lag(model_config) == 0


def require_causal(model_config: Any) -> None:
  """Raises ValueError for a look-ahead model: live execution and backtests accept causal ones only."""
  if is_leaky(model_config):
    raise ValueError(
      "this model was trained with model.decision_lag=0: each decision reads the bar it trades "
      "(a one-bar look-ahead, for research only). It cannot execute orders or be backtested; "
      "use a model trained with decision_lag=1"
    )


def workdir_for(workdir: str, model_config: Any) -> str:
  """`workdir` with the `_LEAKY` suffix appended when the model looks ahead (and not there yet)."""
  if not is_leaky(model_config):
    return workdir
  trimmed = os.path.normpath(workdir)
  return trimmed if trimmed.endswith(SUFFIX) else trimmed + SUFFIX


def causal_workdir(workdir: str) -> str:
  """The causal sibling of a work directory: `workdir` without a trailing `_LEAKY`."""
  trimmed = os.path.normpath(workdir)
  return trimmed.removesuffix(SUFFIX)


def banner() -> str:
  """The large-letter warning logged by leaky runs."""
  line = "#" * 78
  return (
    f"{line}\n#{'LEAKY: ONE-BAR LOOK-AHEAD (model.decision_lag=0)':^76}#\n"
    f"#{'each decision reads the encoder output of the bar it trades; research only':^76}#\n"
    f"{line}"
  )


def report_lines(model_config: Any) -> list[str]:
  """Lines to put first in a report of this model: the LEAKY warning, or nothing."""
  return [REPORT_LINE, ""] if is_leaky(model_config) else []


def announce(model_config: Any, workdir: str | None = None) -> None:
  """Logs the banner and writes `LEAKY_LOOKAHEAD.txt` into `workdir` when the model looks ahead."""
  if not is_leaky(model_config):
    return
  logging.warning("\n%s", banner())
  if workdir:
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, MARKER_FILE), "w") as f:
      f.write(banner() + "\n")
