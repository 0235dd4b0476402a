"""`colorizer analyze hints`: a before/after figure of colour hints (docs/figures/hints.png).

Each row is one photo: the gray input, the automatic colorization, the colorization given the hints
(each hint drawn as a ringed dot where it was placed), and the ground truth. A hint that works turns
the whole object it was placed on, not just a blob around the dot.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from colorizer.errors import UserError


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("hints", help="a before/after figure of colour hints (docs/figures/hints.png)")
    parser.add_argument("--model", default="generic", help="a hint-capable model (default generic)")
    parser.add_argument("--cases", type=Path, required=True,
                        help='JSON list of {"photo": PATH under --data, "hints": [{"x", "y", "rgb"}, ...]}')
    parser.add_argument("--data", type=Path, default=Path("."), help="folder the photo paths are relative to")
    parser.add_argument("--size", type=int, default=160, help="height of a row in pixels")
    parser.add_argument("--out", type=Path, required=True, help="PNG file to write")
    parser.set_defaults(func=run)


def read_cases(path: Path) -> list[dict]:
    try:
        cases = json.loads(path.read_text())
    except OSError as exc:
        raise UserError(f"{path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(cases, list) or not all(isinstance(c, dict) and {"photo", "hints"} <= c.keys() for c in cases):
        raise UserError(f'{path}: expected a list of {{"photo": ..., "hints": [...]}}')
    return cases


def run(args: argparse.Namespace) -> int:
    from PIL import Image, ImageDraw, ImageOps

    from colorizer.atomic import atomic_path
    from colorizer.images import open_image
    from colorizer.infer import Colorizer, gray_image

    cases = read_cases(args.cases)
    colorizer = Colorizer.load(args.model)
    columns = ["gray", "automatic", "with hints", "ground truth"]
    header, cell = 24, args.size
    rows = []
    for case in cases:
        truth = open_image(args.data / case["photo"]).convert("RGB")
        hinted = colorizer.colorize(truth, hints=case["hints"])
        scale = cell / truth.height
        marked = hinted.copy()
        draw = ImageDraw.Draw(marked)
        radius = max(3, round(4 / scale))
        for hint in case["hints"]:
            x, y = hint["x"], hint["y"]
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=tuple(int(c) for c in hint["rgb"]),
                         outline="white", width=max(1, radius // 3))
        images = [gray_image(Colorizer.lightness(truth)), colorizer.colorize(truth), marked, truth]
        rows.append([ImageOps.contain(image, (round(truth.width * scale), cell)) for image in images])
    width = max(image.width for row in rows for image in row)
    sheet = Image.new("RGB", (width * len(columns), header + cell * len(rows)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, title in enumerate(columns):
        draw.text((i * width + 8, 6), title, fill="black")
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            sheet.paste(image, (c * width + (width - image.width) // 2, header + r * cell))
    with atomic_path(args.out) as tmp:
        sheet.save(tmp, format="PNG", optimize=True)
    print(f"{len(rows)} photos -> {args.out}")
    return 0
