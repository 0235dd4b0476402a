"""The browser demo: `colorizer demo`, or `build_demo({"generic": colorizer}).launch()` for your own models."""

from __future__ import annotations

import os
import signal
import tempfile
from functools import partial
from pathlib import Path
from typing import Mapping

# Gradio reads these when imported: no usage analytics, no Hugging Face look-ups; the demo works offline
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gradio as gr  # noqa: E402

from colorizer.decode import DEFAULT_TEMPERATURE  # noqa: E402
from colorizer.errors import UserError  # noqa: E402
from colorizer.infer import Colorizer  # noqa: E402
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


def build_demo(models: logic.Models | Mapping[str, Colorizer | str | os.PathLike],
               examples_dir: str | os.PathLike | None = EXAMPLES_DIR) -> gr.Blocks:
    """The page; `models` maps menu names to Colorizers or to what Colorizer.load takes."""
    models = models if isinstance(models, logic.Models) else logic.Models(models)
    pngs = tempfile.TemporaryDirectory(prefix="colorizer-demo-")
    png = partial(logic.save_png, pngs.name)

    def show(path: str | None, name: str, temperature: float):
        if path is None:
            return None, None, None, None, None, gr.Tab(visible=False)
        try:
            views = logic.colorize_views(models, path, name, temperature)
        except UserError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        for note in views.notes:
            gr.Info(note)
        result = png(views.result, "colorized")
        truth = (png(views.original, "original"), result) if views.original else None
        return ((png(views.gray, "gray"), result), result, png(views.compared, "models"),
                png(views.uncertainty, "uncertainty"), truth, gr.Tab(visible=truth is not None))

    def show_example(path: str):
        return *show(path, models.default, DEFAULT_TEMPERATURE)[:4], models.default, DEFAULT_TEMPERATURE

    def colorize(photo: str, model: str = models.default, temperature: float = DEFAULT_TEMPERATURE):
        """The photo colorized at its full size, as PNG; a colour photo is reduced to gray first."""
        if photo is None:
            raise gr.Error("no photo given")
        try:
            return png(models.colorize_batched(model, logic.read_upload(photo).image, temperature), "colorized")
        except UserError as exc:
            raise gr.Error(str(exc), print_exception=False) from None

    with gr.Blocks(title="Colorful Image Colorization", analytics_enabled=False,
                   delete_cache=(3600, 3600)) as demo:
        demo.pngs = pngs  # removed with the demo
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
            with gr.Column(scale=2):
                with gr.Tab("Before / after"):
                    slider = gr.ImageSlider(label="Gray | colorized", format="png")
                with gr.Tab("Full resolution"):
                    result = Picture(label="Colorized, full resolution (PNG)", elem_id="result")
                with gr.Tab("Both models"):
                    compared = Picture(label="The models side by side")
                with gr.Tab("Uncertainty"):
                    uncertainty = Picture(label="Entropy of the predicted colours (bright: unsure)")
                with gr.Tab("Compare with the truth", visible=False) as truth_tab:
                    truth = gr.ImageSlider(label="Original | colorized", format="png")

        inputs, outputs = [photo, model, temperature], [slider, result, compared, uncertainty]
        gr.on([button.click, photo.upload, model.change, temperature.release], show,
              inputs, outputs + [truth, truth_tab], api_visibility="private", trigger_mode="always_last")
        # the API: a photo in, its full-size colorization out: Client(url).predict(handle_file(p), api_name="/colorize")
        hidden_trigger = gr.Button(visible=False)
        hidden_trigger.click(colorize, inputs, Picture(label="colorized", visible=False), api_name="colorize",
                             concurrency_limit=MAX_BATCH)

        examples = sorted(Path(examples_dir).glob("*.jpg")) if examples_dir else []
        if examples:
            # a fresh cache per run: Gradio keys it by component id, so an old one may hold another model's colours
            demo.examples_cache = tempfile.TemporaryDirectory(prefix="colorizer-demo-examples-")
            os.environ["GRADIO_EXAMPLES_CACHE"] = demo.examples_cache.name
            gallery = gr.Examples([[str(path)] for path in examples], [photo], outputs + [model, temperature],
                                  show_example, cache_examples=True,
                                  label="Examples (grayscale photos from ImageNet)")
            # the examples are gray: nothing to compare with (and Gradio cannot cache an empty ImageSlider)
            gallery.dataset.click(lambda: gr.Tab(visible=False), None, truth_tab, queue=False, api_visibility="private")
    return demo.queue(default_concurrency_limit=CONCURRENCY, max_size=64)


def launch(host: str = "127.0.0.1", port: int = 7860, share: bool = False,
           models_dir: str | os.PathLike | None = "models") -> None:
    """Serve the demo on the bundled models plus the checkpoints in `models_dir` (what `colorizer demo` runs)."""
    demo = build_demo(logic.find_models(models_dir))
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop as on Ctrl-C: close, remove temporary files
    demo.launch(server_name=host, server_port=port, share=share, ssr_mode=False, run_history=False,
                footer_links=["api"], max_file_size="100mb")
