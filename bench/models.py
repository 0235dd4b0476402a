"""Colorizing a 1024x768 photo with a bundled model on the CPU, as `colorizer colorize` does.

Times `Colorizer.colorize` (full-resolution Lab, network at the model's working size, annealed mean,
bilinear upsampling, join with the original L) on a 1024x768 photo from ../shared/data when present
(else a synthetic one), after one warm-up. Reported for the eager network and for the frozen graph that
the CLI and the demo use. Last line: `median_s=<frozen graph median> eager_median_s=<x>`. Goal <= 0.5 s.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from PIL import Image

from colorizer.infer import DEFAULT_MODEL, Colorizer

REPEATS = 9
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "dogs" / "val"


def photo() -> Image.Image:
    sources = sorted(SHARED.rglob("*.jpg"))[:1]
    if sources:
        return Image.open(sources[0]).convert("RGB").resize((1024, 768), Image.Resampling.BICUBIC)
    from tests.conftest import photo as synthetic

    return synthetic(1024, 768)


def median_seconds(colorizer: Colorizer, image: Image.Image) -> float:
    colorizer.colorize(image)  # warm-up
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        colorizer.colorize(image)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    model = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_MODEL
    image = photo()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; model {model}; photo {image.size}")
    eager = median_seconds(Colorizer.load(model), image)
    start = time.perf_counter()
    frozen_colorizer = Colorizer.load(model, optimize=True)
    print(f"frozen graph set-up: {time.perf_counter() - start:.1f} s")
    frozen = median_seconds(frozen_colorizer, image)
    print(f"eager: {eager:.3f} s, frozen graph: {frozen:.3f} s (medians of {REPEATS})")
    print(f"median_s={frozen:.3f} eager_median_s={eager:.3f}")


if __name__ == "__main__":
    main()
