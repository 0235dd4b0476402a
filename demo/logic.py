"""What the demo page does, free of Gradio: read an upload, colorize it, and build the views beside it."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import threading
import time
import uuid
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from colorizer.atomic import atomic_path
from colorizer.decode import colorize_logits
from colorizer.errors import UserError
from colorizer.images import is_colour, open_image, to_pil, to_rgb_tensor
from colorizer.infer import BUNDLED_MODELS, Colorizer, bundled_model_path

MAX_MEGAPIXELS = 40  # a 40 MP photo already takes seconds and gigabytes; a shared demo refuses more


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

    def colorize_batched(self, name: str, image: Image.Image, temperature: float,
                         hints: Sequence[dict[str, Any]] | None = None) -> Image.Image:
        """One colorization; requests that arrive while the network is busy run together as one batch."""
        colorizer = self[name]  # loaded, or an unknown name refused, before it gets a batcher
        if hints and not colorizer.takes_hints:
            raise UserError(no_hints_message(name))  # by its menu name, which the Colorizer does not know
        colorizer.hint_map(image, hints)  # bad hints fail this request alone, not the batch it would join
        with self.lock:
            if name not in self.batchers:
                self.batchers[name] = Batcher(partial(colorize_jobs, colorizer))
            batcher = self.batchers[name]
        return batcher((image, temperature, hints))


def colorize_jobs(colorizer: Colorizer, jobs: Sequence[tuple[Image.Image, float, Sequence[dict] | None]]
                  ) -> list[Image.Image]:
    """Colorize (image, temperature, hints) jobs, one network pass per temperature."""
    results: dict[int, Image.Image] = {}
    for temperature in {t for _, t, _ in jobs}:
        indices = [i for i, (_, t, _) in enumerate(jobs) if t == temperature]
        images = colorizer.colorize_many([jobs[i][0] for i in indices], temperature, batch_size=len(indices),
                                         hints=[jobs[i][2] for i in indices])
        results.update(zip(indices, images, strict=True))
    return [results[i] for i in range(len(jobs))]


def parse_hints(text: str | None) -> list[dict[str, Any]] | None:
    """The /colorize API's `hints` keyword: a JSON list of {"x", "y", "rgb", optional "radius"}; empty: none.
    The hints themselves are checked by the Colorizer, whose messages name the bad one."""
    if text is None or not text.strip():
        return None
    try:
        hints = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"hints: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    if not isinstance(hints, list):
        kind = {dict: "an object", str: "a string", int: "a number", float: "a number", bool: "true or false"}
        raise UserError('hints: expected a JSON list like [{"x": 120, "y": 40, "rgb": [200, 30, 30]}], '
                        f"got {kind.get(type(hints), 'null')}")
    return hints or None


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
    colour: bool  # a colour photo (not gray, sepia or otherwise toned), reduced to gray before colorizing
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


def output_name(upload: str | os.PathLike, view: str) -> str:
    """The file name (without suffix) of a view of an upload, as a download gets it: "holiday_colorized"."""
    return f"{Path(upload).stem}_{view}"


def save_png(folder: str | os.PathLike, image: Image.Image, name: str, keep_s: float = 60) -> str:
    """A lossless PNG `name`.png in a new folder under `folder`, fast to write, for Gradio to copy (a
    download keeps the file's name); what was written more than `keep_s` ago is removed.

    Gradio would encode PIL images at zlib level 6: four times slower than level 1 for a 10% smaller file.
    """
    path = fresh_path(folder, name, ".png", keep_s)
    image.save(path, compress_level=1)
    return str(path)


def save_jpeg(folder: str | os.PathLike, image: Image.Image, name: str, keep_s: float = 60) -> str:
    """A view that is no result (the hint view with its markers) as JPEG: at 1024x768 it encodes in a
    tenth of a PNG's time, which counts when every hint edit sends one."""
    path = fresh_path(folder, name, ".jpg", keep_s)
    image.save(path, quality=90)
    return str(path)


def fresh_path(folder: str | os.PathLike, name: str, suffix: str, keep_s: float) -> Path:
    """`name` + `suffix` in a new folder of its own under `folder`, after removing the folders written
    there more than `keep_s` ago."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        with contextlib.suppress(FileNotFoundError):  # a concurrent request may have removed it first
            if time.time() - old.stat().st_mtime > keep_s:
                shutil.rmtree(old, ignore_errors=True)
    own = folder / uuid.uuid4().hex[:12]
    own.mkdir()
    return own / f"{name}{suffix}"


@dataclass
class Views:
    """Everything the page shows for one upload."""

    result: Image.Image  # the colorization at full resolution
    gray: Image.Image  # what the model saw
    uncertainty: Image.Image
    compared: Image.Image  # the models side by side
    original: Image.Image | None  # the colour photo, when one was given
    notes: list[str]


def colorize_views(models: Models, path: str | os.PathLike, name: str, temperature: float,
                   board: HintBoard | None = None, saturation: float = 1.0) -> Views:
    """Every view of one upload; the hints on `board` go to the models that take hints; `saturation`
    is the colour strength."""
    upload = read_upload(path)
    board = board or HintBoard()

    def hints_for(model: str) -> list[dict[str, Any]] | None:
        return board.as_dicts() if board.hints and models[model].takes_hints else None

    notes = list(upload.notes)
    if board.hints and hints_for(name) is None:
        notes.append(f"{no_hints_message(name)}; your {len(board.hints)} hints are kept")
    prediction = models[name].predict(upload.image, temperature, hints=hints_for(name), saturation=saturation)
    others = {}
    for other in models.compared(name):
        caption = other if hints_for(other) or not board.hints else f"{other} (no hints)"
        others[caption] = prediction.image if other == name else models[other].colorize(
            upload.image, temperature, hints=hints_for(other), saturation=saturation)
    return Views(
        result=prediction.image,
        gray=prediction.gray,
        uncertainty=uncertainty_image(prediction.uncertainty),
        compared=side_by_side(others),
        original=as_rgb(upload.image) if upload.colour else None,
        notes=notes,
    )


def unseen_notes(notes: Sequence[str], upload: str | os.PathLike, seen: frozenset[tuple[str, str]]
                 ) -> tuple[list[str], frozenset[tuple[str, str]]]:
    """The notes about `upload` not shown yet, and `seen` with them: the page says each once per photo,
    not again on every slider move."""
    fresh = [note for note in notes if (str(upload), note) not in seen]
    return fresh, seen | {(str(upload), note) for note in fresh}


# batches: several photos in, one zip out

MAX_BATCH_PHOTOS = 100
BATCH_CHUNK = 4  # photos per network pass: full-resolution lightness of 4 large photos stays under a gigabyte


def colorize_to_zip(models: Models, paths: Sequence[str | os.PathLike], name: str, temperature: float,
                    folder: str | os.PathLike, progress: Callable[[int, int], None] | None = None,
                    keep_s: float = 3600) -> tuple[str, list[str]]:
    """The photos at `paths` colorized by the model `name`, as `<stem>_colorized.png` files in one zip,
    written atomically in a new folder under `folder`. Returns the zip's path and a note for each file
    that could not be read; the others are colorized all the same. `progress(done, total)` follows
    each chunk."""
    if not paths:
        raise UserError("no photos given: choose one or more image files")
    if len(paths) > MAX_BATCH_PHOTOS:
        raise UserError(f"{len(paths)} files: at most {MAX_BATCH_PHOTOS} photos at once")
    colorizer, notes, names = models[name], [], set()
    target = fresh_path(folder, "colorized_photos", ".zip", keep_s)
    with atomic_path(target) as partial_zip, zipfile.ZipFile(partial_zip, "w", zipfile.ZIP_STORED) as bundle:
        for start in range(0, len(paths), BATCH_CHUNK):
            good = []
            for path in paths[start : start + BATCH_CHUNK]:
                try:
                    good.append((path, read_upload(path).image))
                except UserError as exc:
                    notes.append(str(exc))
            results = colorizer.colorize_many([image for _, image in good], temperature, batch_size=BATCH_CHUNK)
            for (path, _), result in zip(good, results, strict=True):
                member = stem = output_name(path, "colorized")
                for copy in itertools.count(2):  # two uploads named alike: "a_colorized", "a_colorized-2"
                    if member not in names:
                        break
                    member = f"{stem}-{copy}"
                names.add(member)
                with bundle.open(f"{member}.png", "w") as entry:
                    result.save(entry, format="PNG", compress_level=1)
            if progress:
                progress(min(start + BATCH_CHUNK, len(paths)), len(paths))
        if not names:
            raise UserError(f"no photo among the {len(paths)} files: {'; '.join(notes)}")
    return str(target), notes


# colour hints on the page

SUGGESTIONS = 6  # suggested colours offered for a spot
MAX_UNDO = 100  # edits remembered for undo
HINT_VIEW_MAX_SIDE = 1280  # the clickable view with the hint markers: a view, not the result


@dataclass(frozen=True)
class Hint:
    x: int  # in the photo's pixels
    y: int
    rgb: tuple[int, int, int]

    @property
    def hex(self) -> str:
        return "#{:02x}{:02x}{:02x}".format(*self.rgb)

    def as_dict(self) -> dict[str, Any]:
        """As Colorizer.colorize and the /colorize API take it."""
        return {"x": self.x, "y": self.y, "rgb": list(self.rgb)}


def rgb_of_hex(text: str) -> tuple[int, int, int]:
    """A colour picker's "#rrggbb" (or "#rgb") as (r, g, b)."""
    digits = (text or "").strip().removeprefix("#")
    if len(digits) == 3:
        digits = "".join(2 * digit for digit in digits)
    try:
        if len(digits) != 6:
            raise ValueError
        return tuple(int(digits[i : i + 2], 16) for i in (0, 2, 4))  # type: ignore[return-value]
    except ValueError:
        raise UserError(f"not a colour: {text!r} (expected #rrggbb)") from None


@dataclass(frozen=True)
class HintBoard:
    """The hints placed on one photo, the selected one, and the earlier states for undo.

    Every edit returns a new board (Gradio keeps one per visitor in a gr.State) and remembers the state
    before it; selecting a hint or a spot is not an edit. A `spot` is a clicked point without a hint:
    the page suggests colours for it, and only choosing one places a hint there, so a click alone
    never changes the colorization.
    """

    hints: tuple[Hint, ...] = ()
    selected: int | None = None
    history: tuple[tuple[tuple[Hint, ...], int | None], ...] = ()
    spot: tuple[int, int] | None = None

    def _edited(self, hints: Sequence[Hint], selected: int | None) -> HintBoard:
        history = (self.history + ((self.hints, self.selected),))[-MAX_UNDO:]
        return HintBoard(tuple(hints), selected, history)

    def _selected_hint(self, action: str) -> Hint:
        if self.selected is None:
            raise UserError(f"no hint selected to {action}: click the photo and choose a colour to place one, "
                            "or pick one from the list")
        return self.hints[self.selected]

    def place(self, x: int, y: int, rgb: Sequence[int]) -> HintBoard:
        """A new hint, which becomes the selected one."""
        return self._edited(self.hints + (Hint(int(x), int(y), tuple(int(c) for c in rgb)),), len(self.hints))

    def point(self, x: int, y: int) -> HintBoard:
        """Selects the spot (x, y), where no hint is yet."""
        return replace(self, selected=None, spot=(int(x), int(y)))

    def choose(self, rgb: Sequence[int]) -> HintBoard:
        """A colour chosen for what is selected: places a hint on the selected spot, or recolours the
        selected hint."""
        return self.place(*self.spot, rgb) if self.spot else self.recolour(rgb)

    def choose_at(self, x: int, y: int, rgb: Sequence[int]) -> HintBoard:
        """A colour chosen for the point (x, y): recolours the hint there, or places one."""
        at = next((i for i, hint in enumerate(self.hints) if (hint.x, hint.y) == (int(x), int(y))), None)
        return self.place(x, y, rgb) if at is None else self.select(at).recolour(rgb)

    @property
    def target(self) -> tuple[int, int] | None:
        """The point the selection stands for: the spot, or the selected hint's."""
        if self.spot:
            return self.spot
        return (self.hints[self.selected].x, self.hints[self.selected].y) if self.selected is not None else None

    def move(self, x: int, y: int) -> HintBoard:
        hint = self._selected_hint("move")
        return self._with_selected(replace(hint, x=int(x), y=int(y)))

    def recolour(self, rgb: Sequence[int]) -> HintBoard:
        hint = self._selected_hint("colour")
        rgb = tuple(int(c) for c in rgb)
        return self if rgb == hint.rgb else self._with_selected(replace(hint, rgb=rgb))

    def _with_selected(self, hint: Hint) -> HintBoard:
        hints = list(self.hints)
        hints[self.selected] = hint
        return self._edited(hints, self.selected)

    def remove(self) -> HintBoard:
        """Removes the selected hint; the one after it (or the last) becomes selected."""
        self._selected_hint("remove")
        hints = self.hints[: self.selected] + self.hints[self.selected + 1 :]
        return self._edited(hints, min(self.selected, len(hints) - 1) if hints else None)

    def clear(self) -> HintBoard:
        return self._edited((), None) if self.hints else self

    def undo(self) -> HintBoard:
        if not self.history:
            raise UserError("nothing to undo")
        hints, selected = self.history[-1]
        return HintBoard(hints, selected, self.history[:-1])

    def select(self, index: int | None) -> HintBoard:
        if index is not None and not 0 <= index < len(self.hints):
            raise UserError(f"there is no hint {index + 1}")
        return self if index == self.selected and self.spot is None else replace(self, selected=index, spot=None)

    def nearest(self, x: float, y: float, within: float) -> int | None:
        """The hint closest to (x, y) if one lies within `within` pixels (a click on its marker)."""
        distances = [((hint.x - x) ** 2 + (hint.y - y) ** 2, i) for i, hint in enumerate(self.hints)]
        closest = min(distances, default=None)
        return closest[1] if closest and closest[0] <= within**2 else None

    def as_dicts(self, leave_out: int | None = None) -> list[dict[str, Any]]:
        return [hint.as_dict() for i, hint in enumerate(self.hints) if i != leave_out]

    def chips(self) -> list[dict[str, Any]]:
        """The hint list as the page shows it: one chip per hint in its colour, the selected one marked."""
        return [{"index": i, "hex": hint.hex, "label": f"{i + 1}: {hint.x}, {hint.y}",
                 "ink": "#000" if luma(hint.rgb) > 140 else "#fff",
                 "state": "chip selected" if i == self.selected else "chip"}
                for i, hint in enumerate(self.hints)]


def luma(rgb: Sequence[int]) -> float:
    """Perceived brightness 0-255 (Rec. 601), to pick black or white text and rings over a colour."""
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]


def swatches(suggestions: Sequence[dict[str, Any]], point: tuple[int, int] | None = None) -> list[dict[str, Any]]:
    """Colorizer.suggest's colours as the page's swatch buttons, each carrying the `point` it was suggested
    for, so that a choice lands there even when a later click has reached the server first."""
    x, y = point if point else ("", "")
    return [{"hex": Hint(0, 0, tuple(s["rgb"])).hex, "ink": "#000" if luma(s["rgb"]) > 140 else "#fff",
             "label": f"{100 * s['probability']:.0f} %", "x": x, "y": y} for s in suggestions]


def marker_radius(photo_size: tuple[int, int]) -> float:
    """A hint marker's radius in photo pixels: about 1 % of the photo's longer side."""
    return max(4.0, max(photo_size) / 90)


def point_on_photo(index: Sequence[float], shown_size: tuple[int, int], photo_size: tuple[int, int]) -> tuple[int, int]:
    """A click at `index` (x, y) on an image shown at `shown_size` -> the photo's pixel, inside the photo."""
    return tuple(min(size - 1, max(0, int(value * size / shown))) for value, shown, size  # type: ignore[return-value]
                 in zip(index, shown_size, photo_size, strict=True))


def view_size(photo_size: tuple[int, int], max_side: int = HINT_VIEW_MAX_SIDE) -> tuple[int, int]:
    """The size of the hint view of a photo: the photo's, shrunk to at most `max_side` pixels wide or high."""
    scale = min(1.0, max_side / max(photo_size))
    return max(1, round(photo_size[0] * scale)), max(1, round(photo_size[1] * scale))


def hint_view(result: Image.Image, board: HintBoard, max_side: int = HINT_VIEW_MAX_SIDE) -> Image.Image:
    """The colorization at `view_size` with a marker on each hint: a disc in the hint's colour with a
    contrasting ring, thicker and wider for the selected hint."""
    size = view_size(result.size, max_side)
    view = result.resize(size, Image.BILINEAR) if size != result.size else result.copy()
    scale = size[0] / result.width
    draw = ImageDraw.Draw(view)
    radius = marker_radius(result.size) * scale
    for i, hint in enumerate(board.hints):
        x, y = (hint.x + 0.5) * scale, (hint.y + 0.5) * scale
        ring = "black" if luma(hint.rgb) > 140 else "white"
        r, width = (radius * 1.5, max(3, round(radius / 2))) if i == board.selected else (radius, max(2, round(radius / 4)))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=hint.rgb, outline=ring, width=width)
    if board.spot:  # a hollow ring, black inside white, that shows the photo through it
        x, y = (board.spot[0] + 0.5) * scale, (board.spot[1] + 0.5) * scale
        for r, colour in ((radius * 1.6, "white"), (radius * 1.6 - max(2, round(radius / 3)), "black")):
            draw.ellipse((x - r, y - r, x + r, y + r), outline=colour, width=max(2, round(radius / 3)))
    return view


@dataclass
class Photo:
    """An upload as the hint editor keeps it: decoded once, with its full-resolution CIELAB lightness."""

    image: Image.Image
    lightness: torch.Tensor  # (1, 1, H, W)


class HintEditor:
    """Colorizes a photo again after each hint edit without redoing what the edit does not change.

    The upload's decoding and its full-resolution lightness (a third of a colorization's time at
    1024x768) are kept for the last few photos, so an edit runs only the network and the decoding.
    """

    def __init__(self, models: Models, keep: int = 4):
        self.models, self.keep = models, keep
        self.photos: OrderedDict[str, Photo] = OrderedDict()
        # the last colorizations by (photo, model, temperature, hints): selecting a spot or a hint redraws
        # the markers without running the network
        self.results: OrderedDict[tuple, Image.Image] = OrderedDict()
        self.lock = threading.Lock()

    def photo(self, path: str | os.PathLike) -> Photo:
        key = str(path)  # Gradio stores each upload under a folder named by its content's hash
        with self.lock:
            if key in self.photos:
                self.photos.move_to_end(key)
                return self.photos[key]
        image = read_upload(path).image
        photo = Photo(image, Colorizer.lightness(image))
        with self.lock:
            self.photos[key] = photo
            while len(self.photos) > self.keep:
                self.photos.popitem(last=False)
        return photo

    def hint_capable(self, name: str) -> Colorizer:
        colorizer = self.models[name]
        if not colorizer.takes_hints:
            raise UserError(no_hints_message(name))
        return colorizer

    def colorize(self, path: str | os.PathLike, name: str, temperature: float, board: HintBoard,
                 saturation: float = 1.0) -> Image.Image:
        """What Colorizer.colorize(photo, temperature, hints, saturation) gives, from the kept lightness."""
        key = (str(path), name, temperature, saturation, board.hints)
        with self.lock:
            if key in self.results:
                self.results.move_to_end(key)
                return self.results[key]
        photo, colorizer = self.photo(path), self.models[name]
        hints = board.as_dicts()
        hint_map = colorizer.hint_map(photo.image, hints)
        logits = colorizer.logits(photo.lightness, hint_map)
        result = to_pil(colorize_logits(photo.lightness, logits, temperature, saturation, hint_map))
        with self.lock:
            self.results[key] = result
            while len(self.results) > 2 * self.keep:
                self.results.popitem(last=False)
        return result

    def views(self, path: str | os.PathLike, name: str, temperature: float, board: HintBoard, saturation: float = 1.0
              ) -> tuple[Image.Image, Image.Image]:
        """After an edit: the colorization at full resolution, and the hint view with the markers."""
        result = self.colorize(path, name, temperature, board, saturation)
        return result, hint_view(result, board)

    def suggestions(self, path: str | os.PathLike, name: str, board: HintBoard) -> list[dict[str, Any]]:
        """The likeliest colours at the selected spot given the hints, or at the selected hint's given the
        other hints; none without a selection."""
        if board.spot:
            (x, y), others = board.spot, board.as_dicts()
        elif board.selected is not None:
            hint = board.hints[board.selected]
            (x, y), others = (hint.x, hint.y), board.as_dicts(leave_out=board.selected)
        else:
            return []
        return self.hint_capable(name).suggest(self.photo(path).image, x, y, k=SUGGESTIONS, hints=others)

    def click(self, path: str | os.PathLike, name: str, board: HintBoard, x: int, y: int, move: bool
              ) -> tuple[HintBoard, list[dict[str, Any]]]:
        """A click on the photo at (x, y): moves the selected hint (when `move`), selects the hint whose marker
        was clicked, or selects the spot, where choosing a colour will place a hint. Returns the board and
        the colours suggested for what is selected."""
        self.hint_capable(name)
        if move and board.selected is not None:
            board = board.move(x, y)
        elif (near := board.nearest(x, y, within=1.5 * marker_radius(self.photo(path).image.size))) is not None:
            board = board.select(near)
        else:
            board = board.point(x, y)
        return board, self.suggestions(path, name, board)


def no_hints_message(name: str) -> str:
    return f"the model {name!r} takes no colour hints: choose a hint-capable model"
