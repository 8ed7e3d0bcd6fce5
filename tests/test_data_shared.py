"""Loads every file of ../shared/data and checks counts and dates against its README (skips if absent)."""

from pathlib import Path

import numpy as np
import pytest

from lemjax.config import DataConfig
from lemjax.data import make_datasets
from lemjax.data import tables

ROOT = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
PAIRS = ("ADAUSDT", "BNBUSDT", "BTCUSDT", "DOGEUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT")
DOW = [
  "AAPL",
  "AXP",
  "BA",
  "CAT",
  "CSCO",
  "CVX",
  "DIS",
  "GE",
  "GS",
  "HD",
  "IBM",
  "INTC",
  "JNJ",
  "JPM",
  "KO",
  "MCD",
  "MMM",
  "MRK",
  "MSFT",
  "NKE",
  "PFE",
  "PG",
  "TRV",
  "UNH",
  "UTX",
  "VZ",
  "WMT",
  "XOM",
  "AMZN",
  "GOOGL",
  "AABA",
]

pytestmark = pytest.mark.skipif(not ROOT.is_dir(), reason="../shared/data not present")


def _load(sub, **kw):
  return make_datasets(
    DataConfig(source="files", path=str(ROOT / sub), lookback=120, n_ahead=12, **kw)
  )


@pytest.fixture(scope="module")
def crypto_1h():
  return _load("crypto/1h", interval="1h")


@pytest.fixture(scope="module")
def crypto_15m():
  return _load(
    "crypto/15m",
    interval="15m",
    train_start="",
    train_end="2025-06-30",
    val_start="2025-07-01",
    val_end="2025-09-30",
    test_start="2025-10-01",
  )


@pytest.fixture(scope="module")
def djia():
  return _load(
    "djia_daily",
    interval="1d",
    train_start="2006-01-01",
    train_end="2013-12-31",
    val_start="2014-01-01",
    val_end="2015-12-31",
    test_start="2016-01-01",
    test_end="2017-12-31",
  )


def test_crypto_1h_matches_readme(crypto_1h):
  train, val, test, report = crypto_1h
  assert report.kind == "binance" and sorted(report.assets) == list(PAIRS)
  for pair in PAIRS:
    counts = report.corrections[pair]
    assert counts["rows_read"] == 37_923 and counts["missing_bars_inserted"] == 1
    assert 0 < counts["zero_volume_bars"] < 10 and counts["duplicates_removed"] == 0
    assert report.bars[pair] == 37_924  # the missing hour keeps its place
    assert (
      report.first_bar[pair] == "2022-01-01T00:00" and report.last_bar[pair] == "2026-04-30T03:00"
    )
  store = train.store
  gap = tables.date_ms("2023-03-24") + 13 * 3_600_000
  assert np.all(np.diff(store.asset_times(0)) == 3_600_000)
  assert store.volume[store.offsets[0] + np.searchsorted(store.asset_times(0), gap)] == 0.0
  assert min(train.num_windows, val.num_windows, test.num_windows) > 20_000


def test_crypto_15m_matches_readme(crypto_15m):
  *_, report = crypto_15m
  assert sorted(report.assets) == list(PAIRS)
  for pair in PAIRS:
    assert report.bars[pair] == 46_673 and report.corrections[pair]["missing_bars_inserted"] == 0
    assert report.first_bar[pair].startswith("2024-12-30") and report.last_bar[pair].startswith(
      "2026-04-30"
    )


def test_djia_daily_matches_readme(djia):
  train, val, test, report = djia
  assert report.kind == "daily" and sorted(report.assets) == sorted(DOW)
  for ticker in DOW:
    assert 3_000 <= report.corrections[ticker]["rows_read"] <= 3_030
    assert (
      report.first_bar[ticker] == "2006-01-03T00:00"
      and report.last_bar[ticker] == "2017-12-29T00:00"
    )
  filled = sum(report.total(f"filled_{c}") for c in ("open", "high", "low"))
  assert 50 <= filled <= 60  # "about 55 cells" missing (plus one zero Low), each filled and counted
  assert len(set(report.bars.values())) == 1  # one trading calendar for all tickers
  batch = test.batch(np.arange(0, test.num_windows, 97))
  assert np.all(np.isfinite(batch["inputs"])) and np.all(batch["prices"] > 0)
