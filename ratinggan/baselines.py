"""Baselines the generator must beat, each a distribution per test pair.

- the global training histogram;
- each movie's training histogram, shrunk towards the global one;
- the regressor plus Gaussian residual noise, rounded to the scale;
- a softmax classifier over the levels trained by maximum likelihood on the
  same inputs as the regressor and the generator.

Every baseline returns probabilities ``[n, K]`` over the rating levels.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training.train_state import TrainState
from jax.sharding import Mesh
from scipy.stats import norm
from tqdm.auto import tqdm

from ratinggan import metrics, models, predict, training
from ratinggan.config import RegressorConfig
from ratinggan.data import Dataset, Ratings
from ratinggan.sharding import check_batch_size, replicated

# Pseudo-ratings, spread as the global histogram, added to each movie's
# histogram so that a movie with few ratings keeps every level possible
# (and an unseen movie falls back to the global histogram).
MOVIE_HISTOGRAM_PRIOR = 1.0


def global_histogram(dataset: Dataset, train_part: Ratings) -> np.ndarray:
    """The share of each level among the training ratings, ``[K]``."""
    return metrics.histogram(
        dataset.level_index(train_part.ratings), dataset.num_levels
    )


def movie_histograms(dataset: Dataset, train_part: Ratings) -> np.ndarray:
    """Each movie's training histogram with a global prior, ``[movies, K]``."""
    k = dataset.num_levels
    counts = np.zeros((dataset.num_items, k))
    np.add.at(
        counts, (train_part.items, dataset.level_index(train_part.ratings)), 1
    )
    counts += MOVIE_HISTOGRAM_PRIOR * global_histogram(dataset, train_part)
    return counts / counts.sum(1, keepdims=True)


def rounded_gaussian_probs(
    means: np.ndarray, std: float, levels: np.ndarray
) -> np.ndarray:
    """Distribution of ``round(mean + std * noise)`` to the scale, ``[n, K]``.

    Rounding sends a value to the nearest level, so level ``k`` collects the
    Gaussian mass between the midpoints to its neighbours; the lowest and
    highest levels also collect the tails beyond the scale.
    """
    if not std > 0:
        raise ValueError(f"residual std must be positive, got {std}")
    edges = (levels[1:] + levels[:-1]) / 2
    below = norm.cdf((edges[None, :] - means[:, None]) / std)
    cumulative = np.concatenate(
        [np.zeros((len(means), 1)), below, np.ones((len(means), 1))], axis=1
    )
    return np.diff(cumulative, axis=1)


def residual_std(predictions: np.ndarray, ratings: np.ndarray) -> float:
    """Root mean squared residual of the regressor on its training ratings.

    Training residuals run smaller than test ones, so this noise is a
    little too narrow; the protocol defines the baseline this way.
    """
    return metrics.rmse(predictions, ratings)


# ------------------------------------------------- softmax classifier ----


def classifier_step(
    state: TrainState, batch: models.Batch, key: jax.Array, *, l2: float
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One gradient step on cross-entropy over the levels plus per-row L2."""
    del key  # Deterministic; the key keeps the step signature.

    def loss_fn(params):
        logits, penalty = state.apply_fn({"params": params}, batch)
        nll = jnp.mean(
            optax.softmax_cross_entropy_with_integer_labels(
                logits, batch["levels"]
            )
        )
        return nll + l2 * jnp.mean(penalty), nll

    (loss, nll), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    metrics = {"loss": loss, "nll": nll, "grad_norm": optax.tree.norm(grads)}
    return state.apply_gradients(grads=grads), metrics


def create_classifier_state(
    config: RegressorConfig, dataset: Dataset, key: jax.Array, mesh: Mesh
) -> TrainState:
    """A replicated softmax-classifier train state with Adam."""
    model = models.LevelClassifier(
        dataset.num_users,
        dataset.num_items,
        dataset.num_levels,
        config.embed_dim,
    )
    example = {
        "users": jnp.zeros((1,), jnp.int32),
        "items": jnp.zeros((1,), jnp.int32),
        "user_features": jnp.zeros((1, dataset.user_features.shape[1])),
        "item_features": jnp.zeros((1, dataset.item_features.shape[1])),
    }

    @functools.partial(jax.jit, out_shardings=replicated(mesh))
    def init(key):
        return TrainState.create(
            apply_fn=model.apply,
            params=model.init(key, example)["params"],
            tx=optax.adam(config.learning_rate),
        )

    return init(key)


@functools.partial(jax.jit, static_argnums=0)
def _classify(apply_fn, params, tables, users, items):
    logits, _ = apply_fn(
        {"params": params}, training.conditioning(tables, users, items)
    )
    return jax.nn.softmax(logits, axis=-1)


def classifier_probs(
    state: TrainState, tables, users: np.ndarray, items: np.ndarray
) -> np.ndarray:
    """The classifier's distribution for each pair, ``[n, K]``."""
    probs = predict._in_chunks(
        lambda u, i, _: _classify(state.apply_fn, state.params, tables, u, i),
        users,
        items,
    )
    return probs.astype(np.float64)


def fit_classifier(
    config: RegressorConfig,
    dataset: Dataset,
    train_part: Ratings,
    validation: Ratings,
    tables,
    mesh: Mesh,
    key: jax.Array,
    progress: bool = False,
) -> tuple[TrainState, dict[str, float]]:
    """Trains the softmax classifier with the regressor's optimisation
    settings, keeping the epoch with the best validation NLL."""
    check_batch_size(config.batch_size, mesh, "regressor.batch_size")
    init_key, loop_key = jax.random.split(key)
    state = create_classifier_state(config, dataset, init_key, mesh)
    epoch_fn = training.make_epoch(
        functools.partial(classifier_step, l2=config.l2),
        mesh,
        len(train_part),
        config.batch_size,
    )
    ratings = training.device_ratings(train_part, dataset, mesh)
    validation_levels = dataset.level_index(validation.ratings)

    best = {"validation_nll": float("inf"), "epoch": -1}
    best_params, waited = None, 0
    bar = tqdm(range(config.epochs), desc="softmax", disable=not progress)
    for epoch in bar:
        state, epoch_metrics = epoch_fn(
            state, tables, ratings, jax.random.fold_in(loop_key, epoch)
        )
        training.check_finite(
            {k: float(v) for k, v in epoch_metrics.items()}, "softmax", epoch
        )
        probs = classifier_probs(
            state, tables, validation.users, validation.items
        )
        validation_nll = metrics.nll(probs, validation_levels)
        bar.set_postfix(val_nll=f"{validation_nll:.4f}")

        if validation_nll < best["validation_nll"]:
            best = {"validation_nll": validation_nll, "epoch": epoch}
            # Copy: the next epoch donates (and so frees) the state's buffers.
            best_params, waited = jax.tree.map(jnp.copy, state.params), 0
        else:
            waited += 1
            if waited >= config.patience:
                break
    return state.replace(params=best_params), best
