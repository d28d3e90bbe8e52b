"""Shared fixtures: where the real MovieLens files are, tiny configs."""

import os
from pathlib import Path

import jax
import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def movielens_dir(release: str) -> Path:
    """The directory of a real release, from $RATINGGAN_DATA_DIR or
    ../shared/data. Skips when absent, except under CI, where it fails."""
    root = Path(os.environ.get("RATINGGAN_DATA_DIR", SHARED_DATA))
    path = root / release
    if not path.is_dir():
        message = f"real {release} files not found at {path}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def ml100k_dir() -> Path:
    return movielens_dir("ml-100k")


@pytest.fixture(autouse=True)
def strict_numerics():
    """Rank promotion raises in tests: a [B] minus [B, 1] bug fails loudly."""
    with jax.numpy_rank_promotion("raise"):
        yield


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
