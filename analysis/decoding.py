"""`colorizer analyze decoding`: the figures of `colorizer eval` under each setting of the decoding's
blotch vote and edge-aware upsampling (colorizer/decode.py), for choosing them on held-out photos.

The network runs once per photo; every setting decodes the same logits, so the settings differ by
their decoding alone. A setting is `WINDOW:L_SIGMA:RADIUS`: the vote's window in cells (1: no
vote) and its L sigma, and the guided filter's radius in cells (0: bilinear, as before).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

DEFAULT_SETTINGS = "1:0:0,3:8:0,5:8:0,7:8:0,5:4:0,5:16:0,1:0:1,5:8:1,5:8:2"


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("decoding", help="eval's figures under each setting of the decoding (blotches, edges)")
    add_photo_arguments(parser)
    parser.add_argument("--settings", default=DEFAULT_SETTINGS,
                        help=f"comma-separated WINDOW:L_SIGMA:RADIUS (default {DEFAULT_SETTINGS})")
    parser.add_argument("--json", type=Path, help="also write every setting's figures here")
    parser.set_defaults(func=run)


def add_photo_arguments(parser: argparse.ArgumentParser) -> None:
    """--data, --holdout, --limit and --model, as the settings scripts share them."""
    parser.add_argument("--data", type=Path, required=True, help="folder of colour photos")
    parser.add_argument("--holdout", type=float, metavar="FRACTION",
                        help="only the photos `train --holdout FRACTION` held out (for choosing settings)")
    parser.add_argument("--limit", type=int, help="at most this many photos (evenly spread; before --holdout)")
    parser.add_argument("--model", default="generic", help="a hint-capable model (default generic)")


def photo_paths(args: argparse.Namespace) -> list[Path]:
    """The colour photos of --data (at most --limit), those --holdout held out where given."""
    from colorizer.data import hold_out, scan_folder

    paths = scan_folder(args.data, limit=args.limit).colour
    return hold_out(paths, args.data, args.holdout)[1] if args.holdout else paths


def parse_settings(text: str) -> list[tuple[int, float, float]]:
    from colorizer.errors import UserError

    try:
        settings = [(int(w), float(s), float(r)) for w, s, r in (part.split(":") for part in text.split(","))]
    except ValueError:
        raise UserError(f"--settings takes WINDOW:L_SIGMA:RADIUS,... (e.g. 5:8:1), got {text!r}") from None
    if any(w < 1 or (w > 1 and s <= 0) or r < 0 for w, s, r in settings):
        raise UserError("a window is at least 1, an L sigma above 0 where the window is over 1, a radius at least 0")
    return settings


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from colorizer.atomic import write_text
    from colorizer.bins import NUM_BINS, nearest_bins
    from colorizer.color import lab_to_rgb, rgb_to_lab
    from colorizer.decode import VOTE_SPACE_SIGMA, annealed_mean, guided_upsample, vote_logits
    from colorizer.evaluate import Accumulator, auc_per_pixel
    from colorizer.images import open_image, to_rgb_tensor
    from colorizer.infer import Colorizer

    settings = parse_settings(args.settings)
    colorizer = Colorizer.load(args.model, optimize=True)
    paths = photo_paths(args)
    totals = {setting: Accumulator() for setting in settings}
    bin_pixels = torch.zeros(NUM_BINS, dtype=torch.float64)
    for path in tqdm(paths, desc="photos"):
        truth = to_rgb_tensor(open_image(path))
        lab = rgb_to_lab(truth)
        lightness, true_ab = lab[:, :1], lab[:, 1:]
        true_bin = nearest_bins(true_ab, k=1)[0]
        bin_pixels += torch.bincount(true_bin.flatten(), minlength=NUM_BINS).double()
        logits = colorizer.logits(lightness)
        for (window, l_sigma, radius), accumulator in totals.items():
            voted = vote_logits(logits, lightness, window, VOTE_SPACE_SIGMA, l_sigma)
            ab = guided_upsample(annealed_mean(voted), lightness, radius)
            accumulator.add(true_bin, auc_per_pixel(ab, true_ab), lab_to_rgb(torch.cat([lightness, ab], 1)), truth)
    results = {f"{w}:{s:g}:{r:g}": accumulator.result(bin_pixels) for (w, s, r), accumulator in totals.items()}
    print(f"{len(paths)} photos of {args.data}{f' held out by --holdout {args.holdout:g}' if args.holdout else ''}")
    print(f"{'window:L sigma:radius':24}{'AuC':>8}{'AuC rebal':>11}{'colourful':>11}{'PSNR':>8}")
    for name, r in results.items():
        print(f"{name:24}{r['auc']:8.2f}{r['auc_rebal']:11.2f}{r['colorfulness']:11.2f}{r['psnr']:8.2f}")
    if args.json:
        write_text(args.json, json.dumps({"data": str(args.data), "holdout": args.holdout, "photos": len(paths),
                                          "settings": results}, indent=2))
    return 0
