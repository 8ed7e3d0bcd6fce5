"""Tests of the command line: a user error is one `error:` line on stderr, without a traceback."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = "--config=experiments/crypto_intraday.py:smoke"


def run_main(*args: str) -> subprocess.CompletedProcess:
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  return subprocess.run(
    [sys.executable, "-m", "lemjax.main", *args],
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
    check=False,
  )


def test_eval_before_training_says_so_without_a_traceback(tmp_path):
  proc = run_main("--mode=eval", SMOKE, f"--workdir={tmp_path}")
  assert proc.returncode == 1, proc.stderr
  assert f"error: no best checkpoint in {tmp_path}" in proc.stderr
  assert "make train" in proc.stderr and "Traceback" not in proc.stderr
  assert not os.listdir(tmp_path)  # nothing trained or written


def test_unknown_override_names_the_flag_and_the_nearest_key(tmp_path):
  proc = run_main("--mode=eval", SMOKE, "--config.train.stpes=3", f"--workdir={tmp_path}")
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines() == [
    "error: --config.train.stpes=3: unknown config key 'stpes'; "
    'did you mean "steps" instead of "stpes"?'
  ]


def test_traceback_flag_shows_the_traceback(tmp_path):
  proc = run_main("--mode=eval", SMOKE, "--config.train.stpes=3", "--traceback")
  assert proc.returncode != 0 and "Traceback" in proc.stderr and "stpes" in proc.stderr
