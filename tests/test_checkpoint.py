import json

import pytest
import torch

from colorizer import checkpoint
from colorizer.errors import UserError
from colorizer.models import build_model
from tests.conftest import TINY_OPTIONS


def test_model_round_trip(tmp_path):
    model = build_model("zhang2016", **TINY_OPTIONS)
    path = checkpoint.save_model(tmp_path / "m", model, {"preset": "zhang2016", "options": TINY_OPTIONS})
    assert path.suffix == ".safetensors" and path.with_suffix(".json").is_file()
    loaded, config = checkpoint.load_model(tmp_path / "m.json")
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert config["preset"] == "zhang2016" and not loaded.training
    assert not list(tmp_path.glob(".*tmp*"))  # no temp files left behind


def test_half_precision_halves_the_file(tmp_path):
    model = build_model("zhang2016", **TINY_OPTIONS)
    full = checkpoint.save_model(tmp_path / "full", model, {"preset": "zhang2016", "options": TINY_OPTIONS})
    half = checkpoint.save_model(tmp_path / "half", model, {"preset": "zhang2016", "options": TINY_OPTIONS}, half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded, _ = checkpoint.load_model(half)
    weight = next(iter(loaded.parameters()))
    assert weight.dtype == torch.float32


def test_run_folder_resolves(tiny_checkpoint):
    assert checkpoint.resolve(tiny_checkpoint).name == "model.safetensors"


def test_bad_checkpoints_raise_user_errors(tmp_path):
    with pytest.raises(UserError, match="no checkpoint"):
        checkpoint.resolve(tmp_path)
    (tmp_path / "x.safetensors").write_bytes(b"")
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(UserError, match="not a valid config"):
        checkpoint.read_config(tmp_path / "x.safetensors")
    (tmp_path / "x.json").write_text(json.dumps({"preset": "zhang2016"}))
    with pytest.raises(UserError, match="not a colorizer checkpoint"):
        checkpoint.read_config(tmp_path / "x.safetensors")


def test_optimizer_state_round_trip(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.99))
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    checkpoint.save_optimizer(tmp_path, optimizer)
    fresh = torch.optim.Adam(model.parameters(), lr=5.0)
    checkpoint.load_optimizer(tmp_path, fresh)
    assert fresh.param_groups[0]["lr"] == 1e-3
    assert tuple(fresh.param_groups[0]["betas"]) == (0.9, 0.99)
    for state, expected in zip(fresh.state.values(), optimizer.state.values(), strict=True):
        assert torch.equal(state["exp_avg"], expected["exp_avg"])
        assert torch.equal(state["step"], expected["step"])
    assert not list(tmp_path.glob("*.pt")) and not list(tmp_path.glob("*.pkl"))
