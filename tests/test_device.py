import pytest
import torch

from colorizer.device import BF16_SWITCH, bf16_is_fast, resolve_device
from colorizer.errors import UserError


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def one_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


def test_auto_is_the_cpu_without_a_gpu(no_gpu):
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


def test_auto_is_the_gpu_where_there_is_one(one_gpu):
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:0") == torch.device("cuda", 0)


@pytest.mark.parametrize("requested, message", [
    ("cuda", "no CUDA GPU is available"),
    ("cuda:0", "no CUDA GPU is available"),
    ("gpu", "give auto, cpu, cuda or cuda:N"),
    ("meta", "give auto, cpu, cuda or cuda:N"),
])
def test_unusable_devices_are_one_line_errors(no_gpu, requested, message):
    with pytest.raises(UserError, match=message):
        resolve_device(requested)


def test_a_gpu_index_past_the_last_one(one_gpu):
    with pytest.raises(UserError, match="only 1 CUDA GPU"):
        resolve_device("cuda:1")


def test_the_bf16_switch_decides_every_automatic_precision(monkeypatch, tiny_checkpoint):
    from colorizer.infer import Colorizer
    from colorizer.train import autocast

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    monkeypatch.setenv(BF16_SWITCH, "0")
    assert not bf16_is_fast(cpu) and not bf16_is_fast(cuda)
    assert Colorizer.load(tiny_checkpoint).dtype == torch.float32
    assert not isinstance(autocast(cuda, "auto"), torch.autocast)
    assert isinstance(autocast(cpu, "bf16"), torch.autocast)  # asked for by name, bf16 it is
    assert Colorizer.load(tiny_checkpoint, precision="bf16").dtype == torch.bfloat16
    monkeypatch.setenv(BF16_SWITCH, "1")
    assert bf16_is_fast(cpu) and Colorizer.load(tiny_checkpoint).dtype == torch.bfloat16
    assert Colorizer.load(tiny_checkpoint, precision="fp32").dtype == torch.float32
    monkeypatch.setenv(BF16_SWITCH, "yes")
    with pytest.raises(UserError, match="COLORIZER_BF16='yes': give 0"):
        bf16_is_fast(cpu)
