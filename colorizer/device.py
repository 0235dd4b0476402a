"""Which torch device a `--device` / `device=` request means, with a one-line error where it can't be had."""

from __future__ import annotations

from typing import TYPE_CHECKING

from colorizer.errors import UserError

if TYPE_CHECKING:
    import torch

# the help of every `--device` option; imported by the CLIs, so torch is imported only when resolving
DEVICE_HELP = "auto (a CUDA GPU where there is one), cpu, cuda or cuda:N"
CHOICES = "auto, cpu, cuda or cuda:N"


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
