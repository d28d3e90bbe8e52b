"""PNG plots of a report: real against generated ratings, training curves.

Everything plotted comes from ``report.json`` (its ``plot_data``) and the
run's ``metrics.jsonl``, so plots can be redrawn without the models.
Needs matplotlib (the ``report`` extra); uses the Agg backend, no display.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

# Models drawn next to the real ratings in the histogram plots.
HISTOGRAM_MODELS = (
    "generator",
    "movie_histogram",
    "regressor_noise",
    "softmax",
)
# Metrics drawn per phase in the training curves, when present.
CURVES = {
    "regressor": ("mse", "validation_rmse"),
    "gan": ("critic_loss", "generator_loss", "wasserstein"),
}


def write_plots(
    report: dict[str, Any], workdir: Path, metrics_path: Path | None = None
) -> list[Path]:
    """Writes every plot the report's data allows; returns their paths."""
    workdir = Path(workdir)
    data = report["plot_data"]
    written = [
        _save(histogram_figure(data), workdir / "histograms.png"),
        _save(movie_histograms_figure(data), workdir / "movie_histograms.png"),
        _save(movie_means_figure(data), workdir / "movie_means.png"),
    ]
    records = read_metrics(metrics_path) if metrics_path else []
    if records:
        written.append(
            _save(training_curves_figure(records), workdir / "training.png")
        )
    return written


def _save(figure, path: Path) -> Path:
    temporary = path.with_name(f".{path.stem}.tmp-{os.getpid()}.png")
    figure.savefig(temporary, dpi=100, bbox_inches="tight")
    plt.close(figure)
    os.replace(temporary, path)
    return path


def _bars(axis, levels, histograms: dict[str, list[float]], title: str):
    """Side-by-side bars of the level shares of each named sample."""
    names = ["real"] + [n for n in HISTOGRAM_MODELS if n in histograms]
    width = 0.8 / len(names)
    positions = np.arange(len(levels))
    for offset, name in enumerate(names):
        axis.bar(
            positions + (offset - (len(names) - 1) / 2) * width,
            histograms[name],
            width,
            label=name,
        )
    axis.set_xticks(positions, [f"{v:g}" for v in levels])
    axis.set_xlabel("rating")
    axis.set_ylabel("share")
    axis.set_title(title)


def histogram_figure(data: dict[str, Any]):
    """Real against generated rating histograms over the whole test part."""
    figure, axis = plt.subplots(figsize=(7, 4))
    _bars(axis, data["levels"], data["overall"], "test ratings")
    axis.legend()
    return figure


def movie_histograms_figure(data: dict[str, Any]):
    """The same histograms for the movies with the most test ratings."""
    movies = list(data["movies"])
    columns = 2
    rows = max(1, -(-len(movies) // columns))
    figure, axes = plt.subplots(
        rows, columns, figsize=(11, 3.5 * rows), squeeze=False
    )
    for axis, title in zip(axes.flat, movies, strict=False):
        _bars(axis, data["levels"], data["movies"][title], title[:40])
    for axis in axes.flat[len(movies) :]:
        axis.axis("off")
    axes.flat[0].legend(fontsize="small")
    figure.tight_layout()
    return figure


def movie_means_figure(data: dict[str, Any]):
    """Generated against real mean rating per movie (well-rated movies)."""
    means = data["movie_means"]
    names = [
        n for n in ("generator", "softmax", "movie_histogram") if n in means
    ]
    figure, axis = plt.subplots(figsize=(5.5, 5.5))
    for name in names:
        axis.scatter(means["real"], means[name], s=10, alpha=0.6, label=name)
    low, high = data["levels"][0], data["levels"][-1]
    axis.plot([low, high], [low, high], color="gray", linewidth=1)
    axis.set_xlim(low, high)
    axis.set_ylim(low, high)
    axis.set_xlabel("real mean rating")
    axis.set_ylabel("generated mean rating")
    axis.set_title(f"per-movie means ({len(means['real'])} movies)")
    axis.legend()
    return figure


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file; none when it is missing."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise ValueError(
                f"{path}, line {number}: not a JSON object ({error})"
            ) from error
    return records


def training_curves_figure(records: list[dict[str, Any]]):
    """One panel per training phase: its metrics against the epoch."""
    phases = [p for p in CURVES if any(r.get("phase") == p for r in records)]
    figure, axes = plt.subplots(
        1,
        max(1, len(phases)),
        figsize=(6 * max(1, len(phases)), 4),
        squeeze=False,
    )
    for axis, phase in zip(axes.flat, phases, strict=False):
        phase_records = [r for r in records if r.get("phase") == phase]
        for name in CURVES[phase]:
            points = [
                (r.get("epoch", i), r[name])
                for i, r in enumerate(phase_records)
                if name in r
            ]
            if points:
                epochs, values = zip(*points, strict=True)
                axis.plot(epochs, values, label=name)
        axis.set_xlabel("epoch")
        axis.set_title(phase)
        axis.legend()
    figure.tight_layout()
    return figure
