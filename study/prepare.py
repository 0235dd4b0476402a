"""Build a study: sample photos, colorize each with both models, write opaque stimuli, record them."""

from __future__ import annotations

import random
import secrets
import sys
from pathlib import Path
from typing import Callable, Mapping

from PIL import Image as PILImage
from PIL import ImageFilter, ImageOps
from sqlalchemy import select

from colorizer.atomic import atomic_path
from colorizer.errors import UserError
from study.db import database_session
from study.models import CATCH_MODEL, Image, Stimulus, Study, Trial

Colorize = Callable[[PILImage.Image], PILImage.Image]

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def find_images(root: str | Path) -> list[Path]:
    """Every image file under `root`, recursively, in a stable order (so a seed reproduces a sample)."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"image folder not found: {root}")
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def load_photo(path: Path) -> PILImage.Image | None:
    """The photo upright and in RGB, or None (with a warning) if it cannot be decoded."""
    try:
        with PILImage.open(path) as image:
            image.load()
            return ImageOps.exif_transpose(image).convert("RGB")
    except (OSError, SyntaxError, ValueError, PILImage.DecompressionBombError) as error:
        warn(f"skipping unreadable image {path}: {error}")
        return None


def sample_photos(paths: list[Path], count: int, rng: random.Random) -> list[tuple[Path, PILImage.Image]]:
    """`count` readable photos drawn uniformly at random; unreadable ones are skipped, not counted."""
    order = list(paths)
    rng.shuffle(order)
    photos = []
    for path in order:
        if len(photos) == count:
            break
        photo = load_photo(path)
        if photo is not None:
            photos.append((path, photo))
    if len(photos) < count:
        raise UserError(f"need {count} readable images but found only {len(photos)}")
    return photos


def degrade(image: PILImage.Image) -> PILImage.Image:
    """The catch trials' obviously worse side: heavily blurred, colours inverted."""
    radius = max(image.size) / 40
    return ImageOps.invert(image.filter(ImageFilter.GaussianBlur(radius)))


class StimulusWriter:
    """Writes stimuli under random names and remembers them, so a failed prepare leaves no files."""

    def __init__(self, media_dir: Path):
        self.media_dir = media_dir
        self.written: list[Path] = []

    def write(self, image: PILImage.Image) -> str:
        file_name = f"{secrets.token_hex(16)}.jpg"
        path = self.media_dir / file_name
        try:
            with atomic_path(path) as tmp:
                # 4:4:4 chroma: subsampling would blur exactly the colours participants are judging.
                image.save(tmp, format="JPEG", quality=95, subsampling=0)
        except OSError as error:
            raise UserError(f"cannot write stimulus {path}: {error.strerror or error}") from None
        self.written.append(path)
        return file_name

    def remove_all(self) -> None:
        for path in self.written:
            path.unlink(missing_ok=True)


def colorize_checked(model: str, colorize: Colorize, photo: PILImage.Image) -> PILImage.Image:
    result = colorize(photo)
    if result.size != photo.size:
        raise UserError(f"model {model} returned {result.size} for a {photo.size} photo")
    return result.convert("RGB")


def prepare_study(
    db_url: str,
    name: str,
    colorizers: Mapping[str, Colorize],
    images_dir: str | Path,
    media_dir: str | Path,
    n: int = 30,
    seed: int = 0,
    catch: int = 2,
) -> int:
    """Create study `name` with `n` model-vs-model trials and `catch` catch trials; return its id."""
    if len(colorizers) != 2:
        raise UserError(f"a study compares exactly two models, got {len(colorizers)}")
    if n < 1 or catch < 0:
        raise UserError("--n must be at least 1 and --catch at least 0")
    if not name.strip():
        raise UserError("the study needs a non-empty --name")
    (model_a, colorize_a), (model_b, colorize_b) = colorizers.items()
    if CATCH_MODEL in colorizers:
        raise UserError(f"{CATCH_MODEL!r} is reserved for catch stimuli")

    with database_session(db_url) as session:
        if session.scalar(select(Study.id).where(Study.name == name)) is not None:
            raise UserError(f"study {name!r} already exists in the database")

    rng = random.Random(seed)
    photos = sample_photos(find_images(images_dir), n + catch, rng)
    media_dir = Path(media_dir).resolve()
    writer = StimulusWriter(media_dir)
    study = Study(name=name, model_a=model_a, model_b=model_b, media_dir=str(media_dir), seed=seed)
    try:
        for index, (path, photo) in enumerate(photos, start=1):
            image = Image(source=str(path.resolve()), width=photo.width, height=photo.height)
            study.images.append(image)
            if index <= n:
                side_a = colorize_checked(model_a, colorize_a, photo)
                side_b = colorize_checked(model_b, colorize_b, photo)
                models = (model_a, model_b)
            else:
                # Alternate which model supplies the good side so catch trials favour neither.
                model, colorize = (model_a, colorize_a) if index % 2 else (model_b, colorize_b)
                side_a = colorize_checked(model, colorize, photo)
                side_b = degrade(side_a)
                models = (model, CATCH_MODEL)
            stimulus_a, stimulus_b = (
                Stimulus(model=model, file_name=writer.write(side), image=image)
                for model, side in zip(models, (side_a, side_b))
            )
            study.trials.append(
                Trial(image=image, stimulus_a=stimulus_a, stimulus_b=stimulus_b, is_catch=index > n)
            )
            print(f"prepared {index}/{len(photos)}: {path.name}", file=sys.stderr)
        with database_session(db_url) as session:
            session.add(study)
            session.commit()
        return study.id
    except BaseException:
        writer.remove_all()
        raise
