import json

from PIL import Image

from tests.conftest import photo
from toolkit.cli import main


def test_hints_figure_has_a_row_per_photo_and_four_columns(tiny_hint_checkpoint, tmp_path):
    photo(60, 40).save(tmp_path / "a.png")
    photo(40, 40, seed=1).save(tmp_path / "b.png")
    cases = tmp_path / "cases.json"
    cases.write_text(json.dumps([{"photo": "a.png", "hints": [{"x": 10, "y": 10, "rgb": [250, 0, 0]}]},
                                 {"photo": "b.png", "hints": []}]))
    out = tmp_path / "hints.png"
    assert main(["analyze", "hints", "--model", str(tiny_hint_checkpoint), "--cases", str(cases),
                 "--data", str(tmp_path), "--size", "30", "--out", str(out)]) == 0
    assert Image.open(out).size == (4 * 45, 24 + 2 * 30)  # the widest row is 45 px at a height of 30


def test_bad_cases_are_one_line_errors(tiny_hint_checkpoint, tmp_path, capsys):
    cases = tmp_path / "cases.json"
    cases.write_text('[{"photo": "a.png"}]')
    assert main(["analyze", "hints", "--model", str(tiny_hint_checkpoint), "--cases", str(cases),
                 "--out", str(tmp_path / "x.png")]) == 1
    assert 'expected a list of {"photo": ..., "hints": [...]}' in capsys.readouterr().err
