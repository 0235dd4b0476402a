"""Checkpoints as safetensors plus a JSON config; no pickles, every file written atomically.

A model is `<name>.safetensors` (weights) beside `<name>.json` (preset, options, bins, prior, training
arguments, epoch, history). A run folder holds `model.*` and, for resuming, `optimizer.safetensors`
with its non-tensor state in `optimizer.json`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from colorizer.atomic import atomic_path, write_text
from colorizer.errors import UserError

FORMAT = "colorizer-checkpoint/1"
MODEL_STEM = "model"


def save_model(path: str | os.PathLike, model: nn.Module, config: dict[str, Any], half: bool = False) -> Path:
    """Write `path` (.safetensors) and its .json config; `half` stores floats as fp16 to halve the size."""
    path = Path(path).with_suffix(".safetensors")
    state = {k: v.detach().cpu().contiguous() for k, v in unwrap(model).state_dict().items()}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp))
    write_text(path.with_suffix(".json"), json.dumps({"format": FORMAT, **config}, indent=1))
    return path


def resolve(path: str | os.PathLike) -> Path:
    """The weights file behind a checkpoint file, its JSON config, or a run folder."""
    path = Path(path)
    if path.is_dir():
        path = path / f"{MODEL_STEM}.safetensors"
    path = path.with_suffix(".safetensors")
    if not path.is_file() or not path.with_suffix(".json").is_file():
        raise UserError(f"{path}: no checkpoint there (expected {path.name} and {path.with_suffix('.json').name})")
    return path


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    path = resolve(path)
    try:
        config = json.loads(path.with_suffix(".json").read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path.with_suffix('.json')}: not a valid config ({exc})") from None
    if config.get("format") != FORMAT:
        raise UserError(f"{path.with_suffix('.json')}: not a colorizer checkpoint config")
    return config


def load_model(path: str | os.PathLike) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the network a checkpoint describes and load its weights (as float32, in eval mode)."""
    from colorizer.models import build_model

    path = resolve(path)
    config = read_config(path)
    options = dict(config.get("options", {}))
    if "pretrained" in options:
        options["pretrained"] = False  # the checkpoint holds every weight: skip loading the backbone's
    model = build_model(config["preset"], **options)
    model.load_state_dict(read_weights(path))
    return model.eval(), config


def read_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A weights file's tensors, floats as float32 (bundled models store fp16)."""
    try:
        tensors = load_file(str(path))
    except SafetensorError as exc:
        raise UserError(f"{path}: not a weights file ({exc})") from None
    return {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}


def save_optimizer(run_dir: str | os.PathLike, optimizer: torch.optim.Optimizer) -> None:
    """Optimizer state split into tensors (safetensors) and the rest (JSON), so resuming needs no pickle."""
    tensors: dict[str, torch.Tensor] = {}
    meta = _split(optimizer.state_dict(), "", tensors)
    run_dir = Path(run_dir)
    with atomic_path(run_dir / "optimizer.safetensors") as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
    write_text(run_dir / "optimizer.json", json.dumps(meta))


def load_optimizer(run_dir: str | os.PathLike, optimizer: torch.optim.Optimizer) -> None:
    run_dir = Path(run_dir)
    tensors = load_file(str(run_dir / "optimizer.safetensors"))
    meta = json.loads((run_dir / "optimizer.json").read_text())
    state = _join(meta, tensors)
    # JSON turns the integer parameter ids of the state into strings
    state["state"] = {int(k): v for k, v in state["state"].items()}
    optimizer.load_state_dict(state)


def _split(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().cpu()
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        return {str(k): _split(v, f"{prefix}.{k}", tensors) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_split(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    return obj


def _join(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            return tensors[obj["__tensor__"]]
        return {k: _join(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_join(v, tensors) for v in obj]
    return obj


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside DDP or torch.compile wrappers, so saved names carry no prefixes."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)
