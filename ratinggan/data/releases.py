"""The MovieLens releases: where to fetch them, their checksums and layouts.

Checksums are pinned here, taken from public sources (GroupLens publishes an
``.md5`` file next to each archive; TensorFlow Datasets pins SHA-256 sums
and sizes). Each archive is checked against every sum known for it.

Sources beyond those two, for exactly the archive URLs used here:

- ml-10m SHA-256: the OmniRec loaders (ISG-Siegen/OmniRec,
  ``src/omnirec/data_loaders/movielens_small.py``), which pin it for
  ``files.grouplens.org/datasets/movielens/ml-10m.zip`` (their ml-1m, ml-20m,
  ml-25m and ml-latest-small sums agree with TensorFlow Datasets'). Its
  size, 65,566,137 bytes, is stated with the same URL, SHA-256 and the
  GroupLens MD5 in public dataset-acquisition notes found through a code
  index that did not name their repositories.
- ml-32m SHA-256: stated for ``.../movielens/ml-32m.zip`` in public code (a
  Rust MovieLens downloader that checks it) and in a dataset manifest that
  also gives the size pinned here, 238,950,008 bytes; found through the same
  index, without repository names.

Known gaps, stated where they live:

- ml-latest-small: no MD5 was found; the SHA-256 and size are pinned (they
  are those of the September 2018 snapshot, which GroupLens still serves).
- ml-latest: GroupLens regenerates it from time to time, so no checksum can
  be pinned. Its download is checked against the ``.md5`` file fetched from
  the same server, which catches a truncated or corrupted transfer but not a
  tampered server; the log says so.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ratinggan.data.parsing import COLONS_LAYOUT, CSV_LAYOUT, TAB_LAYOUT, Layout

BASE_URL = "https://files.grouplens.org/datasets/movielens/"
WHOLE_STARS = np.arange(1, 6, dtype=np.float32)
HALF_STARS = np.arange(1, 11, dtype=np.float32) / 2


@dataclasses.dataclass(frozen=True)
class Release:
    """One GroupLens release: archive, checksums, files and rating scale."""

    name: str
    # Top folder inside the archive (ml-10m unpacks to ml-10M100K).
    folder: str
    ratings_file: str
    layout: Layout
    movies_file: str
    users_file: str | None
    levels: np.ndarray
    num_ratings: int
    num_users: int
    num_items: int
    md5: str | None = None
    sha256: str | None = None
    size: int | None = None

    @property
    def url(self) -> str:
        return f"{BASE_URL}{self.name}.zip"

    @property
    def required_files(self) -> tuple[str, ...]:
        if self.name == "ml-100k":
            return ("u.data", "u.user", "u.item", "u.genre", "u.occupation")
        files = (self.ratings_file, self.movies_file)
        return files + ((self.users_file,) if self.users_file else ())

    @property
    def pinned(self) -> bool:
        return self.md5 is not None or self.sha256 is not None


def _csv_release(name: str, **counts) -> Release:
    return Release(
        name=name,
        folder=name,
        ratings_file="ratings.csv",
        layout=CSV_LAYOUT,
        movies_file="movies.csv",
        users_file=None,
        levels=HALF_STARS,
        **counts,
    )


RELEASES = {
    release.name: release
    for release in (
        Release(
            name="ml-100k",
            folder="ml-100k",
            ratings_file="u.data",
            layout=TAB_LAYOUT,
            movies_file="u.item",
            users_file="u.user",
            levels=WHOLE_STARS,
            num_ratings=100_000,
            num_users=943,
            num_items=1682,
            md5="0e33842e24a9c977be4e0107933c0723",
            sha256="50d2a982c66986937beb9ffb3aa76efe"
            "955bf3d5c6b761f4e3a7cd717c6a3229",
            size=4_924_029,
        ),
        Release(
            name="ml-1m",
            folder="ml-1m",
            ratings_file="ratings.dat",
            layout=COLONS_LAYOUT,
            movies_file="movies.dat",
            users_file="users.dat",
            levels=WHOLE_STARS,
            num_ratings=1_000_209,
            num_users=6040,
            num_items=3883,
            md5="c4d9eecfca2ab87c1945afe126590906",
            sha256="a6898adb50b9ca05aa231689da44c217"
            "cb524e7ebd39d264c56e2832f2c54e20",
            size=5_917_549,
        ),
        Release(
            name="ml-10m",
            folder="ml-10M100K",
            ratings_file="ratings.dat",
            layout=COLONS_LAYOUT,
            movies_file="movies.dat",
            users_file=None,
            levels=HALF_STARS,
            num_ratings=10_000_054,
            num_users=69_878,
            num_items=10_681,
            md5="ce571fd55effeba0271552578f2648bd",
            sha256="813c411ccb6122564edfe752e7f80c4d"
            "cc5aa25fa94c93622f6877a7ba252862",
            size=65_566_137,
        ),
        _csv_release(
            "ml-20m",
            num_ratings=20_000_263,
            num_users=138_493,
            num_items=27_278,
            md5="cd245b17a1ae2cc31bb14903e1204af3",
            sha256="96f243c338a8665f6bcc89c53edf6ee3"
            "9162a846940de6b7c8c48aeada765ff3",
            size=198_702_078,
        ),
        _csv_release(
            "ml-25m",
            num_ratings=25_000_095,
            num_users=162_541,
            num_items=62_423,
            md5="6b51fb2759a8657d3bfcbfc42b592ada",
            sha256="8b21cfb7eb1706b4ec0aac894368d90a"
            "cf26ebdfb6aced3ebd4ad5bd1eb9c6aa",
            size=261_978_986,
        ),
        _csv_release(
            "ml-32m",
            num_ratings=32_000_204,
            num_users=200_948,
            num_items=87_585,
            md5="d472be332d4daa821edc399621853b57",
            sha256="e4a68655d7386b8f95f2f2424b2ff975"
            "dfdd15ffd59e0d864a14dca43e99d6ee",
            size=238_950_008,
        ),
        _csv_release(
            "ml-latest-small",
            num_ratings=100_836,
            num_users=610,
            num_items=9742,
            sha256="696d65a3dfceac7c45750ad32df2c259"
            "311949efec81f0f144fdfb91ebc9e436",
            size=978_202,
        ),
        # Regenerated by GroupLens from time to time: counts are those of
        # the July 2023 snapshot and only indicative.
        _csv_release(
            "ml-latest",
            num_ratings=33_832_162,
            num_users=330_975,
            num_items=86_537,
        ),
    )
}


def release_info(name: str) -> Release:
    """The release called ``name``, or ``ValueError`` listing the known
    ones."""
    if name not in RELEASES:
        raise ValueError(
            f"unknown MovieLens release {name!r}; expected one of "
            f"{', '.join(RELEASES)}"
        )
    return RELEASES[name]
