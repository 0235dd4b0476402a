"""The `colorizer` command: train, colorize, prior, eval, demo, study, analyze."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from colorizer.device import DEVICE_HELP
from colorizer.errors import UserError

OPTIMIZE_FROM = 10  # photos from which `colorize` freezes the network graph first


def cmd_train(args: argparse.Namespace) -> int:
    from colorizer.train import train

    train(args)
    return 0


def cmd_prior(args: argparse.Namespace) -> int:
    from colorizer.atomic import write_text
    from colorizer.data import scan_folder
    from colorizer.device import resolve_device
    from colorizer.train import compute_prior

    device = resolve_device(args.device)
    scan = scan_folder(args.data, limit=args.limit)
    print(scan.summary())
    counts, prior = compute_prior(scan.colour, args.image_size, args.batch_size, args.workers, device)
    write_text(args.out, json.dumps({"data": str(args.data), "images": len(scan.colour), "pixels": int(counts.sum()),
                                     "image_size": args.image_size, "sigma": 5.0, "counts": counts.tolist(),
                                     "prior": prior.tolist()}))
    print(f"prior of {len(scan.colour)} photos ({int(counts.sum())} pixels) -> {args.out}")
    return 0


def output_path(source: Path, root: Path | None, out_dir: Path) -> Path:
    """<out>/<path relative to the input folder>.png; never the input file itself."""
    relative = source.relative_to(root) if root is not None else Path(source.name)
    target = out_dir / relative.with_suffix(".png")
    if target.resolve() == source.resolve():
        target = target.with_name(f"{target.stem}_colorized.png")
    return target


def cmd_colorize(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from colorizer.atomic import atomic_path
    from colorizer.images import find_images, open_image
    from colorizer.infer import Colorizer

    jobs: list[tuple[Path, Path]] = []
    for item in map(Path, args.inputs):
        files = find_images(item)
        if item.is_dir() and not files:
            raise UserError(f"{item}: no images found")
        jobs += [(f, output_path(f, item if item.is_dir() else None, Path(args.out))) for f in files]
    # freezing the network costs seconds once and saves most of the time per photo: worth it for batches
    colorizer = Colorizer.load(args.model, device=args.device, optimize=len(jobs) >= OPTIMIZE_FROM)
    failures = 0
    progress = tqdm(total=len(jobs), desc="colorize", unit="img", disable=len(jobs) < 2)

    def flush(batch: list[tuple[Path, object]]) -> None:
        results = colorizer.colorize_many([image for _, image in batch], args.temperature, args.batch_size)
        for (target, _), result in zip(batch, results):
            with atomic_path(target) as tmp:
                result.save(tmp, format="PNG")
            progress.update()

    batch = []
    for source, target in jobs:
        try:
            batch.append((target, open_image(source)))
        except UserError as exc:
            failures += 1
            progress.update()
            tqdm.write(f"error: {exc}", file=sys.stderr)
        if len(batch) == args.batch_size:
            flush(batch)
            batch = []
    if batch:
        flush(batch)
    progress.close()
    done = len(jobs) - failures
    print(f"colorized {done} of {len(jobs)} images into {args.out}")
    return 1 if failures else 0


def cmd_eval(args: argparse.Namespace) -> int:
    from colorizer.evaluate import run_eval

    run_eval(args)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from demo.app import launch

    launch(host=args.host, port=args.port, share=args.share, models_dir=args.models_dir)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from colorizer.train_args import add_arguments as add_train_arguments

    parser = argparse.ArgumentParser(prog="colorizer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a colorization network on a folder of colour photos")
    add_train_arguments(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("colorize", help="colorize image files and folders into PNGs")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders (searched recursively)")
    p.add_argument("--out", required=True, help="output folder (one PNG per input, same stem)")
    p.add_argument("--model", default="generic", help="bundled model name (generic, dogs), checkpoint file or run folder")
    p.add_argument("--temperature", type=float, default=0.38, help="annealed-mean temperature: ~0 vivid, 1 the mean")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.set_defaults(func=cmd_colorize)

    p = sub.add_parser("prior", help="count the ab bins of a dataset: the smoothed prior for rebalancing")
    p.add_argument("data", help="folder of colour photos")
    p.add_argument("--out", required=True, help="JSON file to write")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--limit", type=int, help="use at most this many images")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.set_defaults(func=cmd_prior)

    p = sub.add_parser("eval", help="AuC, rebalanced AuC, colourfulness and PSNR on held-out photos")
    p.add_argument("--model", default="generic", help="bundled model name, checkpoint file or run folder")
    p.add_argument("--data", required=True, help="folder of held-out colour photos")
    p.add_argument("--json", help="also write the figures to this JSON file")
    p.add_argument("--limit", type=int, help="evaluate at most this many photos")
    p.add_argument("--temperature", type=float, default=0.38)
    p.add_argument("--seed", type=int, default=0, help="seed of the random colorization baseline")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("demo", help="the browser demo (Gradio)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--share", action="store_true", help="also open a public Gradio share link")
    p.add_argument("--models-dir", default="models", help="extra checkpoints offered in the model menu")
    p.set_defaults(func=cmd_demo)

    for module in ("study.cli", "analysis.cli"):
        __import__(module, fromlist=["register"]).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    warnings.simplefilter("ignore", UserWarning)  # library chatter; our own problems are UserErrors
    try:
        return args.func(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
