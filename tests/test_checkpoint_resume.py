"""Training processes killed, stopped and restarted end as if never stopped.

Every run here is a subprocess of ``ratinggan train`` on 2 fake CPU
devices (4 if this process has 2), on a tiny synthetic dataset: the
regressor takes 26 steps an epoch for 3 epochs (steps 1..78), the GAN 13
steps an epoch for 3 epochs (steps 79..117); a checkpoint is due every 10
steps. A small wrapper
(``CHILD``) can hold a process still at a chosen point, so that the test
kills it exactly there: after the piece that ends at a given step, or in
the middle of writing a checkpoint. The processes share a persistent
compilation cache, so only the first one compiles.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from ratinggan import cli, trained

ROOT = Path(__file__).resolve().parents[1]
FLAGS = [
    "--synthetic.num-users",
    "60",
    "--synthetic.num-items",
    "80",
    "--synthetic.num-ratings",
    "2000",
    "--regressor.model",
    "factor",
    "--regressor.epochs",
    "3",
    "--regressor.batch-size",
    "64",
    "--regressor.embed-dim",
    "8",
    "--gan.epochs",
    "3",
    "--gan.batch-size",
    "64",
    "--gan.critic-steps",
    "2",
    "--gan.hidden-dim",
    "16",
    "--gan.embed-dim",
    "8",
    "--checkpoint.every-steps",
    "10",
    "--checkpoint.keep",
    "3",
]
TOTAL_STEPS = 117
# Another device count than this process has, to load across counts.
CHILD_DEVICES = 4 if jax.device_count() == 2 else 2

# Runs ``ratinggan`` with optional holds. RG_HOLD_AT_STEP: before deciding
# on a save after the piece that reaches that step, write RG_MARKER and
# wait for SIGTERM/SIGINT (or a kill). RG_HOLD_IN_SAVE: while writing the
# JSON item of the checkpoint of that step or later, write RG_MARKER and
# hang.
CHILD = """
import os, sys, time
from pathlib import Path
import orbax.checkpoint as ocp
from ratinggan import cli, run

marker = Path(os.environ.get("RG_MARKER", "unused"))
hold_at = int(os.environ.get("RG_HOLD_AT_STEP", "-1"))
hold_in_save = int(os.environ.get("RG_HOLD_IN_SAVE", "-1"))
after_piece = run.Session.after_piece
json_save = ocp.JsonCheckpointHandler.async_save

def held_after_piece(self):
    if 0 <= hold_at <= self.position.step:
        marker.write_text(str(self.position.step))
        while self.stop.requested is None:
            time.sleep(0.01)
    after_piece(self)

async def held_json_save(self, directory, *args, **kwargs):
    step = int(Path(directory).parent.name.split(".")[0])
    if 0 <= hold_in_save <= step:
        marker.write_text(str(Path(directory).parent))
        time.sleep(600)
    return await json_save(self, directory, *args, **kwargs)

run.Session.after_piece = held_after_piece
ocp.JsonCheckpointHandler.async_save = held_json_save
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def child_env(tmp_path_factory):
    cache = tmp_path_factory.mktemp("jax-cache")
    env = dict(os.environ)
    env.update(
        PYTHONPATH=str(ROOT),
        XLA_FLAGS=f"--xla_force_host_platform_device_count={CHILD_DEVICES}",
        JAX_PLATFORMS="cpu",
        JAX_COMPILATION_CACHE_DIR=str(cache),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
    )
    return env


def _start(env, workdir, *extra, **holds) -> subprocess.Popen:
    env = dict(env)
    for name, value in holds.items():
        env[f"RG_{name.upper()}"] = str(value)
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            CHILD,
            "train",
            "--workdir",
            str(workdir),
            *FLAGS,
            *extra,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(process, timeout=600) -> tuple[int, str]:
    _, stderr = process.communicate(timeout=timeout)
    return process.returncode, stderr


def _wait_for(marker: Path, process, timeout=600) -> str:
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if process.poll() is not None:
            code, stderr = _finish(process)
            pytest.fail(f"the run ended ({code}) before holding:\n{stderr}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("the run never reached its hold")
        time.sleep(0.05)
    time.sleep(0.05)  # the marker's text is written
    return marker.read_text()


def _kill(process, signum=signal.SIGKILL) -> tuple[int, str]:
    process.send_signal(signum)
    return _finish(process)


def _steps(workdir: Path) -> list[int]:
    return sorted(
        int(path.name)
        for path in (workdir / "checkpoints").iterdir()
        if path.name.isdigit()
    )


def _report(workdir: Path) -> dict:
    report = json.loads((workdir / "report.json").read_text())
    report.pop("seconds")
    report.pop("report_seconds", None)
    return report


def _assert_same_run(workdir: Path, reference: Path) -> None:
    """Same report, same metrics log, bitwise the same final arrays."""
    assert _report(workdir) == _report(reference)
    assert (workdir / "metrics.jsonl").read_text() == (
        reference / "metrics.jsonl"
    ).read_text()
    resumed, uninterrupted = trained.load(workdir), trained.load(reference)
    assert resumed.step == uninterrupted.step == TOTAL_STEPS
    for name in ("regressor", "gan"):
        arrays = jax.tree.leaves(getattr(resumed, name))
        expected = jax.tree.leaves(getattr(uninterrupted, name))
        assert len(arrays) == len(expected)
        for array, want in zip(arrays, expected, strict=True):
            np.testing.assert_array_equal(array, want)


@pytest.fixture(scope="module")
def reference(child_env, tmp_path_factory) -> Path:
    """An uninterrupted run."""
    workdir = tmp_path_factory.mktemp("reference")
    code, stderr = _finish(_start(child_env, workdir))
    assert code == 0, stderr
    assert _steps(workdir) == [100, 110, TOTAL_STEPS]
    return workdir


def test_killed_and_stopped_run_ends_as_if_never_stopped(
    child_env, reference, tmp_path
):
    workdir, marker = tmp_path / "run", tmp_path / "marker"

    # SIGKILL after regressor step 26 (end of epoch 0): steps 21..26 are
    # lost; the checkpoint at 20 is mid-epoch.
    process = _start(child_env, workdir, marker=marker, hold_at_step=21)
    assert _wait_for(marker, process) == "26"
    assert _kill(process)[0] == -signal.SIGKILL
    assert _steps(workdir) == [10, 20]
    marker.unlink()

    # SIGKILL while the checkpoint of step 40 is being written.
    process = _start(child_env, workdir, marker=marker, hold_in_save=40)
    held = _wait_for(marker, process)
    assert Path(held).name.startswith("40.orbax-checkpoint-tmp")
    assert _kill(process)[0] == -signal.SIGKILL
    assert Path(held).exists()
    assert _steps(workdir) == [10, 20, 30]
    marker.unlink()

    # SIGTERM in the GAN phase (after step 90): saves, exits cleanly.
    process = _start(child_env, workdir, marker=marker, hold_at_step=85)
    assert _wait_for(marker, process) == "90"
    code, stderr = _kill(process, signal.SIGTERM)
    assert code == 128 + signal.SIGTERM, stderr
    assert "resuming from the checkpoint at step 30" in stderr
    assert "unfinished save of step 40" in stderr
    assert "stopped by SIGTERM after saving the checkpoint at step 90" in (
        stderr
    )
    assert "Traceback" not in stderr
    assert _steps(workdir) == [70, 80, 90]
    assert not any(
        "tmp" in path.name for path in (workdir / "checkpoints").iterdir()
    )
    assert not (workdir / "report.json").exists()

    code, stderr = _finish(_start(child_env, workdir))
    assert code == 0, stderr
    assert "resuming from the checkpoint at step 90 (gan epoch 0, step 12)" in (
        stderr
    )
    _assert_same_run(workdir, reference)


def test_truncated_newest_checkpoint_falls_back_to_the_previous(
    child_env, reference, tmp_path
):
    workdir = tmp_path / "run"
    shutil.copytree(reference, workdir)
    # Every file of the arrays cut in half: Orbax keeps some files that a
    # restore never reads, so cutting one file alone may harm nothing.
    newest = workdir / "checkpoints" / str(TOTAL_STEPS) / "state"
    for path in newest.rglob("*"):
        if path.is_file():
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    (workdir / "report.json").unlink()

    code, stderr = _finish(_start(child_env, workdir))
    assert code == 0, stderr
    assert f"checkpoint at step {TOTAL_STEPS} is unreadable" in stderr
    assert "resuming from the checkpoint at step 110" in stderr
    (aside,) = (workdir / "corrupt-checkpoints").iterdir()
    assert aside.name.startswith(f"{TOTAL_STEPS}-")
    _assert_same_run(workdir, reference)


def test_nan_stops_the_run_and_keeps_the_last_checkpoint(child_env, tmp_path):
    workdir = tmp_path / "run"
    process = _start(child_env, workdir, "--gan.critic-learning-rate", "nan")
    code, stderr = _finish(process)

    assert code == 1, stderr
    # The first GAN step is 79; its second critic update sees NaN weights.
    assert "gan step 79: non-finite" in stderr
    assert "critic_loss" in stderr and ".critic.params" in stderr
    assert "the last good checkpoint is step 70" in stderr
    assert _steps(workdir) == [50, 60, 70]
    model = trained.load(workdir)
    assert model.step == 70 and not model.finished
    leaves = jax.tree.leaves((model.regressor, model.gan))
    assert all(np.all(np.isfinite(leaf)) for leaf in leaves)


def test_other_config_is_refused_and_restart_sets_the_run_aside(
    child_env, reference, tmp_path
):
    workdir, marker = tmp_path / "run", tmp_path / "marker"
    shutil.copytree(reference, workdir)

    code, stderr = _finish(_start(child_env, workdir, "--seed", "1"))
    assert code == 1
    assert "holds a run with another config (seed: 0 -> 1)" in stderr
    assert "--restart" in stderr

    process = _start(
        child_env,
        workdir,
        "--seed",
        "1",
        "--restart",
        marker=marker,
        hold_at_step=1,
    )
    assert _wait_for(marker, process) == "10"  # started again from 0
    _kill(process)
    (aside,) = workdir.glob("replaced-*")
    assert sorted(path.name for path in aside.iterdir()) == [
        "checkpoints",
        "config.json",
        "metrics.jsonl",
        "report.json",
    ]
    assert json.loads((workdir / "config.json").read_text())["seed"] == 1


def test_evaluate_loads_on_another_device_count(reference, tmp_path, capsys):
    assert jax.device_count() != CHILD_DEVICES
    output = tmp_path / "evaluation.json"
    code = cli.main(
        ["evaluate", "--workdir", str(reference), "--output", str(output)]
    )
    assert code == 0
    assert "generator" in capsys.readouterr().out

    evaluation = json.loads(output.read_text())
    saved = _report(reference)
    assert evaluation["step"] == TOTAL_STEPS
    for model, row in saved["rows"].items():
        for name, value in row.items():
            np.testing.assert_allclose(
                evaluation["rows"][model][name],
                value,
                rtol=1e-4,
                atol=1e-4,
                err_msg=f"{model} {name}",
            )

    model = trained.load(reference)
    test = model.data.split.test
    predictions = model.predict(test.users, test.items)
    rmse = np.sqrt(np.mean((predictions - test.ratings) ** 2))
    assert rmse == pytest.approx(saved["rows"]["regressor"]["rmse"], rel=1e-5)
    probs = model.distribution(test.users[:5], test.items[:5], draws=4)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    samples = model.sample(test.users, test.items, jax.random.key(0))
    assert set(np.unique(samples)) <= set(model.dataset.levels)


def test_evaluate_without_checkpoints_is_one_clear_line(tmp_path, capsys):
    assert cli.main(["evaluate", "--workdir", str(tmp_path)]) == 1
    error = capsys.readouterr().err
    assert error.startswith("ratinggan: error: no checkpoints in")
    assert "Traceback" not in error
