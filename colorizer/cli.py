"""The `colorizer` command, also run as `python -m colorizer` (torchrun's way): the core's train, colorize,
export, prior and eval, and the subcommands of the apps above the core (demo, study, analyze), which they
add through the `colorizer.commands` entry points, so that the core imports none of them."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

from colorizer.defaults import DEFAULT_STRENGTH, DEFAULT_TEMPERATURE
from colorizer.device import DEVICE_HELP
from colorizer.errors import UserError

OPTIMIZE_FROM = 10  # photos from which `colorize` freezes the network graph first
COMMANDS = "colorizer.commands"  # entry points: register(subparsers) functions that add subcommands
PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def cmd_train(args: argparse.Namespace) -> int:
    from colorizer.train import train
    from colorizer.train_args import TrainConfig

    train(TrainConfig.from_args(args))
    return 0


def cmd_prior(args: argparse.Namespace) -> int:
    from colorizer.atomic import write_text
    from colorizer.data import scan_folder
    from colorizer.device import resolve_device
    from colorizer.prior import PRIOR_SIGMA, compute_prior

    device = resolve_device(args.device)
    scan = scan_folder(args.data, limit=args.limit)
    print(scan.summary())
    counts, prior = compute_prior(scan.colour, args.image_size, args.batch_size, args.workers, device)
    write_text(args.out, json.dumps({"data": str(args.data), "images": len(scan.colour), "pixels": int(counts.sum()),
                                     "image_size": args.image_size, "sigma": PRIOR_SIGMA, "counts": counts.tolist(),
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
    from colorizer.video import video_jobs

    jobs: list[tuple[Path, Path]] = []
    videos, inputs = video_jobs(args.inputs, Path(args.out), args.frames_as_video)
    for item in inputs:
        files = find_images(item)
        if item.is_dir() and not files and not videos:
            raise UserError(f"{item}: no images found")
        jobs += [(f, output_path(f, item if item.is_dir() else None, Path(args.out))) for f in files]
    hints = read_hints(args.hints, len(jobs) + len(videos)) if args.hints else None
    check_saturation(args.saturation)
    guided = args.reference is not None or args.palette is not None or args.alternatives is not None
    if guided:
        from colorizer.reference import check_alternatives, check_strength, parse_palette

        check_strength(args.reference_strength)
        if args.alternatives is not None:
            check_alternatives(args.alternatives)
        if args.palette is not None:
            parse_palette(args.palette)
        reference = open_image(args.reference) if args.reference is not None else None
    # freezing the network costs seconds once and saves most of the time per photo: worth it for batches
    colorizer = Colorizer.load(args.model, device=args.device, optimize=len(jobs) >= OPTIMIZE_FROM or bool(videos),
                              backend=args.backend)
    video_failures = colorize_videos(colorizer, videos, args, hints) if videos else 0
    if videos and not jobs:
        return 1 if video_failures else 0
    if guided:
        guide = colorizer.guide(reference, args.palette) if reference is not None or args.palette is not None else None
    failures = 0
    progress = tqdm(total=len(jobs), desc="colorize", unit="img", disable=len(jobs) < 2)

    def flush(batch: list[tuple[Path, object]]) -> None:
        images = [image for _, image in batch]
        if guided:  # one photo at a time: a guide and alternatives work on one photo's logits
            for target, image in batch:
                results = [colorizer.colorize_guided(image, guide, args.temperature, hints, args.reference_strength,
                                                     args.saturation)
                           if guide is not None else colorizer.colorize(image, args.temperature, hints,
                                                                        saturation=args.saturation)]
                if args.alternatives:
                    results += colorizer.alternatives_guided(image, args.alternatives, guide, args.temperature, hints,
                                                             args.reference_strength)
                for i, result in enumerate(results):
                    save(target if i == 0 else target.with_name(f"{target.stem}.alt{i}.png"), result)
                progress.update()
            return
        results = colorizer.colorize_many(images, args.temperature, args.batch_size, hints=None if hints is None else [hints],
                                          saturation=args.saturation)
        for (target, _), result in zip(batch, results, strict=True):
            save(target, result)
            progress.update()

    def save(target: Path, result) -> None:
        with atomic_path(target) as tmp:
            result.save(tmp, format="PNG")

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
    return 1 if failures or video_failures else 0


def colorize_videos(colorizer, videos: list[tuple[Path, Path]], args: argparse.Namespace, hints: list | None) -> int:
    """Colorize each (clip or frame folder, output clip) with a progress bar of frames; returns the failures."""
    from tqdm import tqdm

    failures = 0
    for source, target in videos:
        with tqdm(desc=source.name, unit="frame", dynamic_ncols=True) as bar:
            def progress(done: int, total: int | None) -> None:
                bar.total = total
                bar.update(done - bar.n)
            try:
                colorizer.colorize_video(source, target, temperature=args.temperature, hints=hints,
                                         temporal=not args.per_frame, progress=progress, codec=args.codec,
                                         crf=args.crf, fps=args.fps)
            except UserError as exc:
                failures += 1
                tqdm.write(f"error: {exc}", file=sys.stderr)
    print(f"colorized {len(videos) - failures} of {len(videos)} videos into {args.out}")
    return failures


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


def cmd_export(args: argparse.Namespace) -> int:
    from colorizer import checkpoint, export
    from colorizer.infer import BUNDLED_MODELS, model_path

    if args.format not in export.FORMATS:  # before the seconds of loading and tracing
        raise UserError(f"unknown export format {args.format!r}: give {' or '.join(export.FORMATS)}")
    path = model_path(args.model)
    network, config = checkpoint.load_model(path)
    name = args.model if args.model in BUNDLED_MODELS else config.get("name", Path(args.model).stem)
    out = export.save(args.out, network, {**config, "name": name}, args.format)
    print(f"exported {name} ({config['preset']}, {config.get('input_size', 224)} px"
          f"{', hints as inputs' if export.takes_hints(config) else ''}) -> {out}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from colorizer.evaluate import run_eval

    run_eval(args)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add train, colorize, prior, eval and export to a command line."""
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
    p.add_argument("--reference", metavar="IMAGE",
                   help="take the colours of this colour image (a photo of the same scene, a painting)")
    p.add_argument("--palette", metavar="COLOURS",
                   help='take these colours, optionally weighted: "#8b4513,#87ceeb:0.5,#2e8b57"')
    p.add_argument("--reference-strength", type=float, default=DEFAULT_STRENGTH, metavar="0..1",
                   help=f"how strongly --reference / --palette draw the colours (default {DEFAULT_STRENGTH:g})")
    p.add_argument("--alternatives", type=int, metavar="K",
                   help="also write K (1-16) distinct plausible colorizations, likeliest first, as NAME.alt1.png ...")
    p.add_argument("--saturation", type=float, default=1.0,
                   help="colour strength: 0 gray, 1 as predicted (default), up to 2 stronger")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--backend", default="auto",
                   help="auto (PyTorch where the CPU has native bf16 or on a GPU, else ONNX Runtime), torch or onnxruntime")
    video = p.add_argument_group("video", "clips (.mp4, .mov, .mkv, ...) become clips of the same frames, "
                                 "timestamps, size, rotation and audio; --hints on a clip take a \"frame\" each")
    video.add_argument("--codec", default="libx264", help="video encoder (default libx264: H.264, yuv420p)")
    video.add_argument("--crf", type=int, default=18, help="encoder quality, lower is better (default 18)")
    video.add_argument("--frames-as-video", action="store_true",
                       help="a folder of frames (frame_0001.png, ...) becomes one clip, FOLDER.mp4, instead of photos")
    video.add_argument("--fps", type=float, help="frame rate of --frames-as-video clips")
    video.add_argument("--per-frame", action="store_true",
                       help="colour each frame alone (flickers), without carrying colour along the motion")
    p.set_defaults(func=cmd_colorize)

    p = sub.add_parser("export", help="write a model as an ONNX file for ONNX Runtime and other deployments")
    p.add_argument("--model", default="generic", help="bundled model name (generic, dogs), checkpoint file or run folder")
    p.add_argument("--format", default="onnx", help="file format: onnx")
    p.add_argument("--out", required=True, help="file to write (e.g. model.onnx)")
    p.set_defaults(func=cmd_export)

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
    p.add_argument("--reference", choices=["half"],
                   help="half: score reference colouring instead, each photo's top half the reference of its bottom half, "
                        "and alternatives on whole photos")
    p.add_argument("--reference-strength", type=float, default=DEFAULT_STRENGTH, help="with --reference")
    p.add_argument("--alternatives", type=int, default=4, help="with --reference: alternatives per photo (0: none)")
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


def app_commands() -> list[EntryPoint]:
    """The `colorizer.commands` entry points, by name. Run from a source tree (an editable install, a
    checkout), its own pyproject.toml lists them: installed metadata only changes on reinstalling, so
    it may lack a command the tree has; an installed package has only its metadata."""
    if PYPROJECT.is_file():
        import tomllib

        project = tomllib.loads(PYPROJECT.read_text())["project"]
        if project["name"] == "colorizer":
            table = project.get("entry-points", {}).get(COMMANDS, {})
            return sorted(EntryPoint(name, value, COMMANDS) for name, value in table.items())
    return sorted(entry_points(group=COMMANDS))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="colorizer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    register(sub)
    for command in app_commands():
        command.load()(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run(build_parser(), argv)
