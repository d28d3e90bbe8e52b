import numpy as np
import pytest
from scipy.stats import wasserstein_distance

from ratinggan import metrics

LEVELS = np.arange(1, 6, dtype=np.float32)
HALF_STARS = np.arange(1, 11, dtype=np.float32) / 2


@pytest.mark.parametrize("levels", [LEVELS, HALF_STARS])
def test_wasserstein_levels_matches_scipy(rng, levels):
    for _ in range(20):
        p = rng.random(len(levels))
        q = rng.random(len(levels)) * (rng.random(len(levels)) > 0.3)
        q[0] += 0.01
        expected = wasserstein_distance(levels, levels, p, q)
        assert metrics.wasserstein_levels(p, q, levels) == pytest.approx(
            expected, abs=1e-6
        )


def test_wasserstein_of_samples_matches_scipy_on_values(rng):
    real = rng.integers(0, 5, 500)
    fake = rng.integers(0, 5, 300)
    expected = wasserstein_distance(LEVELS[real], LEVELS[fake])
    assert metrics.wasserstein(real, fake, LEVELS) == pytest.approx(expected)


def test_wasserstein_hand_case():
    # All mass at 1 against all mass at 5: every unit moves 4 levels.
    assert metrics.wasserstein(
        np.zeros(3, int), np.full(2, 4), LEVELS
    ) == pytest.approx(4.0)


def test_sliced_wasserstein_matches_scipy_per_slice(rng):
    slices = rng.integers(0, 6, 400)
    real = rng.integers(0, 5, 400)
    fake = rng.integers(0, 5, 400)

    result, used = metrics.sliced_wasserstein(slices, real, fake, LEVELS, 60)

    distances, weights = [], []
    for code in np.unique(slices):
        rows = slices == code
        if rows.sum() >= 60:
            distances.append(
                wasserstein_distance(LEVELS[real[rows]], LEVELS[fake[rows]])
            )
            weights.append(rows.sum())
    assert used == len(distances)
    assert result == pytest.approx(np.average(distances, weights=weights))


def test_sliced_wasserstein_with_distributions(rng):
    slices = np.repeat([0, 1], 30)
    real = rng.integers(0, 5, 60)
    probs = rng.dirichlet(np.ones(5), 60)

    result, used = metrics.sliced_wasserstein(slices, real, probs, LEVELS, 20)

    expected = [
        wasserstein_distance(
            LEVELS[real[slices == s]], LEVELS, None, probs[slices == s].sum(0)
        )
        for s in (0, 1)
    ]
    assert used == 2
    assert result == pytest.approx(np.mean(expected))


def test_rmse_mae_nll_rps_hand_cases():
    assert metrics.rmse(np.array([1.0, 3.0]), np.array([2.0, 5.0])) == (
        pytest.approx(np.sqrt(2.5))
    )
    assert metrics.mae(np.array([1.0, 3.0]), np.array([2.0, 5.0])) == 1.5

    probs = np.array([[0.5, 0.5, 0, 0, 0], [0, 0, 0, 0, 1.0]])
    observed = np.array([0, 4])
    assert metrics.nll(probs, observed) == pytest.approx(-np.log(0.5) / 2)
    # Row 1: CDFs (.5, 1, 1, 1) vs (1, 1, 1, 1) -> 0.25; row 2 is exact.
    assert metrics.rps(probs, observed) == pytest.approx(0.25 / 4 / 2)


def test_nll_floors_zero_probability():
    probs = np.array([[1.0, 0, 0, 0, 0]])
    value = metrics.nll(probs, np.array([3]))
    assert np.isfinite(value)
    assert value == pytest.approx(-np.log(metrics.MIN_PROBABILITY))


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="shapes differ"):
        metrics.rmse(np.zeros(3), np.zeros((3, 1)))


def test_slice_wasserstein_hand_case():
    # Slice 7: real {1, 1}, fake {2, 2} -> W1 1. Slice 9: real {5, 5, 5},
    # fake {5, 5, 3} -> one third of the mass moves 2 levels -> 2/3.
    slices = np.array([7, 7, 9, 9, 9])
    real = np.array([0, 0, 4, 4, 4])
    fake = np.array([1, 1, 4, 4, 2])

    ids, distances, sizes = metrics.slice_wasserstein(
        slices, real, fake, LEVELS, min_count=2
    )
    np.testing.assert_array_equal(ids, [7, 9])
    np.testing.assert_allclose(distances, [1.0, 2 / 3])
    np.testing.assert_array_equal(sizes, [2, 3])

    mean, used = metrics.sliced_wasserstein(slices, real, fake, LEVELS, 3)
    assert (mean, used) == (pytest.approx(2 / 3), 1)
    assert np.isnan(
        metrics.sliced_wasserstein(slices, real, fake, LEVELS, 4)[0]
    )


def test_membership_rows_repeats_rows_per_genre():
    genres = np.array([[True, False, True], [False, True, False]])
    rows, codes = metrics.membership_rows(genres, np.array([1, 0, 1]))
    np.testing.assert_array_equal(rows, [0, 1, 1, 2])
    np.testing.assert_array_equal(codes, [1, 0, 2, 1])


def test_slice_mean_wasserstein_hand_case():
    # Movie means: real 2 and 4, generated 3 and 4 -> sorted means pair up
    # (2 with 3, 4 with 4) -> W1 = (1 + 0) / 2. Movie 3 has too few rows.
    slices = np.array([1, 1, 2, 2, 3])
    real = np.array([1.0, 3.0, 4.0, 4.0, 5.0])
    fake = np.array([3.0, 3.0, 5.0, 3.0, 1.0])
    value, used = metrics.slice_mean_wasserstein(slices, real, fake, 2)
    assert (value, used) == (pytest.approx(0.5), 2)
    assert value == pytest.approx(wasserstein_distance([2, 4], [3, 4]))


def test_two_sample_auc_near_half_for_same_distribution(rng):
    features = rng.random((2000, 3))
    real = np.column_stack([features, rng.integers(1, 6, 2000)])
    fake = np.column_stack([features, rng.integers(1, 6, 2000)])
    auc = metrics.classifier_two_sample_auc(real, fake, seed=0)
    assert abs(auc - 0.5) < 0.05


def test_two_sample_auc_near_one_when_ratings_follow_features(rng):
    # Real ratings are 5 when the first feature is high, else 1; generated
    # ones ignore it. Marginals match, the conditional does not.
    features = rng.random((2000, 3))
    real = np.column_stack([features, np.where(features[:, 0] > 0.5, 5, 1)])
    fake = np.column_stack([features, rng.choice([1, 5], 2000)])
    auc = metrics.classifier_two_sample_auc(real, fake, seed=0)
    assert auc > 0.7
    assert auc == metrics.classifier_two_sample_auc(real, fake, seed=0)
