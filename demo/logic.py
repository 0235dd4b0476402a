"""What the demo page does, free of Gradio: read an upload, colorize it, and build the views beside it."""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from colorizer.errors import UserError
from colorizer.images import open_image, to_pil, to_rgb_tensor
from colorizer.infer import BUNDLED_MODELS, Colorizer, bundled_model_path

MAX_MEGAPIXELS = 40  # a 40 MP photo already takes seconds and gigabytes; a shared demo refuses more
COLOUR_TOLERANCE = 6 / 255  # JPEG noise leaves a gray photo saved as RGB with a little chroma


def find_models(models_dir: str | os.PathLike | None = None) -> dict[str, str]:
    """Menu name -> what Colorizer.load takes: the bundled models present, then every checkpoint in `models_dir`."""
    found = {name: name for name in BUNDLED_MODELS if bundled_model_path(name).is_file()}
    root = Path(models_dir) if models_dir else None
    if root and root.is_dir():
        for weights in sorted(root.rglob("*.safetensors")):
            if weights.with_suffix(".json").is_file():  # optimizer.safetensors and strays have none
                name = weights.relative_to(root).with_suffix("").as_posix().removesuffix("/model")
                found.setdefault(name, str(weights))
    return found


class Models:
    """Colorizers by menu name, each loaded on first use and kept."""

    def __init__(self, sources: Mapping[str, Colorizer | str | os.PathLike]):
        if not sources:
            raise UserError("no model to offer: the bundled models are missing and no checkpoint was found")
        self.sources = dict(sources)
        self.loaded: dict[str, Colorizer] = {}
        self.lock = threading.Lock()
        self.batchers: dict[str, Batcher] = {}

    @property
    def names(self) -> list[str]:
        return list(self.sources)

    @property
    def default(self) -> str:
        return next((name for name in BUNDLED_MODELS if name in self.sources), self.names[0])

    def __getitem__(self, name: str) -> Colorizer:
        with self.lock:  # two first requests must not load the same checkpoint twice
            if name not in self.loaded:
                if name not in self.sources:
                    raise UserError(f"unknown model {name!r}; choose one of {', '.join(self.sources)}")
                source = self.sources[name]
                self.loaded[name] = source if isinstance(source, Colorizer) else Colorizer.load(source, optimize=True)
            return self.loaded[name]

    def compared(self, name: str) -> list[str]:
        """The models shown side by side: the bundled ones, and the chosen one if it is not among them."""
        bundled = [other for other in BUNDLED_MODELS if other in self.sources]
        return bundled if name in bundled else bundled + [name]

    def colorize_batched(self, name: str, image: Image.Image, temperature: float) -> Image.Image:
        """One colorization; requests that arrive while the network is busy run together as one batch."""
        colorizer = self[name]  # loaded, or an unknown name refused, before it gets a batcher
        with self.lock:
            if name not in self.batchers:
                self.batchers[name] = Batcher(partial(colorize_jobs, colorizer))
            batcher = self.batchers[name]
        return batcher((image, temperature))


def colorize_jobs(colorizer: Colorizer, jobs: Sequence[tuple[Image.Image, float]]) -> list[Image.Image]:
    """Colorize (image, temperature) jobs, one network pass per temperature."""
    results: dict[int, Image.Image] = {}
    for temperature in {t for _, t in jobs}:
        indices = [i for i, (_, t) in enumerate(jobs) if t == temperature]
        images = colorizer.colorize_many([jobs[i][0] for i in indices], temperature, batch_size=len(indices))
        results.update(zip(indices, images))
    return [results[i] for i in range(len(jobs))]


class Batcher:
    """Calls `run(jobs)` once for all the jobs that queued up while its previous call was running.

    Gradio's own batch=True fails every request of a batch when one upload in it is bad; here each
    request reads and checks its upload alone, and only good jobs wait together for the network.
    """

    def __init__(self, run: Callable[[list], list], max_size: int = 8):
        self.run, self.max_size = run, max_size
        self.queue_lock, self.run_lock = threading.Lock(), threading.Lock()
        self.pending: list[dict] = []

    def __call__(self, job):
        slot = {"job": job}
        with self.queue_lock:
            self.pending.append(slot)
        with self.run_lock:
            if "result" not in slot and "error" not in slot:  # no earlier caller took it along
                with self.queue_lock:
                    batch, self.pending = self.pending[: self.max_size], self.pending[self.max_size :]
                try:
                    for item, result in zip(batch, self.run([item["job"] for item in batch]), strict=True):
                        item["result"] = result
                except Exception as exc:  # noqa: BLE001  (handed to every caller of the batch)
                    for item in batch:
                        item["error"] = exc
        if "error" in slot:
            raise slot["error"]
        return slot["result"]


@dataclass
class Upload:
    image: Image.Image  # decoded, upright
    colour: bool  # a colour photo, reduced to gray before colorizing
    notes: list[str] = field(default_factory=list)  # what reading it did, for the page to say


def read_upload(path: str | os.PathLike) -> Upload:
    """Decode an uploaded file, or raise UserError with a message a visitor understands."""
    name = Path(path).name
    try:
        image = open_image(path, max_pixels=MAX_MEGAPIXELS * 1_000_000)
    except UserError as exc:  # the server's temporary path means nothing to a visitor
        raise UserError(str(exc).replace(str(path), name)) from None
    with Image.open(path) as probe:  # open_image returns a plain copy: frames and orientation live in the file
        frames, orientation = getattr(probe, "n_frames", 1), probe.getexif().get(0x0112, 1)
    notes = []
    if image.mode == "CMYK":
        notes.append("CMYK photo: converted to RGB")
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        notes.append("16-bit photo: read at full precision")
    if has_transparency(image):
        notes.append("transparent areas filled with white")
    if frames > 1:
        notes.append(f"animated image: colorized its first frame of {frames}")
    if orientation != 1:
        notes.append("turned upright as its EXIF orientation says")
    colour = is_colour(image)
    if colour:
        notes.append("colour photo: reduced to gray first; see «Compare with the truth»")
    return Upload(image, colour, notes)


def has_transparency(image: Image.Image) -> bool:
    """Whether some pixel is not opaque (webcam shots come as RGBA with every pixel opaque)."""
    if not image.has_transparency_data:
        return False
    alpha = image.getchannel("A") if "A" in image.getbands() else image.convert("RGBA").getchannel("A")
    return alpha.getextrema()[0] < 255


def is_colour(image: Image.Image, tolerance: float = COLOUR_TOLERANCE) -> bool:
    """Whether a photo has colour worth comparing against: gray files saved as RGB do not."""
    if set(image.getbands()) <= {"L", "I", "F", "1", "A"}:
        return False
    small = image.copy()
    small.thumbnail((256, 256))
    rgb = to_rgb_tensor(small)[0]
    spread = rgb.amax(0) - rgb.amin(0)
    return torch.quantile(spread.flatten(), 0.99).item() > tolerance


def as_rgb(image: Image.Image) -> Image.Image:
    """Any mode as the 8-bit RGB a browser shows, transparency on white as the colorizer sees it."""
    return to_pil(to_rgb_tensor(image))


def uncertainty_image(uncertainty: torch.Tensor, colormap: str = "magma") -> Image.Image:
    """(H, W) entropy in [0, 1] -> a colour-mapped RGB image (dark: sure, bright: many colours plausible)."""
    from matplotlib import colormaps  # only the demo needs matplotlib, and it is slow to import

    lut = (colormaps[colormap](np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8)
    return Image.fromarray(lut[(uncertainty.clamp(0, 1) * 255).round().byte().numpy()], "RGB")


def side_by_side(images: Mapping[str, Image.Image], gap: int = 8, max_side: int = 1024) -> Image.Image:
    """Equal-size images in a row, each captioned with its name above it and shrunk to at most `max_side`."""
    width, height = next(iter(images.values())).size
    scale = min(1.0, max_side / max(width, height))  # a view to compare, not the result: keep it light
    width, height = max(1, round(width * scale)), max(1, round(height * scale))
    font = ImageFont.load_default(size=max(12, min(width, height) // 16))
    band = int(font.size * 1.6)
    sheet = Image.new("RGB", (len(images) * (width + gap) - gap, height + band), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (name, image) in enumerate(images.items()):
        left = i * (width + gap)
        sheet.paste(image.resize((width, height), Image.BILINEAR), (left, band))
        draw.text((left + width / 2, band / 2), name, fill="black", font=font, anchor="mm")
    return sheet


def save_png(folder: str | os.PathLike, image: Image.Image, name: str, keep_s: float = 60) -> str:
    """A lossless PNG in `folder`, fast to write, for Gradio to copy; files older than `keep_s` are removed.

    Gradio would encode PIL images at zlib level 6: four times slower than level 1 for a 10% smaller file.
    """
    folder = Path(folder)
    for old in folder.glob("*.png"):
        with contextlib.suppress(FileNotFoundError):  # a concurrent request may have removed it first
            if time.time() - old.stat().st_mtime > keep_s:
                old.unlink()
    path = folder / f"{name}-{uuid.uuid4().hex[:12]}.png"
    image.save(path, compress_level=1)
    return str(path)


@dataclass
class Views:
    """Everything the page shows for one upload."""

    result: Image.Image  # the colorization at full resolution
    gray: Image.Image  # what the model saw
    uncertainty: Image.Image
    compared: Image.Image  # the models side by side
    original: Image.Image | None  # the colour photo, when one was given
    notes: list[str]


def colorize_views(models: Models, path: str | os.PathLike, name: str, temperature: float) -> Views:
    upload = read_upload(path)
    prediction = models[name].predict(upload.image, temperature)
    others = {other: prediction.image if other == name else models[other].colorize(upload.image, temperature)
              for other in models.compared(name)}
    return Views(
        result=prediction.image,
        gray=prediction.gray,
        uncertainty=uncertainty_image(prediction.uncertainty),
        compared=side_by_side(others),
        original=as_rgb(upload.image) if upload.colour else None,
        notes=upload.notes,
    )
