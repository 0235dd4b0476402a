"""The vote figures, each written as PNG and PDF: figure 2 (vote shares per image; with more than two
conditions, each condition's win rate per image), the montages of figures 3 to 5 (the grayscale
input beside both models' colorizations), the win matrix and the Bradley-Terry scores."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from colorizer.atomic import atomic_path

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

FORMATS = ("png", "pdf")
MONTAGE_PANEL_PIXELS = 768  # full-resolution stimuli would make multi-megabyte PDFs


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure: Figure, stem: Path) -> list[Path]:
    """Write `stem`.png and `stem`.pdf atomically and close the figure."""
    paths = []
    for fmt in FORMATS:
        path = stem.with_name(f"{stem.name}.{fmt}")
        # No creation date in the PDF, so rebuilding from the same votes gives the same bytes.
        metadata = {"CreationDate": None} if fmt == "pdf" else None
        with atomic_path(path) as tmp:
            figure.savefig(tmp, format=fmt, dpi=150, bbox_inches="tight", metadata=metadata)
        paths.append(path)
    _pyplot().close(figure)
    return paths


def plot_votes_per_image(images: pd.DataFrame, models: tuple[str, str], stem: Path, title: str) -> list[Path]:
    """Figure 2: one stacked bar per image (sorted by share), Wilson 95% intervals on the boundary,
    a 50% line and a star over each image whose preference survives the Holm correction."""
    import numpy as np

    plt = _pyplot()
    first, second = models
    x = np.arange(len(images))
    share = images["share_first"].to_numpy()
    figure, axes = plt.subplots(figsize=(max(6.0, 0.28 * len(images) + 2), 4.2))
    axes.bar(x, share, width=0.8, color="tab:blue", label=first)
    axes.bar(x, 1 - share, width=0.8, bottom=share, color="tab:orange", label=second)
    # Clipped at zero: at a share of 0 or 1 the Wilson bound equals the share up to rounding.
    error_below = np.clip(share - images["ci_low"].to_numpy(), 0, None)
    error_above = np.clip(images["ci_high"].to_numpy() - share, 0, None)
    axes.errorbar(
        x, share, yerr=[error_below, error_above],
        fmt="none", ecolor="black", elinewidth=0.8, capsize=2, label="Wilson 95% interval",
    )
    axes.axhline(0.5, color="black", linestyle="--", linewidth=0.8)
    significant = images["significant"].to_numpy(bool)
    axes.scatter(x[significant], np.full(significant.sum(), 1.04), marker="*", s=25, color="black",
                 clip_on=False, label="significant after Holm (exact binomial)")
    axes.set_xticks(x, labels=images["image_id"], rotation=90, fontsize=6)
    axes.set_xlim(-0.6, len(images) - 0.4)
    axes.set_ylim(0, 1)
    axes.set_xlabel("image, sorted by share of votes")
    axes.set_ylabel(f"share of votes ({first} below, {second} above)")
    axes.set_title(title, fontsize=10, pad=14)
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=4, fontsize=7, frameon=False)
    return _save(figure, stem)


def plot_condition_wins_per_image(
    table: pd.DataFrame, conditions: tuple[str, ...], stem: Path, title: str
) -> list[Path]:
    """Figure 2 for several conditions: per image, one bar per condition with its win rate (the share
    of its trials on that image that it won) and the Wilson 95% interval; 50% dashed."""
    import numpy as np

    plt = _pyplot()
    images = list(dict.fromkeys(table["image_id"]))
    width = 0.8 / len(conditions)
    figure, axes = plt.subplots(figsize=(max(6.0, 0.22 * len(images) * len(conditions) + 2), 4.2))
    x = np.arange(len(images))
    for number, condition in enumerate(conditions):
        rows = table[table["condition"] == condition].set_index("image_id").reindex(images)
        rate = rows["win_rate"].to_numpy(float)
        below = np.clip(rate - rows["ci_low"].to_numpy(float), 0, None)
        above = np.clip(rows["ci_high"].to_numpy(float) - rate, 0, None)
        offset = (number - (len(conditions) - 1) / 2) * width
        axes.bar(x + offset, np.nan_to_num(rate), width=width, label=condition)
        axes.errorbar(x + offset, rate, yerr=[below, above], fmt="none", ecolor="black", elinewidth=0.6, capsize=1)
    axes.axhline(0.5, color="black", linestyle="--", linewidth=0.8)
    axes.set_xticks(x, labels=images, rotation=90, fontsize=6)
    axes.set_ylim(0, 1)
    axes.set_xlabel(f"image, sorted by {conditions[0]}'s win rate")
    axes.set_ylabel("win rate (share of its trials on the image)")
    axes.set_title(title, fontsize=10)
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=min(len(conditions), 5), fontsize=7,
                frameon=False)
    return _save(figure, stem)


def plot_win_matrix(wins: pd.DataFrame, stem: Path, title: str) -> list[Path]:
    """Each cell: how often the row's condition was chosen over the column's, as a share of their
    trials together (colour) and as counts."""
    import numpy as np

    plt = _pyplot()
    counts = wins.to_numpy(float)
    total = counts + counts.T
    share = np.divide(counts, total, out=np.full_like(counts, np.nan), where=total > 0)
    size = 1.2 * len(wins) + 2
    figure, axes = plt.subplots(figsize=(size, size * 0.85))
    image = axes.imshow(share, vmin=0, vmax=1, cmap="RdBu")
    for i in range(len(wins)):
        for j in range(len(wins)):
            if i != j and total[i, j] > 0:
                axes.text(j, i, f"{share[i, j]:.0%}\n{counts[i, j]:.0f}/{total[i, j]:.0f}", ha="center",
                          va="center", fontsize=7)
    axes.set_xticks(range(len(wins)), labels=wins.columns, rotation=30, ha="right", fontsize=8)
    axes.set_yticks(range(len(wins)), labels=wins.index, fontsize=8)
    axes.set_xlabel("against")
    axes.set_ylabel("chosen")
    axes.set_title(title, fontsize=10)
    figure.colorbar(image, ax=axes, label="share of the pair's trials won by the row")
    return _save(figure, stem)


def plot_bradley_terry(
    scores: dict[str, float], intervals: dict[str, list[float]], stem: Path, title: str
) -> list[Path]:
    """The conditions' Bradley-Terry scores (log-strengths, mean 0), best on top, with their 95% intervals."""
    plt = _pyplot()
    ranked = sorted(scores, key=lambda condition: scores[condition])
    figure, axes = plt.subplots(figsize=(6.0, 0.45 * len(ranked) + 1.5))
    for y, condition in enumerate(ranked):
        low, high = intervals[condition]
        axes.plot([low, high], [y, y], color="black", linewidth=1.2)
        axes.plot(scores[condition], y, "o", color="tab:blue")
    axes.axvline(0, color="black", linestyle="--", linewidth=0.8)
    axes.set_yticks(range(len(ranked)), labels=ranked, fontsize=8)
    axes.set_xlabel("Bradley-Terry score (log-strength, mean 0) with 95% interval")
    axes.set_title(title, fontsize=10)
    return _save(figure, stem)


def plot_pair_montage(panels: list[tuple[str, Path, bool]], stem: Path, title: str) -> list[Path]:
    """A row of labelled images, given as (label, path, show in gray)."""
    from PIL import Image

    plt = _pyplot()
    figure, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.2), squeeze=False, layout="constrained")
    for axis, (label, path, gray) in zip(axes[0], panels, strict=True):
        with Image.open(path) as image:
            picture = image.convert("L" if gray else "RGB")
        picture.thumbnail((MONTAGE_PANEL_PIXELS, MONTAGE_PANEL_PIXELS))
        axis.imshow(picture, cmap="gray", vmin=0, vmax=255)  # the colour map only affects gray panels
        axis.set_title(label, fontsize=9)
        axis.axis("off")
    figure.suptitle(title, fontsize=10)
    return _save(figure, stem)
