from PIL import Image

from colorizer.cli import main


def test_samples_sheet(tiny_checkpoint, photo_dir, tmp_path):
    out = tmp_path / "samples.png"
    argv = ["analyze", "samples", "--models", str(tiny_checkpoint), str(tiny_checkpoint), "--data", str(photo_dir),
            "--rows", "3", "--size", "30", "--out", str(out)]
    assert main(argv) == 0
    sheet = Image.open(out)
    assert sheet.size == (4 * 40, 24 + 3 * 30)  # gray, two models, truth; a header and three rows


def test_samples_sheet_takes_chosen_photo_files_besides_folders(tiny_checkpoint, photo_dir, tmp_path):
    chosen = sorted(photo_dir.glob("class0/img*.jpg"))[0]
    out = tmp_path / "samples.png"
    argv = ["analyze", "samples", "--models", str(tiny_checkpoint), "--data", str(photo_dir), str(chosen),
            "--rows", "3", "--size", "30", "--out", str(out)]
    assert main(argv) == 0
    assert Image.open(out).size == (3 * 40, 24 + 3 * 30)  # gray, one model, truth; two drawn rows and the chosen one
