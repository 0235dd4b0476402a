"""Build a study: sample photos, make each condition's picture of them (colorized here, the original,
or imported), write opaque stimuli, record them."""

from __future__ import annotations

import io
import itertools
import random
import secrets
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from PIL import ImageFilter, ImageOps
from sqlalchemy import select

from colorizer.atomic import atomic_path
from colorizer.errors import UserError
from colorizer.images import find_images
from study.db import database_session
from study.models import CATCH_MODEL, TRUTH, Image, Stimulus, Study, Trial
from study.protocol import Protocol

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


def check_conditions(models: list[str], truth: bool, imports: Mapping[str, Path]) -> list[str]:
    """Every condition of the study in order (models, truth, imports), or a one-line UserError."""
    conditions = [*models, *([TRUTH] if truth else []), *imports]
    if len(conditions) < 2:
        raise UserError(f"a study compares at least two conditions (models, --truth, --import), got {len(conditions)}")
    if any(not condition.strip() or len(condition) > 200 for condition in conditions):
        raise UserError("condition names must be 1 to 200 characters")
    if len(set(conditions)) != len(conditions):
        raise UserError(f"condition names must differ, got {', '.join(conditions)}")
    if CATCH_MODEL in conditions:
        raise UserError(f"{CATCH_MODEL!r} is reserved for catch stimuli")
    if TRUTH in [*models, *imports]:
        raise UserError(f"{TRUTH!r} is reserved for the original photo (--truth)")
    return conditions


def import_files(imports: Mapping[str, Path], photos: list[tuple[Path, PILImage.Image]]) -> dict[str, dict[str, Path]]:
    """For each import, its file for each sampled photo, matched by file stem: {import: {stem: path}}.
    A missing or ambiguous file is a one-line UserError naming them all, before anything is written."""
    stems = [path.stem for path, _ in photos]
    repeated = sorted({stem for stem in stems if stems.count(stem) > 1})
    if imports and repeated:
        raise UserError(f"sampled photos share the file stems {', '.join(repeated)}: imports cannot be matched to them")
    matched = {}
    for name, folder in imports.items():
        by_stem: dict[str, list[Path]] = {}
        for path in find_images(folder):
            by_stem.setdefault(path.stem, []).append(path)
        missing = [stem for stem in stems if stem not in by_stem]
        if missing:
            raise UserError(
                f"import {name} ({folder}) has no file for {len(missing)} sampled photos: {', '.join(missing)}"
            )
        ambiguous = [stem for stem in stems if len(by_stem[stem]) > 1]
        if ambiguous:
            raise UserError(f"import {name} ({folder}) has several files for {', '.join(ambiguous)}")
        matched[name] = {stem: by_stem[stem][0] for stem in stems}
    return matched


def imported_picture(name: str, path: Path, photo: PILImage.Image) -> PILImage.Image:
    """An import's colorization at the photo's size: tools that resize keep the aspect ratio, and the
    two sides of a pair must be shown alike; a different shape means the file belongs to another photo."""
    picture = load_photo(path)
    if picture is None:
        raise UserError(f"import {name}: cannot read {path}")
    if picture.size == photo.size:
        return picture
    if abs(picture.width / picture.height - photo.width / photo.height) > 0.01 * photo.width / photo.height:
        raise UserError(f"import {name}: {path} is {picture.size[0]}x{picture.size[1]}, "
                        f"not the shape of its photo ({photo.width}x{photo.height})")
    return picture.resize(photo.size, PILImage.Resampling.LANCZOS)


def prepare_study(
    db_url: str,
    name: str,
    colorizers: Mapping[str, Colorize],
    images_dir: str | Path,
    media_dir: str | Path,
    n: int = 30,
    seed: int = 0,
    catch: int = 2,
    truth: bool = False,
    imports: Mapping[str, str | Path] | None = None,
    practice: int = 0,
    protocol: Protocol | None = None,
) -> int:
    """Create study `name` and return its id.

    Its conditions are the `colorizers` (models, run here), `truth` (the original colour photo) and
    the `imports` (name: folder of colorizations made elsewhere, matched to the photos by file stem).
    Each of the `n` photos gets one trial per pair of conditions; `catch` more photos get a catch
    trial each (a model's colorization against a degraded copy) and `practice` more a practice trial
    between two conditions made here. Two models and no extras is the paper's study.
    """
    imports = {import_name: Path(folder) for import_name, folder in (imports or {}).items()}
    conditions = check_conditions(list(colorizers), truth, imports)
    made_here = [*colorizers, *([TRUTH] if truth else [])]
    if n < 1 or catch < 0 or practice < 0:
        raise UserError("--n must be at least 1, --catch and --practice at least 0")
    if catch and not colorizers:
        raise UserError("catch pairs need a model: pass --catch 0 or a model")
    if practice and len(made_here) < 2:
        raise UserError("practice trials need two conditions made here (models or --truth)")
    if not name.strip():
        raise UserError("the study needs a non-empty --name")
    protocol = (protocol or Protocol()).check()

    with database_session(db_url) as session:
        if session.scalar(select(Study.id).where(Study.name == name)) is not None:
            raise UserError(f"study {name!r} already exists in the database")

    rng = random.Random(seed)
    photos = sample_photos(find_images(images_dir), n + catch + practice, rng)
    imported = import_files(imports, photos[:n])
    media_dir = Path(media_dir).resolve()
    writer = StimulusWriter(media_dir)
    models = list(colorizers)
    study = Study(
        name=name, model_a=conditions[0], model_b=conditions[1], conditions=conditions,
        media_dir=str(media_dir), seed=seed, exposure_ms=protocol.exposure_ms, question=protocol.question,
        consent_markdown=protocol.consent_markdown, completion_url=protocol.completion_url,
        max_participants=protocol.max_participants,
    )

    def picture(condition: str, path: Path, photo: PILImage.Image) -> PILImage.Image:
        if condition == TRUTH:
            return photo
        if condition in imported:
            return imported_picture(condition, imported[condition][path.stem], photo)
        return colorize_checked(condition, colorizers[condition], photo)

    try:
        for index, (path, photo) in enumerate(photos):
            image = Image(source=str(path.resolve()), width=photo.width, height=photo.height)
            study.images.append(image)
            if index < n:
                shown = {condition: jpeg_bytes(picture(condition, path, photo)) for condition in conditions}
                pairs = list(itertools.combinations(conditions, 2))
            elif index < n + catch:
                # The models take turns supplying the intact side, so catch trials favour none.
                model = models[(index - n) % len(models)]
                good = picture(model, path, photo)
                good_jpeg = jpeg_bytes(good)
                shown = {model: good_jpeg, CATCH_MODEL: degraded_jpeg(good, len(good_jpeg), rng)}
                pairs = [(model, CATCH_MODEL)]
            else:
                local_pairs = list(itertools.combinations(made_here, 2))
                pair = local_pairs[(index - n - catch) % len(local_pairs)]
                shown = {condition: jpeg_bytes(picture(condition, path, photo)) for condition in pair}
                pairs = [pair]
            stimuli = {condition: Stimulus(model=condition, image=image) for condition in shown}
            # The files in a random order: whichever is written first has the oldest file time.
            order = list(stimuli)
            secrets.SystemRandom().shuffle(order)
            for condition in order:
                stimuli[condition].file_name = writer.write(shown[condition])
            for first, second in pairs:
                study.trials.append(Trial(
                    image=image, stimulus_a=stimuli[first], stimulus_b=stimuli[second],
                    is_catch=n <= index < n + catch, is_practice=index >= n + catch,
                ))
            print(f"prepared {index + 1}/{len(photos)}: {path.name}", file=sys.stderr)
        with database_session(db_url) as session:
            session.add(study)
            session.commit()
        return study.id
    except BaseException:
        writer.remove_all()
        raise
