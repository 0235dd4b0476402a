"""Build a study: sample photos, colorize each with both models, write opaque stimuli, record them."""

from __future__ import annotations

import io
import random
import secrets
import sys
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
from PIL import Image as PILImage
from PIL import ImageFilter, ImageOps
from sqlalchemy import select

from colorizer.atomic import atomic_path
from colorizer.errors import UserError
from study.db import database_session
from colorizer.images import find_images
from study.models import CATCH_MODEL, Image, Stimulus, Study, Trial

Colorize = Callable[[PILImage.Image], PILImage.Image]

# Bisection steps when matching a degraded catch picture's file size to its partner's.
GRAIN_SEARCH_STEPS = 12


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


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


def jpeg_bytes(image: PILImage.Image) -> bytes:
    buffer = io.BytesIO()
    # 4:4:4 chroma: subsampling would blur exactly the colours participants are judging.
    image.save(buffer, format="JPEG", quality=95, subsampling=0)
    return buffer.getvalue()


def with_grain(image: PILImage.Image, sigma: float, seed: int) -> PILImage.Image:
    noise = np.random.default_rng(seed).normal(0, sigma, (image.height, image.width, 3))
    return PILImage.fromarray(np.clip(np.asarray(image, dtype=float) + noise, 0, 255).astype(np.uint8))


def degraded_jpeg(good: PILImage.Image, partner_bytes: int, rng: random.Random) -> bytes:
    """The JPEG file of `good`'s degraded version, with film grain added until it is about as large
    as its partner's file.

    A blurred picture compresses to a fraction of a sharp one, so without the grain "pick the larger
    file" passes every catch trial without looking. The target is drawn from 0.8 to 1.25 times the
    partner's size, so that which of the two is larger says nothing either."""
    degraded = degrade(good)
    target = partner_bytes * rng.uniform(0.8, 1.25)
    seed = rng.randrange(2**32)
    best = jpeg_bytes(degraded)
    low, high = 0.0, 64.0
    for _ in range(GRAIN_SEARCH_STEPS):
        if abs(len(best) - target) <= 0.05 * target:
            break
        sigma = (low + high) / 2
        best = jpeg_bytes(with_grain(degraded, sigma, seed))
        low, high = (sigma, high) if len(best) < target else (low, sigma)
    return best


class StimulusWriter:
    """Writes stimuli under random names and remembers them, so a failed prepare leaves no files."""

    def __init__(self, media_dir: Path):
        self.media_dir = media_dir
        self.written: list[Path] = []

    def write(self, content: bytes) -> str:
        file_name = f"{secrets.token_hex(16)}.jpg"
        path = self.media_dir / file_name
        try:
            with atomic_path(path) as tmp:
                tmp.write_bytes(content)
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
                models = (model_a, model_b)
                contents = [
                    jpeg_bytes(colorize_checked(model, colorize, photo)) for model, colorize in colorizers.items()
                ]
            else:
                # Alternate which model supplies the good side so catch trials favour neither.
                model, colorize = (model_a, colorize_a) if index % 2 else (model_b, colorize_b)
                models = (model, CATCH_MODEL)
                good = colorize_checked(model, colorize, photo)
                good_jpeg = jpeg_bytes(good)
                contents = [good_jpeg, degraded_jpeg(good, len(good_jpeg), rng)]
            stimulus_a, stimulus_b = (Stimulus(model=model, image=image) for model in models)
            # The two files in a random order: whichever is written first has the older file time.
            sides = list(zip((stimulus_a, stimulus_b), contents))
            secrets.SystemRandom().shuffle(sides)
            for stimulus, content in sides:
                stimulus.file_name = writer.write(content)
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
