"""Rating datasets: MovieLens readers, the synthetic dataset, splits."""

from ratinggan.data.dataset import DataError, Dataset, Ratings, Split, holdout
from ratinggan.data.movielens import read_ml100k
from ratinggan.data.synthetic import make_synthetic

__all__ = [
    "DataError",
    "Dataset",
    "Ratings",
    "Split",
    "holdout",
    "load_split",
    "make_synthetic",
    "read_ml100k",
]


def load_split(
    dataset: str = "synthetic",
    data_dir: str | None = None,
    fold: str = "u1",
    seed: int = 0,
    synthetic: dict | None = None,
) -> Split:
    """Loads a named dataset and split: ``synthetic`` or ``ml-100k``.

    ``synthetic`` holds keyword arguments of ``make_synthetic`` (sizes).
    """
    if dataset == "synthetic":
        return make_synthetic(seed=seed, **(synthetic or {}))
    if dataset == "ml-100k":
        if data_dir is None:
            raise DataError(
                "ml-100k",
                "no data directory given; unpack ml-100k from GroupLens and "
                "pass --data-dir",
            )
        return read_ml100k(data_dir, fold)
    raise ValueError(
        f"unknown dataset {dataset!r}; expected synthetic or ml-100k"
    )
