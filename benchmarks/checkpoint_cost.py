"""What a checkpoint costs: disk, time to save and restore, share of training.

    python benchmarks/checkpoint_cost.py --dataset ml-100k \
        --data-dir ../shared/data/ml-100k --fold u1

Builds the run's full state for the default config (both models, their
optimizer states, the best regressor parameters, the keys; float arrays
filled with noise, to compress like trained ones), saves it
``--saves`` times through ``checkpoint.Checkpoints`` and restores it, and
times GAN and regressor train steps to put the save time next to the
training time of one save interval. Prints a table and JSON; writes the
JSON to ``--output`` when given.
"""

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ratinggan import checkpoint, evaluate, run, training
from ratinggan.config import Config, override
from ratinggan.sharding import make_mesh


def _disk_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def _array_bytes(tree) -> int:
    return sum(leaf.nbytes for leaf in jax.tree.leaves(tree))


def _seconds_per_step(config, data, mesh, initial, phase, steps) -> float:
    """Steady-state seconds per train step of ``phase`` (after compiling)."""
    make = run._regressor_epoch if phase == "regressor" else run._gan_epoch
    epoch = make(config, mesh, len(data.train_part))
    tables = training.device_tables(data.dataset, mesh)
    ratings = training.device_ratings(data.train_part, data.dataset, mesh)
    state = jax.tree.map(jnp.copy, getattr(initial, phase))  # donated
    rows, step_key = epoch.order(jax.random.key(0))
    steps = min(steps, epoch.num_steps - 1)

    def piece(state, start, stop):
        sums = epoch.zero_sums(state, tables, ratings)
        state, sums, _ = epoch.run(
            state,
            sums,
            tables,
            ratings,
            rows,
            step_key,
            np.int32(start),
            np.int32(stop),
        )
        jax.block_until_ready(sums)
        return state

    state = piece(state, 0, 1)  # compiles
    started = time.perf_counter()
    piece(state, 1, 1 + steps)
    return (time.perf_counter() - started) / steps


def _like_trained(tree):
    """``tree`` with its float arrays refilled with noise: fresh Adam
    moments are zeros, which compress far better than trained ones."""
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(jax.random.key(0), len(leaves))
    leaves = [
        jax.random.normal(key, leaf.shape, leaf.dtype)
        if jnp.issubdtype(leaf.dtype, jnp.floating)
        else leaf
        for key, leaf in zip(keys, leaves, strict=True)
    ]
    return jax.tree.unflatten(treedef, leaves)


def measure(config: Config, saves: int, steps: int) -> dict:
    data = run.load_data(config)
    mesh = make_mesh()
    initial = run.initial_state(config, data, mesh)
    state = _like_trained(initial)
    meta = {"position": {"phase": "gan"}, "data": data.fingerprint()}

    save_seconds = []
    with tempfile.TemporaryDirectory() as workdir:
        with checkpoint.Checkpoints(workdir, keep=2) as saved:
            for step in range(1, saves + 1):
                started = time.perf_counter()
                saved.save(step, state, meta, config)
                save_seconds.append(time.perf_counter() - started)
            disk = _disk_bytes(Path(workdir) / "checkpoints" / str(saves))

            target = checkpoint.abstract_tree(
                state, jax.tree.leaves(state)[0].sharding
            )
            started = time.perf_counter()
            restored = saved.restore_newest(lambda meta, config: target)
            restore_seconds = time.perf_counter() - started
            assert restored.step == saves

    started = time.perf_counter()
    checkpoint.tree_digest(state)
    digest_seconds = time.perf_counter() - started

    every = config.checkpoint.every_steps
    per_step = {
        phase: _seconds_per_step(config, data, mesh, initial, phase, steps)
        for phase in ("regressor", "gan")
    }
    save = statistics.median(save_seconds)
    return {
        "array_bytes": _array_bytes(state),
        "disk_bytes_per_checkpoint": disk,
        "disk_bytes_kept": disk * config.checkpoint.keep,
        "save_seconds": save,
        "digest_seconds": digest_seconds,
        "restore_seconds": restore_seconds,
        "every_steps": every,
        "seconds_per_step": per_step,
        "time_share_of_saving": {
            phase: save / (save + every * seconds)
            for phase, seconds in per_step.items()
        },
    }


def format_figures(figures: dict) -> str:
    every = figures["every_steps"]
    rows = [
        ("arrays in a checkpoint", f"{figures['array_bytes'] / 1e6:.2f} MB"),
        (
            "disk per checkpoint",
            f"{figures['disk_bytes_per_checkpoint'] / 1e6:.2f} MB",
        ),
        (
            "disk, checkpoints kept",
            f"{figures['disk_bytes_kept'] / 1e6:.2f} MB",
        ),
        ("save (on disk)", f"{figures['save_seconds'] * 1e3:.0f} ms"),
        ("  of which digest", f"{figures['digest_seconds'] * 1e3:.0f} ms"),
        ("restore and verify", f"{figures['restore_seconds'] * 1e3:.0f} ms"),
    ]
    for phase, seconds in figures["seconds_per_step"].items():
        share = figures["time_share_of_saving"][phase]
        rows.append((f"{phase} step", f"{seconds * 1e3:.2f} ms"))
        rows.append(
            (f"  save every {every} {phase} steps", f"{share:.1%} of time")
        )
    width = max(len(name) for name, _ in rows) + 2
    return "\n".join(name.ljust(width) + value for name, value in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--data-dir")
    parser.add_argument("--fold", default="u1")
    parser.add_argument("--saves", type=int, default=5)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--output", help="write the figures here as JSON")
    args = parser.parse_args()

    config = override(
        Config(),
        {"dataset": args.dataset, "data_dir": args.data_dir, "fold": args.fold},
    )
    figures = {
        "machine": platform.platform(),
        "backend": jax.default_backend(),
        "devices": jax.device_count(),
        "dataset": args.dataset,
        **measure(config, args.saves, args.steps),
    }
    print(format_figures(figures))
    print(json.dumps(figures, indent=2))
    if args.output:
        evaluate.write_json_atomic(args.output, figures)


if __name__ == "__main__":
    main()
