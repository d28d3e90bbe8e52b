"""Train states, pure train steps, and compiled epochs over device data.

Each step is a pure ``(state, batch, key) -> (state, metrics)`` function.
``make_epoch`` is the one place where steps are transformed: it wraps a
step in a ``lax.scan`` over shuffled batches gathered from the
device-resident rating tables, and jits the whole epoch with replicated
state, batch-sharded rows and a donated state.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training.train_state import TrainState
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ratinggan import losses, models
from ratinggan.config import GanConfig, RegressorConfig
from ratinggan.data import Dataset, Ratings
from ratinggan.sharding import DATA_AXIS, replicated

Metrics = dict[str, jax.Array]
StepFn = Callable[[Any, models.Batch, jax.Array], tuple[Any, Metrics]]


class GanState(flax.struct.PyTreeNode):
    """The generator's and the critic's train states, one per network, and
    an exponential moving average of the generator's parameters."""

    generator: TrainState
    critic: TrainState
    generator_average: Any


def with_average_generator(state: GanState) -> GanState:
    """``state`` with the generator's parameters replaced by their moving
    average (``gan.average_decay``), the parameters to sample from.

    Adam's steps keep the generator's level biases jittering from one
    update to the next, which shows as a drifting overall rating histogram;
    the average is steadier.
    """
    return state.replace(
        generator=state.generator.replace(params=state.generator_average)
    )


# ---------------------------------------------------------------- data ----


def device_tables(dataset: Dataset, mesh: Mesh) -> dict[str, jax.Array]:
    """Puts the per-entity feature tables on every device."""
    return jax.device_put(
        {
            "user_features": dataset.user_features.astype(np.float32),
            "item_features": dataset.item_features.astype(np.float32),
        },
        replicated(mesh),
    )


def device_ratings(
    ratings: Ratings, dataset: Dataset, mesh: Mesh
) -> dict[str, jax.Array]:
    """Puts a rating table on every device, with each rating's level index."""
    return jax.device_put(
        {
            "users": ratings.users.astype(np.int32),
            "items": ratings.items.astype(np.int32),
            "ratings": ratings.ratings.astype(np.float32),
            "levels": dataset.level_index(ratings.ratings),
        },
        replicated(mesh),
    )


def conditioning(tables, users: jax.Array, items: jax.Array) -> models.Batch:
    """The model inputs for (user, movie) index pairs."""
    return {
        "users": users,
        "items": items,
        "user_features": tables["user_features"][users],
        "item_features": tables["item_features"][items],
    }


def gather_batch(tables, ratings, rows: jax.Array) -> models.Batch:
    """Gathers the rows ``rows`` (any shape) of a device rating table."""
    batch = conditioning(tables, ratings["users"][rows], ratings["items"][rows])
    batch["ratings"] = ratings["ratings"][rows]
    batch["levels"] = ratings["levels"][rows]
    return batch


# --------------------------------------------------------------- steps ----


def regressor_step(
    state: TrainState, batch: models.Batch, key: jax.Array, *, l2: float
) -> tuple[TrainState, Metrics]:
    """One gradient step on mean squared error plus per-row L2."""
    del key  # The regressor is deterministic; the key keeps the signature.

    def loss_fn(params):
        predictions, penalty = state.apply_fn({"params": params}, batch)
        return losses.regression_loss(
            predictions, batch["ratings"], penalty, l2
        )

    (loss, mse), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    metrics = {"loss": loss, "mse": mse, "grad_norm": optax.tree.norm(grads)}
    return state.apply_gradients(grads=grads), metrics


def generator_logits(
    generator: TrainState,
    params,
    batch: models.Batch,
    key: jax.Array,
    config: GanConfig,
) -> tuple[jax.Array, jax.Array]:
    """The generator's logits ``[B, K]`` at fresh noise, and the per-row L2
    penalty ``[B]`` on the ID parameters they used (zeros if none)."""
    noise = jax.random.normal(key, (batch["users"].shape[0], config.noise_dim))
    logits, sown = generator.apply_fn(
        {"params": params}, batch, noise, mutable=["losses"]
    )
    # Each module's sown penalties sit under its own path; add them all.
    parts = jax.tree.leaves(sown.get("losses", {}))
    return logits, sum(parts, jnp.zeros(logits.shape[:1]))


def generate(
    generator: TrainState,
    params,
    batch: models.Batch,
    key: jax.Array,
    config: GanConfig,
) -> jax.Array:
    """Draws one one-hot rating ``[B, K]`` per row of ``batch``."""
    noise_key, gumbel_key = jax.random.split(key)
    logits, _ = generator_logits(generator, params, batch, noise_key, config)
    return models.sample_ratings(logits, gumbel_key, config.gumbel_temperature)


def critic_step(
    state: GanState, batch: models.Batch, key: jax.Array, *, config: GanConfig
) -> tuple[GanState, Metrics]:
    """One critic update against freshly generated ratings."""
    fake_key, penalty_key = jax.random.split(key)
    fake = jax.lax.stop_gradient(
        generate(
            state.generator, state.generator.params, batch, fake_key, config
        )
    )
    real = jax.nn.one_hot(batch["levels"], fake.shape[-1], dtype=fake.dtype)

    def loss_fn(params):
        def critic_fn(ratings):
            return state.critic.apply_fn({"params": params}, batch, ratings)

        real_scores, fake_scores = critic_fn(real), critic_fn(fake)
        if config.loss == "bce":
            loss = losses.bce_critic_loss(real_scores, fake_scores)
            return loss, {"critic_loss": loss}

        distance = -losses.wasserstein_critic_loss(real_scores, fake_scores)
        penalty, norms = losses.gradient_penalty(
            critic_fn, real, fake, penalty_key, config.gp_weight
        )
        metrics = {
            "critic_loss": penalty - distance,
            "wasserstein": distance,
            "gradient_penalty": penalty,
            "critic_input_grad_norm": jnp.mean(norms),
        }
        return penalty - distance, metrics

    grads, metrics = jax.grad(loss_fn, has_aux=True)(state.critic.params)
    metrics["critic_grad_norm"] = optax.tree.norm(grads)
    return state.replace(
        critic=state.critic.apply_gradients(grads=grads)
    ), metrics


def generator_step(
    state: GanState, batch: models.Batch, key: jax.Array, *, config: GanConfig
) -> tuple[GanState, Metrics]:
    """One generator update: the critic's score of straight-through samples,
    plus the cross-entropy of the real ratings and an L2 term.

    The adversarial term is off for the first ``pretrain_steps`` updates,
    so the generator first learns by maximum likelihood alone.
    """
    noise_key, gumbel_key = jax.random.split(key)
    pretrained = state.generator.step >= config.pretrain_steps
    adversarial_weight = jnp.where(pretrained, config.adversarial_weight, 0.0)

    def loss_fn(params):
        logits, penalty = generator_logits(
            state.generator, params, batch, noise_key, config
        )
        fake = models.sample_ratings(
            logits, gumbel_key, config.gumbel_temperature
        )
        scores = state.critic.apply_fn(
            {"params": state.critic.params}, batch, fake
        )
        if config.loss == "bce":
            adversarial = losses.bce_generator_loss(scores)
        else:
            adversarial = losses.wasserstein_generator_loss(scores)
        nll = jnp.mean(
            optax.softmax_cross_entropy_with_integer_labels(
                logits, batch["levels"]
            )
        )
        loss = (
            adversarial_weight * adversarial
            + config.mle_weight * nll
            + config.l2 * jnp.mean(penalty)
        )
        return loss, {
            "generator_adversarial": adversarial,
            "generator_nll": nll,
        }

    (loss, parts), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.generator.params
    )
    metrics = {
        "generator_loss": loss,
        **parts,
        "generator_grad_norm": optax.tree.norm(grads),
    }
    return state.replace(
        generator=state.generator.apply_gradients(grads=grads)
    ), metrics


def gan_step(
    state: GanState, batches: models.Batch, key: jax.Array, *, config: GanConfig
) -> tuple[GanState, Metrics]:
    """``critic_steps`` critic updates, one per batch, then one generator
    update on all those batches together. ``batches`` leaves are
    ``[critic_steps, B]``."""
    critic_key, generator_key = jax.random.split(key)
    critic_keys = jax.random.split(critic_key, config.critic_steps)

    def one_critic_step(state, inputs):
        batch, step_key = inputs
        return critic_step(state, batch, step_key, config=config)

    state, critic_metrics = jax.lax.scan(
        one_critic_step, state, (batches, critic_keys)
    )
    # The generator sees every row of the group, so its MLE term makes one
    # pass over the data per epoch, as the critic does.
    all_rows = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), batches)
    state, generator_metrics = generator_step(
        state, all_rows, generator_key, config=config
    )
    decay = config.average_decay
    state = state.replace(
        generator_average=jax.tree.map(
            lambda average, new: decay * average + (1.0 - decay) * new,
            state.generator_average,
            state.generator.params,
        )
    )
    return state, {
        **jax.tree.map(jnp.mean, critic_metrics),
        **generator_metrics,
    }


# --------------------------------------------------------------- epochs ----


def make_epoch(
    step_fn: StepFn,
    mesh: Mesh,
    num_rows: int,
    batch_size: int,
    group: int | None = None,
):
    """Compiles one pass over ``num_rows`` training rows as a scan of steps.

    Rows are shuffled on the device each epoch; the last partial step is
    dropped (a different remainder each epoch). With ``group``, each step
    gets ``group`` batches stacked (``[group, batch_size]``), as ``gan_step``
    wants. Returns ``epoch(state, tables, ratings, key) -> (state, mean
    metrics)``, jitted with the state donated.
    """
    rows_per_step = batch_size * (group or 1)
    num_steps = num_rows // rows_per_step
    if num_steps == 0:
        raise ValueError(
            f"the training part has {num_rows} rows, fewer than one step's "
            f"{rows_per_step}; lower the batch size"
        )
    step_shape = (batch_size,) if group is None else (group, batch_size)
    row_spec = PartitionSpec(*([None] * (len(step_shape) - 1)), DATA_AXIS)
    row_sharding = NamedSharding(mesh, row_spec)

    def epoch(state, tables, ratings, key):
        order_key, step_key = jax.random.split(key)
        order = jax.random.permutation(order_key, num_rows)
        order = order[: num_steps * rows_per_step].reshape(
            (num_steps,) + step_shape
        )

        def body(state, inputs):
            rows, step = inputs
            rows = jax.lax.with_sharding_constraint(rows, row_sharding)
            batch = gather_batch(tables, ratings, rows)
            return step_fn(state, batch, jax.random.fold_in(step_key, step))

        state, metrics = jax.lax.scan(
            body, state, (order, jnp.arange(num_steps))
        )
        return state, jax.tree.map(jnp.mean, metrics)

    everywhere = replicated(mesh)
    return jax.jit(
        epoch,
        in_shardings=everywhere,
        out_shardings=everywhere,
        donate_argnums=0,
    )


# --------------------------------------------------------------- states ----


def make_regressor(
    config: RegressorConfig, dataset: Dataset, rating_mean: float
) -> models.LinearRegressor | models.FactorRegressor:
    """The regressor module named by ``config.model``."""
    if config.model == "linear":
        return models.LinearRegressor(
            dataset.num_users, dataset.num_items, rating_mean
        )
    if config.model == "factor":
        return models.FactorRegressor(
            dataset.num_users, dataset.num_items, rating_mean, config.embed_dim
        )
    raise ValueError(
        f"unknown regressor.model {config.model!r}; expected factor or linear"
    )


def _example_batch(dataset: Dataset) -> models.Batch:
    return {
        "users": jnp.zeros((1,), jnp.int32),
        "items": jnp.zeros((1,), jnp.int32),
        "user_features": jnp.zeros((1, dataset.user_features.shape[1])),
        "item_features": jnp.zeros((1, dataset.item_features.shape[1])),
    }


def create_regressor_state(
    config: RegressorConfig,
    dataset: Dataset,
    rating_mean: float,
    key: jax.Array,
    mesh: Mesh,
) -> TrainState:
    """A replicated regressor train state with Adam."""
    model = make_regressor(config, dataset, rating_mean)

    @functools.partial(jax.jit, out_shardings=replicated(mesh))
    def init(key):
        params = model.init(key, _example_batch(dataset))["params"]
        return TrainState.create(
            apply_fn=model.apply,
            params=params,
            tx=optax.adam(config.learning_rate),
        )

    return init(key)


def create_gan_state(
    config: GanConfig, dataset: Dataset, key: jax.Array, mesh: Mesh
) -> GanState:
    """Replicated generator and critic train states with Adam."""
    if config.loss not in ("wgan-gp", "bce"):
        raise ValueError(
            f"unknown gan.loss {config.loss!r}; expected wgan-gp or bce"
        )
    if config.generator_head not in ("factor", "ordinal", "mlp"):
        raise ValueError(
            f"unknown gan.generator_head {config.generator_head!r}; "
            "expected factor, ordinal or mlp"
        )
    sizes = dict(
        num_users=dataset.num_users,
        num_items=dataset.num_items,
        num_levels=dataset.num_levels,
        embed_dim=config.embed_dim,
        hidden_dim=config.hidden_dim,
    )
    generator = models.Generator(**sizes, head=config.generator_head)
    critic = models.Critic(**sizes)

    def adam(learning_rate):
        return optax.adam(learning_rate, b1=config.beta1, b2=config.beta2)

    @functools.partial(jax.jit, out_shardings=replicated(mesh))
    def init(key):
        generator_key, critic_key = jax.random.split(key)
        batch = _example_batch(dataset)
        noise = jnp.zeros((1, config.noise_dim))
        ratings = jnp.zeros((1, dataset.num_levels))
        generator_params = generator.init(generator_key, batch, noise)["params"]
        return GanState(
            generator=TrainState.create(
                apply_fn=generator.apply,
                params=generator_params,
                tx=adam(config.generator_learning_rate),
            ),
            generator_average=generator_params,
            critic=TrainState.create(
                apply_fn=critic.apply,
                params=critic.init(critic_key, batch, ratings)["params"],
                tx=adam(config.critic_learning_rate),
            ),
        )

    return init(key)


def check_finite(metrics: dict[str, float], what: str, epoch: int) -> None:
    """Stops a run whose metrics went NaN or infinite, naming which."""
    bad = [name for name, value in metrics.items() if not np.isfinite(value)]
    if bad:
        raise FloatingPointError(
            f"{what} epoch {epoch}: non-finite {', '.join(bad)}"
        )
