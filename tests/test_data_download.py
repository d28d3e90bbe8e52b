"""Downloads against a local HTTP server: good, corrupted, cut off; unsafe
and truncated archives."""

import dataclasses
import hashlib
import http.server
import io
import threading
import zipfile

import pytest
from test_data_layouts import write_csv_release

from ratinggan import cli
from ratinggan.data import (
    DataError,
    download,
    load_release,
    load_split,
    releases,
    verify,
)
from ratinggan.data.download import archive_path, extract, fetch_archive
from ratinggan.data.releases import RELEASES

HEADER = "userId,movieId,rating,timestamp\n"


def _release_zip(tmp_path) -> bytes:
    folder = write_csv_release(
        tmp_path / "src" / "ml-latest-small",
        HEADER + "1,11,4.0,9\n2,1,0.5,10\n",
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        for path in sorted(folder.iterdir()):
            bundle.write(path, f"ml-latest-small/{path.name}")
    return buffer.getvalue()


class Server:
    """Serves ``files`` (path -> bytes) on 127.0.0.1; a path in ``cut`` gets
    a full Content-Length but only half its bytes before the connection
    closes."""

    def __init__(self, files, cut=()):
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append(self.path)
                body = files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.path in cut:
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.requests = []
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def pinned_to(monkeypatch):
    """Pins ml-latest-small's checksum to the given bytes' MD5."""

    def pin(data: bytes, **changes):
        info = dataclasses.replace(
            RELEASES["ml-latest-small"],
            md5=hashlib.md5(data).hexdigest(),
            sha256=None,
            size=len(data),
            **changes,
        )
        monkeypatch.setitem(RELEASES, "ml-latest-small", info)

    return pin


def test_good_download_is_verified_unpacked_and_loaded(tmp_path, pinned_to):
    data = _release_zip(tmp_path)
    pinned_to(data)
    cache = tmp_path / "cache"
    with Server({"/ml-latest-small.zip": data}) as server:
        folder = download(
            "ml-latest-small", cache, f"{server.url}/ml-latest-small.zip"
        )
    assert folder == cache / "ml-latest-small"
    assert (folder / "ratings.csv").is_file()
    assert archive_path("ml-latest-small", cache).read_bytes() == data
    assert not list(cache.rglob("*.part")) and not list(cache.glob(".unpack*"))

    report = verify("ml-latest-small", cache)
    assert report["checksum_ok"] and report["missing_files"] == []
    dataset, ratings = load_release("ml-latest-small", cache_dir=cache)
    assert len(ratings) == 2 and dataset.num_items == 5


def test_progress_bar_counts_the_bytes_of_the_verified_archive(
    tmp_path, pinned_to, capsys
):
    data = _release_zip(tmp_path)
    pinned_to(data)
    with Server({"/x.zip": data}) as server:
        path = fetch_archive(
            "ml-latest-small", tmp_path, f"{server.url}/x.zip", progress=True
        )
    assert path.read_bytes() == data
    bar = capsys.readouterr().err
    assert len(data) < 1000  # so the bar prints the byte count unscaled
    assert "x.zip: 100%" in bar and f"| {len(data)}/{len(data)} [" in bar


@pytest.mark.parametrize("quiet", [False, True])
def test_cli_download_shows_a_bar_unless_quiet(
    tmp_path, pinned_to, capsys, monkeypatch, quiet
):
    data = _release_zip(tmp_path)
    pinned_to(data)
    cache = tmp_path / "cache"
    with Server({"/ml-latest-small.zip": data}) as server:
        monkeypatch.setattr(releases, "BASE_URL", f"{server.url}/")
        argv = ["data", "download", "ml-latest-small", "--cache-dir"]
        code = cli.main(argv + [str(cache)] + ["--quiet"] * quiet)
    captured = capsys.readouterr()
    assert code == 0
    assert captured.out.strip() == str(cache / "ml-latest-small")
    assert archive_path("ml-latest-small", cache).read_bytes() == data
    assert ("ml-latest-small.zip: 100%" in captured.err) != quiet


def test_load_split_passes_progress_to_the_download(
    tmp_path, pinned_to, capsys, monkeypatch
):
    data = _release_zip(tmp_path)
    pinned_to(data)
    with Server({"/ml-latest-small.zip": data}) as server:
        monkeypatch.setattr(releases, "BASE_URL", f"{server.url}/")
        load_split("ml-latest-small", cache_dir=str(tmp_path / "a"))
        assert "100%" not in capsys.readouterr().err
        split = load_split(
            "ml-latest-small", cache_dir=str(tmp_path / "b"), progress=True
        )
    assert "ml-latest-small.zip: 100%" in capsys.readouterr().err
    assert len(split.train) + len(split.test) == 2


def test_checksum_mismatch_leaves_nothing(tmp_path, pinned_to):
    data = _release_zip(tmp_path)
    pinned_to(data)
    cache = tmp_path / "cache"
    tampered = data[:-1] + bytes([data[-1] ^ 1])
    with Server({"/x.zip": tampered}) as server:
        with pytest.raises(DataError, match="checksum mismatch: md5 is"):
            fetch_archive("ml-latest-small", cache, f"{server.url}/x.zip")
    assert list((cache / "archives").iterdir()) == []


@pytest.mark.parametrize("progress", [False, True])
def test_connection_cut_halfway_leaves_nothing(tmp_path, pinned_to, progress):
    data = _release_zip(tmp_path)
    pinned_to(data)
    cache = tmp_path / "cache"
    with Server({"/x.zip": data}, cut={"/x.zip"}) as server:
        with pytest.raises(DataError, match="download cut off") as error:
            fetch_archive(
                "ml-latest-small", cache, f"{server.url}/x.zip", progress
            )
    assert "With no network, fetch" in str(error.value)
    assert list((cache / "archives").iterdir()) == []


def test_no_network_says_where_to_put_files(tmp_path, pinned_to):
    pinned_to(b"x")
    with pytest.raises(DataError, match="cannot download") as error:
        fetch_archive("ml-latest-small", tmp_path, "http://127.0.0.1:9/x.zip")
    message = str(error.value)
    assert str(tmp_path / "archives" / "ml-latest-small.zip") in message
    assert "--data-dir" in message


def test_unpinned_release_uses_the_published_md5(tmp_path, monkeypatch):
    data = _release_zip(tmp_path)
    info = dataclasses.replace(
        RELEASES["ml-latest-small"], md5=None, sha256=None, size=None
    )
    monkeypatch.setitem(RELEASES, "ml-latest-small", info)
    md5_text = f"MD5 (x.zip) = {hashlib.md5(data).hexdigest()}\n".encode()
    files = {"/x.zip": data, "/x.zip.md5": md5_text}
    with Server(files) as server:
        fetch_archive("ml-latest-small", tmp_path, f"{server.url}/x.zip")
    with Server({"/y.zip": data, "/y.zip.md5": b"0" * 32}) as server:
        with pytest.raises(DataError, match="checksum mismatch"):
            fetch_archive(
                "ml-latest-small", tmp_path / "b", f"{server.url}/y.zip"
            )


def test_cached_archive_is_checked(tmp_path, pinned_to):
    data = _release_zip(tmp_path)
    pinned_to(data)
    path = archive_path("ml-latest-small", tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="does not match the .* bytes"):
        fetch_archive("ml-latest-small", tmp_path)
    assert verify("ml-latest-small", tmp_path)["checksum_ok"] is False


@pytest.mark.parametrize(
    "member", ["../evil.txt", "/abs/evil.txt", "a/../../evil.txt"]
)
def test_members_escaping_the_target_are_refused(tmp_path, member):
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("ml-1m/ratings.dat", "1::1::5::1\n")
        bundle.writestr(member, "gotcha")
    with pytest.raises(DataError, match="would escape the target folder"):
        extract(archive, tmp_path / "out" / "ml-1m", "ml-1m")
    assert not (tmp_path / "evil.txt").exists()
    assert not (tmp_path / "out" / "evil.txt").exists()
    assert not (tmp_path / "out" / "ml-1m").exists()


def test_symlink_member_is_refused(tmp_path):
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        link = zipfile.ZipInfo("ml-1m/link")
        link.external_attr = (0o120777) << 16
        bundle.writestr(link, "/etc/passwd")
    with pytest.raises(DataError, match="would escape"):
        extract(archive, tmp_path / "out", "ml-1m")


def test_truncated_archive_is_named(tmp_path):
    data = _release_zip(tmp_path)
    archive = tmp_path / "cut.zip"
    archive.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(DataError, match="truncated or corrupt"):
        extract(archive, tmp_path / "out", "ml-latest-small")
    assert not (tmp_path / "out").exists()
