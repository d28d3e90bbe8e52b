"""Containers for rating data: entities with features, rating tables, splits.

Every dataset, real or synthetic, is turned into the same shape: users and
movies numbered by contiguous indices ``0..n-1`` (one map from raw IDs shared
by ratings, features and embeddings), a float feature matrix per entity, and
rating tables of ``(user index, movie index, rating value)`` rows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np


class DataError(ValueError):
    """Input data that cannot be read; the message names file, line and why."""

    def __init__(self, path, message: str, line: int | None = None):
        where = str(path) if line is None else f"{path}, line {line}"
        super().__init__(f"{where}: {message}")
        self.path = path
        self.line = line
        self.reason = message


@dataclasses.dataclass(frozen=True)
class Ratings:
    """A table of ratings as parallel arrays, one row per rating."""

    users: np.ndarray  # int32 [n], user indices
    items: np.ndarray  # int32 [n], movie indices
    ratings: np.ndarray  # float32 [n], rating values on the dataset's scale
    timestamps: np.ndarray | None = None  # int64 [n], seconds since epoch

    def __post_init__(self):
        n = len(self.users)
        if len(self.items) != n or len(self.ratings) != n:
            raise ValueError(
                "users, items and ratings must have the same length, got "
                f"{n}, {len(self.items)} and {len(self.ratings)}"
            )

    def __len__(self) -> int:
        return len(self.users)

    def take(self, rows: np.ndarray) -> Ratings:
        """Returns the subset of rows selected by an index or boolean array."""
        return Ratings(
            users=self.users[rows],
            items=self.items[rows],
            ratings=self.ratings[rows],
            timestamps=None
            if self.timestamps is None
            else self.timestamps[rows],
        )


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Users and movies with their features, and the rating scale.

    ``user_groups`` maps a demographic name (``gender``, ``age``,
    ``occupation``) to ``(labels, codes)``: the group names and each user's
    code into them. ``true_probs``, present on synthetic data only, maps
    ``(users, items)`` index arrays to each pair's true distribution over
    ``levels``.
    """

    name: str
    levels: np.ndarray  # float32 [k], the rating scale, ascending
    user_ids: np.ndarray  # raw ID of each user index
    item_ids: np.ndarray  # raw ID of each movie index
    user_features: np.ndarray  # float32 [num_users, user_feature_dim]
    item_features: np.ndarray  # float32 [num_items, item_feature_dim]
    user_feature_names: tuple[str, ...]
    item_feature_names: tuple[str, ...]
    genres: np.ndarray  # bool [num_items, num_genres]
    genre_names: tuple[str, ...]
    item_titles: tuple[str, ...] = ()
    user_groups: dict[str, tuple[tuple[str, ...], np.ndarray]] = (
        dataclasses.field(default_factory=dict)
    )
    true_probs: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None

    @property
    def num_users(self) -> int:
        return len(self.user_ids)

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    @property
    def num_levels(self) -> int:
        return len(self.levels)

    def level_index(self, ratings: np.ndarray) -> np.ndarray:
        """Maps rating values to their index on the scale (int32)."""
        index = np.searchsorted(self.levels, ratings)
        index = np.clip(index, 0, self.num_levels - 1)
        if not np.allclose(self.levels[index], ratings):
            bad = ratings[~np.isclose(self.levels[index], ratings)][0]
            raise ValueError(
                f"rating {bad} is not a level of the scale "
                f"{self.levels.tolist()}"
            )
        return index.astype(np.int32)


@dataclasses.dataclass(frozen=True)
class Split:
    """A dataset with its training and test ratings."""

    dataset: Dataset
    train: Ratings
    test: Ratings
    name: str


def holdout(
    ratings: Ratings, fraction: float, seed: int
) -> tuple[Ratings, Ratings]:
    """Splits rows at random into ``(rest, held_out)`` with a seeded shuffle.

    Used for the validation part carved from training data (early stopping
    and model selection never look at the test part).
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"holdout fraction must be in (0, 1), got {fraction}")

    order = np.random.default_rng(seed).permutation(len(ratings))
    num_held = int(round(fraction * len(ratings)))
    return ratings.take(np.sort(order[num_held:])), ratings.take(
        np.sort(order[:num_held])
    )
