"""One line naming the CPU a figure comes from: its model, its vector flags, and what each library uses."""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.demo import cpu_name  # noqa: E402

FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16")


def cpu_flags() -> list[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("flags"):
            present = set(line.split(":", 1)[1].split())
            return [flag for flag in FLAGS if flag in present]
    return []


def describe() -> str:
    """CPU, flags, the ISA PyTorch and oneDNN were capped to, and that ONNX Runtime has no such cap."""
    import torch

    from colorizer.device import bf16_is_fast

    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "none")
    ort = "not installed"
    try:
        import onnxruntime

        ort = f"onnxruntime {onnxruntime.__version__} (uses the CPU's own flags: it has no ISA cap)"
    except ImportError:
        pass
    return (f"machine: {cpu_name()}, {os.cpu_count()} cores, flags {' '.join(cpu_flags())}; torch {torch.__version__} "
            f"at {torch.backends.cpu.get_cpu_capability()}, ONEDNN_MAX_CPU_ISA={cap}, native bf16 "
            f"{'yes' if bf16_is_fast(torch.device('cpu')) else 'no'}; {ort}; load average {os.getloadavg()[0]:.1f}")
