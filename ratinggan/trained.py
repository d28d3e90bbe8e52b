"""A trained model read back from its work directory.

``load(workdir)`` restores the newest good checkpoint onto the devices of
this process (any number of them: arrays come back replicated over the
current mesh, whatever mesh saved them) and rebuilds the data the run
trained on from the config saved beside it. Nothing in the work directory
is changed.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pandas as pd
from flax.training.train_state import TrainState
from numpy.typing import ArrayLike
from tqdm.auto import tqdm

from ratinggan import checkpoint, evaluate, predict, run, training
from ratinggan.config import Config, from_dict, override
from ratinggan.data import Dataset, Ratings
from ratinggan.sharding import make_mesh


@dataclasses.dataclass(frozen=True)
class TrainedModel:
    """A run's config, data and trained states, ready for inference."""

    config: Config
    data: run.RunData
    tables: dict[str, jax.Array]
    regressor: TrainState
    gan: training.GanState
    # The checkpoint's step, and whether training had finished there.
    step: int
    finished: bool
    report_key: jax.Array

    @property
    def dataset(self) -> Dataset:
        """Users, movies, features and the rating scale of the run."""
        return self.data.dataset

    @property
    def train_ratings(self) -> Ratings:
        """The whole training part of the split (validation rows
        included): the ratings the model has seen."""
        return self.data.split.train

    def user_index(self, user_ids: ArrayLike) -> np.ndarray:
        """Indices of raw user IDs (as in the source files); raises
        ``ValueError`` naming the first ID the run does not know."""
        return _indices(self.dataset.user_ids, user_ids, "user")

    def item_index(self, item_ids: ArrayLike) -> np.ndarray:
        """Indices of raw movie IDs; raises ``ValueError`` naming the first
        ID the run does not know."""
        return _indices(self.dataset.item_ids, item_ids, "movie")

    def predict(
        self, users: ArrayLike, items: ArrayLike, *, raw_ids: bool = False
    ) -> np.ndarray:
        """The regressor's rating for each (user, movie) pair, clipped to
        the rating scale. Pairs are index arrays, or raw IDs from the
        source files with ``raw_ids=True``."""
        users, items = self.index_pairs(users, items, raw_ids)
        predictions = predict.predict_ratings(
            self.regressor, self.tables, users, items
        )
        levels = self.dataset.levels
        return np.clip(predictions, levels[0], levels[-1])

    def distribution(
        self,
        users: ArrayLike,
        items: ArrayLike,
        key: jax.Array | None = None,
        draws: int | None = None,
        *,
        raw_ids: bool = False,
    ) -> np.ndarray:
        """The generator's rating distribution ``[n, K]`` for each pair,
        over ``dataset.levels``: the mean of the softmax over ``draws``
        noise draws (default ``eval.distribution_draws``)."""
        users, items = self.index_pairs(users, items, raw_ids)
        return predict.generator_distribution(
            self.gan.generator,
            self.config.gan,
            self.tables,
            users,
            items,
            jax.random.key(0) if key is None else key,
            draws or self.config.eval.distribution_draws,
        )

    def sample(
        self,
        users: ArrayLike,
        items: ArrayLike,
        key: jax.Array | None = None,
        *,
        raw_ids: bool = False,
    ) -> np.ndarray:
        """One generated rating (a value of ``dataset.levels``) per pair;
        the same ``key`` (default ``jax.random.key(0)``) gives the same
        draws."""
        users, items = self.index_pairs(users, items, raw_ids)
        levels = predict.generator_sample(
            self.gan.generator,
            self.config.gan,
            self.tables,
            users,
            items,
            jax.random.key(0) if key is None else key,
        )
        return self.dataset.levels[levels]

    def index_pairs(
        self, users: ArrayLike, items: ArrayLike, raw_ids: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(user, movie)`` int32 index arrays of equal length: indices
        checked against the data's sizes, or raw IDs looked up with
        ``raw_ids=True``; anything else raises ``ValueError``."""
        if raw_ids:
            users, items = self.user_index(users), self.item_index(items)
        else:
            users = _checked_indices(users, self.dataset.num_users, "user")
            items = _checked_indices(items, self.dataset.num_items, "movie")
        if users.shape != items.shape or users.ndim != 1:
            raise ValueError(
                f"users {users.shape} and movies {items.shape} must be "
                "1-D and of one length: one of each per pair"
            )
        return users, items

    def recommend(
        self, user: int | str, k: int = 10, *, raw_ids: bool = False
    ) -> pd.DataFrame:
        """The ``k`` movies with the highest predicted rating that ``user``
        did not rate in training, best first.

        ``user`` is an index (``0..num_users-1``), or a raw ID from the
        source files with ``raw_ids=True``. Returns one row per movie:
        ``movie`` (index), ``movie_id`` (raw ID), ``title`` (empty when the
        data have none) and ``predicted_rating`` (clipped to the scale;
        the order is that of the unclipped prediction, so ties at the top
        of the scale keep the regressor's ranking).
        """
        if k < 1:
            raise ValueError(f"k must be 1 or more, got {k}")
        index = (
            int(self.user_index([user])[0])
            if raw_ids
            else _checked_index(user, self.dataset.num_users, "user")
        )
        seen = self.train_ratings.items[self.train_ratings.users == index]
        unseen = np.setdiff1d(np.arange(self.dataset.num_items), seen)
        scores = predict.predict_ratings(
            self.regressor,
            self.tables,
            np.full(len(unseen), index, np.int32),
            unseen.astype(np.int32),
        )
        best = np.argsort(-scores, kind="stable")[:k]
        movies = unseen[best]
        levels = self.dataset.levels
        titles = self.dataset.item_titles
        return pd.DataFrame(
            {
                "movie": movies,
                "movie_id": self.dataset.item_ids[movies],
                "title": [titles[m] if titles else "" for m in movies],
                "predicted_rating": np.clip(
                    scores[best], levels[0], levels[-1]
                ),
            }
        )

    def sample_dataset(
        self,
        users: ArrayLike | None = None,
        items: ArrayLike | None = None,
        *,
        seed: int = 0,
        raw_ids: bool = False,
        progress: bool = False,
    ) -> pd.DataFrame:
        """A synthetic rating table: one generated rating per pair.

        Without pairs, every training pair (validation rows included) gets
        a rating and keeps its training timestamp, so the table has the
        shape of the training data; given pairs (indices, or raw IDs with
        ``raw_ids=True``) get timestamp 0. Columns: ``user``, ``movie``
        (indices), ``user_id``, ``movie_id`` (raw IDs), ``rating`` (a level
        of the scale) and ``timestamp``. The same ``seed`` gives the same
        table.
        """
        users, items, timestamps = self._pairs(users, items, raw_ids)
        key = jax.random.key(seed)
        block = predict.CHUNK
        ratings = np.empty(len(users), np.float32)
        starts = range(0, len(users), block)
        for start in tqdm(
            starts, desc="sample", unit="block", disable=not progress
        ):
            rows = slice(start, start + block)
            ratings[rows] = self.sample(
                users[rows], items[rows], jax.random.fold_in(key, start)
            )
        return pd.DataFrame(
            {
                "user": users,
                "movie": items,
                "user_id": self.dataset.user_ids[users],
                "movie_id": self.dataset.item_ids[items],
                "rating": ratings,
                "timestamp": timestamps,
            }
        )

    def _pairs(self, users, items, raw_ids: bool):
        """Index arrays and timestamps of the pairs ``sample_dataset``
        rates."""
        if users is None and items is None:
            train = self.train_ratings
            timestamps = (
                np.zeros(len(train), np.int64)
                if train.timestamps is None
                else train.timestamps.astype(np.int64)
            )
            return train.users, train.items, timestamps
        if users is None or items is None:
            raise ValueError("give both users and items, or neither")
        users, items = self.index_pairs(users, items, raw_ids)
        return users, items, np.zeros(len(users), np.int64)

    def evaluate(self) -> dict[str, Any]:
        """The report of ``evaluate.build_report`` on the test part; with
        the run's own report key, so a finished run's figures come back
        the same (bitwise on the same device count)."""
        return evaluate.build_report(
            self.config,
            self.data.split,
            self.regressor,
            self.gan,
            self.tables,
            self.report_key,
        )


def _checked_index(index: int, size: int, what: str) -> int:
    return int(_checked_indices([index], size, what)[0])


def _checked_indices(indices: ArrayLike, size: int, what: str) -> np.ndarray:
    """Index arrays as int32, refusing any outside ``0..size-1``."""
    indices = np.asarray(indices)
    if indices.dtype.kind not in "iu":
        raise ValueError(
            f"{what} indices must be integers, got {indices.dtype}; pass "
            "raw_ids=True for IDs from the source files"
        )
    outside = (indices < 0) | (indices >= size)
    if outside.any():
        raise ValueError(
            f"{what} index {indices[outside][0]} is outside 0..{size - 1}"
        )
    return indices.astype(np.int32)


def _indices(known: np.ndarray, wanted: ArrayLike, what: str) -> np.ndarray:
    """Positions of raw IDs ``wanted`` in ``known``; unknown IDs raise."""
    wanted = np.asarray(wanted)
    if known.dtype.kind in "iu" and wanted.dtype.kind not in "iu":
        try:
            wanted = wanted.astype(np.int64)
        except ValueError as error:
            raise ValueError(f"{what} IDs of this run are integers") from error
    elif known.dtype.kind not in "iu":
        wanted = wanted.astype(str)
        known = known.astype(str)
    positions = pd.Index(known).get_indexer(wanted)
    missing = positions < 0
    if missing.any():
        raise ValueError(f"unknown {what} ID {wanted[missing][0]}")
    return positions.astype(np.int32)


def load(workdir: str | Path, data_dir: str | None = None) -> TrainedModel:
    """Loads the newest good checkpoint of ``workdir``.

    ``data_dir`` replaces the saved one (the data moved, or another
    machine); the data found there must be what the run trained on.
    """
    workdir = Path(workdir)
    mesh = make_mesh()
    context: dict[str, Any] = {}

    def target_for(meta, saved_config):
        config = from_dict(saved_config)
        if data_dir is not None:
            config = override(config, {"data_dir": str(data_dir)})
        if context.get("config") != config:
            data = run.load_data(config)
            context.update(
                config=config,
                data=data,
                initial=run.initial_state(config, data, mesh),
            )
        if meta["data"] != context["data"].fingerprint():
            raise ValueError(
                f"the data that {config.dataset} {context['data'].split.name} "
                f"gives now differ from those the run in {workdir} trained on"
            )
        position = run.Position(**meta["position"])
        return run.restore_target(
            config, context["data"], mesh, context["initial"], position
        )

    with checkpoint.Checkpoints(workdir, read_only=True) as saved:
        restored = saved.restore_newest(target_for)
    if restored is None:
        raise FileNotFoundError(f"no readable checkpoint in {workdir}")

    state, position = restored.state, run.Position(**restored.meta["position"])
    regressor = state.regressor
    if position.phase == "regressor" and position.best_epoch >= 0:
        regressor = regressor.replace(params=state.best_regressor_params)
    return TrainedModel(
        config=context["config"],
        data=context["data"],
        tables=training.device_tables(context["data"].dataset, mesh),
        regressor=regressor,
        # Sample from the generator's weight average, as training's report
        # does.
        gan=training.with_average_generator(state.gan),
        step=restored.step,
        finished=position.phase == "done",
        report_key=jax.random.wrap_key_data(state.keys["report"]),
    )
