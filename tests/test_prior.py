"""Bin counts, the smoothed empirical prior and the class-rebalancing weights (equation 4)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from colorizer.bins import NUM_BINS, ab_bins
from colorizer.color import rgb_to_lab
from colorizer.prior import bin_counts, rebalance_weights, smooth_prior

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"


def _index(a: float, b: float) -> int:
    matches = ((ab_bins() == torch.tensor([a, b])).all(1)).nonzero()
    assert len(matches) == 1, f"({a}, {b}) is not a bin"
    return int(matches[0, 0])


def _one_hot_counts(a: float, b: float, count: float = 7.0) -> np.ndarray:
    counts = np.zeros(NUM_BINS)
    counts[_index(a, b)] = count
    return counts


def test_smooth_prior_single_bin_by_hand():
    """A Gaussian of sigma 5 ab units = 0.5 grid steps, separable: weight exp(-(i^2 + j^2) / (2 * 0.5^2))."""
    prior = smooth_prior(_one_hot_counts(0.0, 0.0)).numpy()
    assert prior.shape == (NUM_BINS,)
    assert prior.dtype == np.float64
    assert prior.sum() == pytest.approx(1.0)
    g = np.exp(-np.arange(3) ** 2 / (2 * 0.5**2))  # 1-d weights for offsets 0, 1, 2 grid steps
    norm = (g[0] + 2 * g[1] + 2 * g[2]) ** 2  # all 25 cells within 2 steps of (0, 0) are bins
    for (da, db), expected in {
        (0, 0): g[0] * g[0],
        (10, 0): g[1] * g[0],
        (0, -10): g[0] * g[1],
        (10, 10): g[1] * g[1],
        (-20, 0): g[2] * g[0],
        (20, -10): g[2] * g[1],
    }.items():
        assert prior[_index(da, db)] == pytest.approx(expected / norm, rel=1e-6), (da, db)
    # the right Gaussian ratios between neighbours
    centre = prior[_index(0, 0)]
    assert prior[_index(10, 0)] / centre == pytest.approx(math.exp(-2), rel=1e-6)
    assert prior[_index(10, 10)] / centre == pytest.approx(math.exp(-4), rel=1e-6)
    # mass reaches only grid neighbours (the filter's truncation at 4 sigma = 2 steps)
    near = {_index(a, b) for a in range(-20, 30, 10) for b in range(-20, 30, 10)}
    far = np.array([i for i in range(NUM_BINS) if i not in near])
    assert np.all(prior[far] == 0)
    assert np.all(prior[sorted(near)] > 0)


def test_smooth_prior_is_linear_and_scale_free():
    rng = np.random.default_rng(0)
    c1, c2 = rng.integers(0, 50, NUM_BINS).astype(float), rng.integers(0, 50, NUM_BINS).astype(float)
    p1, p2 = smooth_prior(c1), smooth_prior(c2)
    torch.testing.assert_close(smooth_prior(c1 * 1000), p1)
    both = smooth_prior(c1 + c2)
    # the grid mass that falls off the bins is small, so the mix is close to the count-weighted average
    mix = (c1.sum() * p1 + c2.sum() * p2) / (c1.sum() + c2.sum())
    torch.testing.assert_close(both, mix, atol=1e-3, rtol=0)
    assert both.sum().item() == pytest.approx(1.0)


def test_smooth_prior_edge_bin_renormalises():
    """Mass smoothed onto grid cells that are not bins is dropped, and the rest renormalised to sum 1."""
    bins = ab_bins()
    edge = bins[bins[:, 0] == bins[:, 0].max()][0].tolist()  # a bin on the gamut's border
    prior = smooth_prior(_one_hot_counts(*edge))
    assert prior.sum().item() == pytest.approx(1.0)
    assert prior.argmax().item() == _index(*edge)
    assert (prior > 0).sum() < 25


def test_smooth_prior_accepts_tensor():
    counts = torch.from_numpy(_one_hot_counts(0.0, 0.0))
    torch.testing.assert_close(smooth_prior(counts), smooth_prior(counts.numpy()))


def test_rebalance_weights_hand_computation():
    rng = np.random.default_rng(1)
    prior = torch.from_numpy(rng.dirichlet(np.ones(NUM_BINS)))
    w = rebalance_weights(prior, mix=0.5)
    assert w.shape == (NUM_BINS,)
    raw = 1.0 / (0.5 * prior + 0.5 / NUM_BINS)
    expected = raw / (prior * raw).sum()
    torch.testing.assert_close(w.double(), expected, rtol=1e-6, atol=0)
    assert (prior * w.double()).sum().item() == pytest.approx(1.0, rel=1e-6)


def test_rebalance_uniform_prior_gives_ones():
    prior = torch.full((NUM_BINS,), 1.0 / NUM_BINS, dtype=torch.float64)
    torch.testing.assert_close(rebalance_weights(prior), torch.ones(NUM_BINS))
    torch.testing.assert_close(rebalance_weights(prior, mix=0.1), torch.ones(NUM_BINS))


def test_rebalance_rarer_bins_weigh_more():
    rng = np.random.default_rng(2)
    prior = torch.from_numpy(rng.dirichlet(np.full(NUM_BINS, 0.3)))
    w = rebalance_weights(prior)
    order = prior.argsort()
    assert torch.all(w[order].diff() <= 1e-6), "weights must decrease as the prior grows"
    assert w[prior.argmin()] > 1 > w[prior.argmax()]


def test_rebalance_mix_one_is_uniform_weighting():
    """lambda = 1 means no rebalancing at all: every weight is 1."""
    rng = np.random.default_rng(3)
    prior = torch.from_numpy(rng.dirichlet(np.ones(NUM_BINS)))
    torch.testing.assert_close(rebalance_weights(prior, mix=1.0), torch.ones(NUM_BINS))


def test_rebalance_official_prior():
    path = REFERENCE / "prior_probs.npy"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    prior = torch.from_numpy(np.load(path))
    w = rebalance_weights(prior)
    assert torch.isfinite(w).all() and torch.all(w > 0)
    assert w.argmin().item() == _index(0.0, 0.0), "the commonest colour, grey, must weigh least"
    assert (prior * w.double()).sum().item() == pytest.approx(1.0, rel=1e-5)
    assert w.max() / w.min() > 10  # rare saturated colours get a real boost


def test_bin_counts_on_ab():
    ab = torch.zeros(1, 2, 2, 5)
    ab[0, :, 0, :3] = torch.tensor([1.0, 2.0])[:, None]  # 3 pixels near (0, 0)
    ab[0, :, 1, :] = torch.tensor([48.0, -52.0])[:, None]  # 5 pixels near (50, -50)
    ab[0, :, 0, 3:] = torch.tensor([-21.0, 39.0])[:, None]  # 2 pixels near (-20, 40)
    counts = bin_counts(ab)
    assert counts.shape == (NUM_BINS,) and counts.dtype == torch.float64
    assert counts.sum().item() == 10
    assert counts[_index(0, 0)] == 3 and counts[_index(50, -50)] == 5 and counts[_index(-20, 40)] == 2


def test_bin_counts_on_synthetic_image():
    """Grey pixels count for bin (0, 0); coloured ones for their nearest bin by brute force."""
    rgb = torch.full((2, 3, 4, 6), 0.5)
    rgb[0, :, :2] = torch.tensor([0.9, 0.2, 0.1])[:, None, None]  # 12 reddish pixels
    rgb[1, :, :, :1] = torch.tensor([0.1, 0.3, 0.8])[:, None, None]  # 4 bluish pixels
    ab = rgb_to_lab(rgb)[:, 1:]
    counts = bin_counts(ab)
    assert counts.sum().item() == 48
    assert counts[_index(0, 0)] == 48 - 12 - 4
    for colour, n in (((0.9, 0.2, 0.1), 12), ((0.1, 0.3, 0.8), 4)):
        lab = rgb_to_lab(torch.tensor(colour).reshape(1, 3, 1, 1))[0, 1:, 0, 0]
        nearest = int(((ab_bins() - lab) ** 2).sum(1).argmin())
        assert counts[nearest] == n
    # a whole batch prior, counted then smoothed, peaks at grey
    assert smooth_prior(counts).argmax().item() == _index(0, 0)
