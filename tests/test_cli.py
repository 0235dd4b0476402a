import os

import numpy as np
import pytest
from PIL import Image

from colorizer.cli import main, output_path
from tests.conftest import photo


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def test_colorize_round_trip_on_odd_inputs(tiny_checkpoint, tmp_path, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    photo(33, 17).save(inputs / "odd.jpg")
    photo(20, 10).convert("RGBA").save(inputs / "alpha.png")
    Image.fromarray(np.asarray(photo(24, 12).convert("L"), dtype=np.uint16) * 257).save(inputs / "deep.png")
    exif = Image.Exif()
    exif[0x0112] = 6
    photo(30, 14).save(inputs / "rotated.jpg", exif=exif)
    before = {p.name: p.read_bytes() for p in inputs.iterdir()}
    code, out, _ = run(capsys, "colorize", inputs, "--out", tmp_path / "out", "--model", tiny_checkpoint)
    assert code == 0 and "colorized 4 of 4" in out
    sizes = {p.name: Image.open(p).size for p in (tmp_path / "out").iterdir()}
    assert sizes == {"odd.png": (33, 17), "alpha.png": (20, 10), "deep.png": (24, 12), "rotated.png": (14, 30)}
    assert {p.name: p.read_bytes() for p in inputs.iterdir()} == before  # inputs untouched


def test_colorize_says_which_inputs_were_colour_photos_and_takes_a_colour_strength(tiny_checkpoint, tmp_path, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    photo(40, 30).save(inputs / "colour.png")
    gray = np.asarray(photo(40, 30, seed=1).convert("L"), dtype=np.float32)[..., None] / 255
    sepia = gray * np.array([1.0, 0.82, 0.6]) + np.array([0.0, 0.18, 0.4]) * gray**2
    Image.fromarray((sepia * 255).round().astype(np.uint8), "RGB").save(inputs / "sepia.png")
    code, out, _ = run(capsys, "colorize", inputs, "--out", tmp_path / "out", "--model", tiny_checkpoint)
    assert code == 0 and "note: 1 of them were colour photos" in out
    code, out, _ = run(capsys, "colorize", inputs / "sepia.png", "--out", tmp_path / "gray", "--model", tiny_checkpoint,
                       "--saturation", "0")
    result = np.asarray(Image.open(tmp_path / "gray" / "sepia.png"), dtype=int)
    assert code == 0 and "note" not in out and np.abs(result - result[..., :1]).max() <= 1
    code, _, err = run(capsys, "colorize", inputs, "--out", tmp_path / "x", "--model", tiny_checkpoint, "--saturation", "3")
    assert code == 1 and "saturation must be a number from 0 to 2" in err


def test_never_overwrites_an_input(tiny_checkpoint, tmp_path, capsys):
    source = tmp_path / "photo.png"
    photo(16, 16).save(source)
    original = source.read_bytes()
    assert run(capsys, "colorize", source, "--out", tmp_path, "--model", tiny_checkpoint)[0] == 0
    assert source.read_bytes() == original
    assert (tmp_path / "photo_colorized.png").is_file()


def test_nested_folders_keep_their_layout(tmp_path):
    root = tmp_path / "in"
    assert output_path(root / "a" / "x.jpg", root, tmp_path / "out") == tmp_path / "out" / "a" / "x.png"
    assert output_path(root / "x.jpg", None, tmp_path / "out") == tmp_path / "out" / "x.png"


def test_bad_files_fail_alone_with_one_line(tiny_checkpoint, tmp_path, capsys):
    good, bad = tmp_path / "good.jpg", tmp_path / "bad.jpg"
    photo(16, 16).save(good)
    bad.write_text("not an image")
    code, out, err = run(capsys, "colorize", good, bad, "--out", tmp_path / "out", "--model", tiny_checkpoint)
    assert code == 1
    assert [line for line in err.splitlines() if "error" in line] == [f"error: {bad}: not an image"]
    assert (tmp_path / "out" / "good.png").is_file() and not (tmp_path / "out" / "bad.png").exists()
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("setup, message", [
    ("empty", "no images found"),
    ("missing", "no such file or folder"),
    ("model", "unknown model"),
])
def test_bad_invocations(tiny_checkpoint, tmp_path, capsys, setup, message):
    (tmp_path / "empty").mkdir()
    photo(8, 8).save(tmp_path / "p.png")
    target = {"empty": tmp_path / "empty", "missing": tmp_path / "missing.jpg", "model": tmp_path / "p.png"}[setup]
    model = "nonexistent-model" if setup == "model" else tiny_checkpoint
    code, _, err = run(capsys, "colorize", target, "--out", tmp_path / "out", "--model", model)
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("command", ["colorize", "eval", "prior"])
def test_a_missing_gpu_is_a_one_line_error(tiny_checkpoint, tmp_path, capsys, monkeypatch, command):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    photo(8, 8).save(tmp_path / "p.png")
    argv = {"colorize": ["colorize", tmp_path / "p.png", "--out", tmp_path / "out", "--model", tiny_checkpoint],
            "eval": ["eval", "--model", tiny_checkpoint, "--data", tmp_path],
            "prior": ["prior", tmp_path, "--out", tmp_path / "prior.json"]}[command]
    code, _, err = run(capsys, *argv, "--device", "cuda")
    assert code == 1 and err.strip() == "error: device 'cuda': no CUDA GPU is available"
    assert not (tmp_path / "out").exists() and not (tmp_path / "prior.json").exists()


def test_eval_runs_on_the_requested_device(tiny_checkpoint, tmp_path, capsys):
    photo(24, 16).save(tmp_path / "p.png")
    code, out, _ = run(capsys, "eval", "--model", tiny_checkpoint, "--data", tmp_path, "--device", "cpu")
    assert code == 0 and "ground_truth" in out


def test_too_many_megapixels(tiny_checkpoint, tmp_path, capsys, monkeypatch):
    import colorizer.images

    monkeypatch.setattr(colorizer.images, "MAX_PIXELS", 100)
    monkeypatch.setattr(colorizer.images.open_image, "__defaults__", (100,))
    photo(20, 20).save(tmp_path / "big.png")
    code, _, err = run(capsys, "colorize", tmp_path / "big.png", "--out", tmp_path / "out", "--model", tiny_checkpoint)
    assert code == 1 and "megapixels" in err


def test_console_script_is_installed():
    import shutil

    assert shutil.which("colorizer") or os.path.exists(".venv/bin/colorizer")


APP_COMMANDS = ["analyze", "demo", "study"]
EVERY_COMMAND = ["train", "colorize", "export", "prior", "eval", *APP_COMMANDS]


def listed_commands(help_text: str) -> list[str]:
    return [word for line in help_text.splitlines() if (word := line.strip().split(" ")[0]) in EVERY_COMMAND]


def test_colorizer_and_python_m_colorizer_are_one_command_with_every_subcommand():
    import subprocess
    import sys
    import tomllib

    from colorizer import cli

    project = tomllib.loads(cli.PYPROJECT.read_text())["project"]
    assert project["scripts"]["colorizer"] == "colorizer.cli:main"  # the console script
    assert [command.name for command in cli.app_commands()] == APP_COMMANDS
    result = subprocess.run([sys.executable, "-m", "colorizer", "--help"], capture_output=True, text=True,
                            cwd=cli.PYPROJECT.parent, timeout=120)
    assert result.returncode == 0 and listed_commands(result.stdout) == EVERY_COMMAND


def test_an_installed_package_finds_the_app_commands_in_its_metadata(monkeypatch, tmp_path, capsys):
    from importlib.metadata import EntryPoint

    from colorizer import cli

    asked = []

    def installed(group):
        asked.append(group)
        return [EntryPoint("demo", "demo.cli:register", group)]

    monkeypatch.setattr(cli, "PYPROJECT", tmp_path / "pyproject.toml")  # no source tree around the package
    monkeypatch.setattr(cli, "entry_points", installed)
    with pytest.raises(SystemExit):
        main(["--help"])
    assert asked == ["colorizer.commands"]
    assert listed_commands(capsys.readouterr().out) == [*EVERY_COMMAND[:5], "demo"]


def test_prior_command_writes_a_normalised_prior(photo_dir, tmp_path, capsys):
    import json

    out = tmp_path / "prior.json"
    code, stdout, _ = run(capsys, "prior", photo_dir, "--out", out, "--image-size", "32", "--workers", "0")
    assert code == 0 and "6 photos" in stdout
    prior = json.loads(out.read_text())
    assert len(prior["prior"]) == 313 and abs(sum(prior["prior"]) - 1) < 1e-9
    assert prior["images"] == 6 and prior["pixels"] == 6 * 32 * 32 == sum(prior["counts"])
