"""Colorizing photos with a trained model: `Colorizer.load("generic").colorize(image)`."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image

from colorizer import checkpoint
from colorizer.bins import colour_modes
from colorizer.color import lab_to_rgb, normalize_l, rgb_to_lab
from colorizer.decode import DEFAULT_TEMPERATURE, colorize_lab, colorize_logits, entropy, upsample
from colorizer.device import resolve_device
from colorizer.errors import UserError
from colorizer.hints import empty_hints, user_hint_map
from colorizer.images import check_size, to_pil, to_rgb_tensor

BUNDLED_MODELS = ("generic", "dogs")
DEFAULT_MODEL = "generic"


def bundled_model_path(name: str) -> Path:
    return Path(str(resources.files("colorizer") / "weights" / f"{name}.safetensors"))


def bf16_is_fast(device: torch.device) -> bool:
    """bf16 pays off on CUDA and on CPUs with native bf16 matrix units (AVX512-BF16, AMX)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


@dataclass
class Prediction:
    """A colorization with what a viewer may want beside it."""

    image: Image.Image  # the colorization at the input's full resolution
    gray: Image.Image  # the L channel the model saw, as a gray image
    uncertainty: torch.Tensor  # (H, W) entropy of the predicted distribution, 0 sure .. 1 uniform


def gray_image(lightness: torch.Tensor) -> Image.Image:
    """L (1, 1, H, W) in [0, 100] with no colour (ab = 0) as an RGB image: the photo as every model sees it."""
    return to_pil(colorize_lab(lightness, torch.zeros(1, 2, 1, 1)))


class Colorizer:
    """A trained network plus its decoding; colorizes PIL images of any size, mode and aspect ratio."""

    def __init__(self, model: torch.nn.Module, config: dict[str, Any], device: str | torch.device = "cpu",
                 precision: str = "auto", optimize: bool = False, name: str | None = None):
        self.device = resolve_device(device)
        self.config = config
        self.name = name or config.get("name", "model")
        self.input_size = int(config.get("input_size", 224))
        bf16 = precision == "bf16" or (precision == "auto" and bf16_is_fast(self.device))
        self.dtype = torch.bfloat16 if bf16 else torch.float32
        # channels_last lets oneDNN / cuDNN pick their fastest convolution kernels; whole-model bf16
        # (not autocast) avoids re-casting every weight on every call
        self.network = model.eval().to(self.device, self.dtype).to(memory_format=torch.channels_last)
        if optimize:
            self.network = self._frozen_graph(self.network)

    def _frozen_graph(self, model: torch.nn.Module) -> torch.nn.Module:
        """The network traced and frozen: batch norms folded into convolutions, weights pre-packed for
        oneDNN. On a CPU this runs several times faster than eager mode (bench/infer.py) for a few
        seconds of set-up, so it is for long-lived or batch use (CLI, demo), not for one photo."""
        size = (self.input_size, self.input_size)
        example = (torch.zeros(1, 1, *size, device=self.device, dtype=self.dtype).contiguous(memory_format=torch.channels_last),)
        if self.takes_hints:  # traced with a hint map, which the forward pass then always passes
            example += (empty_hints(1, *size, device=self.device).to(self.dtype),)
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, yet still the fastest here
            # TracerWarnings flag Python values the trace records as constants: the bin centres (and the
            # gamut computation behind their first use), the working size and the loops over it, all
            # fixed for a model; the graph is traced at that size only (to_working_size)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            # the trace's self-check compares value names, which differ between traces of hint models
            # alone; tests/test_hints.py checks the frozen graph against eager mode instead
            frozen = torch.jit.freeze(torch.jit.trace(model, example, check_trace=False))
            frozen(*example)  # the first calls run the graph optimisation passes
            frozen(*example)
        return frozen

    @classmethod
    def load(cls, name_or_path: str | os.PathLike = DEFAULT_MODEL, device: str | torch.device = "cpu",
             precision: str = "auto", optimize: bool = False) -> Colorizer:
        """A bundled model by name ("generic", "dogs"), a checkpoint file (.safetensors/.json) or a run folder.

        `device` is "cpu", "cuda", "cuda:N" or "auto" (a CUDA GPU where there is one);
        `precision` is "auto" (bf16 where the device computes it natively), "bf16" or "fp32";
        `optimize` freezes the network into a faster graph (a few seconds once; see `_frozen_graph`).
        """
        text = str(name_or_path)
        if text in BUNDLED_MODELS:
            path = bundled_model_path(text)
            if not path.is_file():
                raise UserError(f"bundled model {text!r} is missing from this installation ({path})")
        elif Path(text).exists():
            path = checkpoint.resolve(text)
        else:
            raise UserError(f"unknown model {text!r}: give {' or '.join(BUNDLED_MODELS)}, a checkpoint file or a run folder")
        model, config = checkpoint.load_model(path)
        name = text if text in BUNDLED_MODELS else Path(text).stem
        return cls(model, config, device=device, precision=precision, optimize=optimize, name=name)

    @property
    def takes_hints(self) -> bool:
        """Whether the network was trained with colour hint inputs (Zhang et al. 2017)."""
        return bool(self.config.get("options", {}).get("hint_inputs"))

    def require_hints(self) -> None:
        """A one-line error unless the network takes colour hints."""
        if not self.takes_hints:
            raise UserError(f"model {self.name!r} takes no colour hints: use a hint-capable model "
                            "(trained with --options '{\"hint_inputs\": true}', e.g. generic)")

    def logits(self, lightness: torch.Tensor, hint_maps: torch.Tensor | None = None) -> torch.Tensor:
        """Full-resolution L (N, 1, H, W) in [0, 100], and optional hint maps (N, 3, h, w) at the working
        size (colorizer/hints.py) -> bin logits at the model's output resolution."""
        return self._forward(self.to_working_size(lightness), hint_maps)

    def to_working_size(self, lightness: torch.Tensor) -> torch.Tensor:
        # a square input like the official demo: colour is smooth, so the aspect change costs little
        size = (self.input_size, self.input_size)
        return F.interpolate(lightness, size=size, mode="bilinear", antialias=True, align_corners=False)

    @torch.inference_mode()
    def _forward(self, lightness: torch.Tensor, hint_maps: torch.Tensor | None = None) -> torch.Tensor:
        small = normalize_l(lightness.to(self.device)).to(self.dtype).contiguous(memory_format=torch.channels_last)
        if not self.takes_hints:
            if hint_maps is not None and bool(hint_maps[:, 2].any()):
                self.require_hints()
            return self.network(small).float()
        if hint_maps is None:
            hint_maps = empty_hints(len(small), *small.shape[-2:])
        return self.network(small, hint_maps.to(self.device, self.dtype)).float()

    def hint_map(self, image: Image.Image, hints: Sequence[dict[str, Any]] | None) -> torch.Tensor | None:
        """A user's hints on `image` ([{"x", "y", "rgb", optional "radius"}] in its pixels) as a (1, 3, S, S)
        map at the working size; None without hints. Bad hints are one-line errors naming the hint."""
        if not hints:
            return None
        self.require_hints()
        return user_hint_map(hints, image.size, (self.input_size, self.input_size),
                             lambda rgb: rgb_to_lab(rgb[:, :, None, None])[:, 1:, 0, 0])

    def _batch_logits(self, images: Sequence[Image.Image], hints: Sequence[Sequence[dict[str, Any]] | None]
                      ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The one forward path: each image's full-resolution L and the batch's logits."""
        lightness = [self.lightness(image) for image in images]
        maps = [self.hint_map(image, image_hints) for image, image_hints in zip(images, hints, strict=True)]
        hint_maps = None
        if any(m is not None for m in maps):
            size = (self.input_size, self.input_size)
            hint_maps = torch.cat([empty_hints(1, *size) if m is None else m for m in maps])
        logits = self._forward(torch.cat([self.to_working_size(each) for each in lightness]), hint_maps)
        return lightness, logits

    def predict(self, image: Image.Image, temperature: float = DEFAULT_TEMPERATURE,
                hints: Sequence[dict[str, Any]] | None = None) -> Prediction:
        (lightness,), logits = self._batch_logits([image], [hints])
        rgb = colorize_logits(lightness, logits, temperature)
        uncertainty = upsample(entropy(logits)[:, None].cpu(), tuple(lightness.shape[-2:]))[0, 0]
        return Prediction(to_pil(rgb), gray_image(lightness), uncertainty.clamp(0, 1))

    def colorize(self, image: Image.Image, temperature: float = DEFAULT_TEMPERATURE,
                 hints: Sequence[dict[str, Any]] | None = None) -> Image.Image:
        """An RGB image of the input's size: the input's own lightness with predicted colour.

        `hints` (hint-capable models): [{"x": 120, "y": 40, "rgb": [200, 30, 30]}, ...] in the photo's
        pixels and 0-255 colour, optional "radius" in pixels; the network carries each hint's colour
        over the region it belongs to."""
        return self.colorize_many([image], temperature, hints=[hints])[0]

    def colorize_many(self, images: Sequence[Image.Image], temperature: float = DEFAULT_TEMPERATURE,
                      batch_size: int = 8, hints: Sequence[Sequence[dict[str, Any]] | None] | None = None
                      ) -> list[Image.Image]:
        """Colorize several images, running the network on up to `batch_size` of them at once;
        `hints` holds each image's hint list (or None)."""
        hints = list(hints) if hints is not None else [None] * len(images)
        if len(hints) != len(images):
            raise UserError(f"{len(hints)} hint lists for {len(images)} images")
        results: list[Image.Image] = []
        for start in range(0, len(images), batch_size):
            chunk = slice(start, start + batch_size)
            lightness, logits = self._batch_logits(images[chunk], hints[chunk])
            results += [to_pil(colorize_logits(each, logits[i : i + 1], temperature)) for i, each in enumerate(lightness)]
        return results

    def suggest(self, image: Image.Image, x: float, y: float, k: int = 6,
                hints: Sequence[dict[str, Any]] | None = None, min_distance: float = 15.0) -> list[dict[str, Any]]:
        """The k likeliest distinct colours at pixel (x, y) of `image` given the hints so far:
        [{"rgb": [r, g, b], "probability": p}, ...], likeliest first. Each is a mode of the predicted
        distribution (`bins.colour_modes`: gray as one mode, the other colours by hue) with its total
        probability; a mode closer than `min_distance` (ab units) to a likelier one, or looking the same
        at this lightness, is merged into it, so the choices differ."""
        if not (0 <= x < image.width and 0 <= y < image.height):
            raise UserError(f"({x:g}, {y:g}) lies outside the {image.width}x{image.height} photo")
        (lightness,), logits = self._batch_logits([image], [hints])
        row = min(int(y * logits.shape[-2] / image.height), logits.shape[-2] - 1)
        col = min(int(x * logits.shape[-1] / image.width), logits.shape[-1] - 1)
        modes, masses = colour_modes(torch.softmax(logits[0, :, row, col].float().cpu(), dim=0))
        pixel_l = lightness[0, 0, min(int(y), lightness.shape[-2] - 1), min(int(x), lightness.shape[-1] - 1)]
        # each mode's colour at this pixel's lightness; out-of-gamut colours clip, so several can look alike
        lab = torch.cat([pixel_l.expand(len(modes), 1), modes], dim=1)[:, :, None, None]
        rgb = (lab_to_rgb(lab)[:, :, 0, 0] * 255).round().int().tolist()
        picked: dict[int, float] = {}  # mode -> its probability with the modes merged into it
        for index, mass in enumerate(masses.tolist()):
            like = next((other for other in picked if (modes[index] - modes[other]).norm() < min_distance
                         or rgb[index] == rgb[other]), None)
            if like is None:
                picked[index] = mass
            else:
                picked[like] += mass
        ranked = sorted(picked.items(), key=lambda item: -item[1])[:k]
        return [{"rgb": rgb[i], "probability": round(mass, 4)} for i, mass in ranked]

    @staticmethod
    def lightness(image: Image.Image) -> torch.Tensor:
        """(1, 1, H, W) CIELAB L in [0, 100] of any PIL image; colour images are reduced to L."""
        if not isinstance(image, Image.Image):
            raise UserError(f"expected a PIL image, got {type(image).__name__}")
        check_size(image, "image")
        return rgb_to_lab(to_rgb_tensor(image))[:, :1]
