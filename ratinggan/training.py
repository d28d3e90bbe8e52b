"""Train states, pure train steps, and compiled epochs over device data.

Each step is a pure ``(state, batch, key) -> (state, metrics)`` function.
``make_epoch`` is the one place where steps are transformed: it wraps a
step in a ``lax.scan`` over shuffled batches gathered from the
device-resident rating tables, and jits the whole epoch with replicated
state, a row-sharded rating table, batch-sharded steps and a donated state
(``ratinggan.sharding`` says how that makes it data parallel).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

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
from ratinggan.sharding import (
    DATA_AXIS,
    batch_sharded,
    replicated,
    shard_rows,
)

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
    """Splits a rating table, with each rating's level index, by rows across
    the devices (see ``sharding``). The arrays are zero-padded to a multiple
    of the device count; ``len(ratings)`` stays the number of real rows."""
    return shard_rows(
        {
            "users": ratings.users.astype(np.int32),
            "items": ratings.items.astype(np.int32),
            "ratings": ratings.ratings.astype(np.float32),
            "levels": dataset.level_index(ratings.ratings),
        },
        mesh,
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
    """One gradient step on mean squared error plus per-row L2.

    ``key`` drives the regressor's dropout, where it has any. An ensemble
    returns ``[members, B]`` predictions in training; each member's error is
    averaged in, so the members fit the ratings independently.
    """

    def loss_fn(params):
        predictions, penalty = state.apply_fn(
            {"params": params}, batch, train=True, rngs={"dropout": key}
        )
        targets = jnp.broadcast_to(batch["ratings"], predictions.shape)
        return losses.regression_loss(predictions, targets, penalty, l2)

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
    # pass over the data per epoch, as the critic does. Rows go batch-major
    # ([B, group] then flat): with B split across devices, each device's
    # rows stay contiguous and nothing is gathered.
    # The flat size is spelt out: -1 cannot be inferred for a zero-width
    # leaf (the user features of a release without demographics).
    all_rows = jax.tree.map(
        lambda x: jnp.swapaxes(x, 0, 1).reshape(
            (x.shape[0] * x.shape[1],) + x.shape[2:]
        ),
        batches,
    )
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


class _EpochPlan(NamedTuple):
    """How an epoch cuts ``num_rows`` rows into steps, shared by both epoch
    builders so that they take the same batches with the same keys."""

    num_steps: int
    step_shape: tuple[int, ...]
    row_sharding: NamedSharding


def _plan_epoch(
    mesh: Mesh, num_rows: int, batch_size: int, group: int | None
) -> _EpochPlan:
    rows_per_step = batch_size * (group or 1)
    num_steps = num_rows // rows_per_step
    if num_steps == 0:
        raise ValueError(
            f"the training part has {num_rows} rows, fewer than one step's "
            f"{rows_per_step}; lower the batch size"
        )
    step_shape = (batch_size,) if group is None else (group, batch_size)
    row_spec = PartitionSpec(*([None] * (len(step_shape) - 1)), DATA_AXIS)
    return _EpochPlan(num_steps, step_shape, NamedSharding(mesh, row_spec))


def _epoch_order(plan: _EpochPlan, num_rows: int, key: jax.Array):
    """The epoch's shuffled rows ``[num_steps, *step_shape]`` (the last
    partial step dropped) and the key its steps fold their index into."""
    order_key, step_key = jax.random.split(key)
    rows = jax.random.permutation(order_key, num_rows)
    rows = rows[: plan.num_steps * math.prod(plan.step_shape)]
    return rows.reshape((plan.num_steps,) + plan.step_shape), step_key


def _take_step(
    step_fn, plan, state, tables, ratings, step_rows, step_key, step
):
    step_rows = jax.lax.with_sharding_constraint(step_rows, plan.row_sharding)
    batch = gather_batch(tables, ratings, step_rows)
    return step_fn(state, batch, jax.random.fold_in(step_key, step))


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
    metrics)``, jitted with the state donated: the new state reuses its
    buffers, so a run holds one copy of the parameters and Adam moments.
    ``ratings`` is a table from ``device_ratings``; ``tables`` and the state
    are replicated. The program depends only on shapes, so every epoch after
    the first reuses the first one's compilation.
    """
    plan = _plan_epoch(mesh, num_rows, batch_size, group)

    def epoch(state, tables, ratings, key):
        order, step_key = _epoch_order(plan, num_rows, key)

        def body(state, inputs):
            step_rows, step = inputs
            return _take_step(
                step_fn, plan, state, tables, ratings, step_rows, step_key, step
            )

        state, metrics = jax.lax.scan(
            body, state, (order, jnp.arange(plan.num_steps))
        )
        return state, jax.tree.map(jnp.mean, metrics)

    everywhere = replicated(mesh)
    return jax.jit(
        epoch,
        in_shardings=(everywhere, everywhere, batch_sharded(mesh), everywhere),
        out_shardings=everywhere,
        donate_argnums=0,
    )


class ResumableEpoch(NamedTuple):
    """An epoch that can stop after any step and carry on later.

    ``order(key)`` fixes the epoch's batches and step key; ``run(state,
    sums, tables, ratings, rows, step_key, start, stop)`` takes steps
    ``start..stop-1`` and returns the state, the running metric sums and,
    per metric, the first step whose value was not finite (-1 if none).
    One compiled program serves every ``start``/``stop``, so an epoch cut
    into pieces ends bitwise equal to an uncut one. ``zero_sums(state,
    tables, ratings)`` gives the sums to start an epoch with.
    """

    num_steps: int
    order: Callable
    run: Callable
    zero_sums: Callable


def make_resumable_epoch(
    step_fn: StepFn,
    mesh: Mesh,
    num_rows: int,
    batch_size: int,
    group: int | None = None,
) -> ResumableEpoch:
    """Like ``make_epoch`` (same batches, same per-step keys), but run in
    pieces so that a run can checkpoint, and resume, within an epoch."""
    plan = _plan_epoch(mesh, num_rows, batch_size, group)
    everywhere = replicated(mesh)

    def order(key):
        return _epoch_order(plan, num_rows, key)

    def run(state, sums, tables, ratings, rows, step_key, start, stop):
        def body(step, carry):
            state, sums, first_bad = carry
            state, metrics = _take_step(
                step_fn,
                plan,
                state,
                tables,
                ratings,
                rows[step],
                step_key,
                step,
            )
            sums = jax.tree.map(jnp.add, sums, metrics)
            first_bad = jax.tree.map(
                lambda seen, value: jnp.where(
                    (seen < 0) & ~jnp.isfinite(value), step, seen
                ),
                first_bad,
                metrics,
            )
            return state, sums, first_bad

        no_bad = jax.tree.map(lambda _: jnp.int32(-1), sums)
        return jax.lax.fori_loop(start, stop, body, (state, sums, no_bad))

    metric_shapes = []  # Traced once: the step's metrics never change.

    def zero_sums(state, tables, ratings):
        if not metric_shapes:
            rows = jnp.zeros(plan.step_shape, jnp.int32)

            def metrics_of(state):
                batch = gather_batch(tables, ratings, rows)
                return step_fn(state, batch, jax.random.key(0))[1]

            metric_shapes.append(jax.eval_shape(metrics_of, state))
        zeros = jax.tree.map(
            lambda s: np.zeros(s.shape, s.dtype), metric_shapes[0]
        )
        return jax.device_put(zeros, everywhere)

    return ResumableEpoch(
        num_steps=plan.num_steps,
        order=jax.jit(order, out_shardings=everywhere),
        run=jax.jit(
            run,
            # The rating table stays split by rows, as device_ratings left it.
            in_shardings=(everywhere,) * 3
            + (batch_sharded(mesh),)
            + (everywhere,) * 4,
            out_shardings=everywhere,
            donate_argnums=(0, 1),
        ),
        zero_sums=zero_sums,
    )


# --------------------------------------------------------------- states ----


def make_regressor(
    config: RegressorConfig, dataset: Dataset, rating_mean: float
) -> models.LinearRegressor | models.FactorRegressor | models.AutoRecRegressor:
    """The regressor module named by ``config.model``."""
    if config.model == "linear":
        return models.LinearRegressor(
            dataset.num_users, dataset.num_items, rating_mean
        )
    if config.model == "factor":
        return models.FactorRegressor(
            dataset.num_users, dataset.num_items, rating_mean, config.embed_dim
        )
    if config.model == "autorec":
        return models.AutoRecRegressor(
            dataset.num_users,
            dataset.num_items,
            rating_mean,
            config.hidden_dim,
            config.dropout,
            config.members,
        )
    raise ValueError(
        f"unknown regressor.model {config.model!r}; expected factor, "
        "autorec or linear"
    )


# Users x movies cells of autorec's dense rating table: ML-1M (22M) fits,
# ML-10M (750M, 3 GB) does not.
MAX_AUTOREC_CELLS = 100_000_000


def rating_matrix(ratings: Ratings, dataset: Dataset) -> np.ndarray:
    """The training ratings as a dense ``[num_items, num_users]`` matrix
    with 0 where a movie was not rated (what AutoRec reads)."""
    matrix = np.zeros((dataset.num_items, dataset.num_users), np.float32)
    matrix[ratings.items, ratings.users] = ratings.ratings
    return matrix


def regressor_optimizer(
    config: RegressorConfig, params
) -> optax.GradientTransformation:
    """Adam (AdamW with ``weight_decay``) on every parameter but the
    ``history`` table, which is data and stays fixed."""
    labels = jax.tree_util.tree_map_with_path(
        lambda path, _: (
            "fixed"
            if any(getattr(k, "key", None) == "history" for k in path)
            else "trained"
        ),
        params,
    )
    trained = optax.adamw(
        config.learning_rate, weight_decay=config.weight_decay
    )
    return optax.multi_transform(
        {"trained": trained, "fixed": optax.set_to_zero()}, labels
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
    history: Ratings | None = None,
) -> TrainState:
    """A replicated regressor train state.

    ``history``, the training ratings, is required by the ``autorec``
    model, which reads them as its input.
    """
    model = make_regressor(config, dataset, rating_mean)
    matrix = None
    if config.model == "autorec":
        if history is None:
            raise ValueError(
                "regressor.model 'autorec' needs the training ratings "
                "(history=...)"
            )
        cells = dataset.num_items * dataset.num_users
        if cells > MAX_AUTOREC_CELLS:
            raise ValueError(
                f"regressor.model 'autorec' keeps a dense {dataset.num_items}"
                f" x {dataset.num_users} rating table, over its limit of "
                f"{MAX_AUTOREC_CELLS:,} cells; use regressor.model=factor"
            )
        matrix = jax.device_put(
            rating_matrix(history, dataset), replicated(mesh)
        )

    @functools.partial(jax.jit, out_shardings=replicated(mesh))
    def init(key, matrix):
        params = model.init(key, _example_batch(dataset))["params"]
        if matrix is not None:
            params = {**params, "history": matrix}
        return TrainState.create(
            apply_fn=model.apply,
            params=params,
            tx=regressor_optimizer(config, params),
        )

    return init(key, matrix)


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
