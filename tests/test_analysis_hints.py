import json

from PIL import Image

from colorizer.cli import main
from tests.conftest import photo


def test_hints_figure_has_a_row_per_photo_and_six_columns(tiny_hint_checkpoint, tmp_path):
    photo(60, 40).save(tmp_path / "a.png")
    photo(40, 40, seed=1).save(tmp_path / "b.png")
    cases = tmp_path / "cases.json"
    cases.write_text(json.dumps([{"photo": "a.png", "hints": [{"x": 10, "y": 10, "rgb": [250, 0, 0]}]},
                                 {"photo": "b.png", "hints": [], "tone": "sepia"},
                                 {"photo": "skimage:camera", "hints": [{"x": 100, "y": 300, "rgb": [0, 0, 250]}]}]))
    out = tmp_path / "hints.png"
    assert main(["analyze", "hints", "--model", str(tiny_hint_checkpoint), "--cases", str(cases),
                 "--data", str(tmp_path), "--size", "30", "--out", str(out)]) == 0
    sheet = Image.open(out).convert("RGB")
    assert sheet.size == (6 * 45, 24 + 3 * 30)  # the widest row is 45 px at a height of 30
    sepia_input = sheet.getpixel((22, 24 + 30 + 15))
    assert sepia_input[0] > sepia_input[2] + 5  # the old-looking print is toned


def test_old_prints_are_toned_monochrome():
    from analysis.hints import TINTS, old_print
    from colorizer.images import is_colour

    assert all(not is_colour(old_print(photo(120, 90), tone)) for tone in TINTS)


def test_bad_cases_are_one_line_errors(tiny_hint_checkpoint, tmp_path, capsys):
    cases = tmp_path / "cases.json"
    cases.write_text('[{"photo": "a.png"}]')
    assert main(["analyze", "hints", "--model", str(tiny_hint_checkpoint), "--cases", str(cases),
                 "--out", str(tmp_path / "x.png")]) == 1
    assert 'expected a list of {"photo": ..., "hints": [...]}' in capsys.readouterr().err
    cases.write_text('[{"photo": "a.png", "hints": [], "tone": "pink"}]')
    assert main(["analyze", "hints", "--model", str(tiny_hint_checkpoint), "--cases", str(cases),
                 "--out", str(tmp_path / "x.png")]) == 1
    assert "tone 'pink' is none of sepia, cyanotype, yellowed" in capsys.readouterr().err


def test_hint_locality_and_decoding_tables(tiny_hint_checkpoint, photo_dir, tmp_path, capsys):
    out = tmp_path / "locality.json"
    assert main(["analyze", "hint-locality", "--model", str(tiny_hint_checkpoint), "--data", str(photo_dir),
                 "--reach", "none,3", "--psnr-hints", "10", "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert figures["photos"] == 6 and list(figures["settings"]) == [
        "shipped before (bilinear decoding)", "network alone", "reach 3, edge cost 0.3"]
    assert all(0 <= row["changed_median"] <= 100 and "psnr_gain_10" in row for row in figures["settings"].values())
    out = tmp_path / "decoding.json"
    assert main(["analyze", "decoding", "--model", str(tiny_hint_checkpoint), "--data", str(photo_dir),
                 "--settings", "1:0:0,5:4:1", "--json", str(out)]) == 0
    assert set(json.loads(out.read_text())["settings"]) == {"1:0:0", "5:4:1"}
    assert main(["analyze", "decoding", "--model", str(tiny_hint_checkpoint), "--data", str(photo_dir),
                 "--settings", "5:4"]) == 1
    assert "--settings takes WINDOW:L_SIGMA:RADIUS" in capsys.readouterr().err
