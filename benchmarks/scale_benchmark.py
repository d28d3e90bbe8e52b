"""Ratings per second of the regressor epoch and the GAN epoch at 1, 2, 4 and
8 devices, on whatever backend JAX finds.

    python benchmarks/scale_benchmark.py --output scale.json
    XLA_FLAGS=--xla_force_host_platform_device_count=8 \
        python benchmarks/scale_benchmark.py      # 8 fake CPU devices

Each device count gets its own mesh over the first n devices and trains on
synthetic ratings with the same global batch (strong scaling), so every
count does the same work. One epoch compiles and warms up; the next
``--epochs`` are timed. A rating counts once per step that uses it: a GAN
step uses ``critic_steps`` batches. Prints a table and JSON, and writes the
JSON to ``--output`` when given. Fake CPU devices share the host's cores,
so on CPU the figures show the overhead of partitioning, not a speed-up.
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import time

import jax

from ratinggan import evaluate, training
from ratinggan.config import Config, override
from ratinggan.data import make_synthetic
from ratinggan.sharding import check_batch_size, make_mesh


def _time_epochs(epoch_fn, state, tables, ratings, epochs: int) -> float:
    """Seconds per epoch, after one compiling and warming epoch."""
    state, metrics = epoch_fn(state, tables, ratings, jax.random.key(0))
    jax.block_until_ready(metrics)
    started = time.perf_counter()
    for epoch in range(epochs):
        state, metrics = epoch_fn(
            state, tables, ratings, jax.random.key(epoch + 1)
        )
    jax.block_until_ready((state, metrics))
    return (time.perf_counter() - started) / epochs


def measure(config: Config, split, devices, epochs: int) -> dict:
    """Ratings per second of both epochs on a mesh over ``devices``."""
    mesh = make_mesh(devices)
    dataset, rows = split.dataset, len(split.train)
    tables = training.device_tables(dataset, mesh)
    ratings = training.device_ratings(split.train, dataset, mesh)
    result = {"devices": len(devices)}

    settings = config.regressor
    check_batch_size(settings.batch_size, mesh, "regressor batch")
    # The training ratings: autorec (the default model) reads them.
    state = training.create_regressor_state(
        settings,
        dataset,
        float(split.train.ratings.mean()),
        jax.random.key(0),
        mesh,
        history=split.train,
    )
    epoch_fn = training.make_epoch(
        functools.partial(training.regressor_step, l2=settings.l2),
        mesh,
        rows,
        settings.batch_size,
    )
    used = rows // settings.batch_size * settings.batch_size
    seconds = _time_epochs(epoch_fn, state, tables, ratings, epochs)
    result["regressor_seconds"] = seconds
    result["regressor_ratings_per_second"] = used / seconds

    settings = config.gan
    check_batch_size(settings.batch_size, mesh, "GAN batch")
    state = training.create_gan_state(
        settings, dataset, jax.random.key(0), mesh
    )
    group = settings.critic_steps
    epoch_fn = training.make_epoch(
        functools.partial(training.gan_step, config=settings),
        mesh,
        rows,
        settings.batch_size,
        group=group,
    )
    used = rows // (settings.batch_size * group) * settings.batch_size * group
    seconds = _time_epochs(epoch_fn, state, tables, ratings, epochs)
    result["gan_seconds"] = seconds
    result["gan_ratings_per_second"] = used / seconds
    return result


def format_table(results: list[dict]) -> str:
    lines = [
        f"{'devices':>7}  {'regressor ratings/s':>20}  {'speed-up':>8}  "
        f"{'GAN ratings/s':>14}  {'speed-up':>8}"
    ]
    base = results[0]
    for row in results:
        regressor = row["regressor_ratings_per_second"]
        gan = row["gan_ratings_per_second"]
        lines.append(
            f"{row['devices']:>7}  {regressor:>20,.0f}  "
            f"{regressor / base['regressor_ratings_per_second']:>8.2f}  "
            f"{gan:>14,.0f}  {gan / base['gan_ratings_per_second']:>8.2f}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-users", type=int, default=6_000)
    parser.add_argument("--num-items", type=int, default=4_000)
    parser.add_argument("--num-ratings", type=int, default=200_000)
    parser.add_argument(
        "--model",
        default=Config().regressor.model,
        help="regressor model (default: the config's)",
    )
    parser.add_argument("--regressor-batch", type=int, default=1024)
    parser.add_argument("--gan-batch", type=int, default=512)
    parser.add_argument("--critic-steps", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs")
    parser.add_argument(
        "--devices",
        default="1,2,4,8",
        help="device counts; counts above what JAX finds are skipped",
    )
    parser.add_argument("--output", help="write the figures here as JSON")
    args = parser.parse_args()

    config = override(
        Config(),
        {
            "regressor.model": args.model,
            "regressor.batch_size": args.regressor_batch,
            "gan.batch_size": args.gan_batch,
            "gan.critic_steps": args.critic_steps,
        },
    )
    split = make_synthetic(
        num_users=args.num_users,
        num_items=args.num_items,
        num_ratings=args.num_ratings,
        seed=0,
    )
    available = jax.devices()
    counts = [int(n) for n in args.devices.split(",")]
    results = [
        measure(config, split, available[:count], args.epochs)
        for count in counts
        if count <= len(available)
    ]

    figures = {
        "machine": platform.platform(),
        "backend": jax.default_backend(),
        "device_kind": available[0].device_kind,
        "devices_found": len(available),
        "training_ratings": len(split.train),
        "regressor_model": args.model,
        "regressor_batch": args.regressor_batch,
        "gan_batch": args.gan_batch,
        "critic_steps": args.critic_steps,
        "timed_epochs": args.epochs,
        "results": results,
    }
    print(format_table(results))
    print(json.dumps(figures, indent=2))
    if args.output:
        evaluate.write_json_atomic(args.output, figures)


if __name__ == "__main__":
    main()
