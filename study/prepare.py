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
from PIL import ImageOps
from sqlalchemy import select

from colorizer.atomic import atomic_path
from colorizer.errors import UserError
from colorizer.images import find_images
from study.db import database_session
from study.models import CATCH_MODEL, TRUTH, Image, Stimulus, Study, Trial
from study.protocol import Protocol

Colorize = Callable[[PILImage.Image], PILImage.Image]

# How far the catch trials' degraded side turns the hues of its picture (degrees, drawn per photo).
WRONG_HUE_DEGREES = (120.0, 240.0)


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


def jpeg_bytes(image: PILImage.Image, quality: int = 95) -> bytes:
    buffer = io.BytesIO()
    # 4:4:4 chroma: subsampling would blur exactly the colours participants are judging.
    image.save(buffer, format="JPEG", quality=quality, subsampling=0)
    return buffer.getvalue()


def wrong_hue(image: PILImage.Image, rng: random.Random) -> PILImage.Image:
    """The catch trials' worse side: every hue turned around the Lab colour circle by an angle drawn
    from WRONG_HUE_DEGREES, the lightness and the chroma (how colourful each pixel is) kept. Skin
    turns green or blue, sky orange: plain to a person, while the statistics a bot can compute without
    knowing what things look like (chroma, its noise, lightness, sharpness) stay those of a real
    colorization. The blur, inversion and grain used before gave the side away to a chroma-noise
    statistic.

    A turned colour can fall outside what RGB can show: such a pixel keeps its turned hue with just
    as much less chroma as it needs (clipping its channels would add chroma noise), and of the angles
    tried the one drawn keeps nearly the most chroma, so the side is barely paler. The cut varies
    smoothly across the picture: a cut pixel by pixel would add chroma noise of its own."""
    import torch

    from colorizer.color import rgb_to_lab

    rgb = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)[None]
    lab = rgb_to_lab(rgb)
    lightness = lab[:, :1]
    turns = [into_gamut(lightness, turned(lab[:, 1:], degrees))
             for degrees in np.linspace(*WRONG_HUE_DEGREES, HUE_CANDIDATES)]
    ab = rng.choice([ab for ab in turns if mean_chroma(ab) >= 0.98 * max(map(mean_chroma, turns))])
    out = unclipped_rgb(lightness, ab).clamp(0, 1)
    return PILImage.fromarray((out[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))


# Angles tried by wrong_hue, the bisection steps of its gamut mapping (chroma to within 1/256), and
# the reach (pixels) over which the share of chroma kept is smoothed.
HUE_CANDIDATES = 9
GAMUT_STEPS = 8
GAMUT_SMOOTHING = 5


def turned(ab, degrees: float):
    import torch

    angle = torch.tensor(np.deg2rad(degrees), dtype=ab.dtype)
    a, b = ab[:, :1], ab[:, 1:]
    return torch.cat([a * angle.cos() - b * angle.sin(), a * angle.sin() + b * angle.cos()], dim=1)


def mean_chroma(ab) -> float:
    import torch

    return float(torch.linalg.vector_norm(ab, dim=1).mean())


def into_gamut(lightness, ab):
    """`ab` with each pixel's chroma cut (its hue kept) to what RGB can show at its lightness."""
    import kornia
    import torch

    inside = in_gamut(lightness, ab)
    # Bisection per pixel on the share of chroma kept: the largest that is still inside the gamut.
    low, high = inside.to(ab.dtype), torch.ones_like(lightness)
    for _ in range(GAMUT_STEPS):
        middle = (low + high) / 2
        fits = in_gamut(lightness, ab * middle) | inside
        low, high = torch.where(fits, middle, low), torch.where(fits, high, middle)
    # The smallest share nearby, blurred: a smooth cut (what little it leaves outside is clipped).
    nearby = -torch.nn.functional.max_pool2d(-low, GAMUT_SMOOTHING, stride=1, padding=GAMUT_SMOOTHING // 2)
    sigma = GAMUT_SMOOTHING / 2
    return ab * kornia.filters.gaussian_blur2d(nearby, (2 * GAMUT_SMOOTHING + 1,) * 2, (sigma, sigma), "replicate")


def unclipped_rgb(lightness, ab):
    """Lab to sRGB without clipping, to see what falls outside."""
    import kornia
    import torch

    return kornia.color.lab_to_rgb(torch.cat([lightness, ab], dim=1), clip=False)


def in_gamut(lightness, ab):
    rgb = unclipped_rgb(lightness, ab)
    return ((rgb >= -1 / 512) & (rgb <= 1 + 1 / 512)).all(dim=1, keepdim=True)


def matched_jpeg(image: PILImage.Image, partner_bytes: int, rng: random.Random) -> bytes:
    """`image` as JPEG at the quality (JPEG_QUALITIES) whose file comes nearest to a size drawn from
    0.85 to 1.15 times its partner's, so that which of the two files is larger says nothing."""
    target = partner_bytes * rng.uniform(0.85, 1.15)
    files = [jpeg_bytes(image, quality) for quality in JPEG_QUALITIES]
    return min(files, key=lambda content: abs(len(content) - target))


JPEG_QUALITIES = range(85, 99)


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
    Each of `n` + `catch` photos gets one trial per pair of conditions and a catch trial (a model's
    colorization against a copy of it with the wrong hues, `wrong_hue`; the models take turns); each
    participant sees `catch` of those photos, drawn for them, as catch trials and the rest as compared
    pairs. `practice` more photos get a practice trial between two conditions made here. Two models
    and no extras is the paper's study.
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
    imported = import_files(imports, photos[:n + catch])
    media_dir = Path(media_dir).resolve()
    writer = StimulusWriter(media_dir)
    models = list(colorizers)
    study = Study(
        name=name, model_a=conditions[0], model_b=conditions[1], conditions=conditions,
        media_dir=str(media_dir), seed=seed, exposure_ms=protocol.exposure_ms, question=protocol.question,
        consent_markdown=protocol.consent_markdown, completion_url=protocol.completion_url,
        max_participants=protocol.max_participants, min_response_ms=protocol.min_response_ms,
        max_invalid_share=protocol.max_invalid_share, catch_trials=catch, prolific_study_id=protocol.prolific_study_id,
        anonymous_places=protocol.anonymous_places, break_every=protocol.break_every,
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
            if index < n + catch:
                pictures = {condition: picture(condition, path, photo) for condition in conditions}
                shown = {condition: jpeg_bytes(made) for condition, made in pictures.items()}
                pairs = list(itertools.combinations(conditions, 2))
                if catch:
                    # The models take turns supplying the intact side, so catch trials favour none.
                    model = models[index % len(models)]
                    shown[CATCH_MODEL] = matched_jpeg(wrong_hue(pictures[model], rng), len(shown[model]), rng)
                    catch_pair = (model, CATCH_MODEL)
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
                    is_catch=False, is_practice=index >= n + catch,
                ))
            if catch and index < n + catch:
                study.trials.append(Trial(image=image, stimulus_a=stimuli[catch_pair[0]],
                                          stimulus_b=stimuli[catch_pair[1]], is_catch=True, is_practice=False))
            print(f"prepared {index + 1}/{len(photos)}: {path.name}", file=sys.stderr)
        with database_session(db_url) as session:
            session.add(study)
            session.commit()
        return study.id
    except BaseException:
        writer.remove_all()
        raise
