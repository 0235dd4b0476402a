"""Training targets and the class-rebalanced multinomial cross-entropy (equation 3 of the paper)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

from colorizer.bins import NUM_BINS, nearest_bins
from colorizer.defaults import SOFT_NEIGHBOURS, SOFT_SIGMA


@dataclass(frozen=True, slots=True)
class LossSettings:
    """How a batch's soft targets are made: the k nearest bins and the Gaussian sigma (ab units) of the
    soft encoding. (The rebalancing's lambda is baked into the class weights passed beside them.)"""

    neighbours: int = SOFT_NEIGHBOURS
    sigma: float = SOFT_SIGMA


class Targets(NamedTuple):
    """Soft targets kept sparse: only k of the 313 bins of a pixel are non-zero, so a dense
    (N, 313, H, W) tensor would be almost all zeros and cost more memory traffic than the rest."""

    bins: torch.Tensor  # (N, k, H, W) indices of each pixel's k nearest bins
    weights: torch.Tensor  # (N, k, H, W) their Gaussian soft-encoding weights, summing to 1
    pixel_weights: torch.Tensor  # (N, H, W) rebalancing weight v of each pixel's nearest bin

    def dense(self) -> torch.Tensor:
        """Z as (N, 313, H, W): the soft encoding of equation 2, for inspection and tests."""
        shape = (self.bins.shape[0], NUM_BINS, *self.bins.shape[2:])
        return torch.zeros(shape, device=self.bins.device).scatter_(1, self.bins, self.weights)


def encode_targets(ab: torch.Tensor, class_weights: torch.Tensor, k: int = SOFT_NEIGHBOURS,
                   sigma: float = SOFT_SIGMA) -> Targets:
    """Soft targets (Gaussian weights, `sigma` in ab units, on the k nearest bins) and per-pixel
    rebalancing weights for ab (N, 2, H, W), from one nearest-bin search."""
    idx, d2 = nearest_bins(ab, k)
    kernel = torch.softmax(-d2 / (2 * sigma**2), dim=1)  # the Gaussian kernel, normalised
    return Targets(idx, kernel, class_weights.to(ab.device)[idx[:, 0]])


def rebalanced_cross_entropy(logits: torch.Tensor, targets: Targets) -> torch.Tensor:
    """-sum_q Z_q log softmax(logits)_q, weighted by v per pixel, averaged over pixels and batch.

    Only the k non-zero entries of Z contribute, so they are gathered instead of multiplying by a dense Z.
    The paper sums over pixels; the mean differs by a constant factor that keeps the learning rate
    independent of the image size.
    """
    log_probs = F.log_softmax(logits.float(), dim=1).gather(1, targets.bins)
    return (targets.pixel_weights * -(targets.weights * log_probs).sum(1)).mean()
