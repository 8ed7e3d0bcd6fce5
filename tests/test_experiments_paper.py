"""The paper-setting experiments (crypto_15m, crypto_90m) load and yield train/val/test windows."""

import dataclasses
from pathlib import Path

import pytest

from experiments import crypto_15m
from experiments import crypto_90m
from lemjax import config as config_lib
from lemjax.data import make_datasets

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO / ".." / "shared" / "data" / "crypto" / "15m"
EXPERIMENTS = {"crypto_15m": (crypto_15m, "15m"), "crypto_90m": (crypto_90m, "90m")}


def _windows(data_config):
  train, val, test, report = make_datasets(data_config)
  return train.num_windows, val.num_windows, test.num_windows, report


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data not present")
@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_shared_data_gives_windows_in_every_split(name, monkeypatch):
  monkeypatch.chdir(REPO)  # the experiment files name ../shared/data relative to the repository
  module, bar = EXPERIMENTS[name]
  data = config_lib.data_config(module.get_config().data)
  assert data.lookback == 120 and data.n_ahead == 12
  n_train, n_val, n_test, report = _windows(dataclasses.replace(data, symbols=("BTCUSDT",)))
  assert report.source != "SYNTHETIC" and report.interval == bar
  assert min(n_train, n_val, n_test) > 0
  assert (
    report.first_bar["BTCUSDT"] < "2025-01-01" and report.splits["test"]["start"] == "2026-01-01"
  )
  # The test period spans about four months: more than 3 x 30 days of non-overlapping orders.
  bars_per_day = {"15m": 96, "90m": 16}[bar]
  assert n_test > 3 * 30 * bars_per_day


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_smoke_variant_runs_on_the_synthetic_market(name):
  module, bar = EXPERIMENTS[name]
  config = module.get_config("smoke,leaky")
  assert config.model.decision_lag == 0 and config.data.source == "synthetic"
  n_train, n_val, n_test, report = _windows(config_lib.data_config(config.data))
  assert report.source == "SYNTHETIC" and report.interval == bar
  assert min(n_train, n_val, n_test) > 0
