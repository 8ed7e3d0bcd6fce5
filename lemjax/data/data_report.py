"""The data report: where the bars came from and every correction, skip and split count."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

REPORT_FILE = "data_report.json"


@dataclasses.dataclass
class DataReport:
  """Everything the data layer did to the source data, written next to a run's outputs."""

  source: str  # "SYNTHETIC", or the folder the files were read from
  kind: str  # "binance", "daily", "synthetic-crypto" or "synthetic-equity"
  interval: str  # bar length of the windows (after resampling)
  files: list[str] = dataclasses.field(default_factory=list)
  assets: list[str] = dataclasses.field(default_factory=list)
  bars: dict[str, int] = dataclasses.field(default_factory=dict)  # per asset, after corrections
  first_bar: dict[str, str] = dataclasses.field(default_factory=dict)  # per asset, ISO UTC
  last_bar: dict[str, str] = dataclasses.field(default_factory=dict)
  corrections: dict[str, dict[str, int]] = dataclasses.field(
    default_factory=dict
  )  # asset -> counts
  splits: dict[str, dict[str, Any]] = dataclasses.field(
    default_factory=dict
  )  # name -> range, counts
  notes: list[str] = dataclasses.field(default_factory=list)
  config: dict[str, Any] = dataclasses.field(default_factory=dict)

  @property
  def synthetic(self) -> bool:
    return self.source == "SYNTHETIC"

  def total(self, correction: str) -> int:
    """Sum of one correction count over assets."""
    return sum(c.get(correction, 0) for c in self.corrections.values())

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self), indent=2, default=str)

  def write(self, path: str | Path) -> Path:
    """Writes the JSON report to `path` (a folder gets `data_report.json`); returns the file."""
    path = Path(path)
    if path.is_dir() or not path.suffix:
      path = path / REPORT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(self.to_json())
    return path

  def summary(self) -> str:
    """A few human-readable lines (for logs)."""
    lines = [
      f"data source: {self.source} ({self.kind}, {self.interval} bars, "
      f"{len(self.assets)} assets, {sum(self.bars.values())} bars)"
    ]
    totals: dict[str, int] = {}
    for counts in self.corrections.values():
      for key, value in counts.items():
        totals[key] = totals.get(key, 0) + value
    lines.append("corrections: " + ", ".join(f"{k}={v}" for k, v in totals.items() if v))
    for name, split in self.splits.items():
      lines.append(
        f"{name}: {split.get('start')} .. {split.get('end')}: "
        f"{split.get('kept', 0)} windows ({split.get('candidates', 0)} origins)"
      )
    return "\n".join(lines + self.notes)
