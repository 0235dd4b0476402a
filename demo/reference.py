"""The demo's colours from a reference photo or a palette, and its gallery of alternatives.

`panel(...)` lays the controls out where it is called (in the photo's column); `Panel.connect(...)`
wires them to the result views once those exist. The look a visitor chose (a reference, a palette, or
a picked alternative) is kept per photo by `GuidedHintEditor`, so later hint edits keep it and hints
win where they are; «Colorize», another model or temperature, or a new photo go back to automatic.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any

import gradio as gr
import torch
from PIL import Image

from colorizer import reference as reference_math
from colorizer.bins import ab_bins
from colorizer.color import lab_to_rgb
from colorizer.defaults import DEFAULT_STRENGTH
from colorizer.errors import UserError
from colorizer.infer import Colorizer
from demo import logic

PALETTE_SIZE = 6  # the photo's suggested colours offered as a starting palette
ALTERNATIVES = 4
SWATCH_LIGHTNESS = 65.0  # a suggested colour is shown at this L: its hue and chroma are what a palette gives

HELP = """**Reference colours.** Upload a colour photo (the same person, house or car; a painting) or give a
palette (click the photo's suggested colours to add them; `#87ceeb:0.5` weighs one less), then *Apply*.
*Alternatives* shows a few other plausible colorizations of what the page shows; pick one to make it the result."""


@dataclass
class Look:
    """What a visitor asked the photo's colours to follow: a reference and/or palette at a strength, or a
    picked alternative (shown as it is, and the reference of later hint edits)."""

    reference: Image.Image | None = None
    palette: str | None = None
    strength: float = DEFAULT_STRENGTH
    picked: Image.Image | None = None
    guides: dict[str, reference_math.Guide] = field(default_factory=dict)  # by model, made once


class GuidedHintEditor(logic.HintEditor):
    """The hint editor, colorizing with the look chosen for a photo, if any."""

    def __init__(self, models: logic.Models, keep: int = 4):
        super().__init__(models, keep)
        self.looks: dict[str, Look] = {}
        self.look_lock = threading.Lock()

    def set_look(self, path: str | os.PathLike, look: Look | None) -> None:
        with self.look_lock:
            if look is None:
                self.looks.pop(str(path), None)
            else:
                self.looks[str(path)] = look
                while len(self.looks) > self.keep:
                    self.looks.pop(next(iter(self.looks)))

    def guide(self, look: Look, name: str) -> reference_math.Guide:
        """The look's guide for a model, made once (a reference costs a network pass)."""
        if name not in look.guides:  # two requests may both make it: the same guide, no harm
            reference = look.picked if look.picked is not None else look.reference
            look.guides[name] = self.models[name].guide(reference, look.palette)
        return look.guides[name]

    def colorize(self, path: str | os.PathLike, name: str, temperature: float, board: logic.HintBoard,
                 saturation: float = 1.0) -> Image.Image:
        look = self.looks.get(str(path))
        if look is None:
            return super().colorize(path, name, temperature, board, saturation)
        if look.picked is not None and not board.hints:
            return look.picked
        photo, colorizer = self.photo(path), self.models[name]
        strength = 1.0 if look.picked is not None else look.strength
        return colorizer.colorize_guided(photo.image, self.guide(look, name), temperature, board.as_dicts() or None,
                                         strength, saturation)


def colorize_with(colorizer: Colorizer, image: Image.Image, temperature: float, hints, reference_path: str | None,
                  palette: str | None, strength: float) -> Image.Image:
    """The /colorize API's colorization with a reference file and/or a palette."""
    reference = logic.read_upload(reference_path).image if reference_path else None
    return colorizer.colorize(image, temperature, hints, reference=reference, palette=(palette or "").strip() or None,
                              strength=reference_math.check_strength(strength))


def suggested_palette(colorizer: Colorizer, image: Image.Image, k: int = PALETTE_SIZE) -> list[dict[str, Any]]:
    """The photo's likeliest distinct colours over all its pixels, as the page's swatch buttons."""
    logits = colorizer.logits(Colorizer.lightness(image))
    distribution = torch.softmax(logits[0].float(), 0).mean((1, 2))
    peaks = reference_math.distinct_peaks(distribution, k)
    bins = ab_bins()[peaks]
    lab = torch.cat([torch.full((len(peaks), 1), SWATCH_LIGHTNESS), bins], 1)[:, :, None, None]
    rgb = (lab_to_rgb(lab)[:, :, 0, 0] * 255).round().int().tolist()
    return logic.swatches([{"rgb": colour, "probability": float(distribution[p])} for colour, p in zip(rgb, peaks, strict=True)])


def added_to_palette(palette: str | None, hex_colour: str) -> str:
    """The palette text with one more colour."""
    parts = [part.strip() for part in (palette or "").split(",") if part.strip()]
    return ",".join(parts + [hex_colour])


@dataclass
class Panel:
    """The reference controls, laid out; `connect` wires them once the result views exist."""

    reference: gr.Image
    suggested: gr.HTML
    palette: gr.Textbox
    strength: gr.Slider
    apply: gr.Button
    automatic: gr.Button
    alternatives: gr.Button
    gallery: gr.Gallery
    shown: gr.State  # the alternatives' images, in the gallery's order

    def connect(self, models: logic.Models, editor: GuidedHintEditor, png, jpeg, *, photo, model, temperature, board,
                back_to_automatic, hints_view, result, download) -> None:
        """`png(image, upload, view)` and `jpeg(...)` save a view of the upload for the page (demo.app.Page);
        `back_to_automatic`: the events after which the page shows the automatic colorization again."""
        from demo.app import shows_user_errors

        private = {"api_visibility": "private"}
        views = [hints_view, result, download]

        def shown_views(path: str, name: str, temperature_value: float, hints: logic.HintBoard):
            image, view = editor.views(path, name, temperature_value, hints)
            result_png = png(image, path, "colorized")
            return jpeg(view, path, "hints"), result_png, result_png

        @shows_user_errors
        def apply(path, name, temperature_value, hints, reference_path, palette, strength):
            if path is None:
                raise UserError("upload a photo first")
            reference = logic.read_upload(reference_path).image if reference_path else None
            if reference is None and not (palette or "").strip():
                raise UserError("upload a reference photo or give a palette first")
            look = Look(reference, (palette or "").strip() or None, reference_math.check_strength(strength))
            editor.guide(look, name)  # a gray reference or a bad palette fails here, before the look is kept
            editor.set_look(path, look)
            return shown_views(path, name, temperature_value, hints)

        @shows_user_errors
        def automatic(path, name, temperature_value, hints):
            if path is None:
                return [gr.skip()] * 3
            editor.set_look(path, None)
            return shown_views(path, name, temperature_value, hints)

        @shows_user_errors
        def alternatives(path, name, temperature_value, hints):
            """Alternatives of what the page shows: automatic, or under the reference colours applied."""
            if path is None:
                raise UserError("upload a photo first")
            look = editor.looks.get(str(path))
            guide = editor.guide(look, name) if look is not None and look.picked is None else None
            images = models[name].alternatives_guided(editor.photo(path).image, ALTERNATIVES, guide, temperature_value,
                                                      hints.as_dicts() or None, look.strength if guide else DEFAULT_STRENGTH)
            return [(png(image, path, f"alternative{i + 1}"), f"{i + 1}") for i, image in enumerate(images)], images

        @shows_user_errors
        def pick(path, name, temperature_value, hints, images, evt: gr.SelectData):
            if path is None or not images or evt.index is None:
                return [gr.skip()] * 3
            editor.set_look(path, Look(picked=images[evt.index]))
            return shown_views(path, name, temperature_value, hints)

        def suggest(path, name):
            """The photo's colours as a starting palette; quiet about a bad upload, which the page's upload
            check already names in its one message."""
            if path is None:
                return []
            try:
                return suggested_palette(models[name], editor.photo(path).image)
            except UserError:
                return []

        def on_swatch(palette, evt: gr.EventData):
            return added_to_palette(palette, evt.hex)

        common = [photo, model, temperature, board]
        choices = [self.reference, self.palette, self.strength]
        self.apply.click(apply, common + choices, views, **private)
        self.automatic.click(automatic, common, views, **private)
        self.alternatives.click(alternatives, common, [self.gallery, self.shown], **private)
        self.gallery.select(pick, common + [self.shown], views, **private)
        self.suggested.click(on_swatch, self.palette, self.palette, queue=False, **private)
        gr.on([photo.change, model.change], suggest, [photo, model], self.suggested, **private)
        gr.on(back_to_automatic, lambda path: path and editor.set_look(path, None), photo, None, queue=False,
              **private)
        photo.change(lambda: ([], None), None, [self.gallery, self.shown], queue=False, **private)


def panel() -> Panel:
    """The reference controls at this place of the page."""
    from demo.app import BUTTON_CSS, SEND_SWATCH, SWATCHES

    with gr.Group(elem_id="reference-panel"):
        gr.Markdown(HELP, padding=True)
        reference = gr.Image(label="Reference photo", sources=["upload", "clipboard"], height=160, elem_id="reference")
        reference.preprocess = lambda payload: payload and payload.path  # read (and explained) by read_upload
        suggested = gr.HTML([], html_template=SWATCHES, css_template=BUTTON_CSS, js_on_load=SEND_SWATCH,
                            label="The photo's suggested colours (click to add to the palette)", container=True,
                            show_label=True, elem_id="palette-swatches")
        palette = gr.Textbox(label="Palette", placeholder="#8b4513,#87ceeb:0.5,#2e8b57", elem_id="palette")
        strength = gr.Slider(0, 1, value=DEFAULT_STRENGTH, step=0.05, label="Reference strength",
                             info="0: the model's own colours; 1: as far towards the reference as it goes",
                             elem_id="reference-strength")
        with gr.Row():
            apply = gr.Button("Apply colours", size="sm", elem_id="apply-reference")
            automatic = gr.Button("Automatic", size="sm", elem_id="automatic-colours")
            alternatives = gr.Button("Alternatives", size="sm", elem_id="show-alternatives")
        gallery = gr.Gallery(label="Alternatives (click one to make it the result)", columns=ALTERNATIVES, rows=1,
                             height=150, allow_preview=False, interactive=False, format="png", elem_id="alternatives")
    return Panel(reference, suggested, palette, strength, apply, automatic, alternatives, gallery, gr.State([]))
