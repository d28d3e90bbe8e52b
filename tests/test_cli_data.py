"""``ratinggan data``, driven as a user would, on hand-made files in the
MovieLens layouts; nothing here touches the network."""

import json
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from test_movielens import _write_ml100k

from ratinggan import cli

LINES = ["1\t1\t5\t10", "2\t3\t2\t11", "1\t2\t4\t12"]


@pytest.fixture
def release_dir(tmp_path):
    """A tiny ml-100k folder: 2 users, 3 movies, 3 ratings, fold u1."""
    folder = tmp_path / "ml-100k"
    folder.mkdir()
    _write_ml100k(folder, LINES)
    (folder / "u1.base").write_text(LINES[0] + "\n" + LINES[2] + "\n")
    (folder / "u1.test").write_text(LINES[1] + "\n")
    return folder


def _data(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(["data", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_line_error(code: int, err: str) -> str:
    """The error line; progress lines logged before it (INFO) may precede."""
    lines = [line for line in err.splitlines() if not line.startswith("INFO ")]
    assert code == 1
    assert len(lines) == 1 and "Traceback" not in err
    assert lines[0].startswith("ratinggan: error: ")
    return lines[0] + "\n"


def test_describe_whole_handmade_release(release_dir, tmp_path, capsys):
    code, out, err = _data(
        capsys,
        "describe",
        "--data-dir",
        str(release_dir),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--json",
    )
    assert code == 0, err
    summary = json.loads(out)
    assert summary["name"] == "ml-100k"  # named by the folder's layout
    assert (summary["users"], summary["items"]) == (2, 3)
    assert summary["ratings"] == 3
    assert summary["mean_rating"] == pytest.approx((5 + 2 + 4) / 3)
    assert summary["histogram"] == {"2": 1, "4": 1, "5": 1}
    assert summary["density"] == pytest.approx(3 / (2 * 3))
    assert (summary["first_timestamp"], summary["last_timestamp"]) == (10, 12)
    assert summary["levels"] == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_describe_fold_counts_cold_start(release_dir, tmp_path, capsys):
    # The parent folder works too: the release folder is found inside.
    code, out, err = _data(
        capsys,
        "describe",
        "ml-100k",
        "--data-dir",
        str(release_dir.parent),
        "--fold",
        "u1",
        "--json",
    )
    assert code == 0, err
    summary = json.loads(out)
    assert summary["split"] == "u1"
    assert summary["train"]["ratings"] == 2
    assert summary["train"]["mean_rating"] == pytest.approx(4.5)
    # User 2 and movie 3 appear only in the test part.
    assert summary["test"] == {
        "ratings": 1,
        "users": 1,
        "items": 1,
        "mean_rating": 2.0,
        "first_timestamp": 11,
        "last_timestamp": 11,
        "cold_start_users": 1,
        "cold_start_items": 1,
    }


def test_describe_prints_readable_lines(release_dir, tmp_path, capsys):
    code, out, _ = _data(
        capsys,
        "describe",
        "--data-dir",
        str(release_dir),
        "--cache-dir",
        str(tmp_path / "cache"),
    )
    assert code == 0
    assert "users: 2\n" in out and "histogram:\n  2: 1\n" in out


def test_list_marks_cached_releases(release_dir, tmp_path, capsys):
    cache = release_dir.parent  # holds ml-100k/ with every required file
    code, out, _ = _data(capsys, "list", "--cache-dir", str(cache), "--json")
    assert code == 0
    rows = {row["release"]: row for row in json.loads(out)}
    assert rows["ml-100k"]["cached"] is True
    assert rows["ml-1m"]["cached"] is False
    assert rows["ml-1m"]["ratings"] == 1_000_209

    code, out, _ = _data(capsys, "list", "--cache-dir", str(cache))
    assert code == 0
    assert out.splitlines()[0].split() == [
        "release",
        "ratings",
        "users",
        "movies",
        "scale",
        "checksum",
    ]
    ml100k = next(line for line in out.splitlines() if "ml-100k" in line)
    assert ml100k.split() == [
        "ml-100k",
        "100,000",
        "943",
        "1,682",
        "1..5",
        "pinned",
        "cached",
    ]


def test_download_of_a_cached_release_needs_no_network(
    release_dir, capsys, monkeypatch
):
    def refuse(*args, **kwargs):
        raise AssertionError("no network expected")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    code, out, _ = _data(
        capsys, "download", "ml-100k", "--cache-dir", str(release_dir.parent)
    )
    assert code == 0
    assert out.strip() == str(release_dir)


def test_download_without_network_is_one_line(tmp_path, capsys, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    code, _, err = _data(
        capsys, "download", "ml-1m", "--cache-dir", str(tmp_path)
    )
    message = _one_line_error(code, err)
    assert "cannot download: Temporary failure in name resolution" in message
    assert "--data-dir" in message  # the offline advice
    assert not (tmp_path / "archives" / "ml-1m.zip").exists()


def test_verify_reports_a_corrupt_archive(tmp_path, capsys):
    archive = tmp_path / "archives" / "ml-100k.zip"
    archive.parent.mkdir()
    archive.write_bytes(b"not a zip")
    code, out, err = _data(
        capsys, "verify", "ml-100k", "--cache-dir", str(tmp_path), "--json"
    )
    message = _one_line_error(code, err)
    assert "size 9 bytes does not match the 4924029 bytes" in message
    assert json.loads(out)["checksum_ok"] is False


def test_verify_cached_files_without_archive(release_dir, capsys):
    code, out, err = _data(
        capsys, "verify", "ml-100k", "--cache-dir", str(release_dir.parent)
    )
    assert (code, err) == (0, "")
    assert "missing_files: []" in out


# Every error that the --help examples show, as a user would type it.
@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["download", "ml-9m"],
            "unknown MovieLens release 'ml-9m'; expected one of ml-100k,",
        ),
        (["describe", "--data-dir", "nowhere"], "nowhere: no such directory"),
        (
            ["verify", "ml-1m"],
            "ml-1m is not in the cache at {cache}/ml-1m; run `ratinggan data "
            "download ml-1m`",
        ),
        (
            ["describe", "ml-1m"],
            "ml-1m is not in the cache at {cache}/ml-1m; run `ratinggan data "
            "download ml-1m` or pass --data-dir",
        ),
        (["describe"], "name a RELEASE or pass --data-dir DIR"),
        (
            ["describe", "--data-dir", "{cache}"],
            "{cache}: no MovieLens files (u.data, ratings.dat or ratings.csv)",
        ),
    ],
)
def test_user_errors_are_one_clear_line(
    tmp_path, capsys, monkeypatch, args, message
):
    monkeypatch.chdir(tmp_path)
    cache = str(tmp_path)
    code, _, err = _data(
        capsys, *[arg.format(cache=cache) for arg in args], "--cache-dir", cache
    )
    assert message.format(cache=cache) in _one_line_error(code, err)


def test_user_error_from_the_shell(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "ratinggan", "data", "download", "ml-9m"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith(
        "ratinggan: error: unknown MovieLens release 'ml-9m'"
    )
    assert result.stderr.count("\n") == 1


def test_describe_bad_handmade_file_names_file_and_line(tmp_path, capsys):
    folder = tmp_path / "ml-100k"
    folder.mkdir()
    _write_ml100k(folder, ["1\t1\tfive\t10"])
    code, _, err = _data(
        capsys,
        "describe",
        "--data-dir",
        str(folder),
        "--cache-dir",
        str(tmp_path / "cache"),
    )
    message = _one_line_error(code, err)
    assert f"{folder / 'u.data'}, line 1" in message


def test_data_help_shows_examples(capsys):
    result = subprocess.run(
        [sys.executable, "-m", "ratinggan", "data", "describe", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0
    assert "ratinggan data describe --data-dir" in result.stdout
    assert "ratinggan data download ml-9m" in result.stdout
    for args in (["data"], ["data", "list"], ["data", "verify"]):
        with pytest.raises(SystemExit) as exit_info:
            cli.main([*args, "--help"])
        assert exit_info.value.code == 0
        assert "ratinggan data verify ml-1m" in capsys.readouterr().out
