"""Tests of the config boundary: strict builders, base.py covering every field, the optimiser key."""

import dataclasses
import json

import pytest

from experiments import base
from experiments import crypto_intraday
from lemjax import config as config_lib

# Not set in experiments/base.py on purpose: sub-sections, and the allocator's N (model.n_ahead).
NOT_VALUES = {"model.encoder", "model.allocator", "model.allocator.n_ahead"}


def _config_keys(section, prefix: str) -> set[str]:
  keys = set()
  for key, value in section.items():
    if hasattr(value, "items"):
      keys |= _config_keys(value, f"{prefix}{key}.")
    else:
      keys.add(prefix + key)
  return keys


def test_base_sets_every_dataclass_field():
  config = base.get_config()
  classes = {
    "data": config_lib.DataConfig,
    "model": config_lib.ModelConfig,
    "model.encoder": config_lib.EncoderConfig,
    "model.allocator": config_lib.AllocatorConfig,
    "loss": config_lib.LossConfig,
    "train": config_lib.TrainConfig,
    "eval": config_lib.EvalConfig,
    "costs": config_lib.CostConfig,
    "mesh": config_lib.MeshConfig,
    "distributed": config_lib.DistributedConfig,
    "rl": config_lib.RLConfig,
  }
  assert set(config_lib.SECTIONS) == {name for name in classes if "." not in name}
  fields = set(config_lib.TOP_LEVEL_KEYS)
  for name, cls in classes.items():
    fields |= {f"{name}.{field.name}" for field in dataclasses.fields(cls)}
  assert fields - NOT_VALUES == _config_keys(config, "")


@pytest.mark.parametrize(
  "section, key, suggestion",
  [
    ("train", "stpes", "train.steps"),
    ("model.encoder", "hiden", "model.encoder.hidden"),
    ("model", "lookbak", "model.lookback"),
    ("", "trian", "train"),
  ],
)
def test_unknown_key_names_it_and_the_nearest_valid_key(section, key, suggestion):
  config = crypto_intraday.get_config("smoke")
  node = config
  for part in filter(None, section.split(".")):
    node = node[part]
  node[key] = 3
  dotted = f"{section}.{key}" if section else key
  with pytest.raises(
    ValueError, match=rf"unknown config key {dotted}; did you mean {suggestion}\?"
  ):
    config_lib.check_config(config)


def test_every_builder_is_strict():
  for name, build in config_lib.SECTIONS.items():
    with pytest.raises(ValueError, match=rf"unknown config key {name}\.zzz; valid keys: "):
      build({"zzz": 1})
  config_lib.check_config(base.get_config())
  config_lib.check_config(crypto_intraday.get_config("paper"))


def test_allocator_horizon_follows_the_model():
  assert config_lib.model_config({"n_ahead": 5}).allocator.n_ahead == 5
  assert config_lib.model_config({"n_ahead": 5, "allocator": {"n_ahead": 5}}).allocator.n_ahead == 5
  with pytest.raises(ValueError, match="model.allocator.n_ahead=4 differs from model.n_ahead=5"):
    config_lib.model_config({"n_ahead": 5, "allocator": {"n_ahead": 4}})


def test_saved_sections_round_trip_through_json():
  """A run's config.json (resolved dataclasses as JSON) builds the same dataclasses again."""
  defaults = {
    "data": config_lib.DataConfig(),
    "loss": config_lib.LossConfig(),
    "train": config_lib.TrainConfig(steps=7, r_min_range=(0.0, 0.1)),
    "mesh": config_lib.MeshConfig(),
    "distributed": config_lib.DistributedConfig(),
  }
  for name, value in defaults.items():
    saved = json.loads(json.dumps(dataclasses.asdict(value)))  # tuples come back as lists
    assert config_lib.SECTIONS[name](saved) == value, name
  model = config_lib.model_config(base.get_config().model)
  assert config_lib.saved_model_config(json.loads(json.dumps(dataclasses.asdict(model)))) == model


def test_runs_saved_before_tied_heads_or_sizes_load_untied_without_size_input():
  model = config_lib.model_config(base.get_config().model)
  saved = json.loads(json.dumps(dataclasses.asdict(model)))
  for field in ("tie_heads", "size_input"):
    del saved["allocator"][field]
  loaded = config_lib.saved_model_config(saved)
  assert not loaded.allocator.tie_heads and not loaded.allocator.size_input
  saved["allocator"]["unknown_field"] = 1
  with pytest.raises(ValueError, match="model.allocator.unknown_field"):
    config_lib.saved_model_config(saved)


def test_optimizer_config_ignores_cadence_fields():
  a = config_lib.TrainConfig(log_every=1, eval_every=2, learning_rate=3e-4)
  b = config_lib.TrainConfig(log_every=5, eval_every=9, learning_rate=3e-4)
  assert config_lib.optimizer_config(a) == config_lib.optimizer_config(b)
  assert type(config_lib.optimizer_config(a)) is config_lib.OptimizerConfig
  assert config_lib.optimizer_config(a) != config_lib.optimizer_config(
    dataclasses.replace(a, clip_norm=0.0)
  )


def test_load_experiment_applies_the_variant_and_names_a_missing_file():
  assert config_lib.load_experiment("experiments/crypto_intraday.py:smoke").name.endswith("_smoke")
  assert config_lib.load_experiment("experiments/crypto_intraday.py").name == "crypto_intraday"
  with pytest.raises(FileNotFoundError, match="experiments/nope.py"):
    config_lib.load_experiment("experiments/nope.py:smoke")
