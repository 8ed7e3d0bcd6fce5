"""Tests for lemjax/online/policy.py: a trained run's policy, and clear errors for broken runs."""

import gc
import json
import os

import jax
import numpy as np
import pytest

from lemjax import online

from .common import HOUR

# A failed orbax restore (the shape-mismatch case) leaves coroutines that are reported at exit.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def test_load_policy_restores_params_and_bar_length(run, policy):
  assert policy.n_ahead == 4 and policy.lookback == 16 and policy.step_ms == HOUR
  assert policy.volume_window_ms == 7 * 24 * HOUR
  for a, b in zip(jax.tree.leaves(policy.params), jax.tree.leaves(run["policy0"].params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert (
    online.load_policy(os.path.join(run["workdir"], "checkpoints", "best")).source == policy.source
  )


def test_load_policy_errors(run, tmp_path):
  with pytest.raises(FileNotFoundError, match="config.json"):
    online.load_policy(str(tmp_path))
  with open(os.path.join(run["workdir"], "config.json")) as f:
    saved = json.load(f)
  (tmp_path / "config.json").write_text(json.dumps(saved))
  with pytest.raises(FileNotFoundError, match="no best checkpoint"):
    online.load_policy(str(tmp_path))
  os.symlink(os.path.join(run["workdir"], "checkpoints"), tmp_path / "checkpoints")
  for edit, match in (
    (lambda m: m["encoder"].update(colour=1), "model.encoder.colour"),
    (lambda m: m["allocator"].pop("width"), "model.allocator.width"),
    (lambda m: m["encoder"].update(hidden=16), "parameter|does not match"),
  ):
    bad = json.loads(json.dumps(saved))
    edit(bad["resolved"]["model"])
    (tmp_path / "config.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=match):
      online.load_policy(str(tmp_path))
  gc.collect()  # reports the failed restore's coroutines here, under this module's filter
