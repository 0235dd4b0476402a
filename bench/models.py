"""Colorizing a 1024x768 photo with a bundled model on the CPU, as `colorizer colorize` does.

Times `Colorizer.colorize` (full-resolution Lab, network at the model's working size, annealed mean,
bilinear upsampling, join with the original L) on a 1024x768 photo from ../shared/data when present
(else a demo example, gray: the time does not depend on the colours), after one warm-up, for three ways
of loading the model, interleaved so that load from other processes hits all alike:
- eager: `Colorizer.load(model, backend="torch")`, what `colorize` used for fewer than 10 photos;
- frozen: `Colorizer.load(model, backend="torch", optimize=True)`, the frozen graph that the CLI used for
  batches and the demo always;
- auto: `Colorizer.load(model, optimize=True)` as they load it now (backend "auto": PyTorch where the CPU
  has native bf16, ONNX Runtime in float32 elsewhere).
Last line: `median_s=<auto> frozen_median_s=<x> eager_median_s=<y> speedup=<faster of eager and frozen
over auto> backend=<auto's pick>`. Goal <= 0.5 s, and on CPUs without native bf16 a speedup of 1.5.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from PIL import Image

from bench.machine import describe
from colorizer.infer import DEFAULT_MODEL, Colorizer

REPEATS = 9
ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "dogs" / "val"
EXAMPLE = ROOT / "demo" / "examples" / "beagle.jpg"


def photo() -> Image.Image:
    source = next(iter(sorted(SHARED.rglob("*.jpg"))), EXAMPLE)
    return Image.open(source).convert("RGB").resize((1024, 768), Image.Resampling.BICUBIC)


def main() -> None:
    model = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_MODEL
    image = photo()
    print(describe())
    print(f"{torch.get_num_threads()} threads; model {model}; photo {image.size}")
    colorizers = {}
    for name, options in (("eager", {"backend": "torch"}), ("frozen", {"backend": "torch", "optimize": True}),
                          ("auto", {"optimize": True})):
        start = time.perf_counter()
        colorizers[name] = Colorizer.load(model, **options)
        colorizers[name].colorize(image)  # warm-up
        print(f"{name}: backend {colorizers[name].backend}, {colorizers[name].dtype}, "
              f"set-up and first photo {time.perf_counter() - start:.1f} s")
    times = {name: [] for name in colorizers}
    for _ in range(REPEATS):
        for name, colorizer in colorizers.items():
            start = time.perf_counter()
            colorizer.colorize(image)
            times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(t) for name, t in times.items()}
    print(", ".join(f"{name}: {median[name]:.3f} s" for name in median) + f" (medians of {REPEATS})")
    before = min(median["eager"], median["frozen"])
    print(f"median_s={median['auto']:.3f} frozen_median_s={median['frozen']:.3f} eager_median_s={median['eager']:.3f} "
          f"speedup={before / median['auto']:.2f} backend={colorizers['auto'].backend}")


if __name__ == "__main__":
    main()
