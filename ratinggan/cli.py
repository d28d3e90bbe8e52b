"""The ``ratinggan`` command: parses flags and hands off to the library."""

from __future__ import annotations

import argparse
import difflib
import json
import logging
import os
import sys
import textwrap
from pathlib import Path

from ratinggan.config import Config, flat_fields, override
from ratinggan.config_file import (
    field_comments,
    field_types,
    load_config,
    to_toml,
)

EXAMPLES = """\
examples:
  ratinggan train --workdir runs/synthetic
  ratinggan train --dataset ml-100k --data-dir data/ml-100k \\
      --fold u1 --workdir runs/u1
  ratinggan train --regressor.epochs 10 --gan.critic-steps 3 \\
      --workdir runs/quick
  ratinggan train --workdir runs/u1 --checkpoint.every-steps 200
  ratinggan train --workdir runs/tb --tensorboard   # needs the extra
  ratinggan config > my.toml      # the commented default, to edit
  ratinggan train --config my.toml --gan.epochs 5 --workdir runs/mine
  ratinggan train --config my.toml --print-config   # resolved, no training

Flags are spelt in full. `ratinggan config` prints every field with its
comment. A work directory that holds checkpoints of the same config resumes
from the newest; --restart sets a previous run aside and starts over.
"""

EVALUATE_EXAMPLES = """\
examples:
  ratinggan evaluate --workdir runs/u1
  ratinggan evaluate --workdir runs/u1 --data-dir /data/ml-100k \\
      --output u1-report.json
"""


SAMPLE_EXAMPLES = """\
examples:
  ratinggan sample --workdir runs/synthetic            # every training pair
  ratinggan sample --workdir runs/u1 --out synthetic-u1 --seed 1
  ratinggan sample --workdir runs/u1 --pairs pairs.csv --out some-pairs

A pairs file holds one USER,MOVIE pair of raw IDs (as in the source files)
per line; commas, tabs, spaces or :: separate them, further columns are
ignored, blank lines and # comments are skipped, and a first line such as
userId,movieId is taken as a header.

Only the ratings file is written (u.data for ml-100k, ratings.dat for ml-1m
and ml-10m, ratings.csv with a userId,movieId,rating,timestamp header for
the other releases, the synthetic dataset and your own files). MovieLens
metadata files (movies, users, genres) are never copied: their licence
forbids redistribution. Training pairs keep their timestamps; given pairs
get timestamp 0.

errors:
  ratinggan sample --workdir runs/missing                 # no such workdir
  ratinggan sample --workdir runs/u1 --pairs nofile.csv   # no pairs file
  ratinggan sample --workdir runs/u1 --pairs bad.csv      # a line lacks MOVIE
  ratinggan sample --workdir runs/u1 --pairs strangers.csv  # unknown user ID
"""


# Every config field is a flag; the full list would fill a screen.
TRAIN_USAGE = """%(prog)s [-h] [--workdir WORKDIR] [--config FILE]
                       [--restart] [--quiet] [--tensorboard] [--print-config]
                       [--FIELD VALUE ...]"""


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "yes", "1"):
        return True
    if lowered in ("false", "no", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _unknown_flag(flag: str, known: list[str]) -> str:
    """The error for an unknown ``--flag``, naming the closest known one."""
    names = {name.lstrip("-"): name for name in known}
    close = difflib.get_close_matches(flag.lstrip("-"), names, 1, 0.7)
    hint = f"; did you mean {names[close[0]]}?" if close else ""
    return f"unknown flag {flag}{hint} (see --help)"


class _Parser(argparse.ArgumentParser):
    """Takes flags spelt in full only and refuses an unknown one by name.

    Abbreviations are off: a config file refuses ``gan.epoch``, so the
    flag ``--gan.epoch`` is refused too rather than taken for
    ``--gan.epochs``, and adding a field never changes what a prefix means.
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args=None, namespace=None):
        parsed, extras = super().parse_known_args(args, namespace)
        for extra in extras:
            if extra.startswith("-") and extra != "--":
                flag = extra.split("=", 1)[0]
                self.error(
                    _unknown_flag(flag, list(self._option_string_actions))
                )
        return parsed, extras


def _paragraph(text: str) -> str:
    """``text`` wrapped to 79 columns (raw help keeps its line breaks)."""
    return textwrap.fill(text, 79)


def _field_help(name: str, comments: dict, default) -> str:
    """A config flag's help: its comment in config.py and its default."""
    words = " ".join(
        line.lstrip("#").strip() for line in comments.get(name, [])
    )
    words = words.replace("/ ", "/")  # a path broken across comment lines
    text = f"{words} (default: {default})" if words else f"default: {default}"
    return text.replace("%", "%%")  # argparse formats help with %


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ratinggan",
        description="Rating regressor and conditional GAN for MovieLens.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    train_parser = commands.add_parser(
        "train",
        help="train the regressor and the GAN, then write report.json",
        usage=TRAIN_USAGE,
        description=_paragraph(
            "Train the regressor and the GAN on a dataset and write "
            "config.json, metrics.jsonl, checkpoints/, report.json and "
            "report.md to the work directory. Every config field is a flag "
            "--FIELD VALUE (listed below)."
        ),
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
    train_parser.add_argument(
        "--tensorboard",
        action="store_true",
        help="also write each epoch's metrics as TensorBoard scalars in "
        "WORKDIR/tensorboard/ (needs pip install 'ratinggan[tensorboard]')",
    )
    _add_config_flags(train_parser)
    defaults = flat_fields(Config())
    comments = field_comments()
    for name, kind in field_types().items():
        train_parser.add_argument(
            _flag(name),
            dest=name,
            type=_parse_bool if kind is bool else kind,
            default=argparse.SUPPRESS,
            metavar=kind.__name__.upper(),
            help=_field_help(name, comments, defaults[name]),
        )

    evaluate_parser = commands.add_parser(
        "evaluate",
        help="load a trained model from its work directory and report",
        description=_paragraph(
            "Load the newest good checkpoint of a work directory (on any "
            "number of devices) and score it on the test part."
        ),
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
    _add_sample_command(commands)
    _add_config_command(commands)
    _add_data_command(commands)
    return parser


def _add_sample_command(commands) -> None:
    parser = commands.add_parser(
        "sample",
        help="write a synthetic ratings file drawn from a trained generator",
        description=_paragraph(
            "Draw one rating per (user, movie) pair from the generator of a "
            "trained run and write them as a ratings file in the MovieLens "
            "layout of the run's source: for every training pair (the "
            "default) or for the pairs of --pairs."
        ),
        epilog=SAMPLE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--workdir", required=True, help="the trained run's work directory"
    )
    parser.add_argument(
        "--out",
        help="folder for the ratings file (default: WORKDIR/sample)",
    )
    parser.add_argument(
        "--pairs",
        metavar="FILE",
        help="USER,MOVIE raw ID pairs to rate (default: every training pair)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="sampling seed (default: 0)"
    )
    parser.add_argument(
        "--data-dir", help="where the data lie now, if not where they did"
    )
    parser.add_argument(
        "--quiet", action="store_true", help="no progress bar or summary"
    )


def _train(args: argparse.Namespace) -> None:
    from ratinggan import distributed, evaluate, run

    config = _resolved_config(args)
    if args.print_config:
        print(to_toml(config), end="")
        return
    report = run.train_and_evaluate(
        config, args.workdir, not args.quiet, args.restart, args.tensorboard
    )
    if not args.quiet and distributed.is_writer():
        print(evaluate.format_table(report["rows"]))
        print(f"report: {args.workdir}/report.json")


def _check_workdir(workdir: str) -> None:
    if not Path(workdir).is_dir():
        raise FileNotFoundError(f"{workdir}: no such work directory")


def _evaluate(args: argparse.Namespace) -> None:
    from ratinggan import evaluate, trained

    _check_workdir(args.workdir)
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


def _sample(args: argparse.Namespace) -> None:
    from ratinggan import sampling, trained

    _check_workdir(args.workdir)
    out = Path(args.out or Path(args.workdir) / "sample")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: exists and is not a folder")
    pairs = args.pairs
    if pairs is not None and not Path(pairs).is_file():
        raise FileNotFoundError(f"{pairs}: no such pairs file")
    if pairs is not None:
        sampling.read_pairs(pairs)  # a malformed file fails before loading
    model = trained.load(args.workdir, args.data_dir)
    if not model.finished:
        logging.getLogger(__name__).warning(
            "the newest checkpoint (step %d) is from before training ended",
            model.step,
        )
    users = items = None
    if pairs is not None:
        users, items = sampling.pair_indices(model.dataset, pairs)
    table = model.sample_dataset(
        users, items, seed=args.seed, progress=not args.quiet
    )
    path = sampling.write_ratings(table, model.config.dataset, out)
    if not args.quiet:
        print(f"{len(table)} ratings: {path}")


CONFIG_EXAMPLES = """\
examples:
  ratinggan config > my.toml                 # the commented default
  ratinggan config --config my.toml          # a file, resolved and checked
  ratinggan config --config my.yaml          # YAML needs PyYAML installed

errors:
  ratinggan config --config missing.toml     # no such config file
  ratinggan config --config typo.toml        # unknown config key 'gan.epoch'
"""

DATA_EXAMPLES = """\
examples:
  ratinggan data list
  ratinggan data download ml-1m
  ratinggan data verify ml-1m
  ratinggan data describe ml-100k --data-dir data/ml-100k
  ratinggan data describe --data-dir data/ml-100k --fold u1

errors:
  ratinggan data download ml-9m              # unknown MovieLens release
  ratinggan data describe --data-dir nowhere # no such directory
  ratinggan data verify ml-1m                # not in the cache yet
"""


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        dest="config_file",
        metavar="FILE",
        help="TOML (or YAML, with PyYAML) config file; flags override it",
    )
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved config as TOML and exit without training",
    )


def _add_config_command(commands) -> None:
    parser = commands.add_parser(
        "config",
        help="print the default config, or a config file resolved, as TOML",
        description=_paragraph(
            "Print a commented config as TOML: the default, or FILE on top "
            "of the default. Save it, edit it, and pass it to `ratinggan "
            "train --config`."
        ),
        epilog=CONFIG_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config", dest="config_file", metavar="FILE", help="config file"
    )


def _resolved_config(args: argparse.Namespace) -> Config:
    """Default, then the config file, then the flags given."""
    config = Config()
    if args.config_file:
        config = load_config(args.config_file, config)
    fields = flat_fields(config)
    changes = {
        name: value for name, value in vars(args).items() if name in fields
    }
    return override(config, changes)


def _data_parser(commands, name: str, help_text: str, description: str):
    parser = commands.add_parser(
        name,
        help=help_text,
        description=_paragraph(description),
        epilog=DATA_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--cache-dir",
        help="download cache (default $RATINGGAN_CACHE_DIR, else "
        "~/.cache/ratinggan)",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="warnings and errors only"
    )
    return parser


def _add_data_command(commands) -> None:
    parser = commands.add_parser(
        "data",
        help="list, download, verify or describe MovieLens releases",
        description=_paragraph(
            "MovieLens releases: list them, download one into the cache "
            "(verified against pinned checksums), verify the cache, or "
            "describe a release or a local directory."
        ),
        epilog=DATA_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="data_command", required=True)

    listing = _data_parser(
        actions,
        "list",
        "every known release, and whether it is cached",
        "List the known MovieLens releases with their size and rating "
        "scale, whether a checksum is pinned, and whether the cache holds "
        "them.",
    )
    listing.add_argument("--json", action="store_true", help="print JSON")

    download = _data_parser(
        actions,
        "download",
        "download and unpack a release into the cache",
        "Download RELEASE from GroupLens, check its size and checksums, "
        "and unpack it into the cache; prints the folder. Does nothing when "
        "it is already there.",
    )
    download.add_argument("release", metavar="RELEASE")

    verify = _data_parser(
        actions,
        "verify",
        "check a cached release against its checksums",
        "Check the cached archive of RELEASE against its pinned size and "
        "checksums and that its unpacked files are present; exits 1 when "
        "not.",
    )
    verify.add_argument("release", metavar="RELEASE")
    verify.add_argument("--json", action="store_true", help="print JSON")

    describe = _data_parser(
        actions,
        "describe",
        "counts and shapes of a release or a local directory",
        "Describe a release (from the cache, or from --data-dir): users, "
        "movies, features, rating levels and counts. With --fold or "
        "--split, describe that train/test split instead. Without RELEASE "
        "the layout of --data-dir names it (ml-100k, ml-1m, ml-10m).",
    )
    describe.add_argument("release", metavar="RELEASE", nargs="?")
    describe.add_argument(
        "--data-dir", help="folder holding the unpacked release"
    )
    describe.add_argument("--fold", help="ml-100k fold (u1..u5, ua, ub)")
    describe.add_argument(
        "--split", help="auto, fold, random or temporal (90/10, seed 0)"
    )
    describe.add_argument("--json", action="store_true", help="print JSON")


def _detect_release(data_dir: str) -> str:
    """The release whose layout ``data_dir`` holds."""
    from ratinggan.data import RELEASES, find_release_dir

    folder = Path(data_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such directory")
    for release, marks in (
        ("ml-100k", ["u.data"]),
        ("ml-1m", ["ratings.dat", "users.dat"]),
        ("ml-10m", ["ratings.dat"]),
    ):
        found = find_release_dir(release, folder, fetch=False)
        if all((found / mark).is_file() for mark in marks):
            return release
    if (folder / "ratings.csv").is_file():
        if folder.name in RELEASES:
            return folder.name  # the CSV releases share one layout
        raise ValueError(
            f"{folder} holds ratings.csv, which ml-20m, ml-25m, ml-32m and "
            "the ml-latest releases share; name the release, as in "
            f"`ratinggan data describe ml-25m --data-dir {folder}`"
        )
    raise ValueError(
        f"{folder}: no MovieLens files (u.data, ratings.dat or ratings.csv)"
    )


def _require_cached(release: str, cache_dir: str | None) -> None:
    from ratinggan.data import release_info
    from ratinggan.data.download import release_dir

    folder = release_dir(release, cache_dir)
    info = release_info(release)
    if not all((folder / name).is_file() for name in info.required_files):
        raise FileNotFoundError(
            f"{release} is not in the cache at {folder}; run `ratinggan data "
            f"download {release}` or pass --data-dir"
        )


def _rating_summary(ratings) -> dict:
    """Counts of a whole rating table, for ``data describe``."""
    import numpy as np

    values, counts = np.unique(ratings.ratings, return_counts=True)
    summary = {
        "ratings": len(ratings),
        "rated_users": int(len(np.unique(ratings.users))),
        "rated_items": int(len(np.unique(ratings.items))),
        "mean_rating": float(ratings.ratings.mean()) if len(ratings) else None,
        "histogram": {
            f"{v:g}": int(c) for v, c in zip(values, counts, strict=True)
        },
    }
    if ratings.timestamps is not None and len(ratings):
        summary["first_timestamp"] = int(ratings.timestamps.min())
        summary["last_timestamp"] = int(ratings.timestamps.max())
    return summary


def _describe(args: argparse.Namespace) -> dict:
    from ratinggan import data

    if args.release is None and args.data_dir is None:
        raise ValueError("name a RELEASE or pass --data-dir DIR")
    release = args.release or _detect_release(args.data_dir)
    data.release_info(release)
    if args.data_dir is None:
        _require_cached(release, args.cache_dir)
    elif not Path(args.data_dir).is_dir():
        raise FileNotFoundError(f"{args.data_dir}: no such directory")

    if args.fold or args.split:
        split = data.load_split(
            release,
            args.data_dir,
            fold=args.fold or "u1",
            split=args.split or "auto",
            cache_dir=args.cache_dir,
        )
        return data.describe(split)
    dataset, ratings = data.load_release(
        release, args.data_dir, args.cache_dir, fetch=False
    )
    summary = data.describe(dataset)
    summary.update(_rating_summary(ratings))
    summary["density"] = len(ratings) / max(
        1, dataset.num_users * dataset.num_items
    )
    return summary


def _print_fields(values: dict, indent: str = "") -> None:
    for key, value in values.items():
        if isinstance(value, dict):
            print(f"{indent}{key}:")
            _print_fields(value, indent + "  ")
        else:
            print(f"{indent}{key}: {value}")


def _print_releases(rows: list[dict]) -> None:
    header = ("release", "ratings", "users", "movies", "scale", "checksum")
    print(f"{header[0]:<16}" + "".join(f"{h:>12}" for h in header[1:]))
    for row in rows:
        scale = "1..5" if row["levels"] == 5 else "0.5..5"
        pinned = "pinned" if row["checksum_pinned"] else "server md5"
        cached = "  cached" if row["cached"] else ""
        print(
            f"{row['release']:<16}{row['ratings']:>12,}{row['users']:>12,}"
            f"{row['movies']:>12,}{scale:>12}{pinned:>12}{cached}"
        )


def _data(args: argparse.Namespace) -> int:
    """Runs ``ratinggan data ...``; user errors become one line, exit 1."""
    from ratinggan import data

    try:
        if args.data_command == "list":
            rows = data.list_releases(args.cache_dir)
            if args.json:
                print(json.dumps(rows, indent=2))
            else:
                _print_releases(rows)
        elif args.data_command == "download":
            print(
                data.download(
                    args.release, args.cache_dir, progress=not args.quiet
                )
            )
        elif args.data_command == "verify":
            report = data.verify(args.release, args.cache_dir)
            if args.json:
                print(json.dumps(report, indent=2))
            else:
                _print_fields(report)
            return _verify_status(report)
        elif args.data_command == "describe":
            summary = _describe(args)
            if args.json:
                print(json.dumps(summary, indent=2))
            else:
                _print_fields(summary)
    except BrokenPipeError:
        raise  # the reader left (`| head`); main() ends quietly
    except (ValueError, OSError) as error:
        print(f"ratinggan: error: {error}", file=sys.stderr)
        return 1
    return 0


def _verify_status(report: dict) -> int:
    """0 when the cache holds a good copy; else one error line and 1."""
    release = report["release"]
    if report["checksum_ok"] is False:
        problem = report["error"]
    elif report["missing_files"] and not report["archive_present"]:
        problem = (
            f"{release} is not in the cache at {report['folder']}; run "
            f"`ratinggan data download {release}`"
        )
    elif report["missing_files"]:
        problem = (
            f"{report['folder']} lacks {', '.join(report['missing_files'])};"
            f" run `ratinggan data download {release}` to unpack it again"
        )
    else:
        return 0
    print(f"ratinggan: error: {problem}", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    try:
        status = _main(argv)
        # Flushed here, not at exit, so a closed pipe is caught below.
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        # The reader of stdout left (`ratinggan data describe ... | head`):
        # nothing more to say, and nothing more to say it to.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING
        if getattr(args, "quiet", False)
        else logging.INFO,
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
        elif args.command == "sample":
            _sample(args)
        elif args.command == "config":
            print(to_toml(_resolved_config(args)), end="")
        elif args.command == "data":
            return _data(args)
    except Interrupted as stopped:
        print(f"ratinggan: {stopped}", file=sys.stderr)
        return 128 + stopped.signum
    except (ValueError, FileNotFoundError, FloatingPointError) as error:
        print(f"ratinggan: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
