"""One whole run: load data, train the regressor and the GAN, report."""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from ratinggan import evaluate, metrics, predict, train
from ratinggan.config import Config
from ratinggan.data import Dataset, Ratings, holdout, load_split
from ratinggan.sharding import check_batch_size, make_mesh

logger = logging.getLogger(__name__)


class MetricsLog:
    """Appends one JSON object per line to ``metrics.jsonl`` (process 0)."""

    def __init__(self, path: Path | None):
        self.path = path if jax.process_index() == 0 else None

    def write(self, record: dict[str, Any]) -> None:
        if self.path is not None:
            with open(self.path, "a") as stream:
                stream.write(json.dumps(record, sort_keys=True) + "\n")


def _floats(tree) -> dict[str, float]:
    return {name: float(value) for name, value in tree.items()}


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
):
    """Trains the regressor, keeping the parameters of the epoch with the
    best validation RMSE; stops after ``patience`` epochs without one."""
    settings = config.regressor
    check_batch_size(settings.batch_size, mesh, "regressor.batch_size")
    init_key, loop_key = jax.random.split(key)
    state = train.create_regressor_state(
        settings, dataset, float(train_part.ratings.mean()), init_key, mesh
    )
    epoch_fn = train.make_epoch(
        functools.partial(train.regressor_step, l2=settings.l2),
        mesh,
        len(train_part),
        settings.batch_size,
    )
    ratings = train.device_ratings(train_part, dataset, mesh)
    low, high = dataset.levels[0], dataset.levels[-1]

    best = {"validation_rmse": float("inf"), "epoch": -1}
    best_params, waited = None, 0
    bar = tqdm(range(settings.epochs), desc="regressor", disable=not progress)
    for epoch in bar:
        state, epoch_metrics = epoch_fn(
            state, tables, ratings, jax.random.fold_in(loop_key, epoch)
        )
        record = _floats(epoch_metrics)
        train.check_finite(record, "regressor", epoch)
        predictions = predict.predict_ratings(
            state, tables, validation.users, validation.items
        )
        record["validation_rmse"] = metrics.rmse(
            np.clip(predictions, low, high), validation.ratings
        )
        log.write({"phase": "regressor", "epoch": epoch, **record})
        bar.set_postfix(val_rmse=f"{record['validation_rmse']:.4f}")

        if record["validation_rmse"] < best["validation_rmse"]:
            best = {
                "validation_rmse": record["validation_rmse"],
                "epoch": epoch,
            }
            # Copy: the next epoch donates (and so frees) the state's buffers.
            best_params, waited = jax.tree.map(jnp.copy, state.params), 0
        else:
            waited += 1
            if waited >= settings.patience:
                break
    return state.replace(params=best_params), best


def fit_gan(
    config: Config,
    dataset: Dataset,
    train_part: Ratings,
    tables,
    mesh,
    key: jax.Array,
    log: MetricsLog,
    progress: bool = True,
):
    """Trains the generator and critic for ``gan.epochs`` critic epochs."""
    settings = config.gan
    check_batch_size(settings.batch_size, mesh, "gan.batch_size")
    init_key, loop_key = jax.random.split(key)
    state = train.create_gan_state(settings, dataset, init_key, mesh)
    epoch_fn = train.make_epoch(
        functools.partial(train.gan_step, config=settings),
        mesh,
        len(train_part),
        settings.batch_size,
        group=settings.critic_steps,
    )
    ratings = train.device_ratings(train_part, dataset, mesh)

    bar = tqdm(range(settings.epochs), desc="gan", disable=not progress)
    for epoch in bar:
        state, epoch_metrics = epoch_fn(
            state, tables, ratings, jax.random.fold_in(loop_key, epoch)
        )
        record = _floats(epoch_metrics)
        train.check_finite(record, "gan", epoch)
        log.write({"phase": "gan", "epoch": epoch, **record})
        bar.set_postfix(
            critic=f"{record['critic_loss']:.3f}",
            generator=f"{record['generator_loss']:.3f}",
        )
    return train.with_average_generator(state)


def train_and_evaluate(
    config: Config, workdir: str | Path, progress: bool = True
) -> dict[str, Any]:
    """Trains both models on ``config``'s data and writes ``report.json``.

    The work directory receives ``config.json``, ``metrics.jsonl`` (one line
    per epoch), ``report.json``, ``report.md`` and PNG plots. Returns the
    report.
    """
    started = time.perf_counter()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    is_writer = jax.process_index() == 0
    if is_writer:
        (workdir / "config.json").write_text(config.to_json() + "\n")
    log = MetricsLog(workdir / "metrics.jsonl")

    split = load_split(
        config.dataset,
        config.data_dir,
        config.fold,
        config.seed,
        dataclasses.asdict(config.synthetic),
    )
    dataset = split.dataset
    train_part, validation = holdout(
        split.train, config.validation_fraction, config.seed
    )
    logger.info(
        "%s %s: %d training, %d validation, %d test ratings on %d devices",
        dataset.name,
        split.name,
        len(train_part),
        len(validation),
        len(split.test),
        jax.device_count(),
    )

    mesh = make_mesh()
    tables = train.device_tables(dataset, mesh)
    regressor_key, gan_key, report_key = jax.random.split(
        jax.random.key(config.seed), 3
    )

    regressor_started = time.perf_counter()
    regressor_state, selection = fit_regressor(
        config,
        dataset,
        train_part,
        validation,
        tables,
        mesh,
        regressor_key,
        log,
        progress,
    )
    gan_started = time.perf_counter()
    gan_state = fit_gan(
        config, dataset, train_part, tables, mesh, gan_key, log, progress
    )
    gan_finished = time.perf_counter()

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
    report["regressor_selection"] = selection
    report["seconds"] = {
        "regressor": gan_started - regressor_started,
        "gan": gan_finished - gan_started,
        "report": time.perf_counter() - gan_finished,
        "total": time.perf_counter() - started,
    }
    report["config"] = config.to_dict()
    if is_writer:
        evaluate.write_outputs(report, workdir)
    return report
