"""Tests of the kline and daily-bar loaders and of resampling, on files written in tmp_path."""

import gzip
import zipfile

import numpy as np
import polars as pl
import pytest

from lemjax.config import DataConfig
from lemjax.data import binance
from lemjax.data import daily
from lemjax.data import make_datasets
from lemjax.data import resample
from lemjax.data import tables

HOUR = 3_600_000
START = 1_704_067_200_000  # 2024-01-01 00:00 UTC
HEADER = ",".join(binance.KLINE_COLUMNS[:11])


def kline_rows(n, start=START, step=HOUR, seed=0):
  """[n, 12] kline values: open_time, OHLC, volume, close_time, quote_volume, count, ..."""
  rng = np.random.default_rng(seed)
  close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
  open_ = np.concatenate([[100.0], close[:-1]])
  volume = rng.uniform(1, 10, n).round(5)
  vwap = (open_ + close) / 2
  t = start + step * np.arange(n)
  return np.stack(
    [
      t,
      open_,
      np.maximum(open_, close) * 1.01,
      np.minimum(open_, close) * 0.99,
      close,
      volume,
      t + step - 1,
      (vwap * volume).round(6),
      rng.integers(1, 100, n),
      volume / 2,
      vwap * volume / 2,
      np.zeros(n),
    ],
    axis=1,
  )


def to_text(rows, header=True, width=11, microseconds=False):
  lines = [HEADER] if header else []
  for r in rows:
    vals = [int(r[0]) * (1000 if microseconds else 1)] + [repr(float(v)) for v in r[1:6]]
    vals += [int(r[6]) * (1000 if microseconds else 1)] + [repr(float(v)) for v in r[7:width]]
    lines.append(",".join(str(v) for v in vals))
  return "\n".join(lines) + "\n"


def write(path, text):
  """Writes `text` as .csv, .csv.gz or an archive-style .zip (one csv inside)."""
  if path.name.endswith(".gz"):
    path.write_bytes(gzip.compress(text.encode()))
  elif path.name.endswith(".zip"):
    with zipfile.ZipFile(path, "w") as archive:
      archive.writestr(path.name[:-4] + ".csv", text)
  else:
    path.write_text(text)
  return path


def test_three_layouts_and_zip_give_one_table(tmp_path):
  rows = kline_rows(30)
  files = [
    write(tmp_path / "BTCUSDT_1h.csv.gz", to_text(rows[:10], header=True, width=11)),
    write(tmp_path / "BTCUSDT-1h-a.csv", to_text(rows[10:20], header=False, width=12)),
    write(
      tmp_path / "BTCUSDT-1h-2024-01.zip",
      to_text(rows[20:], header=False, width=12, microseconds=True),
    ),
  ]
  table, counts = binance.load_symbol(files, HOUR)
  assert table.columns == list(tables.BAR_COLUMNS)
  np.testing.assert_array_equal(table["time"].to_numpy(), rows[:, 0].astype(np.int64))
  np.testing.assert_allclose(table["vwap"].to_numpy(), rows[:, 7] / rows[:, 5], rtol=1e-12)
  np.testing.assert_allclose(table["close"].to_numpy(), rows[:, 4])
  assert counts["rows_read"] == 30 and counts["missing_bars_inserted"] == 0


def test_overlapping_files_are_deduplicated_and_counted(tmp_path):
  rows = kline_rows(20)
  files = [
    write(tmp_path / "a.csv", to_text(rows[:12])),
    write(tmp_path / "b.csv", to_text(rows[8:])),
  ]
  table, counts = binance.load_symbol(files, HOUR)
  assert table.height == 20 and counts["duplicates_removed"] == 4
  assert counts["duplicate_conflicts"] == 0


def test_missing_and_zero_volume_bars_keep_their_place(tmp_path):
  rows = kline_rows(40)
  rows[15, 5] = rows[15, 7] = 0.0  # a zero-volume bar
  kept = np.delete(rows, [20, 21], axis=0)  # two missing hours
  table, counts = binance.load_symbol([write(tmp_path / "x.csv", to_text(kept))], HOUR)
  assert counts["missing_bars_inserted"] == 2 and counts["zero_volume_bars"] == 1
  np.testing.assert_array_equal(table["time"].to_numpy(), rows[:, 0].astype(np.int64))
  volume, close = table["volume"].to_numpy(), table["close"].to_numpy()
  np.testing.assert_array_equal(volume[[15, 20, 21]], 0.0)
  np.testing.assert_array_equal(table["inserted"].to_numpy()[[19, 20, 21, 22]], [0, 1, 1, 0])
  # Inserted bars carry the last close; later bars are not shifted.
  np.testing.assert_allclose(close[[20, 21]], rows[19, 4])
  np.testing.assert_allclose(table["vwap"].to_numpy()[[15, 20]], [rows[15, 4], rows[19, 4]])
  np.testing.assert_allclose(close[22:], rows[22:, 4])


def _bad_kline_text(case):
  rows = kline_rows(8)
  text = to_text(rows).splitlines()
  if case == "misnamed_column":
    text[0] = text[0].replace("quote_volume", "quote_vol")
  elif case == "non_numeric":
    parts = text[4].split(",")
    parts[4] = "12x"
    text[4] = ",".join(parts)
  elif case == "unsorted":
    text[4], text[5] = text[5], text[4]
  elif case == "duplicated":
    text[5] = text[4]
  elif case == "negative_price":
    text[4] = text[4].replace(text[4].split(",")[3], "-1.0", 1)
  elif case == "negative_volume":
    parts = text[4].split(",")
    parts[5] = "-2.5"
    text[4] = ",".join(parts)
  elif case == "mixed_bar_length":
    rows = np.concatenate([kline_rows(6), kline_rows(3, start=START + 6 * HOUR, step=HOUR // 4)])
    return to_text(rows), "open_time", "line 9"  # first 15-minute step
  elif case == "empty":
    return "", None, "empty"
  elif case == "header_only":
    return HEADER + "\n", None, "empty"
  expect = {
    "misnamed_column": ("quote_volume", "missing column"),
    "non_numeric": ("close", "line 5"),
    "unsorted": ("open_time", "line 6"),
    "duplicated": ("open_time", "line 6"),
    "negative_price": ("low", "line 5"),
    "negative_volume": ("volume", "line 5"),
  }[case]
  return "\n".join(text) + "\n", *expect


@pytest.mark.parametrize(
  "case",
  [
    "misnamed_column",
    "non_numeric",
    "unsorted",
    "duplicated",
    "negative_price",
    "negative_volume",
    "mixed_bar_length",
    "empty",
    "header_only",
  ],
)
def test_bad_kline_files_raise_naming_file_column_and_line(tmp_path, case):
  text, column, where = _bad_kline_text(case)
  path = write(tmp_path / f"BAD_{case}.csv", text)
  with pytest.raises(ValueError) as err:
    binance.load_symbol([path], HOUR)
  message = str(err.value)
  assert str(path) in message and where in message
  if column:
    assert repr(column) in message or column in message


def test_headerless_file_with_wrong_width_raises(tmp_path):
  path = write(tmp_path / "x.csv", to_text(kline_rows(4), header=False, width=9))
  with pytest.raises(ValueError, match="9 columns"):
    binance.load_symbol([path], HOUR)


def test_bar_length_other_than_configured_raises(tmp_path):
  path = write(tmp_path / "x.csv", to_text(kline_rows(10, step=4 * HOUR)))
  with pytest.raises(ValueError, match="configured bar length"):
    binance.load_symbol([path], HOUR)


KAGGLE = """Date,Open,High,Low,Close,Volume,Name
2017-01-03,10.0,11.0,9.0,10.5,1000,ABC
2017-01-04,,11.5,,11.0,2000,ABC
2017-01-05,11.0,12.0,10.0,,3000,ABC
2017-01-06,11.0,12.0,0.0,11.5,4000,ABC
2017-01-09,11.5,12.5,11.0,12.0,,ABC
2017-01-10,12.0,12.0,12.0,12.0,0,ABC
"""
YAHOO = """Date,Open,High,Low,Close,Adj Close,Volume
2017-01-03,10.0,11.0,9.0,10.5,10.1,1000
2017-01-04,null,11.5,10.0,11.0,10.6,2000
2017-01-05,11.0,null,10.0,11.2,10.8,3000
"""


def test_daily_kaggle_layout_fills_and_drops_with_counts(tmp_path):
  symbol, table, counts = daily.load_file(write(tmp_path / "abc.csv.gz", KAGGLE))
  assert symbol == "ABC" and table.height == 4
  assert counts == {
    "rows_read": 6,
    "dropped_missing_close": 1,
    "dropped_missing_volume": 1,
    "filled_open": 1,
    "filled_high": 0,
    "filled_low": 2,
    "zero_volume_bars": 1,
    "zero_prices_as_missing": 1,
  }
  row = table.row(1, named=True)  # 2017-01-04: open and low filled from close
  assert row["open"] == row["low"] == 11.0
  typical = (table["high"] + table["low"] + table["close"]).to_numpy() / 3
  volume = np.array([1000, 2000, 4000, 0.0])
  np.testing.assert_allclose(table["notional"].to_numpy(), typical * volume)
  np.testing.assert_allclose(table["vwap"].to_numpy()[:3], typical[:3])
  assert table["time"][0] == tables.date_ms("2017-01-03")


def test_daily_yahoo_layout(tmp_path):
  symbol, table, counts = daily.load_file(write(tmp_path / "xyz.csv", YAHOO))
  assert symbol == "XYZ" and table.height == 3
  assert counts["filled_open"] == 1 and counts["filled_high"] == 1
  np.testing.assert_allclose(table["close"].to_numpy(), [10.5, 11.0, 11.2])  # not Adj Close


@pytest.mark.parametrize(
  "case,needle",
  [
    ("missing_column", "missing column 'volume'"),
    ("non_numeric", "line 3"),
    ("unsorted", "line 4"),
    ("duplicated", "line 3"),
    ("negative", "line 3"),
    ("intraday", "line 2"),
    ("empty", "empty"),
    ("weekly", "non-daily"),
  ],
)
def test_bad_daily_files_raise(tmp_path, case, needle):
  lines = YAHOO.splitlines()
  if case == "missing_column":
    lines[0] = lines[0].replace("Volume", "Vol")
  elif case == "non_numeric":
    lines[2] = lines[2].replace("11.5", "abc")
  elif case == "unsorted":
    lines[2], lines[3] = lines[3], lines[2]
  elif case == "duplicated":
    lines[2] = lines[1]
  elif case == "negative":
    lines[2] = lines[2].replace(",2000", ",-2000")
  elif case == "intraday":
    lines[1] = lines[1].replace("2017-01-03", "2017-01-03 09:30:00")
  elif case == "empty":
    lines = []
  elif case == "weekly":
    lines = lines[:1] + [f"2017-{m:02d}-02,1,1,1,1,1,1" for m in range(1, 6)]
  path = write(tmp_path / f"{case}.csv", "\n".join(lines) + "\n")
  with pytest.raises(ValueError) as err:
    daily.load_file(path)
  assert str(path) in str(err.value) and needle in str(err.value)


def test_align_calendar_inserts_missing_days():
  days = [tables.date_ms(d) for d in ("2017-01-03", "2017-01-04", "2017-01-05")]
  frame = lambda t: tables.with_vwap(
    pl.DataFrame(
      {
        "time": t,
        "open": [1.0] * len(t),
        "high": [2.0] * len(t),
        "low": [0.5] * len(t),
        "close": np.arange(1.0, len(t) + 1),
        "volume": [5.0] * len(t),
        "notional": [5.0] * len(t),
      }
    )
  )
  aligned, inserted = daily.align_calendar({"A": frame(days), "B": frame([days[0], days[2]])})
  assert inserted == {"A": 0, "B": 1}
  b = aligned["B"]
  assert b["time"].to_list() == days and b["volume"].to_list() == [5.0, 0.0, 5.0]
  assert b["close"].to_list() == [1.0, 1.0, 2.0] and b["inserted"].to_list() == [False, True, False]


def test_resample_sums_volume_and_notional(tmp_path):
  rows = kline_rows(4 * 6 + 2, start=START - 2 * (HOUR // 4), step=HOUR // 4)  # 2 bars before 00:00
  table, _ = binance.load_symbol([write(tmp_path / "x.csv", to_text(rows))], HOUR // 4)
  hourly, dropped = resample.resample(table, HOUR // 4, HOUR)
  assert hourly.height == 6 and dropped == 2
  first = rows[2:6]
  np.testing.assert_allclose(hourly["volume"][0], first[:, 5].sum())
  np.testing.assert_allclose(hourly["notional"][0], first[:, 7].sum())
  np.testing.assert_allclose(hourly["vwap"][0], first[:, 7].sum() / first[:, 5].sum())
  assert hourly["open"][0] == first[0, 1] and hourly["close"][0] == first[-1, 4]
  assert hourly["high"][0] == first[:, 2].max() and hourly["time"][0] == START
  with pytest.raises(ValueError, match="not a multiple"):
    resample.resample(table, HOUR // 4, HOUR // 3)


def _kline_folder(tmp_path, symbols=("BTCUSDT", "ETHUSDT"), n=400):
  for i, symbol in enumerate(symbols):
    write(tmp_path / f"{symbol}_1h.csv.gz", to_text(kline_rows(n, seed=i)))
  write(tmp_path / "BTCUSDT_15m.csv.gz", to_text(kline_rows(8, step=HOUR // 4)))
  return tmp_path


def _config(path, **kw):
  fields = dict(
    path=str(path),
    lookback=24,
    n_ahead=6,
    volume_window="12h",
    train_start="2024-01-01",
    train_end="2024-01-10",
    val_start="2024-01-11",
    val_end="2024-01-13",
    test_start="2024-01-14",
    test_end="",
  )
  return DataConfig(**(fields | kw))


def test_make_datasets_detects_klines_and_restricts_symbols(tmp_path):
  train, val, test, report = make_datasets(_config(_kline_folder(tmp_path)))
  assert report.kind == "binance" and report.source == str(tmp_path.resolve())
  assert report.assets == ["BTCUSDT", "ETHUSDT"] and len(report.files) == 2
  assert any("other bar lengths" in note for note in report.notes)
  assert train.num_windows > 0 and val.num_windows > 0 and test.num_windows > 0
  *_, only = make_datasets(_config(tmp_path, symbols=("ethusdt",)))
  assert only.assets == ["ETHUSDT"]
  with pytest.raises(ValueError, match="not found"):
    make_datasets(_config(tmp_path, symbols=("XRPUSDT",)))
  *_, fourh = make_datasets(_config(tmp_path, resample_to="4h", lookback=4, n_ahead=2))
  assert fourh.interval == "4h" and fourh.bars["BTCUSDT"] == 100


def test_make_datasets_detects_daily_bars(tmp_path):
  write(tmp_path / "abc.csv", KAGGLE)
  config = DataConfig(
    path=str(tmp_path),
    interval="1d",
    lookback=1,
    n_ahead=1,
    volume_window="1d",
    train_start="",
    train_end="2017-01-05",
    val_start="2017-01-06",
    val_end="2017-01-06",
    test_start="2017-01-07",
    test_end="",
  )
  train, _, _, report = make_datasets(config)
  assert report.kind == "daily" and report.interval == "1d"
  assert report.corrections["ABC"]["filled_low"] == 2


def test_make_datasets_falls_back_to_synthetic_loudly(tmp_path):
  config = _config(tmp_path / "nothing", synthetic_bars=500, synthetic_assets=2)
  train, val, test, report = make_datasets(config)
  assert report.source == "SYNTHETIC" and train.source == "SYNTHETIC"
  assert "SYNTHETIC" in report.summary() and train.num_windows > 0
  with pytest.raises(ValueError, match="no .csv"):
    make_datasets(config, source="files")
  assert (tmp_path / "r" / "data_report.json").exists() is False
  written = report.write(tmp_path / "r")
  assert '"source": "SYNTHETIC"' in written.read_text()


def test_overlapping_split_dates_raise(tmp_path):
  with pytest.raises(ValueError, match="overlap"):
    make_datasets(_config(_kline_folder(tmp_path), val_start="2024-01-10"))
