"""Soft targets with per-pixel weights, and the class-rebalanced cross-entropy (equation 3)."""

from __future__ import annotations

import math

import pytest
import torch

from colorizer.bins import NUM_BINS, ab_bins, nearest_bins
from colorizer.loss import Targets, encode_targets, rebalanced_cross_entropy
from tests.test_bins import _brute_force, _flat


def soft_encode(ab: torch.Tensor, k: int = 5, sigma: float = 5.0) -> torch.Tensor:
    """Z (N, 313, H, W) of equation 2, as the loss computes it."""
    return encode_targets(ab, torch.ones(NUM_BINS), k=k, sigma=sigma).dense()


def _dense(targets: Targets) -> tuple[torch.Tensor, torch.Tensor]:
    return targets.dense(), targets.pixel_weights


def _ce(logits: torch.Tensor, z: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The loss for a dense Z, through Targets that list every class of each pixel."""
    every_class = torch.arange(z.shape[1]).reshape(1, -1, 1, 1).expand_as(z)
    return rebalanced_cross_entropy(logits, Targets(every_class, z, v))


def test_sparse_targets_give_the_dense_loss():
    ab, weights = _ab(11), _weights(12)
    targets = encode_targets(ab, weights)
    logits = torch.randn(2, NUM_BINS, 5, 7)
    dense = -(targets.dense() * torch.log_softmax(logits, 1)).sum(1)
    expected = (targets.pixel_weights * dense).mean()
    torch.testing.assert_close(rebalanced_cross_entropy(logits, targets), expected)


def _ab(seed: int, n: int = 2, h: int = 5, w: int = 7) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 2, h, w, generator=g) * 180 - 90


def _weights(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(NUM_BINS, generator=g) * 5 + 0.1


def test_encode_targets_weights_each_pixel_by_its_nearest_bin():
    ab, weights = _ab(0), _weights(1)
    z, v = _dense(encode_targets(ab, weights))
    assert z.shape == (2, NUM_BINS, 5, 7) and v.shape == (2, 5, 7)
    # v is the weight of each pixel's nearest bin, found here by brute force
    pixels = ab.permute(0, 2, 3, 1).reshape(-1, 2)
    nearest = torch.cdist(pixels.double(), ab_bins().double()).argmin(1)
    torch.testing.assert_close(v, weights[nearest].reshape(2, 5, 7))
    idx, _ = nearest_bins(ab, 1)
    torch.testing.assert_close(v, weights[idx[:, 0]])


def test_encode_targets_k_and_sigma():
    ab, weights = _ab(2), _weights(3)
    z, v = _dense(encode_targets(ab, weights, k=1, sigma=2.0))
    assert torch.all((z == 1).sum(1) == 1)
    _, v5 = _dense(encode_targets(ab, weights, k=5, sigma=5.0))
    torch.testing.assert_close(v, v5)  # the weight follows the nearest bin, whatever k


def test_cross_entropy_hand_computation():
    """Two pixels and three classes, worked out on paper."""
    logits = torch.tensor([[1.0, 2.0, 0.0], [0.0, 0.0, 3.0]]).T.reshape(1, 3, 1, 2)
    z = torch.tensor([[0.2, 0.8, 0.0], [0.5, 0.25, 0.25]]).T.reshape(1, 3, 1, 2)
    v = torch.tensor([[[2.0, 0.5]]])
    ce = []
    for lg, zz in (([1.0, 2.0, 0.0], [0.2, 0.8, 0.0]), ([0.0, 0.0, 3.0], [0.5, 0.25, 0.25])):
        log_norm = math.log(sum(math.exp(x) for x in lg))
        ce.append(-sum(q * (x - log_norm) for q, x in zip(zz, lg, strict=True)))
    expected = (2.0 * ce[0] + 0.5 * ce[1]) / 2  # weighted, averaged over pixels
    assert _ce(logits, z, v).item() == pytest.approx(expected, rel=1e-6)
    # on paper: log(1 + e + e^2) = 2.40760596, log(2 + e^3) = 3.09492296
    # pixel 1: 0.2 * 1.40760596 + 0.8 * 0.40760596 = 0.60760596; pixel 2: 0.75 * 3.09492296 + 0.25 * 0.09492296
    assert ce == pytest.approx([0.60760596, 2.34492296], rel=1e-7)
    assert expected == pytest.approx(1.19383670, rel=1e-7)


def test_cross_entropy_single_pixel_and_batch_mean():
    logits = torch.tensor([0.5, -1.0, 2.0]).reshape(1, 3, 1, 1)
    z = torch.tensor([0.0, 0.0, 1.0]).reshape(1, 3, 1, 1)
    one = _ce(logits, z, torch.ones(1, 1, 1)).item()
    assert one == pytest.approx(-torch.log_softmax(torch.tensor([0.5, -1.0, 2.0]), 0)[2].item(), rel=1e-6)
    # a batch of the same pixel repeated averages to the same value; v scales it linearly
    rep = _ce(logits.expand(4, 3, 2, 3), z.expand(4, 3, 2, 3), torch.full((4, 2, 3), 3.0))
    assert rep.item() == pytest.approx(3 * one, rel=1e-6)


def test_gradients_flow():
    ab, weights = _ab(4, n=1, h=3, w=4), _weights(5)
    z, v = _dense(encode_targets(ab, weights))
    logits = torch.randn(1, NUM_BINS, 3, 4, requires_grad=True)
    loss = _ce(logits, z, v)
    loss.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    assert logits.grad.abs().sum() > 0
    # the gradient of weighted softmax cross-entropy is v * (softmax - z) / P
    expected = v[:, None] * (torch.softmax(logits.detach(), 1) - z) / 12
    torch.testing.assert_close(logits.grad, expected, atol=1e-6, rtol=1e-4)


def test_bf16_logits_are_handled_in_float():
    logits = torch.randn(1, NUM_BINS, 2, 2)
    z, v = _dense(encode_targets(_ab(6, 1, 2, 2), _weights(7)))
    full = _ce(logits, z, v)
    half = _ce(logits.bfloat16(), z, v)
    assert half.dtype == torch.float32
    assert half.item() == pytest.approx(full.item(), rel=2e-2)


def test_minimised_at_the_target_distribution():
    ab = _ab(8, n=1, h=4, w=4)
    z, v = _dense(encode_targets(ab, _weights(9)))
    exact = torch.log(z.clamp_min(1e-30))
    best = _ce(exact, z, v)
    # at the optimum the loss is the (weighted) entropy of Z itself
    ent = -(z * torch.log(z.clamp_min(1e-30))).sum(1)
    assert best.item() == pytest.approx((v * ent).mean().item(), rel=1e-4)
    g = torch.Generator().manual_seed(10)
    for scale in (0.01, 0.1, 1.0):
        perturbed = exact + scale * torch.randn(exact.shape, generator=g)
        assert _ce(perturbed, z, v) > best
    # a small hand-made distribution too
    zs = torch.tensor([0.2, 0.5, 0.3]).reshape(1, 3, 1, 1)
    ones = torch.ones(1, 1, 1)
    at_z = _ce(zs.log(), zs, ones)
    for other in ([0.3, 0.4, 0.3], [0.2, 0.6, 0.2], [1 / 3, 1 / 3, 1 / 3]):
        assert _ce(torch.tensor(other).log().reshape(1, 3, 1, 1), zs, ones) > at_z


def test_soft_encode_sums_and_support():
    g = torch.Generator().manual_seed(4)
    ab = torch.rand(2, 2, 9, 11, generator=g) * 200 - 100
    z = soft_encode(ab)
    assert z.shape == (2, NUM_BINS, 9, 11)
    assert z.dtype == torch.float32
    torch.testing.assert_close(z.sum(1), torch.ones(2, 9, 11))
    assert torch.all(z >= 0)
    assert torch.all((z > 0).sum(1) == 5)
    # the support is the 5 nearest bins
    idx, _ = nearest_bins(ab, 5)
    assert torch.all(z.gather(1, idx) > 0)


def test_soft_encode_hand_computed_pixel():
    a, b = 12.0, -26.0
    z = soft_encode(torch.tensor([a, b]).reshape(1, 2, 1, 1), k=5, sigma=5.0)[0, :, 0, 0]
    bins = ab_bins().double().tolist()
    # by hand: the 5 nearest of all 313 bins, Gaussian of sigma 5 on their distances, normalised
    dists = sorted(((a - p) ** 2 + (b - q) ** 2, i) for i, (p, q) in enumerate(bins))[:5]
    gauss = {i: math.exp(-d2 / (2 * 5.0**2)) for d2, i in dists}
    total = sum(gauss.values())
    expected = torch.zeros(NUM_BINS, dtype=torch.float64)
    for i, w in gauss.items():
        expected[i] = w / total
    # the nearest are (10, -30), (20, -30), (10, -20), (20, -20), (0, -30)
    assert {tuple(bins[i]) for _, i in dists} == {(10.0, -30.0), (20.0, -30.0), (10.0, -20.0), (20.0, -20.0), (0.0, -30.0)}
    torch.testing.assert_close(z.double(), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("k, sigma", [(1, 5.0), (8, 10.0), (5, 2.0), (5, 20.0)])
def test_soft_encode_k_and_sigma(k, sigma):
    g = torch.Generator().manual_seed(5)
    ab = torch.rand(1, 2, 6, 6, generator=g) * 160 - 80
    z = soft_encode(ab, k=k, sigma=sigma)
    torch.testing.assert_close(z.sum(1), torch.ones(1, 6, 6))
    # at most k: a far bin's weight under a narrow kernel can fall below the smallest float
    assert torch.all((z > 0).sum(1) <= k)
    d2_ref, idx_ref = _brute_force(ab, k)
    w = torch.exp(-d2_ref / (2 * sigma**2))
    w = w / w.sum(1, keepdim=True)
    got = _flat(z).double().gather(1, idx_ref)
    torch.testing.assert_close(got, w, atol=1e-5, rtol=0)


def test_soft_encode_sigma_changes_sharpness():
    ab = torch.tensor([3.0, 4.0]).reshape(1, 2, 1, 1)
    sharp, flat = soft_encode(ab, sigma=2.0).max(), soft_encode(ab, sigma=50.0).max()
    assert sharp > flat
    assert flat == pytest.approx(0.2, abs=0.01)  # a wide kernel spreads almost uniformly over 5 bins
