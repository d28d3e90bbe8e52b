"""Evaluation metrics, in NumPy, on host arrays.

Distributions are ``[n, K]`` probability rows over the rating levels.
Generated and real ratings are compared as level indices ``[n]``.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import wasserstein_distance

# Probabilities are floored here before the log, so a model that gives a
# real rating zero probability scores a large finite NLL, not infinity.
MIN_PROBABILITY = 1e-9


def rmse(predictions: np.ndarray, ratings: np.ndarray) -> float:
    _check_same_shape(predictions, ratings)
    return float(np.sqrt(np.mean(np.square(predictions - ratings))))


def mae(predictions: np.ndarray, ratings: np.ndarray) -> float:
    _check_same_shape(predictions, ratings)
    return float(np.mean(np.abs(predictions - ratings)))


def _check_same_shape(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")


def expected_rating(probs: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Mean of each row's distribution over ``levels``."""
    return probs @ levels


def nll(probs: np.ndarray, level_index: np.ndarray) -> float:
    """Mean negative log-likelihood of the real level under each row."""
    chosen = probs[np.arange(len(level_index)), level_index]
    return float(-np.mean(np.log(np.maximum(chosen, MIN_PROBABILITY))))


def rps(probs: np.ndarray, level_index: np.ndarray) -> float:
    """Ranked probability score: the mean over rows of the summed squared
    differences between predicted and observed cumulative distributions,
    divided by ``K - 1`` so that it lies in [0, 1]."""
    num_levels = probs.shape[1]
    predicted = np.cumsum(probs, axis=1)
    observed = np.cumsum(np.eye(num_levels)[level_index], axis=1)
    squared = np.sum(np.square(predicted - observed)[:, :-1], axis=1)
    return float(np.mean(squared) / (num_levels - 1))


def histogram(level_index: np.ndarray, num_levels: int) -> np.ndarray:
    """Share of each level, ``[K]``."""
    counts = np.bincount(level_index, minlength=num_levels)
    return counts / max(counts.sum(), 1)


def wasserstein_levels(
    p: np.ndarray, q: np.ndarray, levels: np.ndarray
) -> np.ndarray:
    """1-Wasserstein distance between distributions over the same levels.

    ``p`` and ``q`` are ``[..., K]`` (counts or probabilities; each is
    normalised). On the real line W1 is the integral of the absolute
    difference of the CDFs, which for point masses on ``levels`` is a sum
    over the gaps between consecutive levels. Agrees with
    ``scipy.stats.wasserstein_distance(levels, levels, p, q)``.
    """
    p = p / p.sum(-1, keepdims=True)
    q = q / q.sum(-1, keepdims=True)
    cdf_gap = np.abs(np.cumsum(p, -1) - np.cumsum(q, -1))[..., :-1]
    return np.sum(cdf_gap * np.diff(levels), axis=-1)


def wasserstein(
    real_index: np.ndarray, fake_index: np.ndarray, levels: np.ndarray
) -> float:
    """W1 between two samples of level indices."""
    k = len(levels)
    return float(
        wasserstein_levels(
            histogram(real_index, k), histogram(fake_index, k), levels
        )
    )


def slice_wasserstein(
    slice_ids: np.ndarray,
    real_index: np.ndarray,
    fake: np.ndarray,
    levels: np.ndarray,
    min_count: int = 20,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """W1 between real and generated ratings within each slice.

    ``fake`` is either level indices ``[n]`` (one draw per row) or
    distributions ``[n, K]`` (each row's full predicted distribution).
    Slices with fewer than ``min_count`` real rows are left out. Returns
    ``(slice ids, W1 per slice, real rows per slice)`` for the kept slices.
    """
    k = len(levels)
    ids, slice_codes = np.unique(slice_ids, return_inverse=True)
    real_counts = np.zeros((len(ids), k))
    np.add.at(real_counts, (slice_codes, real_index), 1.0)
    fake_counts = np.zeros((len(ids), k))
    if fake.ndim == 1:
        np.add.at(fake_counts, (slice_codes, fake), 1.0)
    else:
        np.add.at(fake_counts, slice_codes, fake)

    sizes = real_counts.sum(1)
    used = sizes >= min_count
    distances = wasserstein_levels(real_counts[used], fake_counts[used], levels)
    return ids[used], distances, sizes[used]


def sliced_wasserstein(
    slice_ids: np.ndarray,
    real_index: np.ndarray,
    fake: np.ndarray,
    levels: np.ndarray,
    min_count: int = 20,
) -> tuple[float, int]:
    """Count-weighted mean W1 over slices (movies, users, groups).

    Arguments as ``slice_wasserstein``. Returns ``(mean W1, number of
    slices used)``; NaN when no slice qualifies.
    """
    _, distances, sizes = slice_wasserstein(
        slice_ids, real_index, fake, levels, min_count
    )
    if not len(distances):
        return float("nan"), 0
    return float(np.average(distances, weights=sizes)), len(distances)


def membership_rows(
    members: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Expands rows into (row, slice) pairs for overlapping slices.

    ``members`` is a bool ``[num_entities, num_slices]`` table (movies by
    genre) and ``rows`` each row's entity. A row in three genres appears
    three times, once per genre. Returns ``(row positions, slice codes)``.
    """
    positions, codes = np.nonzero(members[rows])
    return positions, codes


def slice_mean_wasserstein(
    slice_ids: np.ndarray,
    real_values: np.ndarray,
    fake_values: np.ndarray,
    min_count: int = 20,
) -> tuple[float, int]:
    """W1 between the real and the generated per-slice mean ratings.

    Each slice with at least ``min_count`` rows contributes its real mean
    and its generated mean (over the same rows); the two sets of means are
    compared as samples with ``scipy.stats.wasserstein_distance``. Returns
    ``(W1, number of slices used)``; NaN when no slice qualifies.
    """
    _check_same_shape(real_values, fake_values)
    ids, slice_codes, sizes = np.unique(
        slice_ids, return_inverse=True, return_counts=True
    )
    used = sizes >= min_count
    if not used.any():
        return float("nan"), 0
    real_means = np.bincount(slice_codes, real_values) / sizes
    fake_means = np.bincount(slice_codes, fake_values) / sizes
    distance = wasserstein_distance(real_means[used], fake_means[used])
    return float(distance), int(used.sum())


def classifier_two_sample_auc(
    real_rows: np.ndarray,
    fake_rows: np.ndarray,
    seed: int,
    held_out_fraction: float = 0.3,
) -> float:
    """Classifier two-sample test: ROC AUC of telling real rows from fake.

    ``real_rows`` and ``fake_rows`` are ``[n, D]`` with row ``i`` of each
    describing the same (user, movie) pair, so pairs are split as a whole:
    a pair's real and generated rows are both trained on or both held out.
    A fresh gradient-boosted tree classifier (scikit-learn, fixed seed) is
    fit on the rest; 0.5 means indistinguishable, 1.0 perfectly told apart.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from threadpoolctl import threadpool_limits

    _check_same_shape(real_rows, fake_rows)
    n = len(real_rows)
    held = np.random.default_rng(seed).random(n) < held_out_fraction
    if held.sum() == 0 or held.sum() == n:
        raise ValueError(f"too few rows ({n}) for a two-sample test")

    def stack(rows):
        features = np.concatenate([real_rows[rows], fake_rows[rows]])
        labels = np.repeat([1, 0], int(rows.sum()))
        return features, labels

    train_x, train_y = stack(~held)
    test_x, test_y = stack(held)
    classifier = HistGradientBoostingClassifier(
        max_iter=100, early_stopping=False, random_state=seed
    )
    # One thread: next to JAX's own threads, OpenMP's spin-waiting made the
    # fit many times slower, and one thread keeps it reproducible.
    with threadpool_limits(1):
        classifier.fit(train_x, train_y)
        scores = classifier.predict_proba(test_x)[:, 1]
    return float(roc_auc_score(test_y, scores))
