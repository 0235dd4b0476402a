"""The exported ONNX files against eager PyTorch on real photos: how far apart their colours are.

For each bundled model, `colorizer export`'s file (run on ONNX Runtime) and the eager float32 network
colour the same photos from ../shared/data (the first of every class folder of generic/val and dogs/val,
else synthetic ones) at the model's working size; the annealed-mean ab of both are compared per pixel.
The hint-capable generic is also compared with 1, 10 and 100 hints per photo simulated from the true
colours (seeded), which exercises the geodesic propagation inside the graph. Last line:
`worst_mean_abs_dab=<largest mean |d ab| of any row> worst_max_abs_dab=<largest of any pixel>`; goal <= 1.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from PIL import Image

from bench.machine import describe
from colorizer import checkpoint, export
from colorizer.color import rgb_to_lab
from colorizer.decode import annealed_mean
from colorizer.hints import simulate_hints
from colorizer.images import to_rgb_tensor
from colorizer.infer import BUNDLED_MODELS, Colorizer, model_path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def photos() -> list[Image.Image]:
    folders = sorted(p for split in ("generic/val", "dogs/val") for p in (SHARED / split).glob("*") if p.is_dir())
    files = [min(folder.glob("*.jpg")) for folder in folders if any(folder.glob("*.jpg"))]
    if files:
        return [Image.open(f).convert("RGB") for f in files]
    from tests.conftest import photo

    return [photo(320, 240, seed=s) for s in range(8)]


def main() -> None:
    torch.set_grad_enabled(False)
    images = photos()
    print(describe())
    print(f"{len(images)} photos")
    worst_mean = worst_max = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for name in BUNDLED_MODELS:
            network, config = checkpoint.load_model(model_path(name))
            onnx_file = export.save(Path(tmp) / f"{name}.onnx", network, {**config, "name": name})
            eager = Colorizer.load(name, backend="torch", precision="fp32")
            exported = Colorizer.load(onnx_file)
            size = eager.input_size
            rgb = torch.cat([torch.nn.functional.interpolate(to_rgb_tensor(im), size=(size, size), mode="bilinear",
                                                             antialias=True) for im in images]).clamp(0, 1)
            lab = rgb_to_lab(rgb)
            for count in (0, 1, 10, 100) if eager.takes_hints else (0,):
                hints = simulate_hints(lab[:, 1:], [count] * len(images), torch.Generator().manual_seed(count)) if count else None
                ab = [annealed_mean(c.logits(lab[:, :1], hints)) for c in (eager, exported)]
                difference = (ab[0] - ab[1]).abs()
                worst_mean, worst_max = max(worst_mean, difference.mean().item()), max(worst_max, difference.max().item())
                print(f"{name}, {count} hints per photo: mean |d ab| {difference.mean():.1e}, 99.9th percentile "
                      f"{difference.flatten().quantile(0.999):.1e}, max {difference.max():.1e} (ab units)")
    print(f"worst_mean_abs_dab={worst_mean:.1e} worst_max_abs_dab={worst_max:.1e}")


if __name__ == "__main__":
    main()
