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
from colorizer.bins import ab_bins
from colorizer.color import lab_to_rgb, normalize_l, rgb_to_lab
from colorizer.decode import DEFAULT_TEMPERATURE, colorize_lab, colorize_logits, entropy, upsample
from colorizer.device import resolve_device
from colorizer.errors import UserError
from colorizer.hints import LOCAL_EDGE_COST, LOCAL_REACH, empty_hints, hint_nearness, local_hint_logits, user_hint_map
from colorizer.images import check_size, to_pil, to_rgb_tensor

BUNDLED_MODELS = ("generic", "dogs")
DEFAULT_MODEL = "generic"
MAX_SATURATION = 2.0  # colour strength: beyond twice the predicted chroma most colours leave sRGB anyway


def check_saturation(saturation: float) -> None:
    """A one-line error unless `saturation` is a number from 0 to MAX_SATURATION."""
    if isinstance(saturation, bool) or not isinstance(saturation, (int, float)) or not 0 <= saturation <= MAX_SATURATION:
        raise UserError(f"saturation must be a number from 0 to {MAX_SATURATION:g}, got {saturation!r}")


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
                 precision: str = "auto", optimize: bool = False, name: str | None = None,
                 hint_reach: float | None = LOCAL_REACH):
        self.device = resolve_device(device)
        # how far (output cells, geodesically) a hint's colour reaches (colorizer/hints.py
        # `local_hint_logits`); None leaves it to the network, which spreads one hint over the photo
        self.hint_reach, self.hint_edge_cost = hint_reach, LOCAL_EDGE_COST
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
            # the trace's self-check compares value names, which differ between traces of hint models
            # alone; tests/test_hints.py checks the frozen graph against eager mode instead
            frozen = torch.jit.freeze(torch.jit.trace(model, example, check_trace=False))
            frozen(*example)  # the first calls run the graph optimisation passes
            frozen(*example)
        return frozen

    @classmethod
    def load(cls, name_or_path: str | os.PathLike = DEFAULT_MODEL, device: str | torch.device = "cpu",
             precision: str = "auto", optimize: bool = False, hint_reach: float | None = LOCAL_REACH) -> Colorizer:
        """A bundled model by name ("generic", "dogs"), a checkpoint file (.safetensors/.json) or a run folder.

        `device` is "cpu", "cuda", "cuda:N" or "auto" (a CUDA GPU where there is one);
        `precision` is "auto" (bf16 where the device computes it natively), "bf16" or "fp32";
        `optimize` freezes the network into a faster graph (a few seconds once; see `_frozen_graph`);
        `hint_reach` is how far a hint's colour carries (see `__init__`).
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
        return cls(model, config, device=device, precision=precision, optimize=optimize, name=name,
                   hint_reach=hint_reach)

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
        hint_maps = hint_maps.to(self.device)
        if self.hint_reach is None or not bool(hint_maps[:, 2].any()):
            return self.network(small, hint_maps.to(self.dtype)).float()
        # one batch: with the hints and without, mixed by each cell's nearness to a hint
        both = self.network(torch.cat([small, small]), torch.cat([hint_maps, torch.zeros_like(hint_maps)]).to(self.dtype))
        hinted, automatic = both.float().split(len(small))
        nearness = hint_nearness(lightness.to(self.device), hint_maps, tuple(hinted.shape[-2:]), self.hint_reach,
                                 self.hint_edge_cost)
        return local_hint_logits(hinted, automatic, nearness)

    def hint_map(self, image: Image.Image, hints: Sequence[dict[str, Any]] | None) -> torch.Tensor | None:
        """A user's hints on `image` ([{"x", "y", "rgb", optional "radius"}] in its pixels) as a (1, 3, S, S)
        map at the working size; None without hints. Bad hints are one-line errors naming the hint."""
        if not hints:
            return None
        self.require_hints()
        return user_hint_map(hints, image.size, (self.input_size, self.input_size),
                             lambda rgb: rgb_to_lab(rgb[:, :, None, None])[:, 1:, 0, 0])

    def _batch_logits(self, images: Sequence[Image.Image], hints: Sequence[Sequence[dict[str, Any]] | None]
                      ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor | None]:
        """The one forward path: each image's full-resolution L, the batch's logits and hint maps."""
        lightness = [self.lightness(image) for image in images]
        maps = [self.hint_map(image, image_hints) for image, image_hints in zip(images, hints, strict=True)]
        hint_maps = None
        if any(m is not None for m in maps):
            size = (self.input_size, self.input_size)
            hint_maps = torch.cat([empty_hints(1, *size) if m is None else m for m in maps])
        logits = self._forward(torch.cat([self.to_working_size(each) for each in lightness]), hint_maps)
        return lightness, logits, hint_maps

    def predict(self, image: Image.Image, temperature: float = DEFAULT_TEMPERATURE,
                hints: Sequence[dict[str, Any]] | None = None, saturation: float = 1.0) -> Prediction:
        check_saturation(saturation)
        (lightness,), logits, hint_maps = self._batch_logits([image], [hints])
        rgb = colorize_logits(lightness, logits, temperature, saturation, hint_maps)
        uncertainty = upsample(entropy(logits)[:, None].cpu(), tuple(lightness.shape[-2:]))[0, 0]
        return Prediction(to_pil(rgb), gray_image(lightness), uncertainty.clamp(0, 1))

    def colorize(self, image: Image.Image, temperature: float = DEFAULT_TEMPERATURE,
                 hints: Sequence[dict[str, Any]] | None = None, saturation: float = 1.0) -> Image.Image:
        """An RGB image of the input's size: the input's own lightness with predicted colour.

        `hints` (hint-capable models): [{"x": 120, "y": 40, "rgb": [200, 30, 30]}, ...] in the photo's
        pixels and 0-255 colour, optional "radius" in pixels; the network carries each hint's colour
        over the region it belongs to, and no further (see `hint_reach`). `saturation` scales the
        colour's strength: 0 gray, 1 as predicted, up to MAX_SATURATION."""
        return self.colorize_many([image], temperature, hints=[hints], saturation=saturation)[0]

    def colorize_many(self, images: Sequence[Image.Image], temperature: float = DEFAULT_TEMPERATURE,
                      batch_size: int = 8, hints: Sequence[Sequence[dict[str, Any]] | None] | None = None,
                      saturation: float = 1.0) -> list[Image.Image]:
        """Colorize several images, running the network on up to `batch_size` of them at once;
        `hints` holds each image's hint list (or None)."""
        check_saturation(saturation)
        hints = list(hints) if hints is not None else [None] * len(images)
        if len(hints) != len(images):
            raise UserError(f"{len(hints)} hint lists for {len(images)} images")
        results: list[Image.Image] = []
        for start in range(0, len(images), batch_size):
            chunk = slice(start, start + batch_size)
            lightness, logits, maps = self._batch_logits(images[chunk], hints[chunk])
            results += [to_pil(colorize_logits(each, logits[i : i + 1], temperature, saturation,
                                               None if maps is None else maps[i : i + 1]))
                        for i, each in enumerate(lightness)]
        return results

    def suggest(self, image: Image.Image, x: float, y: float, k: int = 6,
                hints: Sequence[dict[str, Any]] | None = None, min_distance: float = 15.0) -> list[dict[str, Any]]:
        """The k likeliest distinct colours at pixel (x, y) of `image` given the hints so far, from the
        predicted distribution: [{"rgb": [r, g, b], "probability": p}, ...], likeliest first. Bins
        closer than `min_distance` (ab units) to a likelier pick are skipped, so the choices differ."""
        if not (0 <= x < image.width and 0 <= y < image.height):
            raise UserError(f"({x:g}, {y:g}) lies outside the {image.width}x{image.height} photo")
        (lightness,), logits, _ = self._batch_logits([image], [hints])
        row = min(int(y * logits.shape[-2] / image.height), logits.shape[-2] - 1)
        col = min(int(x * logits.shape[-1] / image.width), logits.shape[-1] - 1)
        probs = torch.softmax(logits[0, :, row, col].float().cpu(), dim=0)
        bins = ab_bins()
        pixel_l = lightness[0, 0, min(int(y), lightness.shape[-2] - 1), min(int(x), lightness.shape[-1] - 1)]
        # every bin's colour at this pixel's lightness; out-of-gamut bins clip, so several can look alike
        lab = torch.cat([pixel_l.expand(len(bins), 1), bins], dim=1)[:, :, None, None]
        rgb = (lab_to_rgb(lab)[:, :, 0, 0] * 255).round().int().tolist()
        picked: list[int] = []
        for index in probs.argsort(descending=True).tolist():
            if all((bins[index] - bins[other]).norm() >= min_distance and rgb[index] != rgb[other] for other in picked):
                picked.append(index)
            if len(picked) == k:
                break
        return [{"rgb": rgb[i], "probability": round(float(probs[i]), 4)} for i in picked]

    @staticmethod
    def lightness(image: Image.Image) -> torch.Tensor:
        """(1, 1, H, W) CIELAB L in [0, 100] of any PIL image; colour images are reduced to L."""
        if not isinstance(image, Image.Image):
            raise UserError(f"expected a PIL image, got {type(image).__name__}")
        check_size(image, "image")
        return rgb_to_lab(to_rgb_tensor(image))[:, :1]
