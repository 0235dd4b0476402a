"""From predicted bin distributions to colour: annealed mean, uncertainty, full-resolution Lab join.

`colour_ab` also cleans up what a per-cell decoding leaves (docs/models.md, "Decoding"):

- **Blotches**: a few cells that guess an unlikely colour (a red smear on a sidewalk, green hair)
  form a small patch. Each cell's distribution is averaged with its neighbours' of similar lightness
  (a joint bilateral filter guided by L) before the annealed mean: a colour most of a region agrees
  on keeps its mass and, sharpened by the temperature, wins; a patch that few cells vote for fades
  into its region's colour, and colours across an edge of L do not mix.
- **Edges** (`guided_upsample`, off by default): the coarse colour map can be brought to the photo's
  size by a guided filter (He et al. 2013) with the full-resolution L as guide, so that colour
  follows the photo's edges instead of a bilinear blur of cells; on held-out photos it cost
  rebalanced AuC, so GUIDE_RADIUS is 0.
"""

from __future__ import annotations

import math

import kornia
import torch
import torch.nn.functional as F

from colorizer.bins import NUM_BINS, ab_bins
from colorizer.color import lab_to_rgb
from colorizer.defaults import DEFAULT_TEMPERATURE

# Blotch suppression at the network's output grid: window (cells), spatial sigma (cells) and range
# sigma (L units). Edge-aware upsampling: the guided filter's window radius in cells of that grid and
# its regulariser (in (L / 100)^2). Chosen on held-out broad/train photos (docs/models.md).
VOTE_WINDOW = 5
VOTE_SPACE_SIGMA = 1.5
VOTE_L_SIGMA = 4.0
GUIDE_RADIUS = 0.0  # off: it cost rebalanced AuC on the held-out photos
GUIDE_EPS = 1e-3

__all__ = ["DEFAULT_TEMPERATURE", "annealed_mean", "colorize_lab", "colorize_logits", "colour_ab", "decode_ab", "entropy",
           "upsample"]


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


def vote_logits(logits: torch.Tensor, lightness: torch.Tensor, window: int = VOTE_WINDOW,
                space_sigma: float = VOTE_SPACE_SIGMA, l_sigma: float = VOTE_L_SIGMA,
                hints: torch.Tensor | None = None) -> torch.Tensor:
    """Log of each cell's distribution averaged with its neighbours' (N, Q, h, w), weighted by
    distance and by likeness of L (any size; averaged down to the logits' grid); window 1 is none.
    Cells that a hint map (N, 3, H, W) covers keep their own: a user's hint is no blotch."""
    if window <= 1:
        return logits
    guide = F.adaptive_avg_pool2d(lightness.float().to(logits.device), logits.shape[-2:]) / 100
    probs = torch.softmax(logits.float(), dim=1)
    voted = kornia.filters.joint_bilateral_blur(probs, guide, window, l_sigma / 100, (space_sigma, space_sigma), "replicate")
    voted = voted.clamp_min(1e-12).log()
    if hints is None:
        return voted
    hinted = F.adaptive_max_pool2d(hints[:, 2:].float().to(logits.device), logits.shape[-2:]) > 0
    return torch.where(hinted, F.log_softmax(logits.float(), dim=1), voted)


def guided_upsample(ab: torch.Tensor, lightness: torch.Tensor, radius: float = GUIDE_RADIUS,
                    eps: float = GUIDE_EPS) -> torch.Tensor:
    """ab (N, 2, h, w) at L's full resolution (N, 1, H, W), following L's edges: a guided filter over
    windows of `radius` cells of the coarse grid; radius 0 is a plain bilinear upsampling."""
    size, coarse = tuple(lightness.shape[-2:]), tuple(ab.shape[-2:])
    ab = upsample(ab.to(lightness.device), size)
    if radius <= 0:
        return ab
    cell = max(size[0] / coarse[0], size[1] / coarse[1], 1.0)  # photo pixels per cell
    kernel = 2 * round(radius * cell) + 1
    # the fast guided filter (He & Sun 2015): statistics on a grid of half cells cost little and lose
    # nothing, since the colour they fit comes from the coarse grid anyway
    subsample = max(1, int(cell // 2))
    return kornia.filters.guided_blur(lightness.float() / 100, ab, kernel, eps, "replicate", subsample, separable=True)


def colour_ab(lightness: torch.Tensor, logits: torch.Tensor, temperature: float = DEFAULT_TEMPERATURE,
              saturation: float = 1.0, vote: bool = True, hints: torch.Tensor | None = None) -> torch.Tensor:
    """The colour of a photo: full-resolution L (N, 1, H, W) in [0, 100] and the network's bin logits ->
    ab (N, 2, H, W) on L's device: blotches voted away (unless not `vote`), the annealed mean, upsampled
    (GUIDE_RADIUS 0: bilinearly), times `saturation` (0 gray, 1 as predicted, above 1 stronger;
    clipped into sRGB when shown). The cells of `hints`, the hint map the logits were predicted with,
    stay out of the vote."""
    if vote:
        logits = vote_logits(logits, lightness, hints=hints)
    ab = annealed_mean(logits, temperature)
    ab = guided_upsample(ab, lightness, GUIDE_RADIUS)
    return ab * saturation


def colorize_logits(lightness: torch.Tensor, logits: torch.Tensor, temperature: float = DEFAULT_TEMPERATURE,
                    saturation: float = 1.0, hints: torch.Tensor | None = None) -> torch.Tensor:
    """The whole decoding: full-resolution L (N, 1, H, W) in [0, 100] and the network's bin logits ->
    sRGB (N, 3, H, W) in [0, 1], the photo's own lightness with the colour of `colour_ab`."""
    return lab_to_rgb(torch.cat([lightness, colour_ab(lightness, logits, temperature, saturation, hints=hints)], dim=1))
