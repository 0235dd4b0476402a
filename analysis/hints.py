"""`colorizer analyze hints`: a before/after figure of colour hints and decoding (docs/figures/hints.png).

Each row is one photo: the input (a colour photo as the gray the model sees), its automatic
colorization decoded as shipped before the blotch vote (colorizer/decode.py) and as now, the
colorization given the hints by the network alone (its own spread, as shipped before
`colorizer.hints.local_hint_logits`) and kept local (now), each hint drawn as a ringed dot where it
was placed, and the original. A case may give `"tone": "sepia"`, `"cyanotype"` or `"yellowed"`,
which turns the photo into an old-looking print first (its lightness faded, grain added, one tint),
and `"photo": "skimage:NAME"` takes one of scikit-image's sample photos (`camera` is a real
black-and-white photo, which has no colour original).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from colorizer.errors import UserError

TINTS = {"sepia": (1.0, 0.82, 0.6), "cyanotype": (0.55, 0.75, 1.0), "yellowed": (1.0, 0.96, 0.75)}
COLUMNS = ["input", "automatic, decoded as before", "automatic (blotch vote)", "hint, network alone",
           "hint, kept local", "original"]


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("hints", help="a before/after figure of colour hints (docs/figures/hints.png)")
    parser.add_argument("--model", default="generic", help="a hint-capable model (default generic)")
    parser.add_argument("--cases", type=Path, required=True,
                        help='JSON list of {"photo": PATH under --data or skimage:NAME, "hints": [{"x", "y", "rgb"}, ...], '
                             'optional "tone": sepia|cyanotype|yellowed}')
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
    for case in cases:
        if case.get("tone") not in (None, *TINTS):
            raise UserError(f"{path}: tone {case['tone']!r} is none of {', '.join(TINTS)}")
    return cases


def old_print(image, tone: str, seed: int = 0):
    """A photo as an old toned print: its gray faded to 10-90 % of the range, film grain, one tint."""
    import numpy as np
    from PIL import Image

    gray = np.asarray(image.convert("L"), dtype=np.float32) / 255
    grain = np.random.default_rng(seed).normal(0, 0.03, gray.shape)
    gray = np.clip(0.1 + 0.8 * gray + grain, 0, 1)[..., None]
    tint = np.array(TINTS[tone])
    rgb = gray * tint + (1 - tint) * gray**2  # the tint at mid-tones, fading to paper white and black
    return Image.fromarray((rgb * 255).round().astype(np.uint8), "RGB")


def case_photo(case: dict, data: Path):
    """The case's (input, original or None)."""
    from colorizer.images import open_image

    if case["photo"].startswith("skimage:"):
        import skimage.data
        from PIL import Image

        name = case["photo"].removeprefix("skimage:")
        loader = getattr(skimage.data, name, None)
        if loader is None:
            raise UserError(f"scikit-image has no sample photo {name!r}")
        original = Image.fromarray(loader()).convert("RGB")
        return (old_print(original, case["tone"]) if case.get("tone") else original), None
    original = open_image(data / case["photo"]).convert("RGB")
    return (old_print(original, case["tone"]) if case.get("tone") else original), original


def run(args: argparse.Namespace) -> int:
    from PIL import Image, ImageDraw, ImageOps

    from colorizer.atomic import atomic_path
    from colorizer.infer import Colorizer, gray_image

    cases = read_cases(args.cases)
    colorizer = Colorizer.load(args.model)
    colorizer.require_hints()
    local_reach = colorizer.hint_reach
    header, cell = 24, args.size
    rows = []
    for case in cases:
        shown, original = case_photo(case, args.data)
        lightness = Colorizer.lightness(shown)
        hint_map = colorizer.hint_map(shown, case["hints"])

        automatic = colorizer.logits(lightness)
        colorizer.hint_reach = None
        alone = colorizer.logits(lightness, hint_map)
        colorizer.hint_reach = local_reach
        local = colorizer.logits(lightness, hint_map)
        images = [shown if case.get("tone") or original is None else gray_image(lightness),
                  render(lightness, automatic, vote=False), render(lightness, automatic),
                  mark(render(lightness, alone, hints=hint_map), case["hints"]),
                  mark(render(lightness, local, hints=hint_map), case["hints"]), original]
        scale = cell / shown.height
        rows.append([None if image is None else ImageOps.contain(image, (round(shown.width * scale), cell))
                     for image in images])
    width = max(image.width for row in rows for image in row if image is not None)
    sheet = Image.new("RGB", (width * len(COLUMNS), header + cell * len(rows)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, title in enumerate(COLUMNS):
        draw.text((i * width + 4, 6), title, fill="black")
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            if image is None:
                draw.text((c * width + 8, header + r * cell + cell // 2), "(black and white original)", fill="black")
            else:
                sheet.paste(image, (c * width + (width - image.width) // 2, header + r * cell))
    with atomic_path(args.out) as tmp:
        sheet.save(tmp, format="PNG", optimize=True)
    print(f"{len(rows)} photos -> {args.out}")
    return 0


def render(lightness, logits, vote: bool = True, hints=None):
    """The photo's L with the colour decoded from `logits`, as an RGB image."""
    import torch

    from colorizer.color import lab_to_rgb
    from colorizer.decode import colour_ab
    from colorizer.images import to_pil

    return to_pil(lab_to_rgb(torch.cat([lightness, colour_ab(lightness, logits, vote=vote, hints=hints)], 1)))


def mark(image, hints):
    """The image with each hint drawn as a dot of its colour ringed in white."""
    from PIL import ImageDraw

    marked = image.copy()
    draw = ImageDraw.Draw(marked)
    radius = max(3, round(image.height / 40))
    for hint in hints:
        x, y = hint["x"], hint["y"]
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=tuple(int(c) for c in hint["rgb"]),
                     outline="white", width=max(1, radius // 3))
    return marked
