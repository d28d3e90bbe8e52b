import numpy as np
import pytest

from ratinggan.data import make_synthetic
from ratinggan.data.synthetic import ordinal_probs


def test_synthetic_is_seeded_and_shaped_like_movielens():
    first = make_synthetic(num_users=50, num_items=80, num_ratings=1000, seed=3)
    again = make_synthetic(num_users=50, num_items=80, num_ratings=1000, seed=3)
    other = make_synthetic(num_users=50, num_items=80, num_ratings=1000, seed=4)

    np.testing.assert_array_equal(first.train.ratings, again.train.ratings)
    assert not np.array_equal(first.train.ratings, other.train.ratings)
    assert len(first.train) + len(first.test) == 1000
    assert len(first.test) == 100
    assert set(np.unique(first.train.ratings)) <= {1, 2, 3, 4, 5}
    pairs = first.train.users.astype(np.int64) * 80 + first.train.items
    assert len(np.unique(pairs)) == len(pairs)
    assert first.dataset.user_features.shape[0] == 50
    assert first.dataset.genres.sum(1).min() >= 1


def test_true_probs_are_distributions_that_generate_the_ratings():
    split = make_synthetic(num_users=200, num_items=300, num_ratings=20_000)
    probs = split.dataset.true_probs(split.train.users, split.train.items)

    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-9)
    assert (probs >= 0).all()
    # The observed histogram agrees with the mean of the true distributions.
    observed = np.bincount(split.train.ratings.astype(int) - 1, minlength=5)
    np.testing.assert_allclose(
        observed / len(split.train), probs.mean(0), atol=0.01
    )


def test_half_star_scale():
    split = make_synthetic(
        num_users=40, num_items=60, num_ratings=800, half_stars=True
    )
    assert split.dataset.num_levels == 10
    assert split.dataset.levels[0] == 0.5
    assert set(np.unique(split.train.ratings)) <= set(split.dataset.levels)


def test_ordinal_probs_hand_case():
    # With thresholds (0,) and score 0, both levels get probability 1/2.
    probs = ordinal_probs(np.array([0.0]), np.array([0.0]))
    np.testing.assert_allclose(probs, [[0.5, 0.5]])


def test_too_many_ratings_is_refused():
    with pytest.raises(ValueError, match="too many"):
        make_synthetic(num_users=10, num_items=10, num_ratings=60)


@pytest.mark.parametrize("half_stars", [False, True])
def test_large_grid_draws_distinct_pairs_from_the_true_distribution(
    half_stars,
):
    # 3,000 x 2,000 pairs is past the exact-draw limit: the rejection path.
    split = make_synthetic(
        num_users=3000,
        num_items=2000,
        num_ratings=200_000,
        half_stars=half_stars,
    )
    dataset = split.dataset
    users = np.concatenate([split.train.users, split.test.users])
    items = np.concatenate([split.train.items, split.test.items])
    ratings = np.concatenate([split.train.ratings, split.test.ratings])

    keys = users.astype(np.int64) * 2000 + items
    assert len(np.unique(keys)) == 200_000
    probs = dataset.true_probs(users, items)
    assert probs.shape == (200_000, 10 if half_stars else 5)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-9)
    observed = np.bincount(
        dataset.level_index(ratings), minlength=probs.shape[1]
    )
    np.testing.assert_allclose(
        observed / len(ratings), probs.mean(0), atol=0.004
    )
    # Popular movies are rated more: pair draws follow the weights.
    counts = np.bincount(items, minlength=2000)
    assert counts.max() > 10 * np.median(counts)
