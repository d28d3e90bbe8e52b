"""Orbax checkpoints of a run: saved at an interval, verified on restore.

A checkpoint is one Orbax step directory under ``<workdir>/checkpoints``
with three items: ``state`` (every array of the run, through
``StandardSave``), ``meta`` (JSON: where the run stands and a digest of the
arrays) and ``config`` (JSON: the run's config). The step is the number of
train steps done. Orbax writes each step into a temporary directory and
renames it into place when complete, so a step is never overwritten and a
process killed mid-save leaves only a temporary directory, which is removed.

On restore the newest step is read first. One that cannot be read, or
whose arrays do not match the digest saved with them (a truncated or
damaged file), is moved to ``<workdir>/corrupt-checkpoints`` and the next
older step is tried. Nothing is pickled: arrays go through Orbax's
TensorStore format, everything else through JSON.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from ratinggan.config import Config, flat_fields, from_dict

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
CORRUPT_DIR = "corrupt-checkpoints"
# Raised whenever the saved layout changes, so old checkpoints are refused
# with a clear message instead of failing somewhere inside Orbax.
FORMAT = 1
# Config fields that a resumed run may change: none of them changes what is
# trained (where the data lie, how often to save, how to report). That the
# data found there are the same is checked apart, by their fingerprint.
RESUMABLE_FIELDS = ("data_dir", "cache_dir", "checkpoint.", "eval.")
# The name Orbax gives a step directory while it is still being written.
TEMPORARY_MARK = ".orbax-checkpoint-tmp"


class Interrupted(Exception):
    """The run got SIGTERM or SIGINT, saved a checkpoint and stopped."""

    def __init__(self, signum: int, step: int, directory: Path):
        self.signum = signum
        self.step = step
        self.directory = directory
        name = signal.Signals(signum).name
        super().__init__(
            f"stopped by {name} after saving the checkpoint at step {step} "
            f"in {directory}; run the same command again to resume"
        )


@dataclasses.dataclass(frozen=True)
class Restored:
    """One checkpoint read back: its step, arrays, meta and config."""

    step: int
    state: Any
    meta: dict[str, Any]
    config: dict[str, Any]


def tree_digest(tree) -> str:
    """SHA-256 over every leaf's path, dtype, shape and bytes."""
    digest = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        array = np.asarray(leaf)
        digest.update(jax.tree_util.keystr(path).encode())
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def abstract_tree(tree, sharding: jax.sharding.Sharding):
    """Shapes and dtypes of ``tree``, every leaf placed with ``sharding``:
    the restore target, which lets a checkpoint load on any device count."""
    return jax.tree.map(
        lambda leaf: jax.ShapeDtypeStruct(
            leaf.shape, leaf.dtype, sharding=sharding
        ),
        tree,
    )


def config_conflicts(saved: dict[str, Any], config: Config) -> list[str]:
    """The fields where ``config`` contradicts a saved config, as
    ``"name: saved -> now"`` lines (fields a resume may change left out)."""
    before = flat_fields(from_dict(saved))
    after = flat_fields(config)
    return [
        f"{name}: {before[name]!r} -> {after[name]!r}"
        for name in sorted(after)
        if not name.startswith(RESUMABLE_FIELDS)
        and not _same(before[name], after[name])
    ]


def _same(a, b) -> bool:
    # NaN equals NaN here: a saved NaN setting is the same setting.
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (np.isnan(a) and np.isnan(b))
    return a == b


def data_fingerprint(*arrays: np.ndarray) -> str:
    """A short digest of the data a run trains on, to refuse resuming on
    other data under the same config (a changed file, another release)."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:16]


@contextlib.contextmanager
def _absl_quiet(quiet: bool):
    """Silences Orbax's warnings (through absl) that a read-only manager
    is read-only."""
    absl_logger = logging.getLogger("absl")
    level = absl_logger.level
    if quiet:
        absl_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        absl_logger.setLevel(level)


def _is_writer() -> bool:
    return jax.process_index() == 0


class Checkpoints:
    """The checkpoints of one work directory.

    ``keep`` bounds how many are kept (oldest deleted first). With
    ``read_only`` nothing is saved, moved or cleaned up: for loading a
    trained model.
    """

    def __init__(
        self, workdir: str | Path, keep: int = 3, read_only: bool = False
    ):
        if keep < 1:
            raise ValueError(f"checkpoint.keep={keep}; expected at least 1")
        self.workdir = Path(workdir)
        self.directory = self.workdir / CHECKPOINT_DIR
        self.read_only = read_only
        if read_only and not self.directory.is_dir():
            raise FileNotFoundError(f"no checkpoints in {self.workdir}")
        self._report_unfinished_saves()
        with _absl_quiet(read_only):
            self._manager = self._open_manager(keep)

    def _open_manager(self, keep: int) -> ocp.CheckpointManager:
        read_only = self.read_only
        return ocp.CheckpointManager(
            self.directory.absolute(),
            options=ocp.CheckpointManagerOptions(
                # Orbax warns about settings a read-only manager ignores.
                max_to_keep=None if read_only else keep,
                save_interval_steps=0 if read_only else 1,
                create=not read_only,
                read_only=read_only,
                cleanup_tmp_directories=not read_only,
                # Synchronous: a save is on disk before training goes on,
                # so a kill loses at most one interval. An asynchronous
                # save still in flight at the kill would lose two.
                enable_async_checkpointing=False,
            ),
        )

    def __enter__(self) -> Checkpoints:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _report_unfinished_saves(self) -> None:
        if not self.directory.is_dir():
            return
        for path in sorted(self.directory.iterdir()):
            if TEMPORARY_MARK in path.name:
                step = path.name.split(".", 1)[0]
                action = "left alone" if self.read_only else "removed"
                logger.warning(
                    "found an unfinished save of step %s (the process "
                    "stopped while saving); it is %s",
                    step,
                    action,
                )

    def steps(self) -> list[int]:
        """The saved steps, oldest first."""
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(
        self,
        step: int,
        state,
        meta: dict[str, Any],
        config: Config,
    ) -> bool:
        """Saves ``state`` and ``meta`` as step ``step``, unless that step
        exists already. Returns whether it saved; the checkpoint is on disk
        when this returns."""
        if self.read_only:
            raise ValueError(f"{self.directory} was opened read-only")
        if step in self._manager.all_steps():
            return False
        started = time.perf_counter()
        meta = {**meta, "format": FORMAT, "digest": tree_digest(state)}
        # force: the caller decides when to save. Orbax's own policy would
        # also save the first step and skip while a save is in flight.
        self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                meta=ocp.args.JsonSave(meta),
                config=ocp.args.JsonSave(config.to_dict()),
            ),
            force=True,
        )
        logger.info(
            "saved the checkpoint at step %d in %.2f s",
            step,
            time.perf_counter() - started,
        )
        return True

    def restore_newest(
        self,
        target_for: Callable[[dict[str, Any], dict[str, Any]], Any],
    ) -> Restored | None:
        """Reads the newest good checkpoint, or None if there is none.

        ``target_for(meta, config)`` gives the restore target (abstract
        arrays with their shardings); it may raise ``ValueError`` to refuse
        a checkpoint (another config), which stops the search. A checkpoint
        that fails to read or verify is set aside and the next older one is
        tried.
        """
        for step in reversed(self.steps()):
            try:
                info = self._manager.restore(
                    step,
                    args=ocp.args.Composite(
                        meta=ocp.args.JsonRestore(),
                        config=ocp.args.JsonRestore(),
                    ),
                )
                meta, config = dict(info["meta"]), dict(info["config"])
            except Exception as error:  # noqa: BLE001 (any damage counts)
                self._set_aside(step, error)
                continue

            if meta.get("format") != FORMAT:
                raise ValueError(
                    f"the checkpoint at step {step} in {self.directory} has "
                    f"format {meta.get('format')}, this version reads "
                    f"{FORMAT}; pass --restart to start over"
                )
            target = target_for(meta, config)

            try:
                state = self._manager.restore(
                    step,
                    args=ocp.args.Composite(
                        state=ocp.args.StandardRestore(target)
                    ),
                )["state"]
                if tree_digest(state) != meta["digest"]:
                    raise ValueError("its arrays do not match their digest")
            except Exception as error:  # noqa: BLE001 (any damage counts)
                self._set_aside(step, error)
                continue
            return Restored(step, state, meta, config)
        return None

    def _set_aside(self, step: int, error: Exception) -> None:
        reason = str(error).splitlines()[0] if str(error) else repr(error)
        if self.read_only or not _is_writer():
            logger.warning(
                "the checkpoint at step %d is unreadable (%s); trying the "
                "one before",
                step,
                reason[:300],
            )
            return
        aside = self.workdir / CORRUPT_DIR
        aside.mkdir(exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        destination = aside / f"{step}-{stamp}"
        os.replace(self.directory / str(step), destination)
        self._manager.reload()
        logger.warning(
            "the checkpoint at step %d is unreadable (%s); moved it to %s "
            "and falling back to the one before",
            step,
            reason[:300],
            destination,
        )

    def close(self) -> None:
        self._manager.close()


def set_aside_run(workdir: str | Path, names: tuple[str, ...]) -> Path | None:
    """Moves a previous run's files out of the way (``--restart``): into
    ``<workdir>/replaced-<time>/``, so nothing saved is deleted."""
    workdir = Path(workdir)
    present = [name for name in names if (workdir / name).exists()]
    if not present or not _is_writer():
        return None
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    destination = workdir / f"replaced-{stamp}"
    destination.mkdir()
    for name in present:
        os.replace(workdir / name, destination / name)
    return destination


class StopSignals:
    """Turns SIGTERM and SIGINT into a request to save and stop.

    The training loop checks ``requested`` at each step boundary. A second
    SIGINT (Ctrl-C twice) stops at once. Handlers can only be installed
    from the main thread; elsewhere signals keep their usual effect.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.requested: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _handle(self, signum: int, frame) -> None:
        del frame
        if self.requested is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = signum
        logger.warning(
            "got %s: saving a checkpoint at the next step boundary, then "
            "stopping",
            signal.Signals(signum).name,
        )
