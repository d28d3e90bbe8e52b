"""ratinggan: a rating regressor and a conditional WGAN-GP in JAX."""

from ratinggan.config import Config, GanConfig, RegressorConfig
from ratinggan.data import (
    DataError,
    Dataset,
    Ratings,
    Split,
    load_split,
    make_synthetic,
    read_ml100k,
)
from ratinggan.run import train_and_evaluate

__all__ = [
    "Config",
    "DataError",
    "Dataset",
    "GanConfig",
    "Ratings",
    "RegressorConfig",
    "Split",
    "load_split",
    "make_synthetic",
    "read_ml100k",
    "train_and_evaluate",
]
__version__ = "0.1.0"
