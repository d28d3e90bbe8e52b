"""The Python API end to end and ``ratinggan sample`` on one tiny run.

One synthetic run is trained once (through ``ratinggan.train``) and shared
by every test here; the CLI is driven as a user would, by subprocess.
"""

import importlib.util
import json
import shlex
import struct
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import ratinggan
from ratinggan import cli, run, sampling

HAS_TENSORBOARDX = importlib.util.find_spec("tensorboardX") is not None

TINY = {
    "synthetic": {"num_users": 40, "num_items": 50, "num_ratings": 800},
    "regressor": {"model": "linear", "epochs": 2, "batch_size": 64},
    "gan": {
        "epochs": 1,
        "batch_size": 64,
        "critic_steps": 1,
        "hidden_dim": 16,
        "pretrain_steps": 0,
    },
    "eval": {"tstr": False, "c2st_max_pairs": 200},
    "checkpoint": {"every_steps": 0},
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """``(workdir, model, split)`` of one tiny synthetic run."""
    workdir = tmp_path_factory.mktemp("api") / "run"
    config = ratinggan.make_config(**TINY)
    model = ratinggan.train(
        config, workdir, progress=False, tensorboard=HAS_TENSORBOARDX
    )
    assert model.finished and model.config == config
    return workdir, model, ratinggan.load_dataset(config)


def _sample(*args, check=True):
    result = subprocess.run(
        [sys.executable, "-m", "ratinggan", "sample", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


# ---------------------------------------------------------------- API ----


def test_make_config_and_load_dataset():
    config = ratinggan.make_config(**TINY)
    assert config.gan.critic_steps == 1 and config.gan.noise_dim == 16
    split = ratinggan.load_dataset("synthetic", synthetic=TINY["synthetic"])
    assert len(split.train) + len(split.test) == 800
    same = ratinggan.load_dataset(config)
    np.testing.assert_array_equal(same.train.users, split.train.users)
    with pytest.raises(ValueError, match="gan.epoch"):
        ratinggan.make_config(gan={"epoch": 3})


def test_recommend_ranks_unseen_movies(trained):
    _, model, split = trained
    user = int(split.train.users[0])
    top = model.recommend(user, k=5)

    seen = set(split.train.items[split.train.users == user].tolist())
    assert len(top) == 5 and not seen & set(top["movie"].tolist())
    scores = top["predicted_rating"].to_numpy()
    assert np.all(np.diff(scores) <= 0)

    # The NumPy reference: every unseen movie's prediction, best five.
    unseen = np.array(sorted(set(range(50)) - seen))
    predicted = model.predict(np.full(len(unseen), user), unseen)
    np.testing.assert_allclose(scores, np.sort(predicted)[::-1][:5], rtol=1e-6)
    np.testing.assert_array_equal(
        top["movie_id"], model.dataset.item_ids[top["movie"]]
    )

    by_id = model.recommend(int(model.dataset.user_ids[user]), 5, raw_ids=True)
    pd.testing.assert_frame_equal(by_id, top)
    with pytest.raises(ValueError, match="unknown user ID 999"):
        model.recommend(999, raw_ids=True)
    with pytest.raises(ValueError, match="outside 0..39"):
        model.recommend(40)


def test_distribution_and_sample_dataset(trained):
    _, model, split = trained
    probs = model.distribution([0, 1, 2], [3, 4, 5])
    assert probs.shape == (3, 5)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)

    table = model.sample_dataset(seed=3)
    assert len(table) == len(split.train)
    np.testing.assert_array_equal(table["user"], split.train.users)
    np.testing.assert_array_equal(table["movie"], split.train.items)
    np.testing.assert_array_equal(table["timestamp"], split.train.timestamps)
    assert set(table["rating"]) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    again = model.sample_dataset(seed=3)
    np.testing.assert_array_equal(again["rating"], table["rating"])
    assert not np.array_equal(
        model.sample_dataset(seed=4)["rating"], table["rating"]
    )

    some = model.sample_dataset([1, 2], [7, 9], raw_ids=True)
    np.testing.assert_array_equal(some["user"], [0, 1])
    np.testing.assert_array_equal(some["movie_id"], [7, 9])
    assert (some["timestamp"] == 0).all()


# ---------------------------------------------------------- TensorBoard ----


def _tfrecords(path):
    """The payloads of a TFRecord file (length, CRC, data, CRC)."""
    data = path.read_bytes()
    at = 0
    while at < len(data):
        (length,) = struct.unpack("<Q", data[at : at + 8])
        yield data[at + 12 : at + 12 + length]
        at += 12 + length + 4


@pytest.mark.skipif(not HAS_TENSORBOARDX, reason="tensorboard extra absent")
def test_tensorboard_scalars_match_metrics_jsonl(trained):
    from tensorboardX.proto.event_pb2 import Event

    workdir = trained[0]
    scalars = {}
    for path in (workdir / "tensorboard").iterdir():
        for payload in _tfrecords(path):
            event = Event.FromString(payload)
            for value in event.summary.value:
                scalars[(value.tag, event.step)] = value.simple_value
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    for record in records:
        tag = f"{record['phase']}/validation_rmse"
        if record["phase"] == "gan":
            tag = f"{record['phase']}/critic_loss"
        name = tag.split("/")[1]
        assert scalars[(tag, record["step"])] == pytest.approx(
            record[name], rel=1e-6
        )


def test_tensorboard_without_the_extra_says_how_to_install(
    tmp_path, monkeypatch
):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    with pytest.raises(ValueError, match=r"ratinggan\[tensorboard\]"):
        run.train_and_evaluate(ratinggan.Config(), tmp_path, tensorboard=True)
    assert not any(tmp_path.iterdir())


# ---------------------------------------------------------------- CLI ----


def test_sample_command_writes_training_pairs(trained, tmp_path):
    workdir, model, split = trained
    out = tmp_path / "synthetic-copy"
    result = _sample("--workdir", workdir, "--out", out, "--seed", 5)
    assert f"{len(split.train)} ratings" in result.stdout
    assert [p.name for p in out.iterdir()] == ["ratings.csv"]

    written = pd.read_csv(out / "ratings.csv")
    assert list(written.columns) == ["userId", "movieId", "rating", "timestamp"]
    ids = model.dataset
    np.testing.assert_array_equal(
        written["userId"], ids.user_ids[split.train.users]
    )
    np.testing.assert_array_equal(
        written["movieId"], ids.item_ids[split.train.items]
    )
    np.testing.assert_array_equal(written["timestamp"], split.train.timestamps)
    assert set(written["rating"]) <= {1, 2, 3, 4, 5}
    np.testing.assert_array_equal(
        written["rating"], model.sample_dataset(seed=5)["rating"]
    )


def test_sample_command_rates_a_pairs_file(trained, tmp_path, capsys):
    workdir = trained[0]
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("userId,movieId\n# a comment\n3,10\n\n4\t11\n3::12\n")
    argv = ["sample", "--workdir", workdir, "--pairs", pairs, "--quiet"]
    assert cli.main([*map(str, argv), "--out", str(tmp_path)]) == 0
    assert capsys.readouterr().out == ""
    written = pd.read_csv(tmp_path / "ratings.csv")
    assert written["userId"].tolist() == [3, 4, 3]
    assert written["movieId"].tolist() == [10, 11, 12]
    assert (written["timestamp"] == 0).all()


def test_sample_help_errors_are_one_clear_line(trained, tmp_path, capsys):
    """Each error example of ``sample --help`` ends in one line, exit 1."""
    workdir = trained[0]
    (tmp_path / "bad.csv").write_text("1,2\n3\n")
    (tmp_path / "strangers.csv").write_text("1,2\n# fine so far\n4000,2\n")
    expected = {
        "runs/missing": "no such work directory",
        "nofile.csv": "no such pairs file",
        "bad.csv": "bad.csv, line 2: expected USER,MOVIE, got '3'",
        "strangers.csv": "strangers.csv, line 3: unknown user ID '4000'",
    }
    errors = cli.SAMPLE_EXAMPLES.split("errors:\n")[1].strip().splitlines()
    assert len(errors) == len(expected)
    for line in errors:
        words = shlex.split(line.split("#")[0])[1:]
        words = [
            str(workdir)
            if w == "runs/u1"
            else str(tmp_path / w)
            if w.endswith((".csv", "missing"))
            else w
            for w in words
        ]
        assert cli.main(words) == 1, line
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("ratinggan: error: ")
        assert any(text in err[0] for key, text in expected.items()), err


def test_sample_command_error_by_subprocess_has_no_traceback(tmp_path):
    result = _sample("--workdir", tmp_path / "nowhere", check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"ratinggan: error: {tmp_path / 'nowhere'}: no such work directory"
    )


# ---------------------------------------------------------- layouts ----


@pytest.mark.parametrize(
    "dataset, name, first",
    [
        ("ml-100k", "u.data", "7\t3\t4\t881250949\n"),
        ("ml-1m", "ratings.dat", "7::3::4::881250949\n"),
        ("ml-10m", "ratings.dat", "7::3::4::881250949\n"),
        ("ml-latest-small", "ratings.csv", "7,3,4.0,881250949\n"),
        ("mine.csv", "ratings.csv", "7,3,4,881250949\n"),
    ],
)
def test_ratings_file_layouts(tmp_path, dataset, name, first):
    table = pd.DataFrame(
        {
            "user_id": [7, 8],
            "movie_id": [3, 5],
            "rating": np.array([4.0, 2.5], np.float32),
            "timestamp": [881250949, 0],
        }
    )
    path = sampling.write_ratings(table, dataset, tmp_path)
    assert path.name == name and [p.name for p in tmp_path.iterdir()] == [name]
    lines = path.read_text().splitlines(keepends=True)
    header = name == "ratings.csv"
    if header:
        assert lines[0] == "userId,movieId,rating,timestamp\n"
    assert lines[int(header)] == first
    assert len(lines) == 2 + header
