"""Downloads Binance monthly spot kline archives (resumable, checksum-verified): `make data`.

.venv/bin/python -m lemjax.data.download [--config experiments/crypto_intraday.py]
    [--symbols BTCUSDT,ETHUSDT] [--interval 1h] [--months 2022-01..2025-12] [--out data/binance]
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import re
import sys
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from lemjax import config as config_lib

BASE_URL = "https://data.binance.vision/data/spot/monthly/klines"
DEFAULT_SYMBOLS = ("BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT", "ADAUSDT", "DOGEUSDT")
DEFAULT_INTERVAL = "1h"
DEFAULT_FIRST_MONTH = "2022-01"
DEFAULT_OUT = "data/binance"
TIMEOUT_S = 10.0

Fetch = Callable[[str, float], bytes]


class MissingFile(Exception):
  """The archive has no such file (HTTP 404 or missing local file)."""


def fetch_url(url: str, timeout: float) -> bytes:
  """Bytes at `url` (http(s) or file://); MissingFile when absent, OSError when unreachable."""
  try:
    with urllib.request.urlopen(url, timeout=timeout) as response:
      return response.read()
  except urllib.error.HTTPError as err:
    if err.code == 404:
      raise MissingFile(url) from err
    raise
  except urllib.error.URLError as err:
    if isinstance(err.reason, FileNotFoundError):
      raise MissingFile(url) from err
    raise


def month_range(first: str, last: str) -> list[str]:
  """["2024-11", "2024-12", "2025-01"] from "2024-11" and "2025-01" (inclusive).

  Raises:
    ValueError when `first` or `last` is not a YYYY-MM month.
  """
  for month in (first, last):
    if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])(-\d{2})?", month):
      raise ValueError(f"month {month!r} is not YYYY-MM (e.g. --months 2022-01..2025-06)")
  y0, m0 = map(int, first.split("-")[:2])
  y1, m1 = map(int, last.split("-")[:2])
  months = []
  while (y0, m0) <= (y1, m1):
    months.append(f"{y0:04d}-{m0:02d}")
    y0, m0 = (y0 + 1, 1) if m0 == 12 else (y0, m0 + 1)
  return months


def last_complete_month(today: datetime.date | None = None) -> str:
  """The month before the current one (the newest monthly archive published)."""
  today = today or datetime.date.today()
  first = today.replace(day=1) - datetime.timedelta(days=1)
  return f"{first.year:04d}-{first.month:02d}"


def archive_name(symbol: str, interval: str, month: str) -> str:
  return f"{symbol}-{interval}-{month}.zip"


def _sha256(data: bytes) -> str:
  return hashlib.sha256(data).hexdigest()


def _readable_zip(path: Path) -> bool:
  try:
    with zipfile.ZipFile(path) as archive:
      return archive.testzip() is None
  except zipfile.BadZipFile:
    return False


def _expected_sha(fetch: Fetch, url: str) -> str | None:
  """The published SHA-256 of `url` (its .CHECKSUM file: "<hex>  <name>"), None if not published."""
  try:
    return fetch(url + ".CHECKSUM", TIMEOUT_S).decode().split()[0].lower()
  except MissingFile:
    return None


def download_one(
  fetch: Fetch, base_url: str, symbol: str, interval: str, month: str, out: Path
) -> str:
  """Fetches one monthly archive unless a verified copy exists; returns what happened.

  Returns:
    "verified" (existing file matches its checksum), "kept" (existing readable zip, no checksum
    published),
    "downloaded", or "missing" (not in the archive).
  Raises:
    ValueError when a fresh download does not match its published checksum.
  """
  name = archive_name(symbol, interval, month)
  url = f"{base_url}/{symbol}/{interval}/{name}"
  target = out / name
  expected = _expected_sha(fetch, url)
  if target.exists():
    if expected is None and _readable_zip(target):
      return "kept"
    if expected is not None and _sha256(target.read_bytes()) == expected:
      return "verified"
  try:
    data = fetch(url, TIMEOUT_S)
  except MissingFile:
    return "missing"
  if expected is not None and _sha256(data) != expected:
    raise ValueError(f"{url}: checksum mismatch (got {_sha256(data)}, published {expected})")
  partial = target.with_name(target.name + ".part")
  partial.write_bytes(data)
  partial.replace(target)  # atomic: an interrupted run never leaves a truncated .zip behind
  return "downloaded"


def download(
  symbols: Sequence[str],
  interval: str,
  months: Sequence[str],
  out: str | Path,
  base_url: str = BASE_URL,
  fetch: Fetch = fetch_url,
) -> dict[str, int]:
  """Downloads every (symbol, month) archive into `out`, resuming and verifying existing files.

  Args:
    symbols: e.g. ("BTCUSDT", "ETHUSDT").
    interval: kline bar length, e.g. "1h".
    months: "YYYY-MM" strings.
    out: target folder (created).
    base_url: archive root (https or file://), e.g. BASE_URL.
    fetch: (url, timeout_s) -> bytes; raises MissingFile for absent files.
  Returns:
    Counts of "downloaded", "verified", "kept" and "missing" files.
  Raises:
    ConnectionError at once (short timeout) when the archive cannot be reached.
  """
  out = Path(out)
  out.mkdir(parents=True, exist_ok=True)
  probe = f"{base_url}/{symbols[0]}/{interval}/{archive_name(symbols[0], interval, months[0])}"
  try:
    _expected_sha(fetch, probe)
  except (OSError, TimeoutError) as err:
    raise ConnectionError(
      f"cannot reach the Binance archive at {base_url} ({err}); `make data` "
      "needs internet access (or point --base-url at a local copy)"
    ) from err
  counts = dict.fromkeys(("downloaded", "verified", "kept", "missing"), 0)
  jobs = [(s, m) for s in symbols for m in months]
  with tqdm(jobs, desc=f"klines {interval}", unit="file") as bar:
    for symbol, month in bar:
      bar.set_postfix_str(f"{symbol} {month}")
      counts[download_one(fetch, base_url, symbol, interval, month, out)] += 1
  return counts


def _config_defaults(path: str) -> dict:
  """symbols / interval / months from an experiment config file's `data` section.

  Raises:
    FileNotFoundError when there is no such file; ValueError when it uses daily bars.
  """
  data = config_lib.load_experiment(path).data
  if data.get("kind", "auto") == "daily" or data.get("interval", "") == "1d":
    raise ValueError(f"{path} uses daily equity bars; `make data` downloads Binance klines only")
  get = lambda key, default: data.get(key, default) or default
  first = (get("train_start", DEFAULT_FIRST_MONTH))[:7]
  last = (get("test_end", "") or last_complete_month())[:7]
  return {
    "symbols": tuple(get("symbols", DEFAULT_SYMBOLS)),
    "interval": get("interval", DEFAULT_INTERVAL),
    "months": f"{first}..{last}",
  }


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description="Download Binance monthly spot kline archives.")
  parser.add_argument("--config", help="experiment config file whose `data` section gives defaults")
  parser.add_argument("--symbols", help="comma-separated, e.g. BTCUSDT,ETHUSDT")
  parser.add_argument("--interval", help="kline bar length, e.g. 1h")
  parser.add_argument("--months", help="YYYY-MM..YYYY-MM (inclusive)")
  parser.add_argument("--out", default=DEFAULT_OUT, help="target folder")
  parser.add_argument("--base-url", default=BASE_URL, help="archive root (https or file://)")
  parser.add_argument(
    "--traceback",
    action="store_true",
    help="on an error, show the Python traceback, not just the `error:` line",
  )
  args = parser.parse_args(argv)
  try:
    counts = _run(args)
  except (ConnectionError, FileNotFoundError, ValueError) as err:
    if args.traceback:
      raise
    print(f"error: {err}", file=sys.stderr)
    return 1
  print(f"{args.out}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
  return 0


def _run(args: argparse.Namespace) -> dict:
  """The download the command line asks for, with the experiment file's data as defaults."""
  defaults = {
    "symbols": DEFAULT_SYMBOLS,
    "interval": DEFAULT_INTERVAL,
    "months": f"{DEFAULT_FIRST_MONTH}..{last_complete_month()}",
  }
  if args.config:
    defaults.update(_config_defaults(args.config))
  symbols = args.symbols.upper().split(",") if args.symbols else list(defaults["symbols"])
  first, _, last = (args.months or defaults["months"]).partition("..")
  months = month_range(first, last or first)
  return download(symbols, args.interval or defaults["interval"], months, args.out, args.base_url)


if __name__ == "__main__":
  sys.exit(main())
