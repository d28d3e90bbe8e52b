"""The autorec regressor: its input, its ensemble and its fixed history."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ratinggan import config as config_lib
from ratinggan import predict, training
from ratinggan.data import Ratings, make_synthetic
from ratinggan.sharding import make_mesh

AUTOREC = config_lib.override(
    config_lib.Config(),
    {
        "regressor.model": "autorec",
        "regressor.hidden_dim": 8,
        "regressor.members": 3,
        "regressor.dropout": 0.0,
        "regressor.batch_size": 64,
    },
).regressor


@pytest.fixture(scope="module")
def tiny():
    split = make_synthetic(num_users=30, num_items=40, num_ratings=600, seed=2)
    mesh = make_mesh()
    return split, mesh, training.device_tables(split.dataset, mesh)


def _state(tiny, config=AUTOREC, seed=0):
    split, mesh, _ = tiny
    return training.create_regressor_state(
        config, split.dataset, 3.0, jax.random.key(seed), mesh, split.train
    )


def _batch(tiny, rows):
    split, mesh, tables = tiny
    ratings = training.device_ratings(split.train, split.dataset, mesh)
    return training.gather_batch(tables, ratings, jnp.asarray(rows))


def test_rating_matrix_places_each_rating(tiny):
    split = tiny[0]
    ratings = Ratings(
        users=np.array([0, 2, 2], np.int32),
        items=np.array([1, 1, 3], np.int32),
        ratings=np.array([4.0, 2.0, 5.0], np.float32),
    )
    matrix = training.rating_matrix(ratings, split.dataset)

    expected = np.zeros((split.dataset.num_items, split.dataset.num_users))
    expected[1, 0], expected[1, 2], expected[3, 2] = 4.0, 2.0, 5.0
    np.testing.assert_array_equal(matrix, expected)


def test_autorec_needs_the_training_ratings(tiny):
    split, mesh, _ = tiny
    with pytest.raises(ValueError, match="training ratings"):
        training.create_regressor_state(
            AUTOREC, split.dataset, 3.0, jax.random.key(0), mesh
        )


def test_prediction_ignores_the_rows_own_rating(tiny):
    split, _, tables = tiny
    state = _state(tiny)
    user, item = int(split.train.users[0]), int(split.train.items[0])
    other = int(np.flatnonzero(split.train.items == item)[1])
    other_user = int(split.train.users[other])

    def predict_with(history):
        changed = state.replace(params={**state.params, "history": history})
        return predict.predict_ratings(
            changed, tables, np.array([user]), np.array([item])
        )[0]

    history = state.params["history"]
    base = predict_with(history)
    own_changed = predict_with(history.at[item, user].add(-2.0))
    other_changed = predict_with(history.at[item, other_user].add(-2.0))

    assert own_changed == pytest.approx(base, abs=1e-6)
    assert abs(other_changed - base) > 1e-4


def test_ensemble_trains_members_apart_and_predicts_their_mean(tiny):
    state = _state(tiny)
    state = state.replace(
        params={
            **state.params,
            "members": jax.tree.map(
                lambda x: (
                    x
                    + 0.1 * jnp.arange(3.0).reshape((3,) + (1,) * (x.ndim - 1))
                ),
                state.params["members"],
            ),
        }
    )
    batch = _batch(tiny, np.arange(16))
    members, member_penalty = state.apply_fn(
        {"params": state.params},
        batch,
        train=True,
        rngs={"dropout": jax.random.key(0)},
    )
    mean, penalty = state.apply_fn({"params": state.params}, batch)

    assert members.shape == (3, 16)
    assert float(jnp.std(members, 0).max()) > 1e-3
    np.testing.assert_allclose(mean, members.mean(0), rtol=1e-6)
    np.testing.assert_allclose(penalty, member_penalty.mean(0), rtol=1e-6)

    # The loss is each member's own squared error, averaged, plus L2.
    _, metrics = training.regressor_step(
        state, batch, jax.random.key(0), l2=0.1
    )
    errors = np.asarray(members) - np.asarray(batch["ratings"])[None]
    expected_mse = float(np.mean(errors**2))
    expected_loss = expected_mse + 0.1 * float(np.mean(member_penalty))
    assert float(metrics["mse"]) == pytest.approx(expected_mse, rel=1e-5)
    assert float(metrics["loss"]) == pytest.approx(expected_loss, rel=1e-5)


def test_training_lowers_the_loss_and_keeps_the_history(tiny):
    config = config_lib.override(
        config_lib.Config(),
        {
            **{f"regressor.{k}": v for k, v in vars(AUTOREC).items()},
            "regressor.dropout": 0.3,
            "regressor.weight_decay": 0.1,
            "regressor.learning_rate": 0.01,
        },
    ).regressor
    state = _state(tiny, config)
    history = np.asarray(state.params["history"])
    batch = _batch(tiny, np.arange(64))
    step = jax.jit(functools.partial(training.regressor_step, l2=0.01))

    losses = []
    for index in range(40):
        state, metrics = step(state, batch, jax.random.key(index))
        losses.append(float(metrics["mse"]))

    assert np.mean(losses[-5:]) < 0.7 * losses[0]
    np.testing.assert_array_equal(state.params["history"], history)


def test_cheap_keep_mask_keeps_the_rate_independently():
    from ratinggan.models import cheap_keep_mask

    keep = np.asarray(cheap_keep_mask(jax.random.key(0), (4000, 500), 0.3))
    other = np.asarray(cheap_keep_mask(jax.random.key(1), (4000, 500), 0.3))

    assert keep.mean() == pytest.approx(0.3, abs=0.003)
    # Binomial spread of per-row and per-column rates: sqrt(p(1-p)/n).
    assert keep.mean(1).std() == pytest.approx(np.sqrt(0.21 / 500), rel=0.1)
    assert keep.mean(0).std() == pytest.approx(np.sqrt(0.21 / 4000), rel=0.1)
    assert abs(np.corrcoef(keep[:, 0], keep[:, 1])[0, 1]) < 0.05
    assert (keep != other).mean() == pytest.approx(2 * 0.3 * 0.7, abs=0.005)
