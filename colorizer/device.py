"""Which torch device a `--device` / `device=` request means, with a one-line error where it can't be had."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from colorizer.errors import UserError

if TYPE_CHECKING:
    import torch

# the help of every `--device` option; imported by the CLIs, so torch is imported only when resolving
DEVICE_HELP = "auto (a CUDA GPU where there is one), cpu, cuda or cuda:N"
CHOICES = "auto, cpu, cuda or cuda:N"
# "0" keeps every automatic precision choice (inference's precision="auto", training's --amp auto) in
# float32; "1" has them take bf16 even where the device lacks native bf16 (inference on any device,
# training on CUDA); unset or "auto" detects.
# Tests and CI use "0" to run the float32 path of CPUs without AVX512-BF16 / AMX on any machine.
BF16_SWITCH = "COLORIZER_BF16"


def resolve_device(requested: str | torch.device = "auto") -> torch.device:
    """"auto" (a CUDA GPU where there is one, else the CPU), "cpu", "cuda" or "cuda:N"."""
    import torch

    text = str(requested)
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise UserError(f"device {text!r}: give {CHOICES}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"device {text!r}: no CUDA GPU is available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"device {text!r}: only {torch.cuda.device_count()} CUDA GPU(s) here")
    return device


def bf16_is_fast(device: torch.device) -> bool:
    """bf16 pays off on CUDA and on CPUs with native bf16 matrix units (AVX512-BF16, AMX), unless
    the COLORIZER_BF16 environment variable says otherwise."""
    import torch

    switch = os.environ.get(BF16_SWITCH, "auto").strip().lower()
    if switch not in ("0", "1", "auto", ""):
        raise UserError(f"{BF16_SWITCH}={os.environ[BF16_SWITCH]!r}: give 0 (float32), 1 (bf16) or auto")
    if switch in ("0", "1"):
        return switch == "1"
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
