import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ratinggan import losses


def test_gradient_penalty_linear_critic_hand_computed():
    # A linear critic w . x has input gradient w at every point, so the
    # penalty is weight * (|w| - 1)^2 = 10 * (5 - 1)^2 = 160 for w = (3, 4).
    weights = jnp.array([3.0, 4.0])
    real = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    fake = jnp.array([[0.0, 1.0], [0.2, 0.8], [0.5, 0.5]])

    penalty, norms = losses.gradient_penalty(
        lambda x: x @ weights, real, fake, jax.random.key(0), weight=10.0
    )

    np.testing.assert_allclose(norms, [5.0, 5.0, 5.0], rtol=1e-6)
    np.testing.assert_allclose(penalty, 160.0, rtol=1e-6)


def test_gradient_penalty_quadratic_critic_matches_numpy():
    # critic(x) = sum(x^2) per row has gradient 2 x_hat at the interpolate
    # x_hat = e * real + (1 - e) * fake, with e drawn from the same key.
    key = jax.random.key(3)
    real = jax.random.uniform(jax.random.key(1), (6, 5))
    fake = jax.random.uniform(jax.random.key(2), (6, 5))

    penalty, norms = losses.gradient_penalty(
        lambda x: jnp.sum(x**2, axis=-1), real, fake, key, weight=2.5
    )

    fraction = np.asarray(jax.random.uniform(key, (6, 1)))
    x_hat = fraction * np.asarray(real) + (1 - fraction) * np.asarray(fake)
    expected_norms = np.linalg.norm(2 * x_hat, axis=-1)
    np.testing.assert_allclose(norms, expected_norms, rtol=1e-5)
    np.testing.assert_allclose(
        penalty, 2.5 * np.mean((expected_norms - 1) ** 2), rtol=1e-5
    )


def test_gradient_penalty_zero_gradient_is_finite_and_equals_weight():
    # A critic that ignores its rating input has zero input gradient: the
    # norm is 0, the penalty weight * (0 - 1)^2 = weight, and the gradient of
    # the penalty with respect to the critic's parameters must not be NaN.
    real = jnp.eye(5)[:4]
    fake = jnp.eye(5)[1:]

    def penalty_of(scale):
        critic = lambda x: scale * jnp.zeros(x.shape[0]) + scale  # noqa: E731
        return losses.gradient_penalty(
            critic, real, fake, jax.random.key(0), weight=7.0
        )[0]

    penalty, grad = jax.value_and_grad(penalty_of)(jnp.float32(2.0))
    assert penalty == pytest.approx(7.0)
    assert np.isfinite(grad)


def test_safe_norm_gradient_at_zero_is_zero():
    grad = jax.grad(lambda x: losses.safe_norm(x))(jnp.zeros(3))
    np.testing.assert_array_equal(grad, np.zeros(3))
    np.testing.assert_allclose(losses.safe_norm(jnp.array([3.0, 4.0])), 5.0)


def test_gradient_penalty_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="differ in shape"):
        losses.gradient_penalty(
            lambda x: x.sum(-1),
            jnp.ones((2, 5)),
            jnp.ones((3, 5)),
            jax.random.key(0),
        )


def test_wasserstein_and_bce_losses_match_formulas():
    real = jnp.array([1.0, 2.0, 3.0])
    fake = jnp.array([-1.0, 0.5])
    assert losses.wasserstein_critic_loss(real, fake) == pytest.approx(
        -0.25 - 2.0
    )
    assert losses.wasserstein_generator_loss(fake) == pytest.approx(0.25)

    def softplus(x):
        return np.log1p(np.exp(x))

    expected = np.mean(softplus(-np.asarray(real))) + np.mean(
        softplus(np.asarray(fake))
    )
    assert losses.bce_critic_loss(real, fake) == pytest.approx(expected, 1e-6)
    assert losses.bce_generator_loss(fake) == pytest.approx(
        np.mean(softplus(-np.asarray(fake))), 1e-6
    )


def test_regression_loss_values_and_shape_check():
    predictions = jnp.array([3.0, 4.0])
    ratings = jnp.array([4.0, 4.0])
    loss, mse = losses.regression_loss(
        predictions, ratings, jnp.array([1.0, 3.0]), l2=0.5
    )
    assert mse == pytest.approx(0.5)
    assert loss == pytest.approx(0.5 + 0.5 * 2.0)
    with pytest.raises(ValueError, match="differ in shape"):
        losses.regression_loss(predictions, ratings[:, None], ratings, 0.1)
