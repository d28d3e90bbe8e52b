import json
import os
import subprocess
import sys

import pytest

from ratinggan import cli
from ratinggan.config import Config, from_dict, override

QUICK = [
    "--synthetic.num-users",
    "60",
    "--synthetic.num-items",
    "80",
    "--synthetic.num-ratings",
    "2000",
    "--regressor.epochs",
    "2",
    "--regressor.batch-size",
    "64",
    "--gan.epochs",
    "1",
    "--gan.batch-size",
    "64",
    "--gan.critic-steps",
    "2",
    "--gan.hidden-dim",
    "16",
    "--eval.tstr",
    "false",
]


def test_train_command_writes_report(tmp_path):
    workdir = tmp_path / "run"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ratinggan",
            "train",
            "--workdir",
            str(workdir),
            *QUICK,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "generator" in result.stdout and "softmax" in result.stdout

    report = json.loads((workdir / "report.json").read_text())
    rows = report["rows"]
    assert set(rows) == {
        "regressor",
        "generator",
        "global_histogram",
        "movie_histogram",
        "regressor_noise",
        "softmax",
        "true_distribution",
    }
    for key in ("rmse", "mae", "nll", "rps", "w1", "w1_per_movie"):
        assert key in rows["generator"]
    assert report["num_train"] + report["num_test"] == 2000
    saved = json.loads((workdir / "config.json").read_text())
    assert from_dict(saved).gan.critic_steps == 2
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["phase"] == "gan"
    assert (workdir / "report.md").is_file()


def test_user_errors_are_one_line_without_traceback(tmp_path, capsys):
    code = cli.main(
        [
            "train",
            "--dataset",
            "ml-100k",
            "--data-dir",
            str(tmp_path / "x"),
            "--workdir",
            str(tmp_path / "run"),
            "--quiet",
        ]
    )
    error = capsys.readouterr().err
    assert code == 1
    assert error.startswith("ratinggan: error: ")
    assert "no such directory" in error
    assert "Traceback" not in error


def test_indivisible_batch_and_unknown_dataset_are_refused(tmp_path, capsys):
    assert (
        cli.main(
            [
                "train",
                "--dataset",
                "ml-9m",
                "--quiet",
                "--workdir",
                str(tmp_path),
            ]
        )
        == 1
    )
    assert "unknown dataset 'ml-9m'" in capsys.readouterr().err


def test_flags_cover_every_config_field():
    parser = cli.build_parser()
    args = parser.parse_args(
        [
            "train",
            "--gan.gp-weight",
            "5",
            "--synthetic.half-stars",
            "true",
            "--seed",
            "3",
        ]
    )
    assert vars(args)["gan.gp_weight"] == 5.0
    assert vars(args)["synthetic.half_stars"] is True
    assert vars(args)["seed"] == 3


def test_override_rejects_typos():
    with pytest.raises(ValueError, match="unknown config fields: gan.epoch"):
        override(Config(), {"gan.epoch": 3})


def test_misspelt_or_abbreviated_flag_is_refused_by_name(capsys):
    for flag, hint in [
        ("--gan.epoch", "; did you mean --gan.epochs?"),
        ("--regresor.epochs=3", "; did you mean --regressor.epochs?"),
        ("--bogus", ""),
        ("-q", ""),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["train", flag, "3"])
        assert exit_info.value.code == 2
        error = capsys.readouterr().err.splitlines()[-1]
        name = flag.split("=")[0]
        assert error == (
            f"ratinggan train: error: unknown flag {name}{hint} (see --help)"
        )


def test_train_help_explains_each_field_and_stays_narrow(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = capsys.readouterr().out
    assert "ML-100K fold: u1..u5, ua or ub. (default: u1)" in text
    assert "last 10% by time" in text
    assert max(len(line) for line in text.splitlines()) <= 80


@pytest.mark.parametrize(
    "flag",
    [
        "--regressor.batch-size",
        "--gan.critic-steps",
        "--gan.epochs",
        "--checkpoint.keep",
        "--synthetic.num-ratings",
    ],
)
def test_counts_below_one_are_refused_before_any_work(flag, tmp_path, capsys):
    workdir = tmp_path / "run"
    code = cli.main(["train", flag, "0", "--workdir", str(workdir), "--quiet"])
    name = flag[2:].replace("-", "_")
    assert code == 1
    assert capsys.readouterr().err == (
        f"ratinggan: error: {name}=0; expected 1 or more\n"
    )
    assert not workdir.exists()


def test_fold_without_a_test_part_is_refused_before_reading(tmp_path, capsys):
    code = cli.main(
        [
            "train",
            "--dataset",
            "ml-100k",
            "--data-dir",
            str(tmp_path / "nowhere"),
            "--fold",
            "all",
            "--workdir",
            str(tmp_path / "run"),
            "--quiet",
        ]
    )
    assert code == 1
    assert capsys.readouterr().err == (
        "ratinggan: error: unknown ml-100k fold 'all'; expected one of "
        "u1, u2, u3, u4, u5, ua, ub\n"
    )


def test_a_closed_pipe_ends_quietly(tmp_path):
    # As `ratinggan data list | head -0`: the reader is gone before any
    # output, so the first write fails with EPIPE.
    # Buffered output, as in a plain shell: the write happens at the flush.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    child = subprocess.Popen(
        [sys.executable, "-m", "ratinggan", "data", "list", "--cache-dir"]
        + [str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    child.stdout.close()
    error = child.stderr.read()
    assert child.wait(timeout=120) == 1
    assert error == ""


def test_missing_workdir_and_bad_out_are_named_before_loading(tmp_path, capsys):
    missing = tmp_path / "missing"
    for command in ("evaluate", "sample"):
        assert cli.main([command, "--workdir", str(missing)]) == 1
        assert capsys.readouterr().err == (
            f"ratinggan: error: {missing}: no such work directory\n"
        )
    # The run has no checkpoints, so only a check made first can name --out.
    empty_run, taken = tmp_path / "run", tmp_path / "taken.csv"
    empty_run.mkdir()
    taken.write_text("x\n")
    args = ["sample", "--workdir", str(empty_run), "--out", str(taken)]
    assert cli.main(args) == 1
    assert capsys.readouterr().err == (
        f"ratinggan: error: --out {taken}: exists and is not a folder\n"
    )


def test_help_works_without_the_config_source(monkeypatch, capsys):
    # A bytecode-only install: inspect cannot read config.py.
    def no_source(_):
        raise OSError("could not get source code")

    monkeypatch.setattr("ratinggan.config_file.inspect.getsource", no_source)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--help"])
    assert exit_info.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    assert "  --gan.epochs INT      default: 10" in lines
