"""ONNX export and the onnxruntime backend: the same colours as eager PyTorch, with and without hints."""

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from colorizer import checkpoint, export
from colorizer.decode import annealed_mean
from colorizer.errors import UserError
from colorizer.infer import Colorizer, choose_backend
from colorizer.models import build_model
from tests.conftest import TINY_HINT_OPTIONS, TINY_OPTIONS, photo
from tests.test_cli import run

HINTS = [{"x": 12, "y": 30, "rgb": [220, 40, 30]}, {"x": 50, "y": 8, "rgb": [30, 60, 200], "radius": 6}]


def peaked(model: torch.nn.Module, last: torch.nn.Conv2d, size: int, inputs: int = 1) -> torch.nn.Module:
    """`model` with its last layer scaled so that its distributions are about as peaked as a trained
    model's: an untrained one predicts nearly uniform ones, whose colour no error could move."""
    with torch.no_grad():
        example = (torch.rand(1, 1, size, size) * 2 - 1,) + ((torch.zeros(1, 3, size, size),) if inputs == 2 else ())
        last.weight.mul_(4.0 / model.eval()(*example).std())
    return model


def save_run(run: Path, preset: str, options: dict, size: int) -> Path:
    torch.manual_seed(0)
    model = build_model(preset, **options)
    if preset == "zhang2016":
        peaked(model, model.classifier, size)
    else:
        with torch.no_grad():  # the propagation layers start at zero: random, so that the geodesic pass counts
            for name, parameter in model.named_parameters():
                if name.startswith("propagated_to"):
                    parameter.normal_(0, 0.3)
        peaked(model, model.head[-1], size, inputs=2)
    checkpoint.save_model(run / checkpoint.MODEL_STEM, model, {"preset": preset, "options": options, "input_size": size,
                                                               "prior": [1 / 313] * 313})
    return run


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory):
    return save_run(tmp_path_factory.mktemp("plain"), "zhang2016", TINY_OPTIONS, 32)


@pytest.fixture(scope="module")
def hint_run(tmp_path_factory):
    options = {**TINY_HINT_OPTIONS, "hint_propagation": True}
    return save_run(tmp_path_factory.mktemp("propagating"), "effnet-lite0", options, 64)


def ab_of(colorizer: Colorizer, image, hints=None) -> torch.Tensor:
    lightness = colorizer.lightness(image)
    return annealed_mean(colorizer.logits(lightness, colorizer.hint_map(image, hints)))


@pytest.mark.parametrize("with_hints", [False, True])
@pytest.mark.parametrize("which", ["plain_run", "hint_run"])
def test_exported_file_colours_as_eager_pytorch(which, with_hints, request, tmp_path, capsys):
    source = request.getfixturevalue(which)
    eager = Colorizer.load(source, backend="torch", precision="fp32")
    if with_hints and not eager.takes_hints:
        pytest.skip("a model without hint inputs")
    out = tmp_path / "model.onnx"
    code, printed, _ = run(capsys, "export", "--model", source, "--format", "onnx", "--out", out)
    assert code == 0 and str(out) in printed
    onnx.checker.check_model(onnx.load(out), full_check=True)
    exported = Colorizer.load(out)
    assert exported.backend == "onnxruntime" and exported.takes_hints == eager.takes_hints
    hints = HINTS if with_hints else None
    for seed in range(3):
        image = photo(72, 56, seed=seed)
        expected, got = ab_of(eager, image, hints), ab_of(exported, image, hints)
        assert expected.abs().mean() > 5  # real colour, not the untrained network's gray
        assert (expected - got).abs().max() <= 1.0
    if with_hints:  # the hints change the colours, the same way on both
        assert (ab_of(exported, image) - got).abs().max() > 5


def test_metadata_holds_config_and_decoding(hint_run, tmp_path, capsys):
    out = tmp_path / "model.onnx"
    assert run(capsys, "export", "--model", hint_run, "--out", out)[0] == 0
    model = onnx.load(out)
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    config, decode = json.loads(metadata["colorizer_config"]), json.loads(metadata["colorizer_decode"])
    assert config["preset"] == "effnet-lite0" and config["options"]["hint_propagation"] and config["input_size"] == 64
    assert decode["temperature"] == 0.38 and len(decode["ab_bins"]) == 313 and decode["output_stride"] == 4
    assert [value.name for value in model.graph.input] == ["lightness", "hints"]
    # any batch size
    session = export.OnnxRuntimeNetwork(out.read_bytes())
    logits = session(torch.zeros(3, 1, 64, 64), torch.zeros(3, 3, 64, 64))
    assert logits.shape == (3, 313, 16, 16)


def test_everything_works_on_the_onnxruntime_backend(hint_run):
    torch_side = Colorizer.load(hint_run, backend="torch", precision="fp32")
    ort_side = Colorizer.load(hint_run, backend="onnxruntime")
    assert ort_side.backend == "onnxruntime"
    images = [photo(72, 56, seed=s) for s in range(3)]
    for mine, theirs in zip(ort_side.colorize_many(images, batch_size=2, hints=[HINTS, None, HINTS]),
                            torch_side.colorize_many(images, batch_size=2, hints=[HINTS, None, HINTS]), strict=True):
        assert np.abs(np.asarray(mine, dtype=int) - np.asarray(theirs, dtype=int)).max() <= 2
    prediction = ort_side.predict(images[0], hints=HINTS)
    assert prediction.image.size == (72, 56) and prediction.uncertainty.shape == (56, 72)
    assert [s["rgb"] for s in ort_side.suggest(images[0], 20, 10, hints=HINTS)][:3] == \
        [s["rgb"] for s in torch_side.suggest(images[0], 20, 10, hints=HINTS)][:3]


def test_the_export_is_cached_between_loads(plain_run, monkeypatch):
    Colorizer.load(plain_run, backend="onnxruntime")
    monkeypatch.setattr(export, "onnx_bytes", lambda *a: pytest.fail("exported again"))
    assert Colorizer.load(plain_run, backend="onnxruntime").backend == "onnxruntime"


def test_auto_picks_pytorch_where_bf16_is_native_and_onnxruntime_elsewhere(monkeypatch):
    import colorizer.infer as infer

    cpu = torch.device("cpu")
    monkeypatch.setattr(infer, "bf16_is_fast", lambda device: True)
    assert choose_backend("auto", cpu) == "torch"
    monkeypatch.setattr(infer, "bf16_is_fast", lambda device: False)
    assert choose_backend("auto", cpu) == "onnxruntime"
    assert choose_backend("auto", cpu, precision="bf16") == "torch"
    assert choose_backend("torch", cpu) == "torch"
    monkeypatch.setattr(export, "available", lambda: False)  # onnxruntime not installed
    assert choose_backend("auto", cpu) == "torch"
    with pytest.raises(UserError, match="pip install onnx onnxruntime"):
        choose_backend("onnxruntime", cpu)


@pytest.mark.parametrize("backend, precision, message", [
    ("tensorflow", "auto", "unknown backend 'tensorflow'"),
    ("onnxruntime", "bf16", "computes in fp32"),
])
def test_bad_backend_requests_are_one_line_errors(plain_run, backend, precision, message):
    with pytest.raises(UserError, match=message):
        Colorizer.load(plain_run, backend=backend, precision=precision)


def test_an_onnx_file_needs_the_onnxruntime_backend(plain_run, tmp_path, capsys):
    out = tmp_path / "model.onnx"
    run(capsys, "export", "--model", plain_run, "--out", out)
    with pytest.raises(UserError, match="runs on the onnxruntime backend only"):
        Colorizer.load(out, backend="torch")


def test_colorize_takes_a_backend(plain_run, tmp_path, capsys):
    photo(40, 30).save(tmp_path / "a.jpg")
    code, _, _ = run(capsys, "colorize", tmp_path / "a.jpg", "--out", tmp_path / "out", "--model", plain_run,
                     "--backend", "onnxruntime", "--device", "cpu")
    assert code == 0 and (tmp_path / "out" / "a.png").is_file()
    code, _, err = run(capsys, "colorize", tmp_path / "a.jpg", "--out", tmp_path / "out", "--model", plain_run,
                       "--backend", "tvm", "--device", "cpu")
    assert code == 1 and len(err.strip().splitlines()) == 1 and "unknown backend" in err


def onnx_with(source: Path, out: Path, edit) -> Path:
    model = onnx.load(source)
    edit(model)
    onnx.save(model, out)
    return out


def set_metadata(model, key: str, value: str) -> None:
    for prop in model.metadata_props:
        if prop.key == key:
            prop.value = value


@pytest.mark.parametrize("case, message", [
    ("not a model", "not an ONNX model"),
    ("no metadata", "not one exported by `colorizer export`"),
    ("other size", "its graph's lightness input is [1, 32, 32], but its metadata says [1, 48, 48]"),
    ("hints claimed", "its graph takes lightness, but its metadata describes a model that takes lightness, hints"),
    ("broken config", "not valid JSON"),
])
def test_onnx_files_that_do_not_match_their_metadata(plain_run, tmp_path, capsys, case, message):
    good = tmp_path / "good.onnx"
    run(capsys, "export", "--model", plain_run, "--out", good)
    config = json.loads({p.key: p.value for p in onnx.load(good).metadata_props}["colorizer_config"])
    bad = tmp_path / "bad.onnx"
    if case == "not a model":
        bad.write_bytes(b"\x00\x01 this is not protobuf" * 10)
    elif case == "no metadata":
        onnx_with(good, bad, lambda m: m.ClearField("metadata_props"))
    elif case == "other size":
        onnx_with(good, bad, lambda m: set_metadata(m, "colorizer_config", json.dumps({**config, "input_size": 48})))
    elif case == "hints claimed":
        options = {"options": {"hint_inputs": True}}
        onnx_with(good, bad, lambda m: set_metadata(m, "colorizer_config", json.dumps({**config, **options})))
    else:
        onnx_with(good, bad, lambda m: set_metadata(m, "colorizer_config", "{not json"))
    code, _, err = run(capsys, "colorize", good, "--out", tmp_path / "out", "--model", bad)
    assert code == 1 and len(err.strip().splitlines()) == 1 and message in err


def test_bad_exports_are_one_line_errors_that_write_nothing(plain_run, tmp_path, capsys):
    out = tmp_path / "model.onnx"
    out.write_bytes(b"kept")
    code, _, err = run(capsys, "export", "--model", plain_run, "--format", "tflite", "--out", out)
    assert code == 1 and "unknown export format 'tflite': give onnx" in err and len(err.strip().splitlines()) == 1
    not_a_model = tmp_path / "notes.txt"
    not_a_model.write_text("hello")
    code, _, err = run(capsys, "export", "--model", not_a_model, "--out", out)
    assert code == 1 and "no checkpoint there" in err and len(err.strip().splitlines()) == 1
    # weights that are not safetensors beside a valid config
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "model.json").write_text((plain_run / "model.json").read_text())
    (fake / "model.safetensors").write_bytes(b"garbage, not tensors")
    code, _, err = run(capsys, "export", "--model", fake, "--out", out)
    assert code == 1 and "not a weights file" in err and len(err.strip().splitlines()) == 1
    assert out.read_bytes() == b"kept" and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_auto_times_both_backends_once_where_bf16_is_native(plain_run, monkeypatch, tmp_path):
    import colorizer.infer as infer

    monkeypatch.setenv("COLORIZER_CACHE", str(tmp_path))  # a cache of its own: other tests record their choices too

    monkeypatch.setattr(infer, "bf16_is_fast", lambda device: device.type == "cpu")
    first = Colorizer.load(plain_run, optimize=True)
    records = list((export.cache_dir() / "choices").glob("*.json"))
    assert len(records) == 1
    record = json.loads(records[0].read_text())
    assert first.backend == record["backend"] == min(record["seconds"], key=record["seconds"].get)
    monkeypatch.setattr(infer.statistics, "median", lambda times: pytest.fail("timed again"))
    again = Colorizer.load(plain_run, optimize=True)
    assert again.backend == first.backend and again.colorize(photo(40, 30)).size == (40, 30)
    assert Colorizer.load(plain_run).backend == "torch"  # without `optimize`, one photo: nothing timed
