import json

import jax
import numpy as np
import pytest
from scipy.stats import norm

from ratinggan import (
    baselines,
    evaluate,
    metrics,
    plots,
    predict,
    run,
    training,
)
from ratinggan import config as config_lib
from ratinggan.data import Ratings, holdout, make_synthetic, read_ml100k
from ratinggan.sharding import make_mesh

LEVELS = np.arange(1, 6, dtype=np.float32)

TINY = config_lib.override(
    config_lib.Config(),
    {
        "regressor.batch_size": 64,
        "regressor.embed_dim": 8,
        "regressor.epochs": 3,
        "regressor.patience": 1,
    },
)


@pytest.fixture(scope="module")
def tiny_split():
    return make_synthetic(num_users=60, num_items=80, num_ratings=2000)


def test_rounded_gaussian_probs_hand_cases():
    probs = baselines.rounded_gaussian_probs(
        np.array([3.0, 3.5, 0.0]), 0.5, LEVELS
    )
    # Mean 3: level 3 holds the mass within one std, i.e. within +-0.5.
    inside = norm.cdf(1) - norm.cdf(-1)
    assert probs[0, 2] == pytest.approx(inside)
    assert probs[0, 1] == pytest.approx(norm.cdf(-1) - norm.cdf(-3))
    # Mean 3.5 sits on the boundary between 3 and 4: symmetric halves.
    assert probs[1, 2] == pytest.approx(probs[1, 3])
    # Mean 0 is below the scale: level 1 takes everything below 1.5.
    assert probs[2, 0] == pytest.approx(norm.cdf(3))
    np.testing.assert_allclose(probs.sum(1), 1.0)


def test_rounded_gaussian_matches_rounding_draws(rng):
    noisy = 3.2 + 0.9 * rng.standard_normal(200_000)
    index = evaluate.nearest_levels(noisy, LEVELS)
    shares = np.bincount(index, minlength=5) / len(index)
    expected = baselines.rounded_gaussian_probs(np.array([3.2]), 0.9, LEVELS)
    np.testing.assert_allclose(shares, expected[0], atol=3e-3)


def test_movie_histograms_hand_case(tiny_split):
    dataset = tiny_split.dataset
    train_part = Ratings(
        users=np.array([0, 1, 2]),
        items=np.array([0, 0, 1]),
        ratings=np.array([5.0, 4.0, 1.0], np.float32),
    )
    global_probs = baselines.global_histogram(dataset, train_part)
    np.testing.assert_allclose(global_probs, [1 / 3, 0, 0, 1 / 3, 1 / 3])

    movie_probs = baselines.movie_histograms(dataset, train_part)
    # Movie 0: counts (0, 0, 0, 1, 1) plus one pseudo-rating spread as the
    # global histogram, over 3 in total.
    np.testing.assert_allclose(
        movie_probs[0], (np.array([0, 0, 0, 1, 1]) + global_probs) / 3
    )
    # A movie without training ratings falls back to the global histogram.
    np.testing.assert_allclose(movie_probs[5], global_probs)


def test_draw_levels_follow_probs():
    probs = np.tile([0.1, 0.0, 0.2, 0.3, 0.4], (100_000, 1))
    draws = evaluate.draw_levels(probs, seed=3)
    shares = np.bincount(draws, minlength=5) / len(draws)
    np.testing.assert_allclose(shares, probs[0], atol=5e-3)
    assert (draws != 1).all()


def test_nearest_levels():
    values = np.array([0.2, 1.49, 1.51, 4.9, 7.0])
    np.testing.assert_array_equal(
        evaluate.nearest_levels(values, LEVELS), [0, 0, 1, 4, 4]
    )


def test_softmax_classifier_beats_global_histogram():
    split = make_synthetic(num_users=200, num_items=200, num_ratings=8000)
    dataset = split.dataset
    train_part, validation = holdout(split.train, 0.1, 0)
    mesh = make_mesh()
    tables = training.device_tables(dataset, mesh)
    settings = config_lib.override(
        TINY, {"regressor.learning_rate": 1e-2, "regressor.epochs": 8}
    ).regressor

    state, best = baselines.fit_classifier(
        settings,
        dataset,
        train_part,
        validation,
        tables,
        mesh,
        jax.random.key(0),
    )

    test = split.test
    probs = baselines.classifier_probs(state, tables, test.users, test.items)
    real = dataset.level_index(test.ratings)
    global_probs = baselines.global_histogram(dataset, split.train)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert best["epoch"] >= 0
    assert metrics.nll(probs, real) < metrics.nll(
        np.tile(global_probs, (len(test), 1)), real
    )


def test_tstr_on_real_ratings_equals_training_on_real(tiny_split):
    # A "model" that samples the real training ratings must give exactly the
    # regressor trained on real ratings: the same fit, data and key.
    config, split = TINY, tiny_split
    dataset = split.dataset
    mesh = make_mesh()
    tables = training.device_tables(dataset, mesh)
    real_by_pair = {
        (u, i): dataset.level_index(np.array([r]))[0]
        for u, i, r in zip(
            split.train.users,
            split.train.items,
            split.train.ratings,
            strict=True,
        )
    }
    oracle = evaluate.Model(
        probs=None,
        sample=lambda users, items, seed: np.array(
            [real_by_pair[(u, i)] for u, i in zip(users, items, strict=True)]
        ),
    )

    scores = evaluate.train_synthetic_test_real(
        config, split, oracle, tables, mesh, jax.random.key(4), seed=0
    )

    train_part, validation = holdout(split.train, 0.05, config.seed)
    state, _ = run.fit_regressor(
        config,
        dataset,
        train_part,
        validation,
        tables,
        mesh,
        jax.random.key(4),
        run.MetricsLog(None),
        progress=False,
    )
    predictions = np.clip(
        predict.predict_ratings(
            state, tables, split.test.users, split.test.items
        ),
        1,
        5,
    )
    assert scores["tstr_rmse"] == pytest.approx(
        metrics.rmse(predictions, split.test.ratings), rel=1e-6
    )


def test_u1_report_ranks_histogram_baselines(ml100k_dir):
    # Baselines only, no training: the per-movie histogram must beat the
    # global one wherever movies differ.
    split = read_ml100k(ml100k_dir, "u1")
    dataset, test = split.dataset, split.test
    global_probs = np.tile(
        baselines.global_histogram(dataset, split.train), (len(test), 1)
    )
    movie_probs = baselines.movie_histograms(dataset, split.train)[test.items]

    rows = {}
    for name, probs in (("global", global_probs), ("movie", movie_probs)):
        draws = evaluate.draw_levels(probs, seed=1)
        row = evaluate.score_distribution(dataset, test, probs)
        row.update(evaluate.score_realism(dataset, test, draws, 20)[0])
        row["w1_per_movie_dist"] = metrics.sliced_wasserstein(
            test.items, dataset.level_index(test.ratings), probs, LEVELS
        )[0]
        rows[name] = row

    for key in ("w1_per_movie", "w1_per_movie_dist", "w1_movie_means"):
        assert rows["movie"][key] < rows["global"][key], key
    for key in ("rmse", "nll", "rps"):
        assert rows["movie"][key] < rows["global"][key], key
    # Not a close call: on u1 (seed 1) per-movie W1 is about 0.26 against
    # 0.48.
    assert rows["movie"]["w1_per_movie"] < 0.7 * rows["global"]["w1_per_movie"]


def test_tables_markdown_and_plots(tmp_path):
    rows = {
        "generator": {"rmse": 1.0, "w1": 0.05, "c2st_auc": 0.6},
        "global_histogram": {"rmse": 1.2, "w1": float("nan")},
    }
    table = evaluate.format_table(rows)
    lines = table.splitlines()
    assert lines[0].split() == ["metric", "generator", "global"]
    assert lines[1].split() == ["RMSE", "1.0000", "1.2000"]
    assert lines[2].split() == ["W1", "all", "0.0500", "-"]
    assert lines[3].split() == ["C2ST", "AUC", "0.6000", "-"]

    levels = [1.0, 2.0, 3.0]
    report = {
        "dataset": "toy",
        "split": "u1",
        "num_train": 10,
        "num_test": 4,
        "num_test_unseen_movies": 0,
        "min_slice_ratings": 20,
        "slice_counts": {"movies": 2},
        "c2st_pairs": 4,
        "rows": rows,
        "slices": {
            "generator": {"genre": {"Drama": 0.1}},
            "global_histogram": {"genre": {"Drama": 0.2}},
        },
        "plot_data": {
            "levels": levels,
            "overall": {"real": [0.2, 0.3, 0.5], "generator": [0.3, 0.3, 0.4]},
            "movies": {
                "Toy Story": {"real": [0, 1, 0], "generator": [0, 0, 1]}
            },
            "movie_means": {"real": [2.0, 2.5], "generator": [2.2, 2.4]},
        },
    }
    (tmp_path / "metrics.jsonl").write_text(
        "\n".join(
            json.dumps({"phase": phase, "epoch": e, name: 1.0 / (e + 1)})
            for phase, name in (("regressor", "mse"), ("gan", "critic_loss"))
            for e in range(3)
        )
    )

    written = evaluate.write_outputs(report, tmp_path)

    names = sorted(p.name for p in written)
    assert names == sorted(
        [
            "report.json",
            "histograms.png",
            "movie_histograms.png",
            "movie_means.png",
            "training.png",
            "report.md",
        ]
    )
    for path in written:
        if path.suffix == ".png":
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = (tmp_path / "report.md").read_text()
    assert "| RMSE | 1.0000 | 1.2000 |" in markdown
    assert "| Drama | 0.1000 | 0.2000 |" in markdown
    assert "![training](training.png)" in markdown
    assert json.loads((tmp_path / "report.json").read_text())["c2st_pairs"] == 4


def test_read_metrics_names_bad_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"phase": "gan"}\nnot json\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl, line 2"):
        plots.read_metrics(path)
