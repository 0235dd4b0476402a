"""Median time the demo takes to colorize a 1024x768 photo again after a colour hint is added.

Times what the page's handler does after each hint edit, without Gradio's transport: `HintEditor.views`
(the network and the decoding from the photo's kept lightness, then the hint view with its markers) and
the files it writes (the result as PNG, the view as JPEG). The photo already has two hints; each run adds one
at a random spot. Also reported: a click on the photo, which selects a spot and asks the model for the
colours likeliest there (`Colorizer.suggest`), then redraws the hint view from the kept colorization
(choosing a colour then places the hint: the edit timed above). Uses the bundled default model if it takes hints;
otherwise (until it is retrained with hint inputs) a randomly initialised effnet-lite0 with hint inputs
at the same 160 px working size (the same compute), and says so. Goal: 0.3 s.
The model is loaded as the demo loads it (`optimize=True`, backend "auto") and, in the same run and
interleaved with it, on the PyTorch backend (the demo's path before backends), so the two compare.
The last line printed is `median_s=<seconds> goal_s=0.3 ratio=<median / goal> torch_median_s=<seconds>
backend=<auto's pick>`.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.demo import untrained_model  # noqa: E402

GOAL_S = 0.3


def hint_model(folder: Path) -> str:
    """The bundled default model if it takes hints, else a random one of the same shape saved in `folder`."""
    from colorizer.infer import DEFAULT_MODEL, Colorizer, bundled_model_path

    if bundled_model_path(DEFAULT_MODEL).is_file() and Colorizer.load(DEFAULT_MODEL).takes_hints:
        return DEFAULT_MODEL
    return untrained_model(folder, input_size=160, frozen_stages=2, hint_inputs=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()

    import torch
    from PIL import Image

    from bench.machine import describe
    from colorizer.decode import DEFAULT_TEMPERATURE
    from colorizer.infer import Colorizer
    from demo.app import EXAMPLES_DIR
    from demo.logic import HintBoard, HintEditor, Models, save_jpeg, save_png

    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        source = hint_model(tmp)
        what = "bundled model 'generic'" if source == "generic" else \
            "NO hint-capable bundled model yet: a random effnet-lite0 with hint inputs, 160 px"
        photo = tmp / "photo.jpg"
        with Image.open(EXAMPLES_DIR / "church.jpg") as example:
            example.resize((1024, 768), Image.LANCZOS).save(photo, quality=90)
        # loaded as the demo loads them: optimize=True, the demo's backend "auto" and PyTorch's
        editors = {backend: HintEditor(Models({"generic": Colorizer.load(source, optimize=True, backend=backend)}))
                   for backend in ("auto", "torch")}
        auto = editors["auto"].models["generic"].backend
        board = HintBoard().place(300, 200, (40, 90, 160)).place(700, 600, (60, 140, 50))
        for editor in editors.values():
            editor.views(photo, "generic", DEFAULT_TEMPERATURE, board)  # the upload's first colorization

        def spot() -> tuple[int, int]:
            return rng.randrange(1024), rng.randrange(768)

        def redraw(editor: HintEditor, board: HintBoard) -> None:
            result, view = editor.views(photo, "generic", DEFAULT_TEMPERATURE, board)
            save_png(tmp, result, "colorized"), save_jpeg(tmp, view, "hints")

        edits = {backend: [] for backend in editors}
        clicks = {backend: [] for backend in editors}
        for _ in range(args.warmup + args.runs):
            rgb, placed, clicked_at = [rng.randrange(256) for _ in range(3)], spot(), spot()
            for backend, editor in editors.items():
                start = time.perf_counter()
                redraw(editor, board.place(*placed, rgb))
                edits[backend].append(time.perf_counter() - start)
                start = time.perf_counter()
                clicked, _ = editor.click(photo, "generic", board, *clicked_at, move=False)
                redraw(editor, clicked)
                clicks[backend].append(time.perf_counter() - start)

    print(f"model: {what}")
    print(f"{describe()}; torch threads {torch.get_num_threads()}")
    for backend in editors:
        runs, placing = edits[backend][args.warmup :], clicks[backend][args.warmup :]
        print(f"{backend} ({editors[backend].models['generic'].backend}): a click that selects a spot (suggested "
              f"colours, the hint view redrawn): median {statistics.median(placing):.3f} s; colorizing 1024x768 again after "
              f"a hint is added, {args.runs} runs: median {statistics.median(runs):.3f} s, min {min(runs):.3f} s, "
              f"max {max(runs):.3f} s")
    median = statistics.median(edits["auto"][args.warmup :])
    print(f"median_s={median:.3f} goal_s={GOAL_S} ratio={median / GOAL_S:.2f} "
          f"torch_median_s={statistics.median(edits['torch'][args.warmup :]):.3f} backend={auto}")


if __name__ == "__main__":
    main()
