"""Colour from a reference photo or a palette, and alternative colorizations, on the network's bin logits.

Both work after the network, on its predicted distributions over the 313 bins, so every model (and
every backend) gets them without retraining, and a clip can reuse one reference for all its frames:
`guided_logits` takes precomputed logits.

**Reference / palette.** The network's distribution at a pixel is p(q | x), learnt under the training
set's colour prior P(q). A reference (or palette) says which colours this photo has: an ab histogram
H(q). Swapping the prior (Bayes with a changed label distribution) gives

    p'(q | x) ∝ p(q | x) * ((H(q) + eps) / (P(q) + eps)) ^ beta,      beta = strength * GAIN

decoded by the annealed mean as usual. For a reference photo, H is local: each cell of the photo is
matched to the reference's cells whose predicted distributions look alike (the model's own view of
"the same kind of thing"), and takes the histogram of the true colours there; a palette's H is its
colours, spread, everywhere. Hint points win locally: the strength fades to 0 near a hint along the
image (the geodesic nearness of colorizer.hints).

**Alternatives.** The photo's cells are grouped into a few colour segments (k-means on the predicted
distributions and position); each segment's summed distribution has a few colour modes (peaks of the
bins, each owning the bins nearest to it). An alternative picks one mode per segment and restricts
each cell's distribution to its segment's mode (softly, by its membership), so an object keeps one
colour. Alternatives come in order of the model's own likelihood of the choice (the cells' mass in the
chosen modes), skipping choices that change the photo's colours by less than `min_change` ab units on
average from one already taken, so each differs visibly.
"""

from __future__ import annotations

import functools
import heapq
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from colorizer.bins import NUM_BINS, ab_bins, nearest_bins
from colorizer.errors import UserError

HISTOGRAM_SIGMA = 5.0  # ab units: the training prior's smoothing, so H / P compares like with like
PALETTE_SIGMA = 10.0  # a palette colour stands for the shades around it
FLOOR = 0.03 / NUM_BINS  # eps: a colour the reference lacks is made rarer by at most (P + eps) / eps
GAIN = 2.5  # beta at strength 1 (these three chosen on held-out photos: docs/models.md)
MATCH_TEMPERATURE = 0.02  # on cosine similarity of the cells' distributions (Hellinger features)
REFERENCE_INPUT = 96  # px: the network sees a reference this small (None: at the model's input size), for speed
MATCH_CELLS = 24  # photo and reference are matched on grids of at most this many cells a side
HINT_REACH = 8.0  # cells: how far along the image a hint point overrules the reference
MIN_CHROMA_SHARE = 0.005  # a reference with fewer pixels of chroma > 5 carries no colour
MIN_MODE_MASS = 0.05  # a segment's mode below this share of its mass is no plausible choice


@dataclass(frozen=True)
class Guide:
    """What a reference or palette says about colours, ready to weigh a photo's logits.

    `histogram` (313,) is a palette's ab distribution (None for a reference alone); a reference photo
    keeps `features` (M, 313), its cells' normalised Hellinger features, and `cell_bins` (M,), the bin of
    each cell's true colour, for local matching."""

    histogram: torch.Tensor | None = None
    features: torch.Tensor | None = None
    cell_bins: torch.Tensor | None = None

    @property
    def local(self) -> bool:
        return self.features is not None


@functools.cache
def _bin_kernel(sigma: float) -> torch.Tensor:
    bins = ab_bins().double()
    kernel = torch.exp(-torch.cdist(bins, bins) ** 2 / (2 * sigma**2))
    return (kernel / kernel.sum(0, keepdim=True)).float()  # each bin's mass spread, summing to 1


def smoothed(histogram: torch.Tensor, sigma: float = HISTOGRAM_SIGMA) -> torch.Tensor:
    """(..., 313) bin masses spread by a Gaussian of `sigma` ab units over the bins, normalised to sum 1."""
    spread = histogram.float() @ _bin_kernel(sigma).to(histogram.device).T
    return spread / spread.sum(-1, keepdim=True).clamp_min(1e-12)


def chroma_share(ab: torch.Tensor) -> float:
    """The share of pixels of ab (N, 2, H, W) with chroma above 5: near 0 for a gray photo."""
    return float((ab.norm(dim=1) > 5).float().mean())


def palette_histogram(ab: torch.Tensor, weights: torch.Tensor, sigma: float = PALETTE_SIGMA) -> torch.Tensor:
    """(313,) histogram of palette colours ab (K, 2) with weights (K,) (positive sum)."""
    idx = nearest_bins(ab.float()[:, :, None, None], k=1)[0].flatten()
    counts = torch.zeros(NUM_BINS, device=ab.device).index_add_(0, idx, weights.float())
    return smoothed(counts, sigma)


def cell_features(logits: torch.Tensor) -> torch.Tensor:
    """(N, h*w, 313) unit-length square roots of each cell's distribution: cosine = Bhattacharyya overlap."""
    return F.normalize(torch.softmax(logits.float(), 1).sqrt().flatten(2).transpose(1, 2), dim=-1)


def reference_guide(logits: torch.Tensor, ab: torch.Tensor) -> Guide:
    """The guide of one reference photo from its logits (1, 313, h, w) and its true ab (1, 2, H, W).

    Only its local histograms count: on held-out photos, mixing in the reference's whole histogram
    scored lower at every share tried (docs/models.md)."""
    side = min(MATCH_CELLS, logits.shape[-2], logits.shape[-1])
    coarse_logits = F.adaptive_avg_pool2d(logits.float(), side)
    coarse_ab = F.adaptive_avg_pool2d(ab.float(), side)
    return Guide(None, cell_features(coarse_logits)[0], nearest_bins(coarse_ab, k=1)[0].flatten())


def combine(reference: Guide | None, palette: Guide | None) -> Guide:
    """One guide from a reference's and a palette's (either may be None, not both)."""
    if reference is None or palette is None:
        return reference or palette  # type: ignore[return-value]
    return Guide(palette.histogram, reference.features, reference.cell_bins)


def local_histograms(logits: torch.Tensor, guide: Guide) -> torch.Tensor:
    """(N, 313, h, w): for each cell, the colours of the reference cells it resembles, softly matched.

    Matched on a grid of at most MATCH_CELLS a side and resized back: colour varies slowly, and the
    matching's cost grows with the product of the two grids' cells."""
    size = logits.shape[-2:]
    coarse = F.adaptive_avg_pool2d(logits.float(), (min(MATCH_CELLS, size[0]), min(MATCH_CELLS, size[1])))
    similarity = cell_features(coarse) @ guide.features.to(logits.device).T  # (N, cells, M)
    match = torch.softmax(similarity / MATCH_TEMPERATURE, dim=-1)
    counts = torch.zeros(*match.shape[:2], NUM_BINS, device=logits.device)
    counts.index_add_(2, guide.cell_bins.to(logits.device), match)
    histograms = smoothed(counts).transpose(1, 2).reshape(len(logits), NUM_BINS, *coarse.shape[-2:])
    return F.interpolate(histograms, size=size, mode="bilinear", align_corners=False) if coarse.shape[-2:] != size \
        else histograms


def guided_logits(logits: torch.Tensor, guide: Guide, prior: torch.Tensor, strength: float,
                  hint_nearness: torch.Tensor | None = None) -> torch.Tensor:
    """Logits (N, 313, h, w) re-weighted towards `guide`'s colours against the training `prior` (313,).

    `strength` in [0, 1] scales the exponent; 0 returns `logits` itself. `hint_nearness` (N, 1, h, w) in
    [0, 1] (1 on a hint) takes the strength away where hint points decide."""
    if strength == 0:
        return logits
    prior = prior.to(logits.device, torch.float32)
    palette = guide.histogram.to(logits.device)[None, :, None, None] if guide.histogram is not None else None
    if guide.local:  # a reference and a palette, when both are given, count alike
        histogram = local_histograms(logits, guide)
        if palette is not None:
            histogram = (histogram + palette) / 2
    else:
        histogram = palette
    log_ratio = torch.log((histogram + FLOOR) / (prior[None, :, None, None] + FLOOR))
    beta = strength * GAIN
    if hint_nearness is not None:
        beta = beta * (1 - hint_nearness.to(logits.device).float())
    return F.log_softmax(logits.float(), 1) + beta * log_ratio


def hint_nearness(distance: torch.Tensor, reach: float = HINT_REACH) -> torch.Tensor:
    """Nearness exp(-d / reach) in [0, 1] from geodesic hint distances in cells."""
    return torch.exp(-distance / reach)


# alternatives

SEGMENTS = 6
MODES = 4  # per segment
MODE_SPACING = 25.0  # ab units between two modes' peaks
SEGMENT_SPACING = 0.3  # Euclidean distance of Hellinger features (0..1.41) under which cells are one segment
MIN_CHANGE = 8.0  # ab units: an alternative changes the photo's colours by at least this much on average
OUTSIDE_MODE = -6.0  # log-weight of the bins outside a cell's chosen mode


@dataclass(frozen=True)
class Modes:
    """A photo's colour segments and their modes: what alternatives choose among."""

    membership: torch.Tensor  # (R, h, w) soft membership of each cell in each segment, summing to 1
    sizes: torch.Tensor  # (R,) each segment's share of the photo
    owner: torch.Tensor  # (R, J, 313) 1 where a bin belongs to mode j of segment r
    mass: torch.Tensor  # (R, J) each mode's share of its segment's distribution (0 for no mode)
    centre: torch.Tensor  # (R, J, 2) each mode's mean ab


def _kmeans(points: torch.Tensor, k: int, spacing: float, iterations: int = 12) -> torch.Tensor:
    """Up to k centres (k', D) of points (P, D), seeded deterministically by farthest-point picking, which
    stops when every point lies within `spacing` of a centre: alike cells are not split into segments
    that would choose their colours apart."""
    centres = [points[(points - points.mean(0)).norm(dim=1).argmax()]]
    for _ in range(k - 1):
        distance = torch.cdist(points, torch.stack(centres)).min(1).values
        if distance.max() < spacing:
            break
        centres.append(points[distance.argmax()])
    centres = torch.stack(centres)
    for _ in range(iterations):
        nearest = torch.cdist(points, centres).argmin(1)
        sums = torch.zeros_like(centres).index_add_(0, nearest, points)
        counts = torch.bincount(nearest, minlength=len(centres)).float()[:, None]
        centres = torch.where(counts > 0, sums / counts.clamp_min(1), centres)
    return centres


def colour_modes(logits: torch.Tensor, segments: int = SEGMENTS, modes: int = MODES) -> Modes:
    """The colour segments and modes of one photo's logits (1, 313, h, w)."""
    probs = torch.softmax(logits[0].float(), 0)  # (313, h, w)
    _, h, w = probs.shape
    # by distribution alone, not position: cells the model sees alike take one colour wherever they are
    features = probs.sqrt().flatten(1).T
    centres = _kmeans(features, min(segments, h * w), SEGMENT_SPACING)
    distance = torch.cdist(features, centres) ** 2  # (h*w, R)
    spread = distance.min(1).values.mean().clamp_min(1e-6)
    membership = torch.softmax(-distance / spread, dim=1).T.reshape(-1, h, w)
    sizes = membership.flatten(1).mean(1)
    mixture = torch.einsum("rhw,qhw->rq", membership, probs)
    mixture = mixture / mixture.sum(1, keepdim=True)
    bins = ab_bins().to(probs.device)
    owner = torch.zeros(len(mixture), modes, NUM_BINS, device=probs.device)
    mass = torch.zeros(len(mixture), modes, device=probs.device)
    centre = torch.zeros(len(mixture), modes, 2, device=probs.device)
    blurred = mixture @ _bin_kernel(HISTOGRAM_SIGMA).to(probs.device).T  # peaks of shades, not of lone bins
    for r, segment in enumerate(blurred):
        peaks = distinct_peaks(segment, modes)
        nearest_peak = torch.cdist(bins, bins[peaks]).argmin(1)  # each bin belongs to its nearest peak
        for j in range(len(peaks)):
            own = (nearest_peak == j).float()
            owner[r, j] = own
            mass[r, j] = (mixture[r] * own).sum()
            centre[r, j] = (mixture[r] * own) @ bins / mass[r, j].clamp_min(1e-12)
    return Modes(membership, sizes, owner, mass, centre)


def distinct_peaks(distribution: torch.Tensor, k: int, spacing: float = MODE_SPACING) -> list[int]:
    """The k likeliest bins of a distribution (313,), skipping any within `spacing` ab units of a likelier pick."""
    bins = ab_bins().to(distribution.device)
    peaks: list[int] = []
    for index in distribution.argsort(descending=True).tolist():
        if all((bins[index] - bins[p]).norm() >= spacing for p in peaks):
            peaks.append(index)
        if len(peaks) == k:
            break
    return peaks


def ranked_choices(modes: Modes, k: int, min_change: float = MIN_CHANGE, min_mass: float = MIN_MODE_MASS,
                   max_tries: int = 20000) -> list[tuple[int, ...]]:
    """Up to k choices of one mode per segment, likeliest first (sum over segments of size * log mass),
    each changing the photo's colours by at least `min_change` ab units on average from those before."""
    score = modes.sizes[:, None] * torch.log(modes.mass.clamp_min(1e-12))
    score = torch.where(modes.mass >= max(min_mass, 1e-12), score, torch.full_like(score, -torch.inf))
    order = score.argsort(1, descending=True)
    ranked = torch.gather(score, 1, order).tolist()  # per segment, its modes' scores best first
    order = order.tolist()
    segments = len(ranked)
    start = (0,) * segments
    heap = [(-sum(r[0] for r in ranked), start)]
    seen = {start}
    picked: list[tuple[int, ...]] = []
    for _ in range(max_tries):
        if not heap or len(picked) == k:
            break
        negative, ranks = heapq.heappop(heap)
        if negative == torch.inf:
            break
        choice = tuple(order[r][j] for r, j in enumerate(ranks))
        if all(_change(modes, choice, other) >= min_change for other in picked):
            picked.append(choice)
        for r in range(segments):
            if ranks[r] + 1 < len(ranked[r]) and ranked[r][ranks[r] + 1] > -torch.inf:
                after = ranks[:r] + (ranks[r] + 1,) + ranks[r + 1 :]
                if after not in seen:
                    seen.add(after)
                    heapq.heappush(heap, (-sum(ranked[s][j] for s, j in enumerate(after)), after))
    return picked


def _change(modes: Modes, a: tuple[int, ...], b: tuple[int, ...]) -> float:
    """Mean ab distance between two choices over the photo (segments weighted by size)."""
    segments = torch.arange(len(a))
    shift = (modes.centre[segments, list(a)] - modes.centre[segments, list(b)]).norm(dim=1)
    return float((modes.sizes * shift).sum())


def chosen_logits(logits: torch.Tensor, modes: Modes, choice: tuple[int, ...]) -> torch.Tensor:
    """Logits (1, 313, h, w) with each cell's distribution held to its segments' chosen modes."""
    segments = torch.arange(len(choice))
    owner = modes.owner[segments, list(choice)]  # (R, 313)
    inside = torch.einsum("rhw,rq->qhw", modes.membership, owner)  # (313, h, w) in [0, 1]
    return F.log_softmax(logits.float(), 1) + OUTSIDE_MODE * (1 - inside[None])


def alternative_logits(logits: torch.Tensor, k: int) -> list[torch.Tensor]:
    """k alternative logits for one photo (1, 313, h, w), likeliest first. A photo with fewer distinct
    plausible choices gets the likeliest of the less distinct (then the less plausible) ones after them."""
    modes = colour_modes(logits)
    choices: list[tuple[int, ...]] = []
    for min_change, min_mass in ((MIN_CHANGE, MIN_MODE_MASS), (MIN_CHANGE / 4, MIN_MODE_MASS), (0.0, 0.0)):
        more = [c for c in ranked_choices(modes, k, min_change, min_mass) if c not in choices]
        choices += more[: k - len(choices)]
        if len(choices) == k:
            break
    return [chosen_logits(logits, modes, choice) for choice in choices]


# reading a user's palette and strength

MAX_ALTERNATIVES = 16


def parse_palette(palette) -> tuple[list[tuple[int, int, int]], list[float]]:
    """A palette as the CLI ("#8b4513,#87ceeb:0.5") or Python ([...] of "#rrggbb[:weight]", (r, g, b) or
    ((r, g, b), weight)) gives it -> its 0-255 colours and weights; anything else is a one-line error."""
    items = [part for part in palette.split(",")] if isinstance(palette, str) else list(palette)
    if not items:
        raise UserError("the palette is empty: give colours like #8b4513,#87ceeb:0.5")
    colours, weights = [], []
    for item in items:
        colour, weight = _palette_item(item)
        colours.append(colour)
        weights.append(weight)
    if not sum(weights) > 0:
        raise UserError(f"palette weights must sum to a positive number, got {sum(weights):g}")
    return colours, weights


def _palette_item(item) -> tuple[tuple[int, int, int], float]:
    weight = 1.0
    if isinstance(item, str):
        text, _, weight_text = item.strip().partition(":")
        if weight_text:
            weight = _weight(weight_text, item)
        return _hex_colour(text, item), weight
    if isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], (tuple, list, str)):
        colour, weight = _palette_item(item[0])[0], _weight(item[1], item)
        return colour, weight
    if isinstance(item, (tuple, list)) and len(item) == 3 and all(isinstance(c, int) and 0 <= c <= 255 for c in item):
        return tuple(item), weight  # type: ignore[return-value]
    raise UserError(f"palette colour {item!r}: expected #rrggbb, #rrggbb:weight or (r, g, b) in 0-255")


def _hex_colour(text: str, item: object) -> tuple[int, int, int]:
    digits = text.strip().removeprefix("#")
    if len(digits) == 3:
        digits = "".join(2 * digit for digit in digits)
    if len(digits) != 6 or any(c not in "0123456789abcdefABCDEF" for c in digits):
        raise UserError(f"palette colour {item!r}: not a colour (expected #rrggbb)")
    return tuple(int(digits[i : i + 2], 16) for i in (0, 2, 4))  # type: ignore[return-value]


def _weight(value: object, item: object) -> float:
    try:
        weight = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise UserError(f"palette colour {item!r}: the weight is not a number") from None
    if not (weight >= 0 and weight != float("inf")):
        raise UserError(f"palette colour {item!r}: a weight must be a number from 0 up")
    return weight


def check_strength(strength: object) -> float:
    """A reference strength in [0, 1], or a one-line error."""
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0 <= strength <= 1:
        raise UserError(f"reference strength must be a number from 0 to 1, got {strength!r}")
    return float(strength)


def check_alternatives(k: object) -> int:
    """A number of alternatives in 1..16, or a one-line error."""
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_ALTERNATIVES:
        raise UserError(f"the number of alternatives must be a whole number from 1 to {MAX_ALTERNATIVES}, got {k!r}")
    return k
