"""Flax modules: rating regressors, the conditional generator and the critic.

Every module reads the same conditioning batch, a dict of arrays:
``users`` and ``items`` (int32 ``[B]`` indices) and ``user_features`` and
``item_features`` (float32 ``[B, D]``, gathered from the dataset's tables).
Ratings enter the critic, and leave the generator, as vectors over the
dataset's rating levels (``[B, K]``): one-hot for real ratings.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

Batch = dict[str, jax.Array]

small_normal = nn.initializers.normal(stddev=0.05)


def _features(batch: Batch) -> jax.Array:
    return jnp.concatenate(
        [batch["user_features"], batch["item_features"]], axis=-1
    )


class LinearRegressor(nn.Module):
    """One weight vector over the encoded user and movie.

    The encoding is a one-hot user ID, a one-hot movie ID and both feature
    vectors, so the model is a global mean plus user and movie biases plus a
    linear function of the features. Returns ``(ratings [B], penalty [B])``
    where ``penalty`` is the squared norm of the ID weights each row used.
    """

    num_users: int
    num_items: int
    rating_mean: float

    @nn.compact
    def __call__(
        self, batch: Batch, train: bool = False
    ) -> tuple[jax.Array, jax.Array]:
        del train  # Nothing random here.
        zeros = nn.initializers.zeros
        user_weight = nn.Embed(self.num_users, 1, embedding_init=zeros)(
            batch["users"]
        )[:, 0]
        item_weight = nn.Embed(self.num_items, 1, embedding_init=zeros)(
            batch["items"]
        )[:, 0]
        feature_term = nn.Dense(1, kernel_init=zeros)(_features(batch))[:, 0]

        ratings = self.rating_mean + user_weight + item_weight + feature_term
        return ratings, user_weight**2 + item_weight**2


class FactorRegressor(nn.Module):
    """Biases plus a dot product of user and movie vectors.

    Each vector is a learned ID embedding plus a projection of the entity's
    side features, so a movie never seen in training still gets a
    prediction from its features, the user's vector and the biases (its own
    embedding stays at its small initial value). Returns ``(ratings [B],
    penalty [B])``, the penalty being the squared norms of the ID parameters
    each row used, for per-example L2 regularisation.
    """

    num_users: int
    num_items: int
    rating_mean: float
    embed_dim: int = 64

    @nn.compact
    def __call__(
        self, batch: Batch, train: bool = False
    ) -> tuple[jax.Array, jax.Array]:
        del train  # Nothing random here.
        zeros = nn.initializers.zeros
        user_bias = nn.Embed(self.num_users, 1, embedding_init=zeros)(
            batch["users"]
        )[:, 0]
        item_bias = nn.Embed(self.num_items, 1, embedding_init=zeros)(
            batch["items"]
        )[:, 0]
        user_embed = nn.Embed(
            self.num_users, self.embed_dim, embedding_init=small_normal
        )(batch["users"])
        item_embed = nn.Embed(
            self.num_items, self.embed_dim, embedding_init=small_normal
        )(batch["items"])

        user_vectors = user_embed + nn.Dense(
            self.embed_dim, use_bias=False, kernel_init=small_normal
        )(batch["user_features"])
        item_vectors = item_embed + nn.Dense(
            self.embed_dim, use_bias=False, kernel_init=small_normal
        )(batch["item_features"])
        feature_bias = nn.Dense(1, kernel_init=zeros)(_features(batch))[:, 0]

        ratings = (
            self.rating_mean
            + user_bias
            + item_bias
            + feature_bias
            + jnp.sum(user_vectors * item_vectors, axis=-1)
        )
        penalty = (
            user_bias**2
            + item_bias**2
            + jnp.sum(user_embed**2, axis=-1)
            + jnp.sum(item_embed**2, axis=-1)
        )
        return ratings, penalty


def cheap_keep_mask(
    key: jax.Array, shape: tuple[int, int], keep_rate: float
) -> jax.Array:
    """A dropout mask ``[B, N]`` keeping each entry with ``keep_rate``.

    Drawing every entry from the threefry generator cost more than the
    whole autoencoder on CPU, so only one 32-bit seed per row is drawn and
    each entry's bits come from a murmur3-style integer hash of that seed
    and the column index: not a cryptographic stream, but plenty for
    dropout.
    """
    seeds = jax.random.bits(key, (shape[0], 1), jnp.uint32)
    columns = jnp.arange(shape[1], dtype=jnp.uint32)[None, :]
    bits = seeds ^ (columns * jnp.uint32(0x9E3779B9))
    bits = (bits ^ (bits >> 16)) * jnp.uint32(0x85EBCA6B)
    bits = (bits ^ (bits >> 13)) * jnp.uint32(0xC2B2AE35)
    bits = bits ^ (bits >> 16)
    return bits < jnp.uint32(min(keep_rate, 1.0 - 2.0**-32) * 2.0**32)


class AutoRecMember(nn.Module):
    """One item autoencoder of ``AutoRecRegressor``, given each row's movie
    column (``[B, num_users]``, the row's own rating already removed)."""

    num_users: int
    num_items: int
    rating_mean: float
    hidden_dim: int
    dropout: float
    deterministic: bool

    @nn.compact
    def __call__(
        self, column: jax.Array, batch: Batch
    ) -> tuple[jax.Array, jax.Array]:
        zeros = nn.initializers.zeros
        users, items = batch["users"], batch["items"]
        if not self.deterministic and self.dropout > 0:
            keep = cheap_keep_mask(
                self.make_rng("dropout"), column.shape, 1.0 - self.dropout
            )
            column = jnp.where(keep, column / (1.0 - self.dropout), 0.0)
        code = nn.sigmoid(
            nn.Dense(self.hidden_dim, kernel_init=small_normal)(column)
            + nn.Dense(self.hidden_dim, use_bias=False, kernel_init=zeros)(
                batch["item_features"]
            )
        )
        user_out = nn.Embed(
            self.num_users, self.hidden_dim, embedding_init=small_normal
        )(users)
        user_bias = nn.Embed(self.num_users, 1, embedding_init=zeros)(users)[
            :, 0
        ]
        item_bias = nn.Embed(self.num_items, 1, embedding_init=zeros)(items)[
            :, 0
        ]
        ratings = (
            self.rating_mean
            + user_bias
            + item_bias
            + jnp.sum(code * user_out, axis=-1)
        )
        penalty = user_bias**2 + item_bias**2 + jnp.sum(user_out**2, -1)
        return ratings, penalty


class AutoRecRegressor(nn.Module):
    """An ensemble of item autoencoders (I-AutoRec), one rating at a time.

    Each member encodes a movie from the column of training ratings it
    received (``history``, ``[num_items, num_users]``, 0 where unrated) and
    its side features into a hidden code; a user's rating is that code
    dotted with the user's output vector, plus biases. The row's own rating
    is removed from the input, so training predicts each rating from the
    movie's other ratings, exactly as a held-out rating is predicted.

    The ``members`` autoencoders start from different draws and are fitted
    each on its own error; a prediction is their mean. With ``train=True``
    the call returns every member's ratings and penalties (``[members,
    B]``) so that the loss treats them apart; otherwise ``(ratings [B],
    penalty [B])``, means over members. The penalty is the squared norms of
    the per-user and per-movie parameters each row used.

    ``history`` is a parameter only so that it travels with the state (and
    its checkpoints); ``create_regressor_state`` fills it with the training
    ratings and the optimiser never changes it. Its size grows with users
    times movies, which limits this model to the smaller releases.

    Reference: Sedhain et al., "AutoRec: Autoencoders Meet Collaborative
    Filtering", WWW 2015.
    """

    num_users: int
    num_items: int
    rating_mean: float
    hidden_dim: int = 500
    dropout: float = 0.0
    members: int = 1

    @nn.compact
    def __call__(
        self, batch: Batch, train: bool = False
    ) -> tuple[jax.Array, jax.Array]:
        history = jax.lax.stop_gradient(
            self.param(
                "history",
                nn.initializers.zeros,
                (self.num_items, self.num_users),
            )
        )
        users, items = batch["users"], batch["items"]
        column = history[items].at[jnp.arange(users.shape[0]), users].set(0.0)

        ensemble = nn.vmap(
            AutoRecMember,
            variable_axes={"params": 0},
            split_rngs={"params": True, "dropout": True},
            in_axes=None,
            out_axes=0,
            axis_size=self.members,
        )
        ratings, penalty = ensemble(
            self.num_users,
            self.num_items,
            self.rating_mean,
            self.hidden_dim,
            self.dropout,
            deterministic=not train,
            name="members",
        )(column, batch)
        if train:
            return ratings, penalty
        return jnp.mean(ratings, 0), jnp.mean(penalty, 0)


class LevelClassifier(nn.Module):
    """A softmax over the rating levels: the factor model made multinomial.

    Per-level user and movie biases, per-level feature weights, and a
    per-level read-out of the product of user and movie vectors (each an ID
    embedding plus a projection of side features). Trained by maximum
    likelihood as a baseline for the generator: it sees the same inputs and
    directly predicts each pair's distribution. Returns ``(logits [B, K],
    penalty [B])``, the penalty being the squared norms of the ID
    parameters each row used.
    """

    num_users: int
    num_items: int
    num_levels: int
    embed_dim: int = 32

    @nn.compact
    def __call__(self, batch: Batch) -> tuple[jax.Array, jax.Array]:
        zeros = nn.initializers.zeros
        user_bias = nn.Embed(
            self.num_users, self.num_levels, embedding_init=zeros
        )(batch["users"])
        item_bias = nn.Embed(
            self.num_items, self.num_levels, embedding_init=zeros
        )(batch["items"])
        user_embed = nn.Embed(
            self.num_users, self.embed_dim, embedding_init=small_normal
        )(batch["users"])
        item_embed = nn.Embed(
            self.num_items, self.embed_dim, embedding_init=small_normal
        )(batch["items"])

        user_vectors = user_embed + nn.Dense(
            self.embed_dim, use_bias=False, kernel_init=small_normal
        )(batch["user_features"])
        item_vectors = item_embed + nn.Dense(
            self.embed_dim, use_bias=False, kernel_init=small_normal
        )(batch["item_features"])
        interaction = nn.Dense(self.num_levels, use_bias=False)(
            user_vectors * item_vectors
        )
        feature_logits = nn.Dense(self.num_levels)(_features(batch))

        logits = user_bias + item_bias + feature_logits + interaction
        penalty = (
            jnp.sum(user_bias**2, axis=-1)
            + jnp.sum(item_bias**2, axis=-1)
            + jnp.sum(user_embed**2, axis=-1)
            + jnp.sum(item_embed**2, axis=-1)
        )
        return logits, penalty


class Conditioning(nn.Module):
    """Encodes (user, movie) into one vector: ID embeddings and features.

    Sows the squared norms of the two embeddings each row used into the
    ``losses`` collection as ``penalty`` ``[B]`` (kept only where that
    collection is mutable), for an L2 term.
    """

    num_users: int
    num_items: int
    embed_dim: int
    hidden_dim: int

    @nn.compact
    def __call__(self, batch: Batch) -> jax.Array:
        user_embed = nn.Embed(
            self.num_users, self.embed_dim, embedding_init=small_normal
        )(batch["users"])
        item_embed = nn.Embed(
            self.num_items, self.embed_dim, embedding_init=small_normal
        )(batch["items"])
        inputs = jnp.concatenate([user_embed, item_embed, _features(batch)], -1)
        self.sow(
            "losses",
            "penalty",
            jnp.sum(user_embed**2, axis=-1) + jnp.sum(item_embed**2, axis=-1),
        )
        return nn.leaky_relu(nn.Dense(self.hidden_dim)(inputs), 0.2)


class Generator(nn.Module):
    """Maps (user, movie, noise) to logits over the rating levels ``[B, K]``.

    The logits are the sum of two parts. A factor head, shaped like the
    softmax classifier (per-level user and movie biases, per-level feature
    weights and a per-level read-out of the product of user and movie
    vectors), carries what the pair alone says about its rating. A noise
    head, an MLP over the pair's encoding and the noise, adds a
    noise-dependent offset (its last layer starts at zero, so training
    starts from the factor head). ``head="mlp"`` keeps only the noise head,
    the plain conditional generator.

    A rating is drawn from these logits with the straight-through
    Gumbel-softmax (``sample_ratings``), so the critic sees exact one-hot
    vectors, as it does for real ratings. The squared norms of the ID
    parameters each row used are sown into the ``losses`` collection as
    ``penalty`` entries ``[B]`` (one per part), for the generator's L2 term.
    """

    num_users: int
    num_items: int
    num_levels: int
    embed_dim: int = 32
    hidden_dim: int = 128
    head: str = "factor"

    @nn.compact
    def __call__(self, batch: Batch, noise: jax.Array) -> jax.Array:
        condition = Conditioning(
            self.num_users, self.num_items, self.embed_dim, self.hidden_dim
        )(batch)
        hidden = jnp.concatenate([condition, noise], axis=-1)
        hidden = nn.leaky_relu(nn.Dense(self.hidden_dim)(hidden), 0.2)
        hidden = nn.leaky_relu(nn.Dense(self.hidden_dim)(hidden), 0.2)
        noise_logits = nn.Dense(
            self.num_levels, kernel_init=nn.initializers.zeros
        )(hidden)
        if self.head == "mlp":
            return noise_logits

        factor_logits, penalty = LevelClassifier(
            self.num_users, self.num_items, self.num_levels, self.embed_dim
        )(batch)
        self.sow("losses", "penalty", penalty)
        if self.head == "ordinal":
            factor_logits += OrdinalHead(
                self.num_users, self.num_items, self.num_levels, self.embed_dim
            )(batch)
        return factor_logits + noise_logits


class OrdinalHead(nn.Module):
    """Log-probabilities ``[B, K]`` of a cumulative-logit (ordinal) model.

    A pair's location is a factor model (biases, features and a dot product
    of user and movie vectors); level ``k`` or below has probability
    ``sigmoid(threshold_k - location)`` with increasing learned thresholds.
    Ratings are ordered, and this ties neighbouring levels together where
    the per-level softmax treats them as unrelated classes. Sows its ID
    parameters' squared norms as ``penalty`` ``[B]``.
    """

    num_users: int
    num_items: int
    num_levels: int
    embed_dim: int

    @nn.compact
    def __call__(self, batch: Batch) -> jax.Array:
        location, penalty = FactorRegressor(
            self.num_users, self.num_items, 0.0, self.embed_dim
        )(batch)
        self.sow("losses", "penalty", penalty)
        steps = self.param(
            "threshold_steps",
            nn.initializers.constant(1.0),
            (self.num_levels - 1,),
        )
        first = self.param("first_threshold", nn.initializers.zeros, ())
        thresholds = (
            first
            - 1.5
            + jnp.cumsum(
                jnp.concatenate([jnp.zeros(1), jax.nn.softplus(steps[1:])])
            )
        )
        below = jax.nn.sigmoid(thresholds[None, :] - location[:, None])
        batch_size = location.shape[0]
        cumulative = jnp.concatenate(
            [jnp.zeros((batch_size, 1)), below, jnp.ones((batch_size, 1))], 1
        )
        return jnp.log(jnp.maximum(jnp.diff(cumulative, axis=1), 1e-6))


class Critic(nn.Module):
    """Scores (user, movie, rating vector) triples: higher means more real.

    A projection critic: an MLP over the conditioning and the rating, plus
    the inner product of the rating vector with a per-condition vector, which
    lets it compare a pair's ratings with that pair's expected ones directly.
    Returns scores ``[B]``.
    """

    num_users: int
    num_items: int
    num_levels: int
    embed_dim: int = 32
    hidden_dim: int = 128

    @nn.compact
    def __call__(self, batch: Batch, ratings: jax.Array) -> jax.Array:
        condition = Conditioning(
            self.num_users, self.num_items, self.embed_dim, self.hidden_dim
        )(batch)
        hidden = jnp.concatenate([condition, ratings], axis=-1)
        hidden = nn.leaky_relu(nn.Dense(self.hidden_dim)(hidden), 0.2)
        hidden = nn.leaky_relu(nn.Dense(self.hidden_dim)(hidden), 0.2)
        projection = nn.Dense(self.num_levels)(condition)
        return nn.Dense(1)(hidden)[:, 0] + jnp.sum(projection * ratings, -1)


def sample_ratings(
    logits: jax.Array, key: jax.Array, temperature: float
) -> jax.Array:
    """Draws one-hot ratings ``[B, K]`` by straight-through Gumbel-softmax.

    The forward value is exactly one-hot (a draw from ``softmax(logits)``);
    the gradient is that of the tempered softmax relaxation.
    """
    gumbel = jax.random.gumbel(key, logits.shape, logits.dtype)
    soft = jax.nn.softmax((logits + gumbel) / temperature, axis=-1)
    hard = jax.nn.one_hot(
        jnp.argmax(soft, -1), logits.shape[-1], dtype=soft.dtype
    )
    # soft - stop_gradient(soft) is exactly zero forward, so the value stays
    # exactly one-hot while the gradient is the relaxation's.
    return hard + (soft - jax.lax.stop_gradient(soft))
