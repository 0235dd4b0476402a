import numpy as np
import pytest
import torch
from PIL import Image

from colorizer.color import rgb_to_lab
from colorizer.errors import UserError
from colorizer.images import to_rgb_tensor
from colorizer.infer import Colorizer
from tests.conftest import photo


@pytest.fixture(scope="module")
def colorizer(tiny_checkpoint):
    return Colorizer.load(tiny_checkpoint)


def lightness(image: Image.Image) -> torch.Tensor:
    return rgb_to_lab(to_rgb_tensor(image))[0, 0]


@pytest.mark.parametrize("size", [(37, 23), (23, 37), (64, 64), (5, 300)])
def test_output_keeps_size_and_lightness(colorizer, size):
    source = photo(*size)
    result = colorizer.colorize(source)
    assert result.size == source.size and result.mode == "RGB"
    # the output's L is the input's L (up to 8-bit rounding and gamut clipping of the new colour)
    assert (lightness(result) - lightness(source)).abs().mean() < 1.5


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "CMYK", "I;16"])
def test_accepts_every_mode(colorizer, mode):
    source = photo(30, 20)
    image = Image.fromarray(np.asarray(source.convert("L"), dtype=np.uint16) * 257) if mode == "I;16" else source.convert(mode)
    assert colorizer.colorize(image).size == (30, 20)


def test_colour_input_is_reduced_to_lightness(colorizer):
    from colorizer.color import lab_to_rgb
    from colorizer.images import to_pil

    source = photo(40, 30)
    lab = rgb_to_lab(to_rgb_tensor(source))
    gray = to_pil(lab_to_rgb(torch.cat([lab[:, :1], torch.zeros_like(lab[:, 1:])], 1)))  # same L, no colour
    difference = np.asarray(colorizer.colorize(source), dtype=int) - np.asarray(colorizer.colorize(gray), dtype=int)
    assert np.abs(difference).max() <= 2


def test_temperature_changes_saturation(colorizer):
    source = photo(40, 30).convert("L")
    chroma = [rgb_to_lab(to_rgb_tensor(colorizer.colorize(source, temperature=t)))[:, 1:].norm(dim=1).mean()
              for t in (0.0, 1.0)]
    assert chroma[0] >= chroma[1]  # the mode is at least as colourful as the mean


def test_batched_equals_single(colorizer):
    images = [photo(30, 20, seed=s) for s in range(3)]
    batched = colorizer.colorize_many(images, batch_size=3)
    for image, result in zip(images, batched, strict=True):
        assert np.abs(np.asarray(result, dtype=int) - np.asarray(colorizer.colorize(image), dtype=int)).max() <= 1


def test_predict_gives_uncertainty_and_gray(colorizer):
    prediction = colorizer.predict(photo(40, 30))
    assert prediction.uncertainty.shape == (30, 40)
    assert prediction.uncertainty.min() >= 0 and prediction.uncertainty.max() <= 1
    gray = np.asarray(prediction.gray, dtype=int)
    assert np.abs(gray[..., 0] - gray[..., 2]).max() <= 2


def test_unknown_model_and_bad_input(tmp_path):
    with pytest.raises(UserError, match="unknown model"):
        Colorizer.load("no-such-model")
    with pytest.raises(UserError, match="no checkpoint"):
        Colorizer.load(tmp_path)


def test_rejects_non_images(colorizer):
    with pytest.raises(UserError, match="expected a PIL image"):
        colorizer.colorize("photo.jpg")


def test_bundled_models_load_when_present():
    from colorizer.infer import BUNDLED_MODELS, bundled_model_path

    for name in BUNDLED_MODELS:
        if not bundled_model_path(name).is_file():
            pytest.skip("bundled weights not built yet")
        model = Colorizer.load(name)
        assert model.colorize(photo(64, 48)).size == (64, 48)


def test_saturation_sets_the_colour_strength(colorizer):
    source = photo(40, 30).convert("L")
    chroma = [rgb_to_lab(to_rgb_tensor(colorizer.colorize(source, saturation=s)))[:, 1:].norm(dim=1).mean()
              for s in (0.0, 0.5, 1.0)]
    assert chroma[0] < 1 and chroma[0] < chroma[1] < chroma[2]
    assert colorizer.predict(source, saturation=0.5).image == colorizer.colorize_many([source], saturation=0.5)[0]
    for bad in (-0.1, 2.5, "1", True):
        with pytest.raises(UserError, match="saturation must be a number from 0 to 2"):
            colorizer.colorize(source, saturation=bad)
