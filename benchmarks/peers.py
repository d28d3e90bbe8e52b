"""ratinggan side by side with its peers: scikit-surprise and CTGAN.

Install the peers (torch from the CPU index first: ``pip install ctgan``
alone pulls the multi-GB CUDA build of torch), then run every section:

    pip install torch --index-url https://download.pytorch.org/whl/cpu
    pip install -e '.[bench,report]'
    python benchmarks/peers.py

Sections (``--only``, comma-separated; all by default), in the order run:

- ``time``: time to accuracy on ML-100K u1. SVD (surprise defaults) is
  fitted on ratinggan's training part (the fold's base file less the
  seeded 5% validation part) and scored on that validation part: its RMSE
  is the target. Each regressor of ``--time-models`` (autorec, the default
  model, and factor, the fast one; ``TIME_MODELS`` holds their settings)
  is fitted twice with a per-epoch hook; the first fit compiles, the
  second finds every program in JAX's persistent compilation cache. Time
  to target is the wall time from the fit's start to the end of the first
  epoch whose validation RMSE is at or below the target, validation
  scoring included. Three figures: cold (compile included), warm
  (programs loaded from the cache), and training only (warm less the warm
  first epoch's excess over a steady one: the cache load and the first
  transfers); compile is the cold fit's first epoch less the warm one's.
- ``accuracy``: RMSE, MAE and fit seconds on ``--folds`` (ML-100K u1..u5
  and ``latest``, ml-latest-small's seeded 90/10 split): ratinggan's
  regressor and generator (defaults; trained on the base file less the
  validation part, which early stopping uses) against surprise's
  BaselineOnly, SVD, SVD++ and KNNBaseline (defaults, SVD and SVD++ seeded
  with random_state=0) fitted on the whole base file, all scored on the
  same test rows. ratinggan's fit seconds include its validation scoring;
  ``compile_s`` is its first epoch less the median later epoch (compile,
  or a cache load once a program was compiled in this process).
- ``gan``: ML-100K u1, ratinggan's GAN against CTGAN, both trained on the
  same rows (the training part above). CTGAN's table: age, gender,
  occupation, the 19 genre flags, year, the movie and the rating (discrete
  columns but age and year). Seconds per epoch are the median epoch after
  the first (ratinggan's first holds its compile; both are recorded);
  rows per second are training rows per epoch over that. Realism figures
  are the report card's, one draw per test pair: ratinggan draws for the
  exact (user, movie) pair; CTGAN cannot condition on a pair, so each test
  movie's pairs get ratings from CTGAN rows sampled with the movie as its
  condition (``sample(n, "movie", m)``; movies absent from training get
  unconditioned rows). The condition raises the odds of the movie, it
  does not force it: the share of rows that came out with the asked movie
  is recorded. The two-sample test uses the test pair's own user and movie
  features with each drawn rating, as the report card does, so CTGAN's
  generated user features are not judged.

Writes ``peers.json`` and ``peers.md`` into ``--output-dir`` (default
benchmarks/results), with the machine, its load average at start and end,
the backend, the device count and the package versions. ``--quick`` is a
smoke run: u1 only, a few epochs everywhere, surprise's SVD and SVD++
shortened; its figures mean nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.metadata
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

REPOSITORY = Path(__file__).resolve().parents[1]
SECTIONS = ("time", "accuracy", "gan")
SURPRISE_MODELS = ("BaselineOnly", "SVD", "SVD++", "KNNBaseline")
PACKAGES = (
    "ratinggan",
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "numpy",
    "scikit-surprise",
    "ctgan",
    "torch",
    "scikit-learn",
)
# Smoke-run settings: every code path, figures meaningless.
QUICK_CONFIG = {
    "regressor.epochs": 2,
    "gan.epochs": 2,
    "gan.pretrain_steps": 20,
}
QUICK_SURPRISE_EPOCHS = 2
# Regressors timed to SVD's RMSE: the default (autorec, the most accurate)
# and the factor model with the settings that gave it its best validation
# RMSE on ML-100K u1 (0.9155 at learning rate 3e-3 against 0.9201 at
# 1e-3; batch 512, l2 0.03, no weight decay).
TIME_MODELS = {
    "autorec": {},
    "factor": {
        "regressor.model": "factor",
        "regressor.batch_size": 512,
        "regressor.learning_rate": 3e-3,
        "regressor.l2": 0.03,
        "regressor.weight_decay": 0.0,
    },
}


# ------------------------------------------------------ pure helpers ----


def time_to_reach(
    curve: list[tuple[float, float]], target: float
) -> tuple[float, int] | None:
    """The first point of ``curve`` (seconds, RMSE), one per epoch, whose
    RMSE is at or below ``target``: ``(seconds, epoch)``, or None."""
    for epoch, (seconds, rmse) in enumerate(curve):
        if rmse <= target:
            return seconds, epoch
    return None


def epoch_durations(ends: list[float]) -> list[float]:
    """Each epoch's seconds from the elapsed time at each epoch's end."""
    return [
        end - start for start, end in zip([0.0, *ends[:-1]], ends, strict=True)
    ]


def steady_epoch_seconds(ends: list[float]) -> float:
    """The median epoch after the first (which holds any compile); the
    first epoch when it is the only one."""
    durations = epoch_durations(ends)
    return statistics.median(durations[1:] or durations)


def first_epoch_excess(ends: list[float]) -> float:
    """How much longer the first epoch took than a steady one: compile, or
    loading a program compiled before (0 with a single epoch)."""
    if len(ends) < 2:
        return 0.0
    return max(0.0, ends[0] - steady_epoch_seconds(ends))


def mean_or_none(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return float(np.mean(known)) if known else None


def _cell(value, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return f"{value:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def format_markdown(results: dict[str, Any]) -> str:
    """The results as Markdown: how they were made, then a table per
    section that ran."""
    machine = results["machine"]
    versions = ", ".join(
        f"{name} {version}"
        for name, version in results["versions"].items()
        if version is not None
    )
    lines = [
        "# ratinggan against its peers",
        "",
        f"Command: `{results['command']}`"
        + (
            " (--quick: a smoke run, figures meaningless)"
            if results["quick"]
            else ""
        ),
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores "
        f"({machine['usable_cores']} usable), load average "
        f"{_load(machine['load_start'])} at start and "
        f"{_load(machine['load_end'])} at end; {machine['platform']}. "
        f"JAX backend {results['backend']}, {results['devices']} device(s). "
        f"{results['wall_seconds']:.0f} s in all.",
        "",
        f"Versions: {versions}.",
    ]
    if "time" in results:
        lines += ["", *_time_section(results["time"])]
    if "accuracy" in results:
        lines += ["", *_accuracy_section(results["accuracy"])]
    if "gan" in results:
        lines += ["", *_gan_section(results["gan"])]
    return "\n".join(lines) + "\n"


def _load(load: list[float]) -> str:
    return " / ".join(f"{value:.2f}" for value in load)


def _accuracy_section(accuracy: dict[str, Any]) -> list[str]:
    folds = list(accuracy["folds"])
    models = list(next(iter(accuracy["folds"].values())))
    ml100k = [fold for fold in folds if fold != "latest"]
    lines = [
        "## Accuracy (test RMSE; fit seconds)",
        "",
        "ratinggan trains on the base file less its seeded 5% validation "
        "part (early stopping); surprise on the whole base file. Fit "
        "seconds of ratinggan include compile (or a compile-cache load) "
        "and validation scoring; `compile s` is its estimate.",
        "",
    ]
    header = ["model", *[f"{fold} RMSE" for fold in folds]]
    if ml100k:
        header += ["ML-100K mean RMSE", "mean MAE", "mean fit s"]
    header += ["compile s (first fold)"]
    rows = []
    for model in models:
        cells = [model]
        scores = [accuracy["folds"][fold][model] for fold in folds]
        cells += [_cell(score["rmse"]) for score in scores]
        if ml100k:
            summary = accuracy["ml100k_means"][model]
            cells += [
                _cell(summary["rmse"]),
                _cell(summary["mae"]),
                _cell(summary["fit_s"], 1),
            ]
        cells.append(_cell(scores[0].get("compile_s"), 1))
        rows.append(cells)
    lines += _table(header, rows)
    return lines


def _time_section(timing: dict[str, Any]) -> list[str]:
    lines = [
        "## Time to SVD's RMSE (ML-100K, validation part)",
        "",
        "Target: SVD's RMSE on the validation part, SVD fitted on the same "
        "training part. Times from the regressor fit's start to the end of "
        "the first epoch at or below the target: with compiling (`cold`), "
        "with every program loaded from JAX's persistent cache (`warm`), "
        "and `training only`, the warm figure less the warm first epoch's "
        "excess over a steady epoch (the cache load and first transfers).",
        "",
    ]
    header = [
        "fold",
        "regressor",
        "SVD val RMSE",
        "SVD fit s",
        "reached at epoch",
        "s cold",
        "s warm",
        "s training only",
        "compile s",
        "best val RMSE",
    ]
    rows = []
    for fold, models in timing.items():
        for model, row in models.items():
            rows.append(
                [
                    fold,
                    model,
                    _cell(row["svd_validation_rmse"]),
                    _cell(row["svd_fit_s"], 2),
                    _cell(None if row["epoch"] is None else str(row["epoch"])),
                    _cell(row["seconds_cold"], 2),
                    _cell(row["seconds_warm"], 2),
                    _cell(row.get("seconds_training"), 2),
                    _cell(row["compile_s"], 1),
                    _cell(row["best_validation_rmse"]),
                ]
            )
    lines += _table(header, rows)
    return lines


def _gan_section(gan: dict[str, Any]) -> list[str]:
    keys = (
        ("epochs", "epochs", 0),
        ("seconds_per_epoch", "s per epoch", 2),
        ("first_epoch_s", "first epoch s", 2),
        ("preparation_s", "data preparation s", 1),
        ("rows_per_second", "rows per s", 0),
        ("w1", "W1 all", 4),
        ("w1_per_movie", "W1 movie", 4),
        ("w1_movie_means", "W1 movie means", 4),
        ("w1_per_genre", "W1 genre", 4),
        ("w1_per_user", "W1 user", 4),
        ("c2st_auc", "C2ST AUC", 4),
    )
    names = list(gan["models"])
    lines = [
        f"## Synthetic ratings, {gan['fold']}: ratinggan GAN and CTGAN",
        "",
        gan["mapping"],
        "",
    ]
    rows = [
        [label]
        + [
            _cell(gan["models"][name].get(key), digits)
            if not isinstance(gan["models"][name].get(key), int)
            else str(gan["models"][name][key])
            for name in names
        ]
        for key, label, digits in keys
    ]
    lines += _table(["figure", *names], rows)
    return lines


# ----------------------------------------------------------- machine ----


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_start": list(os.getloadavg()),
    }


def package_versions() -> dict[str, str | None]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def enable_compile_cache(directory: str) -> None:
    """Every compiled program goes to (and is found in) ``directory``."""
    import jax

    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


# ---------------------------------------------------------- surprise ----


def surprise_trainset(part, scale: tuple[float, float]):
    """A surprise trainset of the same parsed rows (indices as raw IDs)."""
    import pandas as pd
    import surprise

    frame = pd.DataFrame(
        {
            "user": part.users.astype(int),
            "item": part.items.astype(int),
            "rating": part.ratings.astype(float),
        }
    )
    reader = surprise.Reader(rating_scale=scale)
    return surprise.Dataset.load_from_df(frame, reader).build_full_trainset()


def surprise_model(name: str, quick: bool):
    """A surprise algorithm with its defaults (SVD and SVD++ seeded)."""
    import surprise

    shorter = {"n_epochs": QUICK_SURPRISE_EPOCHS} if quick else {}
    makers = {
        "BaselineOnly": lambda: surprise.BaselineOnly(verbose=False),
        "SVD": lambda: surprise.SVD(random_state=0, **shorter),
        "SVD++": lambda: surprise.SVDpp(random_state=0, **shorter),
        "KNNBaseline": lambda: surprise.KNNBaseline(verbose=False),
    }
    return makers[name]()


def fit_surprise(name, train_part, test, scale, quick) -> dict[str, Any]:
    """Fits one surprise model; its fit seconds and test predictions."""
    trainset = surprise_trainset(train_part, scale)
    model = surprise_model(name, quick)
    started = time.perf_counter()
    model.fit(trainset)
    fit_seconds = time.perf_counter() - started
    predictions = np.array(
        [
            model.predict(int(u), int(i)).est
            for u, i in zip(test.users, test.items, strict=True)
        ]
    )
    return {"fit_s": fit_seconds, "predictions": predictions}


# --------------------------------------------------------- ratinggan ----


@dataclasses.dataclass
class Fitted:
    """A ratinggan fit with its per-epoch clock."""

    state: Any
    epoch_ends: list[float]
    records: list[dict[str, Any]]
    seconds: float
    selection: dict[str, Any] | None = None


def _clocked(fit: Callable[[Callable], tuple]) -> tuple[tuple, Fitted]:
    ends, records = [], []
    started = time.perf_counter()

    def on_epoch(record):
        ends.append(time.perf_counter() - started)
        records.append(record)

    outputs = fit(on_epoch)
    seconds = time.perf_counter() - started
    return outputs, Fitted(None, ends, records, seconds)


def run_keys(seed: int):
    """The regressor's and the GAN's keys as run.train_and_evaluate
    derives them, so the figures match ``ratinggan train``."""
    import jax

    regressor_key, gan_key, _ = jax.random.split(jax.random.key(seed), 3)
    return regressor_key, gan_key


def fit_regressor(config, split, parts) -> Fitted:
    from ratinggan import run, training
    from ratinggan.sharding import make_mesh

    mesh = make_mesh()
    tables = training.device_tables(split.dataset, mesh)
    train_part, validation = parts
    (state, selection), fitted = _clocked(
        lambda hook: run.fit_regressor(
            config,
            split.dataset,
            train_part,
            validation,
            tables,
            mesh,
            run_keys(config.seed)[0],
            run.MetricsLog(None),
            progress=False,
            on_epoch=hook,
        )
    )
    fitted.state, fitted.selection = (state, tables), selection
    return fitted


def fit_gan(config, split, train_part) -> Fitted:
    from ratinggan import run, training
    from ratinggan.sharding import make_mesh

    mesh = make_mesh()
    tables = training.device_tables(split.dataset, mesh)
    state, fitted = _clocked(
        lambda hook: run.fit_gan(
            config,
            split.dataset,
            train_part,
            tables,
            mesh,
            run_keys(config.seed)[1],
            run.MetricsLog(None),
            progress=False,
            on_epoch=hook,
        )
    )
    fitted.state = (state, tables)
    return fitted


def regressor_scores(config, split, fitted: Fitted) -> dict[str, Any]:
    from ratinggan import evaluate, predict

    state, tables = fitted.state
    predictions = predict.predict_ratings(
        state, tables, split.test.users, split.test.items
    )
    return {
        **evaluate.score_points(split.dataset, split.test, predictions),
        "fit_s": fitted.seconds,
        "compile_s": first_epoch_excess(fitted.epoch_ends),
        "epochs": len(fitted.epoch_ends),
        "best_epoch": fitted.selection["epoch"],
    }


def generator_scores(config, split, fitted: Fitted) -> dict[str, Any]:
    import jax

    from ratinggan import evaluate, predict

    state, tables = fitted.state
    probs = predict.generator_distribution(
        state.generator,
        config.gan,
        tables,
        split.test.users,
        split.test.items,
        jax.random.key(config.seed),
        config.eval.distribution_draws,
    ).astype(np.float64)
    row = evaluate.score_distribution(split.dataset, split.test, probs)
    return {
        "rmse": row["rmse"],
        "mae": row["mae"],
        "fit_s": fitted.seconds,
        "compile_s": first_epoch_excess(fitted.epoch_ends),
        "epochs": len(fitted.epoch_ends),
    }


def generator_draws(config, split, fitted: Fitted) -> np.ndarray:
    import jax

    from ratinggan import predict

    state, tables = fitted.state
    return predict.generator_sample(
        state.generator,
        config.gan,
        tables,
        split.test.users,
        split.test.items,
        jax.random.key(config.seed + 1),
    )


def realism(config, split, draws: np.ndarray) -> dict[str, float]:
    """The report card's realism figures of one draw per test pair."""
    from ratinggan import evaluate, metrics

    dataset, test = split.dataset, split.test
    row, _ = evaluate.score_realism(
        dataset, test, draws, config.eval.min_slice_ratings
    )
    # The report card's subsample of pairs for the two-sample test.
    pairs = np.arange(len(test))
    if len(test) > config.eval.c2st_max_pairs:
        pairs = np.sort(
            np.random.default_rng(config.seed).choice(
                len(test), config.eval.c2st_max_pairs, replace=False
            )
        )
    subset = test.take(pairs)
    row["c2st_auc"] = metrics.classifier_two_sample_auc(
        evaluate.comparison_rows(
            dataset, subset, dataset.level_index(subset.ratings)
        ),
        evaluate.comparison_rows(dataset, subset, draws[pairs]),
        config.seed,
    )
    return row


# ------------------------------------------------------------- CTGAN ----


def ctgan_table(dataset, part):
    """CTGAN's training table: user features, movie features, the movie
    and the rating, one row per rating."""
    import pandas as pd

    columns = {}
    users, items = part.users, part.items
    age = dataset.user_feature_names.index("age")
    columns["age"] = dataset.user_features[users, age].astype(float)
    for group in ("gender", "occupation"):
        labels, codes = dataset.user_groups[group]
        columns[group] = np.asarray(labels, dtype=object)[codes[users]]
    for g, name in enumerate(dataset.genre_names):
        columns[f"genre={name}"] = dataset.genres[items, g].astype(int)
    year = dataset.item_feature_names.index("year")
    columns["year"] = dataset.item_features[items, year].astype(float)
    columns["movie"] = items.astype(str)
    columns["rating"] = part.ratings.astype(str)
    frame = pd.DataFrame(columns)
    discrete = [name for name in frame.columns if name not in ("age", "year")]
    return frame, discrete


@contextlib.contextmanager
def ctgan_epoch_clock(marks: list[float]) -> Iterator[None]:
    """Notes the elapsed time when CTGAN's epochs start and at each
    epoch's end.

    CTGAN's fit loops over ``tqdm(range(epochs))`` from its module, after
    preparing its data; this swaps in an iterator that reads the clock.
    """
    from ctgan.synthesizers import ctgan as module

    original = module.tqdm
    started = time.perf_counter()

    class Clock:
        def __init__(self, iterable, **_):
            self.iterable = iterable

        def __iter__(self):
            for value in self.iterable:
                marks.append(time.perf_counter() - started)
                yield value
            marks.append(time.perf_counter() - started)

        def set_description(self, *_):
            pass

    module.tqdm = Clock
    try:
        yield
    finally:
        module.tqdm = original


@dataclasses.dataclass
class CtganFit:
    model: Any
    # Seconds of data preparation (CTGAN's transformer) before epoch 1.
    preparation_s: float
    # Each epoch's end, in seconds from epoch 1's start.
    epoch_ends: list[float]
    seconds: float
    rows_per_epoch: int


def fit_ctgan(dataset, train_part, epochs: int, seed: int) -> CtganFit:
    """CTGAN with its defaults but ``epochs``, timed."""
    import ctgan
    import torch

    torch.manual_seed(seed)
    frame, discrete = ctgan_table(dataset, train_part)
    model = ctgan.CTGAN(epochs=epochs)
    model.set_random_state(seed)
    marks: list[float] = []
    started = time.perf_counter()
    with ctgan_epoch_clock(marks):
        model.fit(frame, discrete)
    seconds = time.perf_counter() - started
    # Epoch boundaries: the first mark is the loop's start, and each
    # epoch's end is the next epoch's start.
    preparation = marks[0]
    ends = [mark - preparation for mark in marks[1:]][:epochs]
    steps = max(len(frame) // model._batch_size, 1)
    return CtganFit(
        model, preparation, ends, seconds, steps * model._batch_size
    )


def ctgan_draws(model, dataset, train_part, test) -> tuple[np.ndarray, dict]:
    """One CTGAN rating per test pair: each test movie's pairs take the
    ratings of rows sampled with that movie as the condition (movies never
    seen in training: unconditioned rows)."""
    draws = np.zeros(len(test), np.int32)
    seen = set(np.unique(train_part.items).tolist())
    honoured = asked = unconditioned = 0
    for movie in np.unique(test.items):
        rows = np.flatnonzero(test.items == movie)
        if int(movie) in seen:
            sample = model.sample(len(rows), "movie", str(movie))
            honoured += int((sample["movie"] == str(movie)).sum())
            asked += len(rows)
        else:
            sample = model.sample(len(rows))
            unconditioned += len(rows)
        values = sample["rating"].astype(float).to_numpy()
        draws[rows] = dataset.level_index(values.astype(np.float32))
    return draws, {
        "condition_honoured_share": honoured / max(asked, 1),
        "unconditioned_pairs": unconditioned,
    }


# ---------------------------------------------------------- sections ----


def load_fold(fold: str, data_dir: Path, latest_dir: Path):
    from ratinggan.data import load_split, read_ml100k

    if fold == "latest":
        return load_split("ml-latest-small", str(latest_dir))
    return read_ml100k(data_dir, fold)


def scale_of(split) -> tuple[float, float]:
    levels = split.dataset.levels
    return float(levels[0]), float(levels[-1])


def validation_parts(config, split):
    from ratinggan.data import holdout

    return holdout(split.train, config.validation_fraction, config.seed)


def run_time_section(config, args) -> dict[str, Any]:
    from ratinggan import metrics
    from ratinggan.config import override

    results = {}
    for fold in args.time_folds.split(","):
        split = load_fold(fold, args.data_dir, args.latest_dir)
        train_part, validation = parts = validation_parts(config, split)
        svd = fit_surprise(
            "SVD", train_part, validation, scale_of(split), args.quick
        )
        target = metrics.rmse(svd["predictions"], validation.ratings)
        results[fold] = {}
        for model in args.time_models.split(","):
            model_config = override(config, TIME_MODELS[model])
            curves, ends = {}, {}
            for attempt in ("cold", "warm"):
                fitted = fit_regressor(model_config, split, parts)
                ends[attempt] = fitted.epoch_ends
                curves[attempt] = [
                    (end, record["validation_rmse"])
                    for end, record in zip(
                        fitted.epoch_ends, fitted.records, strict=True
                    )
                ]
                print(
                    f"time {fold} {model} {attempt}: {curves[attempt]}",
                    flush=True,
                )
            cold = time_to_reach(curves["cold"], target)
            warm = time_to_reach(curves["warm"], target)
            results[fold][model] = {
                "settings": TIME_MODELS[model],
                "svd_validation_rmse": target,
                "svd_fit_s": svd["fit_s"],
                "epoch": None if warm is None else warm[1],
                "seconds_cold": None if cold is None else cold[0],
                "seconds_warm": None if warm is None else warm[0],
                "seconds_training": None
                if warm is None
                else warm[0] - first_epoch_excess(ends["warm"]),
                "compile_s": curves["cold"][0][0] - curves["warm"][0][0],
                "best_validation_rmse": min(r for _, r in curves["warm"]),
                "curves": curves,
            }
    return results


def run_accuracy_section(config, args, gan_fits: dict) -> dict[str, Any]:
    folds = {}
    for fold in args.folds.split(","):
        split = load_fold(fold, args.data_dir, args.latest_dir)
        parts = validation_parts(config, split)
        row = {}
        fitted = fit_regressor(config, split, parts)
        row["ratinggan regressor"] = regressor_scores(config, split, fitted)
        gan = fit_gan(config, split, parts[0])
        gan_fits[fold] = (split, gan)
        row["ratinggan generator"] = generator_scores(config, split, gan)
        for name in SURPRISE_MODELS:
            fit = fit_surprise(
                name, split.train, split.test, scale_of(split), args.quick
            )
            row[name] = {
                "rmse": float(
                    np.sqrt(
                        np.mean((fit["predictions"] - split.test.ratings) ** 2)
                    )
                ),
                "mae": float(
                    np.mean(np.abs(fit["predictions"] - split.test.ratings))
                ),
                "fit_s": fit["fit_s"],
            }
        for name, scores in row.items():
            print(f"accuracy {fold} {name}: {_brief(scores)}", flush=True)
        folds[fold] = row

    ml100k = [fold for fold in folds if fold != "latest"]
    means = {
        model: {
            key: mean_or_none([folds[f][model].get(key) for f in ml100k])
            for key in ("rmse", "mae", "fit_s")
        }
        for model in next(iter(folds.values()))
    }
    return {"folds": folds, "ml100k_means": means if ml100k else {}}


def _brief(scores: dict[str, Any]) -> str:
    return ", ".join(
        f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
        for k, v in scores.items()
    )


def run_gan_section(config, args, gan_fits: dict) -> dict[str, Any]:
    fold = "u1"
    if fold in gan_fits:
        split, gan = gan_fits[fold]
    else:
        split = load_fold(fold, args.data_dir, args.latest_dir)
        gan = fit_gan(config, split, validation_parts(config, split)[0])
    train_part = validation_parts(config, split)[0]
    rows_per_epoch = gan.records[0]["step"] * (
        config.gan.batch_size * config.gan.critic_steps
    )
    ours = {
        "epochs": len(gan.epoch_ends),
        "train_s": gan.seconds,
        "seconds_per_epoch": steady_epoch_seconds(gan.epoch_ends),
        "first_epoch_s": gan.epoch_ends[0],
        "rows_per_epoch": rows_per_epoch,
    }
    ours["rows_per_second"] = rows_per_epoch / ours["seconds_per_epoch"]
    ours.update(realism(config, split, generator_draws(config, split, gan)))
    print(f"gan ratinggan: {_brief(ours)}", flush=True)

    fit = fit_ctgan(split.dataset, train_part, args.ctgan_epochs, config.seed)
    theirs = {
        "epochs": len(fit.epoch_ends),
        "train_s": fit.seconds,
        "preparation_s": fit.preparation_s,
        "seconds_per_epoch": steady_epoch_seconds(fit.epoch_ends),
        "first_epoch_s": fit.epoch_ends[0],
        "rows_per_epoch": fit.rows_per_epoch,
    }
    theirs["rows_per_second"] = fit.rows_per_epoch / theirs["seconds_per_epoch"]
    model = fit.model
    draws, mapping = ctgan_draws(model, split.dataset, train_part, split.test)
    theirs.update(mapping)
    theirs.update(realism(config, split, draws))
    print(f"gan CTGAN: {_brief(theirs)}", flush=True)
    return {
        "fold": fold,
        "train_rows": len(train_part),
        "mapping": (
            "One draw per test pair. ratinggan: drawn for the pair itself. "
            "CTGAN: each test movie's pairs take ratings of rows sampled "
            "with that movie as the condition ("
            f"{mapping['condition_honoured_share']:.1%} of them came out "
            f"with that movie; {mapping['unconditioned_pairs']} pairs of "
            "movies unseen in training got unconditioned rows). The "
            "two-sample test pairs each drawn rating with the test pair's "
            "own features. Seconds per epoch: median epoch after the first."
        ),
        "models": {"ratinggan GAN": ours, "CTGAN": theirs},
    }


# -------------------------------------------------------------- main ----


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help="sections to run, comma-separated: time, accuracy, gan",
    )
    parser.add_argument(
        "--folds",
        help="accuracy folds: u1..u5 and latest (default all; u1 --quick)",
    )
    parser.add_argument(
        "--time-folds", default="u1", help="time-to-accuracy folds"
    )
    parser.add_argument(
        "--time-models",
        default=",".join(TIME_MODELS),
        help="regressors timed to SVD's RMSE: autorec, factor",
    )
    parser.add_argument(
        "--data-dir", type=Path, default=Path("../shared/data/ml-100k")
    )
    parser.add_argument(
        "--latest-dir",
        type=Path,
        default=Path("../shared/data/ml-latest-small"),
    )
    parser.add_argument(
        "--ctgan-epochs",
        type=int,
        default=30,
        help="CTGAN's epochs (its default, 300, takes about an hour here)",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run")
    parser.add_argument(
        "--output-dir", type=Path, default=REPOSITORY / "benchmarks/results"
    )
    args = parser.parse_args(argv)
    unknown = set(args.only.split(",")) - set(SECTIONS)
    if unknown:
        parser.error(
            f"--only {args.only}: unknown {', '.join(sorted(unknown))}; "
            f"expected some of {', '.join(SECTIONS)}"
        )
    unknown_models = set(args.time_models.split(",")) - set(TIME_MODELS)
    if unknown_models:
        parser.error(
            f"--time-models {args.time_models}: unknown "
            f"{', '.join(sorted(unknown_models))}; expected some of "
            f"{', '.join(TIME_MODELS)}"
        )
    if args.folds is None:
        args.folds = "u1" if args.quick else "u1,u2,u3,u4,u5,latest"
    if args.quick and args.ctgan_epochs == 30:
        args.ctgan_epochs = 2
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    started = time.perf_counter()
    machine = machine_info()
    enable_compile_cache(tempfile.mkdtemp(prefix="peers-jax-cache-"))

    import jax

    from ratinggan.config import Config, override

    config = override(Config(), QUICK_CONFIG if args.quick else {})
    results: dict[str, Any] = {
        "command": " ".join(["python benchmarks/peers.py", *sys.argv[1:]]),
        "quick": args.quick,
        "machine": machine,
        "backend": jax.default_backend(),
        "devices": jax.device_count(),
        "versions": package_versions(),
        "ctgan_epochs": args.ctgan_epochs,
        "config": config.to_dict(),
    }
    runners = {
        "time": lambda: run_time_section(config, args),
        "accuracy": lambda: run_accuracy_section(config, args, gan_fits),
        "gan": lambda: run_gan_section(config, args, gan_fits),
    }
    gan_fits: dict = {}
    for section in SECTIONS:
        if section in args.only.split(","):
            results[section] = runners[section]()
            # Written after each section: a failure later keeps these.
            write_results(results, args.output_dir, started)
    print(format_markdown(results))


def write_results(results: dict, output_dir: Path, started: float) -> None:
    from ratinggan.evaluate import write_json_atomic, write_text_atomic

    results["machine"]["load_end"] = list(os.getloadavg())
    results["wall_seconds"] = time.perf_counter() - started
    output_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(output_dir / "peers.json", results)
    write_text_atomic(output_dir / "peers.md", format_markdown(results))


if __name__ == "__main__":
    main()
