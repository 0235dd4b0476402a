"""The browser demo: `colorizer demo`, or `build_demo({"generic": colorizer}).launch()` for your own models."""

from __future__ import annotations

import functools
import os
import signal
import tempfile
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path

# Gradio reads these when imported: no usage analytics, no Hugging Face look-ups; the demo works offline
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gradio as gr  # noqa: E402

from colorizer.decode import DEFAULT_TEMPERATURE  # noqa: E402
from colorizer.defaults import DEFAULT_STRENGTH  # noqa: E402
from colorizer.errors import UserError  # noqa: E402
from colorizer.infer import Colorizer  # noqa: E402
from demo import logic  # noqa: E402
from demo import reference as reference_ui  # noqa: E402
from demo import video as demo_video  # noqa: E402

EXAMPLES_DIR = Path(__file__).parent / "examples"
# lossless results; no "share" button, which posts to Hugging Face
Picture = partial(gr.Image, format="png", buttons=["download", "fullscreen"])
CONCURRENCY = 2  # one request per core: more only makes each slower on a small CPU
MAX_BATCH = 8  # /colorize requests in flight at once: those waiting for the network run as one batch

DESCRIPTION = """# Colorful Image Colorization
Zhang, Isola & Efros (ECCV 2016): the network predicts a distribution over 313 colours for every
pixel; the *temperature* picks between its most likely colour (near 0, vivid) and its mean (1, sober).
Drop, paste or shoot a photo. A colour photo is reduced to gray first, so you can compare with the truth.
"""
HINT_HELP = """**Colour hints.** Click the photo or its colorization to choose a spot: the colours the model
suggests there appear below, likeliest first. Choosing one, or a colour in the picker, places a hint there;
until then the colorization stays as it is. Click a hint's marker or its chip to select it and recolour it."""

# The suggested colours and the hint list are buttons drawn from the state (Gradio 6 HTML templates);
# a click sends the button's data back to Python as the event's data.
SWATCHES = """<div class="swatches">{{#each value}}<button class="swatch" data-hex="{{this.hex}}"
 data-x="{{this.x}}" data-y="{{this.y}}"
 style="background: {{this.hex}}; color: {{this.ink}}" title="{{this.hex}}">{{this.label}}</button>{{/each}}</div>"""
CHIPS = """<div class="chips">{{#each value}}<button class="{{this.state}}" data-index="{{this.index}}"
 style="background: {{this.hex}}; color: {{this.ink}}" title="{{this.hex}}">{{this.label}}</button>{{else}}
 <span class="empty">No hints yet</span>{{/each}}</div>"""
BUTTON_CSS = """.swatches, .chips { display: flex; flex-wrap: wrap; gap: 6px; padding-top: 1.8em; }  /* below the label */
button { border: 1px solid #8888; border-radius: 6px; padding: 6px 10px; min-width: 3.5em; font-size: 0.85em; }
.selected { outline: 3px solid var(--color-accent); outline-offset: 1px; }
.empty { opacity: 0.6; font-size: 0.9em; }"""
# the picker's dialog over the page, not in it: closing it (on the press of a click elsewhere) must not
# shorten the page, or the release lands somewhere else and the click is lost
PICKER_OVER_PAGE = """<style>#hint-colour { position: relative; overflow: visible; }
#hint-colour .color-picker { position: absolute; z-index: 50; box-shadow: 0 4px 16px #0004; }</style>"""
# Gradio computes a click's pixel from the image's natural size, which a view still loading after a redraw
# does not have yet: its click would reach the server without a pixel and be lost. For that click the
# view lends the image the size of the one it had before (a redraw keeps the size), in the click's own
# turn, so the clicks and choices still reach the server in the order they were made.
LEND_LOADING_VIEWS_A_SIZE = """<script>(() => {
  const views = '#hint-view .image-frame, #result .image-frame, #photo .image-frame';
  const sizes = {};
  const key = (frame) => frame.closest('[id]').id;
  document.addEventListener('load', (event) => {
    const img = event.target, frame = img.tagName === 'IMG' && img.closest(views);
    if (frame && img.naturalWidth > 0) sizes[key(frame)] = [img.naturalWidth, img.naturalHeight];
  }, true);
  document.addEventListener('click', (event) => {
    const frame = event.target.closest && event.target.closest(views);
    const img = frame && frame.querySelector('img'), size = frame && sizes[key(frame)];
    if (!img || !size || (img.complete && img.naturalWidth > 0)) return;
    Object.defineProperty(img, 'naturalWidth', { value: size[0], configurable: true });
    Object.defineProperty(img, 'naturalHeight', { value: size[1], configurable: true });
    setTimeout(() => { delete img.naturalWidth; delete img.naturalHeight; }, 0);
  }, true);
})();</script>"""
# On the press, not the click: every redraw renders the buttons anew, and a click whose press and release
# straddle one reaches no button
SEND_SWATCH = ("element.addEventListener('pointerdown', (event) => { const button = event.target.closest('button[data-hex]');"
               " if (button && event.button === 0) trigger('click', {hex: button.dataset.hex,"
               " x: Number(button.dataset.x), y: Number(button.dataset.y)}); });")
SEND_CHIP = ("element.addEventListener('pointerdown', (event) => { const button = event.target.closest('button[data-index]');"
             " if (button && event.button === 0) trigger('click', {index: Number(button.dataset.index)}); });")


def shows_user_errors(fn):
    """A handler whose UserErrors reach the page as a one-line notice, not a stack trace."""
    @functools.wraps(fn)
    def handler(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
    return handler


SKIP_VIEWS = 10  # outputs of Page.show
SKIP_EDITED = 7  # outputs of Page.redraw


class Page:
    """The page's event handlers, over the pure functions of demo/logic.py. One Page serves every visitor:
    what belongs to a visitor (the hints, the notes already shown) comes in and goes out as gr.State."""

    def __init__(self, models: logic.Models, folder: str | os.PathLike):
        # the reference panel's editor: it keeps a photo's reference colours through hint edits
        self.models, self.editor = models, reference_ui.GuidedHintEditor(models)
        # views live a minute (Gradio copies what it sends); a batch's zip an hour
        self.views, self.zips = Path(folder) / "views", Path(folder) / "zips"

    def png(self, image, upload: str, view: str) -> str:
        return logic.save_png(self.views, image, logic.output_name(upload, view))

    def jpeg(self, image, upload: str, view: str) -> str:
        return logic.save_jpeg(self.views, image, logic.output_name(upload, view))

    @shows_user_errors
    def check_upload(self, path: str | None) -> None:
        """An upload refused before anything else runs: its message is the page's only one, and the page
        then drops the file instead of showing a broken image."""
        if path is not None:
            self.editor.photo(path)

    @shows_user_errors
    def show(self, path: str | None, name: str, temperature: float, board: logic.HintBoard, noted: frozenset):
        """Every view of the photo, with its hints; `views_for` records what the slower tabs show. The notes
        about the photo (colour, EXIF, ...) appear once per photo, not on every slider move."""
        if path is None:
            return None, None, None, None, None, gr.Tab(visible=False), None, None, None, noted
        views = logic.colorize_views(self.models, path, name, temperature, board)
        fresh, noted = logic.unseen_notes(views.notes, path, noted)
        for note in fresh:
            gr.Info(note)
        result = self.png(views.result, path, "colorized")
        truth = (self.png(views.original, path, "original"), result) if views.original else None
        return ((self.png(views.gray, path, "gray"), result), result, self.png(views.compared, path, "models"),
                self.png(views.uncertainty, path, "uncertainty"), truth, gr.Tab(visible=truth is not None),
                self.jpeg(logic.hint_view(views.result, board), path, "hints"), result,
                (path, name, temperature, board.hints), noted)

    def show_new_photo(self, path: str | None, name: str, temperature: float):
        board = logic.HintBoard()
        return board, [], [], *self.show(path, name, temperature, board, frozenset())

    def show_example(self, path: str):
        views = self.show(path, self.models.default, DEFAULT_TEMPERATURE, logic.HintBoard(), frozenset())
        return *views[:4], *views[6:8], self.models.default, DEFAULT_TEMPERATURE

    def refresh(self, path: str | None, name: str, temperature: float, board: logic.HintBoard, views_for,
                noted: frozenset):
        """The slower tabs, when opened after hint edits: only if they show something else."""
        if path is None or views_for == (path, name, temperature, board.hints):
            return [gr.skip()] * SKIP_VIEWS
        return self.show(path, name, temperature, board, noted)

    def hint_panel(self, name: str):
        """The hint controls, enabled only for a model that takes hints."""
        takes = self.models[name].takes_hints
        help_text = HINT_HELP if takes else f"**Colour hints**: {logic.no_hints_message(name)}."
        return (help_text, *[gr.update(interactive=takes)] * 5)

    # hint edits: each returns the outputs of `redraw`

    @shows_user_errors
    def redraw(self, path: str, name: str, temperature: float, board: logic.HintBoard, suggestions, recolorized: bool,
               from_picker: bool = False):
        """The page after a hint edit: the hint view; when the hints changed, the full-resolution result and
        its download; the hint list; the picker on the selected hint's colour (or on the likeliest colour at
        the selected spot) unless the edit came `from_picker`, whose own value may be newer than the one the
        edit sent; and, unless None (kept), the colours suggested there."""
        result, view = self.editor.views(path, name, temperature, board)
        result_png = self.png(result, path, "colorized") if recolorized else gr.skip()
        if from_picker:
            colour = gr.skip()
        elif board.selected is not None:
            colour = board.hints[board.selected].hex
        else:
            colour = logic.swatches(suggestions[:1])[0]["hex"] if board.spot and suggestions else gr.skip()
        return (board, self.jpeg(view, path, "hints"), result_png, result_png, board.chips(), colour,
                gr.skip() if suggestions is None else logic.swatches(suggestions, board.target))

    def takes_no_hints(self, path: str | None, name: str) -> bool:
        """Nothing to edit without a photo; a model without hint inputs only says so."""
        if path is None:
            return True
        if not self.models[name].takes_hints:
            gr.Info(logic.no_hints_message(name))
            return True
        return False

    @shows_user_errors
    def edit(self, edit, path, name, temperature, board: logic.HintBoard, *values, same_spot: bool = False,
             from_picker: bool = False):
        """Applies `edit(board, *values)` and redraws. `same_spot`: the edit leaves the selection where it is
        and the other hints as they are, so the suggested colours stay; `from_picker`: see `redraw`."""
        if self.takes_no_hints(path, name):
            return [gr.skip()] * SKIP_EDITED
        edited = edit(board, *values)
        if edited is board:
            return [gr.skip()] * SKIP_EDITED
        suggestions = None if same_spot else self.editor.suggestions(path, name, edited)
        return self.redraw(path, name, temperature, edited, suggestions, edited.hints != board.hints, from_picker)

    @shows_user_errors
    def click(self, shown_at_view_size: bool, path, name, temperature, board: logic.HintBoard, move: bool,
              index: Sequence[float] | None):
        """A click at `index` on the photo (shown at its own size or at the hint view's) selects a spot or
        a hint, or moves the selected hint; the colorization changes only when a hint moves."""
        if index is None or self.takes_no_hints(path, name):
            return [gr.skip()] * SKIP_EDITED
        size = self.editor.photo(path).image.size
        x, y = logic.point_on_photo(index, logic.view_size(size) if shown_at_view_size else size, size)
        edited, suggestions = self.editor.click(path, name, board, x, y, move)
        return self.redraw(path, name, temperature, edited, suggestions, edited.hints != board.hints)

    def click_view(self, path, name, temperature, board, move, evt: gr.SelectData):
        return self.click(True, path, name, temperature, board, move, evt.index)

    def click_photo(self, path, name, temperature, board, move, evt: gr.SelectData):
        return self.click(False, path, name, temperature, board, move, evt.index)

    def choose_swatch(self, path, name, temperature, board, evt: gr.EventData):
        return self.edit(logic.HintBoard.choose_at, path, name, temperature, board, evt.x, evt.y,
                         logic.rgb_of_hex(evt.hex), same_spot=True)

    def choose_picked(self, path, name, temperature, board, colour: str):
        # Enter in the picker's text field sends the colour from before the typing, and leaving it then
        # sends the typed one: answering the first with its colour would overwrite the typed one
        return self.edit(logic.HintBoard.choose, path, name, temperature, board, logic.rgb_of_hex(colour),
                         same_spot=True, from_picker=True)

    def select_chip(self, path, name, temperature, board, evt: gr.EventData):
        return self.edit(logic.HintBoard.select, path, name, temperature, board, evt.index)

    def undo(self, path, name, temperature, board):
        return self.edit(logic.HintBoard.undo, path, name, temperature, board)

    def remove(self, path, name, temperature, board):
        return self.edit(logic.HintBoard.remove, path, name, temperature, board)

    def clear(self, path, name, temperature, board):
        return self.edit(logic.HintBoard.clear, path, name, temperature, board)

    # the API and batches

    @shows_user_errors
    def colorize(self, photo: str | None, model: str, temperature: float, hints: str | None,
                 reference: str | None = None, palette: str | None = None, strength: float = DEFAULT_STRENGTH) -> str:
        if photo is None:
            raise gr.Error("no photo given")
        image = logic.read_upload(photo).image
        if reference or (palette or "").strip():
            colorized = reference_ui.colorize_with(self.models[model], image, temperature, logic.parse_hints(hints),
                                                   reference, palette, strength)
        else:
            colorized = self.models.colorize_batched(model, image, temperature, logic.parse_hints(hints))
        return self.png(colorized, photo, "colorized")

    def colorize_batch(self, paths: list[str] | None, name: str, temperature: float, progress=gr.Progress()):
        """Several photos in, one zip of their colorizations out; unreadable files are named in one notice."""
        try:
            zipped, notes = logic.colorize_to_zip(
                self.models, paths or [], name, temperature, self.zips,
                lambda finished, total: progress((finished, total), desc="colorizing", unit="photos"))
        except UserError as exc:
            gr.Warning(str(exc))  # a notice alone: an error would also mark the zip's box "Error"
            return None
        if notes:
            gr.Warning(f"{len(notes)} of {len(paths)} files skipped: {'; '.join(notes)}")
        return zipped


def build_demo(models: logic.Models | Mapping[str, Colorizer | str | os.PathLike],
               examples_dir: str | os.PathLike | None = EXAMPLES_DIR) -> gr.Blocks:
    """The page; `models` maps menu names to Colorizers or to what Colorizer.load takes."""
    models = models if isinstance(models, logic.Models) else logic.Models(models)
    files = tempfile.TemporaryDirectory(prefix="colorizer-demo-")
    page = Page(models, files.name)

    def colorize(photo: str, model: str = models.default, temperature: float = DEFAULT_TEMPERATURE,
                 hints: str | None = None, reference: str | None = None, palette: str | None = None,
                 strength: float = DEFAULT_STRENGTH):
        """The photo colorized at its full size, as PNG; a colour photo is reduced to gray first.
        `hints` (hint-capable models): a JSON list like '[{"x": 120, "y": 40, "rgb": [200, 30, 30]}]'
        in the photo's pixels and 0-255 colour, with an optional "radius" in pixels. `reference` (a colour
        image) and `palette` ("#8b4513,#87ceeb:0.5") draw the colours towards theirs by `strength` (0-1)."""
        # here for its defaults: the menu's first model
        return page.colorize(photo, model, temperature, hints, reference, palette, strength)

    with gr.Blocks(title="Colorful Image Colorization", analytics_enabled=False,
                   delete_cache=(3600, 3600)) as demo:
        demo.files = files  # removed with the demo
        board = gr.State(logic.HintBoard())
        views_for = gr.State()  # (photo, model, temperature, hints) the slower tabs were made for
        noted = gr.State(frozenset())  # (photo, note) pairs already shown
        gr.Markdown(DESCRIPTION)
        with gr.Row():
            with gr.Column(scale=1):
                photo = gr.Image(label="Photo", sources=["upload", "clipboard", "webcam"], elem_id="photo")
                # read_upload gets the file as sent (16-bit, EXIF, frames) and explains what is wrong with it;
                # Gradio's own preprocess decodes it and answers a bare "Error" to a file PIL cannot open
                photo.preprocess = lambda payload: payload and payload.path
                model = gr.Dropdown(models.names, value=models.default, label="Model")
                temperature = gr.Slider(0, 1, value=DEFAULT_TEMPERATURE, step=0.01, label="Temperature",
                                        info="0: the most likely colour, vivid; 1: the mean, desaturated")
                button = gr.Button("Colorize", variant="primary")
                with gr.Group(elem_id="hints"):
                    hint_help = gr.Markdown(HINT_HELP, padding=True)
                    swatches = gr.HTML([], html_template=SWATCHES, css_template=BUTTON_CSS, js_on_load=SEND_SWATCH,
                                       label="Suggested colours (click one to place or recolour the hint)",
                                       container=True, show_label=True, elem_id="swatches", head=PICKER_OVER_PAGE)
                    picker = gr.ColorPicker("#c0392b", label="Or pick a colour", elem_id="hint-colour")
                    chips = gr.HTML([], html_template=CHIPS, css_template=BUTTON_CSS, js_on_load=SEND_CHIP,
                                    label="Hints (click one to select it)", container=True, show_label=True, elem_id="hint-chips",
                                    head=LEND_LOADING_VIEWS_A_SIZE)
                    move = gr.Checkbox(label="A click moves the selected hint", elem_id="move-hint")
                    with gr.Row():
                        undo = gr.Button("Undo", size="sm", min_width=60, elem_id="undo-hint")
                        remove = gr.Button("Remove", size="sm", min_width=60, elem_id="remove-hint")
                        clear = gr.Button("Clear all", size="sm", min_width=60, elem_id="clear-hints")
                reference_panel = reference_ui.panel()
            with gr.Column(scale=2):
                with gr.Tab("Colour hints"):
                    hints_view = gr.Image(label="Click to choose a spot for a hint", format="jpeg", interactive=False,
                                          buttons=["fullscreen"], elem_id="hint-view")
                    download = gr.DownloadButton("Download PNG", elem_id="download")
                with gr.Tab("Before / after") as slider_tab:
                    slider = gr.ImageSlider(label="Gray | colorized", format="png")
                with gr.Tab("Full resolution"):
                    result = Picture(label="Colorized, full resolution (PNG)", elem_id="result")
                with gr.Tab("Both models") as compared_tab:
                    compared = Picture(label="The models side by side")
                with gr.Tab("Uncertainty") as uncertainty_tab:
                    uncertainty = Picture(label="Entropy of the predicted colours (bright: unsure)")
                with gr.Tab("Compare with the truth", visible=False) as truth_tab:
                    truth = gr.ImageSlider(label="Original | colorized", format="png")
                with gr.Tab("Several photos"):
                    batch = gr.File(label=f"Photos (up to {logic.MAX_BATCH_PHOTOS})", file_count="multiple",
                                    elem_id="batch-photos")  # no file_types: a wrong file would fail them all
                    batch_button = gr.Button("Colorize all, as one zip", elem_id="batch-colorize")
                    batch_zip = gr.File(label="The colorized photos (PNG, in a zip)", elem_id="batch-zip")
        demo_video.build_tab(models, files.name)  # the Video tab (demo/video.py)

        inputs, outputs = [photo, model, temperature], [slider, result, compared, uncertainty]
        views = outputs + [truth, truth_tab, hints_view, download, views_for, noted]
        private = {"api_visibility": "private"}
        gr.on([button.click, model.change, temperature.release], page.show, inputs + [board, noted], views,
              trigger_mode="always_last", **private)
        # a bad upload: its message alone (no "Error" on every view), and the upload box back, not a broken image
        checked = photo.upload(page.check_upload, photo, None, show_progress="hidden", **private)
        checked.success(page.show_new_photo, inputs, [board, chips, swatches] + views, trigger_mode="always_last",
                        **private)
        checked.failure(lambda: None, None, photo, queue=False, show_progress="hidden", **private)
        # a new photo (an example, a cleared one) starts without hints
        photo.change(lambda: (logic.HintBoard(), [], []), None, [board, chips, swatches], queue=False, **private)
        for tab in (slider_tab, compared_tab, uncertainty_tab):
            tab.select(page.refresh, inputs + [board, views_for, noted], views, trigger_mode="always_last", **private)

        # Every event that edits the hints runs, in the order it was made, one at a time: "multiple" keeps
        # the clicks made while one is computed (Gradio's default drops them), and one at a time keeps two
        # of them (a click and the picker's blur) from both editing the same board.
        edited = [board, hints_view, result, download, chips, picker, swatches]
        hint_inputs = inputs + [board]
        in_order = {"trigger_mode": "multiple", "concurrency_id": "hint-edits", "concurrency_limit": 1,
                    "show_progress": "minimal", **private}
        hints_view.select(page.click_view, hint_inputs + [move], edited, **in_order)
        for view in (result, photo):
            view.select(page.click_photo, hint_inputs + [move], edited, **in_order)
        swatches.click(page.choose_swatch, hint_inputs, edited, **in_order)
        chips.click(page.select_chip, hint_inputs, edited, **in_order)
        # not .change, which also fires when a redraw shows the selected hint's colour; not .input, which fires
        # all along a drag
        gr.on([picker.release, picker.submit, picker.blur], page.choose_picked, hint_inputs + [picker], edited,
              **in_order)
        undo.click(page.undo, hint_inputs, edited, **in_order)
        remove.click(page.remove, hint_inputs, edited, **in_order)
        clear.click(page.clear, hint_inputs, edited, **in_order)
        panel = [hint_help, picker, move, undo, remove, clear]
        model.change(page.hint_panel, model, panel, queue=False, **private)
        demo.load(page.hint_panel, model, panel, queue=False, **private)
        batch_button.click(page.colorize_batch, [batch, model, temperature], batch_zip, concurrency_limit=1,
                           **private)

        reference_panel.connect(models, page.editor, page.png, page.jpeg, photo=photo, model=model, temperature=temperature,
                                board=board,
                                back_to_automatic=[button.click, model.change, temperature.release, photo.upload],
                                hints_view=hints_view, result=result, download=download)

        # the API: a photo in, its full-size colorization out: Client(url).predict(handle_file(p), api_name="/colorize")
        hidden_trigger = gr.Button(visible=False)
        hidden_hints = gr.Textbox(visible=False)
        hidden_reference = gr.Image(visible=False)
        hidden_reference.preprocess = lambda payload: payload and payload.path
        hidden_look = [hidden_reference, gr.Textbox(visible=False), gr.Number(DEFAULT_STRENGTH, visible=False)]
        hidden_trigger.click(colorize, inputs + [hidden_hints] + hidden_look, Picture(label="colorized", visible=False),
                             api_name="colorize", concurrency_limit=MAX_BATCH)

        examples = sorted(Path(examples_dir).glob("*.jpg")) if examples_dir else []
        if examples:
            # a fresh cache per run: Gradio keys it by component id, so an old one may hold another model's colours
            demo.examples_cache = tempfile.TemporaryDirectory(prefix="colorizer-demo-examples-")
            os.environ["GRADIO_EXAMPLES_CACHE"] = demo.examples_cache.name
            gallery = gr.Examples([[str(path)] for path in examples], [photo],
                                  outputs + [hints_view, download, model, temperature], page.show_example,
                                  cache_examples=True, label="Examples (grayscale photos: people, animals, places)")
            # the examples are gray: nothing to compare with (and Gradio cannot cache an empty ImageSlider)
            gallery.dataset.click(lambda: gr.Tab(visible=False), None, truth_tab, queue=False, **private)
    return demo.queue(default_concurrency_limit=CONCURRENCY, max_size=64)


def launch(host: str = "127.0.0.1", port: int = 7860, share: bool = False,
           models_dir: str | os.PathLike | None = "models", open_browser: bool = False) -> None:
    """Serve the demo on the bundled models plus the checkpoints in `models_dir` (what `colorizer demo` runs);
    `open_browser`: also open the page in the default browser, once it is served."""
    demo = build_demo(logic.find_models(models_dir))
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop as on Ctrl-C: close, remove temporary files
    demo.launch(server_name=host, server_port=port, share=share, ssr_mode=False, run_history=False,
                footer_links=["api"], max_file_size="100mb", inbrowser=open_browser)
