"""Reading photos from disk or PIL into float RGB tensors, with the checks users need.

**Colour or monochrome** (`is_colour`): a photo counts as monochrome, and is treated as the gray
input it is, when its colour follows from its lightness alone: within each band of 5 units of
CIELAB L, 98 % of its pixels lie within MONOCHROME_TOLERANCE (4.5 Lab units) of their band's median
colour. Gray photos saved as RGB pass (every band's median is gray), and so do toned prints and
scans (sepia, selenium, cyanotype, paper yellowed with age), whose pixels share one hue with a
chroma that varies only with lightness; a colour photo has different colours at the same lightness.
The test runs on a copy at most 128 px on a side, which also evens out JPEG's chroma noise.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from colorizer.errors import UserError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}
MAX_PIXELS = 100_000_000
MONOCHROME_TOLERANCE = 4.5  # Lab units: toned JPEGs stay below 4.1 even at quality 60, colour photos above 4.7
_MONOCHROME_BANDS = 20  # of L, 5 units each
_MONOCHROME_SIZE = 128

# Gray levels of the high bit-depth modes PIL opens 16-bit and float files in ("I" holds 16-bit PNGs).
_HIGH_DEPTH_FULL_SCALE = {"I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0, "I": 65535.0, "F": 1.0}

# PIL's own bomb check fires later and as a warning; ours is an error with a clear message.
Image.MAX_IMAGE_PIXELS = None


def find_images(inputs: list[str | os.PathLike] | str | os.PathLike) -> list[Path]:
    """Image files among `inputs`, folders searched recursively, in a stable order."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    found: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found += sorted(p for p in item.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        elif item.is_file():
            found.append(item)
        else:
            raise UserError(f"{item}: no such file or folder")
    return found


def open_image(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode an image file fully, upright per its EXIF orientation; bad files raise UserError."""
    try:
        image = Image.open(path)
    except (UnidentifiedImageError, ValueError):
        raise UserError(f"{path}: not an image") from None
    except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
    except OSError as exc:
        raise UserError(f"{path}: truncated or corrupt image ({exc})") from None
    check_size(image, path, max_pixels)
    try:
        image.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise UserError(f"{path}: truncated or corrupt image ({exc})") from None
    return ImageOps.exif_transpose(image)


def check_size(image: Image.Image, name: object, max_pixels: int = MAX_PIXELS) -> None:
    width, height = image.size
    if width * height > max_pixels:
        raise UserError(f"{name}: {width}x{height} is over the limit of {max_pixels / 1e6:g} megapixels")
    if width == 0 or height == 0:
        raise UserError(f"{name}: empty image")


def to_rgb_tensor(image: Image.Image) -> torch.Tensor:
    """(1, 3, H, W) float32 sRGB in [0, 1] from any PIL mode, keeping 16-bit precision.

    Transparent pixels are composited on white: transparent areas often hold arbitrary colours.
    """
    if image.mode in _HIGH_DEPTH_FULL_SCALE:
        gray = np.asarray(image, dtype=np.float32) / _HIGH_DEPTH_FULL_SCALE[image.mode]
        rgb = np.repeat(np.clip(gray, 0, 1)[..., None], 3, axis=2)
    else:
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            rgba = image.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            image = Image.alpha_composite(background, rgba)
        rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None]


def to_pil(rgb: torch.Tensor) -> Image.Image:
    """(3, H, W) or (1, 3, H, W) float in [0, 1] -> 8-bit RGB PIL image."""
    rgb = rgb.squeeze(0) if rgb.dim() == 4 else rgb
    array = (rgb.clamp(0, 1) * 255.0).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array, "RGB")


def colour_spread(image: Image.Image) -> float:
    """How far (Lab units) the 98th percentile of a photo's pixels lies from the median colour of
    pixels of its lightness: about 0 for gray and toned monochrome, tens for colour photos."""
    from colorizer.color import rgb_to_lab

    if set(image.getbands()) <= {"L", "I", "F", "1", "A"}:
        return 0.0
    small = image.copy()
    small.thumbnail((_MONOCHROME_SIZE, _MONOCHROME_SIZE))
    lab = rgb_to_lab(to_rgb_tensor(small))[0].flatten(1)  # (3, pixels)
    band = (lab[0] / (100 / _MONOCHROME_BANDS)).long().clamp(0, _MONOCHROME_BANDS - 1)
    typical = torch.zeros(_MONOCHROME_BANDS, 2)
    for index in band.unique().tolist():
        typical[index] = lab[1:, band == index].median(dim=1).values
    distance = (lab[1:] - typical[band].T).norm(dim=0)
    return float(torch.quantile(distance, 0.98))


def is_colour(image: Image.Image, tolerance: float = MONOCHROME_TOLERANCE) -> bool:
    """Whether a photo has colours of its own (module docstring): False for gray and for toned
    monochrome such as sepia or cyanotype, which are colorized, and compared, as gray photos."""
    return colour_spread(image) > tolerance
