"""`colorizer analyze classify` (the paper's table 2) on tiny synthetic ImageFolder trees."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from urllib.error import URLError

import pytest
import torch
from torch import nn

from analysis import classify
from colorizer.errors import UserError
from colorizer.images import open_image
from tests.conftest import photo

WNIDS = ("n01440764", "n02086240")  # tench (index 0) and Shih-Tzu (index 155) in ImageNet-1k


def make_imagefolder(root: Path, class_names=WNIDS, per_class: int = 3) -> Path:
    for c, name in enumerate(class_names):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            photo(64, 48, seed=10 * c + i).save(root / name / f"{i}.jpg", quality=95)
    return root


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    classify.register(parser.add_subparsers())
    return parser.parse_args(["classify", *map(str, argv)])


@pytest.fixture
def two_models(tiny_checkpoint: Path, tmp_path: Path) -> list[Path]:
    """The tiny checkpoint under two run-folder names, as two table columns."""
    first, second = tmp_path / "alpha", tmp_path / "beta"
    shutil.copytree(tiny_checkpoint, first)
    shutil.copytree(tiny_checkpoint, second)
    return [first, second]


class TinyClassifier(nn.Module):
    """A stand-in for VGG-16-BN: 1000 ImageNet logits from any image, in a few parameters."""

    def __init__(self):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(3, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(x).flatten(1))


@pytest.fixture
def tiny_vgg(monkeypatch: pytest.MonkeyPatch) -> None:
    """torchvision's vgg16_bn replaced: a small network, and no network to download weights from."""
    from torchvision import models

    def fake_vgg16_bn(weights=None):
        if weights is not None:
            raise URLError("no route to host")
        return TinyClassifier()

    monkeypatch.setattr(models, "vgg16_bn", fake_vgg16_bn)


def test_wordnet_ids_map_to_imagenet_indices():
    assert classify.imagenet_index({"n01440764", "n02086240", "n15075141"}) == {
        "n01440764": 0, "n02086240": 155, "n15075141": 999}


def test_wordnet_like_folders_outside_imagenet_are_a_user_error(tmp_path: Path):
    root = make_imagefolder(tmp_path / "photos", ("n02086240", "n00000000"), per_class=1)
    with pytest.raises(UserError, match="1 are not: n00000000") as error:
        classify.labelled_photos(root)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("classes", [("people", "streets"), ("n02086240", "cats")])
def test_other_folders_are_scored_against_the_classifiers_view_of_the_colour_photo(tmp_path: Path, classes):
    root = make_imagefolder(tmp_path / "photos", classes, per_class=1)
    photo(seed=5).save(root / "loose.jpg")
    photos = classify.labelled_photos(root)
    assert photos.labels is None and len(photos.paths) == 3
    assert photos.label_source == classify.CLASSIFIED_TRUTH


def test_labels_follow_the_folders_and_gray_photos_are_dropped(tmp_path: Path):
    root = make_imagefolder(tmp_path / "photos", per_class=2)
    photo(seed=7).convert("L").save(root / WNIDS[1] / "gray.jpg")
    photos = classify.labelled_photos(root)
    assert photos.labels == [0, 0, 155, 155]
    assert [path.parent.name for path in photos.paths] == [WNIDS[0]] * 2 + [WNIDS[1]] * 2
    assert (photos.dropped_gray, photos.dropped_corrupt) == (1, 0)


def test_table_has_every_row_and_is_deterministic(tmp_path: Path, two_models: list[Path]):
    data = make_imagefolder(tmp_path / "photos")
    outputs = []
    for run in ("first", "second"):
        out = tmp_path / run
        args = parse(["--models", *two_models, "--data", data, "--out", out, "--batch-size", 4, "--seed", 3])
        assert args.func(args) == 0
        outputs.append(out)
    table = json.loads((outputs[0] / "table.json").read_text())
    rows = ["ground_truth", "gray", "random", "alpha", "beta"]
    assert list(table["top1"]) == rows
    assert all(0 <= value <= 100 for value in table["top1"].values())
    assert all(low <= table["top1"][row] <= high for row, (low, high) in table["ci95"].items())
    assert table["n_images"] == 6 and table["classifier"] == "efficientnet_lite0"
    assert table["models"] == ["alpha", "beta"]
    # the same weights colorize alike, so the two columns agree photo for photo
    assert table["paired"][-1] == {"first": "alpha", "second": "beta", "first_only": 0, "second_only": 0, "p_value": 1.0,
                                   "log_prob_difference": {"mean": 0.0, "ci95": None, "p_value": 1.0}}
    assert list(table["log_prob"]) == rows and all(value <= 0 for value in table["log_prob"].values())
    assert [(c["first"], c["second"]) for c in table["paired"]] == [("alpha", "gray"), ("beta", "gray"), ("alpha", "beta")]
    markdown = (outputs[0] / "table.md").read_text()
    assert "| random |" in markdown and "| Ground truth | 73.36 | 77.85 |" in markdown
    assert len((outputs[0] / "predictions.csv").read_text().splitlines()) == 7
    for name in ("table.json", "table.md", "predictions.csv"):
        assert (outputs[0] / name).read_bytes() == (outputs[1] / name).read_bytes()


def test_holdout_classifies_the_photos_training_held_out(tmp_path: Path, tiny_checkpoint: Path):
    from colorizer.data import hold_out

    data = make_imagefolder(tmp_path / "photos", per_class=8)
    held = hold_out(sorted(data.rglob("*.jpg")), data, 0.3)[1]
    args = parse(["--models", tiny_checkpoint, "--data", data, "--out", tmp_path / "out", "--holdout", 0.3])
    assert args.func(args) == 0
    rows = (tmp_path / "out" / "predictions.csv").read_text().splitlines()[1:]
    assert sorted(row.split(",")[0] for row in rows) == sorted(map(str, held))
    assert json.loads((tmp_path / "out" / "table.json").read_text())["holdout"] == 0.3
    args = parse(["--data", data, "--out", tmp_path / "out", "--holdout", 0.9])
    with pytest.raises(UserError, match="--holdout must lie in"):
        args.func(args)


def test_log_prob_difference_is_paired():
    # photo-to-photo spread far larger than the shift: only a paired comparison finds the shift
    first = [-5.0, -1.0, -3.0, -0.5, -2.0, -4.0]
    second = [value - 0.2 + 0.01 * i for i, value in enumerate(first)]
    difference = classify.log_prob_difference(first, second)
    assert difference["mean"] == pytest.approx(0.175, abs=1e-4)
    low, high = difference["ci95"]
    assert 0 < low < 0.175 < high and difference["p_value"] < 0.001
    assert classify.log_prob_difference([-1.0, -2.0], [-1.0, -2.0]) == {"mean": 0.0, "ci95": None, "p_value": 1.0}


def test_log_probs_score_the_label_and_fall_back_to_the_colour_photos_class(tmp_path: Path, tiny_vgg: None):
    """Without class folders the label is the class taken for the colour photo, so ground truth scores
    its own top log-probability."""
    data = make_imagefolder(tmp_path / "photos", ("people", "streets"), per_class=2)
    photos = classify.labelled_photos(data)
    weights = tmp_path / "vgg.pth"
    torch.save(TinyClassifier().state_dict(), weights)
    classifier = classify.load_classifier(f"vgg16_bn:{weights}")
    classified = classify.classify_variants(photos, classifier, {}, batch_size=3, temperature=0.38, seed=0,
                                            progress=False)
    top = classifier.log_probs([open_image(path).convert("RGB") for path in photos.paths]).max(1).values
    assert classified.label_log_probs["ground_truth"] == pytest.approx(top.tolist(), abs=1e-5)
    assert classified.labels == classified.predictions["ground_truth"]
    assert all(value <= 0 for value in classified.label_log_probs["gray"])


def test_limit_caps_the_photos(tmp_path: Path, tiny_checkpoint: Path, tiny_vgg: None):
    data = make_imagefolder(tmp_path / "photos")
    weights = tmp_path / "vgg.pth"
    torch.save(TinyClassifier().state_dict(), weights)
    args = parse(["--models", tiny_checkpoint, "--data", data, "--out", tmp_path / "out", "--limit", 2,
                  "--classifier", f"vgg16_bn:{weights}"])
    assert args.func(args) == 0
    table = json.loads((tmp_path / "out" / "table.json").read_text())
    assert table["n_images"] == 2 and table["limit"] == 2
    assert table["classifier"] == f"vgg16_bn:{weights}"
    assert len((tmp_path / "out" / "predictions.csv").read_text().splitlines()) == 3


def test_a_missing_gpu_is_a_user_error_before_any_model_loads(tmp_path: Path, tiny_checkpoint: Path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    data = make_imagefolder(tmp_path / "photos")
    args = parse(["--models", tiny_checkpoint, "--data", data, "--out", tmp_path / "out", "--device", "cuda"])
    with pytest.raises(UserError, match="no CUDA GPU is available"):
        args.func(args)
    assert not (tmp_path / "out").exists()


def test_mcnemar_counts_only_discordant_photos():
    result = classify.mcnemar_exact([True, True, True, False, True], [True, False, False, False, True])
    assert (result["first_only"], result["second_only"]) == (2, 0)
    assert result["p_value"] == pytest.approx(0.5)


@pytest.mark.parametrize("spec, message", [
    ("resnet50", "unknown classifier 'resnet50'"),
    ("efficientnet_lite0:weights.pth", "brings its own ImageNet weights"),
    ("vgg16_bn", "pass a weights file: --classifier vgg16_bn:"),
    ("vgg16_bn:/nonexistent/vgg.pth", "no such weights file"),
])
def test_bad_classifiers_are_one_line_user_errors(spec: str, message: str, tiny_vgg: None):
    with pytest.raises(UserError, match=message) as error:
        classify.load_classifier(spec)
    assert "\n" not in str(error.value)


def test_weights_files_that_do_not_fit_are_user_errors(tmp_path: Path, tiny_vgg: None):
    garbage, wrong = tmp_path / "garbage.pth", tmp_path / "wrong.pth"
    garbage.write_bytes(b"not a checkpoint")
    torch.save(nn.Linear(2, 2).state_dict(), wrong)
    with pytest.raises(UserError, match="not a PyTorch weights file"):
        classify.load_classifier(f"vgg16_bn:{garbage}")
    with pytest.raises(UserError, match="does not fit TinyClassifier"):
        classify.load_classifier(f"vgg16_bn:{wrong}")


def test_models_need_distinct_column_names(tiny_checkpoint: Path):
    with pytest.raises(UserError, match="two columns would be called"):
        classify.load_colorizers([str(tiny_checkpoint), str(tiny_checkpoint)], "cpu")
