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
