"""Annealed mean and its temperature limits, entropy, and the full-resolution Lab join."""

from __future__ import annotations

import math

import pytest
import torch

from colorizer.bins import NUM_BINS, ab_bins
from colorizer.color import lab_to_rgb, rgb_to_lab
from colorizer.decode import (
    DEFAULT_TEMPERATURE,
    annealed_mean,
    colorize_lab,
    colour_ab,
    entropy,
    guided_upsample,
    upsample,
    vote_logits,
)


def _index(a: float, b: float) -> int:
    return int(((ab_bins() == torch.tensor([a, b])).all(1)).nonzero()[0, 0])


def _two_bin_logits(p: float = 0.6) -> torch.Tensor:
    """One pixel with probability p on bin (0, 0) and 1 - p on bin (50, 0), ~0 elsewhere."""
    logits = torch.full((1, NUM_BINS, 1, 1), -1e4)
    logits[0, _index(0, 0)] = math.log(p)
    logits[0, _index(50, 0)] = math.log(1 - p)
    return logits


def _random_logits(seed: int, h: int = 3, w: int = 4) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, NUM_BINS, h, w, generator=g) * 3


def test_default_temperature_is_the_papers():
    assert DEFAULT_TEMPERATURE == 0.38


def test_t1_is_the_expectation():
    logits = _random_logits(0)
    ab = annealed_mean(logits, 1.0)
    assert ab.shape == (2, 2, 3, 4)
    probs = torch.softmax(logits.double(), 1)
    expected = torch.einsum("nqhw,qc->nchw", probs, ab_bins().double())
    torch.testing.assert_close(ab.double(), expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("temperature", [0.0, 1e-3])
def test_t_to_zero_is_the_mode(temperature):
    logits = _random_logits(1)
    top = logits.argmax(1, keepdim=True)
    logits.scatter_add_(1, top, torch.full_like(top, 0.05, dtype=logits.dtype))  # a margin of 0.05 over the runner-up
    mode = ab_bins()[top[:, 0]].permute(0, 3, 1, 2)
    torch.testing.assert_close(annealed_mean(logits, temperature), mode, atol=1e-3, rtol=0)


def test_t_zero_is_exactly_the_mode():
    logits = _two_bin_logits(0.5 + 1e-3)  # nearly tied: only exact argmax gives the mode exactly
    assert annealed_mean(logits, 0.0)[0, :, 0, 0].tolist() == [0.0, 0.0]
    negative = torch.full((1, NUM_BINS, 1, 1), -5.0)
    negative[0, _index(-30, 40)] = -4.0
    assert annealed_mean(negative, 0.0)[0, :, 0, 0].tolist() == [-30.0, 40.0]


def test_intermediate_temperature_lies_between_mean_and_mode():
    p = 0.6
    logits = _two_bin_logits(p)
    previous = None
    for t in (1.0, 0.7, DEFAULT_TEMPERATURE, 0.2, 0.05):
        a = annealed_mean(logits, t)[0, :, 0, 0]
        # by hand: re-tempered weights p^(1/T) and (1-p)^(1/T), normalised, on a = 0 and a = 50
        q = (1 - p) ** (1 / t) / (p ** (1 / t) + (1 - p) ** (1 / t))
        assert a[0].item() == pytest.approx(50 * q, abs=1e-3)
        assert a[1].item() == pytest.approx(0.0, abs=1e-4)
        assert 0.0 <= a[0].item() <= 50 * (1 - p) + 1e-4  # between the mode (0) and the mean (20)
        if previous is not None:
            assert a[0] < previous  # moves monotonically from the mean towards the mode
        previous = a[0]
    mid = annealed_mean(logits, DEFAULT_TEMPERATURE)[0, 0, 0, 0].item()
    assert 0.5 < mid < 19.5


def test_annealed_mean_of_random_logits_within_mean_mode_box():
    """For a nearly one-sided distribution the annealed mean's saturation grows as T falls."""
    logits = torch.full((1, NUM_BINS, 1, 1), 0.0)
    logits[0, _index(60, 60)] = 6.0  # a saturated mode over a grey-centred background
    sat = [annealed_mean(logits, t)[0, :, 0, 0].norm().item() for t in (1.0, DEFAULT_TEMPERATURE, 0.0)]
    assert sat[0] < sat[1] <= sat[2] + 1e-4
    assert sat[2] == pytest.approx(math.hypot(60, 60), abs=1e-4)


def test_entropy_limits():
    uniform = torch.zeros(1, NUM_BINS, 2, 3)
    torch.testing.assert_close(entropy(uniform), torch.ones(1, 2, 3))
    peaked = torch.zeros(1, NUM_BINS, 2, 3)
    peaked[:, 17] = 50.0
    assert entropy(peaked).shape == (1, 2, 3)
    assert torch.all(entropy(peaked) < 1e-6) and torch.all(entropy(peaked) >= 0)
    half = _two_bin_logits(0.5)
    assert entropy(half).item() == pytest.approx(math.log(2) / math.log(NUM_BINS), rel=1e-4)
    mixed = entropy(_random_logits(2))
    assert torch.all((mixed > 0) & (mixed < 1))


def test_upsample_size():
    x = torch.rand(2, 2, 7, 5)
    assert upsample(x, (29, 13)).shape == (2, 2, 29, 13)
    const = torch.full((1, 2, 4, 4), 3.0)
    torch.testing.assert_close(upsample(const, (17, 9)), torch.full((1, 2, 17, 9), 3.0))


@pytest.mark.parametrize("size, ab_size", [((37, 91), (10, 23)), ((64, 64), (16, 16)), ((101, 13), (5, 3)), ((8, 8), (8, 8))])
def test_colorize_lab_any_size(size, ab_size):
    g = torch.Generator().manual_seed(3)
    lightness = torch.rand(2, 1, *size, generator=g) * 100
    ab = torch.rand(2, 2, *ab_size, generator=g) * 220 - 110  # out-of-gamut values included
    rgb = colorize_lab(lightness, ab)
    assert rgb.shape == (2, 3, *size)
    assert rgb.min() >= 0.0 and rgb.max() <= 1.0


def test_colorize_lab_gray_ab_gives_gray():
    g = torch.Generator().manual_seed(4)
    lightness = torch.rand(1, 1, 21, 34, generator=g) * 100
    rgb = colorize_lab(lightness, torch.zeros(1, 2, 6, 9))
    torch.testing.assert_close(rgb[:, 0], rgb[:, 1], atol=1e-4, rtol=0)
    torch.testing.assert_close(rgb[:, 1], rgb[:, 2], atol=1e-4, rtol=0)
    # and the grey level is the one the lightness asks for
    torch.testing.assert_close(rgb_to_lab(rgb)[:, :1], lightness, atol=0.05, rtol=0)


def test_colorize_lab_keeps_full_resolution_lightness():
    """The original L passes through: a sharp L edge stays sharp even with coarse ab."""
    rgb = torch.rand(1, 3, 32, 48, generator=torch.Generator().manual_seed(5)) * 0.6 + 0.2
    lab = rgb_to_lab(rgb)
    coarse_ab = torch.nn.functional.avg_pool2d(lab[:, 1:], 4)
    out = colorize_lab(lab[:, :1], coarse_ab)
    torch.testing.assert_close(rgb_to_lab(out)[:, :1], lab[:, :1], atol=3.0, rtol=0)
    # with the exact ab, the image comes back
    torch.testing.assert_close(colorize_lab(lab[:, :1], lab[:, 1:]), lab_to_rgb(lab), atol=1e-5, rtol=0)


def _cells_of(colours: torch.Tensor) -> torch.Tensor:
    """Logits (1, 313, h, w) sure of the bin nearest each cell's ab in `colours` (2, h, w)."""
    bins = ab_bins()
    nearest = (colours.permute(1, 2, 0)[..., None, :] - bins).norm(dim=-1).argmin(-1)
    return torch.nn.functional.one_hot(nearest, NUM_BINS).permute(2, 0, 1)[None].float() * 8


def test_the_vote_removes_a_small_patch_of_unlikely_colour_and_keeps_regions_apart():
    colours = torch.zeros(2, 16, 16)
    colours[:, :, 8:] = torch.tensor([-40.0, 40.0])[:, None, None]  # a green right half
    colours[:, 4, 3] = torch.tensor([60.0, 40.0])  # a one-cell red blotch on the gray left half
    lightness = torch.full((1, 1, 64, 64), 40.0)
    lightness[..., 32:] = 70.0  # the halves differ in lightness
    logits = _cells_of(colours)
    before = annealed_mean(logits)[0]
    after = annealed_mean(vote_logits(logits, lightness))[0]
    assert before[:, 4, 3].norm() > 50 and after[:, 4, 3].norm() < 5
    # either side of the edge keeps its own colour right up to it
    assert after[:, :, 7].norm(dim=0).max() < 5 and (after[:, :, 8] - torch.tensor([-40.0, 40.0])[:, None]).norm(dim=0).max() < 8
    assert torch.equal(vote_logits(logits, lightness, window=1), logits)


def test_guided_upsampling_puts_colour_edges_on_the_photos_edges():
    lightness = torch.full((1, 1, 64, 64), 30.0)
    lightness[..., 40:] = 80.0  # the photo's edge, halfway between two cells' centres
    coarse = torch.zeros(1, 2, 8, 8)
    coarse[:, 0, :, 5:] = 50.0
    bilinear, guided = upsample(coarse, (64, 64))[0, 0, 32], guided_upsample(coarse, lightness, radius=1.0)[0, 0, 32]
    # bilinear ramps over the 8 px between the cells; guided steps where L steps
    assert bilinear[39] - bilinear[37] > 10 and guided[39] - guided[37] < 4
    assert guided[40] - guided[39] > 25 > bilinear[40] - bilinear[39]
    assert torch.equal(guided_upsample(coarse, lightness, radius=0)[0, 0, 32], bilinear)


def test_saturation_scales_the_colour_and_zero_is_gray():
    logits = _random_logits(3)
    lightness = torch.full((2, 1, 12, 16), 50.0)
    ab = colour_ab(lightness, logits)
    torch.testing.assert_close(colour_ab(lightness, logits, saturation=1.5), 1.5 * ab)
    assert colour_ab(lightness, logits, saturation=0.0).abs().max() == 0
