"""The pure helpers of benchmarks/peers.py (no peer package needed)."""

import importlib.util
import sys
from pathlib import Path

import pytest

PEERS_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "peers.py"


@pytest.fixture(scope="module")
def peers():
    spec = importlib.util.spec_from_file_location("peers", PEERS_PATH)
    module = importlib.util.module_from_spec(spec)
    # Its dataclasses look their module up by name.
    sys.modules["peers"] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules["peers"]


def test_time_to_reach_takes_the_first_epoch_at_or_below(peers):
    curve = [(30.0, 1.01), (34.0, 0.95), (38.0, 0.93), (42.0, 0.92)]

    assert peers.time_to_reach(curve, 0.94) == (38.0, 2)
    # Reaching the target exactly counts.
    assert peers.time_to_reach(curve, 0.95) == (34.0, 1)
    # A curve that rises again after the target keeps the first crossing.
    assert peers.time_to_reach([(1.0, 0.9), (2.0, 1.2)], 1.0) == (1.0, 0)
    assert peers.time_to_reach(curve, 0.9) is None


def test_epoch_clock_helpers(peers):
    ends = [30.0, 34.0, 38.5, 42.0]

    assert peers.epoch_durations(ends) == [30.0, 4.0, 4.5, 3.5]
    assert peers.steady_epoch_seconds(ends) == 4.0
    assert peers.first_epoch_excess(ends) == 26.0
    # One epoch: it is its own steady figure, and no excess can be told.
    assert peers.steady_epoch_seconds([5.0]) == 5.0
    assert peers.first_epoch_excess([5.0]) == 0.0


def _fake_results():
    scores = {
        "ratinggan regressor": {"rmse": 0.9, "mae": 0.7, "fit_s": 40.0},
        "SVD": {"rmse": 0.94, "mae": 0.74, "fit_s": 0.7},
    }
    scores["ratinggan regressor"]["compile_s"] = 25.0
    return {
        "command": "python benchmarks/peers.py",
        "quick": False,
        "machine": {
            "cpu": "Test CPU",
            "cores": 2,
            "usable_cores": 2,
            "platform": "Linux",
            "load_start": [1.0, 2.0, 3.0],
            "load_end": [1.5, 2.0, 3.0],
        },
        "backend": "cpu",
        "devices": 1,
        "versions": {"jax": "0.10.2", "ctgan": None},
        "wall_seconds": 100.0,
        "time": {
            "u1": {
                "autorec": {
                    "svd_validation_rmse": 0.94,
                    "svd_fit_s": 0.7,
                    "epoch": 2,
                    "seconds_cold": 40.0,
                    "seconds_warm": 15.0,
                    "seconds_training": 12.5,
                    "compile_s": 25.0,
                    "best_validation_rmse": 0.91,
                }
            }
        },
        "accuracy": {
            "folds": {"u1": scores, "u2": scores},
            "ml100k_means": {
                "ratinggan regressor": {
                    "rmse": 0.9,
                    "mae": 0.7,
                    "fit_s": 40.0,
                },
                "SVD": {"rmse": 0.94, "mae": 0.74, "fit_s": 0.7},
            },
        },
        "gan": {
            "fold": "u1",
            "mapping": "One draw per test pair.",
            "models": {
                "ratinggan GAN": {"epochs": 10, "rows_per_second": 20000.0},
                "CTGAN": {"epochs": 30, "rows_per_second": 6400.0},
            },
        },
    }


def test_markdown_holds_the_machine_and_each_table(peers):
    text = peers.format_markdown(_fake_results())
    lines = text.splitlines()

    assert "Test CPU, 2 cores (2 usable)" in text
    assert "1.00 / 2.00 / 3.00 at start" in text
    # A package that is not installed is left out of the versions line.
    assert "Versions: jax 0.10.2." in text
    assert (
        "| ratinggan regressor | 0.9000 | 0.9000 | 0.9000 | 0.7000 "
        "| 40.0 | 25.0 |"
    ) in lines
    assert "| SVD | 0.9400 | 0.9400 | 0.9400 | 0.7400 | 0.7 | - |" in lines
    assert (
        "| u1 | autorec | 0.9400 | 0.70 | 2 | 40.00 | 15.00 | 12.50 | 25.0 "
        "| 0.9100 |"
    ) in lines
    assert "| epochs | 10 | 30 |" in lines
    assert "| rows per s | 20000 | 6400 |" in lines
    assert "| W1 movie | - | - |" in lines
