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

from ratinggan.data.cleaning import index_ratings
from ratinggan.data.dataset import DataError, Dataset, Ratings, Split
from ratinggan.data.parsing import TAB_LAYOUT, Layout, check_file, read_ratings

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
    features, names, groups = demographic_features(
        ages, genders, gender_codes, occupations, occupation_codes
    )
    return user_ids, features, names, groups


def demographic_features(
    ages: np.ndarray,
    genders: tuple[str, ...],
    gender_codes: np.ndarray,
    occupations: tuple[str, ...],
    occupation_codes: np.ndarray,
):
    """User features (standardised age, one-hot gender and occupation),
    their names, and the user groups (gender, age band, occupation)."""
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
        "age": (AGE_BAND_LABELS, _age_band(ages).astype(np.int32)),
        "occupation": (occupations, occupation_codes.astype(np.int32)),
    }
    return features, names, groups


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
    user_index: dict[int, int] | None = None,
    item_index: dict[int, int] | None = None,
    strict: bool = False,
    layout: Layout = TAB_LAYOUT,
) -> Ratings:
    """Reads a rating file of a release whose users and movies are known.

    Rows that name a user or movie missing from the feature files, or hold a
    rating off the scale, are dropped with a warning that lists their lines
    (or raise ``DataError`` when ``strict``); duplicate pairs keep the latest
    rating. ``user_index`` and ``item_index`` are accepted for older callers
    and ignored: the dataset's ID arrays define the indices.
    """
    _, ratings = index_ratings(
        path,
        read_ratings(path, layout),
        dataset.user_ids,
        dataset.item_ids,
        dataset.levels,
        layout.first_data_line,
        strict,
    )
    return ratings


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

    def read(name: str) -> Ratings:
        return read_ratings_file(data_dir / name, dataset, strict=strict)

    if fold == "all":
        everything = read("u.data")
        no_rows = everything.take(np.zeros(0, np.int64))
        return Split(dataset, everything, no_rows, "all")
    return Split(dataset, read(f"{fold}.base"), read(f"{fold}.test"), fold)


# ML-1M's occupation codes 0..20, from its README.
ML1M_OCCUPATIONS = (
    "other",
    "academic/educator",
    "artist",
    "clerical/admin",
    "college/grad student",
    "customer service",
    "doctor/health care",
    "executive/managerial",
    "farmer",
    "homemaker",
    "K-12 student",
    "lawyer",
    "programmer",
    "retired",
    "sales/marketing",
    "scientist",
    "self-employed",
    "technician/engineer",
    "tradesman/craftsman",
    "unemployed",
    "writer",
)
ML1M_AGE_CODES = (1, 18, 25, 35, 45, 50, 56)
NO_GENRES = "(no genres listed)"
# A year in parentheses at the end of a title, "(1995)" or "(2006-2007)".
TITLE_YEAR = r"\((\d{4})(?:\s*[-\u2013]\s*\d{0,4})?\)\s*$"


def _decode(path: Path) -> str:
    """The text of a small file: UTF-8 (a BOM is dropped), else latin-1."""
    check_file(path)
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _lines(path: Path) -> pd.Series:
    """Non-blank lines of a small text file, indexed by line number."""
    lines = pd.Series(_decode(path).splitlines())
    lines.index = lines.index + 1
    return lines[lines.str.strip() != ""]


def _split_fields(
    path: Path, lines: pd.Series, separator: str, names: tuple[str, ...]
) -> pd.DataFrame:
    """Splits each line into exactly ``len(names)`` fields, or names the
    first line with a different count."""
    fields = lines.str.split(separator, regex=False)
    counts = fields.str.len()
    wrong = counts != len(names)
    if wrong.any():
        line = int(wrong.idxmax())
        raise DataError(
            path,
            f"expected {len(names)} fields separated by {separator!r}, "
            f"found {int(counts[line])}",
            line,
        )
    return pd.DataFrame(fields.tolist(), columns=list(names), index=lines.index)


def _int_column(path: Path, column: pd.Series, name: str) -> np.ndarray:
    values = pd.to_numeric(column.str.strip(), errors="coerce")
    bad = values.isna() | (values != values.round())
    if bad.any():
        line = int(bad.idxmax())
        raise DataError(
            path,
            f"field {name!r} should be an integer, got {column[line]!r}",
            line,
        )
    return values.to_numpy(dtype=np.int64)


def _read_dat_movies(path: Path):
    """``MovieID::Title::Genres`` lines (ML-1M, ML-10M). A title may hold
    ``:`` or even ``::``, so the ID is split off the left and the genres off
    the right."""
    lines = _lines(path)
    head = lines.str.split("::", n=1, regex=False)
    missing = head.str.len() != 2
    rest = head.str[1].fillna("")
    tail = rest.str.rsplit("::", n=1)
    missing |= tail.str.len() != 2
    if missing.any():
        line = int(missing.idxmax())
        raise DataError(
            path,
            "expected 3 fields separated by '::' (MovieID::Title::Genres)",
            line,
        )
    ids = _int_column(path, head.str[0], "MovieID")
    return ids, tail.str[0], tail.str[1], lines.index.to_numpy()


def _read_csv_movies(path: Path):
    """``movieId,title,genres`` with a header; titles holding commas are
    quoted (ML-20M and later)."""
    check_file(path)
    try:
        frame = pd.read_csv(
            path,
            dtype=str,
            keep_default_na=False,
            encoding="utf-8-sig",
            skip_blank_lines=False,
        )
    except pd.errors.ParserError as error:
        found = re.search(
            r"Expected (\d+) fields in line (\d+), saw (\d+)", str(error)
        )
        if found is None:
            raise DataError(path, f"cannot parse: {error}") from None
        raise DataError(
            path,
            f"expected {found.group(1)} fields separated by ',', found "
            f"{found.group(3)} (a title with commas must be quoted)",
            int(found.group(2)),
        ) from None
    expected = ["movieId", "title", "genres"]
    if list(frame.columns) != expected:
        raise DataError(
            path,
            f"expected the header {','.join(expected)!r}, found "
            f"{','.join(map(str, frame.columns))!r}",
            1,
        )
    frame.index = frame.index + 2
    frame = frame[(frame != "").any(axis=1)]
    empty_genres = frame["genres"] == ""
    if empty_genres.any():
        line = int(empty_genres.idxmax())
        raise DataError(
            path, "expected 3 fields separated by ',', found fewer", line
        )
    ids = _int_column(path, frame["movieId"], "movieId")
    return ids, frame["title"], frame["genres"], frame.index.to_numpy()


def movie_table(
    path: Path, ids, titles: pd.Series, genres_text: pd.Series, lines
):
    """Movie features from titles and ``|``-separated genres: the release
    year (from the title; the mean and a missing flag where absent) and the
    genres, multi-hot."""
    if len(ids) == 0:
        raise DataError(path, "holds no movies")
    duplicated = pd.Series(ids).duplicated().to_numpy()
    if duplicated.any():
        row = int(np.argmax(duplicated))
        raise DataError(
            path, f"movie {ids[row]} appears twice", int(lines[row])
        )

    dummies = genres_text.str.get_dummies(sep="|")
    dummies = dummies.drop(columns=[NO_GENRES], errors="ignore")
    genre_names = tuple(sorted(dummies.columns))
    genres = dummies[list(genre_names)].to_numpy(dtype=bool)

    years = pd.to_numeric(
        titles.str.extract(TITLE_YEAR, expand=False), errors="coerce"
    ).to_numpy(dtype=np.float64, copy=True)
    year_missing = np.isnan(years)
    fill = np.nanmean(years) if not year_missing.all() else 0.0
    years[year_missing] = fill
    features = np.concatenate(
        [
            _standardize(years)[:, None],
            year_missing[:, None].astype(np.float32),
            genres.astype(np.float32),
        ],
        axis=1,
    )
    names = ("year", "year_missing") + tuple(f"genre={g}" for g in genre_names)
    return ids, features, names, genres, genre_names, tuple(titles.tolist())


def _read_ml1m_users(path: Path):
    """``UserID::Gender::Age::Occupation::Zip-code`` (ML-1M)."""
    lines = _lines(path)
    frame = _split_fields(
        path, lines, "::", ("user_id", "gender", "age", "occupation", "zip")
    )
    user_ids = _int_column(path, frame["user_id"], "UserID")
    ages = _int_column(path, frame["age"], "Age")
    occupation_codes = _int_column(path, frame["occupation"], "Occupation")
    genders = ("F", "M")
    gender_text = frame["gender"].str.strip()
    gender_codes = (gender_text == "M").to_numpy().astype(np.int64)
    bad_occupation = (occupation_codes < 0) | (
        occupation_codes >= len(ML1M_OCCUPATIONS)
    )
    problems = (
        ("gender", ~gender_text.isin(genders).to_numpy(), "F or M"),
        ("age", ~np.isin(ages, ML1M_AGE_CODES), f"one of {ML1M_AGE_CODES}"),
        ("occupation", bad_occupation, "a code 0..20"),
        ("user_id", pd.Series(user_ids).duplicated().to_numpy(), "unique"),
    )
    for column, mask, expected in problems:
        if mask.any():
            row = int(np.argmax(mask))
            raise DataError(
                path,
                f"field {column!r} should be {expected}, got "
                f"{frame[column].iloc[row]!r}",
                int(lines.index[row]),
            )

    features, names, groups = demographic_features(
        ages, genders, gender_codes, ML1M_OCCUPATIONS, occupation_codes
    )
    return user_ids, features, names, groups


def read_movielens(
    release: str, data_dir: str | os.PathLike, strict: bool = False
) -> tuple[Dataset, Ratings]:
    """Reads a whole release: its users, movies and every rating.

    ``data_dir`` is the unpacked release folder (the one holding the rating
    file). Rows naming an unknown movie or user, or holding a rating off the
    scale, are dropped with a warning listing their lines (``strict``
    raises instead); duplicate (user, movie) pairs keep the latest rating.
    """
    from ratinggan.data.releases import release_info

    info = release_info(release)
    data_dir = Path(data_dir)
    _check_dir(data_dir, info.required_files, release)

    if release == "ml-100k":
        split = read_ml100k(data_dir, "all", strict)
        return split.dataset, split.train

    movies_path = data_dir / info.movies_file
    if info.movies_file.endswith(".dat"):
        movie_columns = _read_dat_movies(movies_path)
    else:
        movie_columns = _read_csv_movies(movies_path)
    item_ids, item_features, item_names, genres, genre_names, titles = (
        movie_table(movies_path, *movie_columns)
    )

    user_ids = None
    user_features = None
    user_names = ()
    groups = {}
    if info.users_file is not None:
        user_ids, user_features, user_names, groups = _read_ml1m_users(
            data_dir / info.users_file
        )

    ratings_path = data_dir / info.ratings_file
    user_ids, ratings = index_ratings(
        ratings_path,
        read_ratings(ratings_path, info.layout),
        user_ids,
        item_ids,
        info.levels,
        info.layout.first_data_line,
        strict,
    )
    if user_features is None:
        user_features = np.zeros((len(user_ids), 0), np.float32)

    dataset = Dataset(
        name=release,
        levels=info.levels,
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
    return dataset, ratings
