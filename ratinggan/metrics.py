"""Evaluation metrics, in NumPy, on host arrays.

Distributions are ``[n, K]`` probability rows over the rating levels.
Generated and real ratings are compared as level indices ``[n]``.
"""

from __future__ import annotations

import numpy as np

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


def sliced_wasserstein(
    slice_ids: np.ndarray,
    real_index: np.ndarray,
    fake: np.ndarray,
    levels: np.ndarray,
    min_count: int = 20,
) -> tuple[float, int]:
    """Count-weighted mean W1 over slices (movies, users, groups).

    ``fake`` is either level indices ``[n]`` (one draw per row) or
    distributions ``[n, K]`` (each row's full predicted distribution).
    Slices with fewer than ``min_count`` rows are left out. Returns
    ``(mean W1, number of slices used)``; NaN when no slice qualifies.
    """
    k = len(levels)
    _, slice_codes = np.unique(slice_ids, return_inverse=True)
    num_slices = slice_codes.max() + 1 if len(slice_codes) else 0

    real_counts = np.zeros((num_slices, k))
    np.add.at(real_counts, (slice_codes, real_index), 1.0)
    fake_counts = np.zeros((num_slices, k))
    if fake.ndim == 1:
        np.add.at(fake_counts, (slice_codes, fake), 1.0)
    else:
        np.add.at(fake_counts, slice_codes, fake)

    sizes = real_counts.sum(1)
    used = sizes >= min_count
    if not used.any():
        return float("nan"), 0
    distances = wasserstein_levels(real_counts[used], fake_counts[used], levels)
    return float(np.average(distances, weights=sizes[used])), int(used.sum())
