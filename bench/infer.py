"""Inference speed of the zhang2016 network: the official demo's way against the project's path.

Both run the same weights on a 256x256 photo, batch 1, on the CPU:
- baseline: a plain eager fp32 forward of the model as built (as the official demo runs it), then the
  annealed-mean decode;
- project: `Colorizer.logits` with `optimize=True` and `backend="auto"`, as the CLI and the demo load models,
  and the same decode. `auto` is PyTorch where the CPU has native bf16 (bf16 weights, channels_last, the
  network traced and frozen so batch norms fold and oneDNN weights are pre-packed) and ONNX Runtime in
  float32 elsewhere. Both backends are timed beside it, so one run shows what each gives on this CPU.

Weights: a checkpoint given as argv[1]; otherwise a seeded random init whose classifier is scaled so that
the predicted distributions are about as peaked as a trained model's (mean entropy printed), which keeps
the accuracy comparison meaningful. Repetitions alternate between the paths so that load from other
processes hits all alike. Last line: `speedup=<x> mean_abs_dab=<y> backend=<auto's pick>` (mean |ab
difference| in Lab units). An AVX2-only CPU is emulated with ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2,
which caps PyTorch; ONNX Runtime has no such switch and keeps the CPU's own instructions.
"""

from __future__ import annotations

import copy
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from bench.machine import describe
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
    print(describe())
    print(f"{torch.get_num_threads()} threads")
    paths = {}
    for backend in ("torch", "onnxruntime"):
        start = time.perf_counter()
        paths[backend] = Colorizer(copy.deepcopy(model), config, device="cpu", optimize=True, backend=backend)
        print(f"{backend}: dtype {paths[backend].dtype}, set-up {time.perf_counter() - start:.1f} s")
    auto = Colorizer(copy.deepcopy(model), config, device="cpu", optimize=True, backend="auto").backend

    def baseline() -> torch.Tensor:
        return annealed_mean(baseline_model(normalize_l(lightness)))

    runs = {"baseline": baseline, **{name: (lambda c=c: annealed_mean(c.logits(lightness))) for name, c in paths.items()}}
    ab = {name: fn() for name, fn in runs.items()}
    print(f"mean entropy of the predictions: {entropy(baseline_model(normalize_l(lightness))).mean():.3f} (of 1)")
    times = {name: [] for name in runs}
    for _ in range(REPEATS):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(t) for name, t in times.items()}
    dab = {name: (ab["baseline"] - ab[name]).abs().mean().item() for name in paths}
    print(f"baseline eager fp32: {median['baseline'] * 1000:.1f} ms; " + "; ".join(
        f"{name}: {median[name] * 1000:.1f} ms, {median['baseline'] / median[name]:.2f}x, mean |d ab| {dab[name]:.3f}"
        for name in paths) + f" (medians of {REPEATS}); auto picks {auto}")
    print(f"speedup={median['baseline'] / median[auto]:.2f} mean_abs_dab={dab[auto]:.3f} backend={auto}")


if __name__ == "__main__":
    main()
