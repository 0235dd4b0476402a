"""Colours from a reference or a palette, and alternatives: the math on synthetic logits, and the Colorizer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import photo
from PIL import Image

from colorizer import reference
from colorizer.bins import ab_bins
from colorizer.color import rgb_to_lab
from colorizer.decode import annealed_mean
from colorizer.errors import UserError
from colorizer.infer import Colorizer

UNIFORM_PRIOR = torch.full((313,), 1 / 313)


def ab_of(rgb: tuple[int, int, int]) -> torch.Tensor:
    return rgb_to_lab(torch.tensor(rgb, dtype=torch.float32)[None, :, None, None] / 255)[0, 1:, 0, 0]


def bin_near(ab: torch.Tensor) -> int:
    return int((ab_bins() - ab).norm(dim=1).argmin())


def two_region_logits(left: list[torch.Tensor], right: list[torch.Tensor], size: int = 16) -> torch.Tensor:
    """(1, 313, size, size) logits: the left half likes the colours `left` about equally, the right `right`."""
    logits = torch.zeros(1, 313, size, size)
    for colours, columns in ((left, slice(0, size // 2)), (right, slice(size // 2, size))):
        for i, ab in enumerate(colours):
            logits[0, bin_near(ab), :, columns] = 6.0 - 0.2 * i  # a slight preference, the first likeliest
    return logits


RED, GREEN, BLUE, YELLOW = ab_of((200, 30, 30)), ab_of((40, 160, 40)), ab_of((30, 60, 200)), ab_of((230, 210, 30))


def nearest_colour(ab: torch.Tensor, colours: list[torch.Tensor]) -> torch.Tensor:
    """Per pixel of ab (2, H, W), the index of the nearest of `colours`."""
    return torch.stack([(ab - c[:, None, None]).norm(dim=0) for c in colours]).argmin(0)


def test_a_palette_pulls_each_region_to_its_palette_colour_and_no_other():
    logits = two_region_logits([RED, GREEN], [YELLOW, BLUE])
    automatic = annealed_mean(logits)[0]
    palette = reference.palette_histogram(torch.stack([GREEN, BLUE]), torch.tensor([1.0, 1.0]))
    guided = annealed_mean(reference.guided_logits(logits, reference.Guide(palette), UNIFORM_PRIOR, 1.0))[0]
    colours = [RED, GREEN, BLUE, YELLOW]
    # automatically each half is a blend of its two likes; with the palette, the palette's one
    assert (nearest_colour(guided[:, :, :8], colours) == 1).all()  # green, not red
    assert (nearest_colour(guided[:, :, 8:], colours) == 2).all()  # blue, not yellow
    assert (guided[:, :, :8] - GREEN[:, None, None]).norm(dim=0).max() < 12
    assert (guided[:, :, 8:] - BLUE[:, None, None]).norm(dim=0).max() < 12
    assert (automatic[:, :, :8] - GREEN[:, None, None]).norm(dim=0).min() > 20


def test_strength_zero_returns_the_logits_themselves_and_more_strength_pulls_further():
    logits = two_region_logits([RED, GREEN], [YELLOW, BLUE])
    guide = reference.Guide(reference.palette_histogram(GREEN[None], torch.ones(1)))
    assert reference.guided_logits(logits, guide, UNIFORM_PRIOR, 0.0) is logits
    distance = [float((annealed_mean(reference.guided_logits(logits, guide, UNIFORM_PRIOR, s))[0, :, :, :8]
                       - GREEN[:, None, None]).norm(dim=0).mean()) for s in (0.01, 0.05, 1.0)]
    assert distance[0] > distance[1] > distance[2]


def test_hints_win_where_they_are():
    logits = two_region_logits([RED, GREEN], [YELLOW, BLUE])
    guide = reference.Guide(reference.palette_histogram(GREEN[None], torch.ones(1)))
    nearness = torch.zeros(1, 1, 16, 16)
    nearness[..., :8] = 1.0  # a hint decides the left half
    guided = reference.guided_logits(logits, guide, UNIFORM_PRIOR, 1.0, nearness)
    assert torch.allclose(annealed_mean(guided)[..., :8], annealed_mean(logits)[..., :8], atol=1e-4)
    assert not torch.allclose(annealed_mean(guided)[..., 8:], annealed_mean(logits)[..., 8:], atol=1)


def test_a_reference_matches_regions_by_what_the_model_sees_there():
    """Reference cells the model sees like the photo's left half are red; those like its right half blue:
    each half takes its own match's colour, not the reference's average."""
    photo_logits = two_region_logits([RED, GREEN], [YELLOW, BLUE])
    reference_ab = torch.cat([RED[:, None, None].expand(2, 16, 8), BLUE[:, None, None].expand(2, 16, 8)], 2)[None]
    guide = reference.reference_guide(photo_logits, reference_ab)
    guided = annealed_mean(reference.guided_logits(photo_logits, guide, UNIFORM_PRIOR, 1.0))[0]
    colours = [RED, GREEN, BLUE, YELLOW]
    assert (nearest_colour(guided[:, :, :8], colours) == 0).all()
    assert (nearest_colour(guided[:, :, 8:], colours) == 2).all()


def test_alternatives_differ_and_each_keeps_one_colour_per_region():
    logits = two_region_logits([RED, GREEN], [YELLOW, BLUE], size=24)
    alternatives = [annealed_mean(each)[0] for each in reference.alternative_logits(logits, 4)]
    assert len(alternatives) == 4
    colours = [RED, GREEN, BLUE, YELLOW]
    picks = set()
    for ab in alternatives:
        left, right = nearest_colour(ab[:, 2:-2, 2:10], colours), nearest_colour(ab[:, 2:-2, 14:22], colours)
        # coherent: one colour over each region's inside, and it is one the region likes
        assert left.unique().numel() == 1 and right.unique().numel() == 1
        assert int(left[0, 0]) in (0, 1) and int(right[0, 0]) in (2, 3)
        picks.add((int(left[0, 0]), int(right[0, 0])))
    assert len(picks) == 4  # all four combinations, each a different colorization


def test_alternatives_come_likeliest_first():
    logits = two_region_logits([RED, GREEN], [YELLOW, BLUE], size=24)
    first = annealed_mean(reference.alternative_logits(logits, 1)[0])[0]
    colours = [RED, GREEN, BLUE, YELLOW]
    assert int(nearest_colour(first[:, 12:13, 4:5], colours)[0, 0]) == 0  # each region's preferred colour
    assert int(nearest_colour(first[:, 12:13, 20:21], colours)[0, 0]) == 3


@pytest.mark.parametrize("palette, message", [
    ("#12345g", "not a colour"), ("#8b4513:x", "weight is not a number"), ("#8b4513:0,#87ceeb:0", "sum to a positive"),
    ("", "not a colour"), ([], "palette is empty"), ([(300, 0, 0)], "expected #rrggbb"), ("#8b4513:-1", "from 0 up"),
])
def test_bad_palettes_are_one_line_errors(palette, message):
    with pytest.raises(UserError, match=message):
        reference.parse_palette(palette)


def test_palettes_parse_in_every_form():
    assert reference.parse_palette("#8b4513, #87ceeb:0.5,#fff") == ([(139, 69, 19), (135, 206, 235), (255, 255, 255)],
                                                                    [1.0, 0.5, 1.0])
    assert reference.parse_palette([(1, 2, 3), ("#000000", 2), ((4, 5, 6), 0.5)]) == (
        [(1, 2, 3), (0, 0, 0), (4, 5, 6)], [1.0, 2.0, 0.5])


@pytest.mark.parametrize("strength", [-0.1, 1.5, "1", True, float("nan")])
def test_strength_out_of_range_is_a_one_line_error(strength):
    with pytest.raises(UserError, match="strength must be a number from 0 to 1"):
        reference.check_strength(strength)


# the Colorizer, on an untrained tiny model


@pytest.fixture(scope="module")
def colorizer(tiny_checkpoint):
    return Colorizer.load(tiny_checkpoint)


def gray_square(side: int = 40) -> Image.Image:
    return Image.new("RGB", (side, side), (128, 128, 128))


def test_a_one_colour_reference_turns_a_gray_square_that_colour(colorizer):
    red = Image.new("RGB", (32, 24), (200, 30, 30))
    result = colorizer.colorize(gray_square(), reference=red)
    ab = rgb_to_lab(torch.from_numpy(np.asarray(result, dtype=np.float32) / 255).permute(2, 0, 1)[None])[0, 1:]
    target = ab_of((200, 30, 30))
    assert (ab - target[:, None, None]).norm(dim=0).max() < 15
    automatic = np.asarray(colorizer.colorize(gray_square()), dtype=np.float32)
    assert np.abs(np.asarray(result, dtype=np.float32) - automatic).mean() > 10


def test_strength_zero_equals_automatic_exactly(colorizer):
    image = photo(48, 40, seed=3)
    automatic = np.asarray(colorizer.colorize(image))
    for kwargs in ({"reference": photo(30, 30, seed=5)}, {"palette": "#8b4513,#87ceeb:0.5"}):
        assert np.array_equal(np.asarray(colorizer.colorize(image, strength=0, **kwargs)), automatic)


def test_alternatives_are_k_images_the_size_of_the_input(colorizer):
    image = photo(50, 30, seed=2)
    alternatives = colorizer.alternatives(image, k=3)
    assert len(alternatives) == 3 and all(a.size == (50, 30) and a.mode == "RGB" for a in alternatives)
    assert len({a.tobytes() for a in alternatives}) == 3


@pytest.mark.parametrize("k", [0, 17, 2.5])
def test_bad_alternative_counts_are_one_line_errors(colorizer, k):
    with pytest.raises(UserError, match="from 1 to 16"):
        colorizer.alternatives(photo(), k=k)


def test_a_gray_reference_is_a_one_line_error(colorizer):
    with pytest.raises(UserError, match="carries no colour"):
        colorizer.colorize(photo(), reference=photo().convert("L"))
    with pytest.raises(UserError, match="strength"):
        colorizer.colorize(photo(), palette="#ff0000", strength=2)


def test_without_reference_palette_or_alternatives_the_colours_are_todays(colorizer):
    from colorizer.decode import colorize_logits
    from colorizer.images import to_pil

    image = photo(48, 40, seed=4)
    lightness = Colorizer.lightness(image)
    today = to_pil(colorize_logits(lightness, colorizer.logits(lightness)))  # the decoding as it was
    assert colorizer.colorize(image).tobytes() == today.tobytes()


# the command line

from colorizer.cli import main  # noqa: E402


def test_colorize_writes_alternatives_beside_the_result(tiny_checkpoint, tmp_path):
    source = tmp_path / "photo.jpg"
    photo(48, 40, seed=1).save(source, quality=95)
    Image.new("RGB", (20, 20), (30, 60, 200)).save(tmp_path / "blue.png")
    out = tmp_path / "out"
    assert main(["colorize", str(source), "--out", str(out), "--model", str(tiny_checkpoint), "--device", "cpu",
                 "--reference", str(tmp_path / "blue.png"), "--reference-strength", "0.8", "--alternatives", "3"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["photo.alt1.png", "photo.alt2.png", "photo.alt3.png", "photo.png"]
    plain = tmp_path / "plain"
    assert main(["colorize", str(source), "--out", str(plain), "--model", str(tiny_checkpoint), "--device", "cpu"]) == 0
    assert Image.open(plain / "photo.png").tobytes() == Colorizer.load(tiny_checkpoint).colorize(Image.open(source)).tobytes()
    assert Image.open(plain / "photo.png").tobytes() != Image.open(out / "photo.png").tobytes()


@pytest.mark.parametrize("options, message", [
    (["--palette", "#zzzzzz"], "not a colour"), (["--palette", "#ff0000:0"], "sum to a positive"),
    (["--palette", "#ff0000", "--reference-strength", "1.5"], "strength must be a number from 0 to 1"),
    (["--alternatives", "0"], "from 1 to 16"), (["--alternatives", "17"], "from 1 to 16"),
    (["--reference", "missing.png"], "missing.png: cannot read"), (["--reference", "GRAY"], "carries no colour"),
    (["--reference", "NOTIMAGE"], "not an image"),
])
def test_bad_reference_options_are_one_line_errors_and_write_nothing(tiny_checkpoint, tmp_path, capsys, options, message):
    source = tmp_path / "photo.jpg"
    photo().save(source)
    photo().convert("L").save(tmp_path / "gray.png")
    (tmp_path / "notimage.png").write_bytes(b"not an image")
    names = {"GRAY": str(tmp_path / "gray.png"), "NOTIMAGE": str(tmp_path / "notimage.png")}
    out = tmp_path / "out"
    assert main(["colorize", str(source), "--out", str(out), "--model", str(tiny_checkpoint), "--device", "cpu",
                 *[names.get(o, o) for o in options]]) == 1
    error = capsys.readouterr().err.strip()
    assert message in error and len(error.splitlines()) == 1
    assert not out.exists() or not any(out.iterdir())


def test_eval_reference_half_scores_both_halves_and_alternatives(tiny_checkpoint, photo_dir, tmp_path, capsys):
    import json

    out = tmp_path / "eval.json"
    assert main(["eval", "--model", str(tiny_checkpoint), "--data", str(photo_dir), "--reference", "half",
                 "--alternatives", "2", "--json", str(out), "--device", "cpu"]) == 0
    results = json.loads(out.read_text())
    assert set(results) == {"auto_psnr", "reference_psnr", "auto_intersection", "reference_intersection",
                            "single_psnr", "best_alternative_psnr", "alternative_spread", "photos", "gray_references_left_out"}
    assert 0 <= results["reference_intersection"] <= 1 and results["alternative_spread"] > 0
    assert "each top half the reference of its bottom half" in capsys.readouterr().out
