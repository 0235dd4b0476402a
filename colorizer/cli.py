"""The core's subcommands: train, colorize, prior, eval. `python -m colorizer` runs them alone (as torchrun
does); the `colorizer` command adds the demo's, the study's and the analysis' (toolkit/cli.py)."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from colorizer.defaults import DEFAULT_TEMPERATURE
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
    from colorizer.prior import compute_prior

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
    from colorizer.images import find_images, is_colour, open_image
    from colorizer.infer import Colorizer, check_saturation

    jobs: list[tuple[Path, Path]] = []
    for item in map(Path, args.inputs):
        files = find_images(item)
        if item.is_dir() and not files:
            raise UserError(f"{item}: no images found")
        jobs += [(f, output_path(f, item if item.is_dir() else None, Path(args.out))) for f in files]
    hints = read_hints(args.hints, len(jobs)) if args.hints else None
    check_saturation(args.saturation)
    # freezing the network costs seconds once and saves most of the time per photo: worth it for batches
    colorizer = Colorizer.load(args.model, device=args.device, optimize=len(jobs) >= OPTIMIZE_FROM)
    failures = 0
    progress = tqdm(total=len(jobs), desc="colorize", unit="img", disable=len(jobs) < 2)

    def flush(batch: list[tuple[Path, object]]) -> None:
        images = [image for _, image in batch]
        results = colorizer.colorize_many(images, args.temperature, args.batch_size, hints=None if hints is None else [hints],
                                          saturation=args.saturation)
        for (target, _), result in zip(batch, results, strict=True):
            with atomic_path(target) as tmp:
                result.save(tmp, format="PNG")
            progress.update()

    batch = []
    colour_photos = 0
    for source, target in jobs:
        try:
            batch.append((target, open_image(source)))
            colour_photos += is_colour(batch[-1][1])
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
    if colour_photos:  # gray and toned monochrome (sepia, cyanotype) photos are what the tool is for
        print(f"note: {colour_photos} of them were colour photos, colorized from their lightness alone")
    return 1 if failures else 0


def read_hints(path: str, photos: int) -> list:
    """The hint list of `--hints FILE`: a JSON list of {"x", "y", "rgb", optional "radius"} for one photo."""
    if photos != 1:
        raise UserError(f"--hints applies to exactly one photo, got {photos}")
    try:
        hints = json.loads(Path(path).read_text())
    except OSError as exc:
        raise UserError(f"{path}: {exc.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(hints, list):
        raise UserError(f"{path}: expected a JSON list of hints like [{{\"x\": 120, \"y\": 40, \"rgb\": [200, 30, 30]}}]")
    return hints


def cmd_eval(args: argparse.Namespace) -> int:
    from colorizer.evaluate import run_eval

    run_eval(args)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add train, colorize, prior and eval to a command line."""
    from colorizer.train_args import add_arguments as add_train_arguments

    p = sub.add_parser("train", help="train a colorization network on folders of colour photos")
    add_train_arguments(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("colorize", help="colorize image files and folders into PNGs")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders (searched recursively)")
    p.add_argument("--out", required=True, help="output folder (one PNG per input, same stem)")
    p.add_argument("--model", default="generic", help="bundled model name (generic, dogs), checkpoint file or run folder")
    p.add_argument("--temperature", type=float, default=DEFAULT_TEMPERATURE,
                   help=f"annealed-mean temperature: ~0 vivid, 1 the mean (default {DEFAULT_TEMPERATURE})")
    p.add_argument("--hints", metavar="JSON",
                   help='colour hints for one photo: a JSON file [{"x": 120, "y": 40, "rgb": [200, 30, 30]}, ...] '
                        '(photo pixels, 0-255 colour, optional "radius"); needs a hint-capable model (generic)')
    p.add_argument("--saturation", type=float, default=1.0,
                   help="colour strength: 0 gray, 1 as predicted (default), up to 2 stronger")
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
    p.add_argument("--holdout", type=float, metavar="FRACTION",
                   help="evaluate only the photos of --data that `train --holdout FRACTION` held out: "
                        "for choosing settings without touching a test split")
    p.add_argument("--temperature", type=float, default=DEFAULT_TEMPERATURE)
    p.add_argument("--hints", metavar="COUNTS",
                   help="also score the model under this many hints per photo, simulated from the true colours "
                        "(e.g. 0,10,100; hint-capable models)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random colorization baseline and the hints")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.set_defaults(func=cmd_eval)


def run(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> int:
    """Parse and run a command; a UserError is one line on stderr and exit status 1, never a traceback."""
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore", UserWarning)  # library chatter; our own problems are UserErrors
    try:
        return args.func(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m colorizer", description=__doc__)
    register(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    return run(parser, argv)
