import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ratinggan import config as config_lib
from ratinggan import models, predict, run, training
from ratinggan.data import holdout, make_synthetic
from ratinggan.sharding import make_mesh

TINY = config_lib.override(
    config_lib.Config(),
    {
        "regressor.model": "factor",
        "regressor.batch_size": 64,
        "regressor.embed_dim": 8,
        "gan.batch_size": 32,
        "gan.critic_steps": 2,
        "gan.embed_dim": 8,
        "gan.hidden_dim": 16,
        "gan.noise_dim": 4,
    },
)


@pytest.fixture(scope="module")
def tiny():
    split = make_synthetic(num_users=40, num_items=60, num_ratings=1200, seed=1)
    mesh = make_mesh()
    return split, mesh, training.device_tables(split.dataset, mesh)


def _first_batch(split, tables, mesh, size):
    ratings = training.device_ratings(split.train, split.dataset, mesh)
    return training.gather_batch(tables, ratings, jnp.arange(size))


def test_sample_ratings_is_one_hot_with_softmax_frequencies():
    logits = jnp.tile(jnp.log(jnp.array([0.1, 0.2, 0.3, 0.4])), (20_000, 1))
    samples = models.sample_ratings(logits, jax.random.key(0), 0.7)

    np.testing.assert_array_equal(np.sort(np.unique(samples)), [0.0, 1.0])
    np.testing.assert_allclose(samples.sum(-1), 1.0)
    np.testing.assert_allclose(samples.mean(0), [0.1, 0.2, 0.3, 0.4], atol=0.01)


def test_regressor_step_jit_matches_eager_and_lowers_loss(tiny):
    split, mesh, tables = tiny
    state = training.create_regressor_state(
        TINY.regressor, split.dataset, 3.5, jax.random.key(0), mesh
    )
    batch = _first_batch(split, tables, mesh, 64)
    step = functools.partial(training.regressor_step, l2=0.01)

    eager_state, eager_metrics = step(state, batch, jax.random.key(1))
    jit_state, jit_metrics = jax.jit(step)(state, batch, jax.random.key(1))
    np.testing.assert_allclose(eager_metrics["loss"], jit_metrics["loss"], 1e-6)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
        eager_state.params,
        jit_state.params,
    )

    losses = []
    for _ in range(30):
        state, metrics = jax.jit(step)(state, batch, jax.random.key(1))
        losses.append(float(metrics["loss"]))
    assert losses[-1] < 0.8 * losses[0]


def test_linear_regressor_starts_at_the_mean(tiny):
    split, mesh, tables = tiny
    config = config_lib.override(TINY, {"regressor.model": "linear"}).regressor
    state = training.create_regressor_state(
        config, split.dataset, 3.25, jax.random.key(0), mesh
    )
    predictions = predict.predict_ratings(
        state, tables, split.test.users, split.test.items
    )
    np.testing.assert_allclose(predictions, 3.25)


def test_epoch_compiles_once_and_is_reproducible(tiny):
    split, mesh, tables = tiny
    ratings = training.device_ratings(split.train, split.dataset, mesh)
    epoch_fn = training.make_epoch(
        functools.partial(training.regressor_step, l2=0.01),
        mesh,
        len(split.train),
        64,
    )

    # One state object: a new optimizer object would be new static pytree
    # metadata, and so a legitimate recompile.
    initial = training.create_regressor_state(
        TINY.regressor, split.dataset, 3.5, jax.random.key(0), mesh
    )

    def run_two_epochs():
        state = jax.tree.map(jnp.copy, initial)  # the epoch donates its state
        for epoch in range(2):
            state, metrics = epoch_fn(
                state, tables, ratings, jax.random.key(epoch)
            )
        return state, metrics

    first_state, first_metrics = run_two_epochs()
    second_state, second_metrics = run_two_epochs()
    assert epoch_fn._cache_size() == 1
    assert float(first_metrics["loss"]) == float(second_metrics["loss"])
    jax.tree.map(
        np.testing.assert_array_equal, first_state.params, second_state.params
    )


def test_gan_step_updates_both_networks_with_finite_metrics(tiny):
    split, mesh, tables = tiny
    state = training.create_gan_state(
        TINY.gan, split.dataset, jax.random.key(0), mesh
    )
    ratings = training.device_ratings(split.train, split.dataset, mesh)
    batches = training.gather_batch(
        tables, ratings, jnp.arange(64).reshape(2, 32)
    )

    new_state, metrics = jax.jit(
        functools.partial(training.gan_step, config=TINY.gan)
    )(state, batches, jax.random.key(1))

    assert int(new_state.critic.step) == 2
    assert int(new_state.generator.step) == 1
    for name in (
        "critic_loss",
        "wasserstein",
        "gradient_penalty",
        "generator_loss",
    ):
        assert np.isfinite(metrics[name]), name
    changed = jax.tree.map(
        lambda a, b: bool(jnp.any(a != b)),
        state.generator.params,
        new_state.generator.params,
    )
    assert any(jax.tree.leaves(changed))


def test_bce_loss_option_trains(tiny):
    split, mesh, tables = tiny
    config = config_lib.override(TINY, {"gan.loss": "bce"}).gan
    state = training.create_gan_state(
        config, split.dataset, jax.random.key(0), mesh
    )
    ratings = training.device_ratings(split.train, split.dataset, mesh)
    batches = training.gather_batch(
        tables, ratings, jnp.arange(64).reshape(2, 32)
    )
    _, metrics = training.gan_step(
        state, batches, jax.random.key(1), config=config
    )
    assert "gradient_penalty" not in metrics
    assert np.isfinite(metrics["critic_loss"])


def test_generator_distribution_sums_to_one(tiny):
    split, mesh, tables = tiny
    # The plain MLP generator; the factor head starts from its features.
    config = config_lib.override(TINY, {"gan.generator_head": "mlp"}).gan
    state = training.create_gan_state(
        config, split.dataset, jax.random.key(0), mesh
    )
    probs = predict.generator_distribution(
        state.generator,
        config,
        tables,
        split.test.users,
        split.test.items,
        jax.random.key(1),
        draws=4,
    )
    assert probs.shape == (len(split.test), 5)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    # The critic-facing output layer starts at zero: uniform over levels.
    np.testing.assert_allclose(probs, 0.2, atol=1e-6)


def test_non_finite_metrics_stop_with_the_name():
    with pytest.raises(FloatingPointError, match="gan epoch 3: non-finite"):
        training.check_finite({"critic_loss": float("nan"), "x": 1.0}, "gan", 3)


def test_short_u1_run_beats_the_global_mean(ml100k_dir):
    # The global-mean predictor scores RMSE 1.154 on u1.test.
    from ratinggan.data import read_ml100k

    split = read_ml100k(ml100k_dir, "u1")
    config = config_lib.override(
        config_lib.Config(),
        {
            "regressor.model": "factor",
            "regressor.epochs": 3,
            "regressor.embed_dim": 16,
        },
    )
    train_part, validation = holdout(split.train, 0.05, 0)
    mesh = make_mesh()
    tables = training.device_tables(split.dataset, mesh)
    state, selection = run.fit_regressor(
        config,
        split.dataset,
        train_part,
        validation,
        tables,
        mesh,
        jax.random.key(0),
        run.MetricsLog(None),
        progress=False,
    )
    predictions = np.clip(
        predict.predict_ratings(
            state, tables, split.test.users, split.test.items
        ),
        1,
        5,
    )
    mean_rmse = np.sqrt(
        np.mean((split.train.ratings.mean() - split.test.ratings) ** 2)
    )
    assert mean_rmse == pytest.approx(1.154, abs=5e-4)
    rmse = np.sqrt(np.mean((predictions - split.test.ratings) ** 2))
    assert rmse < 0.97
    assert selection["validation_rmse"] < 0.97
