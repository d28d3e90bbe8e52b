"""``ratinggan train --config`` and ``ratinggan config``, driven as a user
would; nothing here trains."""

import subprocess
import sys

import pytest

from ratinggan import cli
from ratinggan.config import Config, override
from ratinggan.config_file import load_config, to_toml


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ratinggan", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_default_config_round_trips_through_toml(tmp_path, capsys):
    assert cli.main(["config"]) == 0
    text = capsys.readouterr().out
    assert "[gan]\n" in text and "critic_steps = 5\n" in text
    # The comments of config.py travel with the file.
    assert "# Critic updates per generator update." in text
    path = tmp_path / "default.toml"
    path.write_text(text)
    assert load_config(path) == Config()


def test_changed_config_round_trips(tmp_path):
    config = override(
        Config(),
        {
            "data_dir": 'odd "dir"\\x',
            "validation_fraction": 0.125,
            "gan.critic_steps": 2,
            "synthetic.half_stars": True,
            "regressor.model": "factor",
        },
    )
    path = tmp_path / "changed.toml"
    path.write_text(to_toml(config, commented=False))
    assert load_config(path) == config


def test_file_then_flags(tmp_path, capsys):
    path = tmp_path / "mine.toml"
    path.write_text(
        'dataset = "synthetic"\nseed = 4\n\n[gan]\nepochs = 3\n'
        "critic_learning_rate = 1\n\n[regressor]\nepochs = 9\n"
    )
    code = cli.main(
        ["train", "--config", str(path), "--gan.epochs", "7", "--print-config"]
    )
    assert code == 0
    printed = tmp_path / "printed.toml"
    printed.write_text(capsys.readouterr().out)
    resolved = load_config(printed)
    assert resolved.seed == 4
    assert resolved.gan.epochs == 7  # the flag wins over the file
    assert resolved.regressor.epochs == 9
    assert resolved.gan.critic_learning_rate == 1.0
    assert isinstance(resolved.gan.critic_learning_rate, float)
    assert resolved.gan.critic_steps == Config().gan.critic_steps


def test_yaml_config(tmp_path):
    pytest.importorskip("yaml")
    path = tmp_path / "mine.yaml"
    path.write_text(
        "seed: 2\ndata_dir: null\ngan:\n  epochs: 4\n"
        "  critic_learning_rate: 1e-4\n"
    )
    config = load_config(path)
    assert (config.seed, config.gan.epochs, config.data_dir) == (2, 4, None)
    assert config.gan.critic_learning_rate == 1e-4


@pytest.mark.parametrize(
    "content, message",
    [
        (
            "[gan]\nepoch = 3\n",
            "unknown config key 'gan.epoch'; did you mean 'gan.epochs'?",
        ),
        ("sede = 1\n", "unknown config key 'sede'; did you mean 'seed'?"),
        (
            "[gans]\nepochs = 3\n",
            "unknown config section [gans]; expected [synthetic], "
            "[regressor], [gan], [eval]",
        ),
        ("gan = 3\n", "'gan' must be a table ([gan]), got int"),
        ('[gan]\nepochs = "3"\n', "'gan.epochs' must be int, got '3'"),
        ("[eval]\ntstr = 1\n", "'eval.tstr' must be bool, got 1"),
        ('[gan]\nbeta1 = "half"\n', "'gan.beta1' must be float, got 'half'"),
        ("seed = \n", "not valid TOML"),
    ],
)
def test_bad_config_files_name_file_and_key(tmp_path, capsys, content, message):
    path = tmp_path / "typo.toml"
    path.write_text(content)
    assert cli.main(["train", "--config", str(path), "--print-config"]) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"ratinggan: error: {path}: ")
    assert message in error
    assert error.count("\n") == 1 and "Traceback" not in error


def test_missing_config_file_is_one_line():
    result = _run("config", "--config", "missing.toml")
    assert result.returncode == 1
    assert result.stderr == (
        "ratinggan: error: missing.toml: no such config file\n"
    )
    assert result.stdout == ""


def test_help_shows_examples(capsys):
    for command in ("config", "train"):
        with pytest.raises(SystemExit) as exit_info:
            cli.main([command, "--help"])
        assert exit_info.value.code == 0
        text = capsys.readouterr().out
        assert "--config FILE" in text
        assert "ratinggan config > my.toml" in text
