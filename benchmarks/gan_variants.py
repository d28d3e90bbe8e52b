"""Trains GAN variants and scores each generator quickly, for issue 8.

    PYTHONPATH=$PWD python benchmarks/gan_variants.py \
        --dataset ml-100k --data-dir ../shared/data/ml-100k --fold u1 \
        --variants plain,gan_off,mle_gan

Each variant is a set of ``gan.*`` overrides (``VARIANTS`` below). Its
generator is trained on the training part (the seeded 95%, as in ``ratinggan
train``) and scored on the validation part (used to choose between
variants) and on the test part (recorded, never used to choose). The
softmax classifier and the movie histograms are scored alongside once per
dataset. Figures are appended as JSON lines to
``benchmarks/results/gan_variants.jsonl``; the Markdown table
``benchmarks/results/gan_variants.md`` is rewritten from all lines.

Scores: RMSE of the distribution's mean, NLL, RPS, W1 of one draw per pair
overall and per movie (movies with at least 20 ratings; on the validation
part 5), W1 per movie of the whole distribution (free of draw noise), the
two-sample classifier AUC (test only) and, with ``--tstr``, the regressor
retrained on generated ratings; on synthetic data the mean W1 of each
pair's distribution to the truth.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import jax
import numpy as np

from ratinggan import baselines, evaluate, metrics, predict, run, training
from ratinggan.config import Config, override
from ratinggan.data import holdout, load_split
from ratinggan.sharding import make_mesh

RESULTS = Path(__file__).parent / "results"
TABLE_MARKER = "<!-- table: generated below this line -->"

VARIANTS = {
    # The conditional WGAN-GP as it was before issue 8: MLP generator, no
    # MLE term, no L2, last parameters, its old rate and length.
    "plain": {
        "gan.generator_head": "mlp",
        "gan.mle_weight": 0.0,
        "gan.l2": 0.0,
        "gan.average_decay": 0.0,
        "gan.generator_learning_rate": 1e-3,
        "gan.epochs": 30,
    },
    # Factor head, pure adversarial (no MLE term), the old length.
    "factor_gan": {
        "gan.generator_head": "factor",
        "gan.mle_weight": 0.0,
        "gan.pretrain_steps": 0,
        "gan.epochs": 30,
    },
    # GAN off: the generator trained by its MLE term alone, 8 epochs.
    "gan_off": {
        "gan.generator_head": "factor",
        "gan.adversarial_weight": 0.0,
        "gan.pretrain_steps": 0,
        "gan.epochs": 8,
    },
    # GAN off as long as "pretrain" below, its control.
    "gan_off_e10": {
        "gan.generator_head": "factor",
        "gan.adversarial_weight": 0.0,
        "gan.pretrain_steps": 0,
    },
    # MLE and the critic together from the start, 8 epochs.
    "mle_gan": {
        "gan.generator_head": "factor",
        "gan.pretrain_steps": 0,
        "gan.epochs": 8,
    },
    # A lighter adversarial term.
    "mle_gan_w03": {
        "gan.generator_head": "factor",
        "gan.adversarial_weight": 0.3,
        "gan.pretrain_steps": 0,
        "gan.epochs": 8,
    },
    # The factor head times a cumulative-logit (ordinal) model, with the
    # "pretrain" schedule: the shipped defaults.
    "ordinal": {"gan.generator_head": "ordinal"},
    # Its GAN-off ablation, the same length.
    "ordinal_gan_off": {
        "gan.generator_head": "ordinal",
        "gan.adversarial_weight": 0.0,
        "gan.pretrain_steps": 0,
    },
    # The defaults before the ordinal head: six epochs (372 updates on u1)
    # of MLE alone, then both terms for four.
    "pretrain": {"gan.generator_head": "factor"},
}


def quick_scores(dataset, part, probs, draws, min_slice, tstr=None):
    """The figures of one model on one part, as a dict."""
    real = dataset.level_index(part.ratings)
    levels = dataset.levels
    row = evaluate.score_distribution(dataset, part, probs)
    row["w1"] = metrics.wasserstein(real, draws, levels)
    row["w1_per_movie"] = metrics.sliced_wasserstein(
        part.items, real, draws, levels, min_slice
    )[0]
    row["w1_per_movie_dist"] = metrics.sliced_wasserstein(
        part.items, real, probs, levels, min_slice
    )[0]
    if tstr is not None:
        row["c2st_auc"] = metrics.classifier_two_sample_auc(
            evaluate.comparison_rows(dataset, part, real),
            evaluate.comparison_rows(dataset, part, draws),
            0,
        )
    return row


def score_both(config, split, validation, model, key, tstr, tables, mesh):
    rows = {}
    for name, part, min_slice in (
        ("validation", validation, 5),
        ("test", split.test, 20),
    ):
        probs = model.probs(part.users, part.items)
        draws = model.sample(part.users, part.items, 1234)
        rows[name] = quick_scores(
            split.dataset,
            part,
            probs,
            draws,
            min_slice,
            tstr=True if name == "test" else None,
        )
    if tstr:
        rows["test"].update(
            evaluate.train_synthetic_test_real(
                config, split, model, tables, mesh, key, 77
            )
        )
    return rows


def generator_model(config, state, tables, key):
    draws = config.eval.distribution_draws

    def probs(users, items):
        return predict.generator_distribution(
            state.generator, config.gan, tables, users, items, key, draws
        ).astype(np.float64)

    def sample(users, items, seed):
        return predict.generator_sample(
            state.generator,
            config.gan,
            tables,
            users,
            items,
            jax.random.fold_in(key, seed),
        )

    return evaluate.Model(probs=probs, sample=sample)


def write_table(path_jsonl: Path, path_md: Path) -> None:
    records = [
        json.loads(line)
        for line in path_jsonl.read_text().split("\n")
        if line.strip()
    ]
    columns = [
        ("rmse", "RMSE"),
        ("nll", "NLL"),
        ("rps", "RPS"),
        ("w1", "W1"),
        ("w1_per_movie", "W1/movie"),
        ("w1_per_movie_dist", "W1/movie dist"),
        ("c2st_auc", "C2ST"),
        ("tstr_rmse", "TSTR"),
        ("w1_to_truth", "W1 truth"),
    ]
    # Hand-written notes above the marker survive each rewrite.
    notes = ["# GAN variants (issue 8)", ""]
    if path_md.exists() and TABLE_MARKER in path_md.read_text():
        notes = path_md.read_text().split(TABLE_MARKER)[0].rstrip().split("\n")
        notes.append("")
    lines = notes + [
        TABLE_MARKER,
        "",
        "Written by `benchmarks/gan_variants.py` from `gan_variants.jsonl`;",
        "one line per run, in the order run. `val` figures choose between",
        "variants; `test` figures are only recorded. Settings are the",
        "overrides of the defaults at the time of the run.",
        "",
    ]
    by_dataset = {}
    for record in records:
        by_dataset.setdefault(record["dataset"], []).append(record)
    for dataset, group in by_dataset.items():
        lines += [f"## {dataset}", ""]
        header = ["variant", "part"] + [label for _, label in columns]
        header += ["seconds", "overrides"]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        for record in group:
            for part in ("validation", "test"):
                row = record["rows"][part]
                cells = [
                    record["variant"],
                    "val" if part == "validation" else "test",
                ]
                cells += [
                    f"{row[key]:.4f}" if key in row else ""
                    for key, _ in columns
                ]
                cells.append(f"{record.get('seconds', 0):.0f}")
                cells.append(
                    ", ".join(
                        f"{k.split('.', 1)[1]}={v}"
                        for k, v in record.get("overrides", {}).items()
                    )
                )
                lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    path_md.write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--data-dir")
    parser.add_argument("--fold", default="u1")
    parser.add_argument("--variants", default="mle_gan")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        help="extra override for every variant, as name=json-value",
    )
    parser.add_argument("--label", default="", help="suffix of the names")
    parser.add_argument("--baselines", action="store_true")
    parser.add_argument("--tstr", action="store_true")
    args = parser.parse_args()

    base = override(
        Config(),
        {"dataset": args.dataset, "data_dir": args.data_dir, "fold": args.fold},
    )
    extra = {}
    for item in args.set:
        name, value = item.split("=", 1)
        extra[name] = json.loads(value)

    split = load_split(
        base.dataset,
        base.data_dir,
        base.fold,
        base.seed,
        dataclasses.asdict(base.synthetic),
    )
    dataset = split.dataset
    train_part, validation = holdout(
        split.train, base.validation_fraction, base.seed
    )
    mesh = make_mesh()
    tables = training.device_tables(dataset, mesh)
    _, gan_key, report_key = jax.random.split(jax.random.key(base.seed), 3)
    RESULTS.mkdir(exist_ok=True)
    jsonl = RESULTS / "gan_variants.jsonl"
    name_of_data = f"{dataset.name} {split.name}"

    records = []
    if args.baselines:
        started = time.perf_counter()
        classifier, _ = baselines.fit_classifier(
            base.regressor,
            dataset,
            train_part,
            validation,
            tables,
            mesh,
            jax.random.key(1),
        )
        movie = baselines.movie_histograms(dataset, train_part)
        for name, probs_fn in (
            (
                "softmax",
                lambda u, i: baselines.classifier_probs(
                    classifier, tables, u, i
                ),
            ),
            ("movie_histogram", lambda u, i: movie[i]),
        ):
            model = evaluate._distribution_model(probs_fn)
            records.append(
                {
                    "dataset": name_of_data,
                    "variant": f"baseline {name}",
                    "rows": score_both(
                        base,
                        split,
                        validation,
                        model,
                        jax.random.key(5),
                        args.tstr,
                        tables,
                        mesh,
                    ),
                    "seconds": time.perf_counter() - started,
                }
            )
        if dataset.true_probs is not None:
            model = evaluate._distribution_model(dataset.true_probs)
            records.append(
                {
                    "dataset": name_of_data,
                    "variant": "truth",
                    "rows": score_both(
                        base,
                        split,
                        validation,
                        model,
                        jax.random.key(5),
                        False,
                        tables,
                        mesh,
                    ),
                }
            )

    for variant in args.variants.split(","):
        if not variant:
            continue
        overrides = {**VARIANTS[variant], **extra}
        config = override(base, overrides)
        started = time.perf_counter()
        state = run.fit_gan(
            config,
            dataset,
            train_part,
            tables,
            mesh,
            gan_key,
            run.MetricsLog(None),
            progress=False,
        )
        seconds = time.perf_counter() - started
        model = generator_model(config, state, tables, report_key)
        records.append(
            {
                "dataset": name_of_data,
                "variant": variant + args.label,
                "overrides": overrides,
                "seconds": seconds,
                "rows": score_both(
                    config,
                    split,
                    validation,
                    model,
                    jax.random.key(5),
                    args.tstr,
                    tables,
                    mesh,
                ),
            }
        )
        print(json.dumps(records[-1]), flush=True)

    with open(jsonl, "a") as stream:
        for record in records:
            stream.write(json.dumps(record) + "\n")
    write_table(jsonl, RESULTS / "gan_variants.md")
    print((RESULTS / "gan_variants.md").read_text())


if __name__ == "__main__":
    main()
