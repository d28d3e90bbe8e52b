"""A seeded synthetic dataset with a known rating distribution per pair.

Shaped like ML-100K (users with age, gender and occupation; movies with a
release year and genres), so every code path that reads MovieLens runs on it
without a download. Ratings come from an ordinal-logit latent-factor model:
each (user, movie) pair has a score ``s = b_u + b_i + <p_u, q_i>`` and
``P(rating <= level k) = sigmoid(t_k - s)`` for fixed thresholds ``t``. The
score depends on the features (genres shape ``q_i``, demographics shape
``p_u``, older movies rate higher), so side information carries signal, and
``Dataset.true_probs`` gives each pair's exact distribution over the levels.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

from ratinggan.data.cleaning import first_occurrences
from ratinggan.data.dataset import Dataset, Ratings, Split
from ratinggan.data.movielens import _standardize, demographic_features

NUM_GENRES = 19
NUM_OCCUPATIONS = 21
FACTOR_DIM = 4
# Share of ratings at each of five levels, close to ML-100K's histogram;
# the thresholds reproduce it for a pair of average score.
FIVE_LEVEL_SHARES = np.array([0.06, 0.11, 0.27, 0.34, 0.22])
# Grids of at most this many (user, movie) pairs draw pairs exactly with one
# weight per pair; larger ones by rejection (same distribution, less memory).
EXACT_PAIR_LIMIT = 4_000_000
# Ratings drawn per step, bounding the memory of the per-pair distributions.
DRAW_CHUNK = 1 << 20


def _thresholds(num_levels: int) -> np.ndarray:
    if num_levels == 5:
        shares = FIVE_LEVEL_SHARES
    else:
        # Spread the five-level shares over finer levels, keeping the shape.
        fine = np.interp(
            np.linspace(0, 4, num_levels), np.arange(5), FIVE_LEVEL_SHARES
        )
        shares = fine / fine.sum()
    cumulative = np.cumsum(shares)[:-1]
    return np.log(cumulative / (1 - cumulative))


def ordinal_probs(scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Probabilities over the levels of an ordinal-logit model, ``[n, k]``."""
    below = expit(thresholds[None, :] - scores[:, None])
    cumulative = np.concatenate(
        [np.zeros((len(scores), 1)), below, np.ones((len(scores), 1))], axis=1
    )
    return np.diff(cumulative, axis=1)


def _weighted_pairs(rng, user_weight, item_weight, count) -> np.ndarray:
    """``count`` distinct pair keys ``user * num_items + item``, drawn with
    probability proportional to ``user_weight * item_weight``.

    For large grids, where a weight per pair would not fit in memory: users
    and movies are drawn independently, repeats are dropped (keeping the
    first draw), and the draw goes on until enough pairs are found. This is
    sampling without replacement by rejection, as exact as the small-grid
    path.
    """
    num_items = len(item_weight)
    user_p = user_weight / user_weight.sum()
    item_p = item_weight / item_weight.sum()
    keys = np.zeros(0, np.int64)
    while len(keys) < count:
        wanted = int((count - len(keys)) * 1.1) + 16
        users = rng.choice(len(user_weight), wanted, p=user_p)
        items = rng.choice(num_items, wanted, p=item_p)
        drawn = np.concatenate(
            [keys, users.astype(np.int64) * num_items + items]
        )
        keys = drawn[first_occurrences(drawn)]
    return keys[:count]


def make_synthetic(
    num_users: int = 600,
    num_items: int = 1000,
    num_ratings: int = 60_000,
    half_stars: bool = False,
    test_fraction: float = 0.1,
    seed: int = 0,
) -> Split:
    """Draws users, movies, ratings and a seeded random train/test split.

    Any size works: ``num_ratings`` up to half of all (user, movie) pairs;
    ``half_stars`` picks the ten-level scale 0.5..5 instead of 1..5. The
    returned dataset's ``true_probs(users, items)`` gives each pair's exact
    distribution over the levels, from which its ratings were drawn.
    """
    if num_ratings > num_users * num_items // 2:
        raise ValueError(
            f"num_ratings={num_ratings} is too many for {num_users} users and "
            f"{num_items} movies (at most half of all pairs)"
        )
    rng = np.random.default_rng(seed)
    levels = (
        np.arange(1, 11, dtype=np.float32) / 2
        if half_stars
        else np.arange(1, 6, dtype=np.float32)
    )

    # Users: demographics, and factors shaped by them.
    ages = rng.integers(15, 70, num_users)
    genders = (rng.random(num_users) < 0.7).astype(np.int64)
    occupations = rng.integers(0, NUM_OCCUPATIONS, num_users)
    gender_effect = rng.normal(0, 0.4, (2, FACTOR_DIM))
    occupation_effect = rng.normal(0, 0.3, (NUM_OCCUPATIONS, FACTOR_DIM))
    age_effect = rng.normal(0, 0.3, FACTOR_DIM)
    user_factors = (
        rng.normal(0, 0.5, (num_users, FACTOR_DIM))
        + gender_effect[genders]
        + occupation_effect[occupations]
        + np.outer((ages - 40) / 15, age_effect)
    )
    user_bias = rng.normal(0, 0.5, num_users)

    # Movies: year and one to three genres, factors shaped by the genres.
    years = rng.integers(1930, 1999, num_items).astype(np.float64)
    genres = np.zeros((num_items, NUM_GENRES), bool)
    for item, count in enumerate(rng.integers(1, 4, num_items)):
        genres[item, rng.choice(NUM_GENRES, count, replace=False)] = True
    genre_effect = rng.normal(0, 0.6, (NUM_GENRES, FACTOR_DIM))
    item_factors = rng.normal(0, 0.4, (num_items, FACTOR_DIM)) + (
        genres @ genre_effect
    ) / np.sqrt(genres.sum(1, keepdims=True))
    item_bias = rng.normal(0, 0.6, num_items) - 0.01 * (years - 1970)

    thresholds = _thresholds(len(levels))

    def true_probs(users: np.ndarray, items: np.ndarray) -> np.ndarray:
        scores = (
            user_bias[users]
            + item_bias[items]
            + np.sum(user_factors[users] * item_factors[items], axis=1)
        )
        return ordinal_probs(scores, thresholds)

    # Pairs: active users and popular movies rate more (log-normal weights).
    user_weight = rng.lognormal(0, 1.0, num_users)
    item_weight = rng.lognormal(0, 1.2, num_items)
    if num_users * num_items <= EXACT_PAIR_LIMIT:
        pair_weight = np.outer(user_weight, item_weight).ravel()
        pairs = rng.choice(
            num_users * num_items,
            num_ratings,
            replace=False,
            p=pair_weight / pair_weight.sum(),
        )
    else:
        pairs = _weighted_pairs(rng, user_weight, item_weight, num_ratings)
    users, items = np.divmod(pairs, num_items)
    ratings = np.empty(num_ratings, np.float32)
    for start in range(0, num_ratings, DRAW_CHUNK):
        chunk = slice(start, start + DRAW_CHUNK)
        probs = true_probs(users[chunk], items[chunk])
        uniform = rng.random(len(probs))[:, None]
        draws = (uniform > np.cumsum(probs, 1)).sum(1)
        ratings[chunk] = levels[np.minimum(draws, len(levels) - 1)]

    genre_names = tuple(f"genre{g:02d}" for g in range(NUM_GENRES))
    occupation_names = tuple(
        f"occupation{o:02d}" for o in range(NUM_OCCUPATIONS)
    )
    user_features, user_feature_names, user_groups = demographic_features(
        ages, ("F", "M"), genders, occupation_names, occupations
    )
    dataset = Dataset(
        name="synthetic",
        levels=levels,
        user_ids=np.arange(1, num_users + 1),
        item_ids=np.arange(1, num_items + 1),
        user_features=user_features,
        item_features=np.concatenate(
            [
                _standardize(years)[:, None],
                np.zeros((num_items, 1), np.float32),
                genres.astype(np.float32),
            ],
            axis=1,
        ),
        user_feature_names=user_feature_names,
        item_feature_names=("year", "year_missing")
        + tuple(f"genre={g}" for g in genre_names),
        genres=genres,
        genre_names=genre_names,
        item_titles=tuple(f"Movie {i + 1}" for i in range(num_items)),
        user_groups=user_groups,
        true_probs=true_probs,
    )

    everything = Ratings(
        users=users.astype(np.int32),
        items=items.astype(np.int32),
        ratings=ratings.astype(np.float32),
        timestamps=np.arange(num_ratings, dtype=np.int64),
    )
    order = np.random.default_rng(seed + 1).permutation(num_ratings)
    num_test = int(round(test_fraction * num_ratings))
    return Split(
        dataset,
        train=everything.take(np.sort(order[num_test:])),
        test=everything.take(np.sort(order[:num_test])),
        name="random-90-10",
    )
