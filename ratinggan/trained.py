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
from flax.training.train_state import TrainState

from ratinggan import checkpoint, evaluate, predict, run, train
from ratinggan.config import Config, from_dict, override
from ratinggan.data import Dataset
from ratinggan.sharding import make_mesh


@dataclasses.dataclass(frozen=True)
class TrainedModel:
    """A run's config, data and trained states, ready for inference."""

    config: Config
    data: run.RunData
    tables: dict[str, jax.Array]
    regressor: TrainState
    gan: train.GanState
    # The checkpoint's step, and whether training had finished there.
    step: int
    finished: bool
    report_key: jax.Array

    @property
    def dataset(self) -> Dataset:
        return self.data.dataset

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """The regressor's rating for each (user, movie) index pair,
        clipped to the rating scale."""
        predictions = predict.predict_ratings(
            self.regressor, self.tables, users, items
        )
        levels = self.dataset.levels
        return np.clip(predictions, levels[0], levels[-1])

    def distribution(
        self,
        users: np.ndarray,
        items: np.ndarray,
        key: jax.Array | None = None,
        draws: int | None = None,
    ) -> np.ndarray:
        """The generator's rating distribution ``[n, K]`` for each pair,
        over ``dataset.levels``."""
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
        self, users: np.ndarray, items: np.ndarray, key: jax.Array
    ) -> np.ndarray:
        """One generated rating (a value of ``dataset.levels``) per pair."""
        levels = predict.generator_sample(
            self.gan.generator, self.config.gan, self.tables, users, items, key
        )
        return self.dataset.levels[levels]

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
        tables=train.device_tables(context["data"].dataset, mesh),
        regressor=regressor,
        # Sample from the generator's weight average, as training's report
        # does.
        gan=train.with_average_generator(state.gan),
        step=restored.step,
        finished=position.phase == "done",
        report_key=jax.random.wrap_key_data(state.keys["report"]),
    )
