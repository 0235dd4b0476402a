from safetensors.torch import load_file

from colorizer import bundle, checkpoint
from colorizer.infer import Colorizer
from tests.conftest import photo


def test_bundle_stores_a_named_half_precision_model(tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setattr(bundle, "WEIGHTS_DIR", tmp_path)
    path = bundle.bundle(tiny_checkpoint)
    assert path == tmp_path / f"{tiny_checkpoint.name}.safetensors"
    assert all(t.dtype.is_floating_point is False or t.dtype.itemsize == 2 for t in load_file(str(path)).values())
    assert checkpoint.read_config(path)["name"] == tiny_checkpoint.name
    assert Colorizer.load(path).colorize(photo(20, 10)).size == (20, 10)
