"""The Python API in a few calls: config, data, train, load.

```python
import ratinggan

config = ratinggan.make_config(synthetic={"num_users": 100}, gan={"epochs": 2})
model = ratinggan.train(config, "runs/api")       # or ratinggan.load(...)
model.predict([0, 1], [5, 7])                     # regressor ratings
model.distribution([0], [5])                      # [1, levels] probabilities
model.recommend(user=0, k=5)                      # unseen movies, best first
model.sample_dataset(seed=1)                      # one draw per training pair
```

Each call reuses the library's own pieces (``run``, ``trained``); nothing
here trains or predicts differently from the ``ratinggan`` command.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ratinggan import config_file, run, trained
from ratinggan.config import Config, from_dict
from ratinggan.data import Split
from ratinggan.trained import TrainedModel


def make_config(file: str | os.PathLike | None = None, **values: Any) -> Config:
    """A config: the default, then ``file`` (TOML or YAML, as
    ``ratinggan train --config`` reads), then ``values``.

    ``values`` name top-level fields (``dataset="ml-100k"``) or sections
    as dicts (``gan={"epochs": 5}``); an unknown name raises
    ``ValueError``.
    """
    base = config_file.load_config(file, Config()) if file else Config()
    return _changed(base, values)


def _changed(config: Config, values: dict[str, Any]) -> Config:
    """``config`` with top-level fields and section dicts replaced."""
    changes = config.to_dict()
    for name, value in values.items():
        if isinstance(value, dict) and isinstance(changes.get(name), dict):
            changes[name] = {**changes[name], **value}
        else:
            changes[name] = value
    return from_dict(changes)


def load_dataset(config: Config | str = "synthetic", **values: Any) -> Split:
    """The train/test split a run on ``config`` trains and tests on.

    ``config`` is a ``Config`` or a dataset name (``synthetic``, a
    MovieLens release such as ``ml-100k``, or the path of your own CSV or
    Parquet file); ``values`` change fields as in ``make_config``, for
    example ``load_dataset("ml-100k", data_dir="data/ml-100k", fold="u2")``.
    Users and movies are numbered ``0..n-1``; ``split.dataset.user_ids``
    and ``item_ids`` hold their raw IDs.
    """
    if isinstance(config, str):
        config = make_config(dataset=config, **values)
    else:
        config = _changed(config, values)
    return run.load_data(config).split


def train(
    config: Config | None = None,
    workdir: str | os.PathLike = "runs/latest",
    *,
    progress: bool = True,
    restart: bool = False,
    tensorboard: bool = False,
) -> TrainedModel:
    """Trains the regressor and the GAN in ``workdir`` and returns the
    trained model, loaded back from the run's last checkpoint.

    The same run as ``ratinggan train``: ``workdir`` receives
    ``config.json``, ``metrics.jsonl``, checkpoints and ``report.json``;
    a work directory holding a run of the same config resumes it (a
    finished one is only evaluated again). ``run.train_and_evaluate`` is
    the same call returning the report instead.
    """
    run.train_and_evaluate(
        config or Config(), workdir, progress, restart, tensorboard
    )
    return trained.load(workdir)


def load(
    workdir: str | os.PathLike, data_dir: str | os.PathLike | None = None
) -> TrainedModel:
    """The trained model of ``workdir`` (its newest good checkpoint), on
    the devices of this machine; ``data_dir`` if the data moved."""
    return trained.load(
        Path(workdir), None if data_dir is None else str(data_dir)
    )
