"""The paper's vote figures, each written as PNG and PDF: figure 2 (vote shares per image) and the
montages of figures 3 to 5 (the grayscale input beside both models' colorizations)."""

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


def plot_pair_montage(panels: list[tuple[str, Path, bool]], stem: Path, title: str) -> list[Path]:
    """A row of labelled images, given as (label, path, show in gray)."""
    from PIL import Image

    plt = _pyplot()
    figure, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.2), squeeze=False, layout="constrained")
    for axis, (label, path, gray) in zip(axes[0], panels):
        with Image.open(path) as image:
            picture = image.convert("L" if gray else "RGB")
        picture.thumbnail((MONTAGE_PANEL_PIXELS, MONTAGE_PANEL_PIXELS))
        axis.imshow(picture, cmap="gray", vmin=0, vmax=255)  # the colour map only affects gray panels
        axis.set_title(label, fontsize=9)
        axis.axis("off")
    figure.suptitle(title, fontsize=10)
    return _save(figure, stem)
