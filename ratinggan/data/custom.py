"""Your own ratings: a CSV or Parquet file of user, item, rating columns.

The rating file needs a header naming its columns; ``user``/``userId``/
``user_id``, ``item``/``movie``/``movieId``/``item_id``, ``rating`` and an
optional ``timestamp`` are recognised (case and ``_`` ignored), or pass
``columns``. IDs may be integers or text. The rating scale is the set of
distinct ratings in the data unless ``levels`` is given. Optional feature
tables hold one row per user or item: numeric columns become standardised
features, text columns one-hot categories (and, for users, groups for the
per-group realism scores); an item table's ``genres`` column (``|``-separated)
and ``title`` column are used as in MovieLens.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from ratinggan.data.cleaning import (
    distinct,
    drop_rows,
    latest_of_duplicates,
    lookup,
)
from ratinggan.data.dataset import DataError, Dataset, Ratings
from ratinggan.data.parsing import check_file, physical_line

logger = logging.getLogger(__name__)

ALIASES = {
    "user": ("user", "userid", "user_id", "users"),
    "item": ("item", "itemid", "item_id", "movie", "movieid", "movie_id"),
    "rating": ("rating", "ratings", "score", "stars"),
    "timestamp": ("timestamp", "time", "ts", "date", "datetime"),
}
MAX_LEVELS = 20
MAX_CATEGORIES = 64
PARQUET_SUFFIXES = (".parquet", ".pq")


def _normal(name: str) -> str:
    return name.strip().lower().replace("_", "").replace(" ", "")


def _find_columns(path: Path, names: list[str], wanted, columns) -> dict:
    """Maps each wanted role to a column of the file, by alias or by the
    ``columns`` argument."""
    columns = dict(columns or {})
    by_normal = {_normal(n): n for n in names}
    found = {}
    for role in wanted:
        if role in columns:
            if columns[role] not in names:
                raise DataError(
                    path,
                    f"no column {columns[role]!r} (for {role}); the header "
                    f"has {names}",
                    1,
                )
            found[role] = columns[role]
            continue
        match = next(
            (
                by_normal[_normal(a)]
                for a in ALIASES[role]
                if _normal(a) in by_normal
            ),
            None,
        )
        if match is not None:
            found[role] = match
    return found


def _separator(path: Path) -> str:
    with open(path, "rb") as file:
        header = file.readline().decode("utf-8-sig", errors="replace")
    for separator in (",", "\t", ";", "|"):
        if separator in header:
            return separator
    return ","


def read_columns(path: Path) -> tuple[pa.Table, int]:
    """A CSV or Parquet file as an Arrow table, and the line of its first
    data row (0 for Parquet, where rows have no lines)."""
    path = Path(path)
    check_file(path)
    if path.suffix.lower() in PARQUET_SUFFIXES:
        try:
            return pq.read_table(path), 0
        except (pa.ArrowInvalid, OSError) as error:
            raise DataError(
                path, f"not a readable Parquet file: {error}"
            ) from None
    try:
        table = pcsv.read_csv(
            path,
            parse_options=pcsv.ParseOptions(delimiter=_separator(path)),
            convert_options=pcsv.ConvertOptions(strings_can_be_null=True),
        )
    except pa.ArrowInvalid as error:
        text = str(error)
        row = _bad_row(path, _separator(path))
        raise DataError(
            path,
            text.replace("CSV parse error: ", "").split(":")[0],
            row,
        ) from None
    return table, 2


def _bad_row(path: Path, separator: str) -> int | None:
    """Line of the first row with a wrong field count (slow; errors only)."""
    found = []

    def on_invalid(row) -> str:
        if not found:
            found.append(row.number)
        return "skip"

    pcsv.read_csv(
        path,
        read_options=pcsv.ReadOptions(use_threads=False),
        parse_options=pcsv.ParseOptions(
            delimiter=separator, invalid_row_handler=on_invalid
        ),
        convert_options=pcsv.ConvertOptions(
            column_types={}, strings_can_be_null=True
        ),
    )
    return physical_line(path, found[0]) if found and found[0] else None


def _where(path: Path, first_line: int, row: int) -> dict:
    if first_line:
        return {"line": physical_line(path, first_line + row)}
    return {"line": None, "row": row}


def _fail(path, first_line, row, message):
    where = _where(path, first_line, row)
    if where["line"] is None:
        message = f"row {row}: {message}"
    return DataError(path, message, where["line"])


def _numbers(path, first_line, column: pa.ChunkedArray, name, integer=False):
    """A column as float64 (or int64), naming the first bad value."""
    if column.null_count:
        row = pc.index(pc.is_null(column), True).as_py()
        raise _fail(path, first_line, row, f"field {name!r} is empty")
    if pa.types.is_integer(column.type) or (
        pa.types.is_floating(column.type) and not integer
    ):
        return column.to_numpy().astype(np.int64 if integer else np.float64)
    text = column.cast(pa.string())
    pattern = (
        r"^\s*[-+]?\d+\s*$" if integer else r"^\s*[-+]?(\d+\.?\d*|\.\d+)\s*$"
    )
    bad = pc.invert(pc.match_substring_regex(text, pattern))
    row = pc.index(bad, True).as_py()
    if row >= 0:
        kind = "an integer" if integer else "a number"
        raise _fail(
            path,
            first_line,
            row,
            f"field {name!r} should be {kind}, got {text[row].as_py()!r}",
        )
    return np.asarray(text.to_numpy(zero_copy_only=False), dtype=np.float64)


def _ids(path, first_line, column: pa.ChunkedArray, name) -> np.ndarray:
    """IDs as int64 when every value is an integer, else as text."""
    if column.null_count:
        row = pc.index(pc.is_null(column), True).as_py()
        raise _fail(path, first_line, row, f"field {name!r} is empty")
    if pa.types.is_integer(column.type):
        return column.to_numpy().astype(np.int64)
    return np.asarray(
        column.cast(pa.string()).to_numpy(zero_copy_only=False)
    ).astype(str)


def _timestamps(path, first_line, column, name) -> np.ndarray:
    if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
        return _numbers(path, first_line, column, name, integer=True)
    if pa.types.is_timestamp(column.type) or pa.types.is_date(column.type):
        seconds = column.cast(pa.timestamp("s")).cast(pa.int64())
        return seconds.to_numpy()
    values = pd.to_datetime(
        pd.Series(column.to_numpy(zero_copy_only=False)),
        errors="coerce",
        utc=True,
    )
    if values.isna().any():
        row = int(np.argmax(values.isna().to_numpy()))
        raise _fail(path, first_line, row, f"field {name!r} should be a time")
    return values.astype("int64").to_numpy() // 10**9


def read_rating_rows(path, columns=None) -> dict:
    """The user, item, rating (and timestamp) columns of a rating file."""
    path = Path(path)
    table, first_line = read_columns(path)
    found = _find_columns(
        path,
        table.column_names,
        ("user", "item", "rating", "timestamp"),
        columns,
    )
    missing = [r for r in ("user", "item", "rating") if r not in found]
    if missing:
        raise DataError(
            path,
            f"no {', '.join(missing)} column; the header has "
            f"{table.column_names} (expected names like user, item, rating, "
            "timestamp, or pass columns=)",
            1 if first_line else None,
        )
    rows = {
        "path": path,
        "first_line": first_line,
        "users": _ids(path, first_line, table[found["user"]], found["user"]),
        "items": _ids(path, first_line, table[found["item"]], found["item"]),
        "ratings": _numbers(
            path, first_line, table[found["rating"]], found["rating"]
        ),
        "timestamps": None,
    }
    if "timestamp" in found:
        name = found["timestamp"]
        rows["timestamps"] = _timestamps(path, first_line, table[name], name)
    if len(rows["users"]) == 0:
        raise DataError(path, "holds no rating rows")
    return rows


def _levels_from(ratings: np.ndarray, path: Path) -> np.ndarray:
    if not np.isfinite(ratings).all():
        raise DataError(path, "holds a rating that is not a finite number")
    levels = distinct(ratings).astype(np.float32)
    if len(levels) > MAX_LEVELS:
        raise DataError(
            path,
            f"ratings take {len(levels)} distinct values; ratinggan models a "
            f"discrete scale of at most {MAX_LEVELS} levels (pass levels= to "
            "name the scale)",
        )
    if len(levels) < 2:
        raise DataError(path, "all ratings are equal; there is no scale")
    return levels


def _feature_table(path, role: str, ids_dtype, group: bool):
    """Reads a feature table: ``(ids, features, names, groups, extras)``."""
    path = Path(path)
    table, first_line = read_columns(path)
    found = _find_columns(path, table.column_names, (role,), None)
    if role not in found:
        raise DataError(
            path, f"no {role} ID column; the header has {table.column_names}", 1
        )
    id_name = found[role]
    ids = _ids(path, first_line, table[id_name], id_name)
    if ids_dtype.kind in "iu" and ids.dtype.kind not in "iu":
        raise DataError(
            path, f"{role} IDs should be integers, as in the ratings"
        )
    if ids_dtype.kind not in "iu":
        ids = ids.astype(str)
    duplicated = pd.Series(ids).duplicated().to_numpy()
    if duplicated.any():
        row = int(np.argmax(duplicated))
        raise _fail(path, first_line, row, f"{role} {ids[row]} appears twice")

    blocks, names, groups, extras = [], [], {}, {}
    for name in table.column_names:
        if name == id_name:
            continue
        column = table[name]
        lowered = _normal(name)
        if role == "item" and lowered == "title":
            extras["titles"] = (
                column.cast(pa.string()).fill_null("").to_pylist()
            )
            continue
        if role == "item" and lowered == "genres":
            text = pd.Series(column.cast(pa.string()).fill_null("").to_pylist())
            dummies = text.str.get_dummies(sep="|")
            dummies = dummies.drop(
                columns=["(no genres listed)"], errors="ignore"
            )
            extras["genre_names"] = tuple(sorted(dummies.columns))
            extras["genres"] = dummies[list(extras["genre_names"])].to_numpy(
                bool
            )
            blocks.append(extras["genres"].astype(np.float32))
            names += [f"genre={g}" for g in extras["genre_names"]]
            continue
        if pa.types.is_integer(column.type) or pa.types.is_floating(
            column.type
        ):
            values = column.to_numpy(zero_copy_only=False).astype(np.float64)
            missing = np.isnan(values)
            fill = np.nanmean(values) if not missing.all() else 0.0
            values = np.where(missing, fill, values)
            std = values.std() or 1.0
            blocks.append(
                ((values - values.mean()) / std)[:, None].astype(np.float32)
            )
            names.append(name)
            continue
        labels, codes = np.unique(
            np.asarray(
                column.cast(pa.string()).fill_null("").to_pylist(), dtype=str
            ),
            return_inverse=True,
        )
        if len(labels) > MAX_CATEGORIES:
            logger.warning(
                "%s: column %r has %d distinct values; skipped (at most %d "
                "categories are one-hot encoded)",
                path,
                name,
                len(labels),
                MAX_CATEGORIES,
            )
            continue
        blocks.append(np.eye(len(labels), dtype=np.float32)[codes])
        names += [f"{name}={label}" for label in labels]
        if group:
            groups[name] = (tuple(labels.tolist()), codes.astype(np.int32))
    features = (
        np.concatenate(blocks, axis=1)
        if blocks
        else np.zeros((len(ids), 0), np.float32)
    )
    return ids, features, tuple(names), groups, extras


def _align(table_ids, features, ids):
    """Feature rows in the order of ``ids``; zeros where a table lacks one."""
    rows = (
        lookup(table_ids, ids)
        if table_ids.dtype.kind in "iu"
        else _text_lookup(table_ids, ids)
    )
    aligned = np.zeros((len(ids), features.shape[1]), np.float32)
    aligned[rows >= 0] = features[rows[rows >= 0]]
    return aligned, rows


def _text_lookup(known: np.ndarray, values: np.ndarray) -> np.ndarray:
    index = pd.Index(known)
    return index.get_indexer(values).astype(np.int32)


def _union_ids(*arrays) -> np.ndarray:
    arrays = [a for a in arrays if a is not None]
    if all(a.dtype.kind in "iu" for a in arrays):
        return distinct(np.concatenate(arrays))
    return distinct(np.concatenate([a.astype(str) for a in arrays]))


def _index(rows: dict, user_ids, item_ids, levels, strict) -> Ratings:
    find = lookup if user_ids.dtype.kind in "iu" else _text_lookup
    users = find(user_ids, rows["users"])
    find = lookup if item_ids.dtype.kind in "iu" else _text_lookup
    items = find(item_ids, rows["items"])
    path, first_line = rows["path"], rows["first_line"]
    keep = drop_rows(
        path,
        {f"rating not in {levels.tolist()}": ~np.isin(rows["ratings"], levels)},
        first_line,
        strict,
    )
    kept = None if keep is None else np.flatnonzero(keep)

    def pick(values):
        return values if kept is None else values[kept]

    ratings = Ratings(
        users=pick(users),
        items=pick(items),
        ratings=pick(rows["ratings"]).astype(np.float32),
        timestamps=None
        if rows["timestamps"] is None
        else pick(rows["timestamps"]),
    )
    latest = latest_of_duplicates(
        path, ratings, len(item_ids), kept, first_line, strict
    )
    return ratings if latest is None else ratings.take(latest)


def read_custom(
    ratings_path: str | os.PathLike,
    test_path: str | os.PathLike | None = None,
    user_table: str | os.PathLike | None = None,
    item_table: str | os.PathLike | None = None,
    levels=None,
    columns: dict[str, str] | None = None,
    strict: bool = False,
) -> tuple[Dataset, Ratings, Ratings | None]:
    """Reads your own ratings (and optional test ratings and feature
    tables) into ``(dataset, ratings, test_ratings)``.

    Users and items are the union of those in every file given, so a test
    user or item unseen in the ratings is kept as a cold start (its ID
    embedding stays untrained; its features, if any, still inform).
    """
    rows = read_rating_rows(ratings_path, columns)
    test_rows = (
        None if test_path is None else read_rating_rows(test_path, columns)
    )
    every_rating = (
        rows["ratings"]
        if test_rows is None
        else np.concatenate([rows["ratings"], test_rows["ratings"]])
    )
    levels = (
        _levels_from(every_rating, Path(ratings_path))
        if levels is None
        else np.asarray(sorted(levels), np.float32)
    )

    user_extra = item_extra = None
    if user_table is not None:
        user_extra = _feature_table(
            user_table, "user", rows["users"].dtype, True
        )
    if item_table is not None:
        item_extra = _feature_table(
            item_table, "item", rows["items"].dtype, False
        )

    user_ids = _union_ids(
        rows["users"],
        None if test_rows is None else test_rows["users"],
        None if user_extra is None else user_extra[0],
    )
    item_ids = _union_ids(
        rows["items"],
        None if test_rows is None else test_rows["items"],
        None if item_extra is None else item_extra[0],
    )

    user_features = np.zeros((len(user_ids), 0), np.float32)
    user_names, groups = (), {}
    if user_extra is not None:
        user_features, at = _align(user_extra[0], user_extra[1], user_ids)
        user_names = user_extra[2]
        groups = {
            name: (
                labels,
                np.where(at >= 0, codes[np.maximum(at, 0)], 0).astype(np.int32),
            )
            for name, (labels, codes) in user_extra[3].items()
        }
    item_features = np.zeros((len(item_ids), 0), np.float32)
    item_names, genre_names = (), ()
    genres = np.zeros((len(item_ids), 0), bool)
    titles = ()
    if item_extra is not None:
        item_features, at = _align(item_extra[0], item_extra[1], item_ids)
        item_names = item_extra[2]
        extras = item_extra[4]
        if "genres" in extras:
            genre_names = extras["genre_names"]
            genres = np.zeros((len(item_ids), len(genre_names)), bool)
            genres[at >= 0] = extras["genres"][at[at >= 0]]
        if "titles" in extras:
            known = np.asarray(extras["titles"], dtype=object)
            titles = tuple(
                known[row] if row >= 0 else "" for row in at.tolist()
            )

    dataset = Dataset(
        name=Path(ratings_path).stem,
        levels=levels,
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
    ratings = _index(rows, user_ids, item_ids, levels, strict)
    test = (
        None
        if test_rows is None
        else _index(test_rows, user_ids, item_ids, levels, strict)
    )
    return dataset, ratings, test
