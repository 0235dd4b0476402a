"""The browser demo: `colorizer demo`, or `build_demo({"generic": colorizer}).launch()` for your own models."""

from __future__ import annotations

import functools
import os
import signal
import tempfile
from collections.abc import Mapping
from functools import partial
from pathlib import Path

# Gradio reads these when imported: no usage analytics, no Hugging Face look-ups; the demo works offline
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gradio as gr  # noqa: E402

from colorizer.decode import DEFAULT_TEMPERATURE  # noqa: E402
from colorizer.errors import UserError  # noqa: E402
from colorizer.infer import MAX_SATURATION, Colorizer  # noqa: E402
from demo import logic  # noqa: E402

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
HINT_HELP = """**Colour hints.** Click the photo or its colorization to place a hint there, in the colour the model
finds likeliest; then pick another from the suggested colours or the colour picker. Click a hint's marker or
its chip to select it."""

# The suggested colours and the hint list are buttons drawn from the state (Gradio 6 HTML templates);
# a click sends the button's data back to Python as the event's data.
SWATCHES = """<div class="swatches">{{#each value}}<button class="swatch" data-hex="{{this.hex}}"
 style="background: {{this.hex}}; color: {{this.ink}}" title="{{this.hex}}">{{this.label}}</button>{{/each}}</div>"""
CHIPS = """<div class="chips">{{#each value}}<button class="{{this.state}}" data-index="{{this.index}}"
 style="background: {{this.hex}}; color: {{this.ink}}" title="{{this.hex}}">{{this.label}}</button>{{else}}
 <span class="empty">No hints yet</span>{{/each}}</div>"""
BUTTON_CSS = """.swatches, .chips { display: flex; flex-wrap: wrap; gap: 6px; padding-top: 1.8em; }  /* below the label */
button { border: 1px solid #8888; border-radius: 6px; padding: 6px 10px; min-width: 3.5em; font-size: 0.85em; }
.selected { outline: 3px solid var(--color-accent); outline-offset: 1px; }
.empty { opacity: 0.6; font-size: 0.9em; }"""
SEND_SWATCH = ("element.addEventListener('click', (event) => { const button = event.target.closest('button[data-hex]');"
               " if (button) trigger('click', {hex: button.dataset.hex}); });")
SEND_CHIP = ("element.addEventListener('click', (event) => { const button = event.target.closest('button[data-index]');"
             " if (button) trigger('click', {index: Number(button.dataset.index)}); });")


def shows_user_errors(fn):
    """A handler whose UserErrors reach the page as a one-line notice, not a stack trace."""
    @functools.wraps(fn)
    def handler(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
    return handler


def build_demo(models: logic.Models | Mapping[str, Colorizer | str | os.PathLike],
               examples_dir: str | os.PathLike | None = EXAMPLES_DIR) -> gr.Blocks:
    """The page; `models` maps menu names to Colorizers or to what Colorizer.load takes."""
    models = models if isinstance(models, logic.Models) else logic.Models(models)
    editor = logic.HintEditor(models)
    pngs = tempfile.TemporaryDirectory(prefix="colorizer-demo-")
    png = partial(logic.save_png, pngs.name)
    jpeg = partial(logic.save_jpeg, pngs.name)

    @shows_user_errors
    def show(path: str | None, name: str, temperature: float, strength: float, board: logic.HintBoard):
        """Every view of the photo, with its hints; `views_for` records what the slower tabs show."""
        if path is None:
            return None, None, None, None, None, gr.Tab(visible=False), None, None, None
        views = logic.colorize_views(models, path, name, temperature, board, strength)
        for note in views.notes:
            gr.Info(note)
        result = png(views.result, "colorized")
        truth = (png(views.original, "original"), result) if views.original else None
        return ((png(views.gray, "gray"), result), result, png(views.compared, "models"),
                png(views.uncertainty, "uncertainty"), truth, gr.Tab(visible=truth is not None),
                jpeg(logic.hint_view(views.result, board), "hints"), result, (path, name, temperature, strength, board.hints))

    def show_new_photo(path: str | None, name: str, temperature: float, strength: float):
        board = logic.HintBoard()
        return board, [], [], *show(path, name, temperature, strength, board)

    def show_example(path: str):
        views = show(path, models.default, DEFAULT_TEMPERATURE, 1.0, logic.HintBoard())
        return *views[:4], *views[6:8], models.default, DEFAULT_TEMPERATURE

    def refresh(path: str | None, name: str, temperature: float, strength: float, board: logic.HintBoard, views_for):
        """The slower tabs, when opened after hint edits: only if they show something else."""
        if path is None or views_for == (path, name, temperature, strength, board.hints):
            return [gr.skip()] * 9
        return show(path, name, temperature, strength, board)

    @shows_user_errors
    def redraw(path: str, name: str, temperature: float, strength: float, board: logic.HintBoard, suggestions=None):
        """The page after a hint edit: the hint view, the full-resolution result, its download, the hint
        list, the picker on the selected hint's colour and, unless None (kept), the colours suggested there."""
        result, view = editor.views(path, name, temperature, board, strength)
        result_png = png(result, "colorized")
        selected = board.hints[board.selected].hex if board.selected is not None else gr.skip()
        return (board, jpeg(view, "hints"), result_png, result_png, board.chips(), selected,
                gr.skip() if suggestions is None else logic.swatches(suggestions))

    def hint_edit(edit, same_spot: bool = False):
        """A handler that applies `edit(board, *values)` to the hints and redraws; nothing happens without
        a photo, and a model without hint inputs only says so. `same_spot`: the edit leaves the selected
        hint where it is and the others as they are, so the suggested colours stay."""
        @shows_user_errors
        def handler(path, name, temperature, strength, board, *values):
            if path is None:
                return [gr.skip()] * 7
            if not models[name].takes_hints:
                gr.Info(logic.no_hints_message(name))
                return [gr.skip()] * 7
            edited = edit(board, *values)
            if edited is board:
                return [gr.skip()] * 7
            suggestions = None if same_spot else editor.suggestions(path, name, edited)
            return redraw(path, name, temperature, strength, edited, suggestions)
        return handler

    def clicked(shown_at_view_size: bool):
        @shows_user_errors
        def handler(path, name, temperature, strength, board, move, evt: gr.SelectData):
            if path is None or evt.index is None:
                return [gr.skip()] * 7
            if not models[name].takes_hints:
                gr.Info(logic.no_hints_message(name))
                return [gr.skip()] * 7
            size = editor.photo(path).image.size
            shown = logic.view_size(size) if shown_at_view_size else size
            x, y = logic.point_on_photo(evt.index, shown, size)
            board, suggestions = editor.click(path, name, board, x, y, move)
            return redraw(path, name, temperature, strength, board, suggestions)
        return handler

    def hint_panel(name: str):
        """The hint controls, enabled only for a model that takes hints."""
        takes = models[name].takes_hints
        help_text = HINT_HELP if takes else f"**Colour hints**: {logic.no_hints_message(name)}."
        return (help_text, *[gr.update(interactive=takes)] * 5)

    @shows_user_errors
    def colorize(photo: str, model: str = models.default, temperature: float = DEFAULT_TEMPERATURE,
                 hints: str | None = None):
        """The photo colorized at its full size, as PNG; a colour photo is reduced to gray first.
        `hints` (hint-capable models): a JSON list like '[{"x": 120, "y": 40, "rgb": [200, 30, 30]}]'
        in the photo's pixels and 0-255 colour, with an optional "radius" in pixels."""
        if photo is None:
            raise gr.Error("no photo given")
        image = logic.read_upload(photo).image
        return png(models.colorize_batched(model, image, temperature, logic.parse_hints(hints)), "colorized")

    with gr.Blocks(title="Colorful Image Colorization", analytics_enabled=False,
                   delete_cache=(3600, 3600)) as demo:
        demo.pngs = pngs  # removed with the demo
        board = gr.State(logic.HintBoard())
        views_for = gr.State()  # (photo, model, temperature, strength, hints) the slower tabs were made for
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
                strength = gr.Slider(0, MAX_SATURATION, value=1.0, step=0.05, label="Colour strength",
                                     info="0: gray; 1: as predicted; 2: twice as strong", elem_id="strength")
                button = gr.Button("Colorize", variant="primary")
                with gr.Group(elem_id="hints"):
                    hint_help = gr.Markdown(HINT_HELP, padding=True)
                    swatches = gr.HTML([], html_template=SWATCHES, css_template=BUTTON_CSS, js_on_load=SEND_SWATCH,
                                       label="Suggested colours for the selected hint", container=True,
                                       show_label=True, elem_id="swatches")
                    picker = gr.ColorPicker("#c0392b", label="Colour of the selected hint", elem_id="hint-colour")
                    chips = gr.HTML([], html_template=CHIPS, css_template=BUTTON_CSS, js_on_load=SEND_CHIP,
                                    label="Hints (click one to select it)", container=True, show_label=True, elem_id="hint-chips")
                    move = gr.Checkbox(label="A click moves the selected hint", elem_id="move-hint")
                    with gr.Row():
                        undo = gr.Button("Undo", size="sm", min_width=60, elem_id="undo-hint")
                        remove = gr.Button("Remove", size="sm", min_width=60, elem_id="remove-hint")
                        clear = gr.Button("Clear all", size="sm", min_width=60, elem_id="clear-hints")
            with gr.Column(scale=2):
                with gr.Tab("Colour hints"):
                    hints_view = gr.Image(label="Click to place a hint", format="jpeg", interactive=False,
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

        inputs, outputs = [photo, model, temperature, strength], [slider, result, compared, uncertainty]
        views = outputs + [truth, truth_tab, hints_view, download, views_for]
        private = {"api_visibility": "private"}
        gr.on([button.click, model.change, temperature.release, strength.release], show, inputs + [board], views,
              trigger_mode="always_last", **private)
        photo.upload(show_new_photo, inputs, [board, chips, swatches] + views, trigger_mode="always_last", **private)
        # a new photo (an example, a cleared one) starts without hints
        photo.change(lambda: (logic.HintBoard(), [], []), None, [board, chips, swatches], queue=False, **private)
        for tab in (slider_tab, compared_tab, uncertainty_tab):
            tab.select(refresh, inputs + [board, views_for], views, trigger_mode="always_last", **private)

        edited = [board, hints_view, result, download, chips, picker, swatches]
        hint_inputs = inputs + [board]
        for view, at_view_size in ((hints_view, True), (result, False), (photo, False)):
            view.select(clicked(at_view_size), hint_inputs + [move], edited, trigger_mode="always_last", **private)
        recolour = hint_edit(lambda b, colour: b.recolour(logic.rgb_of_hex(colour)), same_spot=True)
        pick = hint_edit(logic.HintBoard.select)

        def on_swatch(path, name, temperature, strength, board, evt: gr.EventData):
            return recolour(path, name, temperature, strength, board, evt.hex)

        def on_chip(path, name, temperature, strength, board, evt: gr.EventData):
            return pick(path, name, temperature, strength, board, evt.index)

        swatches.click(on_swatch, hint_inputs, edited, **private)
        chips.click(on_chip, hint_inputs, edited, **private)
        # not .change, which also fires when a redraw shows the selected hint's colour; not .input, which fires
        # all along a drag
        gr.on([picker.release, picker.submit, picker.blur], recolour, hint_inputs + [picker], edited,
              trigger_mode="always_last", **private)
        undo.click(hint_edit(logic.HintBoard.undo), hint_inputs, edited, **private)
        remove.click(hint_edit(logic.HintBoard.remove), hint_inputs, edited, **private)
        clear.click(hint_edit(logic.HintBoard.clear), hint_inputs, edited, **private)
        panel = [hint_help, picker, move, undo, remove, clear]
        model.change(hint_panel, model, panel, queue=False, **private)
        demo.load(hint_panel, model, panel, queue=False, **private)

        # the API: a photo in, its full-size colorization out: Client(url).predict(handle_file(p), api_name="/colorize")
        hidden_trigger = gr.Button(visible=False)
        hidden_hints = gr.Textbox(visible=False)
        hidden_trigger.click(colorize, [photo, model, temperature, hidden_hints], Picture(label="colorized", visible=False),
                             api_name="colorize", concurrency_limit=MAX_BATCH)

        examples = sorted(Path(examples_dir).glob("*.jpg")) if examples_dir else []
        if examples:
            # a fresh cache per run: Gradio keys it by component id, so an old one may hold another model's colours
            demo.examples_cache = tempfile.TemporaryDirectory(prefix="colorizer-demo-examples-")
            os.environ["GRADIO_EXAMPLES_CACHE"] = demo.examples_cache.name
            gallery = gr.Examples([[str(path)] for path in examples], [photo],
                                  outputs + [hints_view, download, model, temperature], show_example,
                                  cache_examples=True, label="Examples (grayscale photos from ImageNet)")
            # the examples are gray: nothing to compare with (and Gradio cannot cache an empty ImageSlider)
            gallery.dataset.click(lambda: gr.Tab(visible=False), None, truth_tab, queue=False, **private)
    return demo.queue(default_concurrency_limit=CONCURRENCY, max_size=64)


def launch(host: str = "127.0.0.1", port: int = 7860, share: bool = False,
           models_dir: str | os.PathLike | None = "models") -> None:
    """Serve the demo on the bundled models plus the checkpoints in `models_dir` (what `colorizer demo` runs)."""
    demo = build_demo(logic.find_models(models_dir))
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop as on Ctrl-C: close, remove temporary files
    demo.launch(server_name=host, server_port=port, share=share, ssr_mode=False, run_history=False,
                footer_links=["api"], max_file_size="100mb")
