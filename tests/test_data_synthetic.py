"""Statistics of the embedded synthetic market: seasonality, tails, volume-volatility link, null switch."""

import time

import numpy as np
import polars as pl
import pytest

from lemjax.data import synthetic
from lemjax.data import tables

N_BARS = 20_000


@pytest.fixture(scope="module")
def markets():
  return {
    m: synthetic.synthetic_market("crypto", 4, N_BARS, seed=11, martingale=m) for m in (False, True)
  }


def _returns(table):
  close = table["close"].to_numpy()
  return close[1:] / close[:-1] - 1.0


def _lag1(x):
  return float(np.corrcoef(x[1:], x[:-1])[0, 1])


def test_deterministic_and_same_layout_as_loaders(markets):
  again = synthetic.synthetic_market("crypto", 4, N_BARS, seed=11, martingale=False)
  for name, table in markets[False].items():
    assert table.columns == list(tables.BAR_COLUMNS) and table.height == N_BARS
    assert table.equals(again[name])
    assert np.all(np.diff(table["time"].to_numpy()) == 3_600_000)
    assert (table["low"] <= table["vwap"]).all() and (table["vwap"] <= table["high"]).all()
  other = synthetic.synthetic_market("crypto", 4, N_BARS, seed=12)
  assert not other["SYN0"].equals(markets[False]["SYN0"])


def test_time_of_day_and_day_of_week_volume_seasonality(markets):
  table = markets[True]["SYN0"]
  t = table["time"].to_numpy()
  log_v = np.log(table["volume"].to_numpy())
  by_hour = np.array([log_v[(t // 3_600_000) % 24 == h].mean() for h in range(24)])
  assert by_hour.max() - by_hour.min() > 0.5 and 12 <= by_hour.argmax() <= 18
  weekend = (t // tables.MS_PER_DAY + 3) % 7 >= 5
  assert log_v[~weekend].mean() - log_v[weekend].mean() > 0.2


def test_heavy_tails_stochastic_volatility_and_volume_link(markets):
  for table in markets[True].values():
    r = _returns(table)
    z = (r - r.mean()) / r.std()
    assert np.mean(z**4) - 3.0 > 1.0  # heavy tails
    assert _lag1(np.abs(r)) > 0.1  # volatility clustering
    assert np.corrcoef(np.abs(r), np.log(table["volume"].to_numpy()[1:]))[0, 1] > 0.2


def test_martingale_switch_removes_return_and_vwap_predictability(markets):
  threshold = 4.0 / np.sqrt(N_BARS)  # ~4 standard errors of a correlation
  for table in markets[True].values():
    r = _returns(table)  # r[k]: return of bar k+1
    close, vwap = table["close"].to_numpy(), table["vwap"].to_numpy()
    next_fill = vwap[1:] / close[:-1] - 1.0  # next_fill[k]: bar k+1's fill over bar k's close
    own_fill = vwap[:-1] / close[:-1] - 1.0  # own_fill[k]: bar k's fill over its close
    assert abs(_lag1(r)) < threshold
    assert abs(np.corrcoef(r[:-1], next_fill[1:])[0, 1]) < threshold
    assert abs(np.corrcoef(own_fill, next_fill)[0, 1]) < threshold
    assert abs(next_fill.mean()) < 4 * next_fill.std() / np.sqrt(next_fill.size)
  # Without the switch the returns mean-revert: the test above can fail.
  assert np.mean([_lag1(_returns(t)) for t in markets[False].values()]) < -2 * threshold


def test_equity_regime_calendars():
  days = synthetic.synthetic_market("equity", 2, 300, seed=0, interval="1d")["SYN1"]
  weekday = days["time"].cast(pl.Datetime("ms")).dt.weekday()
  assert weekday.max() <= 5 and days.height == 300
  bars = synthetic.synthetic_market("equity", 1, 13 * 20, seed=0, interval="30m")["SYN0"]
  when = bars["time"].cast(pl.Datetime("ms"))
  minutes = when.dt.hour().cast(pl.Int32) * 60 + when.dt.minute().cast(pl.Int32)
  assert minutes.min() == 14 * 60 + 30 and minutes.max() == 20 * 60 + 30
  assert when.dt.weekday().max() <= 5
  log_v = np.log(bars["volume"].to_numpy()).reshape(20, 13)
  assert log_v[:, [0, -1]].mean() > log_v[:, 5:8].mean() + 0.3  # U-shaped session volume


def test_fast_at_full_size():
  start = time.perf_counter()
  synthetic.synthetic_market("crypto", 7, 38_000, seed=0, martingale=True)
  assert time.perf_counter() - start < 5.0
