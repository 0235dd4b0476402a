"""The `colorizer train` options, apart from the training code so that the CLI starts without torch."""

from __future__ import annotations

import argparse
import os

from colorizer.defaults import HINTED_SHARE
from colorizer.device import DEVICE_HELP


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, nargs="+", metavar="DIR",
                        help="folders of colour photos (searched recursively)")
    parser.add_argument("--data-share", type=float, nargs="+", metavar="SHARE",
                        help="with several --data folders: the share of each epoch's photos drawn from each "
                             "(at random, with replacement), so a small collection is not drowned by a large one")
    parser.add_argument("--epoch-size", type=int, metavar="PHOTOS",
                        help="photos per epoch when drawing by --data-share (default: all training photos)")
    parser.add_argument("--val", help="held-out folder: validation loss and sample grids each epoch")
    parser.add_argument("--holdout", type=float, default=0.0, metavar="FRACTION",
                        help="validate on about this share of --data instead of --val (chosen by a hash of "
                             "each path, the same on every run), so a test split stays unseen while choosing "
                             "settings")
    parser.add_argument("--keep-epochs", action="store_true",
                        help="keep each epoch's weights as model_epochNNN.safetensors besides the latest")
    parser.add_argument("--preset", default="zhang2016", help="network preset (zhang2016, zhang2016-quarter, effnet-lite0)")
    parser.add_argument("--options", default="{}", help='JSON options for the preset, e.g. \'{"frozen_stages": 2}\'')
    parser.add_argument("--out", required=True, help="run folder: checkpoints, samples, logs")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=224, help="training crop size (multiple of 32)")
    parser.add_argument("--min-crop-area", type=float, default=0.35, metavar="FRACTION",
                        help="smallest share of a photo a training crop covers (random zoom); 1: whole-photo crops")
    parser.add_argument("--input-size", type=int, help="square size inference resizes L to (default: --image-size)")
    parser.add_argument("--lr", type=float, default=3e-5)
    parser.add_argument("--lr-schedule", default="cosine", choices=["cosine", "constant"],
                        help="cosine: short warm-up, then decay to zero over --epochs")
    parser.add_argument("--weight-decay", type=float, default=1e-3,
                        help="L2 term of Adam, as in the paper; at learning rates far above its 3e-5 it erodes "
                             "a pretrained encoder (docs/models.md)")
    parser.add_argument("--encoder-lr-factor", type=float, default=1.0, metavar="FACTOR",
                        help="a pretrained encoder learns at FACTOR x --lr (effnet-lite0; the decoder at --lr)")
    parser.add_argument("--hinted-share", type=float, default=HINTED_SHARE, metavar="FRACTION",
                        help="share of training photos shown simulated colour hints (hint-capable models; "
                             "the rest train the automatic colorization)")
    parser.add_argument("--recolour-share", type=float, default=0.0, metavar="FRACTION",
                        help="share of the hinted training photos whose colours are all turned by one random hue "
                             "angle, hints and targets alike: hints then carry colours the network cannot guess "
                             "(their loss counts each cell by its nearness to a hint)")
    parser.add_argument("--mix", type=float, default=0.5, help="uniform mixing lambda of the rebalancing")
    parser.add_argument("--neighbours", type=int, default=5, help="bins per soft target")
    parser.add_argument("--sigma", type=float, default=5.0, help="Gaussian kernel of the soft targets (ab units)")
    parser.add_argument("--prior", help="prior JSON from `colorizer prior` (default: computed from --data)")
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)
    parser.add_argument("--amp", default="auto", choices=["auto", "bf16", "off"],
                        help="bf16 autocast (auto: on CUDA, unless COLORIZER_BF16=0)")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--resume", action="store_true", help="continue the run in --out where it stopped")
    parser.add_argument("--init", metavar="CHECKPOINT",
                        help="start from a trained model of the same preset (run folder or .safetensors): the "
                             "layers it has are loaded, the ones its options lacked start fresh (fine-tuning)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--until-plateau", type=float, default=0.0, metavar="FRACTION",
                        help="stop when the epoch's training loss improves by less than this (paper: 0.01)")
    parser.add_argument("--time-limit", type=float, metavar="MINUTES",
                        help="stop after the last epoch that fits in this wall time")
    parser.add_argument("--min-chroma", type=float, default=1.0,
                        help="photos whose mean chroma (Lab units) is below this count as gray and are dropped")
    parser.add_argument("--limit", type=int, help="use at most this many images of each folder")
