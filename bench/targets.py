"""Training targets for a batch: the project's batched path against the per-image reference way.

For 16 smooth random colour images of 224x224 (seeded), both paths compute the Lab conversion, the soft
encoding over the 313 bins (5 nearest, Gaussian sigma 5, normalised) and the per-pixel rebalancing weight
(the weight of each pixel's nearest bin), at full 224 resolution.

- project: `rgb_to_lab` on the whole batch, then `colorizer.loss.encode_targets` (one nearest-bin search
  through a precomputed candidate table), which keeps Z sparse (5 indices and weights per pixel): the form
  the training loss consumes. It is densified only for the agreement check, outside the timing.
- reference: for each image, scikit-image `rgb2lab`, scikit-learn `NearestNeighbors(n_neighbors=5,
  algorithm="ball_tree")` fitted once on the 313 bins, `kneighbors`, Gaussian weights, normalise, scatter into
  an (H*W, 313) array, weight of the nearest bin; then the image is copied into the batch (as a DataLoader's
  collate would). This is how the original release's NNEncode and its PyTorch ports encode targets.

The project path runs on the GPU when there is one (BENCH_DEVICE=cpu|cuda to choose), as training does;
the timed work includes moving the RGB batch there. BENCH_REPEATS sets the repetitions (default 3).

Both must give the same Z (max abs diff < 1e-3) and v before timing, except at the few near-tie pixels
whose neighbour order the ~1e-4 Lab difference between kornia and scikit-image can swap (counted, and
required to stay under 0.2%). Last line: `speedup=<x>`.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
from scipy.ndimage import zoom
from skimage.color import rgb2lab
from sklearn.neighbors import NearestNeighbors

from bench.machine import describe
from colorizer.bins import NUM_BINS, ab_bins
from colorizer.color import rgb_to_lab
from colorizer.loss import Targets, encode_targets
from colorizer.prior import bin_counts, rebalance_weights, smooth_prior

BATCH, SIZE, K, SIGMA = 16, 224, 5, 5.0
REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))


def smooth_images(n: int, size: int, seed: int = 0) -> np.ndarray:
    """(n, size, size, 3) float32 sRGB in [0, 1]: random 6x6 colour fields upsampled with cubic splines."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((n, 6, 6, 3))
    images = np.stack([zoom(c, (size / 6, size / 6, 1), order=3) for c in coarse])
    return np.clip(images, 0.0, 1.0).astype(np.float32)


def project_targets(images: np.ndarray, weights: torch.Tensor, device: torch.device) -> Targets:
    """The training path: the RGB batch goes to the device, targets are computed there for the whole batch,
    kept sparse (5 bin indices and weights per pixel) as the loss consumes them."""
    rgb = torch.from_numpy(images).to(device, non_blocking=True).permute(0, 3, 1, 2)
    lab = rgb_to_lab(rgb)
    targets = encode_targets(lab[:, 1:], weights, k=K, sigma=SIGMA)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return targets


class ReferenceEncoder:
    """Per-image encoding in the style of the original release's NNEncode (numpy + scikit-learn)."""

    def __init__(self, bins: np.ndarray, weights: np.ndarray):
        self.bins = bins
        self.weights = weights
        self.nbrs = NearestNeighbors(n_neighbors=K, algorithm="ball_tree").fit(bins)

    def encode_image(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(H, W, 3) sRGB -> Z (H*W, 313) float64 and v (H*W,)."""
        ab = rgb2lab(image)[:, :, 1:].reshape(-1, 2)
        dists, inds = self.nbrs.kneighbors(ab)
        wts = np.exp(-(dists**2) / (2 * SIGMA**2))
        wts = wts / wts.sum(axis=1, keepdims=True)
        z = np.zeros((ab.shape[0], NUM_BINS))
        z[np.arange(ab.shape[0])[:, None], inds] = wts
        return z, self.weights[inds[:, 0]]

    def encode_batch(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n, h, w, _ = images.shape
        z_batch = np.empty((n, NUM_BINS, h, w), dtype=np.float32)
        v_batch = np.empty((n, h, w), dtype=np.float32)
        for i, image in enumerate(images):
            z, v = self.encode_image(image)
            z_batch[i] = z.T.reshape(NUM_BINS, h, w)
            v_batch[i] = v.reshape(h, w)
        return z_batch, v_batch


def seconds(fn) -> float:
    start = time.perf_counter()
    result = fn()
    elapsed = time.perf_counter() - start
    del result
    return elapsed


def main() -> None:
    torch.set_grad_enabled(False)
    wanted = os.environ.get("BENCH_DEVICE", "auto")
    if wanted == "auto":
        wanted = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(wanted)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(describe())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs; numpy dispatch "
          f"disabled: {os.environ.get('NPY_DISABLE_CPU_FEATURES', 'none')}")
    print(f"project path on {device} ({name})")
    images = smooth_images(BATCH, SIZE)
    print(f"batch: {BATCH} smooth random images of {SIZE}x{SIZE}, targets at full resolution")

    # class weights from this batch's own prior (the source of the weights does not matter for timing)
    bins = ab_bins()
    lab = rgb_to_lab(torch.from_numpy(images).permute(0, 3, 1, 2))
    weights = rebalance_weights(smooth_prior(bin_counts(lab[:, 1:])))
    reference = ReferenceEncoder(bins.double().numpy(), weights.double().numpy())

    # warm-up (candidate tables, allocator) and agreement check
    targets = project_targets(images, weights.to(device), device)
    z_ours, v_ours = targets.dense().cpu(), targets.pixel_weights.cpu()
    z_ref, v_ref = reference.encode_batch(images)
    ref_lab = np.stack([rgb2lab(im) for im in images])
    lab_diff = float(np.abs(lab.permute(0, 2, 3, 1).numpy() - ref_lab).max())
    print(f"Lab max abs diff (kornia float32 vs scikit-image float64): {lab_diff:.2e}")
    # Pixels whose 5th and 6th nearest bins (or 1st and 2nd, for v) are closer than the Lab difference can
    # legitimately swap them: they are reported and left out of the comparison.
    dists, _ = reference.nbrs.kneighbors(ref_lab[..., 1:].reshape(-1, 2), n_neighbors=K + 1)
    margin = 4 * max(lab_diff, 1e-4)
    z_tie = (dists[:, K] - dists[:, K - 1] < margin).reshape(v_ref.shape)
    v_tie = (dists[:, 1] - dists[:, 0] < margin).reshape(v_ref.shape)
    z_err = np.abs(z_ours.numpy() - z_ref).max(axis=1)
    z_diff, z_diff_all = float(z_err[~z_tie].max()), float(z_err.max())
    v_mismatch = int(((np.abs(v_ours.numpy() - v_ref) > 1e-5) & ~v_tie).sum())
    print(
        f"near-tie pixels left out: {int(z_tie.sum())} (Z), {int(v_tie.sum())} (v) of {v_ref.size}; "
        f"Z max abs diff elsewhere {z_diff:.2e} (all pixels: {z_diff_all:.2e}); "
        f"pixels with a different weight v elsewhere: {v_mismatch}; "
        f"near-tie pixels that did swap: {int((z_err[z_tie] >= 1e-3).sum())}"
    )
    if not (z_diff < 1e-3 and v_mismatch == 0 and z_tie.sum() + v_tie.sum() < 2e-3 * v_ref.size):
        sys.exit("targets differ between the two paths; not timing")
    del z_ours, v_ours, z_ref, v_ref

    # interleaved repetitions, so that load from other processes hits both paths alike
    weights_on_device = weights.to(device)
    ours, ref, lab_only = [], [], []
    for rep in range(REPEATS):
        ours.append(seconds(lambda: project_targets(images, weights_on_device, device)))
        ref.append(seconds(lambda: reference.encode_batch(images)))
        # where the project's time goes: the Lab conversion (elementwise, as wide as the CPU's vectors) and the rest
        lab_only.append(seconds(lambda: rgb_to_lab(torch.from_numpy(images).to(device).permute(0, 3, 1, 2))))
        print(f"repetition {rep + 1}: project {ours[-1] * 1000:.0f} ms (Lab {lab_only[-1] * 1000:.0f} ms), "
              f"reference {ref[-1] * 1000:.0f} ms")
    t_ours, t_ref = statistics.median(ours), statistics.median(ref)
    print(f"project batched path: {t_ours * 1000:.1f} ms per batch ({BATCH / t_ours:.1f} images/s), median of {REPEATS}; "
          f"of which the Lab conversion {statistics.median(lab_only) * 1000:.1f} ms")
    print(f"reference per-image path: {t_ref * 1000:.1f} ms per batch ({BATCH / t_ref:.1f} images/s), median of {REPEATS}")
    print(f"speedup={t_ref / t_ours:.2f}")


if __name__ == "__main__":
    main()
