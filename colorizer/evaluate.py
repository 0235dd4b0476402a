"""`colorizer eval`: the paper's raw-accuracy metrics for a model and three reference colorizations.

For each held-out photo the model sees only L; its ab is compared with the truth per pixel. The AuC
(Zhang et al. 2016) is the area under the curve of "fraction of pixels within t of the true ab" for
t = 0..150, in percent; the rebalanced AuC weighs each pixel by the inverse (smoothed) frequency of
its true colour bin in the evaluated set, so that rare saturated colours count as much as gray.
"""

from __future__ import annotations

import argparse
import json

import torch
from tqdm import tqdm

from colorizer.atomic import write_text
from colorizer.bins import NUM_BINS, ab_bins, nearest_bins
from colorizer.color import lab_to_rgb, rgb_to_lab
from colorizer.data import hold_out, scan_folder
from colorizer.decode import DEFAULT_TEMPERATURE, colour_ab, decode_ab
from colorizer.errors import UserError
from colorizer.hints import simulate_hints
from colorizer.images import open_image, to_rgb_tensor
from colorizer.prior import smooth_prior

MAX_THRESHOLD = 150
METHODS = ("model", "gray", "random", "ground_truth")


def auc_per_pixel(pred_ab: torch.Tensor, true_ab: torch.Tensor) -> torch.Tensor:
    """Each pixel's share of the thresholds t = 0..150 at which it counts as correct (||error|| <= t)."""
    error = (pred_ab - true_ab).norm(dim=1)
    # an error within float noise of a whole threshold meets it
    return ((MAX_THRESHOLD + 1 - torch.ceil(error - 1e-4)) / (MAX_THRESHOLD + 1)).clamp(0, 1)


def colorfulness(rgb: torch.Tensor) -> torch.Tensor:
    """Hasler & Suesstrunk (2003) colourfulness of (N, 3, H, W) RGB in [0, 1], on the 0..255 scale."""
    r, g, b = (rgb * 255.0).unbind(1)
    rg, yb = r - g, 0.5 * (r + g) - b
    std = torch.sqrt(rg.flatten(1).var(1, unbiased=False) + yb.flatten(1).var(1, unbiased=False))
    mean = torch.sqrt(rg.flatten(1).mean(1) ** 2 + yb.flatten(1).mean(1) ** 2)
    return std + 0.3 * mean


def psnr(rgb: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio (dB) per image of 8-bit quantised RGB; identical images give 100."""
    quantise = lambda x: (x.clamp(0, 1) * 255).round()  # noqa: E731
    mse = ((quantise(rgb) - quantise(truth)) ** 2).flatten(1).mean(1)
    return torch.where(mse > 0, 10 * torch.log10(255.0**2 / mse.clamp_min(1e-12)), torch.full_like(mse, 100.0))


def random_ab(size: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """(1, 2, H, W) ab of a random colour bin per pixel: the paper's random colorization."""
    return ab_bins()[torch.randint(NUM_BINS, (1, *size), generator=generator)].permute(0, 3, 1, 2)


class Accumulator:
    """Per-bin sums of pixel AuC, so the rebalanced AuC can use the whole set's prior at the end."""

    def __init__(self) -> None:
        self.auc_sum = torch.zeros(NUM_BINS, dtype=torch.float64)
        self.colorfulness: list[float] = []
        self.psnr: list[float] = []

    def add(self, true_bin: torch.Tensor, pixel_auc: torch.Tensor, rgb: torch.Tensor, truth: torch.Tensor) -> None:
        self.auc_sum += torch.bincount(true_bin.flatten(), pixel_auc.flatten().double(), minlength=NUM_BINS)
        self.colorfulness += colorfulness(rgb).tolist()
        self.psnr += psnr(rgb, truth).tolist()

    def result(self, bin_pixels: torch.Tensor) -> dict[str, float]:
        weights = 1.0 / smooth_prior(bin_pixels).clamp_min(1e-12)
        return {
            "auc": round(100 * float(self.auc_sum.sum() / bin_pixels.sum()), 2),
            "auc_rebal": round(100 * float((weights * self.auc_sum).sum() / (weights * bin_pixels).sum()), 2),
            "colorfulness": round(sum(self.colorfulness) / len(self.colorfulness), 2),
            "psnr": round(sum(self.psnr) / len(self.psnr), 2),
        }


def evaluate(colorizer, paths, temperature: float = DEFAULT_TEMPERATURE, seed: int = 0, progress: bool = True,
             hint_counts: tuple[int, ...] = ()) -> dict[str, dict]:
    """The figures of the model and the three references on `paths`; with `hint_counts`, also the
    model's under that many hints per photo, simulated from the true colours at the working size
    (as training simulates them, from a generator seeded with `seed`), under "hints"."""
    if hint_counts:
        colorizer.require_hints()  # before the first photo, not after it
    generator = torch.Generator().manual_seed(seed)
    hint_generator = torch.Generator().manual_seed(seed)
    totals = {method: Accumulator() for method in METHODS}
    hinted = {count: Accumulator() for count in hint_counts}
    bin_pixels = torch.zeros(NUM_BINS, dtype=torch.float64)
    for path in tqdm(paths, desc="eval", disable=not progress):
        truth = to_rgb_tensor(open_image(path))
        lab = rgb_to_lab(truth)
        lightness, true_ab = lab[:, :1], lab[:, 1:]
        size = tuple(true_ab.shape[-2:])
        true_bin = nearest_bins(true_ab, k=1)[0]
        bin_pixels += torch.bincount(true_bin.flatten(), minlength=NUM_BINS).double()
        candidates = {
            "model": colour_ab(lightness, colorizer.logits(lightness), temperature),
            "gray": torch.zeros_like(true_ab),
            "random": random_ab(size, generator),
            "ground_truth": true_ab,
        }
        for method, ab in candidates.items():
            totals[method].add(true_bin, auc_per_pixel(ab, true_ab), lab_to_rgb(torch.cat([lightness, ab], 1)), truth)
        if hint_counts:
            working_ab = colorizer.to_working_size(true_ab)
            for count, accumulator in hinted.items():
                hint_map = simulate_hints(working_ab, [count], hint_generator)
                ab = colour_ab(lightness, colorizer.logits(lightness, hint_map), temperature, hints=hint_map)
                accumulator.add(true_bin, auc_per_pixel(ab, true_ab), lab_to_rgb(torch.cat([lightness, ab], 1)), truth)
    results: dict[str, dict] = {method: totals[method].result(bin_pixels) for method in METHODS}
    if hint_counts:
        results["hints"] = {str(count): {key: accumulator.result(bin_pixels)[key] for key in ("psnr", "auc", "auc_rebal")}
                            for count, accumulator in hinted.items()}
    return results


def histogram_intersection(pred_ab: torch.Tensor, true_ab: torch.Tensor) -> float:
    """Overlap in [0, 1] of the nearest-bin histograms of two ab images (1, 2, H, W)."""
    def histogram(ab: torch.Tensor) -> torch.Tensor:
        counts = torch.bincount(nearest_bins(ab, k=1)[0].flatten(), minlength=NUM_BINS).double()
        return counts / counts.sum()
    return float(torch.minimum(histogram(pred_ab), histogram(true_ab)).sum())


def pairwise_ab_change(abs_: list[torch.Tensor]) -> float:
    """Mean over pairs and pixels of |delta ab| between several colorizations (1, 2, H, W) of one photo."""
    pairs = [(a - b).norm(dim=1).mean() for i, a in enumerate(abs_) for b in abs_[i + 1 :]]
    return float(torch.stack(pairs).mean()) if pairs else 0.0


def evaluate_reference(colorizer, paths, strength: float, temperature: float = DEFAULT_TEMPERATURE,
                       alternatives: int = 4, progress: bool = True) -> dict[str, float]:
    """`eval --reference half`: each photo's top half is the reference for its bottom half (same scene,
    disjoint pixels); the bottom half's PSNR and ab histogram intersection with the truth, automatic and
    with the reference. Then, on whole photos, the best of `alternatives` alternatives' PSNR against the
    automatic colorization's, and how far apart the alternatives' colours lie (mean pairwise |delta ab|)."""
    from colorizer import reference as reference_math
    from colorizer.images import to_pil

    figures: dict[str, list[float]] = {key: [] for key in (
        "auto_psnr", "reference_psnr", "auto_intersection", "reference_intersection",
        "single_psnr", "best_alternative_psnr", "alternative_spread")}
    skipped = 0
    for path in tqdm(paths, desc="eval reference", disable=not progress):
        truth = to_rgb_tensor(open_image(path))
        lab = rgb_to_lab(truth)
        half = lab.shape[-2] // 2
        top, bottom = truth[..., :half, :], truth[..., half:, :]
        lightness, true_ab = lab[:, :1, half:], lab[:, 1:, half:]
        try:
            guide = colorizer.guide(to_pil(top))
        except UserError:  # a gray top half carries no colour to take: the photo is left out
            skipped += 1
            continue
        logits = colorizer.logits(lightness)
        for name, each in (("auto", logits), ("reference", colorizer.guided(lightness, logits, guide, strength))):
            ab = decode_ab(each, tuple(true_ab.shape[-2:]), temperature)
            figures[f"{name}_psnr"] += psnr(lab_to_rgb(torch.cat([lightness, ab], 1)), bottom).tolist()
            figures[f"{name}_intersection"].append(histogram_intersection(ab, true_ab))
        if alternatives:
            whole_logits = colorizer.logits(lab[:, :1])
            figures["single_psnr"].append(_decoded(whole_logits, lab, truth, temperature)[1])
            options = [_decoded(each, lab, truth, temperature)
                       for each in reference_math.alternative_logits(whole_logits, alternatives)]
            figures["best_alternative_psnr"].append(max(score for _, score in options))
            figures["alternative_spread"].append(pairwise_ab_change([ab for ab, _ in options]))
    results = {key: round(sum(values) / len(values), 3) for key, values in figures.items() if values}
    return {**results, "photos": len(paths) - skipped, "gray_references_left_out": skipped}


def _decoded(logits: torch.Tensor, lab: torch.Tensor, truth: torch.Tensor, temperature: float) -> tuple[torch.Tensor, float]:
    """The ab that `logits` decode to at the photo's size, and its PSNR against the photo."""
    ab = decode_ab(logits, tuple(lab.shape[-2:]), temperature)
    return ab, float(psnr(lab_to_rgb(torch.cat([lab[:, :1], ab], 1)), truth)[0])


def format_reference_table(results: dict[str, float], title: str) -> str:
    lines = [f"{title}; {results['photos']} photos scored, {results['gray_references_left_out']} left out "
             "(top half gray)", f"{'bottom half':22}{'PSNR':>8}{'hist. intersection':>20}"]
    for name in ("auto", "reference"):
        lines.append(f"{name:22}{results[f'{name}_psnr']:8.2f}{results[f'{name}_intersection']:20.3f}")
    if "single_psnr" in results:
        lines += [f"{'whole photo':22}{'PSNR':>8}{'mean pairwise |dab|':>20}",
                  f"{'automatic':22}{results['single_psnr']:8.2f}",
                  f"{'best alternative':22}{results['best_alternative_psnr']:8.2f}{results['alternative_spread']:20.2f}"]
    return "\n".join(lines)


def format_table(results: dict[str, dict], title: str) -> str:
    lines = [title, f"{'':14}{'AuC':>8}{'AuC rebal':>11}{'colourful':>11}{'PSNR':>8}"]
    for method in METHODS:
        r = results[method]
        lines.append(f"{method:14}{r['auc']:8.2f}{r['auc_rebal']:11.2f}{r['colorfulness']:11.2f}{r['psnr']:8.2f}")
    for count, r in results.get("hints", {}).items():
        lines.append(f"{f'{count} hints':14}{r['auc']:8.2f}{r['auc_rebal']:11.2f}{'':11}{r['psnr']:8.2f}")
    return "\n".join(lines)


def parse_hint_counts(text: str) -> tuple[int, ...]:
    """`--hints 0,10,100` -> (0, 10, 100); anything else is a one-line error."""
    try:
        counts = tuple(int(part) for part in text.split(","))
    except ValueError:
        counts = ()
    if not counts or min(counts) < 0 or len(set(counts)) != len(counts):
        raise UserError(f"--hints takes distinct whole numbers of hints separated by commas (e.g. 0,10,100), got {text!r}")
    return counts


def run_eval(args: argparse.Namespace) -> dict[str, dict]:
    from colorizer.infer import Colorizer

    hint_counts = parse_hint_counts(args.hints) if args.hints else ()
    if args.reference:
        from colorizer.reference import check_alternatives, check_strength

        check_strength(args.reference_strength)
        if args.alternatives:
            check_alternatives(args.alternatives)
    colorizer = Colorizer.load(args.model, device=args.device, optimize=True)  # a batch job: the frozen graph pays
    scan = scan_folder(args.data, limit=args.limit)
    if scan.gray or scan.corrupt:
        print(f"evaluating {scan.summary()}")
    paths = scan.colour
    if args.holdout:
        paths = hold_out(paths, args.data, args.holdout)[1]
        print(f"evaluating the {len(paths)} photos that `train --holdout {args.holdout:g}` holds out of {args.data}")
    title = f"{args.model} on {args.data} ({len(paths)} photos, T = {args.temperature})"
    if args.reference:
        results = evaluate_reference(colorizer, paths, args.reference_strength, args.temperature, args.alternatives)
        print(format_reference_table(results, f"{title}, each top half the reference of its bottom half, "
                                              f"strength {args.reference_strength:g}"))
    else:
        results = evaluate(colorizer, paths, args.temperature, args.seed, hint_counts=hint_counts)
        print(format_table(results, title))
    if args.json:
        write_text(args.json, json.dumps(results, indent=2))
    return results
