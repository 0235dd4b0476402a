"""Colour hints (Zhang, Zhu, Isola et al. 2017): the ab of a few pixels and a mask of where they are.

A hint map is (N, 3, H, W) at the network's input resolution: a / 110, b / 110 where a hint is and 0
elsewhere, then the mask (1 where a hint is). All zeros means "no hints", which a hint-capable network
turns into exactly the automatic colorization (its hint layers have no bias). Training simulates hints
from the true colours as the paper does: a geometric number of points (p = 1/8), each revealing the
mean colour of a random square patch of 1 to 9 pixels.

`geodesic_hints` tells every cell of a coarse grid which hint is nearest along the image and how far
away it is, where crossing a change of lightness counts as distance: a hint then reaches the whole
region it was placed on in one step, and a network that gets this map only has to learn where to
trust it, which the few hints of a user cannot teach it by example.

`local_hint_logits` keeps a user's hints on their objects at inference: the network, trained mostly
on true-colour hints that agree with the whole photo, lets one hint of an unexpected colour tint the
whole photo. Each cell takes the hinted prediction in proportion to its geodesic nearness to a hint
and the automatic one otherwise, so a hint turns its region and fades at the region's edges.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from colorizer.defaults import HINTED_SHARE
from colorizer.errors import UserError

HINT_CHANNELS = 3
AB_SCALE = 110.0  # ab values lie within about +-110 in sRGB's gamut
GEOMETRIC_P = 1 / 8
MAX_PATCH = 9
MAX_SIMULATED_HINTS = 100
# Geodesic distance, in grid cells: a step costs its length plus EDGE_COST per unit of L it crosses,
# so an edge of 30 L units is as far as 9 cells of flat ground.
EDGE_COST = 0.3
NO_HINT_DISTANCE = 1e4
# Locality at inference (`local_hint_logits`), in cells of the network's output grid: the hinted
# prediction fades as exp(-d / LOCAL_REACH) with the geodesic distance d, whose steps cost
# LOCAL_EDGE_COST per unit of L crossed. Chosen on held-out broad/train photos (docs/models.md).
LOCAL_REACH = 20.0
LOCAL_EDGE_COST = 0.3
_NEIGHBOURS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]


def empty_hints(n: int, height: int, width: int, device: torch.device | str = "cpu") -> torch.Tensor:
    return torch.zeros(n, HINT_CHANNELS, height, width, device=device)


def sample_hint_counts(n: int, generator: torch.Generator | None = None, p: float = GEOMETRIC_P,
                       no_hint_share: float = 1 - HINTED_SHARE) -> torch.Tensor:
    """How many hints each of n training photos gets: 0 for about `no_hint_share` of them, else
    1 + Geometric(p) (mean 1 / p), capped at MAX_SIMULATED_HINTS."""
    uniform = torch.rand(n, 2, generator=generator)
    counts = 1 + torch.floor(torch.log(uniform[:, 1].clamp_min(1e-12)) / torch.log(torch.tensor(1 - p)))
    counts = counts.clamp(max=MAX_SIMULATED_HINTS).long()
    return torch.where(uniform[:, 0] < no_hint_share, torch.zeros_like(counts), counts)


def simulate_hints(ab: torch.Tensor, counts: Sequence[int] | torch.Tensor, generator: torch.Generator | None = None,
                   max_patch: int = MAX_PATCH) -> torch.Tensor:
    """Hint maps for true colours ab (N, 2, H, W): photo i gets counts[i] hints, each a random square
    patch of side 1..max_patch painted with the patch's mean true ab. Positions come from `generator`
    (CPU), so a fixed seed gives the same hints on every device."""
    n, _, height, width = ab.shape
    hints = empty_hints(n, height, width, ab.device)
    for i, count in enumerate(torch.as_tensor(counts).tolist()):
        if not count:
            continue
        sizes = torch.randint(1, max_patch + 1, (count,), generator=generator)
        corners = torch.rand(count, 2, generator=generator)
        for size, (fy, fx) in zip(sizes.tolist(), corners.tolist(), strict=True):
            size = min(size, height, width)
            y, x = int(fy * (height - size + 1)), int(fx * (width - size + 1))
            patch = (slice(y, y + size), slice(x, x + size))
            hints[i, :2, patch[0], patch[1]] = ab[i, :, patch[0], patch[1]].mean((1, 2), keepdim=True) / AB_SCALE
            hints[i, 2, patch[0], patch[1]] = 1.0
    return hints


def rotate_hue(ab: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """ab (N, 2, H, W) with each photo's colours turned by its angle (N,) in radians around the gray
    axis: chroma and lightness stay, hue moves (training photos whose hints carry unguessable colours)."""
    cos, sin = torch.cos(angles)[:, None, None], torch.sin(angles)[:, None, None]
    a, b = ab[:, 0], ab[:, 1]
    return torch.stack([cos * a - sin * b, sin * a + cos * b], dim=1)


def pool_hints(hints: torch.Tensor, stride: int) -> torch.Tensor:
    """Hint maps at 1/stride resolution: each cell holds the mean ab of the hinted pixels in it and a
    mask of 1 wherever any pixel was hinted (an average would fade a one-pixel hint to 1/stride^2)."""
    if stride == 1:
        return hints
    covered = F.avg_pool2d(hints[:, 2:], stride)
    ab = F.avg_pool2d(hints[:, :2], stride) / covered.clamp_min(1e-6)
    return torch.cat([ab, (covered > 0).to(hints.dtype)], dim=1)


def geodesic_hints(lightness: torch.Tensor, hints: torch.Tensor, edge_cost: float = EDGE_COST,
                   iterations: int | None = None) -> torch.Tensor:
    """(N, 3, h, w): for each cell, the colour (a, b as in hint maps) of the hint nearest to it along
    the image and the geodesic distance to that hint in cells, from L (N, 1, h, w) in [0, 100] and a
    hint map (N, 3, h, w) of the same grid. Cells of a photo without hints get colour 0 and distance
    NO_HINT_DISTANCE.

    Distances relax over the 8-neighbourhood for `iterations` rounds (default: the grid's longer
    side, enough for every straight path). The loop has no data-dependent branch, so a traced graph
    computes the same."""
    n, _, height, width = hints.shape
    lightness, hints = lightness.float(), hints.float()
    hinted = hints[:, 2:] > 0
    distance = torch.where(hinted, 0.0, NO_HINT_DISTANCE)
    colour = hints[:, :2] * hinted
    padded_l = F.pad(lightness, (1, 1, 1, 1), mode="replicate")
    shifted = [(slice(None), slice(None), slice(1 + dy, 1 + dy + height), slice(1 + dx, 1 + dx + width))
               for dy, dx in _NEIGHBOURS]
    step_cost = torch.cat([torch.zeros_like(lightness)] + [
        math.hypot(dy, dx) + edge_cost * (lightness - padded_l[where]).abs()
        for (dy, dx), where in zip(_NEIGHBOURS, shifted, strict=True)], dim=1)  # (N, 9, h, w), staying put first
    for _ in range(iterations or max(height, width)):
        padded_d = F.pad(distance, (1, 1, 1, 1), value=NO_HINT_DISTANCE)
        padded_c = F.pad(colour, (1, 1, 1, 1))
        candidates = torch.cat([distance] + [padded_d[where] for where in shifted], dim=1) + step_cost
        colours = torch.stack([colour] + [padded_c[where] for where in shifted], dim=1)  # (N, 9, 2, h, w)
        distance, best = candidates.min(dim=1, keepdim=True)
        distance = distance.clamp(max=NO_HINT_DISTANCE)
        colour = colours.gather(1, best[:, :, None].expand(-1, -1, 2, -1, -1)).squeeze(1)
    return torch.cat([colour, distance], dim=1)


def nearest_hint(lightness: torch.Tensor, hints: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The nearest hint's colour (N, 2, h, w) and its geodesic distance in cells (N, 1, h, w) on the grid
    of pooled `hints` (N, 3, h, w), from the network's input L in [-1, 1] (N, 1, H, W)."""
    stride = lightness.shape[-1] // hints.shape[-1]
    with torch.no_grad():
        cells_l = (F.avg_pool2d(lightness.float(), stride) + 1) * 50
        nearest = geodesic_hints(cells_l, hints)
    return nearest[:, :2], nearest[:, 2:]


def hint_nearness(lightness: torch.Tensor, hints: torch.Tensor, grid: tuple[int, int], reach: float = LOCAL_REACH,
                  edge_cost: float = LOCAL_EDGE_COST) -> torch.Tensor:
    """(N, 1, h, w): exp(-d / reach) of each cell's geodesic distance d (in cells) to its nearest hint on
    the `grid` (h, w), which divides the (H, W) of L (N, 1, H, W) in [0, 100] and of the hint map
    (N, 3, H, W); exactly 0 in a photo without hints. Distances are relaxed only as far as they
    matter (every step costs at least 1 and exp(-6) is nothing), so the cost grows with the reach,
    not with the photo."""
    stride = hints.shape[-1] // grid[-1]
    cells_l = F.avg_pool2d(lightness.float(), stride) if stride > 1 else lightness.float()
    distance = geodesic_hints(cells_l, pool_hints(hints.float(), stride), edge_cost,
                              iterations=min(max(grid), math.ceil(6 * reach)))[:, 2:]
    return torch.exp(-distance / reach)


def local_hint_logits(hinted: torch.Tensor, automatic: torch.Tensor, nearness: torch.Tensor) -> torch.Tensor:
    """Log-probabilities (N, Q, h, w) that follow the `hinted` logits where `nearness` (N, 1, h, w) is 1
    and the `automatic` ones where it is 0, mixing the two distributions geometrically between."""
    weight = nearness.to(hinted.dtype)
    return weight * F.log_softmax(hinted, dim=1) + (1 - weight) * F.log_softmax(automatic, dim=1)


def user_hint_map(hints: Sequence[dict[str, Any]], photo_size: tuple[int, int], map_size: tuple[int, int],
                  ab_of_rgb) -> torch.Tensor:
    """A (1, 3, h, w) hint map from a user's hints on a photo of `photo_size` (width, height).

    Each hint is {"x": .., "y": .., "rgb": [r, g, b]} in the photo's pixels and 0-255 colour, with an
    optional "radius" (photo pixels; default: a 3x3 patch of the map). `ab_of_rgb` converts an (N, 3)
    RGB tensor in [0, 1] to ab (N, 2). Bad hints raise a one-line UserError that names the hint.
    """
    width, height = photo_size
    map_h, map_w = map_size
    checked = [_checked_hint(i, hint, width, height) for i, hint in enumerate(hints)]
    hint_map = empty_hints(1, map_h, map_w)
    if not checked:
        return hint_map
    ab = ab_of_rgb(torch.tensor([rgb for _, _, rgb, _ in checked], dtype=torch.float32) / 255.0)
    for (x, y, _, radius), colour in zip(checked, ab, strict=True):
        cx, cy = int(x * map_w / width), int(y * map_h / height)
        r = 1 if radius is None else round(radius * map_w / width)
        rows, cols = slice(max(0, cy - r), cy + r + 1), slice(max(0, cx - r), cx + r + 1)
        hint_map[0, :2, rows, cols] = (colour / AB_SCALE)[:, None, None]
        hint_map[0, 2, rows, cols] = 1.0
    return hint_map


def _checked_hint(index: int, hint: Any, width: int, height: int) -> tuple[float, float, list[int], float | None]:
    where = f"hint {index + 1}"
    if not isinstance(hint, dict):
        raise UserError(f"{where}: expected an object with x, y and rgb, got {hint!r}")
    missing = [key for key in ("x", "y", "rgb") if key not in hint]
    if missing:
        raise UserError(f"{where}: missing {', '.join(missing)}")
    x, y, rgb, radius = hint["x"], hint["y"], hint["rgb"], hint.get("radius")
    for name, value, limit in (("x", x, width), ("y", y, height)):
        if not _is_number(value) or not 0 <= value < limit:
            raise UserError(f"{where}: {name} = {value!r} lies outside the photo (0 to {limit - 1})")
    if (not isinstance(rgb, (list, tuple)) or len(rgb) != 3
            or not all(_is_number(c) and 0 <= c <= 255 for c in rgb)):
        raise UserError(f"{where}: rgb must be three numbers from 0 to 255, got {rgb!r}")
    if radius is not None and (not _is_number(radius) or not 0 <= radius <= max(width, height)):
        raise UserError(f"{where}: radius must be a number of pixels from 0 to {max(width, height)}, got {radius!r}")
    return float(x), float(y), [float(c) for c in rgb], None if radius is None else float(radius)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
