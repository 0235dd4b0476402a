"""The `colorizer train` options as one typed config, `TrainConfig`, apart from the training code so that
the CLI starts without torch.

Each option is a field, declared once: its type, default, help text and what `--resume` makes of it. The
command line is generated from the fields (`add_arguments`), and a run records them all (`record`).
"""

from __future__ import annotations

import argparse
import json
import os
import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Literal

from colorizer.defaults import HINTED_SHARE, REBALANCE_MIX, RECOLOUR_SHARE, SOFT_NEIGHBOURS, SOFT_SIGMA
from colorizer.device import DEVICE_HELP
from colorizer.errors import UserError

# What `train --resume` makes of an option whose value differs from the one the run recorded:
MUST_MATCH = "must_match"  # it changes what the run optimises (the loss, the optimizer's groups, which photos
# are trained and validated on, how they are hinted): resuming would silently train another model, so it is an error
MAY_CHANGE = "may_change"  # the resumed run goes on with the new value (more epochs, other workers, ...)
RESUME_RULES = (MUST_MATCH, MAY_CHANGE)


def option(default: Any = MISSING, *, resume: str, help: str | None = None, metavar: str | None = None,
           compared_as: Callable[[Any], Any] | None = None) -> Any:
    """A TrainConfig field: its default (none: a required option), its resume rule, its --help and
    metavar, and for a MUST_MATCH option recorded as text the form in which values are compared."""
    if resume not in RESUME_RULES:
        raise ValueError(f"resume must be one of {RESUME_RULES}, got {resume!r}")
    return field(default=default, metadata={"resume": resume, "help": help, "metavar": metavar,
                                            "compared_as": compared_as})


def json_options(text: str) -> dict[str, Any]:
    """The preset options of `--options`: a JSON object."""
    try:
        options = json.loads(text)
    except json.JSONDecodeError:
        options = None
    if not isinstance(options, dict):
        raise UserError(f"--options must be a JSON object, got {text!r}")
    return options


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainConfig:
    """Everything a training run is told; a run records it in its checkpoints' `train_args`."""

    data: tuple[str, ...] = option(resume=MAY_CHANGE, metavar="DIR", help="folders of colour photos (searched recursively)")
    data_share: tuple[float, ...] | None = option(
        None, resume=MUST_MATCH, metavar="SHARE",
        help="with several --data folders: the share of each epoch's photos drawn from each "
             "(at random, with replacement), so a small collection is not drowned by a large one")
    epoch_size: int | None = option(None, resume=MUST_MATCH, metavar="PHOTOS",
                                    help="photos per epoch when drawing by --data-share (default: all training photos)")
    val: str | None = option(None, resume=MAY_CHANGE, help="held-out folder: validation loss and sample grids each epoch")
    holdout: float = option(0.0, resume=MUST_MATCH, metavar="FRACTION",
                            help="validate on about this share of --data instead of --val (chosen by a hash of "
                                 "each path, the same on every run), so a test split stays unseen while choosing settings")
    keep_epochs: bool = option(False, resume=MAY_CHANGE,
                               help="keep each epoch's weights as model_epochNNN.safetensors besides the latest")
    preset: str = option("zhang2016", resume=MUST_MATCH, help="network preset (zhang2016, zhang2016-quarter, effnet-lite0)")
    options: str = option("{}", resume=MUST_MATCH, compared_as=json_options,
                          help='JSON options for the preset, e.g. \'{"frozen_stages": 2}\'')
    out: str = option(resume=MAY_CHANGE, help="run folder: checkpoints, samples, logs")
    epochs: int = option(10, resume=MAY_CHANGE)
    batch_size: int = option(32, resume=MAY_CHANGE)
    image_size: int = option(224, resume=MAY_CHANGE, help="training crop size (multiple of 32)")
    min_crop_area: float = option(0.35, resume=MAY_CHANGE, metavar="FRACTION",
                                  help="smallest share of a photo a training crop covers (random zoom); 1: whole-photo crops")
    input_size: int | None = option(None, resume=MAY_CHANGE,
                                    help="square size inference resizes L to (default: --image-size)")
    lr: float = option(3e-5, resume=MAY_CHANGE)
    lr_schedule: Literal["cosine", "constant"] = option("cosine", resume=MAY_CHANGE,
                                                        help="cosine: short warm-up, then decay to zero over --epochs")
    weight_decay: float = option(1e-3, resume=MAY_CHANGE,
                                 help="L2 term of Adam, as in the paper; at learning rates far above its 3e-5 it erodes "
                                      "a pretrained encoder (docs/models.md)")
    encoder_lr_factor: float = option(1.0, resume=MUST_MATCH, metavar="FACTOR",
                                      help="a pretrained encoder learns at FACTOR x --lr (effnet-lite0; the decoder at --lr)")
    hinted_share: float = option(HINTED_SHARE, resume=MUST_MATCH, metavar="FRACTION",
                                 help="share of training photos shown simulated colour hints (hint-capable models; "
                                      "the rest train the automatic colorization)")
    recolour_share: float = option(RECOLOUR_SHARE, resume=MUST_MATCH, metavar="FRACTION",
                                   help="share of the hinted training photos whose colours are all turned by one random "
                                        "hue angle, hints and targets alike: hints then carry colours the network cannot "
                                        "guess (their loss counts each cell by its nearness to a hint)")
    mix: float = option(REBALANCE_MIX, resume=MUST_MATCH, help="uniform mixing lambda of the rebalancing")
    neighbours: int = option(SOFT_NEIGHBOURS, resume=MUST_MATCH, help="bins per soft target")
    sigma: float = option(SOFT_SIGMA, resume=MUST_MATCH, help="Gaussian kernel of the soft targets (ab units)")
    prior: str | None = option(None, resume=MAY_CHANGE, help="prior JSON from `colorizer prior` (default: computed from --data)")
    device: str = option("auto", resume=MAY_CHANGE, help=DEVICE_HELP)
    amp: Literal["auto", "bf16", "off"] = option("auto", resume=MAY_CHANGE,
                                                 help="bf16 autocast (auto: on CUDA, unless COLORIZER_BF16=0)")
    workers: int = option(min(4, os.cpu_count() or 1), resume=MAY_CHANGE)
    resume: bool = option(False, resume=MAY_CHANGE, help="continue the run in --out where it stopped")
    init: str | None = option(None, resume=MAY_CHANGE, metavar="CHECKPOINT",
                              help="start from a trained model of the same preset (run folder or .safetensors): the "
                                   "layers it has are loaded, the ones its options lacked start fresh (fine-tuning)")
    seed: int = option(0, resume=MAY_CHANGE)
    until_plateau: float = option(0.0, resume=MAY_CHANGE, metavar="FRACTION",
                                  help="stop when the epoch's training loss improves by less than this (paper: 0.01)")
    time_limit: float | None = option(None, resume=MAY_CHANGE, metavar="MINUTES",
                                      help="stop after the last epoch that fits in this wall time")
    min_chroma: float = option(1.0, resume=MAY_CHANGE,
                               help="photos whose mean chroma (Lab units) is below this count as gray and are dropped")
    limit: int | None = option(None, resume=MAY_CHANGE, help="use at most this many images of each folder")

    def __post_init__(self) -> None:
        """Every option that can be checked before anything is loaded, as one-line errors."""
        if self.image_size % 32:
            raise UserError(f"--image-size must be a multiple of 32, got {self.image_size}")
        if not 0 <= self.holdout <= 0.5:
            raise UserError(f"--holdout must be between 0 and 0.5, got {self.holdout:g}")
        if self.holdout and self.val:
            raise UserError("--holdout and --val both name the validation photos: pass one of them")
        for name in ("hinted_share", "recolour_share"):
            if not 0 <= getattr(self, name) <= 1:
                raise UserError(f"{flag(name)} must be between 0 and 1, got {getattr(self, name):g}")
        if self.data_share is not None and (len(self.data_share) != len(self.data) or min(self.data_share) <= 0):
            raise UserError(f"--data-share needs one positive share per --data folder ({len(self.data)}), "
                            f"got {' '.join(f'{v:g}' for v in self.data_share)}")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> TrainConfig:
        """The config of a parsed `colorizer train` command line (other attributes, e.g. `func`, are not options)."""
        values = {f.name: getattr(args, f.name) for f in fields(cls)}
        return cls(**{name: tuple(value) if isinstance(value, list) else value for name, value in values.items()})

    def record(self) -> dict[str, Any]:
        """The options as a checkpoint records them (`train_args`: JSON, the command first)."""
        return {"command": "train", **{f.name: _json_value(getattr(self, f.name)) for f in fields(self)}}

    def resume_conflict(self, recorded: dict[str, Any]) -> str | None:
        """The first MUST_MATCH option whose value differs from the one a run `recorded` (its
        `train_args`) as 'FLAG TRAINED; resume it with the same, not ASKED', else None. An option the
        record lacks (added since) trained with its default."""
        for option_field in fields(self):
            if option_field.metadata["resume"] != MUST_MATCH:
                continue
            compared_as = option_field.metadata["compared_as"] or _json_value
            trained = recorded.get(option_field.name, option_field.default)
            asked = getattr(self, option_field.name)
            if compared_as(trained) != compared_as(asked):
                return f"{flag(option_field.name)} {_shown(trained)}; resume it with the same, not {_shown(asked)}"
        return None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `colorizer train` flags, one per TrainConfig field: --NAME-WITH-DASHES, typed as the field is."""
    hints = typing.get_type_hints(TrainConfig)
    for option_field in fields(TrainConfig):
        required = option_field.default is MISSING
        keywords = {key: option_field.metadata[key] for key in ("help", "metavar") if option_field.metadata[key]}
        parser.add_argument(flag(option_field.name), **_typed(hints[option_field.name]), **keywords,
                            **({"required": True} if required else {"default": option_field.default}))


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _typed(hint: Any) -> dict[str, Any]:
    """argparse keywords for a field of type `hint`: bool, str, int, float, a Literal of choices, a
    tuple (one value or more), any of them or None."""
    if hint is bool:
        return {"action": "store_true"}
    if typing.get_origin(hint) is types.UnionType:  # X | None: None is the default, never typed
        (hint,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    if typing.get_origin(hint) is tuple:
        return {"nargs": "+", **_typed(typing.get_args(hint)[0])}
    if typing.get_origin(hint) is Literal:
        return {"choices": list(typing.get_args(hint))}
    return {} if hint is str else {"type": hint}


def _json_value(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _shown(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(_shown(v) for v in value)
    return "(none)" if value is None else f"{value:g}" if isinstance(value, float) else str(value)
