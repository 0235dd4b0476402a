"""`colorizer analyze classify`: the paper's table 2, top-1 accuracy of a pretrained ImageNet classifier
on the ground truth, the gray image, a random colorization and each model's colorization.

If a colorization restores colour that a classifier relies on, the classifier's accuracy rises from
its accuracy on the gray image towards its accuracy on the ground truth. Every variant goes through
the same 8-bit RGB image and the classifier's own preprocessing, as a saved colorization would.
Heavy imports wait until the command runs.
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING, Any

from colorizer.defaults import DEFAULT_TEMPERATURE
from colorizer.device import DEVICE_HELP
from colorizer.errors import UserError

if TYPE_CHECKING:
    import torch
    from PIL import Image
    from torch import nn

BASELINES = ("ground_truth", "gray", "random")
CLASSIFIER_NAMES = ("efficientnet_lite0", "vgg16_bn")
DEFAULT_MODELS = ("dogs", "generic")

# Table 2 of the paper: VGG-16-BN top-1 (%) per colorization (rows) and validation set (columns).
PAPER_TABLE2 = {
    "columns": ["ImageNet", "Stanford Dogs"],
    "rows": {
        "COCO model": [57.04, 56.85],
        "Stanford Dogs model": [58.25, 60.00],
        "Random": [39.87, 41.07],
        "Ground truth": [73.36, 77.85],
    },
}


def register(commands: argparse._SubParsersAction) -> None:
    """Add `classify` to the `colorizer analyze` subcommands."""
    parser = commands.add_parser(
        "classify",
        help="table 2: a pretrained ImageNet classifier's top-1 accuracy on the colorizations",
        description="Classify each photo of --data (ImageFolder layout, folders named by ImageNet WordNet ids) "
        "as ground truth, gray, randomly colorized and colorized by each model; writes table.json, table.md "
        "and predictions.csv into --out.",
    )
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), metavar="MODEL",
                        help="bundled model names, checkpoint files or run folders (default: dogs generic)")
    parser.add_argument("--data", type=Path, required=True, metavar="DIR",
                        help="photos in one folder per ImageNet class, named by WordNet id (e.g. n02086240)")
    parser.add_argument("--classifier", default="efficientnet_lite0", metavar="NAME[:WEIGHTS]",
                        help="efficientnet_lite0 (offline, the default) or vgg16_bn[:WEIGHTS], the paper's "
                        "classifier: a torchvision state dict file, or a download when there is a network")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    parser.add_argument("--limit", type=int, help="classify at most this many photos, spread over the classes")
    parser.add_argument("--holdout", type=float, metavar="FRACTION",
                        help="classify only the photos of --data that `train --holdout FRACTION` held out: "
                        "for choosing settings without touching a val split")
    parser.add_argument("--batch-size", type=int, default=16, help="photos per batch (default 16)")
    parser.add_argument("--temperature", type=float, default=DEFAULT_TEMPERATURE,
                        help=f"annealed-mean temperature of the colorizations (default {DEFAULT_TEMPERATURE}, the paper's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random colorization (default 0)")
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)
    parser.set_defaults(func=run_classify)


# ---------------------------------------------------------------------------------------------------
# Labels


def imagenet_index(wnids: set[str]) -> dict[str, int]:
    """Each WordNet id's class index among the 1000 ImageNet-1k classes (timm ships the synset list)."""
    from timm.data import ImageNetInfo

    index = {wnid: i for i, wnid in enumerate(ImageNetInfo().label_names())}
    unknown = sorted(wnids - index.keys())
    if unknown:
        shown = ", ".join(unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        raise UserError(f"class folders must be named by ImageNet-1k WordNet ids (like n02086240); "
                        f"{len(unknown)} are not: {shown}")
    return {wnid: index[wnid] for wnid in wnids}


WORDNET_ID = re.compile(r"n\d{8}")
TRUE_CLASS = "the ImageNet class of each photo's folder"
CLASSIFIED_TRUTH = "the classifier's own top-1 on the colour photo (its folders are not ImageNet classes)"


@dataclass
class LabelledPhotos:
    """The colour photos of a folder with the class indices they are scored against, and what was dropped.

    Photos in ImageNet class folders (named by WordNet id) are scored against their class; any other
    photos (people, streets: ImageNet has no such classes) against what the classifier sees in the colour
    photo itself (`labels` is None until then), so a colorization counts as recognised when it is taken
    for the same thing as the original."""

    paths: list[Path]
    labels: list[int] | None
    dropped_gray: int
    dropped_corrupt: int

    @property
    def label_source(self) -> str:
        return CLASSIFIED_TRUTH if self.labels is None else TRUE_CLASS


def labelled_photos(root: Path, limit: int | None = None, holdout: float | None = None) -> LabelledPhotos:
    """Colour photos under `root`; gray ones are dropped as in `colorizer eval` (no colour to restore).
    With `holdout`, only the photos `train --holdout` keeps out of training (as `eval --holdout`)."""
    from colorizer.data import hold_out, scan_folder

    scan = scan_folder(root, limit=limit)
    paths = hold_out(scan.colour, root, holdout)[1] if holdout else scan.colour
    folders = [path.relative_to(root).parts for path in paths]
    dropped = len(scan.gray), len(scan.corrupt)
    if any(len(parts) == 1 or not WORDNET_ID.fullmatch(parts[0]) for parts in folders):
        return LabelledPhotos(paths, None, *dropped)
    index = imagenet_index({parts[0] for parts in folders})
    return LabelledPhotos(paths, [index[parts[0]] for parts in folders], *dropped)


# ---------------------------------------------------------------------------------------------------
# Classifiers


@dataclass
class Classifier:
    """A pretrained ImageNet network and its evaluation preprocessing."""

    name: str
    network: nn.Module
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize: int = 256  # shorter side, then a centre crop: the usual ImageNet evaluation
    crop: int = 224

    def preprocess(self, images: list[Image.Image]) -> torch.Tensor:
        import torch
        from torchvision.transforms import v2

        transform = v2.Compose([
            v2.PILToTensor(), v2.Resize(self.resize, antialias=True), v2.CenterCrop(self.crop),
            v2.ToDtype(torch.float32, scale=True), v2.Normalize(self.mean, self.std),
        ])
        return torch.stack([transform(image) for image in images])

    def log_probs(self, images: list[Image.Image]) -> torch.Tensor:
        """(N, 1000) log-probabilities of the ImageNet classes for each image."""
        import torch

        device = next(self.network.parameters()).device
        with torch.inference_mode():
            return self.network(self.preprocess(images).to(device)).float().log_softmax(1).cpu()


def load_classifier(spec: str, device: str | torch.device = "cpu") -> Classifier:
    """`efficientnet_lite0` or `vgg16_bn[:WEIGHTS]` as a Classifier in evaluation mode."""
    name, _, weights = spec.partition(":")
    if name == "efficientnet_lite0":
        if weights:
            raise UserError("efficientnet_lite0 brings its own ImageNet weights: give it without a weights file")
        from colorizer.models.efficientnet import efficientnet_lite0

        # the TensorFlow-Lite original scales inputs to [-1, 1]
        classifier = Classifier(name, efficientnet_lite0(pretrained=True), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    elif name == "vgg16_bn":
        classifier = Classifier(name, vgg16_bn(Path(weights) if weights else None),
                                (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    else:
        raise UserError(f"unknown classifier {spec!r}: give {' or '.join(CLASSIFIER_NAMES)}[:WEIGHTS]")
    classifier.network.eval().to(device)
    return classifier


def vgg16_bn(weights: Path | None) -> nn.Module:
    """torchvision's VGG-16-BN with ImageNet weights from a state dict file, or downloaded by torchvision."""
    from torchvision import models

    if weights is not None:
        return load_state_dict_file(models.vgg16_bn(), weights)
    try:
        return models.vgg16_bn(weights=models.VGG16_BN_Weights.IMAGENET1K_V1)
    except (OSError, RuntimeError) as exc:  # no network (URLError is an OSError), or a damaged download
        raise UserError(f"could not download the vgg16_bn ImageNet weights ({exc}); pass a weights file: "
                        "--classifier vgg16_bn:/path/to/vgg16_bn-6c64b313.pth") from None


def load_state_dict_file(network: nn.Module, path: Path) -> nn.Module:
    """Load a saved state dict into network, with one-line errors for a missing or mismatched file."""
    import pickle

    import torch

    if not path.is_file():
        raise UserError(f"{path}: no such weights file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, pickle.UnpicklingError, EOFError) as exc:
        raise UserError(f"{path}: not a PyTorch weights file ({str(exc).splitlines()[0]})") from None
    try:
        network.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise UserError(f"{path}: does not fit {type(network).__name__} ({str(exc).splitlines()[0]})") from None
    return network


# ---------------------------------------------------------------------------------------------------
# Colorizations


def load_colorizers(names: list[str], device: str | torch.device) -> dict[str, Any]:
    """Each model by the name its column gets; names must be distinct and not those of the baselines."""
    from colorizer.infer import Colorizer

    colorizers = {}
    for name in names:
        colorizer = Colorizer.load(name, device=device)
        if colorizer.name in colorizers or colorizer.name in BASELINES:
            raise UserError(f"two columns would be called {colorizer.name!r}: rename the checkpoint or run folder")
        colorizers[colorizer.name] = colorizer
    return colorizers


def baseline_variants(photos: list[Image.Image], generator: torch.Generator) -> dict[str, list[Image.Image]]:
    """Ground truth, gray (L with ab = 0) and random colorization of each photo, at full resolution."""
    from colorizer.decode import colorize_lab
    from colorizer.evaluate import random_ab
    from colorizer.images import to_pil
    from colorizer.infer import Colorizer, gray_image

    variants: dict[str, list[Image.Image]] = {"ground_truth": photos, "gray": [], "random": []}
    for photo in photos:
        lightness = Colorizer.lightness(photo)
        variants["gray"].append(gray_image(lightness))
        variants["random"].append(to_pil(colorize_lab(lightness, random_ab(tuple(lightness.shape[-2:]), generator))))
    return variants


@dataclass
class Classified:
    """What the classifier made of every photo under each variant (baselines, then models)."""

    labels: list[int]  # each photo's label, or without labels the class taken for the colour photo
    predictions: dict[str, list[int]]  # top-1 class index
    # log-probability of the photo's label: a graded score, so that comparisons on a few hundred photos
    # need not wait for whole photos to flip
    label_log_probs: dict[str, list[float]]


def classify_variants(
    photos: LabelledPhotos, classifier: Classifier, colorizers: dict[str, Any], *, batch_size: int,
    temperature: float, seed: int, progress: bool = True,
) -> Classified:
    """Classify every photo as ground truth, gray, randomly colorized and colorized by each model."""
    import torch
    from tqdm import tqdm

    from colorizer.images import open_image

    generator = torch.Generator().manual_seed(seed)
    names = (*BASELINES, *colorizers)
    result = Classified([], {name: [] for name in names}, {name: [] for name in names})
    with tqdm(total=len(photos.paths), desc=f"classify {classifier.name}", unit="img", disable=not progress) as bar:
        for start in range(0, len(photos.paths), batch_size):
            batch = [open_image(path).convert("RGB") for path in photos.paths[start : start + batch_size]]
            variants = baseline_variants(batch, generator)
            for name, colorizer in colorizers.items():
                variants[name] = colorizer.colorize_many(batch, temperature, batch_size)
            scores = {name: classifier.log_probs(images) for name, images in variants.items()}
            labels = (torch.tensor(photos.labels[start : start + batch_size]) if photos.labels is not None
                      else scores["ground_truth"].argmax(1))
            result.labels += labels.tolist()
            for name, log_probs in scores.items():
                result.predictions[name] += log_probs.argmax(1).tolist()
                result.label_log_probs[name] += log_probs.gather(1, labels[:, None])[:, 0].tolist()
            bar.update(len(batch))
    return result


# ---------------------------------------------------------------------------------------------------
# Statistics and the table


def mcnemar_exact(first: list[bool], second: list[bool]) -> dict[str, Any]:
    """Exact McNemar test of paired correctness: a binomial test of the discordant photos against 50%."""
    from analysis.votes import proportion_test

    first_only = sum(a and not b for a, b in zip(first, second, strict=True))
    second_only = sum(b and not a for a, b in zip(first, second, strict=True))
    discordant = first_only + second_only
    p_value = proportion_test(first_only, discordant)["p_value"] if discordant else 1.0
    return {"first_only": first_only, "second_only": second_only, "p_value": p_value}


def log_prob_difference(first: list[float], second: list[float]) -> dict[str, Any]:
    """Mean per-photo difference of the label's log-probability, first minus second, with a paired
    t-test's 95% interval and p-value."""
    import numpy as np
    from scipy import stats

    differences = np.asarray(first, dtype=float) - np.asarray(second, dtype=float)
    mean = round(float(differences.mean()), 4) if len(differences) else 0.0
    if len(differences) < 2 or differences.std() == 0:  # no spread: nothing for a t-test to weigh
        return {"mean": mean, "ci95": None, "p_value": 1.0 if mean == 0 else 0.0}
    test = stats.ttest_1samp(differences, 0.0)
    low, high = test.confidence_interval(0.95)
    return {"mean": mean, "ci95": [round(float(low), 4), round(float(high), 4)], "p_value": float(test.pvalue)}


def paired_comparisons(correct: dict[str, list[bool]], log_probs: dict[str, list[float]],
                       models: list[str]) -> list[dict[str, Any]]:
    """Each model against the gray image (does its colour help?) and each pair of models."""
    pairs = [(model, "gray") for model in models] + list(combinations(models, 2))
    return [{"first": a, "second": b, **mcnemar_exact(correct[a], correct[b]),
             "log_prob_difference": log_prob_difference(log_probs[a], log_probs[b])} for a, b in pairs]


def summarize(photos: LabelledPhotos, classified: Classified, models: list[str]) -> dict[str, Any]:
    """table.json: top-1 in percent with Wilson 95% intervals, the mean log-probability of the label,
    and the paired tests."""
    from analysis.votes import proportion_test

    correct = {name: [p == label for p, label in zip(predicted, photos.labels, strict=True)]
               for name, predicted in classified.predictions.items()}
    n = len(photos.labels)
    intervals = {name: proportion_test(sum(hits), n)["ci95"] for name, hits in correct.items()}
    return {
        "top1": {name: _percent(sum(hits) / n) for name, hits in correct.items()},
        "ci95": {name: [_percent(bound) for bound in bounds] for name, bounds in intervals.items()},
        "correct": {name: sum(hits) for name, hits in correct.items()},
        "log_prob": {name: round(sum(values) / n, 4) for name, values in classified.label_log_probs.items()},
        "n_images": n,
        "dropped": {"gray": photos.dropped_gray, "corrupt": photos.dropped_corrupt},
        "paired": paired_comparisons(correct, classified.label_log_probs, models),
    }


def _percent(share: float) -> float:
    return round(100 * share, 2)


def render_table(table: dict[str, Any]) -> str:
    """table.md: our rows with intervals, the paired tests, and the paper's table 2 for reference."""
    rows = [*table["models"], "random", "gray", "ground_truth"]
    dropped = table["dropped"]
    lines = [
        f"# Top-1 accuracy of {table['classifier']} on colorizations (the paper's table 2)",
        "",
        f"{table['n_images']} colour photos of `{table['data']}` (dropped {dropped['gray']} without colour, "
        f"{dropped['corrupt']} unreadable); annealed-mean temperature {table['temperature']}, random seed "
        f"{table['seed']}. Scored against {table.get('labels', TRUE_CLASS)}. Intervals: Wilson 95%. "
        "log p: the classifier's mean log-probability of that class.",
        "",
        "| colorization | top-1 | 95% interval | log p |",
        "| --- | ---: | ---: | ---: |",
        *(f"| {row} | {table['top1'][row]:.2f}% | {table['ci95'][row][0]:.2f} to {table['ci95'][row][1]:.2f} "
          f"| {table['log_prob'][row]:.3f} |" for row in rows),
        "",
        "Paired on the same photos (exact McNemar test: only photos that one side gets right and the other "
        "wrong count; log p difference: mean over photos, first minus second, with a paired t-test):",
        "",
        "| first | second | only first right | only second right | p | log p difference | 95% interval | p |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        *(f"| {c['first']} | {c['second']} | {c['first_only']} | {c['second_only']} | {c['p_value']:.3g} "
          f"| {_difference_cells(c['log_prob_difference'])} |" for c in table["paired"]),
        "",
        "The paper's table 2 (VGG-16-BN, top-1 %), for reference:",
        "",
        f"| colorization | {' | '.join(PAPER_TABLE2['columns'])} |",
        "| --- |" + " ---: |" * len(PAPER_TABLE2["columns"]),
        *(f"| {row} | {' | '.join(f'{value:.2f}' for value in values)} |"
          for row, values in PAPER_TABLE2["rows"].items()),
        "",
    ]
    return "\n".join(lines)


def _difference_cells(difference: dict[str, Any]) -> str:
    interval = difference["ci95"]
    bounds = f"{interval[0]:+.3f} to {interval[1]:+.3f}" if interval else "-"
    return f"{difference['mean']:+.3f} | {bounds} | {difference['p_value']:.3g}"


def render_predictions(photos: LabelledPhotos, predictions: dict[str, list[int]]) -> str:
    """predictions.csv: each photo's true class index and each variant's predicted index."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "label", *predictions])
    for i, (path, label) in enumerate(zip(photos.paths, photos.labels, strict=True)):
        writer.writerow([path, label, *(predicted[i] for predicted in predictions.values())])
    return buffer.getvalue()


def run_classify(args: argparse.Namespace) -> int:
    from colorizer.atomic import write_text
    from colorizer.device import resolve_device

    if args.batch_size < 1:
        raise UserError("--batch-size must be at least 1")
    if args.holdout is not None and not 0 < args.holdout <= 0.5:
        raise UserError(f"--holdout must lie in (0, 0.5], not {args.holdout:g}")
    photos = labelled_photos(args.data, args.limit, args.holdout)  # first: bad folders fail before any model loads
    device = resolve_device(args.device)
    classifier = load_classifier(args.classifier, device)
    colorizers = load_colorizers(args.models, device)
    classified = classify_variants(photos, classifier, colorizers, batch_size=args.batch_size,
                                   temperature=args.temperature, seed=args.seed)
    label_source = photos.label_source
    photos.labels = classified.labels
    table = {
        **summarize(photos, classified, list(colorizers)),
        "classifier": args.classifier, "data": str(args.data), "models": list(colorizers),
        "temperature": args.temperature, "seed": args.seed, "limit": args.limit, "holdout": args.holdout,
        "labels": label_source,
        "paper": PAPER_TABLE2,
    }
    markdown = render_table(table)
    write_text(args.out / "table.json", json.dumps(table, indent=2) + "\n")
    write_text(args.out / "table.md", markdown)
    write_text(args.out / "predictions.csv", render_predictions(photos, classified.predictions))
    print(markdown)
    print(f"wrote {args.out / 'table.md'}")
    return 0
