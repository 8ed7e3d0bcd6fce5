"""Device mesh, shardings and multi-process set-up: batch over a `data` axis, optional FSDP on it."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec

from lemjax.config import DistributedConfig
from lemjax.config import MeshConfig

DATA_AXIS = "data"
# Environment variables that name a multi-process job (JAX's own, Slurm, Open MPI).
_CLUSTER_VARS = ("JAX_COORDINATOR_ADDRESS", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE")
CPU_COLLECTIVES = ("gloo", "mpi", "")


# --- Processes ------------------------------------------------------------------------------------


def _env_int(name: str) -> int | None:
  value = os.environ.get(name, "")
  return int(value) if value.strip() else None


def cluster_in_environment() -> bool:
  """True when the environment describes a job of more than one process."""
  if os.environ.get("JAX_COORDINATOR_ADDRESS"):
    return True
  return any((_env_int(v) or 1) > 1 for v in _CLUSTER_VARS[1:])


def initialize_distributed(config: DistributedConfig) -> bool:
  """Starts `jax.distributed` when the config or the environment asks for it.

  Must run before any JAX computation. Unset fields fall back to JAX_COORDINATOR_ADDRESS,
  JAX_NUM_PROCESSES, JAX_PROCESS_ID, then to JAX's cluster detection (Slurm, Open MPI, TPU).

  Args:
    config: `enabled` is "auto" (only inside a multi-process job), "on" or "off";
      `cpu_collectives` ("gloo", "mpi" or "" for JAX's default) carries CPU collectives across
      processes.

  Returns:
    True when this process is part of a multi-process run.
  """
  if config.enabled not in ("auto", "on", "off"):
    raise ValueError(f"DistributedConfig.enabled={config.enabled!r} is not 'auto', 'on' or 'off'")
  if config.cpu_collectives not in CPU_COLLECTIVES:
    raise ValueError(
      f"DistributedConfig.cpu_collectives={config.cpu_collectives!r} is not one of {CPU_COLLECTIVES}"
    )
  wanted = config.enabled == "on" or (
    config.enabled == "auto" and (bool(config.coordinator_address) or cluster_in_environment())
  )
  if not wanted:
    return False
  num_processes = config.num_processes or _env_int("JAX_NUM_PROCESSES")
  process_id = config.process_id if config.process_id >= 0 else _env_int("JAX_PROCESS_ID")
  if config.cpu_collectives:  # read when the CPU backend starts, so before any computation
    jax.config.update("jax_cpu_collectives_implementation", config.cpu_collectives)
  jax.distributed.initialize(
    coordinator_address=config.coordinator_address or None,
    num_processes=num_processes,
    process_id=process_id,
  )
  logging.info(
    "jax.distributed: process %d of %d, %d local / %d global devices",
    jax.process_index(),
    jax.process_count(),
    jax.local_device_count(),
    jax.device_count(),
  )
  return jax.process_count() > 1


def is_primary() -> bool:
  """Process 0 alone writes logs, metrics and run files (orbax coordinates checkpoints)."""
  return jax.process_index() == 0


# --- Mesh and shardings ---------------------------------------------------------------------------


def make_mesh(config: MeshConfig, devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A one-axis mesh ("data",) over `config.data` devices (0: all of them, every process).

  Raises:
    ValueError when more devices are asked for than exist.
  """
  devices = list(jax.devices() if devices is None else devices)
  size = config.data or len(devices)
  if not 1 <= size <= len(devices):
    raise ValueError(f"MeshConfig.data={config.data} but {len(devices)} devices are available")
  return Mesh(np.asarray(devices[:size]), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over `data`; the batch size must be a multiple of its size."""
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def leaf_spec(shape: tuple[int, ...], data_size: int, config: MeshConfig) -> PartitionSpec:
  """Replicated, or (FSDP) split on the last axis that the `data` axis divides.

  The last divisible axis is an output-feature axis for every large allocator weight
  (the MLP width), so each device keeps whole input rows of its slice.
  """
  if not config.fsdp or data_size == 1 or math.prod(shape) < config.fsdp_min_size:
    return PartitionSpec()
  for axis in reversed(range(len(shape))):
    if shape[axis] % data_size == 0:
      return PartitionSpec(*([None] * axis + [DATA_AXIS]))
  return PartitionSpec()


def tree_shardings(tree: Any, mesh: Mesh, config: MeshConfig) -> Any:
  """NamedSharding per array leaf of `tree` (parameters, optimiser state, a whole TrainState).

  The rule depends on a leaf's shape only, so Adam's moments follow their parameters.
  """
  size = mesh.shape[DATA_AXIS]
  return jax.tree.map(lambda x: NamedSharding(mesh, leaf_spec(np.shape(x), size, config)), tree)


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
  if batch_size % mesh.shape[DATA_AXIS]:
    raise ValueError(
      f"batch_size={batch_size} is not a multiple of the {mesh.shape[DATA_AXIS]} "
      f"devices on the '{DATA_AXIS}' axis"
    )


def put_batch(batch: dict, mesh: Mesh) -> dict:
  """This process's rows of the global batch, as global arrays split over `data`.

  Every process passes the rows `host_rows` selected for it; with one process that is the
  whole batch.
  """
  sharding = batch_sharding(mesh)
  if jax.process_count() == 1:
    return jax.device_put(batch, sharding)
  return {
    k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in batch.items()
  }


def host_rows(indices_B: np.ndarray) -> np.ndarray:
  """The contiguous slice of a global batch's window indices that this process loads."""
  count, index = jax.process_count(), jax.process_index()
  if len(indices_B) % count:
    raise ValueError(f"global batch of {len(indices_B)} is not a multiple of {count} processes")
  per = len(indices_B) // count
  return np.asarray(indices_B)[index * per : (index + 1) * per]


def shard_tree(tree: Any, shardings: Any) -> Any:
  """Places (or re-lays) every leaf of `tree` on its sharding."""
  return jax.device_put(tree, shardings)


def jit_sharded_step(
  step_fn: Callable, state_shardings: Any, mesh: Mesh, donate: bool = True
) -> Callable:
  """`step_fn(state, batch, rng) -> (state, metrics)` jitted with explicit shardings.

  The batch is split over `data`; the state keeps `state_shardings` in and out, so XLA inserts
  the gradient all-reduce (replicated parameters) or the gathers and reduce-scatters (FSDP).
  """
  rep = replicated(mesh)
  return jax.jit(
    step_fn,
    in_shardings=(state_shardings, batch_sharding(mesh), rep),
    out_shardings=(state_shardings, rep),
    donate_argnums=(0,) if donate else (),
  )
