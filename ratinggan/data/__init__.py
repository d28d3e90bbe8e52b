"""Rating datasets: MovieLens releases, your own files, synthetic data, splits.

``load_split`` is the one entry point the trainer uses; ``load_release``,
``download``, ``verify`` and ``describe`` back the ``ratinggan data``
command.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from ratinggan.data.cache import (
    default_cache_dir,
    fingerprint,
    load_parsed,
    parsed_path,
    resolve_cache_dir,
    save_parsed,
)
from ratinggan.data.cleaning import distinct
from ratinggan.data.custom import read_custom
from ratinggan.data.dataset import DataError, Dataset, Ratings, Split, holdout
from ratinggan.data.download import download, release_dir, verify
from ratinggan.data.movielens import (
    ML100K_FOLDS,
    read_ml100k,
    read_movielens,
)
from ratinggan.data.releases import RELEASES, release_info
from ratinggan.data.splits import random_split, split_ratings, temporal_split
from ratinggan.data.synthetic import make_synthetic

__all__ = [
    "DataError",
    "Dataset",
    "RELEASES",
    "Ratings",
    "Split",
    "default_cache_dir",
    "describe",
    "download",
    "find_release_dir",
    "holdout",
    "list_releases",
    "load_release",
    "load_split",
    "make_synthetic",
    "random_split",
    "read_custom",
    "read_ml100k",
    "read_movielens",
    "temporal_split",
    "verify",
]

logger = logging.getLogger(__name__)

CUSTOM_SUFFIXES = (".csv", ".tsv", ".txt", ".parquet", ".pq")
SPLITS = ("auto", "fold", "random", "temporal")


def find_release_dir(
    release: str,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    fetch: bool = True,
    progress: bool = False,
) -> Path:
    """The folder holding ``release``'s files.

    ``data_dir`` may be that folder or its parent. Without ``data_dir`` the
    cache is used, downloading the release into it when ``fetch`` allows
    (``progress`` shows a download bar).
    """
    info = release_info(release)
    if data_dir is not None:
        data_dir = Path(data_dir)
        for candidate in (data_dir, data_dir / release, data_dir / info.folder):
            if (candidate / info.ratings_file).is_file():
                return candidate
        return data_dir
    folder = release_dir(release, cache_dir)
    if (folder / info.ratings_file).is_file() or not fetch:
        return folder
    return download(release, cache_dir, progress=progress)


def load_release(
    release: str,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    strict: bool = False,
    use_cache: bool = True,
    fetch: bool = True,
    progress: bool = False,
) -> tuple[Dataset, Ratings]:
    """A whole MovieLens release: ``(dataset, every rating)``.

    The parsed arrays are cached under ``cache_dir`` (default
    ``$RATINGGAN_CACHE_DIR`` or ``~/.cache/ratinggan``) and reused while the
    source files keep their size and modification time. ``progress`` shows
    a bar while the release downloads.
    """
    info = release_info(release)
    folder = find_release_dir(release, data_dir, cache_dir, fetch, progress)
    if not use_cache:
        return read_movielens(release, folder, strict)

    sources = [folder / name for name in info.required_files]
    if not all(path.is_file() for path in sources):
        return read_movielens(release, folder, strict)  # raises, naming files
    stamp = fingerprint(sources, strict=strict)
    cached_at = parsed_path(
        resolve_cache_dir(cache_dir), release, sources, strict=strict
    )
    cached = load_parsed(cached_at, stamp)
    if cached is not None:
        return cached
    dataset, ratings = read_movielens(release, folder, strict)
    try:
        save_parsed(cached_at, stamp, dataset, ratings)
    except OSError as error:
        logger.warning(
            "cannot cache parsed %s at %s: %s", release, cached_at, error
        )
    return dataset, ratings


def _is_custom(dataset: str) -> bool:
    return dataset.lower().endswith(CUSTOM_SUFFIXES) or Path(dataset).is_file()


def load_split(
    dataset: str = "synthetic",
    data_dir: str | None = None,
    fold: str = "u1",
    seed: int = 0,
    synthetic: dict | None = None,
    *,
    split: str = "auto",
    split_seed: int = 0,
    test_fraction: float = 0.1,
    cache_dir: str | None = None,
    user_table: str | None = None,
    item_table: str | None = None,
    test_file: str | None = None,
    strict: bool = False,
    progress: bool = False,
) -> Split:
    """Loads a dataset and its train/test split.

    ``dataset`` is ``synthetic`` (``synthetic`` holds ``make_synthetic``
    sizes), a MovieLens release name (``ml-100k`` ... ``ml-latest``), or the
    path of your own CSV/Parquet rating file (with optional ``user_table``,
    ``item_table`` and a ``test_file``). ``split``: ``auto`` follows the
    protocol (ML-100K's official ``fold``, else ``random``); ``fold``,
    ``random`` (seeded by ``split_seed``, ``test_fraction`` held out) or
    ``temporal`` (the last ``test_fraction`` by time). ``progress`` shows
    a bar while a release downloads.
    """
    if split not in SPLITS:
        raise ValueError(
            f"unknown split {split!r}; expected one of {', '.join(SPLITS)}"
        )
    if dataset == "synthetic":
        return make_synthetic(seed=seed, **(synthetic or {}))

    if _is_custom(dataset):
        data, ratings, test = read_custom(
            dataset, test_file, user_table, item_table, strict=strict
        )
        if test is not None:
            return Split(data, ratings, test, "given")
        kind = "random" if split in ("auto", "fold") else split
        train, test = split_ratings(ratings, kind, test_fraction, split_seed)
        return Split(data, train, test, _split_name(kind, test_fraction))

    if dataset not in RELEASES:
        raise ValueError(
            f"unknown dataset {dataset!r}; expected synthetic, one of "
            f"{', '.join(RELEASES)}, or a .csv/.parquet rating file"
        )
    if dataset == "ml-100k" and split in ("auto", "fold"):
        # Checked before any download. read_ml100k also takes "all", the
        # whole release with no test part, which a run cannot score.
        if fold not in ML100K_FOLDS:
            raise ValueError(
                f"unknown ml-100k fold {fold!r}; expected one of "
                f"{', '.join(ML100K_FOLDS)}"
            )
        folder = find_release_dir(
            dataset, data_dir, cache_dir, progress=progress
        )
        return read_ml100k(folder, fold, strict)
    if split == "fold":
        raise ValueError(
            f"split 'fold' exists for ml-100k only; {dataset} uses random or "
            "temporal"
        )

    data, ratings = load_release(
        dataset, data_dir, cache_dir, strict, progress=progress
    )
    kind = "random" if split == "auto" else split
    train, test = split_ratings(ratings, kind, test_fraction, split_seed)
    return Split(data, train, test, _split_name(kind, test_fraction))


def _split_name(kind: str, test_fraction: float) -> str:
    percent = int(round(100 * test_fraction))
    return f"{kind}-{100 - percent}-{percent}"


def list_releases(cache_dir: str | os.PathLike | None = None) -> list[dict]:
    """Every known release with its size, scale, checksum status and
    whether the cache holds it unpacked."""
    rows = []
    for info in RELEASES.values():
        folder = release_dir(info.name, cache_dir)
        rows.append(
            {
                "release": info.name,
                "ratings": info.num_ratings,
                "users": info.num_users,
                "movies": info.num_items,
                "levels": len(info.levels),
                "demographics": info.users_file is not None,
                "checksum_pinned": info.pinned,
                "url": info.url,
                "cached": all(
                    (folder / name).is_file() for name in info.required_files
                ),
            }
        )
    return rows


def describe(split_or_dataset) -> dict:
    """Counts and shapes of a split or dataset, as a JSON-ready dict."""
    if isinstance(split_or_dataset, Split):
        dataset = split_or_dataset.dataset
        parts = {"train": split_or_dataset.train, "test": split_or_dataset.test}
    else:
        dataset, parts = split_or_dataset, {}
    summary = {
        "name": dataset.name,
        "users": dataset.num_users,
        "items": dataset.num_items,
        "levels": dataset.levels.tolist(),
        "user_features": int(dataset.user_features.shape[1]),
        "item_features": int(dataset.item_features.shape[1]),
        "genres": len(dataset.genre_names),
        "user_groups": sorted(dataset.user_groups),
        "has_true_distribution": dataset.true_probs is not None,
    }
    total = sum(len(part) for part in parts.values())
    if parts:
        summary["split"] = split_or_dataset.name
        summary["ratings"] = total
        summary["density"] = total / max(
            1, dataset.num_users * dataset.num_items
        )
    for name, part in parts.items():
        entry = {
            "ratings": len(part),
            "users": int(len(distinct(part.users))),
            "items": int(len(distinct(part.items))),
            "mean_rating": float(part.ratings.mean()) if len(part) else None,
        }
        if part.timestamps is not None and len(part):
            entry["first_timestamp"] = int(part.timestamps.min())
            entry["last_timestamp"] = int(part.timestamps.max())
        summary[name] = entry
    if "train" in parts and "test" in parts:
        test = parts["test"]
        summary["test"]["cold_start_users"] = int(
            (~np.isin(test.users, parts["train"].users)).sum()
        )
        summary["test"]["cold_start_items"] = int(
            (~np.isin(test.items, parts["train"].items)).sum()
        )
    return summary
