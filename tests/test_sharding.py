"""Data parallelism: 1 device against 8, compiled program, data layout.

XLA_FLAGS must be set before JAX starts and the rest of the suite runs on
one device, so the 8-device measurements run once in a subprocess (this file
run as a script) that prints them as JSON; the tests below judge them.
"""

import functools
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import jax
import numpy as np
import optax
import pytest

from ratinggan import config as config_lib
from ratinggan import run, sharding, training
from ratinggan.data import make_synthetic

DEVICES = 8
REGRESSOR_BATCH = 96  # 12 rows a device: a shape no other array has.
GAN_BATCH = 32
TINY = config_lib.override(
    config_lib.Config(),
    {
        "synthetic.num_users": 40,
        "synthetic.num_items": 60,
        "synthetic.num_ratings": 1200,
        "regressor.model": "factor",
        "regressor.batch_size": REGRESSOR_BATCH,
        "regressor.embed_dim": 8,
        "gan.batch_size": GAN_BATCH,
        "gan.critic_steps": 2,
        "gan.embed_dim": 8,
        "gan.hidden_dim": 24,
        "gan.noise_dim": 4,
    },
)
EPOCH_ROWS = 640  # Rows per epoch: ten steps of each kind.


# ------------------------------------------------------------ worker ----


def _max_difference(first, second) -> float:
    differences = jax.tree.map(
        lambda a, b: float(np.max(np.abs(np.asarray(a) - np.asarray(b)))),
        first,
        second,
    )
    return max(jax.tree.leaves(differences))


def _collectives(hlo: str) -> dict[str, int]:
    return {
        name: len(re.findall(rf"\b{name}(?:-start)?\(", hlo))
        for name in ("all-reduce", "all-gather", "all-to-all")
    }


def _with_sgd(state, learning_rate: float = 0.05):
    """The state with plain SGD in place of Adam.

    The GAN comparison needs it: Adam's first steps move a parameter by
    about ``lr * g / (|g| + eps)``, so a gradient that is near zero in
    exact arithmetic (some GAN gradients are) takes its size and sign from
    rounding, which the order of summation on 8 devices changes; measured
    here, Adam runs differ by up to 3e-3 where SGD runs differ by 1e-7. SGD
    passes gradients through unscaled, so the comparison measures the
    data-parallel gradients themselves.
    """
    tx = optax.sgd(learning_rate)
    return state.replace(tx=tx, opt_state=jax.jit(tx.init)(state.params))


def _train_epochs(split, mesh, kind: str, epochs: int = 2):
    """Trains ``epochs`` epochs on ``mesh``; returns (state, metrics, epoch
    function, compiled program text)."""
    tables = training.device_tables(split.dataset, mesh)
    ratings = training.device_ratings(split.train, split.dataset, mesh)
    if kind == "regressor":
        state = training.create_regressor_state(
            TINY.regressor, split.dataset, 3.5, jax.random.key(0), mesh
        )
        step = functools.partial(training.regressor_step, l2=0.01)
        epoch_fn = training.make_epoch(step, mesh, EPOCH_ROWS, REGRESSOR_BATCH)
    else:
        state = training.create_gan_state(
            TINY.gan, split.dataset, jax.random.key(0), mesh
        )
        state = state.replace(
            generator=_with_sgd(state.generator),
            critic=_with_sgd(state.critic),
        )
        step = functools.partial(training.gan_step, config=TINY.gan)
        epoch_fn = training.make_epoch(
            step, mesh, EPOCH_ROWS, GAN_BATCH, group=TINY.gan.critic_steps
        )
    hlo = (
        epoch_fn.lower(state, tables, ratings, jax.random.key(9))
        .compile()
        .as_text()
    )
    for epoch in range(epochs):
        state, metrics = epoch_fn(state, tables, ratings, jax.random.key(epoch))
    return state, jax.tree.map(float, metrics), epoch_fn, hlo


def _measure() -> dict:
    """Everything the tests check, measured on 1 and on 8 devices."""
    split = make_synthetic(num_users=40, num_items=60, num_ratings=1200, seed=1)
    one, all_devices = (
        sharding.make_mesh(jax.devices()[:1]),
        sharding.make_mesh(),
    )
    found = {"devices": jax.device_count()}

    for kind in ("regressor", "gan"):
        single, single_metrics, _, _ = _train_epochs(split, one, kind)
        multi, multi_metrics, epoch_fn, hlo = _train_epochs(
            split, all_devices, kind
        )
        if kind == "regressor":
            parts = {"regressor": (single.params, multi.params)}
        else:
            parts = {
                "critic": (single.critic.params, multi.critic.params),
                "generator": (single.generator.params, multi.generator.params),
            }
        for name, (a, b) in parts.items():
            found[f"{name}_difference"] = _max_difference(a, b)
            found[f"{name}_scale"] = max(
                float(np.max(np.abs(leaf))) for leaf in jax.tree.leaves(a)
            )
        found[f"{kind}_metrics"] = [single_metrics, multi_metrics]
        found[f"{kind}_compilations"] = epoch_fn._cache_size()
        found[f"{kind}_collectives"] = _collectives(hlo)
        found[f"{kind}_dot_shapes"] = re.findall(
            r"= f32\[([\d,]*)\]\{[^}]*\} dot\(", hlo
        )
        found[f"{kind}_float_gathers"] = re.findall(
            r"= (f32\[[\d,]*\])\S* all-gather", hlo
        )

    ratings = training.device_ratings(split.train, split.dataset, all_devices)
    found["table_rows"] = len(split.train)
    found["shard_rows"] = sorted(
        {shard.data.shape[0] for shard in ratings["users"].addressable_shards}
    )

    with tempfile.TemporaryDirectory() as workdir:
        bad = config_lib.override(TINY, {"gan.batch_size": 36})
        try:
            run.train_and_evaluate(bad, Path(workdir) / "run", progress=False)
            found["refusal"] = None
        except ValueError as error:
            found["refusal"] = str(error)
        found["refused_run_wrote"] = os.path.exists(Path(workdir) / "run")
    return found


# ------------------------------------------------------------- tests ----


@pytest.fixture(scope="module")
def eight_devices() -> dict:
    env = dict(
        os.environ,
        XLA_FLAGS=f"--xla_force_host_platform_device_count={DEVICES}",
        JAX_PLATFORMS="cpu",
        PYTHONPATH=str(Path(__file__).resolve().parents[1]),
    )
    result = subprocess.run(
        [sys.executable, __file__],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_runs_on_eight_devices(eight_devices):
    assert eight_devices["devices"] == DEVICES


@pytest.mark.parametrize("network", ["regressor", "critic", "generator"])
def test_eight_devices_give_the_one_device_parameters(eight_devices, network):
    # Float rounding only: the sums run in a different order.
    difference = eight_devices[f"{network}_difference"]
    assert eight_devices[f"{network}_scale"] > 0.01
    assert difference < 1e-5, f"{network} parameters differ by {difference}"


@pytest.mark.parametrize("kind", ["regressor", "gan"])
def test_eight_devices_give_the_one_device_metrics(eight_devices, kind):
    single, multi = eight_devices[f"{kind}_metrics"]
    assert set(single) == set(multi)
    for name in single:
        assert multi[name] == pytest.approx(single[name], rel=1e-4, abs=1e-6)
    if kind == "gan":
        assert single["gradient_penalty"] > 0


@pytest.mark.parametrize("kind", ["regressor", "gan"])
def test_epoch_compiles_once_on_eight_devices(eight_devices, kind):
    assert eight_devices[f"{kind}_compilations"] == 1


def test_regressor_program_is_data_parallel(eight_devices):
    # Each device multiplies its own 96 / 8 = 12 rows; gradients are summed
    # by all-reduce; no float array (a batch or a gradient) is all-gathered.
    shapes = eight_devices["regressor_dot_shapes"]
    local = REGRESSOR_BATCH // DEVICES
    assert any(shape.startswith(f"{local},") for shape in shapes), shapes
    assert not any(str(REGRESSOR_BATCH) in shape for shape in shapes), shapes
    assert eight_devices["regressor_collectives"]["all-reduce"] >= 1
    assert eight_devices["regressor_float_gathers"] == []


def test_gan_program_is_data_parallel(eight_devices):
    shapes = eight_devices["gan_dot_shapes"]
    local = GAN_BATCH // DEVICES
    assert any(shape.startswith(f"{local},") for shape in shapes), shapes
    assert not any(shape.startswith(f"{GAN_BATCH},") for shape in shapes)
    assert eight_devices["gan_collectives"]["all-reduce"] >= 1
    assert eight_devices["gan_float_gathers"] == []


def test_rating_table_is_split_across_devices(eight_devices):
    rows = eight_devices["table_rows"]
    assert eight_devices["shard_rows"] == [-(-rows // DEVICES)]


def test_batch_that_does_not_divide_is_refused_before_the_run(eight_devices):
    assert eight_devices["refusal"] == (
        "gan.batch_size=36 does not divide by the 8 devices; "
        "use a multiple of 8"
    )
    assert not eight_devices["refused_run_wrote"]


def test_shard_rows_pads_to_the_device_count():
    mesh = sharding.make_mesh()
    arrays = {"a": np.arange(5, dtype=np.int32), "b": np.ones((5, 2))}
    placed = sharding.shard_rows(arrays, mesh)
    count = mesh.devices.size
    assert placed["a"].shape == (5 + (-5 % count),)
    np.testing.assert_array_equal(np.asarray(placed["a"])[:5], arrays["a"])
    np.testing.assert_array_equal(np.asarray(placed["b"])[:5], arrays["b"])
    np.testing.assert_array_equal(np.asarray(placed["a"])[5:], 0)


def test_shard_rows_refuses_ragged_arrays():
    with pytest.raises(ValueError, match=r"differ in length: \[3, 4\]"):
        sharding.shard_rows(
            {"a": np.zeros(3), "b": np.zeros(4)}, sharding.make_mesh()
        )


if __name__ == "__main__":
    with jax.numpy_rank_promotion("raise"):
        print(json.dumps(_measure()))
