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
    return parser


def _train(args: argparse.Namespace) -> None:
    from ratinggan import distributed, evaluate, run

    changes = {
        name: value
        for name, value in vars(args).items()
        if name not in ("command", "workdir", "quiet")
    }
    config = override(Config(), changes)
    report = run.train_and_evaluate(config, args.workdir, not args.quiet)
    if not args.quiet and distributed.is_writer():
        print(evaluate.format_table(report["rows"]))
        print(f"report: {args.workdir}/report.json")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("jax").setLevel(logging.WARNING)
    try:
        if args.command == "train":
            _train(args)
    except (ValueError, FileNotFoundError, FloatingPointError) as error:
        print(f"ratinggan: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
