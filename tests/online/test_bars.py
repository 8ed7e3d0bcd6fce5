"""Tests for lemjax/online/bars.py: a bad bar or history raises, naming the field, and changes nothing."""

import numpy as np
import pytest

from lemjax import online

from .common import HOUR
from .common import T0S
from .common import bar
from .common import history
from .common import order


@pytest.mark.parametrize(
  "change, match",
  [
    (dict(dt=-HOUR), "'time'.*not after"),
    (dict(dt=0), "'time'.*not after"),
    (dict(dt=HOUR // 2), "different length"),
    (dict(dt=2 * HOUR), "skips bars"),
    (dict(volume=float("nan")), "'volume'"),
    (dict(volume=-1.0), "'volume'"),
    (dict(close=float("nan")), "'close'"),
    (dict(vwap=-3.0), "'vwap'"),
    (dict(length_ms=HOUR // 4), "length"),
  ],
)
def test_bad_bar_raises_and_leaves_the_carry(run, policy, change, match):
  t0 = T0S[2]
  exe = online.Executor.start(policy, order(2, 1, policy.n_ahead), history(run, t0))
  before = online.carry_to_dict(exe.carry)
  good = bar(run, t0)
  bad = dict(good, **{k: v for k, v in change.items() if k != "dt"})
  if "dt" in change:  # open time relative to the previous bar's
    bad["time"] = run["cols"]["time"][t0 - 1] + change["dt"]
  with pytest.raises(ValueError, match=match):
    exe.on_bar(bad)
  after = online.carry_to_dict(exe.carry)
  assert all(np.array_equal(before[k], after[k]) for k in before)
  out = exe.on_bar(good)  # the corrected bar goes through
  assert int(out.bars) == 1


def test_history_too_short(run, policy):
  with pytest.raises(ValueError, match="history_bars"):
    online.start(policy, order(0, 0, 4), {c: v[100:130] for c, v in run["cols"].items()})
  hist = history(run, T0S[0])
  hist["volume"] = hist["volume"].copy()
  hist["volume"][50] = np.nan
  with pytest.raises(ValueError, match="history_bars index 50.*'volume'"):
    online.start(policy, order(0, 0, 4), hist)
