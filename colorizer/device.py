"""Which torch device a `--device` / `device=` request means, with a one-line error where it can't be had."""

from __future__ import annotations

import torch

from colorizer.errors import UserError


def resolve_device(requested: str | torch.device = "auto") -> torch.device:
    """"auto" (a CUDA GPU where there is one, else the CPU), "cpu", "cuda" or "cuda:N"."""
    text = str(requested)
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except RuntimeError:
        raise UserError(f"device {text!r}: give auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"device {text!r}: no CUDA GPU is available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"device {text!r}: only {torch.cuda.device_count()} CUDA GPU(s) here")
    elif device.type != "cpu":
        raise UserError(f"device {text!r}: give auto, cpu, cuda or cuda:N")
    return device
