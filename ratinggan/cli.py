"""The ``ratinggan`` command: parses flags and hands off to the library."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import types
import typing

from ratinggan.config import SECTIONS, Config, flat_fields, override

EXAMPLES = """\
examples:
  ratinggan train --workdir runs/synthetic
  ratinggan train --dataset ml-100k --data-dir ../shared/data/ml-100k \\
      --fold u1 --workdir runs/u1
  ratinggan train --regressor.epochs 10 --gan.critic-steps 3 \\
      --workdir runs/quick
  ratinggan train --workdir runs/u1 --checkpoint.every-steps 200

A work directory that holds checkpoints of the same config resumes from the
newest; --restart sets a previous run aside and starts over.
"""

EVALUATE_EXAMPLES = """\
examples:
  ratinggan evaluate --workdir runs/u1
  ratinggan evaluate --workdir runs/u1 --data-dir /data/ml-100k \\
      --output u1-report.json
"""


def _field_types() -> dict[str, type]:
    """The Python type of each dotted config field, for flag parsing."""
    types_by_name = {}
    for cls, prefix in [(Config, "")] + [
        (section, f"{name}.") for name, section in SECTIONS.items()
    ]:
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            if field.name in SECTIONS and not prefix:
                continue
            hint = hints[field.name]
            if isinstance(hint, types.UnionType):
                hint = next(
                    a for a in typing.get_args(hint) if a is not type(None)
                )
            types_by_name[prefix + field.name] = hint
    return types_by_name


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "yes", "1"):
        return True
    if lowered in ("false", "no", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ratinggan",
        description="Rating regressor and conditional GAN for MovieLens.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    train_parser = commands.add_parser(
        "train",
        help="train the regressor and the GAN, then write report.json",
        description="Train the regressor and the GAN on a dataset and write "
        "config.json, metrics.jsonl and report.json to the work directory.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train_parser.add_argument(
        "--workdir", default="runs/latest", help="output directory"
    )
    train_parser.add_argument(
        "--quiet", action="store_true", help="no progress bars or table"
    )
    train_parser.add_argument(
        "--restart",
        action="store_true",
        help="set aside the work directory's previous run (checkpoints, "
        "metrics, report) and start over instead of resuming",
    )
    defaults = flat_fields(Config())
    for name, kind in _field_types().items():
        train_parser.add_argument(
            _flag(name),
            dest=name,
            type=_parse_bool if kind is bool else kind,
            default=argparse.SUPPRESS,
            metavar=kind.__name__.upper(),
            help=f"default: {defaults[name]}",
        )

    evaluate_parser = commands.add_parser(
        "evaluate",
        help="load a trained model from its work directory and report",
        description="Load the newest good checkpoint of a work directory "
        "(on any number of devices) and score it on the test part.",
        epilog=EVALUATE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    evaluate_parser.add_argument(
        "--workdir", required=True, help="the run's work directory"
    )
    evaluate_parser.add_argument(
        "--data-dir", help="where the data lie now, if not where they did"
    )
    evaluate_parser.add_argument(
        "--output",
        help="report path (default: WORKDIR/evaluation.json)",
    )
    evaluate_parser.add_argument(
        "--quiet", action="store_true", help="no table"
    )
    return parser


def _train(args: argparse.Namespace) -> None:
    from ratinggan import distributed, evaluate, run

    changes = {
        name: value
        for name, value in vars(args).items()
        if name not in ("command", "workdir", "quiet", "restart")
    }
    config = override(Config(), changes)
    report = run.train_and_evaluate(
        config, args.workdir, not args.quiet, args.restart
    )
    if not args.quiet and distributed.is_writer():
        print(evaluate.format_table(report["rows"]))
        print(f"report: {args.workdir}/report.json")


def _evaluate(args: argparse.Namespace) -> None:
    from pathlib import Path

    from ratinggan import evaluate, trained

    model = trained.load(args.workdir, args.data_dir)
    if not model.finished:
        logging.getLogger(__name__).warning(
            "the newest checkpoint (step %d) is from before training ended",
            model.step,
        )
    report = model.evaluate()
    report["step"] = model.step
    report["config"] = model.config.to_dict()
    output = Path(args.output or Path(args.workdir) / "evaluation.json")
    evaluate.write_json_atomic(output, report)
    if not args.quiet:
        print(evaluate.format_table(report["rows"]))
        print(f"report: {output}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        # Importing Orbax already configured the root logger (through absl).
        force=True,
    )
    logging.getLogger("jax").setLevel(logging.WARNING)
    logging.getLogger("absl").setLevel(logging.WARNING)
    from ratinggan.checkpoint import Interrupted

    try:
        if args.command == "train":
            _train(args)
        elif args.command == "evaluate":
            _evaluate(args)
    except Interrupted as stopped:
        print(f"ratinggan: {stopped}", file=sys.stderr)
        return 128 + stopped.signum
    except (ValueError, FileNotFoundError, FloatingPointError) as error:
        print(f"ratinggan: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
