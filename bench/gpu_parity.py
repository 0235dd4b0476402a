"""CUDA against CPU on the same photos: Lab and soft targets, the training loss, and colorizations.

For each bundled model: the loss of `colorizer.train.batch_loss` on 16 crops of 128 px in fp32 on
both devices and in bf16 autocast on CUDA; the largest ab difference of the Lab conversion; the share
of pixels whose nearest target bin agrees; and the mean RGB difference of `Colorizer.colorize_many`
on CUDA (fp32 and bf16 weights) against the CPU's fp32 result, with the time for 16 photos.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
from PIL import Image

from colorizer import Colorizer
from colorizer.checkpoint import load_model
from colorizer.color import lab_batch
from colorizer.infer import bundled_model_path
from colorizer.loss import encode_targets
from colorizer.prior import rebalance_weights
from colorizer.train import StepSettings, batch_loss

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def timed_colorize(colorizer: Colorizer, images: list[Image.Image]) -> tuple[list[np.ndarray], float]:
    colorizer.colorize_many(images)  # warm-up: graph freezing and kernel selection for this batch shape
    torch.cuda.synchronize()
    start = time.perf_counter()
    out = colorizer.colorize_many(images)
    torch.cuda.synchronize()
    return [np.asarray(image, dtype=np.float32) for image in out], time.perf_counter() - start


def compare(name: str, images: list[Image.Image]) -> None:
    crops = torch.stack([torch.from_numpy(np.array(im.resize((128, 128)))).permute(2, 0, 1) for im in images])
    model, config = load_model(bundled_model_path(name))
    model = model.float().eval()
    weights = rebalance_weights(torch.tensor(config["prior"]), config["mix"])
    with torch.no_grad():
        automatic = StepSettings(hinted_share=0.0)
        cpu_loss = batch_loss(model, crops, weights, CPU, automatic).item()
        cuda_loss = batch_loss(model.to(CUDA), crops, weights.to(CUDA), CUDA, automatic).item()
        bf16_loss = batch_loss(model, crops, weights.to(CUDA), CUDA, StepSettings(hinted_share=0.0, amp="bf16")).item()
    ab_cpu, ab_cuda = lab_batch(crops, CPU)[1], lab_batch(crops, CUDA)[1]
    bins_cpu = encode_targets(ab_cpu, weights).bins[:, 0]
    bins_cuda = encode_targets(ab_cuda, weights.to(CUDA)).bins[:, 0].cpu()  # the targets as training makes them
    same = (bins_cpu == bins_cuda).float().mean()
    ab_cuda = ab_cuda.cpu()
    print(f"{name}: loss cpu fp32 {cpu_loss:.5f}, cuda fp32 {cuda_loss:.5f}, cuda bf16 {bf16_loss:.5f}; "
          f"max |d ab| {(ab_cpu - ab_cuda).abs().max().item():.2e}; same nearest bin {same.item():.2%}")
    reference, seconds = timed_colorize(Colorizer.load(name, device="cpu", precision="fp32"), images)
    print(f"  colorize {len(images)} photos: cpu fp32 {seconds:.3f} s")
    for precision in ("fp32", "bf16"):
        out, seconds = timed_colorize(Colorizer.load(name, device="cuda", precision=precision), images)
        diff = np.mean([np.abs(a - b).mean() for a, b in zip(reference, out, strict=True)])
        print(f"  cuda {precision}: {seconds:.3f} s, mean |d RGB| against cpu fp32 {diff:.3f} (of 255)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", type=Path, help="folder of colour photos (the first 16 are used)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA GPU here: nothing to compare")
        return
    paths = sorted(p for p in args.photos.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})[:16]
    images = [Image.open(p).convert("RGB") for p in paths]
    for name in ("generic", "dogs"):
        compare(name, images)


if __name__ == "__main__":
    main()
