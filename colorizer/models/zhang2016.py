"""The network of Zhang et al. 2016 (table 1 of the paper): L at 224 px in, 313 bin logits at 56 px out."""

from __future__ import annotations

import torch
from torch import nn

from colorizer.bins import NUM_BINS


def _block(c_in: int, c_out: int, n: int, last_stride: int = 1, dilation: int = 1) -> nn.Sequential:
    """n 3x3 conv+ReLU layers, the last with `last_stride`, closed by batch norm as in table 1."""
    layers: list[nn.Module] = []
    for i in range(n):
        stride = last_stride if i == n - 1 else 1
        layers += [
            nn.Conv2d(c_in if i == 0 else c_out, c_out, 3, stride, padding=dilation, dilation=dilation),
            nn.ReLU(inplace=True),
        ]
    layers.append(nn.BatchNorm2d(c_out))
    return nn.Sequential(*layers)


class Zhang2016(nn.Module):
    """Eight conv blocks; `width` scales every channel count (1.0 is the paper's 32.2 M parameters)."""

    output_stride = 4

    def __init__(self, width: float = 1.0):
        super().__init__()
        c = [max(8, int(round(ch * width))) for ch in (64, 128, 256, 512, 256)]
        self.features = nn.Sequential(
            _block(1, c[0], 2, last_stride=2),
            _block(c[0], c[1], 2, last_stride=2),
            _block(c[1], c[2], 3, last_stride=2),
            _block(c[2], c[3], 3),
            _block(c[3], c[3], 3, dilation=2),
            _block(c[3], c[3], 3, dilation=2),
            _block(c[3], c[3], 3),
        )
        self.upsample = nn.Sequential(
            nn.ConvTranspose2d(c[3], c[4], 4, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c[4], c[4], 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c[4], c[4], 3, padding=1),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Conv2d(c[4], NUM_BINS, 1)

    def forward(self, lightness: torch.Tensor) -> torch.Tensor:
        """(N, 1, H, W) L scaled to [-1, 1] -> (N, 313, H/4, W/4) logits."""
        return self.classifier(self.upsample(self.features(lightness)))
