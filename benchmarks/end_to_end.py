"""Times one whole run (train both models, report) and prints its figures.

    python benchmarks/end_to_end.py --dataset ml-100k \
        --data-dir ../shared/data/ml-100k --fold u1

Prints the report's rows as a table and as JSON, with the wall time of each
phase, and writes the JSON to ``--output`` when given.
"""

import argparse
import json
import platform
import tempfile

import jax

from ratinggan import evaluate, run
from ratinggan.config import Config, override


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--data-dir")
    parser.add_argument("--fold", default="u1")
    parser.add_argument("--output", help="write the figures here as JSON")
    args = parser.parse_args()

    config = override(
        Config(),
        {"dataset": args.dataset, "data_dir": args.data_dir, "fold": args.fold},
    )
    with tempfile.TemporaryDirectory() as workdir:
        report = run.train_and_evaluate(config, workdir, progress=False)

    figures = {
        "machine": platform.platform(),
        "backend": jax.default_backend(),
        "devices": jax.device_count(),
        "dataset": report["dataset"],
        "split": report["split"],
        "seconds": report["seconds"],
        "rows": report["rows"],
    }
    print(evaluate.format_table(report["rows"]))
    print("seconds:", {k: round(v, 1) for k, v in report["seconds"].items()})
    print(json.dumps(figures, indent=2))
    if args.output:
        evaluate.write_json_atomic(args.output, figures)


if __name__ == "__main__":
    main()
