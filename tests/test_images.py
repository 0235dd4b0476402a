import numpy as np
import pytest
import torch
from PIL import Image

from colorizer.errors import UserError
from colorizer.images import (
    MONOCHROME_TOLERANCE,
    check_size,
    colour_spread,
    find_images,
    is_colour,
    open_image,
    to_pil,
    to_rgb_tensor,
)
from tests.conftest import photo


def test_find_images_recurses_and_sorts(photo_dir):
    found = find_images(photo_dir)
    assert found == sorted(found) and len(found) == 8
    assert find_images([found[0], found[1]]) == found[:2]


def test_find_images_missing_path(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        find_images(tmp_path / "nope")


def test_open_image_rejects_non_images_and_truncated(tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("hello")
    with pytest.raises(UserError, match="not an image"):
        open_image(text)
    good = tmp_path / "good.jpg"
    photo(64, 64).save(good, quality=90)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[:300])
    with pytest.raises(UserError, match="truncated or corrupt"):
        open_image(truncated)


def test_open_image_applies_exif_orientation(tmp_path):
    image = photo(60, 30)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif)
    assert open_image(path).size == (30, 60)


def test_size_limit():
    with pytest.raises(UserError, match="megapixels"):
        check_size(Image.new("L", (200, 100)), "big", max_pixels=10_000)


@pytest.mark.parametrize("mode", ["RGB", "L", "LA", "RGBA", "P", "CMYK"])
def test_to_rgb_tensor_modes(mode):
    tensor = to_rgb_tensor(photo(20, 10).convert(mode))
    assert tensor.shape == (1, 3, 10, 20)
    assert tensor.dtype == torch.float32 and tensor.min() >= 0 and tensor.max() <= 1


def test_sixteen_bit_keeps_precision():
    values = np.linspace(0, 65535, 64 * 4).reshape(4, 64).astype(np.uint16)
    tensor = to_rgb_tensor(Image.fromarray(values))
    assert torch.allclose(tensor[0, 0], torch.from_numpy(values / 65535.0).float(), atol=1e-6)
    assert len(torch.unique(tensor)) > 200  # more levels than 8 bits could hold in this row range


def test_transparent_pixels_become_white():
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert torch.allclose(to_rgb_tensor(rgba), torch.ones(1, 3, 4, 4))


def test_to_pil_round_trip():
    image = photo(16, 12)
    assert np.array_equal(np.asarray(to_pil(to_rgb_tensor(image))), np.asarray(image))


def _toned(gray: np.ndarray, tint: tuple[float, float, float]) -> Image.Image:
    """A gray photo printed in one tint: the tint at mid-tones, fading to white and black."""
    g = gray.astype(np.float32)[..., None] / 255
    rgb = g * np.array(tint) + (1 - np.array(tint)) * g**2
    return Image.fromarray((rgb * 255).round().clip(0, 255).astype(np.uint8), "RGB")


@pytest.mark.parametrize("tint", [(1.0, 0.82, 0.6), (0.55, 0.75, 1.0), (1.0, 0.97, 0.78)], ids=["sepia", "cyanotype", "yellowed"])
def test_toned_monochrome_is_not_colour_even_as_a_jpeg(tint, tmp_path):
    gray = np.asarray(photo(160, 120).convert("L"))
    toned = _toned(gray, tint)
    assert colour_spread(toned) < MONOCHROME_TOLERANCE
    toned.save(tmp_path / "scan.jpg", quality=60)
    assert not is_colour(open_image(tmp_path / "scan.jpg"))


def test_gray_photos_are_not_colour_and_colour_photos_are():
    colourful = photo(160, 120)
    assert is_colour(colourful) and colour_spread(colourful) > 3 * MONOCHROME_TOLERANCE
    assert not is_colour(colourful.convert("L")) and not is_colour(colourful.convert("L").convert("RGB"))
    # a warm cast over the whole photo does not make a colour photo of a gray one, nor a gray one of a colour one
    tinted = np.asarray(colourful, dtype=np.float32) * np.array([1.0, 0.9, 0.7])
    assert is_colour(Image.fromarray(tinted.round().astype(np.uint8), "RGB"))
