"""Two processes under `jax.distributed` (gloo CPU collectives, localhost) train the smoke config
through the command line and end where one process ends."""

import json
import os
import socket
import subprocess
import sys

import numpy as np

from experiments import crypto_intraday
from lemjax import train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROCESSES = 2
# Eight steps, validated at 4 and 8: the loss moves between them by far more than the tolerance.
STEPS, EVAL_EVERY = 8, 4
FLAGS = (
  f"--config.train.steps={STEPS}",
  f"--config.train.eval_every={EVAL_EVERY}",
  f"--config.train.log_every={EVAL_EVERY}",
  "--config.train.progress=False",
)
# The gradient all-reduce sums the two halves of each batch in another order than one device
# does; eight Adam steps turn that into differences near 1e-7 in the loss (it moves by ~7e-4
# between the two validations).
TOLERANCE = 2e-6


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _start_processes(workdir: str) -> list[subprocess.Popen]:
  """The README's multi-process command, once per process id, on one coordinator port."""
  port = _free_port()
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # one CPU device per process
  env.update(JAX_PLATFORMS="cpu", PYTHONPATH=REPO)
  command = [
    sys.executable,
    "-m",
    "lemjax.main",
    "--mode=train",
    "--config=experiments/crypto_intraday.py:smoke",
    f"--workdir={workdir}",
    f"--config.distributed.coordinator_address=localhost:{port}",
    f"--config.distributed.num_processes={PROCESSES}",
    "--config.distributed.cpu_collectives=gloo",
    *FLAGS,
  ]
  return [
    subprocess.Popen(
      [*command, f"--config.distributed.process_id={i}"],
      env=env,
      cwd=REPO,
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
    )
    for i in range(PROCESSES)
  ]


def _wait(procs: list[subprocess.Popen], timeout: float) -> list[str]:
  """Each process's output; kills them all when one fails or the time runs out."""
  outputs = []
  try:
    for proc in procs:
      outputs.append(proc.communicate(timeout=timeout)[0])
      assert proc.returncode == 0, outputs[-1][-4000:]
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
        proc.communicate()
  return outputs


def _val_losses(workdir: str) -> dict:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f]
  return {r["step"]: r["loss"] for r in records if r["split"] == "val"}


def test_two_processes_match_one(tmp_path):
  two, one = str(tmp_path / "two"), str(tmp_path / "one")
  procs = _start_processes(two)
  # The one-process run, here, while the two others train (they wait on each other, not on it).
  config = crypto_intraday.get_config("smoke")
  config.train.update(steps=STEPS, eval_every=EVAL_EVERY, log_every=EVAL_EVERY, progress=False)
  summary = train.train_and_evaluate(config, one)
  outputs = _wait(procs, timeout=600)

  assert all(f"process {i} of {PROCESSES}" in out for i, out in enumerate(outputs)), outputs[0]
  assert "mesh: 2 devices on 'data' (2 processes)" in outputs[0]
  assert summary["step"] == STEPS
  val_one, val_two = _val_losses(one), _val_losses(two)
  assert sorted(val_one) == sorted(val_two) == [EVAL_EVERY, STEPS]
  moved = abs(val_one[STEPS] - val_one[EVAL_EVERY])
  assert moved > 100 * TOLERANCE, f"validation loss barely moved ({moved}): a vacuous comparison"
  for step in val_one:
    np.testing.assert_allclose(val_two[step], val_one[step], rtol=0, atol=TOLERANCE)
