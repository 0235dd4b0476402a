"""Colorization networks by preset name: every one maps L in [-1, 1] to 313 bin logits at stride 4."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from colorizer.models.efficientnet import EfficientNetColorizer
from colorizer.models.zhang2016 import Zhang2016

# name -> (constructor, default options); options given to build_model override the defaults
PRESETS: dict[str, tuple[Callable[..., nn.Module], dict[str, Any]]] = {
    "zhang2016": (Zhang2016, {}),
    "zhang2016-quarter": (Zhang2016, {"width": 0.25}),
    "effnet-lite0": (EfficientNetColorizer, {"pretrained": True}),
}


def preset_options(preset: str, **options: Any) -> dict[str, Any]:
    """The full option set of a preset: its defaults overridden by `options` (what checkpoints record)."""
    from colorizer.errors import UserError

    if preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return {**PRESETS[preset][1], **options}


def build_model(preset: str, **options: Any) -> nn.Module:
    """A fresh network for `preset`; options (e.g. width=0.5, pretrained=False) override its defaults."""
    resolved = preset_options(preset, **options)  # checks the name first
    return PRESETS[preset][0](**resolved)
