"""ratinggan: a rating regressor and a conditional WGAN-GP in JAX.

The Python API: ``make_config`` builds a run's config, ``load_dataset``
gives the split a run would use, ``train`` trains in a work directory and
``load`` reads a trained run back as a ``TrainedModel`` (``predict``,
``distribution``, ``recommend``, ``sample``, ``sample_dataset``,
``evaluate``). ``train_and_evaluate`` is ``train`` returning the report.
"""

from ratinggan.api import load, load_dataset, make_config, train
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
from ratinggan.trained import TrainedModel

__all__ = [
    "Config",
    "DataError",
    "Dataset",
    "GanConfig",
    "Ratings",
    "RegressorConfig",
    "Split",
    "TrainedModel",
    "load",
    "load_dataset",
    "load_split",
    "make_config",
    "make_synthetic",
    "read_ml100k",
    "train",
    "train_and_evaluate",
]
__version__ = "0.1.0"
