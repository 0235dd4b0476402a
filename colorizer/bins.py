"""The quantized ab plane: 313 in-gamut bins on a 10-grid and the nearest-bin lookup (soft encoding: loss.py)."""

from __future__ import annotations

import functools

import numpy as np
import torch

from colorizer.color import rgb_to_lab

GRID = 10.0
AB_RANGE = 110.0  # grid points span [-110, 110] on both axes
_LOOKUP_STEP = 1.0  # resolution of the candidate table used by nearest-bin searches
NUM_BINS = 313


def _srgb_gamut_ab() -> np.ndarray:
    """ab of every 8-bit sRGB colour on the surface of the RGB cube.

    The projection of the gamut solid onto the ab plane equals the projection of its surface, so the
    six cube faces (393k colours) give the same convex hull as all 16.7M colours.
    """
    levels = torch.arange(256, dtype=torch.float64) / 255.0
    u, v = torch.meshgrid(levels, levels, indexing="ij")
    faces = []
    for axis in range(3):
        for value in (0.0, 1.0):
            channels = [u, v]
            channels.insert(axis, torch.full_like(u, value))
            faces.append(torch.stack(channels))
    rgb = torch.stack(faces).float()  # (6, 3, 256, 256)
    ab = rgb_to_lab(rgb)[:, 1:].permute(0, 2, 3, 1).reshape(-1, 2)
    return ab.double().numpy()


def _separated(poly_a: np.ndarray, poly_b: np.ndarray) -> bool:
    """Separating-axis test for two convex polygons given as (K, 2) vertex arrays in order."""
    for poly in (poly_a, poly_b):
        edges = np.roll(poly, -1, axis=0) - poly
        normals = np.stack([-edges[:, 1], edges[:, 0]], axis=1)
        proj_a = poly_a @ normals.T
        proj_b = poly_b @ normals.T
        if np.any((proj_a.max(0) < proj_b.min(0)) | (proj_b.max(0) < proj_a.min(0))):
            return True
    return False


@functools.cache
def _ab_bins_np() -> np.ndarray:
    from scipy.spatial import ConvexHull

    points = _srgb_gamut_ab()
    hull = points[ConvexHull(points).vertices]
    axis = np.arange(-AB_RANGE, AB_RANGE + GRID, GRID)
    square = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64) * GRID
    # A grid point is a bin when its 20x20 neighbourhood touches the gamut hull: this reproduces the
    # official 313 centres exactly, while "centre inside the gamut" rules lose saturated bins.
    kept = [(a, b) for a in axis for b in axis if not _separated(square + (a, b), hull)]
    return np.array(kept, dtype=np.float32)


def ab_bins() -> torch.Tensor:
    """The (313, 2) float32 ab bin centres, computed from the sRGB gamut, sorted by (a, b)."""
    return torch.from_numpy(_ab_bins_np().copy())


@functools.cache
def _candidate_table(k: int) -> tuple[torch.Tensor, int]:
    """For each cell of a fine grid over the ab square, the bins that can be among a point's k nearest.

    A point lies within half a cell diagonal (r) of its cell centre c, so its k-th nearest distance is at
    most d_k(c) + r and no bin farther than d_k(c) + 2r from c can be among its k nearest. Searching
    those few candidates instead of all 313 bins makes soft encoding a gather plus a tiny top-k.
    """
    bins = ab_bins().double()
    steps = int(2 * AB_RANGE / _LOOKUP_STEP)
    centres_1d = -AB_RANGE + _LOOKUP_STEP * (torch.arange(steps, dtype=torch.float64) + 0.5)
    centres = torch.cartesian_prod(centres_1d, centres_1d)
    margin = 2 * (_LOOKUP_STEP * 2**0.5 / 2) + 1e-6
    orders, widths = [], []
    for chunk in centres.split(32768):
        dist, order = torch.cdist(chunk, bins).sort(dim=1)
        orders.append(order[:, :32])
        widths.append(int((dist <= dist[:, k - 1 : k] + margin).sum(1).max()))
    return torch.cat(orders)[:, : max(widths)].contiguous(), steps


@functools.cache
def _on_device(k: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    table, steps = _candidate_table(k)
    bins = ab_bins()
    # the candidates' coordinates, laid out per cell, so a lookup is one gather instead of two
    return bins.to(device), table.to(device), bins[table].permute(2, 0, 1).contiguous().to(device), steps


def nearest_bins(ab: torch.Tensor, k: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (N, k, H, W) and squared distances of the k nearest bins to each ab pixel of (N, 2, H, W).

    Exact, nearest first. Pixels beyond the grid square (never real sRGB colours) fall back to a full search.
    """
    bins, table, table_ab, steps = _on_device(k, ab.device)
    n, _, h, w = ab.shape
    a, b = ab[:, 0].reshape(-1, 1).float(), ab[:, 1].reshape(-1, 1).float()
    a_in, b_in = a.clamp(-AB_RANGE, AB_RANGE - 1e-3), b.clamp(-AB_RANGE, AB_RANGE - 1e-3)
    cell = (((a_in + AB_RANGE) / _LOOKUP_STEP).long() * steps + ((b_in + AB_RANGE) / _LOOKUP_STEP).long())[:, 0]
    d2 = table_ab[0].index_select(0, cell).sub_(a).square_()
    d2 += table_ab[1].index_select(0, cell).sub_(b).square_()
    d2_k, pick = d2.topk(k, dim=1, largest=False, sorted=True)
    idx_k = table.view(-1)[cell[:, None] * table.shape[1] + pick]
    outside = ((a != a_in) | (b != b_in))[:, 0].nonzero().squeeze(1)
    if outside.numel():
        pixels = torch.cat([a, b], 1)[outside]
        d2_all = ((bins[None] - pixels[:, None, :]) ** 2).sum(-1)
        d2_k[outside], idx_k[outside] = d2_all.topk(k, dim=1, largest=False, sorted=True)

    def to_image(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(n, h, w, k).permute(0, 3, 1, 2)

    return to_image(idx_k), to_image(d2_k)


HUE_FREE_CHROMA = 12.0  # ab units: the five central bins, too near gray to have a hue worth naming
MODE_HUE_WIDTH = 10.0  # degrees: the hue smoothing that decides how far apart two modes lie


def colour_modes(probabilities: torch.Tensor, hue_width: float = MODE_HUE_WIDTH,
                 hue_free_chroma: float = HUE_FREE_CHROMA) -> tuple[torch.Tensor, torch.Tensor]:
    """The modes of one predicted distribution over the bins (313,): (ab (M, 2), probability (M,)),
    likeliest first.

    A single bin is a poor answer to "which colour is likely here": a model spreads skin over a dozen
    orange bins at a few percent each while gray sits in one bin, so the likeliest *bin* is often gray
    though the likeliest *hue* is not. Here the hue-free bins (chroma under `hue_free_chroma`) make one
    mode; the others are grouped by hue, each into the peak of the hue density (smoothed with a
    Gaussian of `hue_width` degrees) that climbing from its hue reaches. A mode's probability is its
    bins' total and its colour their probability-weighted mean ab.
    """
    probabilities = probabilities.detach().float().cpu()
    bins = ab_bins()
    chroma = bins.norm(dim=1)
    hue = torch.rad2deg(torch.atan2(bins[:, 1], bins[:, 0])) % 360
    chromatic = chroma >= hue_free_chroma
    grid = torch.arange(360.0)
    offset = (grid[:, None] - hue[None, chromatic] + 180) % 360 - 180  # circular distance, degrees
    density = (torch.exp(-0.5 * (offset / hue_width) ** 2) * probabilities[chromatic]).sum(1)
    # each degree points at its higher neighbour (itself at a peak); pointer doubling then leads every
    # degree to the peak its climb ends on (2 ** 9 steps > 360)
    left, right = density.roll(1), density.roll(-1)
    uphill = torch.where(right > torch.maximum(density, left), (grid + 1) % 360,
                         torch.where(left > density, (grid - 1) % 360, grid)).long()
    for _ in range(9):
        uphill = uphill[uphill]
    peak = torch.full((len(bins),), -1, dtype=torch.long)  # -1: the hue-free mode
    peak[chromatic] = uphill[hue[chromatic].round().long() % 360]
    labels, mode_of_bin = torch.unique(peak, return_inverse=True)
    mass = torch.zeros(len(labels)).index_add_(0, mode_of_bin, probabilities)
    weighted = torch.zeros(len(labels), 2).index_add_(0, mode_of_bin, probabilities[:, None] * bins)
    order = mass.argsort(descending=True)
    order = order[mass[order] > 0]
    return weighted[order] / mass[order, None], mass[order]
