from pathlib import Path

import numpy as np
import pytest

from ratinggan.data import DataError, read_ml100k
from ratinggan.data.movielens import read_table


def test_ml100k_counts_match_the_release(ml100k_dir):
    split = read_ml100k(ml100k_dir, fold="all")
    dataset = split.dataset

    assert len(split.train) == 100_000
    assert dataset.num_users == 943
    assert dataset.num_items == 1682
    assert len(dataset.genre_names) == 19
    assert dataset.levels.tolist() == [1, 2, 3, 4, 5]
    # Features: age, 2 genders, 21 occupations; year, missing flag, genres.
    assert dataset.user_features.shape == (943, 24)
    assert dataset.item_features.shape == (1682, 21)
    np.testing.assert_array_equal(
        dataset.item_features[:, 2:].astype(bool), dataset.genres
    )


def test_ml100k_u1_fold_and_cold_start_movies(ml100k_dir):
    split = read_ml100k(ml100k_dir, fold="u1")

    assert len(split.train) == 80_000
    assert len(split.test) == 20_000
    unseen = ~np.isin(split.test.items, split.train.items)
    assert unseen.sum() == 32
    # One index map: raw IDs come back through the dataset's ID arrays.
    first = split.test.take(np.array([0]))
    assert split.dataset.user_ids[first.users[0]] == 1
    assert split.dataset.item_ids[first.items[0]] == 6
    assert first.ratings[0] == 5


def test_ml100k_unknown_fold_is_refused(ml100k_dir):
    with pytest.raises(ValueError, match="unknown ml-100k fold 'u9'"):
        read_ml100k(ml100k_dir, fold="u9")


def _write_ml100k(root: Path, data_lines: list[str]) -> Path:
    (root / "u.user").write_text(
        "1|24|M|technician|85711\n2|53|F|other|94043\n"
    )
    (root / "u.occupation").write_text("technician\nother\n")
    (root / "u.genre").write_text("unknown|0\nAction|1\n\n")
    (root / "u.item").write_text(
        "1|Toy Story (1995)|01-Jan-1995||http://x|0|1\n"
        "2|GoldenEye (1995)|01-Jan-1995||http://y|0|1\n"
        "3|Nothing||||1|0\n"
    )
    (root / "u.data").write_text("".join(line + "\n" for line in data_lines))
    return root


def test_small_handmade_release(tmp_path):
    _write_ml100k(tmp_path, ["1\t1\t5\t10", "2\t3\t2\t11", "1\t2\t4\t12"])
    split = read_ml100k(tmp_path, fold="all")
    assert split.dataset.num_items == 3
    assert split.train.ratings.tolist() == [5, 2, 4]
    assert split.train.items.tolist() == [0, 2, 1]
    # A missing release date sets the missing flag.
    assert split.dataset.item_features[2, 1] == 1.0


def test_invalid_rows_are_dropped_with_a_warning(tmp_path, caplog):
    _write_ml100k(tmp_path, ["1\t1\t5\t10", "7\t1\t3\t11", "2\t2\t0\t12"])
    split = read_ml100k(tmp_path, fold="all")
    assert len(split.train) == 1
    assert "dropped 1 row (user not in the user file) at line 2" in caplog.text
    assert (
        "dropped 1 row (rating not in [1.0, 2.0, 3.0, 4.0, 5.0]) at line 3\n"
        in caplog.text
    )

    with pytest.raises(DataError, match=r"u.data, line 2: user not in"):
        read_ml100k(tmp_path, fold="all", strict=True)


@pytest.mark.parametrize(
    "content, message",
    [
        (
            "1\t1\t5\t10\n1\t2\t3\t4\t5\n",
            r"line 2: expected 4 fields .* found 5",
        ),
        ("1\t1\t5\t10\n1\t2\n", r"line 2: expected 4 fields .* found fewer"),
        (
            "1\t1\t5\t10\nx\t2\t3\t4\n",
            r"line 2: field 'user' should be an integer",
        ),
        ("", r"file is empty"),
    ],
)
def test_bad_rating_files_name_file_and_line(tmp_path, content, message):
    path = tmp_path / "u.data"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        frame = read_table(path, "\t", ("user", "item", "rating", "timestamp"))
        from ratinggan.data.movielens import parse_ints

        parse_ints(path, frame, "user")


def test_bom_and_crlf_are_read(tmp_path):
    path = tmp_path / "u.data"
    path.write_bytes(b"\xef\xbb\xbf1\t1\t5\t10\r\n2\t3\t2\t11\r\n")
    frame = read_table(path, "\t", ("user", "item", "rating", "timestamp"))
    assert frame["user"].tolist() == ["1", "2"]
    assert frame["timestamp"].tolist() == ["10", "11"]


def test_missing_directory_and_files(tmp_path):
    with pytest.raises(DataError, match="no such directory"):
        read_ml100k(tmp_path / "absent")
    with pytest.raises(DataError, match="missing u.data, u.user"):
        read_ml100k(tmp_path)


def test_ml100k_whole_release_is_cached(ml100k_dir, tmp_path, caplog):
    from ratinggan.data import describe, load_release

    dataset, ratings = load_release("ml-100k", ml100k_dir, tmp_path)
    # The four bad rows at the top of u.data (user 0; one also rates 0)
    # are dropped with a warning that names their lines.
    assert len(ratings) == 100_000
    assert "dropped 4 rows (user not in the user file) at lines 1, 2, 3, 4" in (
        caplog.text
    )
    # Row 4 is reported once, under its first reason.
    assert "rating not in" not in caplog.text
    again, cached = load_release("ml-100k", ml100k_dir, tmp_path)
    np.testing.assert_array_equal(cached.ratings, ratings.ratings)
    assert again.user_groups.keys() == dataset.user_groups.keys()
    summary = describe(again)
    assert (summary["users"], summary["items"]) == (943, 1682)
