"""sRGB <-> CIELAB against scikit-image, the round trip, and the L normalisation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from skimage.color import lab2rgb, rgb2lab

from colorizer.color import lab_to_rgb, normalize_l, rgb_to_lab


def _colours() -> np.ndarray:
    """(1, 8 + 1 + 400, 3) sRGB: the 8 cube corners (gamut corners), mid grey, and seeded random colours."""
    corners = np.array(list(itertools.product((0.0, 1.0), repeat=3)))
    rng = np.random.default_rng(0)
    return np.concatenate([corners, [[0.5, 0.5, 0.5]], rng.random((400, 3))])[None]


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1)[None].float()


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    return t[0].permute(1, 2, 0).double().numpy()


def test_rgb_to_lab_matches_skimage():
    rgb = _colours()
    ours = _to_numpy(rgb_to_lab(_to_tensor(rgb)))
    np.testing.assert_allclose(ours, rgb2lab(rgb, illuminant="D65"), atol=1e-3)


def test_gamut_corner_values():
    """Well-known D65 values: white is L=100, a=b=0; black L=0; pure red a~80, blue b~-108."""
    lab = _to_numpy(rgb_to_lab(_to_tensor(_colours()[:, :8])))[0]
    white, black = lab[7], lab[0]
    np.testing.assert_allclose(white, [100.0, 0.0, 0.0], atol=1e-2)
    np.testing.assert_allclose(black, [0.0, 0.0, 0.0], atol=1e-3)
    red, blue = lab[4], lab[1]
    np.testing.assert_allclose(red, [53.24, 80.09, 67.20], atol=0.05)
    np.testing.assert_allclose(blue, [32.30, 79.19, -107.86], atol=0.05)


def test_lab_to_rgb_matches_skimage_in_gamut():
    lab = rgb2lab(_colours())  # in-gamut Lab, so no clipping is involved
    ours = _to_numpy(lab_to_rgb(_to_tensor(lab)))
    np.testing.assert_allclose(ours, lab2rgb(lab), atol=1e-3)


def test_round_trip():
    rgb = _to_tensor(_colours())
    back = lab_to_rgb(rgb_to_lab(rgb))
    torch.testing.assert_close(back, rgb, atol=1e-4, rtol=0)


def test_batched_and_image_shaped():
    rng = np.random.default_rng(1)
    rgb = torch.from_numpy(rng.random((3, 3, 5, 7))).float()
    lab = rgb_to_lab(rgb)
    assert lab.shape == (3, 3, 5, 7)
    for i in range(3):
        expected = rgb2lab(rgb[i].permute(1, 2, 0).double().numpy())
        np.testing.assert_allclose(_to_numpy(lab[i : i + 1]), expected, atol=1e-3)


def test_lab_to_rgb_clips_out_of_gamut():
    lab = torch.tensor([[100.0, 100.0, -100.0], [10.0, -100.0, 100.0], [50.0, 0.0, 0.0]]).T.reshape(1, 3, 1, 3)
    rgb = lab_to_rgb(lab)
    assert rgb.min() >= 0.0 and rgb.max() <= 1.0


@pytest.mark.parametrize("value, expected", [(0.0, -1.0), (50.0, 0.0), (100.0, 1.0), (25.0, -0.5)])
def test_normalize_l_points(value, expected):
    assert normalize_l(torch.tensor([value])).item() == pytest.approx(expected)


def test_normalize_l_range():
    lightness = rgb_to_lab(_to_tensor(_colours()))[:, :1]
    norm = normalize_l(lightness)
    assert norm.shape == lightness.shape
    assert norm.min() >= -1.0 - 1e-5 and norm.max() <= 1.0 + 1e-5
    assert norm.min() < -0.99 and norm.max() > 0.99  # black and white reach the ends
