"""Every bad input gets a clear error naming the file and the line."""

import logging
from pathlib import Path

import numpy as np
import pytest
from test_data_layouts import write_csv_release, write_ml1m

from ratinggan.data import DataError, load_split, read_custom
from ratinggan.data.movielens import read_movielens
from ratinggan.data.parsing import (
    BLOCK_SIZE,
    COLONS_LAYOUT,
    CSV_LAYOUT,
    MIN_BLOCK_SIZE,
    block_size,
    read_ratings,
)

HEADER = "userId,movieId,rating,timestamp\n"


def _ratings_file(tmp_path: Path, text: str | bytes, name="ratings.csv"):
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text, line, message",
    [
        (HEADER + "1,11,4.0,9\n1,12,3.5\n", 3, "expected 4 fields .* found 3"),
        (HEADER + "1,11,4.0,9\n1,12,3.5,9,7\n", 3, "expected 4 fields .* 5"),
        (HEADER + "1,11,4.0,9\nx,12,3.5,9\n", 3, "'user' should be an integer"),
        (HEADER + "1,11,4.0,9\n1,1.5,3.5,9\n", 3, "'item' should be an int"),
        (HEADER + "1,11,4.0,9\n1,12,high,9\n", 3, "'rating' should be a num"),
        (HEADER + "1,11,4.0,9\n1,12,,9\n", 3, "malformed line"),
        (
            HEADER + "1,11,4.0,9\n1;12;3.5;9\n",
            3,
            "found 1; the line looks separated by ';'",
        ),
        ("user,item,rating,time\n1,11,4.0,9\n", 1, "expected the header"),
        # A blank line is skipped, but lines after it keep their numbers.
        (HEADER + "1,11,4.0,9\n\n1,12,x,9\n", 4, "'rating' should be"),
    ],
)
def test_bad_csv_lines(tmp_path, text, line, message):
    path = _ratings_file(tmp_path, text)
    with pytest.raises(DataError, match=message) as error:
        read_ratings(path, CSV_LAYOUT)
    assert error.value.line == line
    assert str(error.value).startswith(f"{path}, line {line}: ")


def test_block_size_follows_the_file_within_bounds():
    assert block_size(0) == MIN_BLOCK_SIZE
    assert block_size(25 << 20) == MIN_BLOCK_SIZE
    assert MIN_BLOCK_SIZE < block_size(100 << 20) < BLOCK_SIZE
    assert block_size(1 << 30) == BLOCK_SIZE


def test_file_of_many_blocks_is_read_whole_and_errors_name_the_line(
    tmp_path,
):
    num_lines = 40_000  # about 8 blocks of the smallest size
    lines = [
        f"{1 + i // 100}::{1 + i % 100}::{1 + i % 5}::{i}\n"
        for i in range(num_lines)
    ]
    path = _ratings_file(tmp_path, "".join(lines), "ratings.dat")
    assert path.stat().st_size > 6 * block_size(path.stat().st_size)
    raw = read_ratings(path, COLONS_LAYOUT)
    assert len(raw) == num_lines
    np.testing.assert_array_equal(raw.timestamps, np.arange(num_lines))

    lines[-3] = "1::2::x::3\n"
    path.write_text("".join(lines))
    with pytest.raises(DataError, match="'rating' should be") as error:
        read_ratings(path, COLONS_LAYOUT)
    assert error.value.line == num_lines - 2


def test_wrong_separator_in_dat_file(tmp_path):
    path = _ratings_file(tmp_path, "1::3::5::9\n1\t3\t5\t9\n", "ratings.dat")
    with pytest.raises(DataError, match=r"line 2: .* looks separated by tab"):
        read_ratings(path, COLONS_LAYOUT)
    path.write_text("1::3::5::9\n1:3::5::9\n")
    with pytest.raises(DataError, match="line 2"):
        read_ratings(path, COLONS_LAYOUT)
    path.write_text("1::3::5::9\n1:x:3::5::9\n")
    with pytest.raises(DataError, match="line 2: expected 4 fields .* malf"):
        read_ratings(path, COLONS_LAYOUT)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(DataError, match="ratings.csv: file not found"):
        read_ratings(tmp_path / "ratings.csv", CSV_LAYOUT)
    path = _ratings_file(tmp_path, "")
    with pytest.raises(DataError, match="ratings.csv: file is empty"):
        read_ratings(path, CSV_LAYOUT)
    path.write_text(HEADER)
    with pytest.raises(DataError, match="holds no rating lines"):
        read_ratings(path, CSV_LAYOUT)


def test_missing_release_file_is_named(tmp_path):
    folder = write_ml1m(tmp_path)
    (folder / "users.dat").unlink()
    with pytest.raises(DataError, match="missing users.dat"):
        read_movielens("ml-1m", folder)


def test_bom_and_crlf_simply_work(tmp_path):
    text = (HEADER + "1,11,4.0,9\n2,12,3.5,10\n").replace("\n", "\r\n")
    path = _ratings_file(tmp_path, b"\xef\xbb\xbf" + text.encode())
    raw = read_ratings(path, CSV_LAYOUT)
    assert raw.users.tolist() == [1, 2]
    assert raw.timestamps.tolist() == [9, 10]


def test_off_scale_ratings_are_dropped_or_refused(tmp_path, caplog):
    folder = write_csv_release(
        tmp_path / "ml-25m", HEADER + "1,11,4.0,9\n1,12,7.0,9\n2,1,0.0,9\n"
    )
    dataset, ratings = read_movielens("ml-25m", folder)
    assert ratings.ratings.tolist() == [4.0]
    assert "dropped 2 rows (rating not in [0.5" in caplog.text
    assert "at lines 3, 4" in caplog.text
    with pytest.raises(DataError, match=r"ratings.csv, line 3: rating not in"):
        read_movielens("ml-25m", folder, strict=True)


def test_duplicates_keep_the_latest_and_are_counted(tmp_path, caplog):
    folder = write_csv_release(
        tmp_path / "ml-25m",
        HEADER + "1,11,4.0,50\n1,12,3.0,9\n1,11,2.0,70\n1,11,5.0,60\n",
    )
    with caplog.at_level(logging.WARNING):
        _, ratings = read_movielens("ml-25m", folder)
    # The pair (1, 11) keeps timestamp 70: rating 2.0.
    assert sorted(
        zip(ratings.items.tolist(), ratings.ratings.tolist(), strict=True)
    ) == [
        (1, 2.0),
        (2, 3.0),
    ]
    assert "2 duplicate (user, movie) pairs" in caplog.text
    assert "dropped lines 2, 5" in caplog.text
    # Strict names the first line whose pair an earlier line rated (line 4
    # repeats line 2), though the older rating is line 2's.
    with pytest.raises(DataError, match="line 4: repeats a"):
        read_movielens("ml-25m", folder, strict=True)


def test_bad_movie_and_user_files(tmp_path):
    folder = write_csv_release(tmp_path / "ml-20m", HEADER + "1,1,4.0,9\n")
    with open(folder / "movies.csv", "a") as file:
        file.write("1,Toy Story again (1995),Comedy\n")
    with pytest.raises(DataError, match=r"movies.csv, line 7: movie 1 appears"):
        read_movielens("ml-20m", folder)

    folder = write_csv_release(tmp_path / "ml-32m", HEADER + "1,1,4.0,9\n")
    with open(folder / "movies.csv", "a") as file:
        file.write("30,Heat, 1995,Action\n")
    with pytest.raises(DataError, match=r"movies.csv, line 7: expected 3 f"):
        read_movielens("ml-32m", folder)

    folder = write_ml1m(tmp_path)
    (folder / "users.dat").write_text("1::F::1::10::48067\n2::X::56::16::7\n")
    with pytest.raises(DataError, match=r"users.dat, line 2: field 'gender'"):
        read_movielens("ml-1m", folder)
    (folder / "users.dat").write_text("1::F::1::10::48067\n2::M::57::16::7\n")
    with pytest.raises(DataError, match=r"users.dat, line 2: field 'age'"):
        read_movielens("ml-1m", folder)
    (folder / "movies.dat").write_text("1::Toy Story (1995)::Comedy\n2::Bad\n")
    with pytest.raises(DataError, match=r"movies.dat, line 2: expected 3"):
        read_movielens("ml-1m", folder)


def test_unknown_dataset_split_and_fraction(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'ml-9m'"):
        load_split("ml-9m")
    with pytest.raises(ValueError, match="unknown split 'later'"):
        load_split("synthetic", split="later")
    folder = write_csv_release(tmp_path / "ml-20m", HEADER + "1,1,4.0,9\n")
    with pytest.raises(ValueError, match="'fold' exists for ml-100k only"):
        load_split("ml-20m", str(folder), split="fold")


def test_custom_file_errors(tmp_path):
    path = _ratings_file(tmp_path, "uid,item,rating\n1,2,4\n")
    with pytest.raises(DataError, match=r"no user column; the header has"):
        read_custom(path)
    path.write_text("user,item,rating\n1,2,4\n1,3,five\n")
    with pytest.raises(DataError, match=r"line 3: field 'rating' should be"):
        read_custom(path)
    path.write_text("user,item,rating\n1,2,4\n1,3,\n")
    with pytest.raises(DataError, match=r"line 3: field 'rating' is empty"):
        read_custom(path)
    path.write_text("user,item,rating\n1,2,4\n1,3,4,5\n")
    with pytest.raises(DataError, match=r"line 3: Expected 3 columns"):
        read_custom(path)
    path.write_text(
        "user,item,rating\n"
        + "".join(f"1,{i},{i * 0.37:.2f}\n" for i in range(30))
    )
    with pytest.raises(DataError, match="30 distinct values"):
        read_custom(path)


def test_custom_test_file_with_unknown_users_is_cold_start(tmp_path):
    train = _ratings_file(tmp_path, "user,item,rating\n1,2,4\n2,3,5\n1,3,1\n")
    test = _ratings_file(tmp_path, "user,item,rating\n9,2,3\n1,8,2\n", "t.csv")
    split = load_split(str(train), test_file=str(test))

    dataset = split.dataset
    assert dataset.user_ids.tolist() == [1, 2, 9]
    assert dataset.item_ids.tolist() == [2, 3, 8]
    assert split.test.users.tolist() == [2, 0]
    assert split.test.items.tolist() == [0, 2]
    assert not np.isin(split.test.users[0], split.train.users)


@pytest.mark.parametrize(
    "num_users, num_items", [(6_040, 3_706), (200_000, 60_000)]
)
def test_pair_keys_order_pairs_as_int64_keys_do(num_users, num_items):
    from ratinggan.data.cleaning import pair_keys

    rng = np.random.default_rng(0)
    users = rng.integers(0, num_users, 1_000).astype(np.int32)
    items = rng.integers(0, num_items, 1_000).astype(np.int32)
    users[0], items[0] = num_users - 1, num_items - 1  # the largest key

    keys = pair_keys(users, items, num_items)

    expected = users.astype(np.int64) * num_items + items
    small = num_users * num_items <= np.iinfo(np.uint32).max
    assert keys.dtype == (np.uint32 if small else np.int64)
    np.testing.assert_array_equal(keys.astype(np.int64), expected)
