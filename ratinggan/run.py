"""One whole run: load data, train the regressor and the GAN, report.

Training goes in pieces, each one compiled loop on the devices
(``training.make_resumable_epoch``); a piece ends at the end of an epoch or
at the next checkpoint step (``checkpoint.every_steps``), whichever comes
first. Between pieces the run stops on non-finite values, logs finished
epochs, saves a checkpoint when one is due, and honours SIGTERM/SIGINT by
saving and stopping. A run started on a work directory with checkpoints
resumes from the newest good one, and ends bitwise equal to a run that was
never stopped (on the same devices): the pieces run one compiled program
whatever their bounds, and every array they depend on is in the checkpoint.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from flax.training.train_state import TrainState
from tqdm.auto import tqdm

from ratinggan import (
    checkpoint,
    distributed,
    evaluate,
    metrics,
    predict,
    training,
)
from ratinggan.config import Config, flat_fields
from ratinggan.data import Dataset, Ratings, Split, holdout, load_split
from ratinggan.sharding import check_batch_size, make_mesh, replicated

logger = logging.getLogger(__name__)

# Called with each finished epoch's record (the metrics.jsonl line); the
# benchmarks use it to time an epoch or a validation RMSE as it happens.
EpochHook = Callable[[dict[str, Any]], None]

# What a run writes besides checkpoints; --restart moves them aside too.
RUN_FILES = ("config.json", "metrics.jsonl", "report.json", "tensorboard")


TENSORBOARD_MISSING = (
    "--tensorboard needs the tensorboard extra: pip install "
    "'ratinggan[tensorboard]' (or pip install tensorboardX)"
)


def tensorboard_writer(directory: Path):
    """A tensorboardX ``SummaryWriter`` on ``directory``; a clear error
    when the optional ``tensorboard`` extra is not installed."""
    try:
        from tensorboardX import SummaryWriter
    except ImportError as error:
        raise ValueError(TENSORBOARD_MISSING) from error
    return SummaryWriter(str(directory))


class MetricsLog:
    """Appends one JSON object per line to ``metrics.jsonl`` (process 0),
    and each of its numbers to TensorBoard when given a writer."""

    def __init__(self, path: Path | None, tensorboard=None):
        self.path = path if jax.process_index() == 0 else None
        self.tensorboard = tensorboard if self.path is not None else None

    def write(self, record: dict[str, Any]) -> None:
        if self.path is not None:
            with open(self.path, "a") as stream:
                stream.write(json.dumps(record, sort_keys=True) + "\n")
        if self.tensorboard is not None:
            self._write_scalars(record)

    def _write_scalars(self, record: dict[str, Any]) -> None:
        """Scalars named ``phase/metric`` at the record's train step."""
        phase = record.get("phase", "run")
        for name, value in record.items():
            if name in ("phase", "step") or isinstance(value, bool):
                continue
            if isinstance(value, int | float):
                self.tensorboard.add_scalar(
                    f"{phase}/{name}", value, record.get("step", 0)
                )
        self.tensorboard.flush()

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()

    def keep_until(self, step: int) -> None:
        """Drops the records of steps after ``step``: a resumed run logs
        them again. Rewrites the file atomically."""
        if self.path is None or not self.path.exists():
            return
        lines = self.path.read_text().splitlines(keepends=True)
        kept = [
            line for line in lines if json.loads(line).get("step", 0) <= step
        ]
        if len(kept) < len(lines):
            temporary = self.path.with_name(f".{self.path.name}.tmp")
            temporary.write_text("".join(kept))
            os.replace(temporary, self.path)


class RunState(flax.struct.PyTreeNode):
    """Every array of a run, as a checkpoint holds it."""

    regressor: TrainState | None
    # The regressor's parameters at its best validation epoch so far.
    best_regressor_params: Any
    gan: training.GanState | None
    # Running metric sums of the epoch in progress; {} between epochs.
    epoch_sums: dict[str, jax.Array]
    # Raw key data (uint32) of the "regressor" and "gan" loop keys and the
    # "report" key.
    keys: dict[str, jax.Array]


@dataclasses.dataclass
class Position:
    """Where a run stands; saved as JSON with every checkpoint."""

    # "regressor", "gan", or "done".
    phase: str = "regressor"
    # The epoch in progress within the phase, and its steps already done.
    epoch: int = 0
    epoch_step: int = 0
    # Train steps done in all phases: the checkpoint step.
    step: int = 0
    # The regressor's early stopping.
    best_validation_rmse: float | None = None
    best_epoch: int = -1
    waited: int = 0
    # Training time per phase, summed over every process that ran it.
    seconds: dict[str, float] = dataclasses.field(
        default_factory=lambda: {"regressor": 0.0, "gan": 0.0}
    )

    def describe(self) -> str:
        if self.phase == "done":
            return "training finished"
        return f"{self.phase} epoch {self.epoch}, step {self.epoch_step}"


class Session:
    """A run between pieces: its arrays, its position, when to save.

    Without ``checkpoints`` nothing is saved and pieces are whole epochs.
    """

    def __init__(
        self,
        state: RunState,
        position: Position,
        config: Config,
        checkpoints: checkpoint.Checkpoints | None = None,
        stop: checkpoint.StopSignals | None = None,
        data: str = "",
    ):
        self.state = state
        self.position = position
        self.config = config
        self.checkpoints = checkpoints
        self.stop = stop
        self.data = data
        self._order: tuple[Any, ...] = ()

    def piece_end(self, num_steps: int) -> int:
        """The epoch step where the next piece stops: the epoch's end or
        the next checkpoint step, whichever comes first."""
        every = self.config.checkpoint.every_steps
        remaining = num_steps - self.position.epoch_step
        if self.checkpoints is not None and every > 0:
            remaining = min(remaining, every - self.position.step % every)
        return self.position.epoch_step + remaining

    def epoch_order(self, phase: str, epoch_fn: training.ResumableEpoch):
        """The batches and step key of the epoch in progress (cached)."""
        marker = (phase, self.position.epoch)
        if self._order[:2] != marker:
            loop_key = jax.random.wrap_key_data(self.state.keys[phase])
            self._order = marker + epoch_fn.order(
                jax.random.fold_in(loop_key, self.position.epoch)
            )
        return self._order[2:]

    def after_piece(self) -> None:
        """Saves when a checkpoint is due or a stop was asked for; then
        stops if asked."""
        if self.checkpoints is None:
            return
        every = self.config.checkpoint.every_steps
        due = every > 0 and self.position.step % every == 0
        if due or self._stop_requested():
            self.save()
        self._stop_if_asked()

    def finish(self) -> None:
        """The final save (unless the last piece's save was at this step)."""
        if self.checkpoints is None:
            return
        self.save()
        self._stop_if_asked()

    def _stop_requested(self) -> bool:
        return self.stop is not None and self.stop.requested is not None

    def _stop_if_asked(self) -> None:
        if self._stop_requested():
            raise checkpoint.Interrupted(
                self.stop.requested,
                self.position.step,
                self.checkpoints.directory,
            )

    def save(self) -> None:
        self.checkpoints.save(
            self.position.step,
            self.state,
            {"position": dataclasses.asdict(self.position), "data": self.data},
            self.config,
        )

    def last_good(self) -> str:
        if self.checkpoints is None:
            return "no checkpoints are kept outside a full run"
        step = self.checkpoints.latest_step()
        if step is None:
            return "no checkpoint was saved yet"
        return f"the last good checkpoint is step {step} in " + str(
            self.checkpoints.directory
        )


# ------------------------------------------------------------- pieces ----


@jax.jit
def _finite_leaves(tree) -> jax.Array:
    leaves = [x for x in jax.tree.leaves(tree) if _is_float(x)]
    return jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves])


def _is_float(leaf) -> bool:
    return jnp.issubdtype(leaf.dtype, jnp.inexact)


def _check_finite(
    session: Session, phase: str, start: int, stop: int, part, first_bad
) -> None:
    """Stops the run, naming the step and the quantities, when a metric or
    a parameter went NaN or infinite in the piece just run."""
    bad_metrics = {
        name: int(step) for name, step in first_bad.items() if int(step) >= 0
    }
    finite = np.asarray(_finite_leaves(part))
    groups = [
        jax.tree_util.keystr(path[:2])
        for path, leaf in jax.tree_util.tree_flatten_with_path(part)[0]
        if _is_float(leaf)
    ]
    bad_arrays = sorted(
        {group for group, ok in zip(groups, finite, strict=True) if not ok}
    )
    if not bad_metrics and not bad_arrays:
        return

    first_step = session.position.step - start + 1
    if bad_metrics:
        step = first_step + min(bad_metrics.values())
        what = "non-finite " + ", ".join(sorted(bad_metrics))
    else:
        step = first_step + stop - 1
        what = "non-finite values"
    if bad_arrays:
        what += f" (arrays in {', '.join(bad_arrays)})"
    raise FloatingPointError(
        f"{phase} step {step}: {what}; stopped without saving, "
        f"{session.last_good()}"
    )


def _run_piece(
    session: Session,
    phase: str,
    epoch_fn: training.ResumableEpoch,
    tables,
    ratings,
) -> dict[str, float] | None:
    """Runs the next piece of ``phase``'s epoch in progress. Returns the
    epoch's mean metrics if the piece finished it, else None."""
    started = time.perf_counter()
    position, state = session.position, session.state
    part = getattr(state, phase)
    start, stop = position.epoch_step, session.piece_end(epoch_fn.num_steps)
    sums = (
        state.epoch_sums
        if start > 0
        else epoch_fn.zero_sums(part, tables, ratings)
    )
    rows, step_key = session.epoch_order(phase, epoch_fn)

    part, sums, first_bad = epoch_fn.run(
        part,
        sums,
        tables,
        ratings,
        rows,
        step_key,
        np.int32(start),
        np.int32(stop),
    )
    session.state = state.replace(**{phase: part}, epoch_sums=sums)
    _check_finite(session, phase, start, stop, part, first_bad)
    position.step += stop - start
    position.epoch_step = stop
    position.seconds[phase] += time.perf_counter() - started
    if stop < epoch_fn.num_steps:
        return None

    record = {
        "epoch": position.epoch,
        "step": position.step,
        **{
            name: float(total) / epoch_fn.num_steps
            for name, total in sums.items()
        },
    }
    session.state = session.state.replace(epoch_sums={})
    position.epoch += 1
    position.epoch_step = 0
    return record


def _progress_bar(phase: str, epochs: int, done: int, progress: bool):
    return tqdm(
        total=epochs,
        initial=min(done, epochs),
        desc=phase,
        disable=not progress,
    )


# ------------------------------------------------------------- phases ----


def _regressor_epoch(config: Config, mesh, num_rows: int):
    settings = config.regressor
    check_batch_size(settings.batch_size, mesh, "regressor.batch_size")
    return training.make_resumable_epoch(
        functools.partial(training.regressor_step, l2=settings.l2),
        mesh,
        num_rows,
        settings.batch_size,
    )


def _gan_epoch(config: Config, mesh, num_rows: int):
    settings = config.gan
    check_batch_size(settings.batch_size, mesh, "gan.batch_size")
    return training.make_resumable_epoch(
        functools.partial(training.gan_step, config=settings),
        mesh,
        num_rows,
        settings.batch_size,
        group=settings.critic_steps,
    )


def _copy(tree):
    # The next piece donates (and so frees) the state's buffers.
    return jax.tree.map(jnp.copy, tree)


def _regressor_state(config, dataset, train_part, key, mesh) -> TrainState:
    return training.create_regressor_state(
        config.regressor,
        dataset,
        float(train_part.ratings.mean()),
        key,
        mesh,
        history=train_part,
    )


def _end_regressor(session: Session) -> None:
    """The regressor keeps its best parameters; the GAN comes next."""
    state = session.state
    session.state = state.replace(
        regressor=state.regressor.replace(params=state.best_regressor_params)
    )
    session.position.phase = "gan"
    session.position.epoch = 0
    session.position.epoch_step = 0


def fit_regressor(
    config: Config,
    dataset: Dataset,
    train_part: Ratings,
    validation: Ratings,
    tables,
    mesh,
    key: jax.Array,
    log: MetricsLog,
    progress: bool = True,
    session: Session | None = None,
    on_epoch: EpochHook | None = None,
):
    """Trains the regressor, keeping the parameters of the epoch with the
    best validation RMSE; stops after ``patience`` epochs without one.

    Returns the state (best parameters) and ``{"validation_rmse",
    "epoch"}`` of the best epoch. Without a ``session``, trains from
    ``key`` and saves nothing; with one, carries on from where it stands.
    ``on_epoch`` receives each epoch's record, validation RMSE included.
    """
    settings = config.regressor
    epoch_fn = _regressor_epoch(config, mesh, len(train_part))
    if session is None:
        init_key, loop_key = jax.random.split(key)
        state = _regressor_state(config, dataset, train_part, init_key, mesh)
        session = Session(
            RunState(
                regressor=state,
                best_regressor_params=_copy(state.params),
                gan=None,
                epoch_sums={},
                keys={"regressor": jax.random.key_data(loop_key)},
            ),
            Position(),
            config,
        )
    ratings = training.device_ratings(train_part, dataset, mesh)
    low, high = dataset.levels[0], dataset.levels[-1]
    position = session.position
    done = position.epoch if position.phase == "regressor" else settings.epochs
    bar = _progress_bar("regressor", settings.epochs, done, progress)

    while position.phase == "regressor":
        if position.epoch >= settings.epochs:
            _end_regressor(session)
            break
        record = _run_piece(session, "regressor", epoch_fn, tables, ratings)
        if record is not None:
            predictions = predict.predict_ratings(
                session.state.regressor,
                tables,
                validation.users,
                validation.items,
            )
            record["validation_rmse"] = metrics.rmse(
                np.clip(predictions, low, high), validation.ratings
            )
            log.write({"phase": "regressor", **record})
            if on_epoch is not None:
                on_epoch({"phase": "regressor", **record})
            bar.update(1)
            bar.set_postfix(val_rmse=f"{record['validation_rmse']:.4f}")
            _track_best(session, record)
            if (
                position.waited >= settings.patience
                or position.epoch >= settings.epochs
            ):
                _end_regressor(session)
        session.after_piece()
    bar.close()

    selection = {
        "validation_rmse": position.best_validation_rmse,
        "epoch": position.best_epoch,
    }
    return session.state.regressor, selection


def _track_best(session: Session, record: dict[str, float]) -> None:
    """Early stopping's bookkeeping after one regressor epoch."""
    position = session.position
    best = position.best_validation_rmse
    if best is None or record["validation_rmse"] < best:
        position.best_validation_rmse = record["validation_rmse"]
        position.best_epoch = record["epoch"]
        position.waited = 0
        session.state = session.state.replace(
            best_regressor_params=_copy(session.state.regressor.params)
        )
    else:
        position.waited += 1


def fit_gan(
    config: Config,
    dataset: Dataset,
    train_part: Ratings,
    tables,
    mesh,
    key: jax.Array,
    log: MetricsLog,
    progress: bool = True,
    session: Session | None = None,
    on_epoch: EpochHook | None = None,
):
    """Trains the generator and critic for ``gan.epochs`` critic epochs.

    Without a ``session``, trains from ``key`` and saves nothing; with one,
    carries on from where it stands. ``on_epoch`` receives each epoch's
    record.
    """
    settings = config.gan
    epoch_fn = _gan_epoch(config, mesh, len(train_part))
    if session is None:
        init_key, loop_key = jax.random.split(key)
        session = Session(
            RunState(
                regressor=None,
                best_regressor_params=None,
                gan=training.create_gan_state(
                    settings, dataset, init_key, mesh
                ),
                epoch_sums={},
                keys={"gan": jax.random.key_data(loop_key)},
            ),
            Position(phase="gan"),
            config,
        )
    ratings = training.device_ratings(train_part, dataset, mesh)
    position = session.position
    done = position.epoch if position.phase == "gan" else settings.epochs
    bar = _progress_bar("gan", settings.epochs, done, progress)

    while position.phase == "gan":
        if position.epoch >= settings.epochs:
            position.phase = "done"
            break
        record = _run_piece(session, "gan", epoch_fn, tables, ratings)
        if record is not None:
            log.write({"phase": "gan", **record})
            if on_epoch is not None:
                on_epoch({"phase": "gan", **record})
            bar.update(1)
            bar.set_postfix(
                critic=f"{record['critic_loss']:.3f}",
                generator=f"{record['generator_loss']:.3f}",
            )
            if position.epoch >= settings.epochs:
                position.phase = "done"
        session.after_piece()
    bar.close()
    return training.with_average_generator(session.state.gan)


# ---------------------------------------------------------------- run ----


@dataclasses.dataclass(frozen=True)
class RunData:
    """A run's data: the split, and its training part cut for validation."""

    split: Split
    train_part: Ratings
    validation: Ratings

    @property
    def dataset(self) -> Dataset:
        return self.split.dataset

    def fingerprint(self) -> str:
        parts = [self.train_part, self.validation, self.split.test]
        return checkpoint.data_fingerprint(
            *[
                array
                for part in parts
                for array in (part.users, part.items, part.ratings)
            ],
            self.dataset.user_features,
            self.dataset.item_features,
        )


def load_data(config: Config, progress: bool = False) -> RunData:
    """The split ``config`` names, with the validation part held out.
    ``progress`` shows a bar if the release has to be downloaded."""
    split = load_split(
        config.dataset,
        config.data_dir,
        config.fold,
        config.seed,
        dataclasses.asdict(config.synthetic),
        split=config.split,
        split_seed=config.split_seed,
        cache_dir=config.cache_dir,
        user_table=config.user_table,
        item_table=config.item_table,
        test_file=config.test_file,
        progress=progress,
    )
    train_part, validation = holdout(
        split.train, config.validation_fraction, config.seed
    )
    return RunData(split, train_part, validation)


def initial_state(config: Config, data: RunData, mesh) -> RunState:
    """Both models freshly initialised from ``config.seed``, and the keys."""
    regressor_key, gan_key, report_key = jax.random.split(
        jax.random.key(config.seed), 3
    )
    regressor_init, regressor_loop = jax.random.split(regressor_key)
    gan_init, gan_loop = jax.random.split(gan_key)
    regressor = _regressor_state(
        config, data.dataset, data.train_part, regressor_init, mesh
    )
    keys = {
        "regressor": jax.random.key_data(regressor_loop),
        "gan": jax.random.key_data(gan_loop),
        "report": jax.random.key_data(report_key),
    }
    return RunState(
        regressor=regressor,
        best_regressor_params=_copy(regressor.params),
        gan=training.create_gan_state(config.gan, data.dataset, gan_init, mesh),
        epoch_sums={},
        keys=jax.device_put(keys, replicated(mesh)),
    )


def restore_target(
    config: Config, data: RunData, mesh, initial: RunState, position: Position
) -> RunState:
    """The abstract arrays a checkpoint at ``position`` restores into,
    replicated over ``mesh`` (whatever mesh saved it)."""
    sums = {}
    if position.epoch_step > 0 and position.phase in ("regressor", "gan"):
        make = _regressor_epoch if position.phase == "regressor" else _gan_epoch
        epoch_fn = make(config, mesh, len(data.train_part))
        tables = training.device_tables(data.dataset, mesh)
        ratings = training.device_ratings(data.train_part, data.dataset, mesh)
        sums = epoch_fn.zero_sums(
            getattr(initial, position.phase), tables, ratings
        )
    return checkpoint.abstract_tree(
        initial.replace(epoch_sums=sums), replicated(mesh)
    )


# Fields that count something a run cannot do without; 0 or less would
# fail later, deep in training (a division by zero, an empty ensemble).
POSITIVE_FIELDS = (
    "regressor.embed_dim",
    "regressor.epochs",
    "regressor.batch_size",
    "regressor.hidden_dim",
    "regressor.members",
    "gan.epochs",
    "gan.batch_size",
    "gan.critic_steps",
    "gan.noise_dim",
    "gan.embed_dim",
    "gan.hidden_dim",
    "eval.distribution_draws",
    "checkpoint.keep",
)


SYNTHETIC_FIELDS = (
    "synthetic.num_users",
    "synthetic.num_items",
    "synthetic.num_ratings",
)


def _check_config(config: Config) -> None:
    """Refuses settings no run can use, before any data is read."""
    values = flat_fields(config)
    names = POSITIVE_FIELDS
    if config.dataset == "synthetic":
        names += SYNTHETIC_FIELDS
    for name in names:
        if values[name] < 1:
            raise ValueError(f"{name}={values[name]}; expected 1 or more")
    if config.checkpoint.every_steps < 0:
        raise ValueError(
            f"checkpoint.every_steps={config.checkpoint.every_steps}; "
            "expected 0 (only at the end) or more"
        )


def _resume_or_start(
    config: Config,
    data: RunData,
    mesh,
    saved: checkpoint.Checkpoints,
    stop: checkpoint.StopSignals,
) -> Session:
    """A session at the newest good checkpoint, or at step 0."""
    initial = initial_state(config, data, mesh)
    fingerprint = data.fingerprint()

    def target_for(meta, saved_config):
        conflicts = checkpoint.config_conflicts(saved_config, config)
        if conflicts:
            raise ValueError(
                f"{saved.workdir} holds a run with another config ("
                + "; ".join(conflicts)
                + "); pass --restart to set it aside and start over, or "
                "use another --workdir"
            )
        if meta["data"] != fingerprint:
            raise ValueError(
                f"{saved.workdir} holds a run trained on other data than "
                f"{config.dataset} {data.split.name} gives now; pass "
                "--restart to set it aside and start over"
            )
        position = Position(**meta["position"])
        return restore_target(config, data, mesh, initial, position)

    had_checkpoints = bool(saved.steps())
    restored = saved.restore_newest(target_for)
    if restored is None:
        if had_checkpoints:
            logger.warning("no readable checkpoint left; starting at step 0")
        return Session(initial, Position(), config, saved, stop, fingerprint)

    position = Position(**restored.meta["position"])
    logger.info(
        "resuming from the checkpoint at step %d (%s) in %s",
        restored.step,
        position.describe(),
        saved.directory,
    )
    return Session(restored.state, position, config, saved, stop, fingerprint)


def train_and_evaluate(
    config: Config,
    workdir: str | Path,
    progress: bool = True,
    restart: bool = False,
    tensorboard: bool = False,
) -> dict[str, Any]:
    """Trains both models on ``config``'s data and writes ``report.json``.

    The work directory receives ``config.json``, ``metrics.jsonl`` (one line
    per epoch), ``checkpoints/`` and ``report.json``. If it holds
    checkpoints of the same config, the run resumes from the newest good
    one; of another config, it is refused unless ``restart``, which moves
    the old run into ``replaced-<time>/``. SIGTERM or SIGINT save a
    checkpoint and raise ``checkpoint.Interrupted``. ``tensorboard`` also
    writes each epoch's metrics as TensorBoard scalars under
    ``workdir/tensorboard/`` (needs the ``tensorboard`` extra).
    ``progress`` shows progress bars: the epochs, and the download when a
    release must be fetched. Returns the report.
    """
    started = time.perf_counter()
    _check_config(config)
    if tensorboard:
        try:
            import tensorboardX  # noqa: F401
        except ImportError as error:
            raise ValueError(TENSORBOARD_MISSING) from error
    distributed.initialize_from_environment()
    mesh = make_mesh()
    check_batch_size(config.regressor.batch_size, mesh, "regressor.batch_size")
    check_batch_size(config.gan.batch_size, mesh, "gan.batch_size")
    is_writer = distributed.is_writer()
    progress = progress and is_writer
    if not is_writer:
        logger.setLevel(logging.WARNING)

    # Every process opens the checkpoint directory (Orbax saves are
    # collective); only process 0 writes the run's other files.
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if restart and is_writer:
        moved = checkpoint.set_aside_run(
            workdir, (checkpoint.CHECKPOINT_DIR, *RUN_FILES)
        )
        if moved is not None:
            logger.info("--restart: moved the previous run to %s", moved)

    data = load_data(config, progress)
    dataset, split = data.dataset, data.split
    devices, processes = jax.device_count(), jax.process_count()
    logger.info(
        "%s %s: %d training, %d validation, %d test ratings on %d %s in %d %s",
        dataset.name,
        split.name,
        len(data.train_part),
        len(data.validation),
        len(split.test),
        devices,
        "device" if devices == 1 else "devices",
        processes,
        "process" if processes == 1 else "processes",
    )

    tables = training.device_tables(dataset, mesh)

    with (
        checkpoint.Checkpoints(workdir, config.checkpoint.keep) as saved,
        checkpoint.StopSignals() as stop,
    ):
        session = _resume_or_start(config, data, mesh, saved, stop)
        if is_writer:
            evaluate.write_json_atomic(
                workdir / "config.json", config.to_dict()
            )
        log = MetricsLog(
            workdir / "metrics.jsonl",
            tensorboard_writer(workdir / "tensorboard")
            if tensorboard and is_writer
            else None,
        )
        log.keep_until(session.position.step)

        regressor_state, selection = fit_regressor(
            config,
            dataset,
            data.train_part,
            data.validation,
            tables,
            mesh,
            None,
            log,
            progress,
            session,
        )
        gan_state = fit_gan(
            config,
            dataset,
            data.train_part,
            tables,
            mesh,
            None,
            log,
            progress,
            session,
        )
        session.finish()
        log.close()

    report_key = jax.random.wrap_key_data(session.state.keys["report"])
    report_started = time.perf_counter()
    report = evaluate.build_report(
        config,
        split,
        regressor_state,
        gan_state,
        tables,
        report_key,
        mesh,
        progress,
    )
    report_seconds = time.perf_counter() - report_started
    report["regressor_selection"] = selection
    report["seconds"] = {
        **session.position.seconds,
        "report": report_seconds,
        "total": time.perf_counter() - started,
    }
    report["config"] = config.to_dict()
    if is_writer:
        evaluate.write_outputs(report, workdir)
    return report
