"""Synthetic rating files in the MovieLens layout of a run's source.

``ratinggan sample`` draws one rating per (user, movie) pair from a trained
generator and writes only the ratings file, in the layout the source uses,
so tools that read the release read the synthetic copy too. MovieLens
metadata files (movies, users, genres, the README) are never copied: their
licence does not allow redistribution.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from ratinggan.data import RELEASES, DataError, Dataset

COLON_RELEASES = ("ml-1m", "ml-10m")
CSV_HEADER = "userId,movieId,rating,timestamp\n"


def ratings_file_name(dataset: str) -> str:
    """The ratings file name of ``dataset``'s layout: ``u.data`` for
    ml-100k, ``ratings.dat`` for ml-1m and ml-10m, else ``ratings.csv``."""
    if dataset == "ml-100k":
        return "u.data"
    if dataset in COLON_RELEASES:
        return "ratings.dat"
    return "ratings.csv"


def _rating_text(ratings: np.ndarray, one_decimal: bool) -> list[str]:
    if one_decimal:
        return [f"{r:.1f}" for r in ratings]
    return [f"{r:g}" for r in ratings]


def format_ratings(table: pd.DataFrame, dataset: str) -> str:
    """``table`` (``user_id``, ``movie_id``, ``rating``, ``timestamp``
    columns) as the text of ``dataset``'s ratings file.

    ml-100k: tab-separated ``user item rating timestamp``; ml-1m and
    ml-10m: ``UserID::MovieID::Rating::Timestamp``; the CSV releases and
    everything else (synthetic, your own files): ``ratings.csv`` with the
    header ``userId,movieId,rating,timestamp`` (which ``--dataset
    FILE.csv`` reads back). Ratings of a release are written as the
    release writes them (``4.0`` in its CSV files, ``4`` or ``3.5`` in its
    others); of other data, as short as they go.
    """
    name = ratings_file_name(dataset)
    one_decimal = name == "ratings.csv" and dataset in RELEASES
    columns = [
        table["user_id"].astype(str).tolist(),
        table["movie_id"].astype(str).tolist(),
        _rating_text(table["rating"].to_numpy(), one_decimal),
        table["timestamp"].astype(np.int64).astype(str).tolist(),
    ]
    separator = {"u.data": "\t", "ratings.dat": "::"}.get(name, ",")
    lines = [separator.join(row) + "\n" for row in zip(*columns, strict=True)]
    header = CSV_HEADER if name == "ratings.csv" else ""
    return header + "".join(lines)


def write_ratings(table: pd.DataFrame, dataset: str, out_dir: Path) -> Path:
    """Writes ``table`` as ``out_dir``'s ratings file in ``dataset``'s
    layout, atomically (a temporary file renamed into place); returns the
    file's path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / ratings_file_name(dataset)
    text = format_ratings(table, dataset)
    handle, temporary = tempfile.mkstemp(dir=out_dir, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", newline="") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def _fields(line: str) -> list[str]:
    text = line.split("#", 1)[0].strip()
    for separator in ("::", "\t", " "):
        text = text.replace(separator, ",")
    return [field for field in text.split(",") if field]


def _is_header(fields: list[str]) -> bool:
    names = {f.lower().replace("_", "") for f in fields[:2]}
    return bool(names & {"user", "userid", "movie", "movieid", "item"})


def read_pairs(
    path: str | os.PathLike,
) -> tuple[list[str], list[str], list[int]]:
    """Raw ``(user IDs, movie IDs, line numbers)`` of a pairs file, as text.

    One pair a line, ``USER,MOVIE`` (commas, tabs, spaces or ``::``
    between them; more columns, such as a rating, are ignored); blank
    lines and ``#`` comments are skipped, and a first line naming the
    columns (``userId,movieId``) is a header. A line without two fields
    raises ``DataError`` naming the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such pairs file")
    users, movies, lines = [], [], []
    with open(path, encoding="utf-8", errors="replace") as stream:
        for number, line in enumerate(stream, start=1):
            fields = _fields(line)
            if not fields or (not users and _is_header(fields)):
                continue
            if len(fields) < 2:
                raise DataError(
                    path, f"expected USER,MOVIE, got {line.strip()!r}", number
                )
            users.append(fields[0])
            movies.append(fields[1])
            lines.append(number)
    if not users:
        raise DataError(path, "no pairs in the file")
    return users, movies, lines


def pair_indices(
    dataset: Dataset, path: str | os.PathLike
) -> tuple[np.ndarray, np.ndarray]:
    """The ``(user, movie)`` index arrays of the raw IDs in the pairs file
    ``path``; an ID the dataset does not know raises ``DataError`` naming
    its line."""
    users, movies, lines = read_pairs(path)
    return (
        _lookup(dataset.user_ids, users, lines, path, "user"),
        _lookup(dataset.item_ids, movies, lines, path, "movie"),
    )


def _lookup(known: np.ndarray, wanted: list[str], lines, path, what: str):
    convert = int if known.dtype.kind in "iu" else str
    positions = {convert(raw): index for index, raw in enumerate(known)}
    indices = np.empty(len(wanted), np.int32)
    for row, raw in enumerate(wanted):
        try:
            indices[row] = positions[convert(raw)]
        except (KeyError, ValueError):
            raise DataError(
                path,
                f"unknown {what} ID {raw!r} (the run has {len(known)} "
                f"{what}s; IDs are those of the source files)",
                lines[row],
            ) from None
    return indices
