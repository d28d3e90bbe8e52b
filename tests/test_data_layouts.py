"""Every MovieLens layout, read from small hand-made files in that layout."""

from pathlib import Path

import numpy as np
import pytest

from ratinggan.data import describe, load_release, load_split
from ratinggan.data.movielens import read_movielens


def write_ml1m(root: Path) -> Path:
    folder = root / "ml-1m"
    folder.mkdir()
    # Latin-1 titles holding ':' and '"'; IDs not contiguous (no movie 2).
    (folder / "movies.dat").write_bytes(
        "1::Toy Story (1995)::Animation|Children's|Comedy\n"
        '3::Star Wars: Episode IV - "A New Hope" (1977)::Action|Sci-Fi\n'
        "7::Amélie (2001)::Comedy|Romance\n"
        "9::Unrated Film (1990)::Drama\n".encode("latin-1")
    )
    (folder / "users.dat").write_text(
        "1::F::1::10::48067\n2::M::56::16::70072\n5::M::25::20::55455\n"
    )
    (folder / "ratings.dat").write_text(
        "1::3::5::978300760\n1::1::3::978302109\n2::7::4::978301968\n"
        "5::3::2::978824291\n"
    )
    return folder


def test_ml1m_layout(tmp_path):
    folder = write_ml1m(tmp_path)
    dataset, ratings = read_movielens("ml-1m", folder)

    assert dataset.item_ids.tolist() == [1, 3, 7, 9]
    assert (
        dataset.item_titles[1] == 'Star Wars: Episode IV - "A New Hope" (1977)'
    )
    assert dataset.item_titles[2] == "Amélie (2001)"
    assert dataset.user_ids.tolist() == [1, 2, 5]
    assert ratings.users.tolist() == [0, 0, 1, 2]
    assert ratings.items.tolist() == [1, 0, 2, 1]
    assert ratings.ratings.tolist() == [5, 3, 4, 2]
    assert ratings.timestamps[0] == 978300760
    assert dataset.levels.tolist() == [1, 2, 3, 4, 5]

    # Demographics: age bands, gender and the 21 occupations by code.
    labels, codes = dataset.user_groups["age"]
    assert [labels[c] for c in codes] == ["<18", "56+", "25-34"]
    labels, codes = dataset.user_groups["occupation"]
    assert [labels[c] for c in codes] == [
        "K-12 student",
        "self-employed",
        "writer",
    ]
    assert dataset.user_features.shape == (3, 24)
    assert "Children's" in dataset.genre_names
    genre = dataset.genre_names.index("Sci-Fi")
    assert dataset.genres[:, genre].tolist() == [False, True, False, False]
    # Year from the title, standardised: 1977 is the earliest.
    years = dataset.item_features[:, 0]
    assert np.argmin(years) == 1
    # The movie nobody rated is kept (cold start), with its features.
    assert dataset.num_items == 4 and 3 not in ratings.items


def test_ml10m_layout_half_stars_and_folder_name(tmp_path):
    folder = tmp_path / "ml-10M100K"
    folder.mkdir()
    (folder / "movies.dat").write_text(
        "1::Toy Story (1995)::Adventure|Animation\n"
        "5::Father of the Bride Part II (1995)::(no genres listed)\n"
    )
    (folder / "ratings.dat").write_text(
        "10::1::4.5::838985046\n10::5::0.5::838983525\n30::5::3::838983392\n"
    )
    # The parent folder is accepted too: the release folder is found in it.
    dataset, ratings = load_release("ml-10m", tmp_path, tmp_path / "cache")

    assert dataset.levels.tolist() == [0.5 * k for k in range(1, 11)]
    assert ratings.ratings.tolist() == [4.5, 0.5, 3.0]
    assert dataset.user_ids.tolist() == [10, 30]
    assert dataset.user_features.shape == (2, 0)
    assert dataset.genres[1].sum() == 0  # "(no genres listed)"
    assert dataset.genre_names == ("Adventure", "Animation")


def write_csv_release(folder: Path, ratings: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "movies.csv").write_text(
        "movieId,title,genres\n"
        "1,Toy Story (1995),Adventure|Animation|Children\n"
        '11,"American President, The (1995)",Comedy|Drama\n'
        '12,"Dracula: Dead and Loving It (1995)",Comedy|Horror\n'
        "20,Black Mirror,(no genres listed)\n"
        "21,Death Note: Desu nôto (2006–2007),Animation\n"
    )
    (folder / "ratings.csv").write_text(ratings)
    return folder


@pytest.mark.parametrize(
    "release", ["ml-20m", "ml-25m", "ml-32m", "ml-latest-small", "ml-latest"]
)
def test_csv_layout(tmp_path, release):
    folder = write_csv_release(
        tmp_path / release,
        "userId,movieId,rating,timestamp\n"
        "1,11,4.0,964982703\n1,12,3.5,964981247\n2,1,0.5,964982224\n",
    )
    dataset, ratings = read_movielens(release, folder)

    assert dataset.item_titles[1] == "American President, The (1995)"
    assert ratings.items.tolist() == [1, 2, 0]
    assert ratings.ratings.tolist() == [4.0, 3.5, 0.5]
    assert dataset.num_levels == 10
    # Year from the title: missing for Black Mirror (flag set), 2006 for a
    # range "(2006–2007)".
    assert dataset.item_features[:, 1].tolist() == [0, 0, 0, 1, 0]
    raw_years = np.array([1995, 1995, 1995, 0, 2006], float)
    known = raw_years[[0, 1, 2, 4]]
    raw_years[3] = known.mean()
    expected = (raw_years - raw_years.mean()) / raw_years.std()
    np.testing.assert_allclose(dataset.item_features[:, 0], expected, rtol=1e-5)


def test_real_ml_latest_small(tmp_path, caplog):
    from conftest import movielens_dir

    folder = movielens_dir("ml-latest-small")
    split = load_split(
        "ml-latest-small", str(folder), cache_dir=str(tmp_path / "cache")
    )
    dataset = split.dataset
    total = len(split.train) + len(split.test)

    # The file holds one extra row (user 999 rating movie 999999, which is
    # in no movie file): dropped with a warning naming its line.
    assert total == 100_836
    assert dataset.num_users == 610
    assert dataset.num_items == 9742
    assert dataset.num_levels == 10
    assert len(split.test) == 10_084
    assert "dropped 1 row (movie not in the movie file) at line 100838" in (
        caplog.text
    )
    summary = describe(split)
    assert summary["ratings"] == 100_836
    assert summary["split"] == "random-90-10"


def test_real_ml100k_through_load_split(ml100k_dir, tmp_path):
    split = load_split("ml-100k", str(ml100k_dir), fold="u2")
    assert (len(split.train), len(split.test)) == (80_000, 20_000)

    random = load_split(
        "ml-100k", str(ml100k_dir), split="random", cache_dir=str(tmp_path)
    )
    assert (len(random.train), len(random.test)) == (90_000, 10_000)
    temporal = load_split(
        "ml-100k", str(ml100k_dir), split="temporal", cache_dir=str(tmp_path)
    )
    assert temporal.train.timestamps.max() <= temporal.test.timestamps.min()
