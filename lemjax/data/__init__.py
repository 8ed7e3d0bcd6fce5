"""Market data: kline and daily-bar loaders, the synthetic market, causal features and windows."""

from lemjax.data.data_report import DataReport
from lemjax.data.datasets import find_files
from lemjax.data.datasets import make_datasets
from lemjax.data.features import FEATURE_NAMES
from lemjax.data.features import N_FEATURES
from lemjax.data.synthetic import synthetic_market
from lemjax.data.windows import BarStore
from lemjax.data.windows import Sampler
from lemjax.data.windows import WindowDataset
from lemjax.data.windows import eval_indices

__all__ = [
  "BarStore",
  "DataReport",
  "FEATURE_NAMES",
  "N_FEATURES",
  "Sampler",
  "WindowDataset",
  "eval_indices",
  "find_files",
  "make_datasets",
  "synthetic_market",
]
