"""The empirical colour prior over the bins and the class-rebalancing weights it induces (eq. 3-4)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import gaussian_filter
from torch.utils.data import DataLoader
from tqdm import tqdm

from colorizer.bins import AB_RANGE, GRID, NUM_BINS, ab_bins, nearest_bins
from colorizer.color import lab_batch
from colorizer.data import PhotoDataset
from colorizer.defaults import REBALANCE_MIX

PRIOR_SIGMA = 5.0  # the Gaussian (ab units) that smooths the empirical prior (section 3.2)


def bin_counts(ab: torch.Tensor) -> torch.Tensor:
    """How many pixels of a batch (N, 2, H, W) fall nearest to each bin: (313,) float64."""
    idx, _ = nearest_bins(ab, k=1)
    return torch.bincount(idx.flatten(), minlength=NUM_BINS).double().cpu()


def smooth_prior(counts: torch.Tensor | np.ndarray, sigma: float = PRIOR_SIGMA) -> torch.Tensor:
    """Normalise bin counts to a distribution and smooth it with a Gaussian of `sigma` ab units.

    The smoothing runs on the full 10-grid of the ab plane so that neighbouring bins share mass the way
    they are laid out, not the way they happen to be ordered.
    """
    counts = np.asarray(counts, dtype=np.float64)
    cells = ((_ab_bins_np() + AB_RANGE) / GRID).round().astype(int)
    side = int(2 * AB_RANGE / GRID) + 1
    grid = np.zeros((side, side))
    grid[cells[:, 0], cells[:, 1]] = counts / counts.sum()
    smoothed = gaussian_filter(grid, sigma=sigma / GRID, mode="constant", truncate=4.0)
    prior = smoothed[cells[:, 0], cells[:, 1]]
    return torch.from_numpy(prior / prior.sum())


def compute_prior(paths: list[Path], size: int, batch_size: int, workers: int, device: torch.device,
                  progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Bin counts over every pixel of the (centre-cropped) photos and the smoothed prior."""
    loader = DataLoader(PhotoDataset(paths, size, augment=False), batch_size=batch_size, num_workers=workers)
    counts = torch.zeros(NUM_BINS, dtype=torch.float64)
    for rgb in tqdm(loader, desc="prior", disable=not progress):
        counts += bin_counts(lab_batch(rgb, device)[1])
    return counts, smooth_prior(counts)


def mixed_prior(folders: Sequence[list[Path]], shares: Sequence[float], size: int, batch_size: int, workers: int,
                device: torch.device, progress: bool = True) -> torch.Tensor:
    """The smoothed prior of several photo folders, each weighing in by its share of the photos that
    training draws (not by its size), so that it matches the colours the network is trained on."""
    counts = [compute_prior(paths, size, batch_size, workers, device, progress)[0] for paths in folders]
    return smooth_prior(sum(share * c / c.sum() for share, c in zip(shares, counts, strict=True)))


def rebalance_weights(prior: torch.Tensor, mix: float = REBALANCE_MIX) -> torch.Tensor:
    """w proportional to ((1 - mix) * prior + mix / Q)^-1, scaled so that E_prior[w] = 1."""
    prior = torch.as_tensor(prior, dtype=torch.float64)
    weights = 1.0 / ((1.0 - mix) * prior + mix / prior.numel())
    return (weights / (prior * weights).sum()).float()


def _ab_bins_np() -> np.ndarray:
    return ab_bins().double().numpy()
