"""Colorizing photos with a trained model: `Colorizer.load("generic").colorize(image)`."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import statistics
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image

from colorizer import checkpoint, export
from colorizer import reference as reference_math
from colorizer.atomic import write_text
from colorizer.bins import colour_modes
from colorizer.color import lab_to_rgb, normalize_l, rgb_to_lab
from colorizer.decode import DEFAULT_TEMPERATURE, colorize_lab, colorize_logits, entropy, upsample
from colorizer.defaults import DEFAULT_STRENGTH
from colorizer.device import bf16_is_fast, resolve_device
from colorizer.errors import UserError
from colorizer.hints import (
    LOCAL_EDGE_COST,
    LOCAL_REACH,
    empty_hints,
    hint_nearness,
    local_hint_logits,
    nearest_hint,
    pool_hints,
    user_hint_map,
)
from colorizer.images import check_size, to_pil, to_rgb_tensor

BUNDLED_MODELS = ("generic", "dogs")
DEFAULT_MODEL = "generic"
BACKENDS = ("auto", "torch", "onnxruntime")
REFERENCE_SIDE = 256  # a reference photo is read at most this many pixels a side
MAX_SATURATION = 2.0  # colour strength: beyond twice the predicted chroma most colours leave sRGB anyway


def check_saturation(saturation: float) -> None:
    """A one-line error unless `saturation` is a number from 0 to MAX_SATURATION."""
    if isinstance(saturation, bool) or not isinstance(saturation, (int, float)) or not 0 <= saturation <= MAX_SATURATION:
        raise UserError(f"saturation must be a number from 0 to {MAX_SATURATION:g}, got {saturation!r}")


def bundled_model_path(name: str) -> Path:
    return Path(str(resources.files("colorizer") / "weights" / f"{name}.safetensors"))


def model_path(name_or_path: str | os.PathLike) -> Path:
    """The weights file of a bundled model's name, a checkpoint file or a run folder."""
    text = str(name_or_path)
    if text in BUNDLED_MODELS:
        path = bundled_model_path(text)
        if not path.is_file():
            raise UserError(f"bundled model {text!r} is missing from this installation ({path})")
        return path
    if Path(text).exists():
        return checkpoint.resolve(text)
    raise UserError(f"unknown model {text!r}: give {' or '.join(BUNDLED_MODELS)}, a checkpoint file or a run folder")


def machine_name() -> str:
    """A short hash of what decides which backend is faster here: the CPU, its threads and the libraries."""
    cpu = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), "") \
        if Path("/proc/cpuinfo").is_file() else ""
    described = [cpu, torch.get_num_threads(), torch.__version__, torch.backends.cpu.get_cpu_capability(),
                 os.environ.get("ONEDNN_MAX_CPU_ISA", "")]
    return hashlib.sha256(json.dumps(described).encode()).hexdigest()[:12]


def choose_backend(backend: str, device: torch.device, precision: str = "auto") -> str:
    """Which of "torch" and "onnxruntime" runs the network. "auto": PyTorch on a GPU, in bf16, or on a CPU
    with native bf16; elsewhere ONNX Runtime in float32 where it is installed, which is faster there
    than PyTorch's fp32 paths (docs/benchmarks.md). With native bf16 and `optimize`, the Colorizer then
    times both on this CPU once (`Colorizer._measured_backend`)."""
    if backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r}: give {', '.join(BACKENDS)}")
    if backend == "onnxruntime":
        if device.type != "cpu":
            raise UserError(f"the onnxruntime backend runs on the CPU, not {device}: use backend torch there")
        if precision == "bf16":
            raise UserError("the onnxruntime backend computes in fp32: use precision fp32 or auto, or backend torch")
        if not export.available():
            raise UserError(export.MISSING)
        return backend
    if backend == "torch" or device.type != "cpu" or precision == "bf16" or bf16_is_fast(device):
        return "torch"
    return "onnxruntime" if export.available() else "torch"


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

    def __init__(self, model: torch.nn.Module | export.OnnxRuntimeNetwork, config: dict[str, Any],
                 device: str | torch.device = "cpu", precision: str = "auto", optimize: bool = False,
                 name: str | None = None, backend: str = "torch",
                 hint_reach: float | None = LOCAL_REACH):
        self.device = resolve_device(device)
        # how far (output cells, geodesically) a hint's colour reaches (colorizer/hints.py
        # `local_hint_logits`); None leaves it to the network, which spreads one hint over the photo
        self.hint_reach, self.hint_edge_cost = hint_reach, LOCAL_EDGE_COST
        self.config = config
        self.name = name or config.get("name", "model")
        self.input_size = int(config.get("input_size", 224))
        if isinstance(model, export.OnnxRuntimeNetwork) and backend != "onnxruntime":
            raise UserError(f"model {self.name!r} is an ONNX file, which runs on the onnxruntime backend only")
        self.backend = choose_backend(backend, self.device, precision)
        if (backend == "auto" and optimize and self.backend == "torch" and self.device.type == "cpu" and precision == "auto"
                and export.available()):
            self.backend = self._measured_backend(model)
        if self.backend == "onnxruntime":  # the session optimises its graph itself: `optimize` has nothing to add
            self.dtype = torch.float32
            self.network = model if isinstance(model, export.OnnxRuntimeNetwork) else export.runtime_network(model, config)
            return
        bf16 = precision == "bf16" or (precision == "auto" and bf16_is_fast(self.device))
        self.dtype = torch.bfloat16 if bf16 else torch.float32
        # channels_last lets oneDNN / cuDNN pick their fastest convolution kernels; whole-model bf16
        # (not autocast) avoids re-casting every weight on every call
        self.network = model.eval().to(self.device, self.dtype).to(memory_format=torch.channels_last)
        if optimize:
            self.network = self._frozen_graph(self.network)

    def _measured_backend(self, model: torch.nn.Module) -> str:
        """On a CPU with native bf16, the faster of the frozen bf16 graph and ONNX Runtime in float32 for
        this network here, which depends on the network (docs/benchmarks.md): timed once, then kept in
        the export cache under the weights' and the machine's names."""
        record = export.cache_dir() / "choices" / f"{export.model_digest(model, self.config)}-{machine_name()}.json"
        with contextlib.suppress(OSError, ValueError, KeyError):
            return json.loads(record.read_text())["backend"]
        size = self.input_size
        inputs = (torch.zeros(1, 1, size, size),) + ((empty_hints(1, size, size),) if self.takes_hints else ())
        seconds = {}
        for backend in ("torch", "onnxruntime"):
            candidate = Colorizer(copy.deepcopy(model), self.config, self.device, optimize=True, backend=backend)
            times = []
            for _ in range(4):  # the first call of either still sets things up
                start = time.perf_counter()
                candidate._forward(*inputs)
                times.append(time.perf_counter() - start)
            seconds[backend] = statistics.median(times[1:])
        choice = min(seconds, key=seconds.get)
        with contextlib.suppress(OSError):
            write_text(record, json.dumps({"backend": choice, "seconds": seconds}))
        return choice

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
             precision: str = "auto", optimize: bool = False, backend: str = "auto",
             hint_reach: float | None = LOCAL_REACH) -> Colorizer:
        """A bundled model by name ("generic", "dogs"), a checkpoint file (.safetensors/.json), a run folder
        or an ONNX file made by `colorizer export`.

        `device` is "cpu", "cuda", "cuda:N" or "auto" (a CUDA GPU where there is one);
        `precision` is "auto" (bf16 where the device computes it natively), "bf16" or "fp32";
        `optimize` freezes the network into a faster graph (a few seconds once; see `_frozen_graph`);
        `backend` is "torch", "onnxruntime" (CPU, fp32; exported once and cached, see colorizer/export.py)
        or "auto" (see `choose_backend`); `hint_reach` is how far a hint's colour carries (see `__init__`).
        """
        name = str(name_or_path) if str(name_or_path) in BUNDLED_MODELS else Path(name_or_path).stem
        if str(name_or_path).endswith(".onnx") and Path(name_or_path).is_file():
            data, config = export.read(name_or_path)
            backend = "onnxruntime" if backend == "auto" else backend
            return cls(export.OnnxRuntimeNetwork(data), config, device=device, precision=precision, name=name, backend=backend,
                       hint_reach=hint_reach)
        model, config = checkpoint.load_model(model_path(name_or_path))
        return cls(model, config, device=device, precision=precision, optimize=optimize, name=name, backend=backend,
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
        return self.hint_map_of_size(image.size, hints)

    def hint_map_of_size(self, size: tuple[int, int], hints: Sequence[dict[str, Any]] | None) -> torch.Tensor | None:
        """`hint_map` for hints on a picture of `size` (width, height), such as a video frame."""
        if not hints:
            return None
        self.require_hints()
        return user_hint_map(hints, size, (self.input_size, self.input_size),
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
                 hints: Sequence[dict[str, Any]] | None = None, reference: Image.Image | None = None,
                 palette: Any = None, strength: float = DEFAULT_STRENGTH, saturation: float = 1.0) -> Image.Image:
        """An RGB image of the input's size: the input's own lightness with predicted colour.

        `hints` (hint-capable models): [{"x": 120, "y": 40, "rgb": [200, 30, 30]}, ...] in the photo's
        pixels and 0-255 colour, optional "radius" in pixels; the network carries each hint's colour
        over the region it belongs to, and no further (see `hint_reach`). `reference` (a colour image) and `palette` (["#8b4513",
        "#87ceeb:0.5", (46, 139, 87), ...]) draw the colours towards theirs by `strength` in [0, 1]
        (colorizer/reference.py); hints win near where they are. `saturation` scales the colour's
        strength: 0 gray, 1 as predicted, up to MAX_SATURATION."""
        if reference is None and palette is None:
            return self.colorize_many([image], temperature, hints=[hints], saturation=saturation)[0]
        return self.colorize_guided(image, self.guide(reference, palette), temperature, hints, strength, saturation)

    def colorize_guided(self, image: Image.Image, guide: reference_math.Guide, temperature: float = DEFAULT_TEMPERATURE,
                        hints: Sequence[dict[str, Any]] | None = None, strength: float = DEFAULT_STRENGTH,
                        saturation: float = 1.0) -> Image.Image:
        """`colorize` with a guide made once by `guide` (for many photos or frames with one reference)."""
        check_saturation(saturation)
        (lightness,), logits, hint_maps = self._batch_logits([image], [hints])
        logits = self.guided(lightness, logits, guide, strength, hint_maps)
        return to_pil(colorize_logits(lightness, logits, temperature, saturation, hint_maps))

    def guide(self, reference: Image.Image | None = None, palette: Any = None) -> reference_math.Guide:
        """What a reference photo and/or a palette say about colours, computed once (a clip reuses it)."""
        if reference is None and palette is None:
            raise UserError("give a reference photo or a palette")
        from_reference = from_palette = None
        if reference is not None:
            if not isinstance(reference, Image.Image):
                raise UserError(f"expected a PIL image as the reference, got {type(reference).__name__}")
            check_size(reference, "reference")
            small = reference.copy()
            small.thumbnail((REFERENCE_SIDE, REFERENCE_SIDE))  # its colours, not its detail, count
            lab = rgb_to_lab(to_rgb_tensor(small))
            if reference_math.chroma_share(lab[:, 1:]) < reference_math.MIN_CHROMA_SHARE:
                raise UserError("the reference is gray: it carries no colour to take")
            # an exported ONNX graph takes the working size only; PyTorch takes the smaller, faster one
            side = min(self.input_size, reference_math.REFERENCE_INPUT or self.input_size)
            if self.backend == "onnxruntime":
                side = self.input_size
            small_l = F.interpolate(lab[:, :1], size=(side, side), mode="bilinear", antialias=True, align_corners=False)
            from_reference = reference_math.reference_guide(self._forward(small_l), lab[:, 1:])
        if palette is not None:
            colours, weights = reference_math.parse_palette(palette)
            ab = rgb_to_lab(torch.tensor(colours, dtype=torch.float32)[:, :, None, None] / 255)[:, 1:, 0, 0]
            from_palette = reference_math.Guide(reference_math.palette_histogram(ab, torch.tensor(weights)))
        return reference_math.combine(from_reference, from_palette)

    def guided(self, lightness: torch.Tensor, logits: torch.Tensor, guide: reference_math.Guide, strength: float,
               hint_map: torch.Tensor | None = None) -> torch.Tensor:
        """`logits` of the photo with full-resolution L `lightness` drawn towards `guide`, but not near hints."""
        strength = reference_math.check_strength(strength)
        nearness = None
        if hint_map is not None and strength > 0:
            small = normalize_l(self.to_working_size(lightness))
            distance = nearest_hint(small, pool_hints(hint_map, small.shape[-1] // logits.shape[-1]))[1]
            nearness = reference_math.hint_nearness(distance)
        prior = torch.tensor(self.config["prior"], dtype=torch.float32)
        return reference_math.guided_logits(logits, guide, prior, strength, nearness)

    def alternatives(self, image: Image.Image, k: int = 4, temperature: float = DEFAULT_TEMPERATURE,
                     hints: Sequence[dict[str, Any]] | None = None, reference: Image.Image | None = None,
                     palette: Any = None, strength: float = DEFAULT_STRENGTH) -> list[Image.Image]:
        """k distinct plausible colorizations (RGB, the input's size), the model's likeliest first: each picks
        one colour mode for each colour segment of the photo (colorizer/reference.py)."""
        guide = self.guide(reference, palette) if reference is not None or palette is not None else None
        return self.alternatives_guided(image, k, guide, temperature, hints, strength)

    def alternatives_guided(self, image: Image.Image, k: int = 4, guide: reference_math.Guide | None = None,
                            temperature: float = DEFAULT_TEMPERATURE, hints: Sequence[dict[str, Any]] | None = None,
                            strength: float = DEFAULT_STRENGTH) -> list[Image.Image]:
        """`alternatives` with a guide made once by `guide`, or none."""
        k = reference_math.check_alternatives(k)
        (lightness,), logits, hint_maps = self._batch_logits([image], [hints])
        if guide is not None:
            logits = self.guided(lightness, logits, guide, strength, hint_maps)
        return [to_pil(colorize_logits(lightness, each, temperature, hints=hint_maps))
                for each in reference_math.alternative_logits(logits, k)]

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

    def colorize_video(self, src: str | os.PathLike, dst: str | os.PathLike, *, temperature: float = DEFAULT_TEMPERATURE,
                       hints: Sequence[dict[str, Any]] | None = None, temporal: bool = True, progress=None,
                       **options: Any) -> dict[str, Any]:
        """Colorize a video file (or, with fps=..., a folder of frames) into `dst`: same frames, timestamps,
        size, rotation and audio, H.264 by default. Streams, so memory stays flat whatever the length.

        `hints`: [{"frame": 0, "x": .., "y": .., "rgb": [..]}] on keyframes (the frame as shown); each follows
        its object along the optical flow until lost. `temporal`: carry colour along the flow (no flicker);
        False colours each frame alone. `progress(done, total_or_None)` is called per frame. Further
        options (codec, crf, fps, batch_size): colorizer.video.colorize_video. Returns {"frames", "cuts",
        "hinted_frames"}."""
        from colorizer.video import colorize_video

        return colorize_video(self, src, dst, temperature=temperature, hints=hints, temporal=temporal,
                              progress=progress, **options)

    def suggest(self, image: Image.Image, x: float, y: float, k: int = 6,
                hints: Sequence[dict[str, Any]] | None = None, min_distance: float = 15.0) -> list[dict[str, Any]]:
        """The k likeliest distinct colours at pixel (x, y) of `image` given the hints so far:
        [{"rgb": [r, g, b], "probability": p}, ...], likeliest first. Each is a mode of the predicted
        distribution (`bins.colour_modes`: gray as one mode, the other colours by hue) with its total
        probability; a mode closer than `min_distance` (ab units) to a likelier one, or looking the same
        at this lightness, is merged into it, so the choices differ."""
        if not (0 <= x < image.width and 0 <= y < image.height):
            raise UserError(f"({x:g}, {y:g}) lies outside the {image.width}x{image.height} photo")
        (lightness,), logits, _ = self._batch_logits([image], [hints])
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
