"""Training: data -> device-side targets -> rebalanced cross-entropy, with AMP, DDP, resume and checkpoints.

Single process: `colorizer train --data DIR --out RUN`. Several GPUs:
`torchrun --nproc_per_node N -m colorizer train --data DIR --out RUN`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, WeightedRandomSampler
from tqdm import tqdm

from colorizer import checkpoint
from colorizer.bins import ab_bins
from colorizer.color import normalize_l, rgb_to_lab
from colorizer.data import PhotoDataset, Scan, hold_out, scan_folder
from colorizer.decode import annealed_mean, colorize_lab
from colorizer.device import resolve_device
from colorizer.errors import UserError
from colorizer.hints import sample_hint_counts, simulate_hints
from colorizer.loss import encode_targets, rebalanced_cross_entropy
from colorizer.models import build_model, preset_options
from colorizer.prior import bin_counts, rebalance_weights, smooth_prior

SAMPLE_COUNT = 8


def lab_batch(rgb_uint8: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 RGB (N, 3, H, W) -> network input L in [-1, 1] (N, 1, H, W) and ab (N, 2, H, W), on device."""
    lab = rgb_to_lab(rgb_uint8.to(device, non_blocking=True).float() / 255.0)
    return normalize_l(lab[:, :1]), lab[:, 1:]


def batch_loss(model: torch.nn.Module, rgb: torch.Tensor, class_weights: torch.Tensor, args: argparse.Namespace,
               device: torch.device, with_hints: bool = True) -> torch.Tensor:
    """The loss of a batch; a hint-capable network gets simulated hints unless `with_hints` is off
    (validation scores the automatic colorization)."""
    lightness, ab = lab_batch(rgb, device)
    network = checkpoint.unwrap(model)
    stride = network.output_stride
    # targets at the network's output resolution, from ab averaged over each output cell
    targets = encode_targets(F.avg_pool2d(ab, stride), class_weights, k=args.neighbours, sigma=args.sigma)
    inputs = [lightness.contiguous(memory_format=torch.channels_last)]
    if getattr(network, "hint_inputs", False):
        counts = sample_hint_counts(len(rgb)) if with_hints else [0] * len(rgb)
        inputs.append(simulate_hints(ab, counts))
    with _autocast(device, args.amp):
        logits = model(*inputs)
    return rebalanced_cross_entropy(logits, targets)


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, rgb: torch.Tensor,
               class_weights: torch.Tensor, args: argparse.Namespace, device: torch.device) -> torch.Tensor:
    """One optimisation step on a batch of uint8 RGB crops; returns the (detached) loss."""
    loss = batch_loss(model, rgb, class_weights, args, device)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def compute_prior(paths: list[Path], size: int, batch_size: int, workers: int, device: torch.device,
                  progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Bin counts over every pixel of the (centre-cropped) training photos and the smoothed prior."""
    loader = DataLoader(PhotoDataset(paths, size, augment=False), batch_size=batch_size, num_workers=workers)
    counts = torch.zeros(ab_bins().shape[0], dtype=torch.float64)
    for rgb in tqdm(loader, desc="prior", disable=not progress):
        counts += bin_counts(lab_batch(rgb, device)[1])
    return counts, smooth_prior(counts)


def train(args: argparse.Namespace) -> Path:
    if args.image_size % 32:
        raise UserError(f"--image-size must be a multiple of 32, got {args.image_size}")
    if not 0 <= args.holdout <= 0.5:
        raise UserError(f"--holdout must be between 0 and 0.5, got {args.holdout:g}")
    if args.holdout and args.val:
        raise UserError("--holdout and --val both name the validation photos: pass one of them")
    if args.data_share is not None and (len(args.data_share) != len(args.data) or min(args.data_share) <= 0):
        raise UserError(f"--data-share needs one positive share per --data folder ({len(args.data)}), "
                        f"got {' '.join(f'{v:g}' for v in args.data_share)}")
    rank, world, device = _setup_distributed(args.device)
    if device.type == "cpu":
        # As training goes on, weights and gradients reach denormal floats, which the CPU computes
        # with slowly: steps from trained weights took 22 % longer on two threads (docs/models.md).
        # Set before the first parallel region, so the intra-op threads inherit it; process-wide.
        torch.set_flush_denormal(True)
    is_main = rank == 0
    out = Path(args.out)
    resume = args.resume and (out / "optimizer.json").is_file()
    if args.resume and not resume and is_main:
        print(f"nothing to resume in {out}; starting fresh")
    config = checkpoint.read_config(out) if resume else None
    # the optimizer's groups (and their saved learning-rate scales) depend on the factor, and a
    # changed holdout would train on photos the run validated on
    for option, default in (("encoder_lr_factor", 1.0), ("holdout", 0.0)):
        trained = config["train_args"].get(option, default) if config else getattr(args, option)
        if trained != getattr(args, option):
            flag = "--" + option.replace("_", "-")
            raise UserError(f"{out} was trained with {flag} {trained:g}; resume it with the same")
    _seed_everything(args.seed)
    # the network first: a bad preset or option fails before minutes of scanning photos
    options = preset_options(args.preset, **_json_options(args.options))
    model = build_model(args.preset, **options).to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(parameter_groups(model, args.encoder_lr_factor), lr=args.lr, betas=(0.9, 0.99),
                                 weight_decay=args.weight_decay)

    scans = [scan_folder(folder, limit=args.limit, progress=is_main, min_chroma=args.min_chroma)
             for folder in args.data]
    scan = Scan.merged(scans)
    folders = [scan.colour for scan in scans]  # the training photos of each --data folder
    val_paths, val_summary = [], ""
    if args.holdout:
        split = [hold_out(part.colour, folder, args.holdout) for part, folder in zip(scans, args.data, strict=True)]
        folders = [train for train, _ in split]
        val_paths = [path for _, held in split for path in held]
        val_summary = f"{len(val_paths)} colour photos held out of --data"
    elif args.val:
        val_scan = scan_folder(args.val, limit=args.limit, progress=is_main, min_chroma=args.min_chroma)
        val_paths, val_summary = val_scan.colour, val_scan.summary()
    train_paths = [path for paths in folders for path in paths]
    shares = _photo_shares(folders, args.data_share)
    epoch_size = args.epoch_size or len(train_paths)
    train_set = PhotoDataset(train_paths, args.image_size, augment=True, min_crop_area=args.min_crop_area)
    val_set = PhotoDataset(val_paths, args.image_size, augment=False) if val_paths else None
    if is_main:
        held = f"{len(train_paths)} of " if args.holdout else ""
        print(f"train: {held}{scan.summary()}" + (f"\nval: {val_summary}" if val_paths else ""))

    if config is not None:
        prior = torch.tensor(config["prior"], dtype=torch.float64)
    elif args.prior:
        prior = torch.tensor(json.loads(Path(args.prior).read_text())["prior"], dtype=torch.float64)
    else:
        # each folder's colours weigh in by its share of the training photos drawn
        counts = [compute_prior(paths, args.image_size, args.batch_size, args.workers, device, is_main)[0]
                  for paths in folders]
        prior = smooth_prior(sum(share * c / c.sum() for share, c in zip(_folder_shares(folders, args.data_share), counts, strict=True)))
    class_weights = rebalance_weights(prior, mix=args.mix).to(device)

    history: list[dict[str, Any]] = []
    start_epoch = 0
    if resume:
        model.load_state_dict(checkpoint.load_model(out)[0].state_dict())
        checkpoint.load_optimizer(out, optimizer)
        history, start_epoch = config["history"], config["epoch"]
        if is_main:
            print(f"resuming {out} after epoch {start_epoch}")
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    writer = _tensorboard(out) if is_main else None

    run_started = time.perf_counter()
    for epoch in range(start_epoch, args.epochs):
        # every random choice of an epoch derives from (seed, epoch): a resumed run repeats it exactly
        _seed_everything(args.seed + epoch)
        epoch_generator = torch.Generator().manual_seed((args.seed + epoch) * world + rank)
        if shares is not None:
            sampler = WeightedRandomSampler(shares, epoch_size // world, generator=epoch_generator)
        elif world > 1:
            sampler = DistributedSampler(train_set, world, rank, seed=args.seed)
            sampler.set_epoch(epoch)
        else:
            sampler = RandomSampler(train_set, generator=epoch_generator)
        loader = DataLoader(train_set, args.batch_size, sampler=sampler, num_workers=args.workers, drop_last=True,
                            pin_memory=device.type == "cuda", persistent_workers=False,
                            generator=torch.Generator().manual_seed(args.seed + epoch))
        model.train()
        total, seen, started = 0.0, 0, time.perf_counter()
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{args.epochs}", disable=not is_main)
        for step, rgb in enumerate(bar, start=epoch * len(loader)):
            lr = args.lr * lr_factor(args.lr_schedule, step, args.epochs * len(loader))
            for group in optimizer.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)  # no lr_scale in checkpoints from before it
            loss = train_step(model, optimizer, rgb, class_weights, args, device)
            total += loss.item() * len(rgb)
            seen += len(rgb)
            bar.set_postfix(loss=f"{total / seen:.4f}", img_s=f"{seen * world / (time.perf_counter() - started):.1f}")
        train_loss = _all_mean(total / max(seen, 1), device, world)
        record = {"epoch": epoch + 1, "train_loss": train_loss, "seconds": round(time.perf_counter() - started, 1)}
        if val_set is not None:
            record["val_loss"] = evaluate_loss(model, val_set, class_weights, args, device, rank, world)
        history.append(record)
        if is_main:
            print(json.dumps(record))
            _log(writer, record)
            config = _config(args, options, prior, epoch + 1, history, scan, len(train_paths), len(val_paths))
            checkpoint.save_model(out / checkpoint.MODEL_STEM, model, config)
            if args.keep_epochs:
                checkpoint.save_model(out / f"{checkpoint.MODEL_STEM}_epoch{epoch + 1:03d}", model, config)
            checkpoint.save_optimizer(out, optimizer)
            if val_set is not None:
                save_samples(model, val_set, out / f"samples_epoch{epoch + 1:03d}.png", device)
        if args.until_plateau and _plateaued(history, args.until_plateau):
            if is_main:
                print(f"training loss improved by less than {args.until_plateau:.0%}: stopping after epoch {epoch + 1}")
            break
        elapsed = time.perf_counter() - run_started
        if args.time_limit and elapsed * (epoch + 2 - start_epoch) / (epoch + 1 - start_epoch) > args.time_limit * 60:
            if is_main:
                print(f"another epoch would pass --time-limit {args.time_limit:g} min: stopping after epoch {epoch + 1}")
            break
    if world > 1:
        dist.destroy_process_group()
    if is_main:
        print(f"model: {out}")
    return out


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
def evaluate_loss(model, dataset, class_weights, args, device, rank: int = 0, world: int = 1) -> float:
    model.eval()
    indices = list(range(rank, len(dataset), world))
    loader = DataLoader(torch.utils.data.Subset(dataset, indices), args.batch_size, num_workers=args.workers)
    total, seen = 0.0, 0
    for rgb in loader:
        total += batch_loss(model, rgb, class_weights, args, device, with_hints=False).item() * len(rgb)
        seen += len(rgb)
    return _all_mean(total / max(seen, 1), device, world)


@torch.no_grad()
def save_samples(model, dataset, path: Path, device: torch.device) -> None:
    """A grid of validation photos: rows of gray input, colorization at T = 0.38, ground truth."""
    from torchvision.utils import save_image

    from colorizer.atomic import atomic_path

    model.eval()
    rgb = torch.stack([dataset[i] for i in range(min(SAMPLE_COUNT, len(dataset)))])
    lightness, ab = lab_batch(rgb, device)
    logits = model(lightness.contiguous(memory_format=torch.channels_last))
    l100 = (lightness + 1.0) * 50.0
    rows = [colorize_lab(l100, torch.zeros_like(ab)), colorize_lab(l100, annealed_mean(logits)), colorize_lab(l100, ab)]
    with atomic_path(path) as tmp:
        save_image(torch.cat(rows), tmp, nrow=len(rgb), format="png")


def _config(args, options, prior, epoch, history, scan, train_images, val_images) -> dict[str, Any]:
    return {
        "preset": args.preset,
        "options": options,
        "input_size": args.input_size or args.image_size,
        "bins": ab_bins().tolist(),
        "prior": prior.tolist(),
        "mix": args.mix,
        "neighbours": args.neighbours,
        "sigma": args.sigma,
        "epoch": epoch,
        "history": history,
        "data": {"train": [str(folder) for folder in args.data], "share": args.data_share, "val": str(args.val) if args.val else None, "holdout": args.holdout,
                 "train_images": train_images, "dropped_gray": len(scan.gray), "dropped_corrupt": len(scan.corrupt),
                 "val_images": val_images},
        "train_args": {k: v for k, v in vars(args).items() if k != "func"},
    }


def _json_options(text: str) -> dict[str, Any]:
    try:
        options = json.loads(text)
    except json.JSONDecodeError:
        options = None
    if not isinstance(options, dict):
        raise UserError(f"--options must be a JSON object, got {text!r}")
    return options


def _plateaued(history: list[dict[str, Any]], threshold: float) -> bool:
    """The paper's rule: stop once an epoch improves the training loss by less than `threshold` (relative)."""
    if len(history) < 2:
        return False
    previous, current = history[-2]["train_loss"], history[-1]["train_loss"]
    return (previous - current) / previous < threshold


def _setup_distributed(requested: str) -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(requested)
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


def _autocast(device: torch.device, amp: str):
    """bf16 autocast where asked ('auto' means on CUDA): fp32 master weights, bf16 matrix work."""
    if amp == "bf16" or (amp == "auto" and device.type == "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


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
