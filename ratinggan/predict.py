"""Inference: point predictions, per-pair distributions and rating draws.

Each function takes (user, movie) index arrays of any length and runs in
fixed-size chunks, so one compiled program serves every call.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax.training.train_state import TrainState

from ratinggan.config import GanConfig
from ratinggan.training import conditioning

CHUNK = 16_384


def _in_chunks(fn, users: np.ndarray, items: np.ndarray, key=None):
    """Applies ``fn(users, items, key)`` to padded fixed-size chunks."""
    outputs = []
    for start in range(0, len(users), CHUNK):
        chunk_users = users[start : start + CHUNK]
        size = len(chunk_users)
        pad = CHUNK - size if len(users) > CHUNK else 0
        chunk_items = items[start : start + CHUNK]
        chunk_key = None if key is None else jax.random.fold_in(key, start)
        result = fn(
            np.pad(chunk_users, (0, pad)).astype(np.int32),
            np.pad(chunk_items, (0, pad)).astype(np.int32),
            chunk_key,
        )
        outputs.append(np.asarray(result)[:size])
    if not outputs:
        return np.zeros((0,), np.float32)
    return np.concatenate(outputs)


@functools.partial(jax.jit, static_argnums=0)
def _regress(apply_fn, params, tables, users, items):
    predictions, _ = apply_fn(
        {"params": params}, conditioning(tables, users, items)
    )
    return predictions


def predict_ratings(
    state: TrainState, tables, users: np.ndarray, items: np.ndarray
) -> np.ndarray:
    """The regressor's rating for each pair (not clipped), float32 ``[n]``."""
    return _in_chunks(
        lambda u, i, _: _regress(state.apply_fn, state.params, tables, u, i),
        users,
        items,
    )


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _generator_probs(
    apply_fn, noise_dim, draws, params, tables, users, items, key
):
    batch = conditioning(tables, users, items)

    def one_draw(key):
        noise = jax.random.normal(key, (users.shape[0], noise_dim))
        return jax.nn.softmax(apply_fn({"params": params}, batch, noise), -1)

    return jnp.mean(jax.lax.map(one_draw, jax.random.split(key, draws)), 0)


def generator_distribution(
    state: TrainState,
    config: GanConfig,
    tables,
    users: np.ndarray,
    items: np.ndarray,
    key: jax.Array,
    draws: int = 32,
) -> np.ndarray:
    """Each pair's rating distribution under the generator, ``[n, K]``.

    A draw picks noise ``z`` and then a level from ``softmax(logits(z))``
    (the Gumbel-max step), so the distribution is the average of those
    softmaxes over ``z``, estimated here with ``draws`` noise samples.
    """
    return _in_chunks(
        lambda u, i, k: _generator_probs(
            state.apply_fn,
            config.noise_dim,
            draws,
            state.params,
            tables,
            u,
            i,
            k,
        ),
        users,
        items,
        key,
    )


@functools.partial(jax.jit, static_argnums=(0, 1))
def _generator_draw(apply_fn, noise_dim, params, tables, users, items, key):
    noise_key, level_key = jax.random.split(key)
    noise = jax.random.normal(noise_key, (users.shape[0], noise_dim))
    logits = apply_fn(
        {"params": params}, conditioning(tables, users, items), noise
    )
    return jax.random.categorical(level_key, logits, axis=-1)


def generator_sample(
    state: TrainState,
    config: GanConfig,
    tables,
    users: np.ndarray,
    items: np.ndarray,
    key: jax.Array,
) -> np.ndarray:
    """One generated level index per pair, int ``[n]``."""
    return _in_chunks(
        lambda u, i, k: _generator_draw(
            state.apply_fn, config.noise_dim, state.params, tables, u, i, k
        ),
        users,
        items,
        key,
    )
