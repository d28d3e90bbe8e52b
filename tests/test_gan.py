"""The generator's factor head, MLE term, pretraining switch and average."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ratinggan import config as config_lib
from ratinggan import models, training
from ratinggan.data import make_synthetic
from ratinggan.sharding import make_mesh

TINY = config_lib.override(
    config_lib.Config(),
    {
        "gan.batch_size": 32,
        "gan.critic_steps": 2,
        "gan.embed_dim": 8,
        "gan.hidden_dim": 16,
        "gan.noise_dim": 4,
    },
).gan


@pytest.fixture(scope="module")
def tiny():
    split = make_synthetic(num_users=40, num_items=60, num_ratings=1200, seed=1)
    mesh = make_mesh()
    tables = training.device_tables(split.dataset, mesh)
    ratings = training.device_ratings(split.train, split.dataset, mesh)
    batches = training.gather_batch(
        tables, ratings, jnp.arange(64).reshape(2, 32)
    )
    return split, mesh, batches


def _state(split, mesh, config):
    return training.create_gan_state(
        config, split.dataset, jax.random.key(0), mesh
    )


def _hand_mle_loss(state, batch, key, config):
    """Cross-entropy plus L2, from the parameters directly."""
    params = state.generator.params
    noise_key, _ = jax.random.split(key)
    noise = jax.random.normal(noise_key, (32, config.noise_dim))
    logits = state.generator.apply_fn({"params": params}, batch, noise)
    log_probs = np.asarray(jax.nn.log_softmax(logits))
    levels = np.asarray(batch["levels"])
    nll = -np.mean(log_probs[np.arange(32), levels])

    users, items = np.asarray(batch["users"]), np.asarray(batch["items"])
    factor = params["LevelClassifier_0"]
    condition = params["Conditioning_0"]
    penalty = 0.0
    for table, rows in (
        (factor["Embed_0"], users),
        (factor["Embed_1"], items),
        (factor["Embed_2"], users),
        (factor["Embed_3"], items),
        (condition["Embed_0"], users),
        (condition["Embed_1"], items),
    ):
        penalty += np.sum(np.asarray(table["embedding"])[rows] ** 2) / 32
    return nll + config.l2 * penalty


def test_noise_head_starts_silent(tiny):
    split, mesh, batches = tiny
    state = _state(split, mesh, TINY)
    batch = jax.tree.map(lambda x: x[0], batches)
    apply = state.generator.apply_fn
    params = {"params": state.generator.params}

    first = apply(params, batch, jax.random.normal(jax.random.key(1), (32, 4)))
    second = apply(params, batch, jax.random.normal(jax.random.key(2), (32, 4)))
    np.testing.assert_array_equal(first, second)


def test_generator_loss_during_pretraining_is_mle_plus_l2(tiny):
    split, mesh, batches = tiny
    config = config_lib.override(
        config_lib.Config(gan=TINY),
        # The hand reference sums the factor head's and conditioning's
        # embedding tables; the ordinal head adds its own.
        {
            "gan.pretrain_steps": 1,
            "gan.l2": 0.5,
            "gan.generator_head": "factor",
        },
    ).gan
    state = _state(split, mesh, config)
    batch = jax.tree.map(lambda x: x[0], batches)
    key = jax.random.key(3)

    _, metrics = training.generator_step(state, batch, key, config=config)
    np.testing.assert_allclose(
        metrics["generator_loss"],
        _hand_mle_loss(state, batch, key, config),
        rtol=1e-5,
    )

    # After pretraining the critic's term joins with its weight.
    trained = state.replace(generator=state.generator.replace(step=1))
    _, metrics = training.generator_step(trained, batch, key, config=config)
    np.testing.assert_allclose(
        metrics["generator_loss"],
        _hand_mle_loss(state, batch, key, config)
        + metrics["generator_adversarial"],
        rtol=1e-5,
    )


def test_gan_off_generator_ignores_the_critic(tiny):
    split, mesh, batches = tiny
    config = config_lib.override(
        config_lib.Config(gan=TINY), {"gan.adversarial_weight": 0.0}
    ).gan
    state = _state(split, mesh, config)
    other_critic = _state(
        split, mesh, config_lib.override(config_lib.Config(gan=config), {}).gan
    ).critic.replace(
        params=jax.tree.map(lambda x: x + 1.0, state.critic.params)
    )
    batch = jax.tree.map(lambda x: x[0], batches)

    first, _ = training.generator_step(
        state, batch, jax.random.key(4), config=config
    )
    second, _ = training.generator_step(
        state.replace(critic=other_critic),
        batch,
        jax.random.key(4),
        config=config,
    )
    jax.tree.map(
        np.testing.assert_array_equal,
        first.generator.params,
        second.generator.params,
    )


def test_gan_step_keeps_a_moving_average_of_the_generator(tiny):
    split, mesh, batches = tiny
    config = config_lib.override(
        config_lib.Config(gan=TINY), {"gan.average_decay": 0.75}
    ).gan
    state = _state(split, mesh, config)
    jax.tree.map(
        np.testing.assert_array_equal,
        state.generator_average,
        state.generator.params,
    )

    new_state, _ = training.gan_step(
        state, batches, jax.random.key(5), config=config
    )
    expected = jax.tree.map(
        lambda old, new: 0.75 * old + 0.25 * new,
        state.generator.params,
        new_state.generator.params,
    )
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
        new_state.generator_average,
        expected,
    )
    sampled = training.with_average_generator(new_state)
    assert sampled.generator.params is new_state.generator_average


def test_gan_step_without_user_features(tiny):
    """Releases after ML-1M have no demographics: user features [B, 0]."""
    split, mesh, _ = tiny
    num_users = split.dataset.user_features.shape[0]
    dataset = dataclasses.replace(
        split.dataset,
        user_features=np.zeros((num_users, 0), np.float32),
        user_feature_names=(),
    )
    tables = training.device_tables(dataset, mesh)
    ratings = training.device_ratings(split.train, dataset, mesh)
    batches = training.gather_batch(
        tables, ratings, jnp.arange(64).reshape(2, 32)
    )
    state = training.create_gan_state(TINY, dataset, jax.random.key(0), mesh)

    _, metrics = training.gan_step(
        state, batches, jax.random.key(1), config=TINY
    )

    assert batches["user_features"].shape == (2, 32, 0)
    assert all(np.isfinite(float(value)) for value in metrics.values())


def test_mle_generator_learns_the_training_histogram(tiny):
    split, mesh, batches = tiny
    config = config_lib.override(
        config_lib.Config(gan=TINY),
        {"gan.adversarial_weight": 0.0, "gan.generator_learning_rate": 0.05},
    ).gan
    state = _state(split, mesh, config)
    step = jax.jit(lambda s, k: training.gan_step(s, batches, k, config=config))
    for i in range(60):
        state, metrics = step(state, jax.random.key(i))

    # With only 64 rows the MLE optimum is close to each pair's own
    # rating; the mean predicted histogram then matches the rows' histogram.
    flat = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), batches)
    logits, _ = training.generator_logits(
        state.generator, state.generator.params, flat, jax.random.key(9), config
    )
    levels = np.asarray(flat["levels"])
    histogram = np.bincount(levels, minlength=logits.shape[1]) / len(levels)
    np.testing.assert_allclose(
        np.asarray(jax.nn.softmax(logits)).mean(0), histogram, atol=0.05
    )
    nll = optax.softmax_cross_entropy_with_integer_labels(
        logits, flat["levels"]
    )
    assert float(jnp.mean(nll)) < 0.5


def test_unknown_generator_head_is_refused(tiny):
    split, mesh, _ = tiny
    config = config_lib.override(
        config_lib.Config(gan=TINY), {"gan.generator_head": "deep"}
    ).gan
    with pytest.raises(ValueError, match="generator_head 'deep'"):
        _state(split, mesh, config)


def test_ordinal_head_matches_a_cumulative_logit_model(tiny):
    split, _, batches = tiny
    batch = jax.tree.map(lambda x: x[0], batches)
    head = models.OrdinalHead(40, 60, 5, 8)
    params = head.init(jax.random.key(0), batch)["params"]
    params["first_threshold"] = jnp.asarray(0.3)
    params["threshold_steps"] = jnp.asarray([9.0, 0.5, -1.0, 2.0])

    log_probs = np.asarray(head.apply({"params": params}, batch))
    location, _ = models.FactorRegressor(40, 60, 0.0, 8).apply(
        {"params": params["FactorRegressor_0"]}, batch
    )
    softplus = np.log1p(np.exp([0.5, -1.0, 2.0]))
    thresholds = 0.3 - 1.5 + np.concatenate([[0.0], np.cumsum(softplus)])
    below = 1 / (
        1 + np.exp(-(thresholds[None] - np.asarray(location)[:, None]))
    )
    cumulative = np.concatenate([np.zeros((32, 1)), below, np.ones((32, 1))], 1)
    np.testing.assert_allclose(
        np.exp(log_probs), np.diff(cumulative, axis=1), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(np.exp(log_probs).sum(1), 1.0, rtol=1e-5)
