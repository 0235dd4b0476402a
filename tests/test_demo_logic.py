"""The functions behind the demo page: reading uploads, the model menu, batching and the views."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
import torch
from conftest import photo
from PIL import Image

from colorizer import checkpoint
from colorizer.errors import UserError
from colorizer.infer import BUNDLED_MODELS, Colorizer
from demo import logic

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def colorizer(tiny_checkpoint) -> Colorizer:
    return Colorizer.load(tiny_checkpoint)


@pytest.fixture(scope="module")
def models(colorizer) -> logic.Models:
    return logic.Models({"generic": colorizer, "dogs": colorizer})


def saved(image: Image.Image, path, **options) -> str:
    image.save(path, **options)
    return str(path)


# reading uploads

def test_gray_jpeg_is_read_without_notes(tmp_path):
    upload = logic.read_upload(saved(photo(64, 48).convert("L"), tmp_path / "gray.jpg"))
    assert upload.image.size == (64, 48) and not upload.colour and upload.notes == []


def test_gray_saved_as_rgb_is_not_colour(tmp_path):
    upload = logic.read_upload(saved(photo(64, 48).convert("L").convert("RGB"), tmp_path / "gray.jpg", quality=80))
    assert not upload.colour


def test_colour_photo_is_flagged_for_the_truth_view(tmp_path):
    upload = logic.read_upload(saved(photo(64, 48), tmp_path / "colour.png"))
    assert upload.colour and any("reduced to gray" in note for note in upload.notes)


@pytest.mark.parametrize("content", [b"hello, not an image", b"\x89PNG\r\n\x1a\n truncated"])
def test_not_an_image_names_the_file_not_the_server_path(tmp_path, content):
    path = tmp_path / "upload.png"
    path.write_bytes(content)
    with pytest.raises(UserError) as info:
        logic.read_upload(path)
    assert str(info.value).startswith("upload.png:") and str(tmp_path) not in str(info.value)


def test_over_40_megapixels_is_refused(tmp_path):
    path = saved(Image.new("1", (8000, 5001)), tmp_path / "huge.png")
    with pytest.raises(UserError, match="over the limit of 40 megapixels"):
        logic.read_upload(path)


def test_animated_gif_uses_its_first_frame(tmp_path):
    frames = [photo(40, 30, seed=i).convert("P") for i in range(3)]
    path = saved(frames[0], tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    upload = logic.read_upload(path)
    assert upload.image.size == (40, 30) and any("first frame of 3" in note for note in upload.notes)


def test_16_bit_png_keeps_its_precision(tmp_path):
    ramp = (np.linspace(0, 65535, 64 * 48).reshape(48, 64)).astype(np.uint16)
    upload = logic.read_upload(saved(Image.fromarray(ramp), tmp_path / "deep.png"))
    assert not upload.colour and any("16-bit" in note for note in upload.notes)


def test_cmyk_jpeg_is_converted(tmp_path):
    upload = logic.read_upload(saved(photo(64, 48).convert("CMYK"), tmp_path / "print.jpg"))
    assert upload.colour and any("CMYK" in note for note in upload.notes)
    assert logic.as_rgb(upload.image).mode == "RGB"


def test_transparency_is_noted_only_when_present(tmp_path):
    opaque = photo(64, 48).convert("RGBA")
    holed = opaque.copy()
    holed.putpixel((0, 0), (0, 0, 0, 0))
    assert not any("transparent" in note for note in logic.read_upload(saved(opaque, tmp_path / "opaque.png")).notes)
    assert any("transparent" in note for note in logic.read_upload(saved(holed, tmp_path / "holed.png")).notes)


def test_exif_rotated_photo_is_turned_upright(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: rotate 90 degrees clockwise to view
    upload = logic.read_upload(saved(photo(64, 48).convert("L"), tmp_path / "phone.jpg", exif=exif))
    assert upload.image.size == (48, 64) and any("EXIF" in note for note in upload.notes)


# the model menu

def test_find_models_offers_run_folders_and_loose_checkpoints(tmp_path, tiny_checkpoint):
    root = tmp_path / "models"
    for target in (root / "runA" / "model", root / "extra" / "small"):
        target.parent.mkdir(parents=True)
        for suffix in (".safetensors", ".json"):
            (target.with_suffix(suffix)).write_bytes((tiny_checkpoint / f"model{suffix}").read_bytes())
    (root / "runA" / "optimizer.safetensors").write_bytes(b"")  # no config beside it: not a model
    found = logic.find_models(root)
    assert {name: source for name, source in found.items() if name not in BUNDLED_MODELS} == {
        "extra/small": str(root / "extra" / "small.safetensors"),
        "runA": str(root / "runA" / "model.safetensors"),
    }
    assert set(logic.find_models(tmp_path / "missing")) <= set(BUNDLED_MODELS)


def test_models_load_once_on_first_use(tiny_checkpoint):
    models = logic.Models({"mine": str(checkpoint.resolve(tiny_checkpoint))})
    assert models.loaded == {} and models.default == "mine"
    assert models["mine"] is models["mine"]
    with pytest.raises(UserError, match="unknown model"):
        models["nope"]


def test_models_needs_at_least_one():
    with pytest.raises(UserError, match="no model"):
        logic.Models({})


def test_compared_models_are_the_bundled_ones_plus_the_chosen(colorizer):
    models = logic.Models({"generic": colorizer, "dogs": colorizer, "mine": colorizer})
    assert models.compared("dogs") == ["generic", "dogs"]
    assert models.compared("mine") == ["generic", "dogs", "mine"]


# batching

def test_batcher_runs_waiting_jobs_together():
    sizes, started = [], threading.Event()

    def run(jobs):
        sizes.append(len(jobs))
        started.set()
        time.sleep(0.2)  # the first job holds the network while the others queue up
        return [job * 10 for job in jobs]

    batcher = logic.Batcher(run, max_size=3)
    results = {}
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, batcher(i))) for i in range(5)]
    threads[0].start()
    started.wait()
    for thread in threads[1:]:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {i: i * 10 for i in range(5)}
    assert sizes[0] == 1 and sorted(sizes[1:]) == [1, 3]


def test_batcher_hands_an_error_to_its_callers_and_carries_on():
    calls = iter([ValueError("boom"), None])

    def run(jobs):
        error = next(calls)
        if error:
            raise error
        return jobs

    batcher = logic.Batcher(run)
    with pytest.raises(ValueError, match="boom"):
        batcher(1)
    assert batcher(2) == 2


def test_colorize_batched_matches_colorize(models, colorizer):
    image = photo(64, 48)
    results = {}
    threads = [threading.Thread(target=lambda t=t: results.__setitem__(t, models.colorize_batched("generic", image, t)))
               for t in (0.38, 0.38, 1.0)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for temperature, result in results.items():
        expected = np.asarray(colorizer.colorize(image, temperature), dtype=int)
        assert result.size == image.size and np.abs(np.asarray(result, dtype=int) - expected).max() <= 1
    with pytest.raises(UserError, match="unknown model"):
        models.colorize_batched("nope", image, 0.38)
    assert set(models.batchers) == {"generic"}


# views

def test_uncertainty_image_runs_dark_to_bright():
    uncertainty = torch.linspace(0, 1, 50).repeat(20, 1)
    image = logic.uncertainty_image(uncertainty)
    assert image.size == (50, 20) and image.mode == "RGB"
    luma = np.asarray(image.convert("L"), dtype=int)[0]
    assert luma[0] < 20 and luma[-1] > 200 and (np.diff(luma) >= -2).all()


def test_side_by_side_captions_each_image():
    sheet = logic.side_by_side({"a": Image.new("RGB", (60, 40), "red"), "b": Image.new("RGB", (60, 40), "blue")}, gap=8)
    assert sheet.width == 128 and sheet.height > 40
    bottom = sheet.height - 1
    assert sheet.getpixel((10, bottom)) == (255, 0, 0) and sheet.getpixel((127, bottom)) == (0, 0, 255)
    big = logic.side_by_side({"a": Image.new("RGB", (3000, 1500)), "b": Image.new("RGB", (3000, 1500))}, max_side=1000)
    assert big.width == 2008 and big.height > 500


def test_colorize_views_of_a_gray_photo(models, tmp_path):
    views = logic.colorize_views(models, saved(photo(64, 48).convert("L"), tmp_path / "g.png"), "dogs", 0.38)
    assert views.result.size == views.gray.size == views.uncertainty.size == (64, 48)
    assert views.original is None and views.compared.width > 2 * 64


def test_colorize_views_of_a_colour_photo_keep_the_truth(models, tmp_path):
    original = photo(64, 48)
    views = logic.colorize_views(models, saved(original, tmp_path / "c.png"), "generic", 0.38)
    assert views.original is not None and np.array_equal(np.asarray(views.original), np.asarray(original))
    assert views.gray.getpixel((5, 5))[0] == views.gray.getpixel((5, 5))[1] == views.gray.getpixel((5, 5))[2]


def test_save_png_is_lossless_and_clears_old_files(tmp_path):
    stale = tmp_path / "colorized-old.png"
    stale.write_bytes(b"")
    os.utime(stale, (time.time() - 120, time.time() - 120))
    image = photo(64, 48)
    path = logic.save_png(tmp_path, image, "colorized")
    with Image.open(path) as saved_image:
        assert saved_image.format == "PNG" and np.array_equal(np.asarray(saved_image), np.asarray(image))
    assert not stale.exists()
