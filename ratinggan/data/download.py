"""Fetching GroupLens archives into the cache: verified, atomic, contained.

An archive is streamed to a temporary file next to its final place, checked
against its pinned size and checksums, and only then renamed to
``<cache>/archives/<release>.zip``; an interrupted or corrupted download
therefore never leaves a file that looks complete. Unpacking goes to a
temporary folder that is renamed to ``<cache>/<release>`` when done, and a
member whose path would land outside that folder (absolute, ``..``, a link)
is refused.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import shutil
import stat
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from ratinggan.data.cache import resolve_cache_dir
from ratinggan.data.dataset import DataError
from ratinggan.data.releases import Release, release_info

logger = logging.getLogger(__name__)

CHUNK = 1 << 20
TIMEOUT_S = 60


def archive_path(release: str, cache_dir=None) -> Path:
    return resolve_cache_dir(cache_dir) / "archives" / f"{release}.zip"


def release_dir(release: str, cache_dir=None) -> Path:
    return resolve_cache_dir(cache_dir) / release


def _digests(path: Path) -> dict[str, str]:
    md5, sha256 = hashlib.md5(), hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(CHUNK):
            md5.update(block)
            sha256.update(block)
    return {"md5": md5.hexdigest(), "sha256": sha256.hexdigest()}


def check_archive(path: Path, info: Release, md5: str | None = None) -> None:
    """Raises ``DataError`` unless ``path`` matches every known size and
    checksum of ``info`` (``md5`` adds one fetched at download time)."""
    size = path.stat().st_size
    if info.size is not None and size != info.size:
        raise DataError(
            path,
            f"size {size} bytes does not match the {info.size} bytes of "
            f"{info.name}.zip (truncated or a different file)",
        )
    digests = _digests(path)
    expected = {"md5": info.md5 or md5, "sha256": info.sha256}
    for kind, value in expected.items():
        if value is not None and digests[kind] != value.lower():
            raise DataError(
                path,
                f"checksum mismatch: {kind} is {digests[kind]}, expected "
                f"{value} for {info.name}.zip",
            )


def _offline_advice(info: Release, cache_dir) -> str:
    return (
        f"With no network, fetch {info.url} elsewhere and put it at "
        f"{archive_path(info.name, cache_dir)} (it is verified and unpacked "
        f"on the next load), or unpack it and pass --data-dir pointing at "
        f"its {info.folder} folder."
    )


def fetch_url(
    url: str,
    destination: Path,
    expected_size: int | None = None,
    progress: bool = False,
):
    """Streams ``url`` into ``destination`` through a temporary file.

    Raises ``DataError`` when the connection fails or ends before the
    announced (or expected) number of bytes; nothing is left behind then.
    ``progress`` shows a progress bar of the bytes received (on stderr).
    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        dir=destination.parent, prefix=destination.name, suffix=".part"
    )
    received = 0
    try:
        with os.fdopen(handle, "wb") as file:
            with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
                announced = response.headers.get("Content-Length")
                announced = int(announced) if announced else expected_size
                with tqdm(
                    total=announced,
                    desc=url.rsplit("/", 1)[-1],
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    disable=not progress,
                ) as bar:
                    while block := response.read(CHUNK):
                        file.write(block)
                        received += len(block)
                        bar.update(len(block))
            file.flush()
            os.fsync(file.fileno())
        if announced is not None and received != announced:
            raise DataError(
                url,
                f"download cut off: got {received} of {announced} bytes",
            )
        os.replace(temporary, destination)
    except http.client.IncompleteRead as error:
        Path(temporary).unlink(missing_ok=True)
        raise DataError(
            url,
            f"download cut off: got {received + len(error.partial)} bytes, "
            f"{error.expected} more were announced",
        ) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        Path(temporary).unlink(missing_ok=True)
        reason = getattr(error, "reason", error)
        raise DataError(url, f"cannot download: {reason}") from None
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _published_md5(url: str) -> str:
    """The MD5 that GroupLens publishes next to an archive (``.md5``)."""
    with urllib.request.urlopen(url + ".md5", timeout=TIMEOUT_S) as response:
        text = response.read(4096).decode("ascii", errors="replace")
    found = re.search(r"\b([0-9a-fA-F]{32})\b", text)
    if found is None:
        raise DataError(url + ".md5", f"no MD5 in {text[:80]!r}")
    return found.group(1).lower()


def fetch_archive(
    release: str,
    cache_dir=None,
    url: str | None = None,
    progress: bool = False,
) -> Path:
    """The verified archive of ``release`` in the cache, downloaded if
    absent (``progress`` shows a bar meanwhile). A cached archive that
    fails its checksum raises ``DataError`` (delete it to fetch again)."""
    info = release_info(release)
    path = archive_path(release, cache_dir)
    if path.is_file():
        try:
            check_archive(path, info)
        except DataError as error:
            raise DataError(
                path, f"{error.reason}; delete it to download again"
            ) from None
        return path

    url = url or info.url
    published = None
    if not info.pinned:
        logger.warning(
            "%s has no pinned checksum (GroupLens regenerates it); checking "
            "it against %s.md5 from the same server",
            release,
            url,
        )
        try:
            published = _published_md5(url)
        except (urllib.error.URLError, OSError) as error:
            raise DataError(
                url + ".md5",
                f"cannot download: {getattr(error, 'reason', error)}. "
                + _offline_advice(info, cache_dir),
            ) from None

    logger.info("downloading %s to %s", url, path)
    staging = path.with_name(path.name + ".unverified")
    try:
        fetch_url(url, staging, info.size, progress)
    except DataError as error:
        raise DataError(
            error.path, f"{error.reason}. " + _offline_advice(info, cache_dir)
        ) from None
    try:
        check_archive(staging, info, published)
    except DataError:
        staging.unlink(missing_ok=True)
        raise
    os.replace(staging, path)
    return path


def _member_target(root: Path, member: zipfile.ZipInfo) -> Path:
    """Where ``member`` unpacks under ``root``; ``DataError`` if outside."""
    name = member.filename
    pure = PurePosixPath(name.replace("\\", "/"))
    mode = member.external_attr >> 16
    if (
        pure.is_absolute()
        or ".." in pure.parts
        or re.match(r"^[A-Za-z]:", name)
        or stat.S_ISLNK(mode)
    ):
        raise DataError(
            name, "archive member would escape the target folder; refused"
        )
    target = (root / pure).resolve()
    if not target.is_relative_to(root.resolve()):
        raise DataError(
            name, "archive member would escape the target folder; refused"
        )
    return target


def extract(archive: Path, target: Path, folder: str | None = None) -> Path:
    """Unpacks ``archive`` into ``target`` (renamed into place when done).

    ``folder`` is the archive's top folder; its contents become ``target``'s.
    A truncated or corrupt archive raises ``DataError``.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".unpack-"))
    try:
        with zipfile.ZipFile(archive) as bundle:
            for member in bundle.infolist():
                destination = _member_target(staging, member)
                if member.is_dir():
                    destination.mkdir(parents=True, exist_ok=True)
                    continue
                destination.parent.mkdir(parents=True, exist_ok=True)
                with (
                    bundle.open(member) as source,
                    open(destination, "wb") as sink,
                ):
                    shutil.copyfileobj(source, sink, CHUNK)
        inner = staging / folder if folder else staging
        if not inner.is_dir():
            inner = staging
        if target.exists():
            shutil.rmtree(target)
        os.replace(inner, target)
    except (zipfile.BadZipFile, EOFError, zlib.error) as error:
        raise DataError(
            archive,
            f"archive is truncated or corrupt ({error}); delete it and "
            "download again",
        ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def download(
    release: str,
    cache_dir=None,
    url: str | None = None,
    progress: bool = False,
) -> Path:
    """The unpacked folder of ``release`` in the cache, fetching and
    unpacking it when missing (``progress`` shows a download bar).
    Returns the folder."""
    info = release_info(release)
    target = release_dir(release, cache_dir)
    if all((target / name).is_file() for name in info.required_files):
        return target
    archive = fetch_archive(release, cache_dir, url, progress)
    extract(archive, target, info.folder)
    missing = [n for n in info.required_files if not (target / n).is_file()]
    if missing:
        raise DataError(
            archive, f"archive lacks {', '.join(missing)}; not {release}?"
        )
    return target


def verify(release: str, cache_dir=None) -> dict:
    """What the cache holds for ``release``: whether the archive is there
    and passes its checksums, and whether the unpacked files are there."""
    info = release_info(release)
    path = archive_path(release, cache_dir)
    report = {
        "release": release,
        "archive": str(path),
        "archive_present": path.is_file(),
        "checksum_ok": None,
        "checksum_pinned": info.pinned,
        "folder": str(release_dir(release, cache_dir)),
        "missing_files": [
            name
            for name in info.required_files
            if not (release_dir(release, cache_dir) / name).is_file()
        ],
    }
    if path.is_file():
        try:
            check_archive(path, info)
            report["checksum_ok"] = True
        except DataError as error:
            report["checksum_ok"] = False
            report["error"] = str(error)
    return report
