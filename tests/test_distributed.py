"""Multi-process runs: start-up from the environment, and two processes on
127.0.0.1 (gloo CPU collectives) against one.

The two processes are this file run as a script; each has 2 CPU devices,
so the mesh spans 4 devices in 2 processes. Their work directory is then
loaded in this process, on its own devices.
"""

import contextlib
import dataclasses
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import ratinggan
from ratinggan import distributed, evaluate, run, sharding
from ratinggan.data import make_synthetic

sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_sharding  # noqa: E402  (its tiny config and epoch helper)

CONFIG = test_sharding.config_lib.override(
    test_sharding.TINY, {"regressor.epochs": 2, "gan.epochs": 1}
)
REPORT_ROWS = ("regressor", "generator")


# --------------------------------------------------- settings from env ----


def test_no_variables_means_one_process(monkeypatch):
    def refuse(**_):
        raise AssertionError("initialize must not be called")

    monkeypatch.setattr(jax.distributed, "initialize", refuse)
    assert distributed.settings_from_environment({}) is None
    assert distributed.initialize_from_environment({"HOME": "/"}) is False


def test_variables_become_initialize_arguments(monkeypatch):
    calls = []
    monkeypatch.setattr(jax.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(
        jax.distributed, "initialize", lambda **kw: calls.append(kw)
    )
    environ = {
        "JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234",
        "JAX_NUM_PROCESSES": "4",
        "JAX_PROCESS_ID": "3",
    }
    assert distributed.initialize_from_environment(environ) is True
    assert calls == [
        {
            "coordinator_address": "10.0.0.1:1234",
            "num_processes": 4,
            "process_id": 3,
        }
    ]


def test_unset_count_and_id_are_left_to_cluster_detection():
    settings = distributed.settings_from_environment(
        {"JAX_COORDINATOR_ADDRESS": "head:1234"}
    )
    assert settings == {
        "coordinator_address": "head:1234",
        "num_processes": None,
        "process_id": None,
    }


@pytest.mark.parametrize(
    "environ, message",
    [
        ({"JAX_NUM_PROCESSES": "two"}, "JAX_NUM_PROCESSES='two' is not an"),
        ({"JAX_NUM_PROCESSES": "0"}, "JAX_NUM_PROCESSES=0 must be at least"),
        (
            {"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "2"},
            r"JAX_PROCESS_ID=2 must lie in 0\.\.1",
        ),
    ],
)
def test_bad_variables_are_named(environ, message):
    with pytest.raises(ValueError, match=message):
        distributed.settings_from_environment(environ)


# ------------------------------------------------------- two processes ----


def _report_numbers(report) -> dict:
    return {row: report["rows"][row] for row in REPORT_ROWS}


def _gan_epoch_params(mesh):
    split = make_synthetic(num_users=40, num_items=60, num_ratings=1200, seed=1)
    state = test_sharding._train_epochs(split, mesh, "gan", epochs=1)[0]
    return {
        "critic": jax.tree.map(np.asarray, state.critic.params),
        "generator": jax.tree.map(np.asarray, state.generator.params),
    }


def _named_params(regressor, gan) -> dict[str, np.ndarray]:
    """The parameters a trained model predicts and samples with, by path."""
    trees = {
        "regressor": regressor.params,
        "generator": gan.generator.params,
        "critic": gan.critic.params,
    }
    return {
        jax.tree_util.keystr(path): np.asarray(leaf)
        for path, leaf in jax.tree_util.tree_flatten_with_path(trees)[0]
    }


@contextlib.contextmanager
def _recording(module, name: str, record):
    """Calls ``record(*args)`` before each call of ``module.name``."""
    original = getattr(module, name)

    def recorded(*args, **kwargs):
        record(*args)
        return original(*args, **kwargs)

    setattr(module, name, recorded)
    try:
        yield
    finally:
        setattr(module, name, original)


def _worker(out: Path) -> None:
    """One of the two processes: a whole run, then a GAN epoch.

    Both processes share one work directory, as hosts of one job share a
    file system: Orbax's saves are collective over it. The run's final
    parameters (those its report is computed from) and the files each
    process writes through ``evaluate``'s atomic writes are recorded.
    """
    assert distributed.initialize_from_environment()
    index = jax.process_index()
    final, wrote = {}, []
    with (
        _recording(
            evaluate,
            "build_report",
            lambda config, split, regressor, gan, *_: final.update(
                _named_params(regressor, gan)
            ),
        ),
        _recording(
            evaluate,
            "write_text_atomic",
            lambda path, *_: wrote.append(Path(path).name),
        ),
    ):
        report = run.train_and_evaluate(CONFIG, out / "run", False)
    params = _gan_epoch_params(sharding.make_mesh())
    if index == 0:
        leaves = jax.tree.leaves(params)
        np.savez(out / "gan_params.npz", *leaves)
        np.savez(out / "final_params.npz", **final)
    summary = {
        "process": index,
        "processes": jax.process_count(),
        "devices": jax.device_count(),
        "report": _report_numbers(report),
        "wrote": wrote,
    }
    (out / f"summary{index}.json").write_text(json.dumps(summary))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("two_processes")
    port = _free_port()
    workers = []
    for index in range(2):
        env = dict(
            os.environ,
            XLA_FLAGS="--xla_force_host_platform_device_count=2",
            JAX_PLATFORMS="cpu",
            JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
            JAX_NUM_PROCESSES="2",
            JAX_PROCESS_ID=str(index),
            PYTHONPATH=str(Path(__file__).resolve().parents[1]),
        )
        workers.append(
            subprocess.Popen(
                [sys.executable, __file__, str(out)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    try:
        logs = [worker.communicate(timeout=600)[0] for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    for index, worker in enumerate(workers):
        assert worker.returncode == 0, (
            f"process {index}:\n{logs[index][-4000:]}"
        )
    return out


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """The run's report numbers, a GAN epoch's parameters, and the run's
    final (regressor, GAN) states."""
    workdir = tmp_path_factory.mktemp("one_process")
    final = []
    with _recording(
        evaluate,
        "build_report",
        lambda config, split, regressor, gan, *_: final.extend(
            [regressor, gan]
        ),
    ):
        report = run.train_and_evaluate(CONFIG, workdir, progress=False)
    mesh = sharding.make_mesh(jax.devices()[:1])
    return _report_numbers(report), _gan_epoch_params(mesh), tuple(final)


def _summary(out: Path, index: int) -> dict:
    return json.loads((out / f"summary{index}.json").read_text())


def test_two_processes_share_one_mesh(two_processes):
    for index in range(2):
        summary = _summary(two_processes, index)
        assert summary["process"] == index
        assert summary["processes"] == 2
        assert summary["devices"] == 4


def test_only_process_zero_writes(two_processes):
    written = {p.name for p in (two_processes / "run").iterdir()}
    assert {"config.json", "metrics.jsonl", "report.json"} <= written
    assert "checkpoints" in written
    # A second writer would have appended every metrics line twice.
    phases = [
        json.loads(line)["phase"]
        for line in (two_processes / "run" / "metrics.jsonl").open()
    ]
    assert phases == ["regressor", "regressor", "gan"]  # no line twice
    assert {"config.json", "report.json", "report.md"} <= set(
        _summary(two_processes, 0)["wrote"]
    )
    assert _summary(two_processes, 1)["wrote"] == []


def test_both_processes_get_the_same_report(two_processes):
    assert (
        _summary(two_processes, 0)["report"]
        == _summary(two_processes, 1)["report"]
    )


def test_two_processes_match_one_regressor(two_processes, one_process):
    expected, _, _ = one_process
    got = _summary(two_processes, 0)["report"]["regressor"]
    for name, value in expected["regressor"].items():
        assert got[name] == pytest.approx(value, rel=1e-5, nan_ok=True), name


def test_two_processes_match_one_gan_epoch(two_processes, one_process):
    _, expected, _ = one_process
    stored = np.load(two_processes / "gan_params.npz")
    got = [stored[f"arr_{i}"] for i in range(len(stored.files))]
    leaves = jax.tree.leaves(expected)
    assert len(got) == len(leaves)
    for a, b in zip(leaves, got, strict=True):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-5)


def test_two_processes_match_one_generator_report(two_processes, one_process):
    # Adam's near-zero-gradient steps (see test_sharding._with_sgd) let the
    # GAN parameters drift by up to ~1e-3 between device counts; the scores
    # computed from them move by less than this.
    expected, _, _ = one_process
    got = _summary(two_processes, 0)["report"]["generator"]
    for name in ("nll", "rps"):
        assert got[name] == pytest.approx(expected["generator"][name], 1e-2)


# ------------------------------------ their checkpoint in one process ----


@pytest.fixture(scope="module")
def loaded(two_processes) -> ratinggan.TrainedModel:
    return ratinggan.load(two_processes / "run")


def test_two_process_checkpoint_loads_in_one(two_processes, loaded):
    assert jax.process_count() == 1
    assert loaded.finished
    assert loaded.regressor.params is not None
    stored = np.load(two_processes / "final_params.npz")
    got = _named_params(loaded.regressor, loaded.gan)
    assert sorted(got) == sorted(stored.files)
    for name, value in got.items():
        np.testing.assert_array_equal(value, stored[name], err_msg=name)


def test_two_process_checkpoint_matches_one_process_run(loaded, one_process):
    # The regressor and the generator's average agree to rounding; Adam lets
    # the critic drift by up to about one learning-rate step (README).
    regressor, gan = one_process[2]
    expected = _named_params(regressor, gan)
    got = _named_params(loaded.regressor, loaded.gan)
    critic_step = CONFIG.gan.critic_learning_rate
    for name, value in got.items():
        atol = critic_step if name.startswith("['critic']") else 1e-5
        np.testing.assert_allclose(value, expected[name], atol=atol, rtol=0)

    users, items = np.arange(10), np.arange(10, 20)
    predictions = loaded.predict(users, items)
    levels = loaded.dataset.levels
    assert np.all((levels[0] <= predictions) & (predictions <= levels[-1]))
    alone = dataclasses.replace(loaded, regressor=regressor)
    np.testing.assert_allclose(
        predictions, alone.predict(users, items), atol=1e-5, rtol=0
    )


if __name__ == "__main__":
    _worker(Path(sys.argv[1]))
