"""Training: data -> device-side targets -> rebalanced cross-entropy, with AMP, DDP, resume and checkpoints.

Single process: `colorizer train --data DIR --out RUN`. Several GPUs:
`torchrun --nproc_per_node N -m colorizer train --data DIR --out RUN`.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, WeightedRandomSampler
from tqdm import tqdm

from colorizer import checkpoint
from colorizer.atomic import atomic_path
from colorizer.bins import ab_bins
from colorizer.color import lab_batch
from colorizer.data import PhotoDataset, Scan, hold_out, scan_folder
from colorizer.decode import colorize_lab, colorize_logits
from colorizer.defaults import HINTED_SHARE, RECOLOUR_SHARE
from colorizer.device import bf16_is_fast, resolve_device
from colorizer.errors import UserError
from colorizer.hints import nearest_hint, pool_hints, rotate_hue, sample_hint_counts, simulate_hints
from colorizer.loss import LossSettings, encode_targets, rebalanced_cross_entropy
from colorizer.models import build_model, preset_options
from colorizer.prior import mixed_prior, rebalance_weights
from colorizer.train_args import TrainConfig, json_options

SAMPLE_COUNT = 8


@dataclass(frozen=True, slots=True)
class StepSettings:
    """What a training step does to a batch besides running the network: how its soft targets are made
    (`loss`), the share of its photos shown simulated hints (hint-capable networks) and the share of those
    whose colours are turned by a random hue, and the autocast ('auto', 'bf16' or 'off')."""

    loss: LossSettings = LossSettings()
    hinted_share: float = HINTED_SHARE
    recolour_share: float = RECOLOUR_SHARE
    amp: str = "off"

    @classmethod
    def of(cls, config: TrainConfig) -> StepSettings:
        return cls(LossSettings(config.neighbours, config.sigma), config.hinted_share, config.recolour_share, config.amp)


def autocast(device: torch.device, amp: str):
    """bf16 autocast where asked ('auto' means on a CUDA GPU that computes bf16, unless COLORIZER_BF16=0):
    fp32 master weights, bf16 matrix work."""
    if amp == "bf16" or (amp == "auto" and device.type == "cuda" and bf16_is_fast(device)):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def batch_loss(model: torch.nn.Module, rgb: torch.Tensor, class_weights: torch.Tensor, device: torch.device,
               step: StepSettings = StepSettings()) -> torch.Tensor:
    """The loss of a batch of uint8 RGB crops; a hint-capable network gets simulated hints for about
    `step.hinted_share` of them (validation asks for 0: it scores the automatic colorization), and about
    `step.recolour_share` of the hinted ones have all their colours turned by one random hue angle."""
    lightness, ab = lab_batch(rgb, device)
    network = checkpoint.unwrap(model)
    inputs = [lightness.contiguous(memory_format=torch.channels_last)]
    turned = torch.zeros(len(rgb), dtype=torch.bool)
    if getattr(network, "hint_inputs", False):
        counts = sample_hint_counts(len(rgb), no_hint_share=1 - step.hinted_share)
        if step.recolour_share:
            # a recoloured photo's hints carry colours no prior predicts, so that the network learns to
            # carry a hint over the whole region it belongs to rather than blend it into its own guess
            turned = (counts > 0) & (torch.rand(len(rgb)) < step.recolour_share)
            ab = rotate_hue(ab, (torch.rand(len(rgb)) * 2 * math.pi * turned).to(ab.device))
        inputs.append(simulate_hints(ab, counts))
    # targets at the network's output resolution, from ab averaged over each output cell
    targets = encode_targets(F.avg_pool2d(ab, network.output_stride), class_weights, k=step.loss.neighbours,
                             sigma=step.loss.sigma)
    if turned.any():
        weights = recoloured_weights(lightness, inputs[1], turned.to(ab.device), network.output_stride,
                                     network.propagation_reach)
        targets = targets._replace(pixel_weights=targets.pixel_weights * weights)
    with autocast(device, step.amp):
        logits = model(*inputs)
    return rebalanced_cross_entropy(logits, targets)


def recoloured_weights(lightness: torch.Tensor, hint_maps: torch.Tensor, turned: torch.Tensor, stride: int,
                       reach: float) -> torch.Tensor:
    """Loss weights (N, H / stride, W / stride) for a batch whose `turned` photos had their colours
    recoloured: 1 for the others; in a recoloured photo each cell's nearness to a hint, exp(-geodesic
    distance / reach), `reach` being the network's far propagation scale (cells). Far from its hints a
    recoloured photo's colours cannot be guessed, and scoring them there would teach the network that
    no colour can be."""
    _, distance = nearest_hint(lightness, pool_hints(hint_maps, stride))
    return torch.where(turned[:, None, None], torch.exp(-distance[:, 0] / reach), 1.0)


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, rgb: torch.Tensor,
               class_weights: torch.Tensor, device: torch.device, step: StepSettings = StepSettings()) -> torch.Tensor:
    """One optimisation step on a batch of uint8 RGB crops; returns the (detached) loss."""
    loss = batch_loss(model, rgb, class_weights, device, step)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def resume_config(config: TrainConfig, out: Path, is_main: bool) -> dict[str, Any] | None:
    """The checkpoint config of the run to resume in `out` (None: start fresh), checked against `config`."""
    if not config.resume:
        return None
    if not (out / "optimizer.json").is_file():
        if is_main:
            print(f"nothing to resume in {out}; starting fresh")
        return None
    recorded = checkpoint.read_config(out)
    conflict = config.resume_conflict(recorded["train_args"])
    if conflict:
        raise UserError(f"{out} was trained with {conflict}")
    return recorded


@dataclass
class TrainingData:
    """The photos a run trains and validates on, and how an epoch draws them."""

    scan: Scan  # every --data folder's scan, merged
    folders: list[list[Path]]  # the training photos of each --data folder
    train_set: PhotoDataset
    val_set: PhotoDataset | None
    photo_shares: torch.Tensor | None  # each training photo's sampling weight (None: each once an epoch)
    summary: str


def training_data(config: TrainConfig, is_main: bool) -> TrainingData:
    scans = [scan_folder(folder, limit=config.limit, progress=is_main, min_chroma=config.min_chroma)
             for folder in config.data]
    scan = Scan.merged(scans)
    folders, val_paths, val_summary = [part.colour for part in scans], [], ""
    if config.holdout:
        split = [hold_out(part.colour, folder, config.holdout) for part, folder in zip(scans, config.data, strict=True)]
        folders = [train for train, _ in split]
        val_paths = [path for _, held in split for path in held]
        val_summary = f"{len(val_paths)} colour photos held out of --data"
    elif config.val:
        val_scan = scan_folder(config.val, limit=config.limit, progress=is_main, min_chroma=config.min_chroma)
        val_paths, val_summary = val_scan.colour, val_scan.summary()
    train_paths = [path for paths in folders for path in paths]
    held = f"{len(train_paths)} of " if config.holdout else ""
    return TrainingData(
        scan=scan, folders=folders,
        train_set=PhotoDataset(train_paths, config.image_size, augment=True, min_crop_area=config.min_crop_area),
        val_set=PhotoDataset(val_paths, config.image_size, augment=False) if val_paths else None,
        photo_shares=_photo_shares(folders, config.data_share),
        summary=f"train: {held}{scan.summary()}" + (f"\nval: {val_summary}" if val_paths else ""))


def training_prior(config: TrainConfig, resumed: dict[str, Any] | None, data: TrainingData,
                   device: torch.device, is_main: bool) -> torch.Tensor:
    """A resumed run's own prior, a --prior file's, or the training photos' (each folder by its share)."""
    if resumed is not None:
        return torch.tensor(resumed["prior"], dtype=torch.float64)
    if config.prior:
        return torch.tensor(json.loads(Path(config.prior).read_text())["prior"], dtype=torch.float64)
    return mixed_prior(data.folders, _folder_shares(data.folders, config.data_share), config.image_size, config.batch_size,
                       config.workers, device, is_main)


def epoch_loader(config: TrainConfig, data: TrainingData, epoch: int, rank: int, world: int,
                 device: torch.device) -> DataLoader:
    """The epoch's batches; every random choice derives from (seed, epoch, rank), so a resumed run
    repeats it exactly."""
    generator = torch.Generator().manual_seed((config.seed + epoch) * world + rank)
    if data.photo_shares is not None:
        epoch_size = config.epoch_size or len(data.train_set)
        sampler = WeightedRandomSampler(data.photo_shares, epoch_size // world, generator=generator)
    elif world > 1:
        sampler = DistributedSampler(data.train_set, world, rank, seed=config.seed)
        sampler.set_epoch(epoch)
    else:
        sampler = RandomSampler(data.train_set, generator=generator)
    return DataLoader(data.train_set, config.batch_size, sampler=sampler, num_workers=config.workers, drop_last=True,
                      pin_memory=device.type == "cuda", persistent_workers=False,
                      generator=torch.Generator().manual_seed(config.seed + epoch))


def train_one_epoch(model: torch.nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader,
                    class_weights: torch.Tensor, config: TrainConfig, epoch: int, device: torch.device,
                    world: int, progress: bool) -> float:
    """One pass over `loader` under the learning-rate schedule; the mean training loss over all ranks."""
    model.train()
    step_settings = StepSettings.of(config)
    total, seen, started = 0.0, 0, time.perf_counter()
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", disable=not progress)
    for step, rgb in enumerate(bar, start=epoch * len(loader)):
        lr = config.lr * lr_factor(config.lr_schedule, step, config.epochs * len(loader))
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)  # no lr_scale in checkpoints from before it
        loss = train_step(model, optimizer, rgb, class_weights, device, step_settings)
        total += loss.item() * len(rgb)
        seen += len(rgb)
        bar.set_postfix(loss=f"{total / seen:.4f}", img_s=f"{seen * world / (time.perf_counter() - started):.1f}")
    return _all_mean(total / max(seen, 1), device, world)


@torch.no_grad()
def evaluate_loss(model: torch.nn.Module, dataset: PhotoDataset, class_weights: torch.Tensor,
                  config: TrainConfig, device: torch.device, rank: int = 0, world: int = 1) -> float:
    """The validation loss of the automatic colorization (no hints), over all ranks."""
    model.eval()
    indices = list(range(rank, len(dataset), world))
    loader = DataLoader(torch.utils.data.Subset(dataset, indices), config.batch_size, num_workers=config.workers)
    step = replace(StepSettings.of(config), hinted_share=0.0)
    total, seen = 0.0, 0
    for rgb in loader:
        total += batch_loss(model, rgb, class_weights, device, step).item() * len(rgb)
        seen += len(rgb)
    return _all_mean(total / max(seen, 1), device, world)


def stop_reason(config: TrainConfig, history: list[dict[str, Any]], elapsed: float, epochs_run: int) -> str | None:
    """Why training ends after this epoch, besides reaching --epochs (None: it goes on)."""
    if config.until_plateau and _plateaued(history, config.until_plateau):
        return f"training loss improved by less than {config.until_plateau:.0%}"
    if config.time_limit and elapsed * (epochs_run + 1) / epochs_run > config.time_limit * 60:
        return f"another epoch would pass --time-limit {config.time_limit:g} min"
    return None


def train(config: TrainConfig) -> Path:
    """Train as `config` says, resuming or starting from a trained model where it asks; returns the run folder."""
    rank, world, device = _setup_distributed(config.device)
    is_main = rank == 0
    out = Path(config.out)
    resumed = resume_config(config, out, is_main)
    _seed_everything(config.seed)
    # the network first: a bad preset or option fails before minutes of scanning photos
    options = preset_options(config.preset, **json_options(config.options))
    model = build_model(config.preset, **options).to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(parameter_groups(model, config.encoder_lr_factor), lr=config.lr, betas=(0.9, 0.99),
                                 weight_decay=config.weight_decay)
    data = training_data(config, is_main)
    if is_main:
        print(data.summary)
    prior = training_prior(config, resumed, data, device, is_main)
    class_weights = rebalance_weights(prior, mix=config.mix).to(device)
    history, started_from = starting_point(config, resumed, model, optimizer, is_main)
    start_epoch = len(history)
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    writer = _tensorboard(out) if is_main else None

    run_started = time.perf_counter()
    for epoch in range(start_epoch, config.epochs):
        _seed_everything(config.seed + epoch)
        loader = epoch_loader(config, data, epoch, rank, world, device)
        started = time.perf_counter()
        train_loss = train_one_epoch(model, optimizer, loader, class_weights, config, epoch, device, world, is_main)
        record = {"epoch": epoch + 1, "train_loss": train_loss, "seconds": round(time.perf_counter() - started, 1)}
        if data.val_set is not None:
            record["val_loss"] = evaluate_loss(model, data.val_set, class_weights, config, device, rank, world)
        history.append(record)
        if is_main:
            print(json.dumps(record))
            _log(writer, record)
            _save_epoch(out, model, optimizer, run_record(config, options, prior, history, data, started_from),
                        config.keep_epochs)
            if data.val_set is not None:
                save_samples(model, data.val_set, out / f"samples_epoch{epoch + 1:03d}.png", device)
        reason = stop_reason(config, history, time.perf_counter() - run_started, epoch + 1 - start_epoch)
        if reason:
            if is_main:
                print(f"{reason}: stopping after epoch {epoch + 1}")
            break
    if world > 1:
        dist.destroy_process_group()
    if is_main:
        print(f"model: {out}")
    return out


def starting_point(config: TrainConfig, resumed: dict[str, Any] | None, model: torch.nn.Module,
                   optimizer: torch.optim.Optimizer, is_main: bool) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Load the weights the run starts from: a resumed run's (and its optimizer's), or --init's. Returns
    the history of the epochs trained so far and the training record of the --init model."""
    if resumed is not None:
        model.load_state_dict(checkpoint.load_model(config.out)[0].state_dict())
        checkpoint.load_optimizer(config.out, optimizer)
        if is_main:
            print(f"resuming {config.out} after epoch {resumed['epoch']}")
        return resumed["history"], resumed.get("init")
    if not config.init:
        return [], None
    fresh, started_from = initial_weights(model, config.init, config.preset)
    if is_main:
        print(f"starting from {config.init}" + (f"; new layers: {', '.join(fresh)}" if fresh else ""))
    return [], started_from


def initial_weights(model: torch.nn.Module, path: str, preset: str) -> tuple[list[str], dict[str, Any]]:
    """Load the weights of checkpoint `path` into `model` (same preset) for fine-tuning. Every tensor
    the checkpoint holds must fit; modules it lacks (options added since) keep their start values.
    Returns their names, and the checkpoint's training record, which the new run's config keeps so
    that a model says how all of it was trained."""
    weights = checkpoint.resolve(path)
    recorded = checkpoint.read_config(weights)
    trained = recorded.get("preset")
    if trained != preset:
        raise UserError(f"--init {path} is a {trained} model; this run trains {preset}")
    try:
        missing, unexpected = model.load_state_dict(checkpoint.read_weights(weights), strict=False)
    except RuntimeError as exc:
        raise UserError(f"--init {path} does not fit this network: {str(exc).splitlines()[-1].strip()}") from None
    if unexpected:
        raise UserError(f"--init {path} has layers this network lacks ({unexpected[0]}, ...): "
                        "give the options it was trained with")
    started_from = {"path": str(path), **{key: recorded[key] for key in ("options", "mix", "epoch", "history", "data",
                                                                          "train_args", "init") if key in recorded}}
    return sorted({key.split(".")[0] for key in missing}), started_from


def _folder_shares(folders: list[list[Path]], data_share: list[float] | None) -> list[float]:
    """The share of each epoch's photos that each folder gives (without --data-share: its size)."""
    shares = data_share or [len(paths) for paths in folders]
    return [share / sum(shares) for share in shares]


def _photo_shares(folders: list[list[Path]], data_share: list[float] | None) -> torch.Tensor | None:
    """Each training photo's sampling weight under --data-share (None: every photo once an epoch)."""
    if data_share is None:
        return None
    return torch.cat([torch.full((len(paths),), share / len(paths), dtype=torch.float64)
                      for share, paths in zip(_folder_shares(folders, data_share), folders, strict=True)])


def parameter_groups(model: torch.nn.Module, encoder_lr_factor: float = 1.0) -> list[dict[str, Any]]:
    """The trainable parameters as optimizer groups; the encoder's parameters learn at `encoder_lr_factor`
    times the learning rate (`lr_scale`), so that fine-tuning keeps more of what ImageNet taught it."""
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if encoder_lr_factor == 1:
        return [{"params": [p for _, p in trainable], "lr_scale": 1.0}]
    if not hasattr(model, "encoder"):
        raise UserError("--encoder-lr-factor needs a preset with a pretrained encoder (effnet-lite0)")
    return [{"params": [p for name, p in trainable if name.startswith("encoder.")], "lr_scale": encoder_lr_factor},
            {"params": [p for name, p in trainable if not name.startswith("encoder.")], "lr_scale": 1.0}]


def lr_factor(schedule: str, step: int, total_steps: int, warmup_fraction: float = 0.03) -> float:
    """The learning rate of `step` relative to --lr: 'constant', or 'cosine': a linear warm-up over the
    first 3% of steps (the new decoder's first gradients must not wreck the pretrained encoder), then
    cosine decay to zero at the last step. A function of the step alone, so a resumed run follows it exactly."""
    if schedule == "constant":
        return 1.0
    warmup = max(1, round(total_steps * warmup_fraction))
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


@torch.no_grad()
def save_samples(model: torch.nn.Module, dataset: PhotoDataset, path: Path, device: torch.device) -> None:
    """A grid of validation photos: rows of gray input, automatic colorization, ground truth."""
    from torchvision.utils import save_image

    model.eval()
    rgb = torch.stack([dataset[i] for i in range(min(SAMPLE_COUNT, len(dataset)))])
    lightness, ab = lab_batch(rgb, device)
    logits = model(lightness.contiguous(memory_format=torch.channels_last))
    l100 = (lightness + 1.0) * 50.0
    rows = [colorize_lab(l100, torch.zeros_like(ab)), colorize_logits(l100, logits), colorize_lab(l100, ab)]
    with atomic_path(path) as tmp:
        save_image(torch.cat(rows), tmp, nrow=len(rgb), format="png")


def _save_epoch(out: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, config: dict[str, Any],
                keep_epochs: bool) -> None:
    checkpoint.save_model(out / checkpoint.MODEL_STEM, model, config)
    if keep_epochs:
        checkpoint.save_model(out / f"{checkpoint.MODEL_STEM}_epoch{config['epoch']:03d}", model, config)
    checkpoint.save_optimizer(out, optimizer)


def run_record(config: TrainConfig, options: dict[str, Any], prior: torch.Tensor, history: list[dict[str, Any]],
               data: TrainingData, started_from: dict[str, Any] | None) -> dict[str, Any]:
    """The checkpoint config after the last epoch of `history`."""
    train_args = config.record()
    return {
        **({"init": started_from} if started_from else {}),
        "preset": config.preset,
        "options": options,
        "input_size": config.input_size or config.image_size,
        "bins": ab_bins().tolist(),
        "prior": prior.tolist(),
        "mix": config.mix,
        "neighbours": config.neighbours,
        "sigma": config.sigma,
        "epoch": len(history),
        "history": history,
        "data": {"train": [str(folder) for folder in config.data], "share": train_args["data_share"],
                 "val": str(config.val) if config.val else None, "holdout": config.holdout,
                 "train_images": len(data.train_set), "dropped_gray": len(data.scan.gray),
                 "dropped_corrupt": len(data.scan.corrupt), "val_images": len(data.val_set or [])},
        "train_args": train_args,
    }


def _plateaued(history: list[dict[str, Any]], threshold: float) -> bool:
    """The paper's rule: stop once an epoch improves the training loss by less than `threshold` (relative)."""
    if len(history) < 2:
        return False
    previous, current = history[-2]["train_loss"], history[-1]["train_loss"]
    return (previous - current) / previous < threshold


def _setup_distributed(requested: str) -> tuple[int, int, torch.device]:
    """This process's rank, the number of processes (torchrun's), and the device it trains on."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(requested)
    if device.type == "cpu":
        # As training goes on, weights and gradients reach denormal floats, which the CPU computes
        # with slowly: steps from trained weights took 22 % longer on two threads (docs/models.md).
        # Set before the first parallel region, so the intra-op threads inherit it; process-wide.
        torch.set_flush_denormal(True)
    if world == 1:
        return 0, 1, device
    local_rank = int(os.environ["LOCAL_RANK"])
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), world, device


def _all_mean(value: float, device: torch.device, world: int) -> float:
    if world == 1:
        return value
    tensor = torch.tensor([value], device=device)
    dist.all_reduce(tensor)
    return tensor.item() / world


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(out / "tensorboard"))


def _log(writer, record: dict[str, Any]) -> None:
    if writer is None:
        return
    for key, value in record.items():
        if key != "epoch":
            writer.add_scalar(key, value, record["epoch"])
    writer.flush()
