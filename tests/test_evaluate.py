import json

import pytest
import torch

from colorizer.bins import ab_bins
from colorizer.cli import main
from colorizer.evaluate import auc_per_pixel, colorfulness, psnr, random_ab
from tests.conftest import photo


def test_auc_per_pixel_by_hand():
    truth = torch.zeros(1, 2, 1, 4)
    pred = torch.tensor([0.0, 3.0, 150.0, 200.0]).reshape(1, 1, 1, 4).expand(1, 2, 1, 4) / 2**0.5
    # errors 0, 3, 150, 200: correct at 151, 148, 1 and 0 of the 151 thresholds 0..150
    expected = torch.tensor([151, 148, 1, 0]) / 151
    torch.testing.assert_close(auc_per_pixel(pred, truth)[0, 0], expected.float(), atol=1e-5, rtol=0)


def test_colorfulness_gray_zero_and_saturated_high():
    assert colorfulness(torch.full((1, 3, 4, 4), 0.5)).item() == pytest.approx(0)
    stripes = torch.zeros(1, 3, 4, 4)
    stripes[0, 0, :, :2] = 1
    stripes[0, 2, :, 2:] = 1
    # rg = 255 | 0, yb = 127.5 | -255: std sqrt(127.5^2 + 191.25^2), mean sqrt(127.5^2 + 63.75^2)
    expected = (127.5**2 + 191.25**2) ** 0.5 + 0.3 * (127.5**2 + 63.75**2) ** 0.5
    assert colorfulness(stripes).item() == pytest.approx(expected, rel=1e-5)


def test_psnr():
    a = torch.zeros(1, 3, 2, 2)
    b = a.clone()
    b[0, 0, 0, 0] = 1.0  # one channel of one pixel off by 255: mse = 255^2 / 12
    assert psnr(a, b).item() == pytest.approx(10 * torch.log10(torch.tensor(12.0)).item(), rel=1e-5)
    assert psnr(a, a).item() == 100


def test_random_colorization_follows_the_seed():
    def draw(seed: int) -> torch.Tensor:
        return random_ab((8, 8), torch.Generator().manual_seed(seed))

    assert draw(1).shape == (1, 2, 8, 8)
    assert torch.equal(draw(1), draw(1)) and not torch.equal(draw(1), draw(2))
    centres = {tuple(c) for c in ab_bins().tolist()}
    assert all(tuple(p) in centres for p in draw(3)[0].flatten(1).T.tolist())


def test_eval_command_reports_all_methods(tiny_checkpoint, photo_dir, tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert main(["eval", "--model", str(tiny_checkpoint), "--data", str(photo_dir), "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    assert set(results) == {"model", "gray", "random", "ground_truth"}
    for figures in results.values():
        assert set(figures) == {"auc", "auc_rebal", "colorfulness", "psnr"}
    truth, gray, random = results["ground_truth"], results["gray"], results["random"]
    assert truth["auc"] == truth["auc_rebal"] == 100
    assert gray["colorfulness"] == 0 and random["colorfulness"] > truth["colorfulness"]
    assert gray["auc"] > random["auc"]
    assert "ground_truth" in capsys.readouterr().out


def test_eval_on_gray_only_folder_is_an_error(tiny_checkpoint, tmp_path, capsys):
    (tmp_path / "gray").mkdir()
    photo(16, 16).convert("L").save(tmp_path / "gray" / "a.png")
    assert main(["eval", "--model", str(tiny_checkpoint), "--data", str(tmp_path / "gray")]) == 1
    assert "no colour photos" in capsys.readouterr().err


def test_eval_holdout_scores_only_the_photos_training_held_out(tiny_checkpoint, photo_dir, tmp_path, capsys):
    from colorizer.data import hold_out, scan_folder

    held = hold_out(scan_folder(photo_dir, progress=False).colour, photo_dir, 0.5)[1]
    assert main(["eval", "--model", str(tiny_checkpoint), "--data", str(photo_dir), "--holdout", "0.5",
                 "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert f"evaluating the {len(held)} photos that `train --holdout 0.5` holds out" in out
    assert f"({len(held)} photos, T = 0.38)" in out
