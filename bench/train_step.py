"""One training step of the bundled models' preset on the CPU: depthwise convolutions in bf16 vs float32.

Times `train.train_step` (loss, backward, Adam step) of effnet-lite0 (frozen_stages 2, as `make models` trains it)
on a batch of 32 crops of 128 px under bf16 autocast, with the encoder's depthwise convolutions left to
autocast (bf16) and run in float32 (the default, `models/efficientnet.py`). Medians of several steps
after warm-up, both variants interleaved. Last line: `speedup=<bf16 step / float32 step> step_s=<float32>`.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from colorizer.models import build_model
from colorizer.prior import rebalance_weights
from colorizer.train import StepSettings, train_step

ROUNDS, STEPS = 3, 4


def trainer(float32_depthwise: bool):
    torch.manual_seed(0)
    model = build_model("effnet-lite0", pretrained=False, frozen_stages=2)
    if not float32_depthwise:
        for hook in model.float32_depthwise_hooks:
            hook.remove()
    model = model.to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    return model, optimizer


def step_seconds(model, optimizer, rgb, weights) -> list[float]:
    times = []
    for _ in range(STEPS):
        start = time.perf_counter()
        train_step(model, optimizer, rgb, weights, torch.device("cpu"), StepSettings(amp="bf16"))
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    weights = rebalance_weights(torch.full((313,), 1 / 313, dtype=torch.float64))
    rgb = torch.randint(0, 256, (32, 3, 128, 128), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    variants = {"bf16": trainer(False), "float32": trainer(True)}
    times: dict[str, list[float]] = {name: [] for name in variants}
    for model, optimizer in variants.values():
        step_seconds(model, optimizer, rgb, weights)  # warm-up: oneDNN primitive creation
    for _ in range(ROUNDS):
        for name, (model, optimizer) in variants.items():
            times[name] += step_seconds(model, optimizer, rgb, weights)
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; batch 32 x 128 px; "
          f"depthwise bf16: {medians['bf16']:.3f} s/step, float32: {medians['float32']:.3f} s/step")
    print(f"speedup={medians['bf16'] / medians['float32']:.2f} step_s={medians['float32']:.3f}")


if __name__ == "__main__":
    main()
