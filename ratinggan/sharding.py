"""The device mesh and the shardings that training uses.

One named mesh axis, ``data``, spans every device of every process.
Parameters, optimizer states and the device-resident rating tables are
replicated; each batch is sharded along ``data``, so XLA partitions the
per-row work and averages gradients across devices.
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
