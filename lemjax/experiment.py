"""What an experiment runs on: its ConfigDict resolved to typed sections, and its data splits."""

from __future__ import annotations

import dataclasses
import logging

from lemjax import config as config_lib
from lemjax import data as data_lib
from lemjax import workdir as workdir_lib


def resolve_configs(config, n_features: int) -> dict:
  """Frozen dataclasses of every section; the encoder's F comes from the data."""
  model = config_lib.model_config(config.model)
  model = dataclasses.replace(
    model, encoder=dataclasses.replace(model.encoder, n_features=n_features)
  )
  costs = config_lib.costs_config(config.get("costs"))
  if model.allocator.size_input and not costs.enabled:
    raise ValueError(
      "model.allocator.size_input=True needs costs.enabled=True (sizes are drawn only with costs)"
    )
  return {
    "data": config_lib.data_config(config.data),
    "model": model,
    "loss": config_lib.loss_config(config.loss),
    "train": config_lib.train_config(config.train),
    "eval": config_lib.eval_config(config.eval),
    "costs": costs,
  }


def load_data(config):
  """(train, val, test, report, data_config), logging a banner when the market is synthetic."""
  data_config = config_lib.data_config(config.data)
  if data_config.lookback != config.model.lookback or data_config.n_ahead != config.model.n_ahead:
    raise ValueError(
      f"data.lookback/n_ahead ({data_config.lookback}, {data_config.n_ahead}) differ "
      f"from model.lookback/n_ahead ({config.model.lookback}, {config.model.n_ahead})"
    )
  if workdir_lib.uses_synthetic(data_config):
    logging.warning("\n%s", workdir_lib.synthetic_banner(data_config))
    data_config = dataclasses.replace(data_config, source="synthetic")
  train_ds, val_ds, test_ds, report = data_lib.make_datasets(data_config)
  return train_ds, val_ds, test_ds, report, data_config
