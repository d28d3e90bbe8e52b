"""The parsed-array cache, the splits, and your own files."""

import os

import numpy as np
import pandas as pd
import pytest
from test_data_layouts import write_csv_release, write_ml1m

from ratinggan.data import (
    Ratings,
    holdout,
    load_release,
    load_split,
    random_split,
    read_custom,
    temporal_split,
)
from ratinggan.data.cache import default_cache_dir

HEADER = "userId,movieId,rating,timestamp\n"


def _parsed_files(cache):
    return sorted((cache / "parsed").glob("*.npz"))


def test_cache_is_reused_and_invalidated(tmp_path, monkeypatch):
    folder = write_ml1m(tmp_path)
    cache = tmp_path / "cache"
    first = load_release("ml-1m", folder, cache)
    (stored,) = _parsed_files(cache)

    # A second load reads the cache: the parser is not called.
    import ratinggan.data as data

    def no_parse(*args, **kwargs):
        raise AssertionError("parsed again")

    monkeypatch.setattr(data, "read_movielens", no_parse)
    second = load_release("ml-1m", folder, cache)
    for name in ("users", "items", "ratings", "timestamps"):
        np.testing.assert_array_equal(
            getattr(first[1], name), getattr(second[1], name)
        )
    assert second[0].item_titles == first[0].item_titles
    assert (
        second[0].user_groups["occupation"][0]
        == (first[0].user_groups["occupation"][0])
    )
    np.testing.assert_array_equal(
        second[0].user_features, first[0].user_features
    )
    monkeypatch.undo()

    # Changing a source re-parses and replaces the cached file in place.
    with open(folder / "ratings.dat", "a") as file:
        file.write("5::9::1::978824300\n")
    third = load_release("ml-1m", folder, cache)
    assert len(third[1]) == len(first[1]) + 1
    assert _parsed_files(cache) == [stored]
    assert not list((cache / "parsed").glob("*.part"))

    # A broken cache file is ignored and rewritten.
    stored.write_bytes(b"not a zip")
    fourth = load_release("ml-1m", folder, cache)
    assert len(fourth[1]) == len(third[1])


def test_cache_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("RATINGGAN_CACHE_DIR", str(tmp_path / "here"))
    assert default_cache_dir() == tmp_path / "here"
    monkeypatch.delenv("RATINGGAN_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "ratinggan"


def _table(n=1000, seed=0):
    rng = np.random.default_rng(seed)
    return Ratings(
        users=np.arange(n, dtype=np.int32),
        items=np.zeros(n, np.int32),
        ratings=np.ones(n, np.float32),
        timestamps=rng.permutation(n).astype(np.int64),
    )


def test_random_split_is_seeded_and_matches_a_numpy_reference():
    table = _table()
    train, test = random_split(table, 0.1, seed=0)
    expected = np.sort(np.random.default_rng(0).permutation(1000)[:100])
    np.testing.assert_array_equal(test.users, expected)
    assert len(train) == 900
    assert not np.isin(train.users, test.users).any()
    again = random_split(table, 0.1, seed=0)[1]
    np.testing.assert_array_equal(again.users, test.users)


def test_temporal_split_holds_out_the_last_tenth():
    table = _table()
    train, test = temporal_split(table, 0.1)
    assert len(test) == 100
    assert sorted(test.timestamps.tolist()) == list(range(900, 1000))
    # Ties keep file order: the later rows go to the test part.
    tied = Ratings(
        users=np.arange(10, dtype=np.int32),
        items=np.zeros(10, np.int32),
        ratings=np.ones(10, np.float32),
        timestamps=np.zeros(10, np.int64),
    )
    assert temporal_split(tied, 0.2)[1].users.tolist() == [8, 9]
    no_time = Ratings(tied.users, tied.items, tied.ratings)
    with pytest.raises(ValueError, match="needs timestamps"):
        temporal_split(no_time)


def test_validation_is_carved_from_training_only(tmp_path):
    folder = write_csv_release(
        tmp_path / "ml-20m",
        HEADER
        + "".join(
            f"{u},{m},{1 + (u + m) % 9 / 2},{u * 10 + m}\n"
            for u in range(1, 41)
            for m in (1, 11, 12, 20, 21)
        ),
    )
    split = load_split("ml-20m", str(folder), cache_dir=str(tmp_path / "c"))
    rest, validation = holdout(split.train, 0.05, 0)
    train_keys = set(zip(split.train.users, split.train.items, strict=True))
    test_keys = set(zip(split.test.users, split.test.items, strict=True))
    valid_keys = set(zip(validation.users, validation.items, strict=True))
    assert valid_keys <= train_keys and not valid_keys & test_keys
    assert len(split.test) == 20 and len(validation) == 9


def test_own_csv_and_parquet_with_feature_tables(tmp_path):
    frame = pd.DataFrame(
        {
            "user_id": ["a", "b", "a", "c"],
            "movie": [10, 10, 20, 30],
            "score": [1, 3, 2, 3],
            "time": [5, 6, 7, 8],
        }
    )
    users = pd.DataFrame(
        {"user": ["a", "b", "c", "d"], "age": [20, 30, 40, 50]}
        | {"country": ["fr", "fr", "us", "us"]}
    )
    items = pd.DataFrame(
        {
            "item_id": [10, 20, 30],
            "title": ["One (1990)", "Two (2000)", "Three"],
            "genres": ["Drama", "Comedy|Drama", "(no genres listed)"],
        }
    )
    frame.to_parquet(tmp_path / "ratings.parquet")
    users.to_csv(tmp_path / "users.csv", index=False)
    items.to_csv(tmp_path / "items.tsv", sep="\t", index=False)

    dataset, ratings, _ = read_custom(
        tmp_path / "ratings.parquet",
        user_table=tmp_path / "users.csv",
        item_table=tmp_path / "items.tsv",
    )
    assert dataset.levels.tolist() == [1, 2, 3]
    assert dataset.user_ids.tolist() == ["a", "b", "c", "d"]
    assert ratings.users.tolist() == [0, 1, 0, 2]
    assert ratings.items.tolist() == [0, 0, 1, 2]
    assert ratings.timestamps.tolist() == [5, 6, 7, 8]
    ages = np.array([20, 30, 40, 50.0])
    np.testing.assert_allclose(
        dataset.user_features[:, 0], (ages - ages.mean()) / ages.std()
    )
    assert dataset.user_feature_names == ("age", "country=fr", "country=us")
    assert dataset.user_groups["country"][1].tolist() == [0, 0, 1, 1]
    assert dataset.genre_names == ("Comedy", "Drama")
    assert dataset.genres.tolist() == [[0, 1], [1, 1], [0, 0]]
    assert dataset.item_titles == ("One (1990)", "Two (2000)", "Three")

    frame.to_csv(tmp_path / "ratings.csv", index=False)
    split = load_split(
        str(tmp_path / "ratings.csv"), split="temporal", test_fraction=0.25
    )
    assert split.test.timestamps.tolist() == [8]


def test_own_file_with_date_strings(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text(
        "user,item,rating,timestamp\n1,1,4,2020-01-01T00:00:00Z\n"
        "1,2,5,2020-01-02T00:00:00Z\n"
    )
    _, ratings, _ = read_custom(path)
    assert ratings.timestamps.tolist() == [1577836800, 1577923200]


def test_default_run_never_writes_outside_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RATINGGAN_CACHE_DIR", str(tmp_path / "c"))
    folder = write_ml1m(tmp_path)
    before = sorted(os.listdir(folder))
    load_split("ml-1m", str(folder))
    assert sorted(os.listdir(folder)) == before
    assert len(_parsed_files(tmp_path / "c")) == 1


def test_list_releases_reports_the_cache(tmp_path):
    from ratinggan.data import list_releases

    write_ml1m(tmp_path)
    rows = {row["release"]: row for row in list_releases(tmp_path)}
    assert len(rows) == 8
    assert rows["ml-1m"]["cached"] and not rows["ml-25m"]["cached"]
    assert rows["ml-1m"]["demographics"] and rows["ml-25m"]["levels"] == 10
    assert not rows["ml-latest"]["checksum_pinned"]


def test_parquet_duplicates_are_named_by_row(tmp_path, caplog):
    frame = pd.DataFrame(
        {"user": [1, 1, 2], "item": [5, 5, 5], "rating": [1.0, 2.0, 3.0]}
    )
    frame.to_parquet(tmp_path / "r.parquet")
    _, ratings, _ = read_custom(tmp_path / "r.parquet")
    assert ratings.ratings.tolist() == [2.0, 3.0]
    assert "1 duplicate (user, movie) pair;" in caplog.text
    assert "dropped row 0" in caplog.text
    with pytest.raises(Exception, match="row 1: repeats a"):
        read_custom(tmp_path / "r.parquet", strict=True)
