"""Training data: any folder of photos, scanned once for colour and readability, served as uint8 crops."""

from __future__ import annotations

import functools
import math
import os
import sys
import zlib
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

    @classmethod
    def merged(cls, scans: list[Scan]) -> Scan:
        return cls(*([path for scan in scans for path in getattr(scan, kind)] for kind in ("colour", "gray", "corrupt")))

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
        for path, kind in tqdm(zip(paths, kinds, strict=True), total=len(paths), desc=f"scan {root.name}", disable=not progress):
            getattr(scan, kind).append(path)
    for path in scan.corrupt:
        print(f"warning: skipping unreadable image {path}", file=sys.stderr)
    if not scan.colour:
        raise UserError(f"{root}: no colour photos among {len(paths)} images")
    return scan


def hold_out(paths: list[Path], root: str | os.PathLike, fraction: float) -> tuple[list[Path], list[Path]]:
    """Split photo paths into (train, held out), about `fraction` held out.

    Each photo's side follows from a hash of its path under `root` alone, so it stays put when photos
    are added, dropped or limited, on every run and machine; `fraction` lies in (0, 0.5]."""
    train, held = [], []
    for path in paths:
        (held if zlib.crc32(path.relative_to(root).as_posix().encode()) < fraction * 2**32 else train).append(path)
    if not train or not held:
        raise UserError(f"--holdout {fraction:g} leaves {len(train)} of {len(paths)} photos to train on "
                        f"and {len(held)} to validate on")
    return train, held


class PhotoDataset(Dataset):
    """uint8 RGB crops (3, size, size) of photos.

    Evaluation resizes the shorter side to `size` and takes the centre. Training crops at random and
    flips: with `min_crop_area` below 1 each crop covers a random share of the photo between that and
    all of it, at a random aspect ratio (3:4 to 4:3), resized to `size`. The zoom is what lets a few
    thousand photos last a dozen epochs without the network learning them by heart, and it shows the
    network objects at the larger scales that inference at a working size above `size` presents. With
    `min_crop_area` 1 a crop is a `size` square of the photo resized to a shorter side of `size`.
    Lab conversion and targets are computed later on the device for the whole batch, so workers only
    decode and resize.
    """

    def __init__(self, paths: list[Path], size: int, augment: bool, min_crop_area: float = 1.0):
        if not 0 < min_crop_area <= 1:
            raise UserError(f"the smallest crop area must be a fraction in (0, 1], got {min_crop_area}")
        self.paths = paths
        # a zoomed crop keeps its detail if the photo is decoded at up to 1 / sqrt(area) times `size`
        self.decode_size = math.ceil(size / math.sqrt(min_crop_area)) if augment else size
        if not augment:
            steps = [v2.Resize(size, antialias=True), v2.CenterCrop(size)]
        elif min_crop_area < 1:
            steps = [v2.RandomResizedCrop(size, scale=(min_crop_area, 1.0), antialias=True), v2.RandomHorizontalFlip()]
        else:
            steps = [v2.Resize(size, antialias=True), v2.RandomCrop(size), v2.RandomHorizontalFlip()]
        self.transform = v2.Compose([v2.PILToTensor(), *steps])

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        with Image.open(self.paths[index]) as image:
            # large photos shrink first (JPEGs decode at a reduced scale): crops never need their full size
            image.draft("RGB", (self.decode_size, self.decode_size))
            image = image.convert("RGB")
        if (factor := min(image.size) // self.decode_size) > 1:
            image = image.reduce(factor)
        return self.transform(image)
