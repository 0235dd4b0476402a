"""Colorizing photos with a trained model: `Colorizer.load("generic").colorize(image)`."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from PIL import Image

from colorizer import checkpoint
from colorizer.color import normalize_l, rgb_to_lab
from colorizer.decode import DEFAULT_TEMPERATURE, annealed_mean, colorize_lab, entropy, upsample
from colorizer.device import resolve_device
from colorizer.errors import UserError
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
        example = torch.zeros(1, 1, self.input_size, self.input_size, device=self.device, dtype=self.dtype)
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, yet still the fastest here
            frozen = torch.jit.freeze(torch.jit.trace(model, example.contiguous(memory_format=torch.channels_last)))
            frozen(example)  # the first calls run the graph optimisation passes
            frozen(example)
        return frozen

    @classmethod
    def load(cls, name_or_path: str | os.PathLike = DEFAULT_MODEL, device: str | torch.device = "cpu",
             precision: str = "auto", optimize: bool = False) -> "Colorizer":
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

    def logits(self, lightness: torch.Tensor) -> torch.Tensor:
        """Full-resolution L (N, 1, H, W) in [0, 100] -> bin logits at the model's working resolution."""
        return self._forward(self._working_size(lightness))

    def _working_size(self, lightness: torch.Tensor) -> torch.Tensor:
        # a square input like the official demo: colour is smooth, so the aspect change costs little
        size = (self.input_size, self.input_size)
        return F.interpolate(lightness, size=size, mode="bilinear", antialias=True, align_corners=False)

    @torch.inference_mode()
    def _forward(self, lightness: torch.Tensor) -> torch.Tensor:
        small = normalize_l(lightness.to(self.device)).to(self.dtype).contiguous(memory_format=torch.channels_last)
        return self.network(small).float()

    def predict(self, image: Image.Image, temperature: float = DEFAULT_TEMPERATURE) -> Prediction:
        lightness = self.lightness(image)
        logits = self.logits(lightness)
        rgb = colorize_lab(lightness, annealed_mean(logits, temperature).cpu())
        uncertainty = upsample(entropy(logits)[:, None].cpu(), tuple(lightness.shape[-2:]))[0, 0]
        return Prediction(to_pil(rgb), gray_image(lightness), uncertainty.clamp(0, 1))

    def colorize(self, image: Image.Image, temperature: float = DEFAULT_TEMPERATURE) -> Image.Image:
        """An RGB image of the input's size: the input's own lightness with predicted colour."""
        return self.colorize_many([image], temperature)[0]

    def colorize_many(self, images: Sequence[Image.Image], temperature: float = DEFAULT_TEMPERATURE,
                      batch_size: int = 8) -> list[Image.Image]:
        """Colorize several images, running the network on up to `batch_size` of them at once."""
        results: list[Image.Image] = []
        for start in range(0, len(images), batch_size):
            chunk = [self.lightness(image) for image in images[start : start + batch_size]]
            logits = self._forward(torch.cat([self._working_size(lightness) for lightness in chunk]))
            ab = annealed_mean(logits, temperature).cpu()
            results += [to_pil(colorize_lab(l, ab[i : i + 1])) for i, l in enumerate(chunk)]
        return results

    @staticmethod
    def lightness(image: Image.Image) -> torch.Tensor:
        """(1, 1, H, W) CIELAB L in [0, 100] of any PIL image; colour images are reduced to L."""
        if not isinstance(image, Image.Image):
            raise UserError(f"expected a PIL image, got {type(image).__name__}")
        check_size(image, "image")
        return rgb_to_lab(to_rgb_tensor(image))[:, :1]
