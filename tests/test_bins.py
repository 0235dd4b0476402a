"""The 313 ab bins, the exact nearest-bin lookup, and soft encoding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from colorizer.bins import NUM_BINS, ab_bins, colour_modes, nearest_bins

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"


def _brute_force(ab: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(P, k) squared distances and indices of the k nearest bins to each pixel of (N, 2, H, W), in float64."""
    pixels = ab.double().permute(0, 2, 3, 1).reshape(-1, 2)
    d2 = torch.cdist(pixels, ab_bins().double()) ** 2
    d2_k, idx_k = d2.topk(k, dim=1, largest=False)
    return d2_k, idx_k


def _flat(t: torch.Tensor) -> torch.Tensor:
    """(N, k, H, W) -> (P, k) in the pixel order of `_brute_force`."""
    return t.permute(0, 2, 3, 1).reshape(-1, t.shape[1])


def _assert_same_neighbours(ab: torch.Tensor, k: int) -> None:
    idx, d2 = nearest_bins(ab, k)
    assert idx.shape == d2.shape == (ab.shape[0], k, *ab.shape[2:])
    assert idx.dtype == torch.int64
    d2_ref, _ = _brute_force(ab, k)
    idx, d2 = _flat(idx), _flat(d2).double()
    pixels = ab.double().permute(0, 2, 3, 1).reshape(-1, 2)
    # the returned distances are the true distances to the returned bins ...
    true_d2 = ((ab_bins().double()[idx] - pixels[:, None]) ** 2).sum(-1)
    torch.testing.assert_close(d2, true_d2, atol=0.05, rtol=1e-5)
    # ... and they are the k smallest ones (ties among equidistant bins may pick either, so compare distances)
    torch.testing.assert_close(true_d2, d2_ref, atol=0.05, rtol=1e-5)
    assert bool((true_d2[:, 1:] >= true_d2[:, :-1] - 1e-3).all()), "not sorted nearest first"
    assert bool((idx.sort(1).values.diff(dim=1) > 0).all()), "a bin repeated among the k nearest"


def test_bins_shape_and_grid():
    bins = ab_bins()
    assert bins.shape == (NUM_BINS, 2) == (313, 2)
    assert bins.dtype == torch.float32
    assert torch.equal(bins, (bins / 10).round() * 10), "bin centres must lie on the 10-grid"
    assert len({tuple(p) for p in bins.tolist()}) == 313, "duplicate bins"
    assert bins.abs().max() <= 110
    assert [0.0, 0.0] in bins.tolist()
    # sorted by (a, b)
    keys = (bins[:, 0] * 1000 + bins[:, 1]).tolist()
    assert keys == sorted(keys)


def test_bins_equal_official_pts_in_hull():
    path = REFERENCE / "pts_in_hull.npy"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    official = np.load(path)
    assert official.shape == (313, 2)
    assert {tuple(p) for p in official.astype(float).tolist()} == {tuple(p) for p in ab_bins().double().tolist()}


def test_nearest_bins_equals_brute_force_inside_grid():
    g = torch.Generator().manual_seed(0)
    ab = torch.rand(2, 2, 40, 50, generator=g) * 220 - 110  # the whole grid square, incl. far off-gamut corners
    _assert_same_neighbours(ab, 5)


def test_nearest_bins_equals_brute_force_realistic_ab():
    from colorizer.color import rgb_to_lab

    g = torch.Generator().manual_seed(1)
    ab = rgb_to_lab(torch.rand(1, 3, 30, 30, generator=g))[:, 1:]
    _assert_same_neighbours(ab, 5)


def test_nearest_bins_exact_bin_centres():
    bins = ab_bins()
    ab = bins.T.reshape(1, 2, 1, NUM_BINS)
    idx, d2 = nearest_bins(ab, 5)
    assert torch.equal(idx[0, 0, 0], torch.arange(NUM_BINS)), "a bin centre's nearest bin is itself"
    assert torch.all(d2[:, 0] < 1e-6)
    # on the grid the next neighbours are at distance 10 (squared 100) or more
    assert torch.all(d2[:, 1:] >= 100 - 1e-3)
    _assert_same_neighbours(ab, 5)
    # midway between two bins and at cell corners (ties)
    _assert_same_neighbours(ab + 5.0, 5)
    _assert_same_neighbours(ab - torch.tensor([5.0, 0.0]).reshape(1, 2, 1, 1), 5)


def test_nearest_bins_outside_the_grid():
    """Values beyond [-110, 110] must still get their true nearest bins, as brute force does.

    Real sRGB colours never go there, but the function promises an exact search for any ab.
    """
    g = torch.Generator().manual_seed(2)
    ab = torch.rand(1, 2, 20, 20, generator=g) * 400 - 200
    ab[0, :, 0, 0] = torch.tensor([300.0, 0.0])
    ab[0, :, 0, 1] = torch.tensor([110.0, 110.0])
    ab[0, :, 0, 2] = torch.tensor([-500.0, -500.0])
    _assert_same_neighbours(ab, 5)


@pytest.mark.parametrize("k", [1, 8])
def test_nearest_bins_other_k(k):
    g = torch.Generator().manual_seed(3)
    _assert_same_neighbours(torch.rand(1, 2, 17, 13, generator=g) * 200 - 100, k)





def _distribution(weights: dict[tuple[float, float], float]) -> torch.Tensor:
    """Probabilities on the bins nearest the given ab points, the rest spread thinly."""
    bins = ab_bins()
    probabilities = torch.full((NUM_BINS,), 1e-6)
    for (a, b), weight in weights.items():
        probabilities[(bins - torch.tensor([a, b])).norm(dim=1).argmin()] += weight
    return probabilities / probabilities.sum()


def test_colour_modes_sum_a_hue_spread_over_many_bins():
    # skin: ten orange bins at 8.5 % each; gray: one bin at 15 %, the likeliest single bin
    skin = {(a, b): 0.085 for a in (10, 20, 30) for b in (20, 30, 40)} | {(20, 50): 0.085}
    ab, probability = colour_modes(_distribution(skin | {(0, 0): 0.15}))
    assert probability[0] > 0.8 and ab[0, 0] > 10 and ab[0, 1] > 20  # the orange mode comes first
    assert ab[1].norm() < 5 and abs(probability[1] - 0.15) < 0.01  # gray second, with its own share
    assert torch.isclose(probability.sum(), torch.tensor(1.0)) and (probability.diff() <= 0).all()


def test_colour_modes_keep_distinct_hues_apart_and_gray_first_when_it_leads():
    ab, probability = colour_modes(_distribution({(0, 0): 0.5, (0, -40): 0.3, (50, 0): 0.2}))
    assert ab[0].norm() < 5 and probability[0] > 0.49  # gray: really the likeliest, with no hue
    hues = torch.rad2deg(torch.atan2(ab[1:3, 1], ab[1:3, 0]))
    assert torch.allclose(hues, torch.tensor([-90.0, 0.0]), atol=5)
    assert torch.allclose(probability[1:3], torch.tensor([0.3, 0.2]), atol=0.01)
