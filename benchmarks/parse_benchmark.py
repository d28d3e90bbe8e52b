"""Parse speed, cached reload speed and peak memory of the data layer.

Writes files shaped like ml-25m (25 million CSV rating lines) and ml-1m
(``::``-separated ``.dat`` files) into a temporary folder, then, each in a
fresh process so that peak memory is its own: parses the release, writes the
parsed-array cache, and reloads from the cache. Prints one JSON object and a
table. Targets (2 cores): ml-1m parse < 2 s, ml-25m parse < 40 s, cached
reload < 1 s, peak memory added by the parse < 3x the parsed arrays.

Peak memory is the peak resident set (VmHWM, restarted just before the
parse) less the resident set then, after the imports; the parsed arrays are
every NumPy array the parser returns. It is measured twice, in separate
processes. "Cold" is the first parse in the process: it also pays one-time
costs that do not grow with the data, such as library code paged in on
first use and the allocators' first arenas (about 20 MB here). "Warm" first
parses a copy of the release cut to its first rating lines, which pays
those, and then measures; the ratio target is judged on it. The reload
memory-maps the cache; "touch" is the time of a first full pass over the
reloaded arrays, which pages them in.

    python benchmarks/parse_benchmark.py            # both shapes
    python benchmarks/parse_benchmark.py --rows 2000000 --only ml-25m
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv

from ratinggan.data.cleaning import distinct

HALF_STARS = [f"{level / 2:.1f}" for level in range(1, 11)]
GENRES = ("Action", "Comedy", "Drama", "Film-Noir", "Sci-Fi", "Thriller")


def _pairs(rng, num_users, num_items, num_rows):
    """Distinct (user, item) index pairs, sorted by user then item, like the
    releases."""
    keys = distinct(rng.integers(0, num_users * num_items, num_rows))
    while len(keys) < num_rows:
        extra = rng.integers(0, num_users * num_items, num_rows - len(keys))
        keys = distinct(np.concatenate([keys, extra]))
    return np.divmod(keys[:num_rows], num_items)


def _titles(rng, count, tricky):
    names = [
        f"Movie {i}{tricky[i % len(tricky)]} ({1920 + i % 100})"
        for i in range(count)
    ]
    genres = [
        "|".join(rng.choice(GENRES, 1 + i % 3, replace=False))
        for i in range(count)
    ]
    return names, genres


def write_ml25m_shape(root: Path, num_rows: int, seed: int = 0) -> Path:
    folder = root / "ml-25m"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    num_users, num_items = 162_541, 62_423
    movie_ids = np.sort(
        rng.choice(np.arange(1, 209_172), num_items, replace=False)
    )
    titles, genres = _titles(rng, num_items, ["", ", The", ': "Quoted"'])
    movies = pa.table({"movieId": movie_ids, "title": titles, "genres": genres})
    pcsv.write_csv(movies, folder / "movies.csv")

    users, items = _pairs(rng, num_users, num_items, num_rows)
    ratings = pa.table(
        {
            "userId": users + 1,
            "movieId": movie_ids[items],
            "rating": pa.array(HALF_STARS).take(
                pa.array(rng.integers(0, 10, num_rows))
            ),
            "timestamp": rng.integers(789_652_009, 1_574_327_703, num_rows),
        }
    )
    options = pcsv.WriteOptions(quoting_style="none")
    pcsv.write_csv(ratings, folder / "ratings.csv", options)
    return folder


def write_ml1m_shape(root: Path, seed: int = 0) -> Path:
    folder = root / "ml-1m"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    num_users, num_items, num_rows = 6040, 3883, 1_000_209
    movie_ids = np.sort(
        rng.choice(np.arange(1, 3953), num_items, replace=False)
    )
    titles, genres = _titles(rng, num_items, ["", ": Part II", ' "Quoted"'])
    lines = [
        f"{m}::{t}::{g}\n"
        for m, t, g in zip(movie_ids, titles, genres, strict=True)
    ]
    (folder / "movies.dat").write_bytes("".join(lines).encode("latin-1"))
    ages = rng.choice([1, 18, 25, 35, 45, 50, 56], num_users)
    users_text = "".join(
        f"{u + 1}::{'FM'[u % 2]}::{ages[u]}::{u % 21}::{10000 + u}\n"
        for u in range(num_users)
    )
    (folder / "users.dat").write_text(users_text)

    users, items = _pairs(rng, num_users, num_items, num_rows)
    rating = rng.integers(1, 6, num_rows)
    stamps = rng.integers(956_703_932, 1_046_454_590, num_rows)
    table = np.stack([users + 1, movie_ids[items], rating, stamps], axis=1)
    with open(folder / "ratings.dat", "w") as file:
        np.savetxt(file, table, fmt="%d", delimiter="::")
    return folder


def _status_mb(field: str) -> float:
    """A memory figure of this process from /proc/self/status, in MiB."""
    with open("/proc/self/status") as file:
        for line in file:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(field)


def _reset_peak() -> None:
    """Restarts the peak-RSS count (VmHWM) from the current RSS (Linux)."""
    with open("/proc/self/clear_refs", "w") as file:
        file.write("5")


WARM_UP_LINES = 1000


def write_warm_up_copy(folder: Path, release: str, root: Path) -> Path:
    """A copy of ``folder`` whose rating file keeps its first lines only."""
    from ratinggan.data.releases import release_info

    copy = root / f"{release}-warm-up"
    copy.mkdir()
    ratings_file = release_info(release).ratings_file
    for path in folder.iterdir():
        if path.name != ratings_file:
            (copy / path.name).write_bytes(path.read_bytes())
            continue
        with open(path, "rb") as source, open(copy / path.name, "wb") as out:
            for _ in range(WARM_UP_LINES + 1):
                out.write(source.readline())
    return copy


def _returned_mb(dataset, ratings) -> float:
    """MiB of every NumPy array in the parser's result."""
    arrays = [
        ratings.users,
        ratings.items,
        ratings.ratings,
        ratings.timestamps,
        dataset.levels,
        dataset.user_ids,
        dataset.item_ids,
        dataset.user_features,
        dataset.item_features,
        dataset.genres,
    ]
    arrays += [codes for _, codes in dataset.user_groups.values()]
    return sum(a.nbytes for a in arrays if a is not None) / 2**20


def child(
    kind: str, release: str, folder: str, cache: str, warm_up: str = ""
) -> dict:
    """One measurement in this (fresh) process."""
    from ratinggan.data import load_release
    from ratinggan.data.cache import fingerprint, parsed_path, save_parsed
    from ratinggan.data.movielens import read_movielens
    from ratinggan.data.releases import release_info

    if warm_up:
        read_movielens(release, warm_up)
    _reset_peak()
    baseline = _status_mb("VmRSS")
    started = time.perf_counter()
    if kind in ("parse", "warm"):
        dataset, ratings = read_movielens(release, folder)
    else:
        dataset, ratings = load_release(release, folder, cache)
    seconds = time.perf_counter() - started
    peak = _status_mb("VmHWM")
    result = {
        "seconds": seconds,
        "rows": len(ratings),
        "baseline_mb": baseline,
        "peak_mb": peak,
        "added_mb": peak - baseline,
        "array_mb": _returned_mb(dataset, ratings),
    }
    if kind == "warm":
        return result
    if kind == "reload":
        # The reload maps the cache file; reading every page once shows
        # what the first full pass over the arrays then costs.
        started = time.perf_counter()
        for array in (ratings.users, ratings.items, ratings.ratings):
            array.sum()
        ratings.timestamps.sum()
        result["touch_seconds"] = time.perf_counter() - started
    if kind == "parse":
        info = release_info(release)
        sources = [Path(folder) / name for name in info.required_files]
        started = time.perf_counter()
        save_parsed(
            parsed_path(Path(cache), release, sources, strict=False),
            fingerprint(sources, strict=False),
            dataset,
            ratings,
        )
        result["cache_write_seconds"] = time.perf_counter() - started
    return result


def _run_child(kind, release, folder, cache, warm_up="") -> dict:
    command = [sys.executable, __file__, "--child", kind, release]
    command += [str(folder), str(cache), str(warm_up)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} {release} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=25_000_095)
    parser.add_argument("--only", choices=("ml-1m", "ml-25m"))
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return

    results = {}
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        cache = root / "cache"
        shapes = {
            "ml-1m": lambda: write_ml1m_shape(root),
            "ml-25m": lambda: write_ml25m_shape(root, args.rows),
        }
        for release, write in shapes.items():
            if args.only and release != args.only:
                continue
            started = time.perf_counter()
            folder = write()
            size = sum(p.stat().st_size for p in folder.iterdir()) / 2**20
            entry = {
                "write_seconds": time.perf_counter() - started,
                "file_mb": size,
            }
            entry["parse"] = _run_child("parse", release, folder, cache)
            warm_up = write_warm_up_copy(folder, release, root)
            entry["parse_warm"] = _run_child(
                "warm", release, folder, cache, warm_up
            )
            entry["reload"] = _run_child("reload", release, folder, cache)
            results[release] = entry

    print(json.dumps(results, indent=2))
    targets = {"ml-1m": 2.0, "ml-25m": 40.0}
    print(
        f"\n{'shape':8} {'rows':>11} {'file MB':>8} {'parse s':>8} "
        f"{'reload s':>9} {'touch s':>8} {'arrays MB':>10} "
        f"{'peak+ MB cold/warm':>19} {'ratio cold/warm':>16}"
    )
    for release, entry in results.items():
        parse, warm = entry["parse"], entry["parse_warm"]
        reload = entry["reload"]
        cold_ratio = parse["added_mb"] / parse["array_mb"]
        warm_ratio = warm["added_mb"] / warm["array_mb"]
        peaks = f"{parse['added_mb']:.0f} / {warm['added_mb']:.0f}"
        ratios = f"{cold_ratio:.2f} / {warm_ratio:.2f}"
        print(
            f"{release:8} {parse['rows']:>11,} {entry['file_mb']:>8.0f} "
            f"{parse['seconds']:>8.2f} {reload['seconds']:>9.2f} "
            f"{reload['touch_seconds']:>8.2f} {parse['array_mb']:>10.0f} "
            f"{peaks:>19} {ratios:>16}"
        )
    print(
        "targets: parse < "
        + ", ".join(f"{targets[r]:.0f} s ({r})" for r in results)
        + "; reload < 1 s; warm ratio < 3"
    )


if __name__ == "__main__":
    main()
