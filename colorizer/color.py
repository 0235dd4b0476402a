"""sRGB <-> CIELAB (D65) on batched tensors, and the L normalisation the network sees."""

from __future__ import annotations

import kornia.color
import torch


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) sRGB in [0, 1] -> (N, 3, H, W) Lab: L in [0, 100], a and b roughly in [-110, 110]."""
    return kornia.color.rgb_to_lab(rgb)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) Lab -> sRGB clipped to [0, 1]: a predicted ab can leave the gamut for a given L."""
    return kornia.color.lab_to_rgb(lab, clip=True)


def normalize_l(lightness: torch.Tensor) -> torch.Tensor:
    """L in [0, 100] -> [-1, 1], the network's input scale (section 3 of the paper)."""
    return lightness / 50.0 - 1.0


def lab_batch(rgb_uint8: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 RGB (N, 3, H, W) -> network input L in [-1, 1] (N, 1, H, W) and ab (N, 2, H, W), on device."""
    lab = rgb_to_lab(rgb_uint8.to(device, non_blocking=True).float() / 255.0)
    return normalize_l(lab[:, :1]), lab[:, 1:]
