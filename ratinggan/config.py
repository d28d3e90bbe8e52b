"""The run configuration: one commented default, grouped by section.

Every field becomes a command-line flag (``--seed``, ``--regressor.epochs``),
so the CLI and the Python API share one source of truth.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    # Size of the built-in synthetic dataset (used when dataset="synthetic").
    num_users: int = 600
    num_items: int = 1000
    num_ratings: int = 60_000
    # Ten half-star levels 0.5..5 instead of five levels 1..5.
    half_stars: bool = False


@dataclasses.dataclass(frozen=True)
class RegressorConfig:
    # "autorec" (an ensemble of item autoencoders over each movie's training
    # ratings; the most accurate, see benchmarks/results/
    # regressor_variants.md), "factor" (biases, ID embeddings and side
    # features; for releases too large for autorec's dense users x movies
    # table) or "linear" (one weight vector over one-hot IDs and features).
    # The defaults below are autorec's best on ML-100K validation parts;
    # factor did best with batch_size 512, learning_rate 1e-3, l2 0.03 and
    # weight_decay 0.
    model: str = "autorec"
    # Width of the user and movie vectors of the factor model.
    embed_dim: int = 32
    # Upper bound on passes over the training data; early stopping on the
    # validation part usually ends sooner.
    epochs: int = 40
    # Epochs without a better validation RMSE before stopping.
    patience: int = 4
    batch_size: int = 1024
    learning_rate: float = 2e-3
    # Weight of the per-row L2 penalty on the per-user and per-movie
    # parameters a row uses.
    l2: float = 0.1
    # Decoupled (AdamW) weight decay on every trained parameter; it is what
    # regularises the shared autorec encoder.
    weight_decay: float = 1.0
    # Hidden code width of the autorec model.
    hidden_dim: int = 128
    # Dropout on the autorec model's input column while training.
    dropout: float = 0.5
    # Autoencoders in the autorec ensemble, each fitted on its own error
    # from its own initial draw; predictions are their mean.
    members: int = 3


@dataclasses.dataclass(frozen=True)
class GanConfig:
    # "wgan-gp" (Wasserstein loss with gradient penalty) or "bce" (the plain
    # binary cross-entropy GAN).
    loss: str = "wgan-gp"
    # Passes of the critic over the training data (and, since the
    # generator's update covers the critic's batches, of the generator).
    # Longer runs overfit: validation NLL on ML-100K u1 is best near 8 to 10
    # (benchmarks/results/gan_variants.md).
    epochs: int = 10
    batch_size: int = 256
    # Critic updates per generator update.
    critic_steps: int = 5
    generator_learning_rate: float = 2e-3
    critic_learning_rate: float = 1e-3
    # Adam moment decay; (0.5, 0.9) follows the WGAN-GP paper's practice.
    beta1: float = 0.5
    beta2: float = 0.9
    gp_weight: float = 10.0
    noise_dim: int = 16
    embed_dim: int = 32
    hidden_dim: int = 128
    # Temperature of the straight-through Gumbel-softmax relaxation.
    gumbel_temperature: float = 1.0
    # Generator: "factor" (a softmax-classifier-shaped factor head plus a
    # noise MLP), "ordinal" (the same plus a cumulative-logit model's
    # log-probabilities) or "mlp" (the noise MLP alone, the plain
    # conditional GAN).
    generator_head: str = "ordinal"
    # Weight of the cross-entropy of the real rating under the generator's
    # logits (a maximum-likelihood term); 0 gives the pure GAN.
    mle_weight: float = 1.0
    # Weight of the critic's (adversarial) term in the generator's loss; 0
    # gives the GAN-off ablation (the generator trained by MLE alone).
    adversarial_weight: float = 1.0
    # Generator updates trained by the MLE term alone before the
    # adversarial term is switched on (the critic trains throughout). 372 is
    # six epochs on ML-100K u1 (62 updates each); counted in updates, it is
    # a different share of the run on another dataset.
    pretrain_steps: int = 372
    # Weight of the per-row L2 penalty on the generator's ID parameters.
    l2: float = 0.03
    # Decay per generator update of the moving average of the generator's
    # parameters, which is what the trained model samples from; 0 keeps the
    # last parameters.
    average_decay: float = 0.99


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    # Slices (movies, users) need this many test ratings to enter W1 means.
    min_slice_ratings: int = 20
    # Noise draws averaged into the generator's distribution for each pair.
    distribution_draws: int = 32
    # Test pairs (at most) in the classifier two-sample test; each gives a
    # real and a generated row.
    c2st_max_pairs: int = 10_000
    # Retrain the regressor on each model's ratings (train-synthetic-test-
    # real); costs one regressor fit per generating model.
    tstr: bool = True


@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
    # Train steps between checkpoints; a killed run loses at most this many.
    # A GAN step is critic_steps critic updates and one generator update.
    # 0 saves only at the end and on SIGTERM or SIGINT.
    every_steps: int = 500
    # Checkpoints kept, newest first; older ones are deleted.
    keep: int = 3


@dataclasses.dataclass(frozen=True)
class Config:
    # "synthetic" (built in, no download), a MovieLens release (ml-100k,
    # ml-1m, ml-10m, ml-20m, ml-25m, ml-32m, ml-latest-small, ml-latest;
    # downloaded into the cache unless data_dir is given), or the path of
    # your own .csv or .parquet rating file.
    dataset: str = "synthetic"
    # Directory holding the unpacked release (or its parent).
    data_dir: str | None = None
    # ML-100K fold: u1..u5, ua or ub.
    fold: str = "u1"
    # "auto" follows the protocol (ml-100k's fold, else random 90/10);
    # "fold", "random", or "temporal" (the last 10% by time is the test).
    split: str = "auto"
    # Seed of the random split: 0 by the protocol, so numbers compare.
    split_seed: int = 0
    # Downloads and parsed arrays; default $RATINGGAN_CACHE_DIR, else
    # ~/.cache/ratinggan.
    cache_dir: str | None = None
    # With your own rating file as dataset (a .csv or .parquet path):
    # optional user and item feature tables, and a fixed test file.
    user_table: str | None = None
    item_table: str | None = None
    test_file: str | None = None
    seed: int = 0
    # Share of the training part held out for early stopping.
    validation_fraction: float = 0.05
    synthetic: SyntheticConfig = SyntheticConfig()
    regressor: RegressorConfig = RegressorConfig()
    gan: GanConfig = GanConfig()
    eval: EvalConfig = EvalConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


SECTIONS = {
    "synthetic": SyntheticConfig,
    "regressor": RegressorConfig,
    "gan": GanConfig,
    "eval": EvalConfig,
    "checkpoint": CheckpointConfig,
}


def flat_fields(config: Config) -> dict[str, Any]:
    """Flattens a config to ``{"seed": 0, "regressor.epochs": 40, ...}``."""
    flat = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if field.name in SECTIONS:
            for inner in dataclasses.fields(value):
                flat[f"{field.name}.{inner.name}"] = getattr(value, inner.name)
        else:
            flat[field.name] = value
    return flat


def override(config: Config, changes: dict[str, Any]) -> Config:
    """Returns ``config`` with dotted-name fields replaced.

    An unknown name raises ``ValueError``, so a typo never passes silently.
    """
    known = flat_fields(config)
    unknown = sorted(set(changes) - set(known))
    if unknown:
        raise ValueError(f"unknown config fields: {', '.join(unknown)}")

    top = {k: v for k, v in changes.items() if "." not in k}
    for section in SECTIONS:
        inner = {
            k.split(".", 1)[1]: v
            for k, v in changes.items()
            if k.startswith(section + ".")
        }
        if inner:
            top[section] = dataclasses.replace(
                getattr(config, section), **inner
            )
    return dataclasses.replace(config, **top)


def from_dict(values: dict[str, Any]) -> Config:
    """Builds a config from a nested dict such as ``Config.to_dict()``."""
    changes = {}
    for key, value in values.items():
        if key in SECTIONS and isinstance(value, dict):
            changes.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            changes[key] = value
    return override(Config(), changes)
