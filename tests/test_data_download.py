"""Offline tests of the kline downloader against a local archive in the public layout (file://)."""

import hashlib
import time
import urllib.error
import zipfile

import numpy as np
import pytest

from lemjax.config import DataConfig
from lemjax.data import download
from lemjax.data import make_datasets

HOUR = 3_600_000
MONTHS = {"2024-01": 1_704_067_200_000, "2024-02": 1_706_745_600_000}


def _month_csv(start_ms, n_bars, seed):
  """Headerless 12-column klines, as the archive ships them."""
  rng = np.random.default_rng(seed)
  close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n_bars)))
  lines = []
  for i, c in enumerate(close):
    t, v = start_ms + i * HOUR, rng.uniform(1, 5)
    lines.append(
      f"{t},{c},{c * 1.01},{c * 0.99},{c},{v},{t + HOUR - 1},{c * v},10,{v / 2},{c * v / 2},0"
    )
  return "\n".join(lines) + "\n"


@pytest.fixture
def archive(tmp_path):
  """base/SYMBOL/1h/SYMBOL-1h-YYYY-MM.zip (+ .CHECKSUM) for two symbols and two months."""
  base = tmp_path / "archive"
  for s, symbol in enumerate(("BTCUSDT", "ETHUSDT")):
    folder = base / symbol / "1h"
    folder.mkdir(parents=True)
    for month, start in MONTHS.items():
      name = download.archive_name(symbol, "1h", month)
      n_bars = 744 if month == "2024-01" else 696
      with zipfile.ZipFile(folder / name, "w") as z:
        z.writestr(name.replace(".zip", ".csv"), _month_csv(start, n_bars, s))
      digest = hashlib.sha256((folder / name).read_bytes()).hexdigest()
      (folder / (name + ".CHECKSUM")).write_text(f"{digest}  {name}\n")
  return base


def test_downloads_then_verifies_then_repairs(archive, tmp_path):
  out, url = tmp_path / "data" / "binance", archive.as_uri()
  symbols, months = ("BTCUSDT", "ETHUSDT"), list(MONTHS)
  assert download.download(symbols, "1h", months, out, url)["downloaded"] == 4
  assert download.download(symbols, "1h", months, out, url)["verified"] == 4
  (out / "BTCUSDT-1h-2024-01.zip").write_bytes(b"truncated")
  counts = download.download(symbols, "1h", months + ["2024-03"], out, url)
  assert counts == {"downloaded": 1, "verified": 3, "kept": 0, "missing": 2}
  # What was downloaded loads as one gap-free table per symbol.
  config = DataConfig(
    source="files",
    path=str(out),
    lookback=24,
    n_ahead=6,
    train_start="",
    train_end="2024-01-31",
    val_start="2024-02-01",
    val_end="2024-02-15",
    test_start="2024-02-16",
    test_end="",
  )
  train, _, _, report = make_datasets(config)
  assert report.assets == ["BTCUSDT", "ETHUSDT"] and report.bars["BTCUSDT"] == 744 + 696
  assert report.total("missing_bars_inserted") == 0 and train.num_windows > 0


def test_published_checksum_mismatch_raises(archive, tmp_path):
  checksum = archive / "BTCUSDT" / "1h" / "BTCUSDT-1h-2024-01.zip.CHECKSUM"
  checksum.write_text("0" * 64 + "  BTCUSDT-1h-2024-01.zip\n")
  with pytest.raises(ValueError, match="checksum mismatch"):
    download.download(["BTCUSDT"], "1h", ["2024-01"], tmp_path / "out", archive.as_uri())


def test_offline_fails_at_once_with_a_clear_message(tmp_path):
  def offline(url, timeout):
    raise urllib.error.URLError("Name or service not known")

  start = time.perf_counter()
  with pytest.raises(ConnectionError, match="needs internet"):
    download.download(["BTCUSDT"], "1h", ["2024-01"], tmp_path, fetch=offline)
  assert time.perf_counter() - start < 1.0


def test_command_line_uses_module_defaults_and_arguments(archive, tmp_path):
  out = tmp_path / "cli"
  rc = download.main(
    [
      "--symbols",
      "ethusdt",
      "--months",
      "2024-01..2024-02",
      "--out",
      str(out),
      "--base-url",
      archive.as_uri(),
    ]
  )
  assert rc == 0 and sorted(p.name for p in out.glob("*.zip")) == [
    "ETHUSDT-1h-2024-01.zip",
    "ETHUSDT-1h-2024-02.zip",
  ]
  assert download.month_range("2024-11", "2025-02") == ["2024-11", "2024-12", "2025-01", "2025-02"]
  assert download.DEFAULT_INTERVAL == "1h" and len(download.DEFAULT_SYMBOLS) == 7


def test_config_file_gives_symbols_interval_and_months(tmp_path):
  config = tmp_path / "exp.py"
  config.write_text(
    "import ml_collections\n"
    "def get_config():\n"
    "  c = ml_collections.ConfigDict()\n"
    "  c.data = dict(symbols=('BTCUSDT',), interval='15m', train_start='2024-12-30',\n"
    "                test_end='2025-02-10')\n"
    "  return c\n"
  )
  assert download._config_defaults(str(config)) == {
    "symbols": ("BTCUSDT",),
    "interval": "15m",
    "months": "2024-12..2025-02",
  }
  config.write_text(config.read_text().replace("interval='15m'", "interval='1d'"))
  with pytest.raises(ValueError, match="daily"):
    download._config_defaults(str(config))


def test_command_line_errors_are_one_line(tmp_path, capsys):
  assert download.main(["--config", str(tmp_path / "nope.py")]) == 1
  assert capsys.readouterr().err == f"error: experiment file {tmp_path / 'nope.py'} not found\n"
  assert download.main(["--months", "2024-13..2025-01", "--out", str(tmp_path)]) == 1
  assert "error: month '2024-13' is not YYYY-MM" in capsys.readouterr().err
  with pytest.raises(ValueError, match="2024-13"):
    download.main(["--months", "2024-13", "--traceback"])
