"""Shared fixtures: tiny synthetic photos, folders of them, and a tiny checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# the study tests' fixtures (photo folders, databases on both backends, a prepared study, a client)
from tests.study_support import client, db_url, prepared, study_photos  # noqa: F401, E402

TINY_OPTIONS = {"width": 0.125}  # zhang2016 with 1/8 of the channels: ~0.5 M parameters


def photo(width: int = 48, height: int = 40, seed: int = 0) -> Image.Image:
    """A smooth, colourful synthetic photo: blobs of saturated colour on a gradient."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    image = np.stack([x, y, 1 - x], axis=-1) * 0.6 + 0.2
    for _ in range(3):
        cx, cy, r = rng.uniform(0, 1, 2).tolist() + [rng.uniform(0.15, 0.35)]
        mask = ((x - cx) ** 2 + (y - cy) ** 2) < r**2
        image[mask] = rng.uniform(0, 1, 3)
    return Image.fromarray((image * 255).astype(np.uint8), "RGB")


@pytest.fixture
def photo_dir(tmp_path: Path) -> Path:
    """Six colour photos in two class folders, one gray photo and one corrupt file."""
    root = tmp_path / "photos"
    for i in range(6):
        folder = root / f"class{i % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        photo(48, 40, seed=i).save(folder / f"img{i}.jpg", quality=95)
    photo(48, 40, seed=9).convert("L").convert("RGB").save(root / "class0" / "gray.jpg")
    (root / "class1" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return root


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny zhang2016 saved as a run folder, for inference and CLI tests."""
    import torch

    from colorizer import checkpoint
    from colorizer.models import build_model

    torch.manual_seed(0)
    run = tmp_path_factory.mktemp("tiny_run")
    model = build_model("zhang2016", **TINY_OPTIONS)
    checkpoint.save_model(run / checkpoint.MODEL_STEM, model,
                          {"preset": "zhang2016", "options": TINY_OPTIONS, "input_size": 32, "prior": [1 / 313] * 313})
    return run


TINY_HINT_OPTIONS = {"pretrained": False, "decoder_width": 16, "frozen_stages": 2, "hint_inputs": True}


def save_tiny_hint_model(run: Path, seed: int = 0):
    """An untrained effnet-lite0 with hint inputs and a narrow decoder, saved in `run`: the network."""
    import torch

    from colorizer import checkpoint
    from colorizer.models import build_model

    torch.manual_seed(seed)
    model = build_model("effnet-lite0", **TINY_HINT_OPTIONS)
    checkpoint.save_model(run / checkpoint.MODEL_STEM, model, {"preset": "effnet-lite0", "options": TINY_HINT_OPTIONS,
                                                                "input_size": 64, "prior": [1 / 313] * 313})
    return model


@pytest.fixture(scope="session")
def tiny_hint_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained hint-capable model (effnet-lite0, no pretrained weights) as a run folder."""
    run = tmp_path_factory.mktemp("tiny_hint_run")
    save_tiny_hint_model(run)
    return run


@pytest.fixture(scope="module")
def server(tiny_checkpoint):
    """The demo on a free loopback port, both menu entries on the tiny model: its URL."""
    from colorizer.infer import Colorizer
    from demo.app import build_demo

    colorizer = Colorizer.load(tiny_checkpoint)
    demo = build_demo({"generic": colorizer, "dogs": colorizer})
    # no port given: Gradio takes the first free one from 7860 up
    demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True, ssr_mode=False, run_history=False)
    yield demo.local_url
    demo.close()


@pytest.fixture(autouse=True, scope="session")
def _onnx_cache(tmp_path_factory: pytest.TempPathFactory):
    """The onnxruntime backend's exports go to a temporary folder, not the user's cache."""
    patch = pytest.MonkeyPatch()
    patch.setenv("COLORIZER_CACHE", str(tmp_path_factory.mktemp("colorizer_cache")))
    yield
    patch.undo()
