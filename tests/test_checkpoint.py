"""Checkpoints: pieces of epochs, saving, verifying and falling back.

These tests need no training run; ``test_checkpoint_resume.py`` kills real
training processes.
"""

import functools
import json
import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ratinggan import checkpoint, run, training
from ratinggan.config import Config, override
from ratinggan.data import make_synthetic
from ratinggan.sharding import make_mesh, replicated


@pytest.fixture(scope="module")
def tiny():
    split = make_synthetic(num_users=40, num_items=60, num_ratings=1200, seed=1)
    mesh = make_mesh()
    return split, mesh, training.device_tables(split.dataset, mesh)


def test_an_epoch_run_in_pieces_equals_the_whole_epoch(tiny):
    split, mesh, tables = tiny
    ratings = training.device_ratings(split.train, split.dataset, mesh)
    epoch = training.make_resumable_epoch(
        functools.partial(training.regressor_step, l2=0.01),
        mesh,
        len(split.train),
        64,
    )
    config = override(
        Config(), {"regressor.model": "factor", "regressor.embed_dim": 8}
    ).regressor
    initial = training.create_regressor_state(
        config, split.dataset, 3.5, jax.random.key(0), mesh
    )
    rows, step_key = epoch.order(jax.random.key(3))

    def run_in_pieces(cuts):
        state = jax.tree.map(jnp.copy, initial)  # run donates its state
        sums = epoch.zero_sums(state, tables, ratings)
        bounds = [0, *cuts, epoch.num_steps]
        for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
            state, sums, first_bad = epoch.run(
                state,
                sums,
                tables,
                ratings,
                rows,
                step_key,
                np.int32(start),
                np.int32(stop),
            )
        return state, sums, first_bad

    whole, whole_sums, first_bad = run_in_pieces([])
    pieces, piece_sums, _ = run_in_pieces([1, 7, 8])
    assert epoch.num_steps == len(split.train) // 64
    assert epoch.run._cache_size() == 1
    jax.tree.map(np.testing.assert_array_equal, whole, pieces)
    jax.tree.map(np.testing.assert_array_equal, whole_sums, piece_sums)
    assert {name: int(step) for name, step in first_bad.items()} == {
        "loss": -1,
        "mse": -1,
        "grad_norm": -1,
    }
    assert int(whole.step) == epoch.num_steps
    # Same batches and keys as the one-scan epoch of make_epoch.
    scanned = training.make_epoch(
        functools.partial(training.regressor_step, l2=0.01),
        mesh,
        len(split.train),
        64,
    )
    scanned_state, _ = scanned(
        jax.tree.map(jnp.copy, initial), tables, ratings, jax.random.key(3)
    )
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
        scanned_state.params,
        whole.params,
    )


def test_first_non_finite_step_is_reported_per_metric(tiny):
    split, mesh, tables = tiny
    ratings = training.device_ratings(split.train, split.dataset, mesh)

    def step_fn(state, batch, key):
        del batch, key
        state = state + 1.0
        return state, {"fine": state, "bad": jnp.log(5.0 - state)}

    epoch = training.make_resumable_epoch(step_fn, mesh, len(split.train), 64)
    state = jax.device_put(jnp.float32(0.0), replicated(mesh))
    sums = epoch.zero_sums(state, tables, ratings)
    rows, step_key = epoch.order(jax.random.key(0))
    _, _, first_bad = epoch.run(
        state, sums, tables, ratings, rows, step_key, np.int32(0), np.int32(9)
    )
    # Step index 4 makes the state 5 and log(0) = -inf.
    assert int(first_bad["bad"]) == 4
    assert int(first_bad["fine"]) == -1


def _tree(value: float):
    return {
        "weights": jnp.full((3, 4), value, jnp.float32),
        "count": jnp.int32(value),
        "key": jax.random.key_data(jax.random.key(int(value))),
    }


def _target():
    return checkpoint.abstract_tree(_tree(0.0), replicated(make_mesh()))


def _meta(meta, config):
    del meta, config
    return _target()


def test_last_k_kept_and_a_saved_step_never_rewritten(tmp_path):
    with checkpoint.Checkpoints(tmp_path, keep=3) as saved:
        for step in range(1, 6):
            assert saved.save(step, _tree(step), {"step": step}, Config())
        assert not saved.save(5, _tree(99.0), {"step": 99}, Config())
        assert saved.steps() == [3, 4, 5]
        restored = saved.restore_newest(_meta)

    assert restored.step == 5
    assert restored.meta["step"] == 5 and restored.meta["format"] == 1
    assert restored.config == Config().to_dict()
    np.testing.assert_array_equal(restored.state["weights"], 5.0)
    np.testing.assert_array_equal(
        restored.state["key"], jax.random.key_data(jax.random.key(5))
    )
    assert restored.state["weights"].sharding == replicated(make_mesh())


def _truncate_meta(step_dir):
    path = step_dir / "meta" / "metadata"
    path.write_bytes(path.read_bytes()[:20])


def _truncate_state(step_dir):
    # Every file: Orbax keeps some that a restore never reads.
    for path in (step_dir / "state").rglob("*"):
        if path.is_file():
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _alter_weights(step_dir):
    # Rewrites the arrays with other values through Orbax itself: files
    # that read back fine but hold something else than was saved.
    import orbax.checkpoint as ocp

    with ocp.StandardCheckpointer() as writer:
        writer.save(step_dir / "other", _tree(7.0))
    os.replace(step_dir / "state", step_dir / "state-old")
    os.replace(step_dir / "other", step_dir / "state")


@pytest.mark.parametrize(
    "damage", [_truncate_meta, _truncate_state, _alter_weights]
)
def test_damaged_newest_checkpoint_is_set_aside(tmp_path, damage, caplog):
    with checkpoint.Checkpoints(tmp_path, keep=3) as saved:
        saved.save(10, _tree(1.0), {}, Config())
        saved.save(20, _tree(2.0), {}, Config())
    damage(tmp_path / "checkpoints" / "20")

    with checkpoint.Checkpoints(tmp_path, keep=3) as saved:
        restored = saved.restore_newest(_meta)
        assert saved.steps() == [10]

    assert restored.step == 10
    np.testing.assert_array_equal(restored.state["weights"], 1.0)
    (aside,) = (tmp_path / "corrupt-checkpoints").iterdir()
    assert aside.name.startswith("20-")
    assert "checkpoint at step 20 is unreadable" in caplog.text
    if damage is _alter_weights:
        assert "do not match their digest" in caplog.text


def test_read_only_checkpoints_move_nothing(tmp_path):
    with checkpoint.Checkpoints(tmp_path, keep=3) as saved:
        saved.save(10, _tree(1.0), {}, Config())
        saved.save(20, _tree(2.0), {}, Config())
    _truncate_meta(tmp_path / "checkpoints" / "20")

    with checkpoint.Checkpoints(tmp_path, read_only=True) as saved:
        assert saved.restore_newest(_meta).step == 10
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "10",
        "20",
    ]


def test_unfinished_save_is_reported_and_removed(tmp_path, caplog):
    with checkpoint.Checkpoints(tmp_path) as saved:
        saved.save(10, _tree(1.0), {}, Config())
    unfinished = tmp_path / "checkpoints" / "20.orbax-checkpoint-tmp-1"
    (unfinished / "state").mkdir(parents=True)

    with checkpoint.Checkpoints(tmp_path) as saved:
        assert saved.restore_newest(_meta).step == 10
    assert "unfinished save of step 20" in caplog.text
    assert not unfinished.exists()


def test_a_refused_target_stops_the_search(tmp_path):
    with checkpoint.Checkpoints(tmp_path) as saved:
        saved.save(10, _tree(1.0), {}, Config())

        def refuse(meta, config):
            raise ValueError("another config")

        with pytest.raises(ValueError, match="another config"):
            saved.restore_newest(refuse)
        assert saved.steps() == [10]


def test_config_conflicts_name_fields_and_allow_harmless_changes():
    saved = Config().to_dict()
    harmless = override(
        Config(),
        {
            "data_dir": "/elsewhere",
            "checkpoint.every_steps": 7,
            "eval.distribution_draws": 4,
        },
    )
    assert checkpoint.config_conflicts(saved, harmless) == []

    changed = override(Config(), {"gan.hidden_dim": 64, "dataset": "ml-100k"})
    assert checkpoint.config_conflicts(saved, changed) == [
        "dataset: 'synthetic' -> 'ml-100k'",
        "gan.hidden_dim: 128 -> 64",
    ]
    nan = override(Config(), {"gan.critic_learning_rate": float("nan")})
    assert checkpoint.config_conflicts(nan.to_dict(), nan) == []


def test_metrics_log_drops_records_after_the_resumed_step(tmp_path):
    log = run.MetricsLog(tmp_path / "metrics.jsonl")
    for step in (26, 52, 78):
        log.write({"step": step, "loss": 1.0})
    log.keep_until(60)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [26, 52]


def test_sigterm_becomes_a_request_and_handlers_are_restored():
    before = signal.getsignal(signal.SIGTERM)
    with checkpoint.StopSignals() as stop:
        assert stop.requested is None
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before


def test_tree_digest_sees_values_paths_and_dtypes():
    tree = {"a": np.arange(3, dtype=np.float32)}
    same = checkpoint.tree_digest(tree)
    assert checkpoint.tree_digest({"a": np.arange(3, dtype=np.float32)}) == (
        same
    )
    assert checkpoint.tree_digest({"b": tree["a"]}) != same
    assert checkpoint.tree_digest({"a": tree["a"].astype(np.int32)}) != same
    assert checkpoint.tree_digest({"a": tree["a"] + 1e-7}) != same


def test_negative_interval_is_refused(tmp_path):
    config = override(Config(), {"checkpoint.every_steps": -1})
    with pytest.raises(ValueError, match="checkpoint.every_steps=-1"):
        run.train_and_evaluate(config, tmp_path, progress=False)
