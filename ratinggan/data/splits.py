"""Train/test splits of a rating table: seeded random, and temporal.

The protocol (DESIGN.md): ML-100K uses its official folds; every other
release a random 90/10 split with seed 0, or, as an option, a temporal split
whose test part is the last 10% of ratings by time. The validation part for
early stopping is carved from the training part only (``holdout``).
"""

from __future__ import annotations

import numpy as np

from ratinggan.data.dataset import Ratings

SPLIT_KINDS = ("random", "temporal")


def _check_fraction(fraction: float) -> None:
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"test fraction must be in (0, 1), got {fraction}")


def _mask_split(ratings: Ratings, is_test: np.ndarray):
    return ratings.take(~is_test), ratings.take(is_test)


def random_split(
    ratings: Ratings, test_fraction: float = 0.1, seed: int = 0
) -> tuple[Ratings, Ratings]:
    """``(train, test)``: a seeded random ``test_fraction`` of the rows is
    the test part; both keep the rows' original order."""
    _check_fraction(test_fraction)
    num_test = int(round(test_fraction * len(ratings)))
    order = np.random.default_rng(seed).permutation(len(ratings))
    is_test = np.zeros(len(ratings), bool)
    is_test[order[:num_test]] = True
    return _mask_split(ratings, is_test)


def temporal_split(
    ratings: Ratings, test_fraction: float = 0.1
) -> tuple[Ratings, Ratings]:
    """``(train, test)``: the last ``test_fraction`` of the rows by timestamp
    is the test part. Rows with equal timestamps keep their file order, so
    the split is deterministic."""
    _check_fraction(test_fraction)
    if ratings.timestamps is None:
        raise ValueError("a temporal split needs timestamps; these have none")
    num_test = int(round(test_fraction * len(ratings)))
    order = np.argsort(ratings.timestamps, kind="stable")
    is_test = np.zeros(len(ratings), bool)
    is_test[order[len(ratings) - num_test :]] = True
    return _mask_split(ratings, is_test)


def split_ratings(
    ratings: Ratings, kind: str, test_fraction: float = 0.1, seed: int = 0
) -> tuple[Ratings, Ratings]:
    """Dispatches on ``kind``: ``random`` or ``temporal``."""
    if kind == "random":
        return random_split(ratings, test_fraction, seed)
    if kind == "temporal":
        return temporal_split(ratings, test_fraction)
    raise ValueError(
        f"unknown split {kind!r}; expected one of {', '.join(SPLIT_KINDS)}"
    )
