"""What a reference photo or a palette adds to colorizing a 1024x768 photo, and what alternatives cost.

Times `Colorizer.colorize` on a 1024x768 photo automatically, with a 1024x768 colour reference (its
guide made inside the call: the reference is shrunk, run through the network once and matched), and
with a three-colour palette, interleaved in one run so that all three see the same load; then
`Colorizer.alternatives(k=4)`. The bundled generic model, loaded as the CLI loads it for batches and the
demo for good (the frozen graph). Goal: a reference or a palette adds at most 0.15 s.
The last line printed is `reference_extra_s=<s> palette_extra_s=<s> goal_s=0.15 ratio=<larger / goal>`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.demo import cpu_name  # noqa: E402

GOAL_S = 0.15
PALETTE = "#8b4513,#87ceeb:0.5,#2e8b57"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()

    import torch
    from PIL import Image

    from colorizer.infer import Colorizer
    from demo.app import EXAMPLES_DIR

    colorizer = Colorizer.load("generic", optimize=True)
    examples = sorted(EXAMPLES_DIR.glob("*.jpg"))
    with Image.open(examples[0]) as first:
        photo = first.resize((1024, 768), Image.LANCZOS)
    with Image.open(examples[1]) as second:  # the examples are gray: a colour reference from a hue ramp
        gray = second.convert("L").resize((1024, 768), Image.LANCZOS)
    hue = Image.linear_gradient("L").resize((1024, 768)).rotate(90)
    reference = Image.merge("HSV", (hue, Image.new("L", (1024, 768), 160), gray)).convert("RGB")
    calls = {"automatic": lambda: colorizer.colorize(photo),
             "reference": lambda: colorizer.colorize(photo, reference=reference),
             "palette": lambda: colorizer.colorize(photo, palette=PALETTE)}
    times: dict[str, list[float]] = {name: [] for name in calls}
    for run in range(args.warmup + args.runs):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            if run >= args.warmup:
                times[name].append(time.perf_counter() - start)
    start = time.perf_counter()
    colorizer.alternatives(photo, k=4)
    alternatives_s = time.perf_counter() - start
    median = {name: statistics.median(values) for name, values in times.items()}

    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    for name, value in median.items():
        print(f"{name:10} 1024x768, median of {args.runs}: {value:.3f} s")
    print(f"alternatives, k = 4 (once): {alternatives_s:.3f} s")
    reference_extra, palette_extra = median["reference"] - median["automatic"], median["palette"] - median["automatic"]
    print(f"reference_extra_s={reference_extra:.3f} palette_extra_s={palette_extra:.3f} goal_s={GOAL_S} "
          f"ratio={max(reference_extra, palette_extra) / GOAL_S:.2f}")


if __name__ == "__main__":
    main()
