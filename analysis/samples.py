"""`colorizer analyze samples`: a grid of val photos, one per row: gray, each model, ground truth."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("samples", help="a figure of sample colorizations (docs/samples.png)")
    parser.add_argument("--models", nargs="+", default=["generic", "dogs"], help="models, one column each")
    parser.add_argument("--data", nargs="+", required=True, type=Path,
                        help="photo folders to draw rows from at random, or photo files to show as they are")
    parser.add_argument("--rows", type=int, default=12,
                        help="photos in all: the files given, then the rest spread evenly over the folders")
    parser.add_argument("--size", type=int, default=192, help="height of a row in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True, help="PNG file to write")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import random

    from PIL import Image, ImageDraw, ImageOps

    from colorizer.atomic import atomic_path
    from colorizer.data import scan_folder
    from colorizer.images import open_image
    from colorizer.infer import Colorizer, gray_image

    colorizers = [Colorizer.load(name) for name in args.models]
    chosen = [path for path in args.data if path.is_file()]
    folders = [path for path in args.data if not path.is_file()]
    photos = []
    if folders:
        per_folder = -(-max(0, args.rows - len(chosen)) // len(folders))
        for folder in folders:
            colour = scan_folder(folder, progress=False).colour
            photos += random.Random(args.seed).sample(colour, min(per_folder, len(colour)))
    photos = (photos[: max(0, args.rows - len(chosen))] + chosen)[: args.rows]
    columns = ["gray", *args.models, "ground truth"]
    header, cell = 24, args.size
    width = cell * 4 // 3
    sheet = Image.new("RGB", (width * len(columns), header + cell * len(photos)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, title in enumerate(columns):
        draw.text((i * width + 8, 6), title, fill="black")
    for row, path in enumerate(photos):
        truth = open_image(path).convert("RGB")
        images = [gray_image(Colorizer.lightness(truth)), *(c.colorize(truth) for c in colorizers), truth]
        for col, image in enumerate(images):
            sheet.paste(ImageOps.fit(image, (width, cell), Image.Resampling.LANCZOS), (col * width, header + row * cell))
    with atomic_path(args.out) as tmp:
        sheet.save(tmp, format="PNG", optimize=True)
    print(f"{len(photos)} photos x {len(columns)} columns -> {args.out}")
    return 0
