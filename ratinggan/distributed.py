"""Multi-host start-up: join the other processes when the environment says so.

A multi-process run sets three variables on every process before it starts:

- ``JAX_COORDINATOR_ADDRESS``: ``host:port`` of process 0's coordinator;
- ``JAX_NUM_PROCESSES``: how many processes take part;
- ``JAX_PROCESS_ID``: this process's number, ``0 .. JAX_NUM_PROCESSES - 1``.

With any of them set, ``initialize_from_environment`` calls
``jax.distributed.initialize`` (which must come before the first JAX
computation); a count or id left unset is filled in by JAX's own cluster
detection (SLURM, Open MPI, ...). With none set it does nothing, and the run
uses the devices of this process only. On CPU, processes exchange
gradients through gloo, JAX's default CPU collectives.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import jax

COORDINATOR = "JAX_COORDINATOR_ADDRESS"
NUM_PROCESSES = "JAX_NUM_PROCESSES"
PROCESS_ID = "JAX_PROCESS_ID"


def _integer(environ: Mapping[str, str], name: str) -> int | None:
    text = environ.get(name)
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError(
            f"environment variable {name}={text!r} is not an integer"
        ) from None


def settings_from_environment(
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any] | None:
    """The arguments for ``jax.distributed.initialize`` that the environment
    asks for, or ``None`` when it asks for a single-process run."""
    environ = os.environ if environ is None else environ
    settings = {
        "coordinator_address": environ.get(COORDINATOR) or None,
        "num_processes": _integer(environ, NUM_PROCESSES),
        "process_id": _integer(environ, PROCESS_ID),
    }
    if all(value is None for value in settings.values()):
        return None

    count, index = settings["num_processes"], settings["process_id"]
    if count is not None and count < 1:
        raise ValueError(f"{NUM_PROCESSES}={count} must be at least 1")
    if count is not None and index is not None and not 0 <= index < count:
        raise ValueError(
            f"{PROCESS_ID}={index} must lie in 0..{count - 1} "
            f"({NUM_PROCESSES}={count})"
        )
    return settings


def initialize_from_environment(
    environ: Mapping[str, str] | None = None,
) -> bool:
    """Joins a multi-process run when the environment describes one.

    Returns whether this process is part of a distributed run. Safe to call
    twice: a runtime that is already up is left as it is.
    """
    if jax.distributed.is_initialized():
        return True
    settings = settings_from_environment(environ)
    if settings is None:
        return False
    jax.distributed.initialize(**settings)
    return True


def is_writer() -> bool:
    """Whether this process writes logs, metrics and reports (process 0)."""
    return jax.process_index() == 0
