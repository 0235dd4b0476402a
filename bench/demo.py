"""Median latency of the demo's /colorize over HTTP: a 1024x768 photo, the default model, gradio_client.

Each run uploads the photo, waits in the queue, colorizes and downloads the PNG, as a user's client does.
Uses the bundled default model; without it (before the models are trained) it times an untrained network
of the same architecture (effnet-lite0 at 224 px, the same compute) and says so.
The last line printed is `median_s=<seconds>`.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def untrained_model(folder: Path, input_size: int = 224, **options) -> str:
    """A randomly initialised effnet-lite0 (the bundled models' shape) saved as a run in `folder`."""
    from colorizer import checkpoint
    from colorizer.models import build_model

    options = {"pretrained": False, **options}
    checkpoint.save_model(folder / "model", build_model("effnet-lite0", **options),
                          {"preset": "effnet-lite0", "options": options, "input_size": input_size,
                           "prior": [1 / 313] * 313})
    return str(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()

    from gradio_client import Client, handle_file
    from PIL import Image

    from colorizer.infer import DEFAULT_MODEL
    from demo.app import EXAMPLES_DIR, build_demo
    from demo.logic import find_models

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if DEFAULT_MODEL in find_models():
            models, what = {DEFAULT_MODEL: DEFAULT_MODEL}, f"bundled model {DEFAULT_MODEL!r}"
        else:
            models = {DEFAULT_MODEL: untrained_model(tmp)}
            what = "NO bundled model yet: an untrained effnet-lite0, 224 px"
        photo = tmp / "photo.jpg"
        with Image.open(EXAMPLES_DIR / "church.jpg") as example:
            example.resize((1024, 768), Image.LANCZOS).save(photo, quality=90)

        demo = build_demo(models, examples_dir=None)
        demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True, ssr_mode=False, run_history=False)
        try:
            client = Client(demo.local_url, verbose=False)
            times = []
            for run in range(args.warmup + args.runs):
                start = time.perf_counter()
                client.predict(handle_file(str(photo)), api_name="/colorize")
                if run >= args.warmup:
                    times.append(time.perf_counter() - start)
        finally:
            demo.close()

    import torch

    print(f"model: {what}")
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"/colorize 1024x768 over HTTP, {args.runs} runs: min {min(times):.3f} s, max {max(times):.3f} s")
    print(f"median_s={statistics.median(times):.3f}")


if __name__ == "__main__":
    main()
