"""Inference speed of the zhang2016 network: the official demo's way against the project's path.

Both run the same weights on a 256x256 photo, batch 1, on the CPU:
- baseline: a plain eager fp32 forward of the model as built (as the official demo runs it), then the
  annealed-mean decode;
- project: `Colorizer.logits` with `optimize=True` (bf16 weights where the CPU has native bf16, channels_last,
  the network traced and frozen so batch norms fold and oneDNN weights are pre-packed) and the same decode.

Weights: a checkpoint given as argv[1]; otherwise a seeded random init whose classifier is scaled so that
the predicted distributions are about as peaked as a trained model's (mean entropy printed), which keeps
the accuracy comparison meaningful. Repetitions alternate between the paths so that load from other
processes hits both alike. Last line: `speedup=<x> mean_abs_dab=<y>` (mean |ab difference| in Lab units).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from colorizer import checkpoint
from colorizer.color import normalize_l
from colorizer.decode import annealed_mean, entropy
from colorizer.infer import Colorizer
from colorizer.models import build_model

SIZE, REPEATS = 256, 15


def load_weights() -> torch.nn.Module:
    if len(sys.argv) > 1:
        return checkpoint.load_model(sys.argv[1])[0]
    torch.manual_seed(0)
    model = build_model("zhang2016").eval()
    with torch.no_grad():
        logits = model(torch.rand(1, 1, SIZE, SIZE) * 2 - 1)
        model.classifier.weight.mul_(4.0 / logits.std())  # logits spread like a trained model's
        model.classifier.bias.zero_()
    return model


def main() -> None:
    torch.set_grad_enabled(False)
    model = load_weights()
    config = {"preset": "zhang2016", "options": {}, "input_size": SIZE}
    torch.manual_seed(1)
    lightness = (torch.rand(1, 1, 8, 8) * 100).repeat_interleave(SIZE // 8, 2).repeat_interleave(SIZE // 8, 3)
    lightness = torch.nn.functional.avg_pool2d(lightness, 9, 1, 4, count_include_pad=False)  # a smooth "photo"

    baseline_model = build_model("zhang2016").eval()
    baseline_model.load_state_dict(model.state_dict())
    start = time.perf_counter()
    project = Colorizer(model, config, device="cpu", optimize=True)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, project dtype {project.dtype}, "
          f"set-up {time.perf_counter() - start:.1f} s")

    def baseline() -> torch.Tensor:
        return annealed_mean(baseline_model(normalize_l(lightness)))

    def ours() -> torch.Tensor:
        return annealed_mean(project.logits(lightness))

    ab_base, ab_ours = baseline(), ours()
    print(f"mean entropy of the predictions: {entropy(baseline_model(normalize_l(lightness))).mean():.3f} (of 1)")
    times = {"baseline": [], "project": []}
    for _ in range(REPEATS):
        for name, fn in (("baseline", baseline), ("project", ours)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    base, proj = statistics.median(times["baseline"]), statistics.median(times["project"])
    print(f"baseline eager fp32: {base * 1000:.1f} ms, project path: {proj * 1000:.1f} ms (medians of {REPEATS})")
    mean_abs_dab = (ab_base - ab_ours).abs().mean().item()
    print(f"speedup={base / proj:.2f} mean_abs_dab={mean_abs_dab:.3f}")


if __name__ == "__main__":
    main()
