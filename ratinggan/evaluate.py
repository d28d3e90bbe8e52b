"""The report card: every model and baseline scored on the test part.

Rows are the regressor, the generator and the baselines (global and
per-movie training histograms, the regressor plus rounded Gaussian noise, a
softmax classifier over the levels, and on synthetic data the true
distribution). Each row has, where it applies:

- point accuracy: RMSE and MAE (the regressor's clipped prediction, or a
  distribution's mean);
- per-pair distribution: NLL and RPS;
- realism of one drawn rating per test pair against the real test ratings:
  W1 overall, per movie and per user (count-weighted over slices with
  enough test ratings), per genre, per user group, between per-movie means,
  per movie with the full distribution instead of a draw, and a classifier
  two-sample test (ROC AUC);
- usefulness: the regressor retrained on the model's ratings for the
  training pairs (train-synthetic-test-real), scored on the real test part;
- on synthetic data, the mean W1 of each pair's distribution to the truth.

The regressor's realism figures use its prediction rounded to the nearest
level, which shows what a point model does to the rating distribution; its
usefulness figure is its own (trained on real ratings).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from ratinggan import baselines, metrics, predict
from ratinggan.config import Config
from ratinggan.data import Dataset, Ratings, Split, holdout
from ratinggan.sharding import make_mesh

logger = logging.getLogger(__name__)

# (key in a row, label in tables), in display order.
COLUMNS = (
    ("rmse", "RMSE"),
    ("mae", "MAE"),
    ("nll", "NLL"),
    ("rps", "RPS"),
    ("w1", "W1 all"),
    ("w1_per_movie", "W1 movie"),
    ("w1_per_movie_dist", "W1 movie dist"),
    ("w1_per_user", "W1 user"),
    ("w1_per_genre", "W1 genre"),
    ("w1_gender", "W1 gender"),
    ("w1_age", "W1 age"),
    ("w1_occupation", "W1 occupation"),
    ("w1_movie_means", "W1 movie means"),
    ("c2st_auc", "C2ST AUC"),
    ("tstr_rmse", "TSTR RMSE"),
    ("tstr_mae", "TSTR MAE"),
    ("w1_to_truth", "W1 to truth"),
)

# Short model names for table headers.
SHORT_NAMES = {
    "regressor": "regressor",
    "generator": "generator",
    "global_histogram": "global",
    "movie_histogram": "movie",
    "regressor_noise": "reg+noise",
    "softmax": "softmax",
    "true_distribution": "truth",
}

LEGEND = (
    "Lower is better everywhere except C2ST AUC, where 0.5 means the "
    "classifier cannot tell generated rows from real ones. W1 rows compare "
    "one drawn rating per test pair with the real ones (W1 movie dist uses "
    "each pair's full distribution instead); the regressor's draw is its "
    "prediction rounded to the scale, and its TSTR figure is its own, "
    "trained on real ratings."
)

# Well-rated movies (most test ratings) whose histograms are kept for plots.
PLOTTED_MOVIES = 4


@dataclasses.dataclass(frozen=True)
class Model:
    """A model as the report sees it.

    ``probs(users, items)`` gives each pair's distribution ``[n, K]`` (None
    for a point model, which gives ``points(users, items)`` instead);
    ``sample(users, items, seed)`` one level index per pair, for realism
    and for train-synthetic-test-real.
    """

    probs: Callable[[np.ndarray, np.ndarray], np.ndarray] | None
    sample: Callable[[np.ndarray, np.ndarray, int], np.ndarray]
    points: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None


def draw_levels(probs: np.ndarray, seed: int) -> np.ndarray:
    """One level index per row drawn from ``probs`` ``[n, K]``."""
    uniform = np.random.default_rng(seed).random(len(probs))[:, None]
    return np.minimum(
        (uniform > np.cumsum(probs, 1)).sum(1), probs.shape[1] - 1
    )


def nearest_levels(values: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """The index of the level nearest to each value."""
    return np.abs(values[:, None] - levels[None, :]).argmin(1)


def _distribution_model(probs_fn) -> Model:
    return Model(
        probs=probs_fn,
        sample=lambda u, i, seed: draw_levels(probs_fn(u, i), seed),
    )


# ------------------------------------------------------------- models ----


def build_models(
    config: Config,
    split: Split,
    regressor_state,
    gan_state,
    tables,
    key: jax.Array,
    mesh,
    progress: bool = False,
) -> dict[str, Model]:
    """The regressor, the generator and every baseline, as ``Model``s."""
    dataset, levels = split.dataset, split.dataset.levels
    distribution_key, sample_key, classifier_key = jax.random.split(key, 3)

    def regress(users, items):
        return predict.predict_ratings(regressor_state, tables, users, items)

    def generator_probs(users, items):
        return predict.generator_distribution(
            gan_state.generator,
            config.gan,
            tables,
            users,
            items,
            distribution_key,
            config.eval.distribution_draws,
        ).astype(np.float64)

    def generator_sample(users, items, seed):
        return predict.generator_sample(
            gan_state.generator,
            config.gan,
            tables,
            users,
            items,
            jax.random.fold_in(sample_key, seed),
        )

    train_ratings = split.train
    noise_std = baselines.residual_std(
        regress(train_ratings.users, train_ratings.items),
        train_ratings.ratings,
    )
    global_probs = baselines.global_histogram(dataset, train_ratings)
    movie_probs = baselines.movie_histograms(dataset, train_ratings)
    train_part, validation = holdout(
        train_ratings, config.validation_fraction, config.seed
    )
    classifier, _ = baselines.fit_classifier(
        config.regressor,
        dataset,
        train_part,
        validation,
        tables,
        mesh,
        classifier_key,
        progress,
    )

    models = {
        "regressor": Model(
            probs=None,
            sample=lambda u, i, seed: nearest_levels(regress(u, i), levels),
            points=regress,
        ),
        "generator": Model(probs=generator_probs, sample=generator_sample),
        "global_histogram": _distribution_model(
            lambda u, i: np.tile(global_probs, (len(u), 1))
        ),
        "movie_histogram": _distribution_model(lambda u, i: movie_probs[i]),
        "regressor_noise": _distribution_model(
            lambda u, i: baselines.rounded_gaussian_probs(
                regress(u, i), noise_std, levels
            )
        ),
        "softmax": _distribution_model(
            lambda u, i: baselines.classifier_probs(classifier, tables, u, i)
        ),
    }
    if dataset.true_probs is not None:
        models["true_distribution"] = _distribution_model(dataset.true_probs)
    return models


# ------------------------------------------------------------ scoring ----


def score_points(
    dataset: Dataset, test: Ratings, predictions: np.ndarray
) -> dict[str, float]:
    """RMSE and MAE of point predictions, clipped to the scale."""
    clipped = np.clip(predictions, dataset.levels[0], dataset.levels[-1])
    return {
        "rmse": metrics.rmse(clipped, test.ratings),
        "mae": metrics.mae(clipped, test.ratings),
    }


def score_distribution(
    dataset: Dataset, test: Ratings, probs: np.ndarray
) -> dict[str, float]:
    """Point accuracy of the mean, NLL and RPS of a per-pair distribution."""
    real = dataset.level_index(test.ratings)
    row = score_points(
        dataset, test, metrics.expected_rating(probs, dataset.levels)
    )
    row["nll"] = metrics.nll(probs, real)
    row["rps"] = metrics.rps(probs, real)
    if dataset.true_probs is not None:
        truth = dataset.true_probs(test.users, test.items)
        row["w1_to_truth"] = float(
            np.mean(metrics.wasserstein_levels(probs, truth, dataset.levels))
        )
    return row


def score_realism(
    dataset: Dataset,
    test: Ratings,
    draws: np.ndarray,
    min_slice: int,
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """W1 of one draw per test pair against the real test ratings.

    Returns the row's figures and, per genre and per user group, each
    slice's own W1 (for the detailed tables).
    """
    levels = dataset.levels
    real = dataset.level_index(test.ratings)
    row = {
        "w1": metrics.wasserstein(real, draws, levels),
        "w1_per_movie": metrics.sliced_wasserstein(
            test.items, real, draws, levels, min_slice
        )[0],
        "w1_per_user": metrics.sliced_wasserstein(
            test.users, real, draws, levels, min_slice
        )[0],
        "w1_movie_means": metrics.slice_mean_wasserstein(
            test.items, levels[real], levels[draws], min_slice
        )[0],
    }
    details = {}

    if dataset.genre_names:
        rows, genre_codes = metrics.membership_rows(dataset.genres, test.items)
        row["w1_per_genre"] = metrics.sliced_wasserstein(
            genre_codes, real[rows], draws[rows], levels, min_slice
        )[0]
        details["genre"] = _named_slices(
            dataset.genre_names,
            genre_codes,
            real[rows],
            draws[rows],
            levels,
            min_slice,
        )

    for group, (labels, codes) in dataset.user_groups.items():
        user_codes = codes[test.users]
        row[f"w1_{group}"] = metrics.sliced_wasserstein(
            user_codes, real, draws, levels, min_slice
        )[0]
        details[group] = _named_slices(
            labels, user_codes, real, draws, levels, min_slice
        )
    return row, details


def _named_slices(names, codes, real, draws, levels, min_slice):
    ids, distances, _ = metrics.slice_wasserstein(
        codes, real, draws, levels, min_slice
    )
    return {
        str(names[i]): float(d) for i, d in zip(ids, distances, strict=True)
    }


def score_model(
    dataset: Dataset,
    test: Ratings,
    model: Model,
    draws: np.ndarray,
    min_slice: int,
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Accuracy, distribution and realism figures of one model; the
    per-genre and per-group W1 details come back separately."""
    if model.probs is None:
        row = score_points(dataset, test, model.points(test.users, test.items))
    else:
        probs = model.probs(test.users, test.items)
        row = score_distribution(dataset, test, probs)
        row["w1_per_movie_dist"] = metrics.sliced_wasserstein(
            test.items,
            dataset.level_index(test.ratings),
            probs,
            dataset.levels,
            min_slice,
        )[0]
    realism, details = score_realism(dataset, test, draws, min_slice)
    return {**row, **realism}, details


def comparison_rows(
    dataset: Dataset, test: Ratings, levels_index: np.ndarray
) -> np.ndarray:
    """Rows ``[n, D + 1]`` for the two-sample test: user features, movie
    features and the rating value."""
    return np.concatenate(
        [
            dataset.user_features[test.users],
            dataset.item_features[test.items],
            dataset.levels[levels_index][:, None],
        ],
        axis=1,
    )


def train_synthetic_test_real(
    config: Config,
    split: Split,
    model: Model,
    tables,
    mesh,
    key: jax.Array,
    seed: int,
) -> dict[str, float]:
    """Retrains the regressor on ``model``'s ratings for the training pairs
    (its validation part too, so no real rating is seen) and scores it on
    the real test part."""
    # Imported here: run imports this module to build its report.
    from ratinggan import run

    dataset = split.dataset
    train_part, validation = holdout(
        split.train, config.validation_fraction, config.seed
    )

    def synthetic(part: Ratings, offset: int) -> Ratings:
        draws = model.sample(part.users, part.items, seed + offset)
        return Ratings(part.users, part.items, dataset.levels[draws])

    state, _ = run.fit_regressor(
        config,
        dataset,
        synthetic(train_part, 0),
        synthetic(validation, 1),
        tables,
        mesh,
        key,
        run.MetricsLog(None),
        progress=False,
    )
    predictions = predict.predict_ratings(
        state, tables, split.test.users, split.test.items
    )
    scores = score_points(dataset, split.test, predictions)
    return {"tstr_rmse": scores["rmse"], "tstr_mae": scores["mae"]}


def build_report(
    config: Config,
    split: Split,
    regressor_state,
    gan_state,
    tables,
    key: jax.Array,
    mesh=None,
    progress: bool = False,
) -> dict[str, Any]:
    """Scores the regressor, the generator and every baseline on the test
    part of ``split``; returns the report as a JSON-ready dict.

    Trains the softmax-classifier baseline and, with ``eval.tstr``, one
    regressor per generating model; ``mesh`` defaults to all devices.
    """
    mesh = make_mesh() if mesh is None else mesh
    dataset, test = split.dataset, split.test
    settings = config.eval
    models_key, tstr_key = jax.random.split(key)
    clock = _Stopwatch()
    models = build_models(
        config,
        split,
        regressor_state,
        gan_state,
        tables,
        models_key,
        mesh,
        progress,
    )
    clock.lap("baselines")

    c2st_pairs = _subsample(len(test), settings.c2st_max_pairs, config.seed)
    c2st_test = test.take(c2st_pairs)
    real_rows = comparison_rows(
        dataset, c2st_test, dataset.level_index(c2st_test.ratings)
    )

    has_sklearn = importlib.util.find_spec("sklearn") is not None
    if not has_sklearn:
        logger.warning("no two-sample test: install ratinggan[report]")

    rows, details, draws_by_model = {}, {}, {}
    for offset, (name, model) in enumerate(models.items()):
        logger.info("scoring %s", name)
        seed = config.seed + 1000 * (offset + 1)
        draws = model.sample(test.users, test.items, seed)
        draws_by_model[name] = draws
        row, details[name] = score_model(
            dataset, test, model, draws, settings.min_slice_ratings
        )
        clock.lap("scores")
        if has_sklearn:
            row["c2st_auc"] = metrics.classifier_two_sample_auc(
                real_rows,
                comparison_rows(dataset, c2st_test, draws[c2st_pairs]),
                config.seed,
            )
            clock.lap("c2st")

        if name == "regressor":
            row["tstr_rmse"], row["tstr_mae"] = row["rmse"], row["mae"]
        elif settings.tstr:
            logger.info("train-synthetic-test-real for %s", name)
            row.update(
                train_synthetic_test_real(
                    config,
                    split,
                    model,
                    tables,
                    mesh,
                    jax.random.fold_in(tstr_key, offset),
                    seed + 1,
                )
            )
            clock.lap("tstr")
        rows[name] = row

    unseen = ~np.isin(test.items, split.train.items)
    return {
        "dataset": dataset.name,
        "split": split.name,
        "num_train": len(split.train),
        "num_test": len(test),
        "num_test_unseen_movies": int(unseen.sum()),
        "min_slice_ratings": settings.min_slice_ratings,
        "slice_counts": _slice_counts(
            dataset, test, settings.min_slice_ratings
        ),
        "c2st_pairs": len(c2st_pairs),
        "rows": rows,
        "slices": details,
        "plot_data": _plot_data(dataset, test, draws_by_model, settings),
        "report_seconds": clock.totals,
    }


class _Stopwatch:
    """Wall seconds spent per named part, summed over laps."""

    def __init__(self):
        self.totals: dict[str, float] = {}
        self.last = time.perf_counter()

    def lap(self, part: str) -> None:
        now = time.perf_counter()
        self.totals[part] = self.totals.get(part, 0.0) + now - self.last
        self.last = now


def _subsample(n: int, limit: int, seed: int) -> np.ndarray:
    """Sorted positions of at most ``limit`` of ``n`` rows, seeded."""
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, limit, replace=False))


def _slice_counts(dataset: Dataset, test: Ratings, min_slice: int):
    """How many movies, users and genres enter the sliced W1 figures."""

    def kept(ids):
        return int((np.unique(ids, return_counts=True)[1] >= min_slice).sum())

    counts = {"movies": kept(test.items), "users": kept(test.users)}
    if dataset.genre_names:
        counts["genres"] = kept(
            metrics.membership_rows(dataset.genres, test.items)[1]
        )
    return counts


def _plot_data(dataset, test, draws_by_model, settings) -> dict[str, Any]:
    """Histograms and per-movie means behind the report's plots."""
    k, levels = dataset.num_levels, dataset.levels
    real = dataset.level_index(test.ratings)
    movie_ids, counts = np.unique(test.items, return_counts=True)
    top = movie_ids[np.argsort(-counts, kind="stable")[:PLOTTED_MOVIES]]
    kept = movie_ids[counts >= settings.min_slice_ratings]

    def movie_means(index):
        return [float(levels[index[test.items == m]].mean()) for m in kept]

    samples = {"real": real, **draws_by_model}
    titles = dataset.item_titles
    return {
        "levels": levels.tolist(),
        "overall": {
            name: metrics.histogram(index, k).tolist()
            for name, index in samples.items()
        },
        "movies": {
            (titles[m] if titles else str(m)): {
                name: metrics.histogram(index[test.items == m], k).tolist()
                for name, index in samples.items()
            }
            for m in top
        },
        "movie_means": {
            name: movie_means(index) for name, index in samples.items()
        },
    }


# ------------------------------------------------------------- output ----


def _cell(value) -> str:
    missing = value is None or (isinstance(value, float) and math.isnan(value))
    return "-" if missing else f"{value:.4f}"


def _shown_columns(rows) -> list[tuple[str, str]]:
    return [
        (key, label)
        for key, label in COLUMNS
        if any(key in row for row in rows.values())
    ]


def format_table(rows: dict[str, dict[str, float]]) -> str:
    """A fixed-width text table: one line per metric, one column per model
    (models side by side fit a terminal better than 17 metric columns)."""
    names = list(rows)
    headers = [SHORT_NAMES.get(name, name) for name in names]
    width = max(10, *(len(h) + 2 for h in headers))
    label_width = max(len(label) for _, label in COLUMNS) + 2
    lines = [
        "metric".ljust(label_width) + "".join(h.rjust(width) for h in headers)
    ]
    for key, label in _shown_columns(rows):
        cells = [_cell(rows[name].get(key)).rjust(width) for name in names]
        lines.append(label.ljust(label_width) + "".join(cells))
    return "\n".join(lines)


def format_markdown(report: dict[str, Any], plots: list[str] = ()) -> str:
    """The report as Markdown: the main table, per-genre and per-group W1
    tables, and links to the plots."""
    rows = report["rows"]
    names = list(rows)
    lines = [
        f"# Report: {report['dataset']} {report['split']}",
        "",
        f"{report['num_train']} training and {report['num_test']} test "
        f"ratings; {report['num_test_unseen_movies']} test ratings of movies "
        "unseen in training. Sliced W1 figures use slices with at least "
        f"{report['min_slice_ratings']} test ratings "
        f"({_describe_counts(report['slice_counts'])}); the two-sample test "
        f"uses {report['c2st_pairs']} test pairs.",
        "",
        LEGEND,
        "",
        _markdown_table(
            ["metric"] + [SHORT_NAMES.get(n, n) for n in names],
            [
                [label] + [_cell(rows[n].get(key)) for n in names]
                for key, label in _shown_columns(rows)
            ],
        ),
    ]
    for slice_kind in ("genre", "gender", "age", "occupation"):
        labels = _slice_labels(report["slices"], slice_kind)
        if not labels:
            continue
        lines += [
            "",
            f"## W1 per {slice_kind}",
            "",
            _markdown_table(
                [slice_kind] + [SHORT_NAMES.get(n, n) for n in names],
                [
                    [label]
                    + [
                        _cell(report["slices"][n][slice_kind].get(label))
                        for n in names
                    ]
                    for label in labels
                ],
            ),
        ]
    if plots:
        lines += ["", "## Plots", ""]
        lines += [f"![{Path(p).stem}]({Path(p).name})" for p in plots]
    return "\n".join(lines) + "\n"


def _describe_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{value} {name}" for name, value in counts.items())


def _slice_labels(slices, kind: str) -> list[str]:
    labels = []
    for model_slices in slices.values():
        for label in model_slices.get(kind, {}):
            if label not in labels:
                labels.append(label)
    return labels


def _markdown_table(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def write_outputs(report: dict[str, Any], workdir: str | Path) -> list[Path]:
    """Writes ``report.json``, the PNG plots (when matplotlib is installed)
    and ``report.md`` into ``workdir``; returns the paths written."""
    workdir = Path(workdir)
    write_json_atomic(workdir / "report.json", report)
    written = [workdir / "report.json"]

    try:
        from ratinggan import plots
    except ImportError as error:
        logger.warning("no plots (install ratinggan[report]): %s", error)
        plot_paths = []
    else:
        plot_paths = plots.write_plots(
            report, workdir, workdir / "metrics.jsonl"
        )
    written += plot_paths

    markdown = format_markdown(report, [p.name for p in plot_paths])
    write_text_atomic(workdir / "report.md", markdown)
    return written + [workdir / "report.md"]


def write_text_atomic(path: Path, text: str) -> None:
    """Writes text to a temporary file and renames it into place."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temporary.write_text(text)
    os.replace(temporary, path)


def write_json_atomic(path: Path, payload: Any) -> None:
    """Writes JSON to a temporary file and renames it into place."""
    write_text_atomic(
        path, json.dumps(payload, indent=2, sort_keys=True) + "\n"
    )
