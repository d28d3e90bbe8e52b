"""The device mesh and the shardings that training uses.

One named mesh axis, ``data``, spans every device of every process.

- Parameters and optimizer states are replicated.
- Each step's batch is sharded along ``data``: every device runs the step
  on its ``batch_size / devices`` rows. The steps are written for the whole
  batch and jitted with these shardings; XLA's partitioner gives each device
  its rows, turns every gradient into a per-device partial sum followed by
  one all-reduce, and reduces the batch means the same way. Random draws
  (noise, Gumbel, gradient-penalty fractions) use JAX's partitionable
  threefry, so each row gets the same number on 1 device as on 8, and a run
  does not depend on the device count beyond float rounding.
- The rating table is split by rows across the devices (``shard_rows``): a
  step's rows, drawn by one shared permutation, are gathered by the devices
  that hold them and exchanged, ``batch_size`` x 4 numbers per step, small
  next to the gradients. Each device thus keeps ``1 / devices`` of
  ML-32M's 0.5 GB, and the batches are the same on any device count.
- The user and movie feature tables are small and replicated.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def make_mesh(devices=None) -> Mesh:
    """A one-axis mesh over ``devices`` (all devices by default)."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def check_batch_size(batch_size: int, mesh: Mesh, name: str) -> None:
    """Refuses a global batch that does not split evenly across devices."""
    devices = mesh.devices.size
    if batch_size % devices:
        raise ValueError(
            f"{name}={batch_size} does not divide by the {devices} devices; "
            f"use a multiple of {devices}"
        )


def shard_rows(
    arrays: dict[str, np.ndarray], mesh: Mesh
) -> dict[str, jax.Array]:
    """Splits same-length host arrays by rows across the mesh's devices.

    The rows are padded with zeros to a multiple of the device count, so
    the arrays can be longer than the table; callers keep the true length.
    Every process passes the whole table and keeps its own devices' rows.
    """
    lengths = {len(array) for array in arrays.values()}
    if len(lengths) != 1:
        raise ValueError(f"row arrays differ in length: {sorted(lengths)}")
    padding = -lengths.pop() % mesh.devices.size
    padded = {
        name: np.pad(array, [(0, padding)] + [(0, 0)] * (array.ndim - 1))
        for name, array in arrays.items()
    }
    return jax.device_put(padded, batch_sharded(mesh))
