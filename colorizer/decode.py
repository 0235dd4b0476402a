"""From predicted bin distributions to colour: annealed mean, uncertainty, full-resolution Lab join."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from colorizer.bins import NUM_BINS, ab_bins
from colorizer.color import lab_to_rgb
from colorizer.defaults import DEFAULT_TEMPERATURE

__all__ = ["DEFAULT_TEMPERATURE", "annealed_mean", "colorize_lab", "colorize_logits", "decode_ab", "entropy", "upsample"]


def annealed_mean(logits: torch.Tensor, temperature: float = DEFAULT_TEMPERATURE) -> torch.Tensor:
    """ab (N, 2, H, W) as the mean of the distribution re-tempered to softmax(log p / T).

    T = 1 gives the mean (smooth but desaturated), T -> 0 the mode (vivid but patchy); 0.38 is the
    paper's compromise. T = 0 is the mode exactly.
    """
    bins = ab_bins().to(logits.device)
    logits = logits.float()
    if temperature <= 0:
        probs = F.one_hot(logits.argmax(1), NUM_BINS).permute(0, 3, 1, 2).float()
    else:
        probs = torch.softmax(logits / temperature, dim=1)
    return torch.einsum("nqhw,qc->nchw", probs, bins)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Per-pixel entropy (N, H, W) of the predicted distribution, scaled to [0, 1] by log(313)."""
    log_probs = F.log_softmax(logits.float(), dim=1)
    return -(log_probs.exp() * log_probs).sum(1) / math.log(NUM_BINS)


def upsample(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of (N, C, h, w) maps to `size` (H, W)."""
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def colorize_lab(lightness: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """Join full-resolution L (N, 1, H, W) with ab of any size into sRGB (N, 3, H, W) in [0, 1]."""
    ab = upsample(ab.to(lightness.device), tuple(lightness.shape[-2:]))
    return lab_to_rgb(torch.cat([lightness, ab], dim=1))


def decode_ab(logits: torch.Tensor, size: tuple[int, int], temperature: float = DEFAULT_TEMPERATURE) -> torch.Tensor:
    """Bin logits at the network's resolution -> ab (N, 2, H, W) at the photo's `size`, on the CPU."""
    return upsample(annealed_mean(logits, temperature).cpu(), size)


def colorize_logits(lightness: torch.Tensor, logits: torch.Tensor,
                    temperature: float = DEFAULT_TEMPERATURE) -> torch.Tensor:
    """The whole decoding: full-resolution L (N, 1, H, W) in [0, 100] and the network's bin logits ->
    sRGB (N, 3, H, W) in [0, 1], the photo's own lightness with the annealed-mean colour."""
    return colorize_lab(lightness, annealed_mean(logits, temperature))
