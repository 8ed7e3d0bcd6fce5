"""Tests for lemjax/online/saving.py: a saved carry continues the order exactly; bad files are named."""

import jax
import pytest

from lemjax import online

from .common import R_MAX
from .common import R_MIN
from .common import T0S
from .common import bar
from .common import history
from .common import order


def test_save_and_restore_continues_the_order(run, policy, tmp_path):
  t0, n = T0S[3], policy.n_ahead
  exe = online.Executor.start(policy, order(5, 2, n, R_MIN[3], R_MAX[3]), history(run, t0))
  exe.on_bar(bar(run, t0))
  exe.save(str(tmp_path / "order.npz"))
  resumed = online.Executor.load(policy, str(tmp_path / "order.npz"))
  for s in range(1, n):
    a, b = exe.on_bar(bar(run, t0 + s)), resumed.on_bar(bar(run, t0 + s))
    assert jax.tree.map(float, a) == jax.tree.map(float, b)
  bad = online.carry_to_dict(exe.carry)
  bad[".volume_W"] = bad[".volume_W"][:3]
  with pytest.raises(ValueError, match="volume_W"):
    online.carry_from_dict(policy, bad)
