"""From raw rating rows to indexed ratings: ID maps, bad rows, duplicates.

All steps are vectorised: IDs map to indices through a dense lookup table
when they are small non-negative integers (every MovieLens release), and
through a sorted search otherwise.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ratinggan.data.dataset import DataError, Ratings
from ratinggan.data.parsing import RawRatings, physical_lines

logger = logging.getLogger(__name__)

# A dense lookup table is used while it is no larger than this many entries
# per ID looked up (and below this absolute size).
DENSE_TABLE_RATIO = 8
DENSE_TABLE_MAX = 1 << 28


def _dense_ok(values: np.ndarray, lookups: int) -> bool:
    if len(values) == 0 or values.dtype.kind not in "iu":
        return False
    low, high = int(values.min()), int(values.max())
    return low >= 0 and high < min(DENSE_TABLE_MAX, DENSE_TABLE_RATIO * lookups)


def distinct(values: np.ndarray) -> np.ndarray:
    """The distinct values, ascending, by one sort.

    Used instead of ``np.unique``, whose default path for 64-bit integers
    in NumPy 2.4 takes seconds per million values (measured here).
    """
    ordered = np.sort(values)
    if len(ordered) == 0:
        return ordered
    keep = np.empty(len(ordered), bool)
    keep[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]


def first_occurrences(values: np.ndarray) -> np.ndarray:
    """Sorted positions of the first occurrence of each distinct value."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    keep = np.empty(len(ordered), bool)
    if len(ordered):
        keep[0] = True
        np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return np.sort(order[keep])


def unique_ids(raw: np.ndarray) -> np.ndarray:
    """The distinct IDs in ``raw``, ascending."""
    if _dense_ok(raw, len(raw)):
        present = np.zeros(int(raw.max()) + 1, bool)
        present[raw] = True
        return np.flatnonzero(present).astype(raw.dtype)
    return distinct(raw)


def lookup(ids: np.ndarray, raw: np.ndarray) -> np.ndarray:
    """Index of each ``raw`` value in ``ids`` (int32), -1 where absent.

    ``ids`` must hold distinct values; its order defines the indices.
    """
    if len(ids) == 0:
        return np.full(len(raw), -1, np.int32)
    if _dense_ok(ids, len(raw) + len(ids)) and raw.dtype.kind in "iu":
        size = max(int(ids.max()), int(raw.max()) if len(raw) else 0) + 1
        if size <= DENSE_TABLE_MAX and (len(raw) == 0 or raw.min() >= 0):
            table = np.full(size, -1, np.int32)
            table[ids] = np.arange(len(ids), dtype=np.int32)
            return table[raw]
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    at = np.clip(np.searchsorted(sorted_ids, raw), 0, len(ids) - 1)
    found = sorted_ids[at] == raw
    return np.where(found, order[at], -1).astype(np.int32)


def check_distinct(path: Path, ids: np.ndarray, first_line: int, what: str):
    """Raises ``DataError`` when an ID appears twice in a feature file."""
    order = np.argsort(ids, kind="stable")
    repeated = np.flatnonzero(ids[order][1:] == ids[order][:-1])
    if len(repeated):
        row = int(order[repeated[0] + 1])
        raise DataError(
            path,
            f"{what} {ids[row]} appears twice (each {what} needs one line)",
            first_line + row,
        )


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def _shown(lines: np.ndarray) -> str:
    text = ", ".join(str(int(n)) for n in lines[:10])
    return text + (", ..." if len(lines) > 10 else "")


def _located(path: Path, rows: np.ndarray, first_line: int):
    """``(word, numbers)`` naming rows by file line, or by 0-based row when
    ``first_line`` is 0 (Parquet, which has no lines)."""
    plural = "" if len(rows) == 1 else "s"
    if first_line == 0:
        return "row" + plural, rows
    return "line" + plural, physical_lines(path, rows + first_line)


def _refuse(path: Path, reason: str, word: str, numbers) -> DataError:
    if word.startswith("row"):
        return DataError(path, f"row {int(numbers[0])}: {reason}")
    return DataError(path, reason, int(numbers[0]))


def drop_rows(
    path: Path,
    problems: dict[str, np.ndarray],
    first_line: int,
    strict: bool,
) -> np.ndarray:
    """Combines masks of bad rows into one keep mask, logging each reason.

    Each dropped row is reported by its line, once, under the first of its
    reasons; ``strict`` raises ``DataError`` at the first bad line instead.
    """
    keep = None
    for reason, mask in problems.items():
        if keep is not None:
            mask = mask & keep  # already reported under an earlier reason
        if not mask.any():
            continue
        rows = np.flatnonzero(mask)
        word, numbers = _located(path, rows, first_line)
        if strict:
            raise _refuse(path, reason, word, numbers)
        logger.warning(
            "%s: dropped %s (%s) at %s %s",
            path,
            _count(len(rows), "row"),
            reason,
            word,
            _shown(numbers),
        )
        keep = ~mask if keep is None else keep & ~mask
    return keep


def pair_keys(
    users: np.ndarray, items: np.ndarray, num_items: int
) -> np.ndarray:
    """One integer per (user, movie) pair, ordered as the pairs are.

    32-bit where every key fits (ml-1m: 22M pairs), which halves the
    largest temporaries of a parse.
    """
    largest = (int(users.max()) + 1) * num_items if len(users) else 0
    dtype = np.uint32 if largest <= np.iinfo(np.uint32).max else np.int64
    keys = users.astype(dtype)
    keys *= dtype(num_items)
    # In place, cast in chunks: no second key-sized array (the IDs are
    # indices, so the cast is exact).
    np.add(keys, items, out=keys, casting="unsafe")
    return keys


def latest_of_duplicates(
    path: Path,
    ratings: Ratings,
    num_items: int,
    source_rows: np.ndarray | None,
    first_line: int,
    strict: bool,
) -> np.ndarray | None:
    """Rows to keep so each (user, movie) pair appears once, or ``None``
    when there are no duplicates.

    The kept row is the latest by timestamp, then the last in the file.
    ``source_rows`` gives each row's position in the file (``None``: row
    ``i`` is the file's ``i``-th), for the line numbers in the warning
    (``first_line`` 0: rows are named by position, as in Parquet). The
    common case, no duplicates, costs one sort and no reordering.
    """
    keys = pair_keys(ratings.users, ratings.items, num_items)
    if (keys[1:] > keys[:-1]).all():
        return None  # rows in pair order, as most releases ship them
    keys.sort()  # in place: the check needs no second copy of the keys
    repeated = (keys[1:] == keys[:-1]).any()
    del keys
    if not repeated:
        return None

    keys = pair_keys(ratings.users, ratings.items, num_items)
    if strict:
        # Named in file order: a row whose pair an earlier row rated,
        # whichever of the two is older.
        repeats = np.ones(len(keys), bool)
        repeats[first_occurrences(keys)] = False
        rows = np.flatnonzero(repeats)
        in_file = rows if source_rows is None else source_rows[rows]
        word, numbers = _located(path, in_file, first_line)
        raise _refuse(
            path, "repeats a (user, movie) pair rated earlier", word, numbers
        )

    tiebreak = np.arange(len(keys))
    order = (
        np.lexsort((tiebreak, keys))
        if ratings.timestamps is None
        else np.lexsort((tiebreak, ratings.timestamps, keys))
    )
    grouped = keys[order]
    is_last = np.ones(len(order), bool)
    is_last[:-1] = grouped[1:] != grouped[:-1]
    dropped = np.sort(order[~is_last])
    in_file = dropped if source_rows is None else source_rows[dropped]
    word, numbers = _located(path, in_file, first_line)
    logger.warning(
        "%s: %s; kept the latest rating of each (by timestamp, then "
        "position) and dropped %s %s",
        path,
        _count(len(dropped), "duplicate (user, movie) pair"),
        word,
        _shown(numbers),
    )
    keep = np.ones(len(keys), bool)
    keep[dropped] = False
    return keep


def index_ratings(
    path: Path,
    raw: RawRatings,
    user_ids: np.ndarray | None,
    item_ids: np.ndarray,
    levels: np.ndarray,
    first_line: int,
    strict: bool = False,
    user_source: str = "the user file",
) -> tuple[np.ndarray, Ratings]:
    """Maps raw rows to indices, drops bad rows and duplicates.

    ``user_ids`` lists the known users (from a user file); ``None`` takes the
    users from the valid rows themselves. Returns the user IDs and the
    ratings. Rows naming an unknown user or movie, or a rating off
    ``levels``, are dropped with a warning that lists their lines. ``raw``
    is consumed: its ID arrays are released once mapped.
    """
    items = lookup(item_ids, raw.items)
    problems = {
        "movie not in the movie file": items < 0,
        f"rating not in {levels.tolist()}": ~np.isin(raw.ratings, levels),
    }
    if user_ids is None:
        # IDs must be positive, as in every MovieLens release.
        problems = {"user ID not positive": raw.users <= 0} | problems
    else:
        users = lookup(user_ids, raw.users)
        problems = {f"user not in {user_source}": users < 0} | problems
    keep = drop_rows(path, problems, first_line, strict)
    rows = None if keep is None else np.flatnonzero(keep)

    if user_ids is None:
        user_ids = unique_ids(raw.users if rows is None else raw.users[rows])
        users = lookup(user_ids, raw.users)
    raw.users = raw.items = None

    def pick(values):
        return values if rows is None else values[rows]

    ratings = Ratings(
        users=pick(users),
        items=pick(items),
        ratings=pick(raw.ratings),
        timestamps=None if raw.timestamps is None else pick(raw.timestamps),
    )
    latest = latest_of_duplicates(
        path, ratings, len(item_ids), rows, first_line, strict
    )
    if latest is not None:
        ratings = ratings.take(latest)
    return user_ids, ratings
