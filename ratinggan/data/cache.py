"""The cache folder, and parsed releases kept there as ``.npz`` files.

A parsed release (its ``Dataset`` and all its ratings) is saved once as
plain arrays, so a second load reads a few hundred megabytes at most instead
of parsing text. Each file records a fingerprint of its sources (name, size
and modification time of every file read, and the format version); a load
whose sources no longer match parses again and replaces the file. A change
that keeps both size and modification time is not noticed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from ratinggan.data.dataset import Dataset, Ratings

logger = logging.getLogger(__name__)

CACHE_ENV = "RATINGGAN_CACHE_DIR"
# Bumped whenever parsing or the stored layout changes, so that old files
# are re-made rather than misread.
FORMAT_VERSION = 1


def default_cache_dir() -> Path:
    """``$RATINGGAN_CACHE_DIR``, else ``$XDG_CACHE_HOME/ratinggan``, else
    ``~/.cache/ratinggan``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ratinggan"


def resolve_cache_dir(cache_dir: str | os.PathLike | None) -> Path:
    return default_cache_dir() if cache_dir is None else Path(cache_dir)


def fingerprint(sources: list[Path], **options) -> str:
    """A JSON text naming each source file's size and modification time,
    the format version and the parse options."""
    files = []
    for path in sources:
        stat = path.stat()
        files.append([str(path.resolve()), stat.st_size, stat.st_mtime_ns])
    record = {"version": FORMAT_VERSION, "files": files, "options": options}
    return json.dumps(record, sort_keys=True)


def parsed_path(cache_dir: Path, name: str, sources: list[Path], **options):
    """Where a parse of ``sources`` with ``options`` is cached."""
    key = json.dumps(
        [sorted(str(p.resolve()) for p in sources), options], sort_keys=True
    )
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    return cache_dir / "parsed" / f"{name}-{digest}.npz"


def _text_array(values) -> np.ndarray:
    """Strings as one UTF-8 byte array, joined by NUL (titles hold none)."""
    return np.frombuffer("\0".join(values).encode(), np.uint8)


def _texts(array: np.ndarray) -> tuple[str, ...]:
    if len(array) == 0:
        return ()
    return tuple(array.tobytes().decode().split("\0"))


def _pack(dataset: Dataset, ratings: Ratings) -> dict[str, np.ndarray]:
    arrays = {
        "name": _text_array([dataset.name]),
        "levels": dataset.levels,
        "user_ids": dataset.user_ids,
        "item_ids": dataset.item_ids,
        "user_features": dataset.user_features,
        "item_features": dataset.item_features,
        "user_feature_names": _text_array(dataset.user_feature_names),
        "item_feature_names": _text_array(dataset.item_feature_names),
        "genres": dataset.genres,
        "genre_names": _text_array(dataset.genre_names),
        "item_titles": _text_array(dataset.item_titles),
        "group_names": _text_array(list(dataset.user_groups)),
        "users": ratings.users,
        "items": ratings.items,
        "ratings": ratings.ratings,
    }
    if ratings.timestamps is not None:
        arrays["timestamps"] = ratings.timestamps
    for index, (labels, codes) in enumerate(dataset.user_groups.values()):
        arrays[f"group{index}_labels"] = _text_array(labels)
        arrays[f"group{index}_codes"] = codes
    return arrays


def _unpack(arrays) -> tuple[Dataset, Ratings]:
    groups = {
        name: (
            _texts(arrays[f"group{index}_labels"]),
            arrays[f"group{index}_codes"],
        )
        for index, name in enumerate(_texts(arrays["group_names"]))
    }
    dataset = Dataset(
        name=_texts(arrays["name"])[0],
        levels=arrays["levels"],
        user_ids=arrays["user_ids"],
        item_ids=arrays["item_ids"],
        user_features=arrays["user_features"],
        item_features=arrays["item_features"],
        user_feature_names=_texts(arrays["user_feature_names"]),
        item_feature_names=_texts(arrays["item_feature_names"]),
        genres=arrays["genres"],
        genre_names=_texts(arrays["genre_names"]),
        item_titles=_texts(arrays["item_titles"]),
        user_groups=groups,
    )
    ratings = Ratings(
        users=arrays["users"],
        items=arrays["items"],
        ratings=arrays["ratings"],
        timestamps=arrays.get("timestamps"),
    )
    return dataset, ratings


def save_parsed(
    path: Path, source_print: str, dataset: Dataset, ratings: Ratings
) -> None:
    """Writes a parsed release to ``path`` atomically (temp file, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = _pack(dataset, ratings)
    arrays["fingerprint"] = _text_array([source_print])
    handle, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=path.name, suffix=".part"
    )
    try:
        with os.fdopen(handle, "wb") as file:
            np.savez(file, **arrays)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def map_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an uncompressed ``.npz``, memory-mapped copy-on-write.

    ``np.load`` copies each member out of the zip (and checks its CRC),
    which takes seconds for ml-25m; mapping makes a reload near instant,
    pages being read from the OS cache as they are first used. Writes to
    the arrays stay private to the process.
    """
    arrays = {}
    with zipfile.ZipFile(path) as bundle, open(path, "rb") as file:
        for member in bundle.infolist():
            if member.compress_type != zipfile.ZIP_STORED:
                raise ValueError(f"member {member.filename} is compressed")
            file.seek(member.header_offset)
            local = file.read(30)
            name_length, extra_length = struct.unpack("<HH", local[26:30])
            file.seek(member.header_offset + 30 + name_length + extra_length)
            version = np.lib.format.read_magic(file)
            read_header = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, fortran, dtype = read_header(file)
            if dtype.hasobject:
                raise ValueError(f"member {member.filename} holds objects")
            name = member.filename.removesuffix(".npy")
            if int(np.prod(shape)) == 0:
                arrays[name] = np.zeros(shape, dtype)
                continue
            mapped = np.memmap(
                path,
                dtype=dtype,
                mode="c",
                offset=file.tell(),
                shape=shape,
                order="F" if fortran else "C",
            )
            arrays[name] = np.asarray(mapped)
    return arrays


def load_parsed(path: Path, source_print: str):
    """The cached ``(dataset, ratings)``, or ``None`` when absent, stale or
    unreadable (a stale or broken file is logged and will be replaced)."""
    if not path.is_file():
        return None
    try:
        arrays = map_npz(path)
        if _texts(arrays["fingerprint"])[0] != source_print:
            logger.info("%s: sources changed, parsing again", path)
            return None
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        logger.warning("%s: unreadable cache (%s), parsing again", path, error)
        return None
    return _unpack(arrays)
