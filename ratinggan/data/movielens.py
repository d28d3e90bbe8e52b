"""Readers for the MovieLens releases from GroupLens.

The files are never shipped with ratinggan (their licence forbids
redistribution): point ``data_dir`` at an unpacked release.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ratinggan.data.dataset import DataError, Dataset, Ratings, Split

logger = logging.getLogger(__name__)

ML100K_LEVELS = np.arange(1, 6, dtype=np.float32)
ML100K_FOLDS = ("u1", "u2", "u3", "u4", "u5", "ua", "ub")
ML100K_FILES = ("u.data", "u.user", "u.item", "u.genre", "u.occupation")
# ML-1M's age bands, used for every release with ages so groups compare.
AGE_BAND_EDGES = (18, 25, 35, 45, 50, 56)
AGE_BAND_LABELS = ("<18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+")


def read_table(
    path: Path, sep: str, names: tuple[str, ...], encoding: str = "utf-8-sig"
) -> pd.DataFrame:
    """Reads a headerless delimited file as strings, checking field counts.

    A byte-order mark and CRLF line endings are accepted. A line with too
    many or too few fields raises ``DataError`` naming the line.
    """
    if not path.is_file():
        raise DataError(path, "file not found")
    if path.stat().st_size == 0:
        raise DataError(path, "file is empty")

    try:
        frame = pd.read_csv(
            path,
            sep=sep,
            header=None,
            names=list(names),
            index_col=False,
            dtype=str,
            keep_default_na=False,
            encoding=encoding,
            engine="c" if len(sep) == 1 else "python",
            quoting=3,  # csv.QUOTE_NONE: titles may hold quote characters
        )
    except pd.errors.ParserError as error:
        found = re.search(r"line (\d+), saw (\d+)", str(error))
        if found is None:
            raise DataError(path, f"cannot parse: {error}") from None
        raise DataError(
            path,
            f"expected {len(names)} fields separated by {sep!r}, "
            f"found {found.group(2)}",
            int(found.group(1)),
        ) from None
    except UnicodeDecodeError as error:
        raise DataError(path, f"not {encoding} text: {error}") from None

    if len(names) > 1:
        # The last field is never empty in these formats: an empty one means
        # the line had too few fields.
        short = (frame[names[-1]] == "").to_numpy()
        if short.any():
            raise DataError(
                path,
                f"expected {len(names)} fields separated by {sep!r}, "
                "found fewer",
                int(np.argmax(short)) + 1,
            )
    return frame


def parse_ints(path: Path, frame: pd.DataFrame, column: str) -> np.ndarray:
    """Parses a column of integers, naming the first bad line on failure."""
    values = pd.to_numeric(frame[column].str.strip(), errors="coerce")
    bad = values.isna().to_numpy()
    if bad.any():
        line = int(np.argmax(bad))
        raise DataError(
            path,
            f"field {column!r} should be an integer, got "
            f"{frame[column].iloc[line]!r}",
            line + 1,
        )
    return values.to_numpy(dtype=np.int64)


def _age_band(ages: np.ndarray) -> np.ndarray:
    return np.searchsorted(np.asarray(AGE_BAND_EDGES), ages, side="right")


def _one_hot(codes: np.ndarray, size: int) -> np.ndarray:
    return np.eye(size, dtype=np.float32)[codes]


def _standardize(values: np.ndarray) -> np.ndarray:
    std = values.std()
    return ((values - values.mean()) / (std if std > 0 else 1.0)).astype(
        np.float32
    )


def _check_dir(data_dir: Path, required: tuple[str, ...], release: str):
    if not data_dir.is_dir():
        raise DataError(
            data_dir,
            f"no such directory; unpack the {release} release from GroupLens "
            "there and pass its path as --data-dir",
        )
    missing = [name for name in required if not (data_dir / name).is_file()]
    if missing:
        raise DataError(
            data_dir,
            f"missing {', '.join(missing)}; this should be the unpacked "
            f"{release} release from GroupLens",
        )


def _read_ml100k_users(data_dir: Path):
    path = data_dir / "u.user"
    frame = read_table(
        path, "|", ("user_id", "age", "gender", "occupation", "zip")
    )
    user_ids = parse_ints(path, frame, "user_id")
    ages = parse_ints(path, frame, "age")

    occupations = tuple(
        read_table(data_dir / "u.occupation", "|", ("name",))["name"]
        .str.strip()
        .tolist()
    )
    occupation_codes = _codes(path, frame, "occupation", occupations)
    genders = ("F", "M")
    gender_codes = _codes(path, frame, "gender", genders)
    age_codes = _age_band(ages)

    features = np.concatenate(
        [
            _standardize(ages.astype(np.float64))[:, None],
            _one_hot(gender_codes, len(genders)),
            _one_hot(occupation_codes, len(occupations)),
        ],
        axis=1,
    )
    names = (
        ("age",)
        + tuple(f"gender={g}" for g in genders)
        + tuple(f"occupation={o}" for o in occupations)
    )
    groups = {
        "gender": (genders, gender_codes.astype(np.int32)),
        "age": (AGE_BAND_LABELS, age_codes.astype(np.int32)),
        "occupation": (occupations, occupation_codes.astype(np.int32)),
    }
    return user_ids, features, names, groups


def _codes(path, frame, column, vocabulary) -> np.ndarray:
    lookup = {value: code for code, value in enumerate(vocabulary)}
    values = frame[column].str.strip()
    codes = values.map(lookup)
    if codes.isna().any():
        line = int(np.argmax(codes.isna().to_numpy()))
        raise DataError(
            path,
            f"field {column!r} should be one of {list(vocabulary)}, got "
            f"{values.iloc[line]!r}",
            line + 1,
        )
    return codes.to_numpy(dtype=np.int64)


def _read_ml100k_items(data_dir: Path):
    genre_frame = read_table(data_dir / "u.genre", "|", ("name", "code"))
    genre_frame = genre_frame[genre_frame["name"] != ""]
    genre_names = tuple(genre_frame["name"].tolist())

    path = data_dir / "u.item"
    columns = ("item_id", "title", "release", "video_release", "url")
    frame = read_table(
        path,
        "|",
        columns + tuple(f"genre_{g}" for g in genre_names),
        encoding="latin-1",
    )
    item_ids = parse_ints(path, frame, "item_id")
    genres = np.stack(
        [parse_ints(path, frame, f"genre_{g}") for g in genre_names], axis=1
    ).astype(bool)

    years = pd.to_datetime(
        frame["release"], format="%d-%b-%Y", errors="coerce"
    ).dt.year.to_numpy(dtype=np.float64, copy=True)
    year_missing = np.isnan(years)
    years[year_missing] = np.nanmean(years)

    features = np.concatenate(
        [
            _standardize(years)[:, None],
            year_missing[:, None].astype(np.float32),
            genres.astype(np.float32),
        ],
        axis=1,
    )
    names = ("year", "year_missing") + tuple(f"genre={g}" for g in genre_names)
    titles = tuple(frame["title"].tolist())
    return item_ids, features, names, genres, genre_names, titles


def read_ratings_file(
    path: Path,
    dataset: Dataset,
    user_index: dict[int, int],
    item_index: dict[int, int],
    strict: bool = False,
) -> Ratings:
    """Reads a tab-separated ``user item rating timestamp`` file.

    Rows that name a user or movie missing from the feature files, or hold a
    rating off the scale, are dropped with a warning that lists them (or
    raise ``DataError`` when ``strict``).
    """
    frame = read_table(path, "\t", ("user", "item", "rating", "timestamp"))
    raw_users = parse_ints(path, frame, "user")
    raw_items = parse_ints(path, frame, "item")
    ratings = pd.to_numeric(frame["rating"], errors="coerce").to_numpy()
    timestamps = parse_ints(path, frame, "timestamp")

    users = np.array([user_index.get(u, -1) for u in raw_users], np.int64)
    items = np.array([item_index.get(i, -1) for i in raw_items], np.int64)
    on_scale = np.isin(ratings, dataset.levels)
    problems = {
        "user not in the user file": users < 0,
        "movie not in the movie file": items < 0,
        f"rating not in {dataset.levels.tolist()}": ~on_scale,
    }
    bad = np.zeros(len(frame), bool)
    for reason, mask in problems.items():
        if not mask.any():
            continue
        lines = (np.flatnonzero(mask) + 1).tolist()
        if strict:
            raise DataError(path, reason, lines[0])
        shown = ", ".join(map(str, lines[:10])) + (
            ", ..." if len(lines) > 10 else ""
        )
        logger.warning(
            "%s: dropped %d rows (%s) at lines %s",
            path,
            len(lines),
            reason,
            shown,
        )
        bad |= mask

    keep = ~bad
    return Ratings(
        users=users[keep].astype(np.int32),
        items=items[keep].astype(np.int32),
        ratings=ratings[keep].astype(np.float32),
        timestamps=timestamps[keep],
    )


def read_ml100k(
    data_dir: str | os.PathLike, fold: str = "u1", strict: bool = False
) -> Split:
    """Reads ML-100K with user and movie features and one of its folds.

    ``fold`` is one of the official folds ``u1``..``u5``, ``ua``, ``ub``
    (``<fold>.base`` trains, ``<fold>.test`` tests), or ``all`` for the whole
    of ``u.data`` as training data with an empty test part.
    """
    data_dir = Path(data_dir)
    _check_dir(data_dir, ML100K_FILES, "ml-100k")
    if fold not in ML100K_FOLDS + ("all",):
        raise ValueError(
            f"unknown ml-100k fold {fold!r}; expected one of "
            f"{', '.join(ML100K_FOLDS)} or all"
        )

    user_ids, user_features, user_names, groups = _read_ml100k_users(data_dir)
    item_ids, item_features, item_names, genres, genre_names, titles = (
        _read_ml100k_items(data_dir)
    )
    dataset = Dataset(
        name="ml-100k",
        levels=ML100K_LEVELS,
        user_ids=user_ids,
        item_ids=item_ids,
        user_features=user_features,
        item_features=item_features,
        user_feature_names=user_names,
        item_feature_names=item_names,
        genres=genres,
        genre_names=genre_names,
        item_titles=titles,
        user_groups=groups,
    )

    user_index = {int(raw): index for index, raw in enumerate(user_ids)}
    item_index = {int(raw): index for index, raw in enumerate(item_ids)}

    def read(name: str) -> Ratings:
        return read_ratings_file(
            data_dir / name, dataset, user_index, item_index, strict
        )

    if fold == "all":
        everything = read("u.data")
        no_rows = everything.take(np.zeros(0, np.int64))
        return Split(dataset, everything, no_rows, "all")
    return Split(dataset, read(f"{fold}.base"), read(f"{fold}.test"), fold)
