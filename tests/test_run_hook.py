"""The per-epoch hook of fit_regressor and fit_gan sees each epoch's log
record as it is written."""

import json

import jax
import pytest

from ratinggan import config as config_lib
from ratinggan import run, training
from ratinggan.data import holdout, make_synthetic
from ratinggan.sharding import make_mesh

TINY = config_lib.override(
    config_lib.Config(),
    {
        "regressor.model": "factor",
        "regressor.batch_size": 64,
        "regressor.embed_dim": 4,
        "regressor.epochs": 3,
        "regressor.patience": 10,
        "gan.epochs": 2,
        "gan.batch_size": 32,
        "gan.critic_steps": 2,
        "gan.embed_dim": 4,
        "gan.hidden_dim": 8,
        "gan.noise_dim": 4,
    },
)


@pytest.fixture(scope="module")
def tiny():
    split = make_synthetic(num_users=40, num_items=50, num_ratings=800, seed=3)
    mesh = make_mesh()
    tables = training.device_tables(split.dataset, mesh)
    return split, mesh, tables


def _logged(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_regressor_hook_gets_each_epoch_record(tiny, tmp_path):
    split, mesh, tables = tiny
    train_part, validation = holdout(split.train, 0.1, 0)
    seen = []
    log_path = tmp_path / "metrics.jsonl"

    _, selection = run.fit_regressor(
        TINY,
        split.dataset,
        train_part,
        validation,
        tables,
        mesh,
        jax.random.key(0),
        run.MetricsLog(log_path),
        progress=False,
        on_epoch=seen.append,
    )

    assert seen == _logged(log_path)
    assert [record["epoch"] for record in seen] == [0, 1, 2]
    best = min(record["validation_rmse"] for record in seen)
    assert selection["validation_rmse"] == best


def test_gan_hook_gets_each_epoch_record(tiny, tmp_path):
    split, mesh, tables = tiny
    seen = []
    log_path = tmp_path / "metrics.jsonl"

    run.fit_gan(
        TINY,
        split.dataset,
        split.train,
        tables,
        mesh,
        jax.random.key(1),
        run.MetricsLog(log_path),
        progress=False,
        on_epoch=seen.append,
    )

    assert seen == _logged(log_path)
    assert [record["phase"] for record in seen] == ["gan", "gan"]
    steps_per_epoch = len(split.train) // (32 * 2)
    assert [record["step"] for record in seen] == [
        steps_per_epoch,
        2 * steps_per_epoch,
    ]
