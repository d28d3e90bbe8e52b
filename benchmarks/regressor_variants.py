"""Scores regressor variants on ML-100K folds and ml-latest-small.

    python benchmarks/regressor_variants.py --variants default,svdpp \
        --folds u1,u2,u3,u4,u5,latest --data-root ../shared/data

Each variant is a set of ``regressor.*`` config overrides (``VARIANTS``
below). Each run trains with the library's ``run.fit_regressor`` (early
stopping on a seeded 5% validation part of the training data) and is
scored once on the test part. Prints one JSON line per run and a table.

ml-latest-small has no library reader yet; ``read_latest_small`` is a
minimal loader for this script only: a seeded (0) 90/10 random split, movie
features from genres and year, no user features.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import jax
import numpy as np
import pandas as pd

from ratinggan import metrics, predict, run, training
from ratinggan.config import Config, override
from ratinggan.data import Dataset, Ratings, Split, holdout, read_ml100k
from ratinggan.sharding import make_mesh

VARIANTS: dict[str, dict] = {
    # The shipped defaults: an ensemble of three item autoencoders.
    "default": {},
    # The first version's default: a factor model trained with Adam.
    "factor-v1": {
        "model": "factor",
        "batch_size": 512,
        "learning_rate": 1e-3,
        "l2": 0.03,
        "weight_decay": 0.0,
    },
    # Steps on the way to the default.
    "autorec-h256": {"members": 1, "hidden_dim": 256},
    "autorec-x3-h256": {"hidden_dim": 256},
    "autorec-h128": {"members": 1},
}


def read_latest_small(data_dir: Path, seed: int = 0) -> Split:
    """ml-latest-small with a seeded 90/10 random split (benchmark only)."""
    frame = pd.read_csv(data_dir / "ratings.csv")
    movies = pd.read_csv(data_dir / "movies.csv")
    user_ids = np.unique(frame["userId"].to_numpy())
    item_ids = np.unique(
        np.concatenate([movies["movieId"].to_numpy(), frame["movieId"]])
    )
    movies = movies.set_index("movieId").reindex(item_ids)
    genres = movies["genres"].fillna("").str.get_dummies("|")
    genres = genres.drop(columns=["(no genres listed)"], errors="ignore")
    years = (
        movies["title"]
        .fillna("")
        .map(
            lambda title: (
                float(m.group(1))
                if (m := re.search(r"\((\d{4})\)\s*$", title))
                else np.nan
            )
        )
    )
    years = years.fillna(years.mean()).to_numpy()
    years = (years - years.mean()) / years.std()
    item_features = np.concatenate(
        [genres.to_numpy(np.float32), years[:, None].astype(np.float32)], 1
    )
    dataset = Dataset(
        name="ml-latest-small",
        levels=np.arange(1, 11, dtype=np.float32) / 2,
        user_ids=user_ids,
        item_ids=item_ids,
        user_features=np.zeros((len(user_ids), 0), np.float32),
        item_features=item_features,
        user_feature_names=(),
        item_feature_names=tuple(genres.columns) + ("year",),
        genres=genres.to_numpy(bool),
        genre_names=tuple(genres.columns),
    )
    everything = Ratings(
        users=np.searchsorted(user_ids, frame["userId"]).astype(np.int32),
        items=np.searchsorted(item_ids, frame["movieId"]).astype(np.int32),
        ratings=frame["rating"].to_numpy(np.float32),
    )
    train_part, test = holdout(everything, 0.1, seed)
    return Split(dataset, train_part, test, "90/10")


def load(name: str, data_root: Path) -> Split:
    if name == "latest":
        return read_latest_small(data_root / "ml-latest-small")
    return read_ml100k(data_root / "ml-100k", name)


def score(config: Config, split: Split) -> dict:
    """Fits the regressor on ``split`` and scores it on the test part."""
    train_part, validation = holdout(
        split.train, config.validation_fraction, config.seed
    )
    mesh = make_mesh()
    tables = training.device_tables(split.dataset, mesh)
    started = time.perf_counter()
    state, selection = run.fit_regressor(
        config,
        split.dataset,
        train_part,
        validation,
        tables,
        mesh,
        # The regressor's key as run.train_and_evaluate derives it, so the
        # figures match `ratinggan train`.
        jax.random.split(jax.random.key(config.seed), 3)[0],
        run.MetricsLog(None),
        progress=False,
    )
    seconds = time.perf_counter() - started
    levels = split.dataset.levels
    predictions = np.clip(
        predict.predict_ratings(
            state, tables, split.test.users, split.test.items
        ),
        levels[0],
        levels[-1],
    )
    return {
        "test_rmse": metrics.rmse(predictions, split.test.ratings),
        "validation_rmse": selection["validation_rmse"],
        "epoch": selection["epoch"],
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="default")
    parser.add_argument("--folds", default="u1")
    parser.add_argument("--data-root", default="../shared/data")
    parser.add_argument(
        "--set", action="append", default=[], help="extra override k=v"
    )
    parser.add_argument("--output", help="append JSON lines here")
    args = parser.parse_args()

    extra = {}
    for item in args.set:
        name, value = item.split("=", 1)
        extra[name] = json.loads(value)
    rows = []
    for variant in args.variants.split(","):
        for fold in args.folds.split(","):
            split = load(fold, Path(args.data_root))
            changes = {
                f"regressor.{k}": v for k, v in VARIANTS[variant].items()
            }
            config = override(Config(), {**changes, **extra})
            row = {"variant": variant, "fold": fold, **extra}
            row.update(score(config, split))
            rows.append(row)
            print(json.dumps(row), flush=True)
            if args.output:
                with open(args.output, "a") as stream:
                    stream.write(json.dumps(row) + "\n")

    print(
        f"{'variant':24} {'fold':7} {'test':>7} {'val':>7} {'ep':>3} {'s':>6}"
    )
    for row in rows:
        print(
            f"{row['variant']:24} {row['fold']:7} {row['test_rmse']:7.4f} "
            f"{row['validation_rmse']:7.4f} {row['epoch']:3d} "
            f"{row['seconds']:6.1f}"
        )
    ml100k = [r["test_rmse"] for r in rows if r["fold"].startswith("u")]
    if ml100k:
        print("mean over ML-100K folds run:", round(float(np.mean(ml100k)), 4))


if __name__ == "__main__":
    main()
