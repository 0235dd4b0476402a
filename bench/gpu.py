"""Training throughput on a GPU: zhang2016 at 224 px, batch 32, 200 steps, fp32 against bf16 + channels_last.

Runs the project's own training step (`colorizer.train.batch_loss`: Lab, soft targets and weights on the
device, then the rebalanced loss) on random photos already on the GPU, so the figure is the model's
and the targets', not the disk's. Prints images/s and peak memory for each mode and the GPU's name.
Last line: `fp32_img_s=<x> bf16_img_s=<y> speedup=<y/x> fp32_peak_gib=<a> bf16_peak_gib=<b>`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from colorizer.models import build_model
from colorizer.train import StepSettings, batch_loss

BATCH, SIZE, STEPS, WARMUP = 32, 224, 200, 10


def run(amp: str, channels_last: bool) -> tuple[float, float]:
    device = torch.device("cuda")
    torch.manual_seed(0)
    model = build_model("zhang2016").to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-5, betas=(0.9, 0.99), weight_decay=1e-3)
    weights = torch.ones(313, device=device)
    photos = torch.randint(0, 256, (BATCH, 3, SIZE, SIZE), dtype=torch.uint8, device=device)
    torch.cuda.reset_peak_memory_stats(device)
    for step in range(WARMUP + STEPS):
        if step == WARMUP:
            torch.cuda.synchronize(device)
            start = time.perf_counter()
        loss = batch_loss(model, photos, weights, device, StepSettings(amp=amp))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    torch.cuda.synchronize(device)
    return BATCH * STEPS / (time.perf_counter() - start), torch.cuda.max_memory_allocated(device) / 2**30


def main() -> None:
    if not torch.cuda.is_available():
        print("no CUDA GPU here: nothing to measure")
        return
    torch.backends.cudnn.benchmark = True
    print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    fp32 = run("off", channels_last=False)
    print(f"fp32: {fp32[0]:.1f} images/s, peak {fp32[1]:.2f} GiB")
    bf16 = run("bf16", channels_last=True)
    print(f"bf16 + channels_last: {bf16[0]:.1f} images/s, peak {bf16[1]:.2f} GiB")
    print(f"fp32_img_s={fp32[0]:.1f} bf16_img_s={bf16[0]:.1f} speedup={bf16[0] / fp32[0]:.2f} "
          f"fp32_peak_gib={fp32[1]:.2f} bf16_peak_gib={bf16[1]:.2f}")


if __name__ == "__main__":
    main()
