"""A trained LEM ready for live orders: its parameters and the static facts of its bars."""

from __future__ import annotations

import math
from typing import Any

import flax.struct
import jax

from lemjax import config as config_lib
from lemjax import heads
from lemjax import lookahead
from lemjax import model as model_lib
from lemjax import scenarios
from lemjax import workdir as workdir_lib
from lemjax.config import ModelConfig
from lemjax.data import features
from lemjax.data import tables


@flax.struct.dataclass
class Policy:
  """Trained parameters and the static facts a live order needs (hashable, so jit can key on them).

  The static fields are the settings every `step` binds once; only `params` is traced.
  """

  params: Any  # LEM params {"encoder", "allocator"}
  model_config: ModelConfig = flax.struct.field(pytree_node=False)
  step_ms: int = flax.struct.field(pytree_node=False)  # bar length the model was trained on
  volume_window_ms: int = flax.struct.field(pytree_node=False)  # span of the trailing mean volume
  source: str = flax.struct.field(pytree_node=False, default="")  # checkpoint it came from
  # head_map[k][s]: the head serving min period k + 1 in scenario s (lemjax/heads.py); None: own.
  head_map: tuple | None = flax.struct.field(pytree_node=False, default=None)
  # Execution costs charged on every child (lemjax/costs.py); the run's `costs` section.
  costs: config_lib.CostConfig = flax.struct.field(
    pytree_node=False, default=config_lib.CostConfig()
  )

  @property
  def n_ahead(self) -> int:
    return self.model_config.n_ahead

  def serving_head(self, head: int, scenario: int) -> int:
    """The trained head that serves an order of head `head` (min period - 1) and `scenario`."""
    return int(head) if self.head_map is None else int(self.head_map[head][scenario])

  @property
  def lookback(self) -> int:
    return self.model_config.lookback

  @property
  def window_bars(self) -> int:
    """W: the most bars whose open lies in a trailing volume window (t - span, t]."""
    return max(1, math.ceil(self.volume_window_ms / self.step_ms))


def init_policy(
  model_config: ModelConfig,
  step_ms: int = 3_600_000,
  volume_window_ms: int = 7 * tables.MS_PER_DAY,
  seed: int = 0,
  costs: config_lib.CostConfig | None = None,
) -> Policy:
  """A randomly initialised policy (tests, latency benchmarks)."""
  params = model_lib.init_params(model_config, jax.random.PRNGKey(seed))
  source = f"random(seed={seed})"
  costs = costs or config_lib.CostConfig()
  return Policy(params, model_config, int(step_ms), int(volume_window_ms), source, costs=costs)


def load_policy(workdir_or_checkpoint: str, which: str = "best") -> Policy:
  """The trained policy of a work directory (its resolved config.json and best checkpoint).

  When the evaluation of that checkpoint wrote head_map.json (eval.nested_heads), an order is
  served by the head the report scored for its min period (lemjax/heads.py).

  Args:
    workdir_or_checkpoint: a run's work directory, or a folder inside it (checkpoints/best).
    which: "best" (lowest validation loss, what the evaluation report uses) or "latest".

  Returns:
    Policy.

  Raises:
    FileNotFoundError when there is no config.json or checkpoint; ValueError when the saved
    config or parameter shapes do not match this code.
  """
  workdir = workdir_lib.find_workdir(workdir_or_checkpoint)
  saved = workdir_lib.read_config(workdir)
  model = config_lib.saved_model_config(saved["model"])
  costs = config_lib.costs_config(saved.get("costs"))  # runs saved before costs: none
  lookahead.require_causal(model)
  if model.encoder.n_features != features.N_FEATURES:
    raise ValueError(
      f"config model.encoder.n_features={model.encoder.n_features}, but the data "
      f"layer computes {features.N_FEATURES} features"
    )
  step_ms, volume_window_ms = workdir_lib.trained_bar_ms(workdir)
  params, info = workdir_lib.restore_params(workdir, model, which)
  head_map = heads.load_head_map(
    workdir, model.n_ahead + 1, scenarios.NUM_SCENARIOS, int(info["step"])
  )
  return Policy(
    params,
    model,
    step_ms,
    volume_window_ms,
    f"{info['directory']} step {info['step']}",
    None if head_map is None else tuple(map(tuple, head_map.tolist())),
    costs,
  )
