"""Losses: regression, WGAN-GP with its gradient penalty, and the BCE GAN."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp


def safe_norm(x: jax.Array, axis: int = -1) -> jax.Array:
    """Euclidean norm along ``axis`` whose gradient is finite at zero.

    ``jnp.linalg.norm`` has a NaN gradient at the zero vector (0/0); the
    double ``where`` keeps both the value (0) and the gradient (0) finite.
    """
    squared = jnp.sum(jnp.square(x), axis=axis)
    positive = squared > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, squared, 1.0)), 0.0)


def gradient_penalty(
    critic_fn: Callable[[jax.Array], jax.Array],
    real: jax.Array,
    fake: jax.Array,
    key: jax.Array,
    weight: float = 10.0,
) -> tuple[jax.Array, jax.Array]:
    """WGAN-GP penalty: ``weight * mean((||grad critic(x_hat)|| - 1)^2)``.

    ``x_hat`` interpolates each real and generated rating vector (``[B, K]``)
    at its own uniform fraction; the gradient is taken with ``jax.grad`` with
    respect to the rating input only, the conditioning held fixed inside
    ``critic_fn`` (rating vectors ``[B, K]`` to scores ``[B]``). Summing the
    scores before ``jax.grad`` gives each row's own input gradient, since a
    row's score depends on that row's input alone.

    Returns ``(penalty, gradient norms [B])``.

    Reference: Gulrajani et al., "Improved Training of Wasserstein GANs",
    NeurIPS 2017 (arXiv:1704.00028), Algorithm 1.
    """
    if real.shape != fake.shape:
        raise ValueError(
            "real and fake ratings differ in shape: "
            f"{real.shape} vs {fake.shape}"
        )
    fraction = jax.random.uniform(key, (real.shape[0], 1), real.dtype)
    interpolates = fraction * real + (1.0 - fraction) * fake

    gradients = jax.grad(lambda x: jnp.sum(critic_fn(x)))(interpolates)
    norms = safe_norm(gradients, axis=-1)
    return weight * jnp.mean(jnp.square(norms - 1.0)), norms


def wasserstein_critic_loss(real_scores, fake_scores) -> jax.Array:
    """The critic minimises ``E[D(fake)] - E[D(real)]``."""
    return jnp.mean(fake_scores) - jnp.mean(real_scores)


def wasserstein_generator_loss(fake_scores) -> jax.Array:
    """The generator minimises ``-E[D(fake)]``."""
    return -jnp.mean(fake_scores)


def bce_critic_loss(real_scores, fake_scores) -> jax.Array:
    """Binary cross-entropy on logits: real labelled 1, generated 0."""
    return jnp.mean(jax.nn.softplus(-real_scores)) + jnp.mean(
        jax.nn.softplus(fake_scores)
    )


def bce_generator_loss(fake_scores) -> jax.Array:
    """Non-saturating generator loss: ``-log sigmoid(D(fake))``."""
    return jnp.mean(jax.nn.softplus(-fake_scores))


def regression_loss(
    predictions: jax.Array, ratings: jax.Array, penalty: jax.Array, l2: float
) -> tuple[jax.Array, jax.Array]:
    """Mean squared error plus ``l2`` times the mean per-row penalty.

    Returns ``(loss, mse)``. Shapes must match exactly: a ``[B]`` minus
    ``[B, 1]`` broadcast would silently give a ``[B, B]`` error matrix.
    """
    if predictions.shape != ratings.shape:
        raise ValueError(
            f"predictions {predictions.shape} and ratings {ratings.shape} "
            "differ in shape"
        )
    mse = jnp.mean(jnp.square(predictions - ratings))
    return mse + l2 * jnp.mean(penalty), mse
