"""Training data: any folder of photos, scanned once for colour and readability, served as uint8 crops."""

from __future__ import annotations

import functools
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import v2
from tqdm import tqdm

from colorizer.errors import UserError
from colorizer.images import find_images

# Mean chroma (Lab units) below which a photo counts as having no colour: gray JPEGs sit at 0 to 0.7.
MIN_MEAN_CHROMA = 1.0
_SCAN_SIZE = 64


@dataclass
class Scan:
    """What a data folder holds: usable colour photos, and what was dropped and why."""

    colour: list[Path] = field(default_factory=list)
    gray: list[Path] = field(default_factory=list)
    corrupt: list[Path] = field(default_factory=list)

    def summary(self) -> str:
        return f"{len(self.colour)} colour photos; dropped {len(self.gray)} without colour, {len(self.corrupt)} unreadable"


def mean_chroma(image: Image.Image) -> float:
    """Mean sqrt(a^2 + b^2) of a small copy of the image: 0 for gray, well above 10 for most photos."""
    from colorizer.color import rgb_to_lab

    small = image.convert("RGB")
    small.thumbnail((_SCAN_SIZE, _SCAN_SIZE))
    rgb = torch.from_numpy(np.asarray(small, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
    ab = rgb_to_lab(rgb)[:, 1:]
    return float(ab.norm(dim=1).mean())


def _classify(path: Path, min_chroma: float) -> str:
    try:
        with Image.open(path) as image:
            image.draft("RGB", (_SCAN_SIZE * 2, _SCAN_SIZE * 2))  # JPEG decodes at reduced size: fast
            if image.mode in ("1", "L", "LA", "I", "I;16", "F"):
                return "gray"
            return "colour" if mean_chroma(image) >= min_chroma else "gray"
    except (OSError, SyntaxError, ValueError):
        return "corrupt"


def scan_folder(root: str | os.PathLike, limit: int | None = None, progress: bool = True,
                min_chroma: float = MIN_MEAN_CHROMA) -> Scan:
    """Find photos under `root` recursively and sort them into colour, gray (mean chroma below
    `min_chroma`) and corrupt."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: not a folder")
    paths = find_images(root)
    if limit and len(paths) > limit:
        paths = paths[:: len(paths) // limit][:limit]  # evenly spread, so every class folder is represented
    if not paths:
        raise UserError(f"{root}: no images found")
    scan = Scan()
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        kinds = pool.map(functools.partial(_classify, min_chroma=min_chroma), paths)
        for path, kind in tqdm(zip(paths, kinds), total=len(paths), desc=f"scan {root.name}", disable=not progress):
            getattr(scan, kind).append(path)
    for path in scan.corrupt:
        print(f"warning: skipping unreadable image {path}", file=sys.stderr)
    if not scan.colour:
        raise UserError(f"{root}: no colour photos among {len(paths)} images")
    return scan


class PhotoDataset(Dataset):
    """uint8 RGB crops (3, size, size): shorter side resized bilinearly to `size`, then cropped.

    Training crops at random and flips; evaluation takes the centre. Lab conversion and targets are
    computed later on the device for the whole batch, so workers only decode and resize.
    """

    def __init__(self, paths: list[Path], size: int, augment: bool):
        self.paths = paths
        crop = [v2.RandomCrop(size), v2.RandomHorizontalFlip()] if augment else [v2.CenterCrop(size)]
        self.transform = v2.Compose([v2.PILToTensor(), v2.Resize(size, antialias=True), *crop])

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        with Image.open(self.paths[index]) as image:
            return self.transform(image.convert("RGB"))
