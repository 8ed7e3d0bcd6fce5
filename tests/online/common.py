"""Shared constants and helpers of the online tests: bar rows of one synthetic asset, orders."""

import numpy as np

from lemjax import online
from lemjax import scenarios

HOUR = 3_600_000
N_BARS = 420
T0S = np.array([200, 260, 330, 390])  # window origins (rows of bar t0)
R_MIN = np.array([0.0, 0.05, 0.1, 0.0], np.float32)
R_MAX = np.array([1.0, 0.5, 0.3, 0.6], np.float32)


def history(run, t0):
  return {c: v[:t0] for c, v in run["cols"].items()}


def bar(run, row):
  return {c: v[row] for c, v in run["cols"].items()}


def order(sc, head, n, r_min=0.0, r_max=1.0, size=7.0):
  side, bench, target = scenarios.SCENARIOS[sc]
  fixed = head == n
  return online.Order(
    side,
    size,
    target,
    bench,
    min_bars=None if fixed else head + 1,
    r_min=float(r_min),
    r_max=float(r_max),
    fixed_duration=fixed,
  )
