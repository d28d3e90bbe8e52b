"""The report: every model and baseline scored on the test part.

Rows are the regressor, the generator and the baselines (the global
training histogram and each movie's training histogram). Distribution rows
get point accuracy from their mean, NLL and RPS from their probabilities,
and realism from one drawn rating per test pair.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np

from ratinggan import metrics, predict
from ratinggan.config import Config
from ratinggan.data import Dataset, Ratings, Split

# Pseudo-ratings, spread as the global histogram, added to each movie's
# histogram so that a movie with few ratings keeps every level possible
# (and an unseen movie falls back to the global histogram).
MOVIE_HISTOGRAM_PRIOR = 1.0

COLUMNS = (
    ("rmse", "RMSE"),
    ("mae", "MAE"),
    ("nll", "NLL"),
    ("rps", "RPS"),
    ("w1", "W1"),
    ("w1_per_movie", "W1/movie"),
    ("w1_to_truth", "W1 truth"),
)


def histogram_baselines(
    dataset: Dataset, train: Ratings, test: Ratings
) -> dict[str, np.ndarray]:
    """Test-pair distributions ``[n, K]`` of the two histogram baselines."""
    k = dataset.num_levels
    train_levels = dataset.level_index(train.ratings)
    global_probs = metrics.histogram(train_levels, k)

    movie_counts = np.zeros((dataset.num_items, k))
    np.add.at(movie_counts, (train.items, train_levels), 1.0)
    movie_counts += MOVIE_HISTOGRAM_PRIOR * global_probs
    movie_probs = movie_counts / movie_counts.sum(1, keepdims=True)

    return {
        "global_histogram": np.tile(global_probs, (len(test), 1)),
        "movie_histogram": movie_probs[test.items],
    }


def draw_levels(probs: np.ndarray, seed: int) -> np.ndarray:
    """One level index per row drawn from ``probs`` ``[n, K]``."""
    uniform = np.random.default_rng(seed).random(len(probs))[:, None]
    return np.minimum(
        (uniform > np.cumsum(probs, 1)).sum(1), probs.shape[1] - 1
    )


def score_distribution(
    dataset: Dataset,
    test: Ratings,
    probs: np.ndarray,
    draws: np.ndarray,
    min_slice: int,
) -> dict[str, float]:
    """All report figures for one distribution model on the test part."""
    levels = dataset.levels
    real = dataset.level_index(test.ratings)
    mean = metrics.expected_rating(probs, levels)
    w1_movie, movies_used = metrics.sliced_wasserstein(
        test.items, real, draws, levels, min_slice
    )
    row = {
        "rmse": metrics.rmse(mean, test.ratings),
        "mae": metrics.mae(mean, test.ratings),
        "nll": metrics.nll(probs, real),
        "rps": metrics.rps(probs, real),
        "w1": metrics.wasserstein(real, draws, levels),
        "w1_per_movie": w1_movie,
        "movies_used": movies_used,
    }
    if dataset.true_probs is not None:
        truth = dataset.true_probs(test.users, test.items)
        row["w1_to_truth"] = float(
            np.mean(metrics.wasserstein_levels(probs, truth, levels))
        )
    return row


def score_points(
    dataset: Dataset, test: Ratings, predictions: np.ndarray
) -> dict[str, float]:
    """RMSE and MAE of point predictions, clipped to the scale."""
    clipped = np.clip(predictions, dataset.levels[0], dataset.levels[-1])
    return {
        "rmse": metrics.rmse(clipped, test.ratings),
        "mae": metrics.mae(clipped, test.ratings),
    }


def build_report(
    config: Config,
    split: Split,
    regressor_state,
    gan_state,
    tables,
    key: jax.Array,
) -> dict[str, Any]:
    """Scores the regressor, generator and baselines on the test part."""
    dataset, test = split.dataset, split.test
    min_slice = config.eval.min_slice_ratings
    distribution_key, draw_key = jax.random.split(key)
    rows: dict[str, dict[str, float]] = {}

    predictions = predict.predict_ratings(
        regressor_state, tables, test.users, test.items
    )
    rows["regressor"] = score_points(dataset, test, predictions)

    generator_probs = predict.generator_distribution(
        gan_state.generator,
        config.gan,
        tables,
        test.users,
        test.items,
        distribution_key,
        config.eval.distribution_draws,
    )
    generator_draws = predict.generator_sample(
        gan_state.generator,
        config.gan,
        tables,
        test.users,
        test.items,
        draw_key,
    )
    rows["generator"] = score_distribution(
        dataset, test, generator_probs, generator_draws, min_slice
    )

    baselines = histogram_baselines(dataset, split.train, test)
    if dataset.true_probs is not None:
        baselines["true_distribution"] = dataset.true_probs(
            test.users, test.items
        )
    for offset, (name, probs) in enumerate(baselines.items()):
        draws = draw_levels(probs, config.seed + 1 + offset)
        rows[name] = score_distribution(dataset, test, probs, draws, min_slice)

    unseen = ~np.isin(test.items, split.train.items)
    return {
        "dataset": dataset.name,
        "split": split.name,
        "num_train": len(split.train),
        "num_test": len(test),
        "num_test_unseen_movies": int(unseen.sum()),
        "rows": rows,
    }


def format_table(rows: dict[str, dict[str, float]]) -> str:
    """A fixed-width text table: one line per model, one column per metric."""
    shown = [
        (key, title)
        for key, title in COLUMNS
        if any(key in row for row in rows.values())
    ]
    name_width = max(len(name) for name in rows) + 2
    lines = ["model".ljust(name_width) + "".join(f"{t:>10}" for _, t in shown)]
    for name, row in rows.items():
        cells = []
        for key, _ in shown:
            value = row.get(key)
            missing = value is None or (
                isinstance(value, float) and math.isnan(value)
            )
            cells.append(f"{'-' if missing else f'{value:.4f}':>10}")
        lines.append(name.ljust(name_width) + "".join(cells))
    return "\n".join(lines)


def write_json_atomic(path: Path, payload: Any) -> None:
    """Writes JSON to a temporary file and renames it into place."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temporary.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    os.replace(temporary, path)
