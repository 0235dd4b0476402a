"""`colorizer analyze hint-locality`: how much of a photo one hint of an unexpected colour changes.

Protocol, for each colour photo of --data (in sorted order; `--holdout F` takes the photos that
`train --holdout F` held out):

- **Placement**: one hint at a pixel drawn at random (seeded) among those at least a tenth of each
  side from the border whose lightness varies least around them (the flattest quarter by the standard
  deviation of L over a 9 x 9 window): a user clicks inside an object, not on its edge.
- **Colour**: one the model would not pick: its automatic colour there with the hue turned 120
  degrees and the chroma raised to at least 40, at the pixel's own lightness, clipped into sRGB.
- **Changed area**: the share of the photo's pixels whose ab moves by more than 10 between the
  automatic colorization and the hinted one; **own object**: the share of the pixels within 5 px of
  the hint that move by as much (the hint must still turn what it was placed on).

Each --reach (and --edge-cost) is a setting of `colorizer.hints.local_hint_logits` ("none": the
network's own spread); the first row is the network alone decoded as it shipped before the blotch
vote and the guided upsampling (colorizer/decode.py), against its own automatic colorization. The
network runs once per photo and hint map, and every setting decodes the same predictions, so
settings are compared on identical hints. With --psnr-hints each setting is also scored as
`colorizer eval --hints` scores it (true-colour hints simulated with the same seed and order), as
the PSNR gain over the automatic colorization.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

from analysis.decoding import add_photo_arguments, photo_paths

THRESHOLD = 10.0  # ab units: a change a viewer sees
OWN_RADIUS = 5  # photo pixels around the hint
TURN_DEGREES = 120.0
MIN_CHROMA = 40.0
BEFORE = (None, -1.0)  # the network alone with the bilinear decoding it shipped with, always the first row


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("hint-locality", help="the share of a photo one unexpected hint changes, per setting")
    add_photo_arguments(parser)
    parser.add_argument("--reach", default=None,
                        help="comma-separated reaches in output cells, 'none' for the network alone "
                             "(default: 'none' and the shipped reach)")
    parser.add_argument("--edge-cost", default=None, help="comma-separated edge costs (default: the shipped one)")
    parser.add_argument("--psnr-hints", default="", help="also the PSNR gain of this many true-colour hints, e.g. 10,100")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write every setting's figures here")
    parser.set_defaults(func=run)


def hint_spot(lightness, generator):
    """(x, y) of the hint on full-resolution L (1, 1, H, W): a random pixel among the flattest quarter,
    away from the border."""
    import torch
    import torch.nn.functional as F

    height, width = lightness.shape[-2:]
    mean = F.avg_pool2d(lightness, 9, 1, 4, count_include_pad=False)
    spread = (F.avg_pool2d(lightness**2, 9, 1, 4, count_include_pad=False) - mean**2).clamp_min(0)[0, 0]
    inner = spread[height // 10 : height - height // 10, width // 10 : width - width // 10]
    flat = (inner <= torch.quantile(inner.flatten(), 0.25)).nonzero()
    y, x = flat[torch.randint(len(flat), (1,), generator=generator)][0].tolist()
    return x + width // 10, y + height // 10


def unexpected_rgb(lightness_value: float, automatic_ab) -> list[int]:
    """The automatic colour (a, b) turned TURN_DEGREES in hue, chroma at least MIN_CHROMA, as 0-255 sRGB."""
    import torch

    from colorizer.color import lab_to_rgb

    a, b = (float(v) for v in automatic_ab)
    chroma, hue = max(math.hypot(a, b), MIN_CHROMA), math.atan2(b, a) + math.radians(TURN_DEGREES)
    lab = torch.tensor([lightness_value, chroma * math.cos(hue), chroma * math.sin(hue)])[None, :, None, None]
    return [round(float(c) * 255) for c in lab_to_rgb(lab).clamp(0, 1)[0, :, 0, 0]]


def parse_settings(reach: str | None, edge_cost: str | None) -> list[tuple[float | None, float]]:
    from colorizer.errors import UserError
    from colorizer.hints import LOCAL_EDGE_COST, LOCAL_REACH

    try:
        reaches = [None if r.strip() == "none" else float(r) for r in reach.split(",")] if reach else [None, LOCAL_REACH]
        costs = [float(c) for c in edge_cost.split(",")] if edge_cost else [LOCAL_EDGE_COST]
    except ValueError:
        raise UserError(f"--reach takes numbers or 'none' and --edge-cost numbers, comma-separated; got "
                        f"{reach!r} and {edge_cost!r}") from None
    if any(r is not None and r <= 0 for r in reaches) or any(c < 0 for c in costs):
        raise UserError("--reach must be above 0 and --edge-cost at least 0")
    return [BEFORE] + [(None, costs[0])] * (None in reaches) + [(r, c) for r in reaches if r is not None for c in costs]


def setting_name(reach: float | None, edge_cost: float) -> str:
    if (reach, edge_cost) == BEFORE:
        return "shipped before (bilinear decoding)"
    return "network alone" if reach is None else f"reach {reach:g}, edge cost {edge_cost:g}"


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from colorizer.atomic import write_text
    from colorizer.color import lab_to_rgb, rgb_to_lab
    from colorizer.decode import colour_ab
    from colorizer.evaluate import parse_hint_counts, psnr
    from colorizer.hints import hint_nearness, local_hint_logits, simulate_hints
    from colorizer.images import open_image, to_pil, to_rgb_tensor
    from colorizer.infer import Colorizer

    settings = parse_settings(args.reach, args.edge_cost)
    psnr_counts = parse_hint_counts(args.psnr_hints) if args.psnr_hints else ()
    colorizer = Colorizer.load(args.model, optimize=True, hint_reach=None)  # the network's own predictions, mixed here
    colorizer.require_hints()
    paths = photo_paths(args)
    spot_generator = torch.Generator().manual_seed(args.seed)
    hint_generator = torch.Generator().manual_seed(args.seed)  # as `colorizer eval --hints` draws them
    figures = {setting: {"changed": [], "own": [], **{f"psnr_{n}": [] for n in psnr_counts}} for setting in settings}
    automatic_psnr, plain_psnr = [], []  # with today's decoding, and with the bilinear one shipped before

    def mixed_ab(lightness, working, hint_map, hinted, automatic, setting):
        reach, edge_cost = setting
        if setting == BEFORE:
            return colour_ab(lightness, hinted, vote=False)
        if reach is None:
            return colour_ab(lightness, hinted, hints=hint_map)
        nearness = hint_nearness(working, hint_map, tuple(hinted.shape[-2:]), reach, edge_cost)
        return colour_ab(lightness, local_hint_logits(hinted, automatic, nearness), hints=hint_map)

    for path in tqdm(paths, desc="photos"):
        truth = to_rgb_tensor(open_image(path))
        lab = rgb_to_lab(truth)
        lightness = lab[:, :1]
        working = colorizer.to_working_size(lightness)
        automatic = colorizer.logits(lightness)
        automatic_ab = colour_ab(lightness, automatic)
        plain_ab = colour_ab(lightness, automatic, vote=False)
        automatic_psnr.append(float(psnr(lab_to_rgb(torch.cat([lightness, automatic_ab], 1)), truth)))
        plain_psnr.append(float(psnr(lab_to_rgb(torch.cat([lightness, plain_ab], 1)), truth)))
        x, y = hint_spot(lightness, spot_generator)
        hint = {"x": x, "y": y, "rgb": unexpected_rgb(float(lightness[0, 0, y, x]), automatic_ab[0, :, y, x])}
        photo = to_pil(truth)
        hint_map = colorizer.hint_map(photo, [hint])
        hinted = colorizer.logits(lightness, hint_map)
        rows, cols = torch.meshgrid(torch.arange(lightness.shape[-2]), torch.arange(lightness.shape[-1]), indexing="ij")
        own = (rows - y) ** 2 + (cols - x) ** 2 <= OWN_RADIUS**2
        simulated = []
        for count in psnr_counts:
            true_map = simulate_hints(colorizer.to_working_size(lab[:, 1:]), [count], hint_generator)
            simulated.append((count, true_map, colorizer.logits(lightness, true_map)))
        for setting, figure in figures.items():
            reference = plain_ab if setting == BEFORE else automatic_ab
            moved = (mixed_ab(lightness, working, hint_map, hinted, automatic, setting) - reference).norm(dim=1)[0]
            figure["changed"].append(float((moved > THRESHOLD).float().mean()))
            figure["own"].append(float((moved[own] > THRESHOLD).float().mean()))
            for count, true_map, true_hinted in simulated:
                ab = mixed_ab(lightness, working, true_map, true_hinted, automatic, setting)
                figure[f"psnr_{count}"].append(float(psnr(lab_to_rgb(torch.cat([lightness, ab], 1)), truth)))

    baseline = statistics.fmean(automatic_psnr)
    summary = {}
    print(f"{len(paths)} photos of {args.data}{f' held out by --holdout {args.holdout:g}' if args.holdout else ''}; "
          f"automatic PSNR {baseline:.2f} dB ({statistics.fmean(plain_psnr):.2f} dB decoded as before)")
    header = f"{'setting':34}{'changed median':>16}{'p90':>7}{'own median':>12}{'own>=80%':>10}"
    print(header + "".join(f"{f'{n} hints':>12}" for n in psnr_counts))
    for setting, figure in figures.items():
        changed = sorted(figure["changed"])
        row = {
            "changed_median": 100 * statistics.median(changed),
            "changed_p90": 100 * statistics.quantiles(changed, n=10, method="inclusive")[-1],
            "own_median": 100 * statistics.median(figure["own"]),
            "own_at_least_80": 100 * sum(o >= 0.8 for o in figure["own"]) / len(figure["own"]),
            **{f"psnr_gain_{n}": statistics.fmean(figure[f"psnr_{n}"])
               - (statistics.fmean(plain_psnr) if setting == BEFORE else baseline) for n in psnr_counts},
        }
        summary[setting_name(*setting)] = {key: round(value, 2) for key, value in row.items()}
        print(f"{setting_name(*setting):34}{row['changed_median']:15.1f}%{row['changed_p90']:6.1f}%"
              f"{row['own_median']:11.1f}%{row['own_at_least_80']:9.1f}%"
              + "".join(f"{row[f'psnr_gain_{n}']:+10.2f}dB" for n in psnr_counts))
    if args.json:
        write_text(args.json, json.dumps({"data": str(args.data), "holdout": args.holdout, "photos": len(paths),
                                          "automatic_psnr": round(baseline, 2), "settings": summary}, indent=2))
    return 0
