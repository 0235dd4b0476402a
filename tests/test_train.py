import json
from itertools import pairwise

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file

from colorizer import checkpoint
from colorizer.cli import main
from colorizer.color import lab_batch
from colorizer.data import PhotoDataset, scan_folder
from colorizer.loss import encode_targets
from colorizer.models import build_model
from colorizer.prior import compute_prior, rebalance_weights
from colorizer.train import lr_factor, parameter_groups, recoloured_weights
from tests.conftest import TINY_HINT_OPTIONS, TINY_OPTIONS


def train_args(data, out, *extra):
    return ["train", "--data", str(data), "--preset", "zhang2016", "--options", json.dumps(TINY_OPTIONS),
            "--image-size", "32", "--batch-size", "4", "--workers", "0", "--device", "cpu", "--out", str(out), *extra]


def learnable_photos(folder, count=4):
    """Photos whose colour is a function of their lightness (dark blue to light yellow), so it can be learned."""
    folder.mkdir()
    for i in range(count):
        rng = np.random.default_rng(i)
        y, x = np.mgrid[0:40, 0:48] / 48
        t = 0.5 + 0.5 * np.sin(6 * x * rng.uniform(0.5, 2) + 4 * y * rng.uniform(0.5, 2) + rng.uniform(0, 6))
        rgb = np.stack([t, t**2, 0.2 + 0.3 * t], -1)
        Image.fromarray((rgb * 255).astype(np.uint8)).save(folder / f"{i}.png")
    return folder


def target_entropy(run, data, size):
    """The loss no model can beat: the rebalanced entropy of the soft targets themselves."""
    config = checkpoint.read_config(run)
    weights = rebalance_weights(torch.tensor(config["prior"], dtype=torch.float64))
    dataset = PhotoDataset(sorted(data.iterdir()), size, augment=False)
    _, ab = lab_batch(torch.stack([dataset[i] for i in range(len(dataset))]), torch.device("cpu"))
    targets = encode_targets(F.avg_pool2d(ab, 4), weights)
    entropy = -(targets.weights * targets.weights.clamp_min(1e-12).log()).sum(1)
    return (targets.pixel_weights * entropy).mean().item()


def test_training_on_four_images_halves_the_loss(tmp_path):
    data = learnable_photos(tmp_path / "photos")
    assert main(train_args(data, tmp_path / "run", "--epochs", "40", "--lr", "1e-2")) == 0
    losses = [record["train_loss"] for record in checkpoint.read_config(tmp_path / "run")["history"]]
    floor = target_entropy(tmp_path / "run", data, 32)
    # what training can remove is the loss above the targets' own entropy: at least half of it goes
    assert losses[-1] - floor <= 0.5 * (losses[0] - floor), (losses, floor)
    assert losses[-1] <= 0.6 * losses[0]


def test_run_folder_contents(photo_dir, tmp_path):
    run = tmp_path / "run"
    assert main(train_args(photo_dir, run, "--epochs", "1", "--val", str(photo_dir))) == 0
    names = {p.name for p in run.iterdir()}
    assert {"model.safetensors", "model.json", "optimizer.safetensors", "optimizer.json", "samples_epoch001.png"} <= names
    config = checkpoint.read_config(run)
    assert len(config["prior"]) == 313 and abs(sum(config["prior"]) - 1) < 1e-6
    assert len(config["bins"]) == 313 and config["epoch"] == 1
    assert config["data"] == {**config["data"], "dropped_gray": 1, "dropped_corrupt": 1}
    assert "val_loss" in config["history"][0]
    assert config["train_args"]["lr"] == pytest.approx(3e-5)


def test_holdout_validates_on_part_of_the_data_and_keeps_every_epoch(photo_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(train_args(photo_dir, run, "--epochs", "2", "--holdout", "0.5", "--keep-epochs",
                      "--batch-size", "2", "--lr", "1e-3")) == 0
    config = checkpoint.read_config(run)
    # of the six colour photos the path hash holds out three; the prior counts only the other three
    assert (config["data"]["train_images"], config["data"]["val_images"], config["data"]["holdout"]) == (3, 3, 0.5)
    kept = [p for p in scan_folder(photo_dir, progress=False).colour if p.name in {"img0.jpg", "img2.jpg", "img5.jpg"}]
    train_prior = compute_prior(kept, 32, 4, 0, torch.device("cpu"), False)[1]
    assert torch.allclose(torch.tensor(config["prior"], dtype=torch.float64), train_prior)
    assert all("val_loss" in record for record in config["history"])
    assert "train: 3 of 6 colour photos" in capsys.readouterr().out
    for epoch in (1, 2):
        kept = checkpoint.read_config(run / f"model_epoch{epoch:03d}.safetensors")
        assert kept["epoch"] == epoch
    last, second = load_file(str(run / "model.safetensors")), load_file(str(run / "model_epoch002.safetensors"))
    first = load_file(str(run / "model_epoch001.safetensors"))
    assert all(torch.equal(last[name], second[name]) for name in last)
    assert not all(torch.equal(last[name], first[name]) for name in last)


def test_resume_equals_an_uninterrupted_run(photo_dir, tmp_path):
    common = ("--lr", "1e-3", "--seed", "3")
    assert main(train_args(photo_dir, tmp_path / "straight", "--epochs", "3", *common)) == 0
    assert main(train_args(photo_dir, tmp_path / "resumed", "--epochs", "1", *common)) == 0
    assert main(train_args(photo_dir, tmp_path / "resumed", "--epochs", "3", "--resume", *common)) == 0
    straight = load_file(str(tmp_path / "straight" / "model.safetensors"))
    resumed = load_file(str(tmp_path / "resumed" / "model.safetensors"))
    for name, tensor in straight.items():
        assert torch.equal(tensor, resumed[name]), name
    assert checkpoint.read_config(tmp_path / "resumed")["epoch"] == 3


def test_until_plateau_stops_early(photo_dir, tmp_path):
    assert main(train_args(photo_dir, tmp_path / "run", "--epochs", "50", "--until-plateau", "0.5")) == 0
    assert checkpoint.read_config(tmp_path / "run")["epoch"] < 50


@pytest.mark.parametrize("extra, message", [
    (("--image-size", "30"), "multiple of 32"),
    (("--options", "[1]"), "JSON object"),
    (("--preset", "nope"), "unknown preset"),
    (("--encoder-lr-factor", "0.1"), "pretrained encoder"),
    (("--holdout", "0.7"), "between 0 and 0.5"),
    (("--holdout", "0.2", "--val", "elsewhere"), "pass one of them"),
    (("--hinted-share", "1.5"), "--hinted-share must be between 0 and 1"),
    (("--recolour-share", "-0.1"), "--recolour-share must be between 0 and 1"),
])
def test_bad_arguments_are_one_line_errors(photo_dir, tmp_path, capsys, extra, message):
    assert main(train_args(photo_dir, tmp_path / "run", *extra)) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_empty_data_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(train_args(tmp_path / "empty", tmp_path / "run")) == 1
    assert "no images found" in capsys.readouterr().err


@pytest.mark.slow
def test_torchrun_data_parallel_on_cpu(photo_dir, tmp_path):
    """Two processes through torchrun (DDP over gloo) train and write one checkpoint."""
    import subprocess
    import sys

    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "colorizer", *train_args(photo_dir, tmp_path / "run", "--epochs", "2", "--batch-size", "2")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("model:") == 1
    config = checkpoint.read_config(tmp_path / "run")
    assert config["epoch"] == 2 and config["history"][-1]["train_loss"] > 0


def test_training_takes_a_precomputed_prior(photo_dir, tmp_path):
    prior_file = tmp_path / "prior.json"
    assert main(["prior", str(photo_dir), "--out", str(prior_file), "--image-size", "32", "--workers", "0"]) == 0
    assert main(train_args(photo_dir, tmp_path / "run", "--epochs", "1", "--prior", str(prior_file))) == 0
    expected = json.loads(prior_file.read_text())["prior"]
    assert checkpoint.read_config(tmp_path / "run")["prior"] == pytest.approx(expected)


def test_cosine_schedule_warms_up_then_decays_to_zero():
    total = 1000
    factors = [lr_factor("cosine", step, total) for step in range(total)]
    peak = int(np.argmax(factors))
    assert factors[0] < 0.05 and factors[peak] == pytest.approx(1.0) and 0 < peak < total * 0.05
    assert all(a >= b for a, b in pairwise(factors[peak:]))  # never rises after the peak
    assert factors[total // 2] == pytest.approx(0.5, abs=0.03) and factors[-1] < 1e-4
    assert lr_factor("constant", 999, total) == 1.0


def test_schedule_is_recorded_and_constant_is_available(photo_dir, tmp_path):
    assert main(train_args(photo_dir, tmp_path / "run", "--epochs", "1", "--lr-schedule", "constant")) == 0
    assert checkpoint.read_config(tmp_path / "run")["train_args"]["lr_schedule"] == "constant"


def test_cpu_training_flushes_denormals(photo_dir, tmp_path):
    try:
        assert main(train_args(photo_dir, tmp_path / "run", "--epochs", "1")) == 0
        assert float(torch.tensor([1e-39]) * 1.0) == 0.0  # a denormal float32 counts as zero
    finally:
        torch.set_flush_denormal(False)
    assert float(torch.tensor([1e-39]) * 1.0) > 0.0


def test_a_pretrained_encoder_learns_at_its_own_rate():
    model = build_model("effnet-lite0", pretrained=False, frozen_stages=2)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    encoder = {id(p) for p in model.encoder.parameters() if p.requires_grad}
    (single,) = parameter_groups(model)
    assert {id(p) for p in single["params"]} == trainable and single["lr_scale"] == 1
    slow, fast = parameter_groups(model, 0.1)
    assert {id(p) for p in slow["params"]} == encoder and slow["lr_scale"] == 0.1
    assert {id(p) for p in fast["params"]} == trainable - encoder and fast["lr_scale"] == 1
    assert encoder and trainable - encoder


def test_encoder_lr_factor_scales_the_encoder_steps(photo_dir, tmp_path):
    run = tmp_path / "run"
    args = train_args(photo_dir, run, "--epochs", "1", "--lr", "1e-3", "--encoder-lr-factor", "0.25")
    args[args.index("zhang2016")] = "effnet-lite0"
    args[args.index(json.dumps(TINY_OPTIONS))] = json.dumps({"pretrained": False, "frozen_stages": 2})
    assert main(args) == 0
    groups = json.loads((run / "optimizer.json").read_text())["param_groups"]
    assert [g["lr_scale"] for g in groups] == [0.25, 1.0]
    assert groups[0]["lr"] == pytest.approx(0.25 * groups[1]["lr"]) and groups[1]["lr"] > 0


@pytest.mark.parametrize("changed, message", [
    (("--encoder-lr-factor", "0.5"), "--encoder-lr-factor 1"),
    (("--holdout", "0.5"), "--holdout 0"),
    (("--mix", "0.2"), "--mix 0.5; resume it with the same, not 0.2"),
    (("--sigma", "3"), "--sigma 5"),
    (("--hinted-share", "0.2"), "--hinted-share 0.5"),
    (("--neighbours", "3"), "--neighbours 5"),
    (("--options", '{"width": 0.25}'), "was trained with --options"),
])
def test_resuming_with_another_loss_split_or_network_is_a_one_line_error(photo_dir, tmp_path, capsys, changed,
                                                                         message):
    run = tmp_path / "run"
    assert main(train_args(photo_dir, run, "--epochs", "1")) == 0
    before = (run / "model.safetensors").read_bytes()
    capsys.readouterr()
    assert main(train_args(photo_dir, run, "--epochs", "2", "--resume", *changed)) == 1
    err = capsys.readouterr().err
    assert message in err and "resume it with the same" in err and "Traceback" not in err
    assert (run / "model.safetensors").read_bytes() == before


def test_init_starts_from_a_trained_model_and_adds_new_layers(photo_dir, tmp_path, capsys):
    def effnet_args(out, options, *extra):
        return ["train", "--data", str(photo_dir), "--preset", "effnet-lite0", "--options", json.dumps(options),
                "--image-size", "32", "--batch-size", "4", "--workers", "0", "--device", "cpu", "--epochs", "1",
                "--out", str(out), *extra]

    assert main(effnet_args(tmp_path / "base", TINY_HINT_OPTIONS)) == 0
    propagating = {**TINY_HINT_OPTIONS, "hint_propagation": True}
    capsys.readouterr()
    # at learning rate 0 the weights stay what --init loaded (recoloured hinted photos train as well)
    assert main(effnet_args(tmp_path / "tuned", propagating, "--init", str(tmp_path / "base"), "--lr", "0",
                            "--hinted-share", "1", "--recolour-share", "1")) == 0
    assert "new layers: propagated_to_encoder, propagated_to_levels, propagation_gate" in capsys.readouterr().out
    base, tuned = load_file(str(tmp_path / "base/model.safetensors")), load_file(str(tmp_path / "tuned/model.safetensors"))
    for name, tensor in base.items():
        if "running" not in name and "num_batches" not in name:  # batch-norm statistics still move
            torch.testing.assert_close(tuned[name], tensor, msg=name)
    config = checkpoint.read_config(tmp_path / "tuned")
    assert config["train_args"]["init"] == config["init"]["path"] == str(tmp_path / "base")
    # the model keeps the record of how its starting point was trained
    assert config["init"]["train_args"] == checkpoint.read_config(tmp_path / "base")["train_args"]
    # a model with layers the new network lacks, or another preset, is a one-line error
    assert main(effnet_args(tmp_path / "back", TINY_HINT_OPTIONS, "--init", str(tmp_path / "tuned"))) == 1
    assert "has layers this network lacks" in capsys.readouterr().err
    assert main(train_args(photo_dir, tmp_path / "other", "--init", str(tmp_path / "base"))) == 1
    err = capsys.readouterr().err
    assert "is a effnet-lite0 model; this run trains zhang2016" in err and "Traceback" not in err


def test_a_recoloured_photo_is_scored_only_within_reach_of_its_hints():
    # 32x32 photos: a flat left half, a strong edge, a flat right half; one hint at the far left
    lightness = torch.full((2, 1, 32, 32), -0.6)
    lightness[..., 16:] = 0.6
    hints = torch.zeros(2, 3, 32, 32)
    hints[:, :, 12:16, 0:4] = torch.tensor([0.3, -0.2, 1.0])[:, None, None]
    weights = recoloured_weights(lightness, hints, torch.tensor([True, False]), stride=4, reach=16.0)
    assert weights.shape == (2, 8, 8)
    assert torch.equal(weights[1], torch.ones(8, 8))  # an ordinary photo counts everywhere
    turned = weights[0]
    assert turned[3, 0] == 1.0  # the hinted cell
    assert turned[3, 3] > 0.8  # the hint's own region, 3 cells away
    # the cell just across the edge is as near as the region's cells, yet counts far less
    assert turned[3, 4] < 0.5 * turned[3, 3]
    assert turned[3, 7] < turned[3, 4]


def test_the_loss_of_recoloured_photos_counts_cells_by_their_nearness_to_a_hint(monkeypatch):
    import colorizer.train as train

    model = build_model("effnet-lite0", **TINY_HINT_OPTIONS, hint_propagation=True)
    rgb = torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8)

    def loss() -> float:
        torch.manual_seed(0)  # the same hints and hue turns both times
        return train.batch_loss(model, rgb, torch.ones(313), torch.device("cpu"),
                                train.StepSettings(hinted_share=1.0, recolour_share=1.0)).item()

    weighted = loss()
    monkeypatch.setattr(train, "recoloured_weights", lambda lightness, *args: torch.ones(len(lightness), 16, 16))
    assert weighted < 0.9 * loss()  # every cell of a turned photo counted in full
