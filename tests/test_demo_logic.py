"""The functions behind the demo page: reading uploads, the model menu, batching and the views."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
import torch
from conftest import photo
from PIL import Image

from colorizer import checkpoint
from colorizer.errors import UserError
from colorizer.infer import BUNDLED_MODELS, Colorizer
from demo import logic

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def colorizer(tiny_checkpoint) -> Colorizer:
    return Colorizer.load(tiny_checkpoint)


@pytest.fixture(scope="module")
def models(colorizer) -> logic.Models:
    return logic.Models({"generic": colorizer, "dogs": colorizer})


def saved(image: Image.Image, path, **options) -> str:
    image.save(path, **options)
    return str(path)


# reading uploads

def test_gray_jpeg_is_read_without_notes(tmp_path):
    upload = logic.read_upload(saved(photo(64, 48).convert("L"), tmp_path / "gray.jpg"))
    assert upload.image.size == (64, 48) and not upload.colour and upload.notes == []


def test_gray_saved_as_rgb_is_not_colour(tmp_path):
    upload = logic.read_upload(saved(photo(64, 48).convert("L").convert("RGB"), tmp_path / "gray.jpg", quality=80))
    assert not upload.colour


def test_colour_photo_is_flagged_for_the_truth_view(tmp_path):
    upload = logic.read_upload(saved(photo(64, 48), tmp_path / "colour.png"))
    assert upload.colour and any("reduced to gray" in note for note in upload.notes)


@pytest.mark.parametrize("content", [b"hello, not an image", b"\x89PNG\r\n\x1a\n truncated"])
def test_not_an_image_names_the_file_not_the_server_path(tmp_path, content):
    path = tmp_path / "upload.png"
    path.write_bytes(content)
    with pytest.raises(UserError) as info:
        logic.read_upload(path)
    assert str(info.value).startswith("upload.png:") and str(tmp_path) not in str(info.value)


def test_over_40_megapixels_is_refused(tmp_path):
    path = saved(Image.new("1", (8000, 5001)), tmp_path / "huge.png")
    with pytest.raises(UserError, match="over the limit of 40 megapixels"):
        logic.read_upload(path)


def test_animated_gif_uses_its_first_frame(tmp_path):
    frames = [photo(40, 30, seed=i).convert("P") for i in range(3)]
    path = saved(frames[0], tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    upload = logic.read_upload(path)
    assert upload.image.size == (40, 30) and any("first frame of 3" in note for note in upload.notes)


def test_16_bit_png_keeps_its_precision(tmp_path):
    ramp = (np.linspace(0, 65535, 64 * 48).reshape(48, 64)).astype(np.uint16)
    upload = logic.read_upload(saved(Image.fromarray(ramp), tmp_path / "deep.png"))
    assert not upload.colour and any("16-bit" in note for note in upload.notes)


def test_cmyk_jpeg_is_converted(tmp_path):
    upload = logic.read_upload(saved(photo(64, 48).convert("CMYK"), tmp_path / "print.jpg"))
    assert upload.colour and any("CMYK" in note for note in upload.notes)
    assert logic.as_rgb(upload.image).mode == "RGB"


def test_transparency_is_noted_only_when_present(tmp_path):
    opaque = photo(64, 48).convert("RGBA")
    holed = opaque.copy()
    holed.putpixel((0, 0), (0, 0, 0, 0))
    assert not any("transparent" in note for note in logic.read_upload(saved(opaque, tmp_path / "opaque.png")).notes)
    assert any("transparent" in note for note in logic.read_upload(saved(holed, tmp_path / "holed.png")).notes)


def test_exif_rotated_photo_is_turned_upright(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: rotate 90 degrees clockwise to view
    upload = logic.read_upload(saved(photo(64, 48).convert("L"), tmp_path / "phone.jpg", exif=exif))
    assert upload.image.size == (48, 64) and any("EXIF" in note for note in upload.notes)


# the model menu

def test_find_models_offers_run_folders_and_loose_checkpoints(tmp_path, tiny_checkpoint):
    root = tmp_path / "models"
    for target in (root / "runA" / "model", root / "extra" / "small"):
        target.parent.mkdir(parents=True)
        for suffix in (".safetensors", ".json"):
            (target.with_suffix(suffix)).write_bytes((tiny_checkpoint / f"model{suffix}").read_bytes())
    (root / "runA" / "optimizer.safetensors").write_bytes(b"")  # no config beside it: not a model
    found = logic.find_models(root)
    assert {name: source for name, source in found.items() if name not in BUNDLED_MODELS} == {
        "extra/small": str(root / "extra" / "small.safetensors"),
        "runA": str(root / "runA" / "model.safetensors"),
    }
    assert set(logic.find_models(tmp_path / "missing")) <= set(BUNDLED_MODELS)


def test_models_load_once_on_first_use(tiny_checkpoint):
    models = logic.Models({"mine": str(checkpoint.resolve(tiny_checkpoint))})
    assert models.loaded == {} and models.default == "mine"
    assert models["mine"] is models["mine"]
    with pytest.raises(UserError, match="unknown model"):
        models["nope"]


def test_models_needs_at_least_one():
    with pytest.raises(UserError, match="no model"):
        logic.Models({})


def test_compared_models_are_the_bundled_ones_plus_the_chosen(colorizer):
    models = logic.Models({"generic": colorizer, "dogs": colorizer, "mine": colorizer})
    assert models.compared("dogs") == ["generic", "dogs"]
    assert models.compared("mine") == ["generic", "dogs", "mine"]


# batching

def test_batcher_runs_waiting_jobs_together():
    sizes, started = [], threading.Event()

    def run(jobs):
        sizes.append(len(jobs))
        started.set()
        if len(sizes) == 1:  # the first job holds the network until the four others have queued up
            deadline = time.monotonic() + 30
            while len(batcher.pending) < 4:
                assert time.monotonic() < deadline, "the other callers never queued up"
                time.sleep(0.01)
        return [job * 10 for job in jobs]

    batcher = logic.Batcher(run, max_size=3)
    results = {}
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, batcher(i))) for i in range(5)]
    threads[0].start()
    started.wait()
    for thread in threads[1:]:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {i: i * 10 for i in range(5)}
    assert sizes[0] == 1 and sorted(sizes[1:]) == [1, 3]


def test_batcher_hands_an_error_to_its_callers_and_carries_on():
    calls = iter([ValueError("boom"), None])

    def run(jobs):
        error = next(calls)
        if error:
            raise error
        return jobs

    batcher = logic.Batcher(run)
    with pytest.raises(ValueError, match="boom"):
        batcher(1)
    assert batcher(2) == 2


def test_colorize_batched_matches_colorize(models, colorizer):
    image = photo(64, 48)
    results = {}
    threads = [threading.Thread(target=lambda t=t: results.__setitem__(t, models.colorize_batched("generic", image, t)))
               for t in (0.38, 0.38, 1.0)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for temperature, result in results.items():
        expected = np.asarray(colorizer.colorize(image, temperature), dtype=int)
        assert result.size == image.size and np.abs(np.asarray(result, dtype=int) - expected).max() <= 1
    with pytest.raises(UserError, match="unknown model"):
        models.colorize_batched("nope", image, 0.38)
    assert set(models.batchers) == {"generic"}


# views

def test_uncertainty_image_runs_dark_to_bright():
    uncertainty = torch.linspace(0, 1, 50).repeat(20, 1)
    image = logic.uncertainty_image(uncertainty)
    assert image.size == (50, 20) and image.mode == "RGB"
    luma = np.asarray(image.convert("L"), dtype=int)[0]
    assert luma[0] < 20 and luma[-1] > 200 and (np.diff(luma) >= -2).all()


def test_side_by_side_captions_each_image():
    sheet = logic.side_by_side({"a": Image.new("RGB", (60, 40), "red"), "b": Image.new("RGB", (60, 40), "blue")}, gap=8)
    assert sheet.width == 128 and sheet.height > 40
    bottom = sheet.height - 1
    assert sheet.getpixel((10, bottom)) == (255, 0, 0) and sheet.getpixel((127, bottom)) == (0, 0, 255)
    big = logic.side_by_side({"a": Image.new("RGB", (3000, 1500)), "b": Image.new("RGB", (3000, 1500))}, max_side=1000)
    assert big.width == 2008 and big.height > 500


def test_colorize_views_of_a_gray_photo(models, tmp_path):
    views = logic.colorize_views(models, saved(photo(64, 48).convert("L"), tmp_path / "g.png"), "dogs", 0.38)
    assert views.result.size == views.gray.size == views.uncertainty.size == (64, 48)
    assert views.original is None and views.compared.width > 2 * 64


def test_colorize_views_of_a_colour_photo_keep_the_truth(models, tmp_path):
    original = photo(64, 48)
    views = logic.colorize_views(models, saved(original, tmp_path / "c.png"), "generic", 0.38)
    assert views.original is not None and np.array_equal(np.asarray(views.original), np.asarray(original))
    assert views.gray.getpixel((5, 5))[0] == views.gray.getpixel((5, 5))[1] == views.gray.getpixel((5, 5))[2]


def test_a_sepia_scan_is_a_gray_photo_with_no_truth_to_compare(models, tmp_path):
    gray = np.asarray(photo(96, 72).convert("L"), dtype=np.float32)[..., None] / 255
    sepia = gray * np.array([1.0, 0.82, 0.6]) + np.array([0.0, 0.18, 0.4]) * gray**2
    path = saved(Image.fromarray((sepia * 255).round().astype(np.uint8), "RGB"), tmp_path / "sepia.jpg", quality=70)
    upload = logic.read_upload(path)
    assert not upload.colour and upload.notes == []
    views = logic.colorize_views(models, path, "generic", 0.38)
    assert views.original is None and views.notes == []


def test_save_png_is_lossless_named_for_its_download_and_clears_old_files(tmp_path):
    stale = tmp_path / "0123456789ab"
    stale.mkdir()
    (stale / "old_colorized.png").write_bytes(b"")
    os.utime(stale, (time.time() - 120, time.time() - 120))
    image = photo(64, 48)
    path = logic.save_png(tmp_path, image, logic.output_name("/uploads/3f2a/Holiday 1952.jpg", "colorized"))
    with Image.open(path) as saved_image:
        assert saved_image.format == "PNG" and np.array_equal(np.asarray(saved_image), np.asarray(image))
    again = logic.save_png(tmp_path, image, "Holiday 1952_colorized")
    assert os.path.basename(path) == os.path.basename(again) == "Holiday 1952_colorized.png" and path != again
    assert not stale.exists()


def test_notes_are_shown_once_per_photo():
    fresh, seen = logic.unseen_notes(["colour photo", "EXIF"], "a.jpg", frozenset())
    assert fresh == ["colour photo", "EXIF"]
    assert logic.unseen_notes(["colour photo", "EXIF"], "a.jpg", seen)[0] == []
    assert logic.unseen_notes(["colour photo"], "b.jpg", seen)[0] == ["colour photo"]


def test_a_batch_becomes_one_zip_of_named_pngs(models, colorizer, tmp_path):
    import zipfile

    folder = tmp_path / "in"
    folder.mkdir()
    (tmp_path / "b").mkdir()
    paths = [saved(photo(40, 30, seed=1).convert("L"), folder / "street.jpg"), saved(photo(30, 20), folder / "a.png"),
             saved(photo(30, 20, seed=2), tmp_path / "b" / "a.png")]
    (folder / "notes.txt").write_text("not a photo")
    progress = []
    zipped, notes = logic.colorize_to_zip(models, [*paths, str(folder / "notes.txt")], "generic", 0.38,
                                          tmp_path / "zips", lambda done, total: progress.append((done, total)))
    assert notes == ["notes.txt: not an image"] and progress == [(4, 4)]
    with zipfile.ZipFile(zipped) as bundle:
        assert bundle.namelist() == ["street_colorized.png", "a_colorized.png", "a_colorized-2.png"]
        with bundle.open("street_colorized.png") as entry:
            result = Image.open(entry)
            result.load()
    expected = colorizer.colorize(Image.open(paths[0]), 0.38)
    assert np.abs(np.asarray(result, dtype=int) - np.asarray(expected, dtype=int)).max() <= 1
    assert os.path.basename(zipped) == "colorized_photos.zip"


def test_a_batch_without_a_photo_leaves_no_zip(models, tmp_path):
    bad = tmp_path / "x.png"
    bad.write_bytes(b"nope")
    with pytest.raises(UserError, match="no photo among the 1 files: x.png: not an image"):
        logic.colorize_to_zip(models, [str(bad)], "generic", 0.38, tmp_path / "zips")
    assert list((tmp_path / "zips").rglob("*.zip*")) == []
    with pytest.raises(UserError, match="no photos given"):
        logic.colorize_to_zip(models, [], "generic", 0.38, tmp_path / "zips")


# colour hints

@pytest.fixture(scope="module")
def hint_colorizer(tiny_hint_checkpoint) -> Colorizer:
    return Colorizer.load(tiny_hint_checkpoint)


@pytest.fixture
def editor(hint_colorizer, colorizer) -> logic.HintEditor:
    return logic.HintEditor(logic.Models({"generic": hint_colorizer, "dogs": colorizer}))


def test_parse_hints_takes_a_json_list_or_nothing():
    assert logic.parse_hints("") is None and logic.parse_hints(None) is None and logic.parse_hints("[]") is None
    assert logic.parse_hints('[{"x": 1, "y": 2, "rgb": [3, 4, 5]}]') == [{"x": 1, "y": 2, "rgb": [3, 4, 5]}]
    with pytest.raises(UserError, match=r"^hints: not valid JSON \(Expecting value at line 1 column 8\)$"):
        logic.parse_hints('[{"x": }]')
    with pytest.raises(UserError, match="expected a JSON list .* got an object"):
        logic.parse_hints('{"x": 1, "y": 2, "rgb": [3, 4, 5]}')


def test_rgb_of_hex_reads_a_colour_pickers_value():
    assert logic.rgb_of_hex("#c81e1e") == (200, 30, 30) and logic.rgb_of_hex("#fff") == (255, 255, 255)
    for bad in ("", "red", "#12345", "#gggggg"):
        with pytest.raises(UserError, match="not a colour"):
            logic.rgb_of_hex(bad)


def test_hint_board_edits_and_undoes():
    board = logic.HintBoard().place(10, 20, (200, 30, 30)).place(30, 40, (0, 0, 255))
    assert [(h.x, h.y) for h in board.hints] == [(10, 20), (30, 40)] and board.selected == 1
    board = board.select(0).move(12, 22).recolour((0, 255, 0))
    assert board.hints[0] == logic.Hint(12, 22, (0, 255, 0)) and board.hints[1].rgb == (0, 0, 255)
    assert board.recolour((0, 255, 0)) is board  # the same colour again is no edit to undo
    board = board.remove()
    assert board.hints == (logic.Hint(30, 40, (0, 0, 255)),) and board.selected == 0
    assert board.undo().hints[0] == logic.Hint(12, 22, (0, 255, 0))
    cleared = board.clear()
    assert cleared.hints == () and cleared.selected is None and cleared.undo() == board
    steps = [board := board.undo() for _ in range(4)]  # remove, recolour, move, the second placement
    assert [(h.x, h.y) for h in steps[-1].hints] == [(10, 20)]
    assert board.undo().hints == ()
    with pytest.raises(UserError, match="nothing to undo"):
        board.undo().undo()


def test_hint_board_needs_a_selection_to_edit_one():
    board = logic.HintBoard().place(1, 1, (0, 0, 0)).select(None)
    for edit in (lambda b: b.move(2, 2), lambda b: b.recolour((1, 2, 3)), logic.HintBoard.remove):
        with pytest.raises(UserError, match="no hint selected"):
            edit(board)
    with pytest.raises(UserError, match="there is no hint 2"):
        board.select(1)


def test_hint_board_keeps_a_bounded_history():
    board = logic.HintBoard()
    for i in range(logic.MAX_UNDO + 10):
        board = board.place(i, i, (0, 0, 0))
    assert len(board.history) == logic.MAX_UNDO


def test_nearest_hint_is_the_one_whose_marker_was_clicked():
    board = logic.HintBoard().place(10, 10, (0, 0, 0)).place(50, 10, (0, 0, 0))
    assert board.nearest(48, 12, within=5) == 1 and board.nearest(30, 10, within=5) is None


def test_chips_and_swatches_carry_colours_readably():
    chips = logic.HintBoard().place(3, 4, (250, 250, 250)).place(5, 6, (10, 10, 10)).chips()
    assert [(c["label"], c["hex"], c["ink"], c["state"]) for c in chips] == [
        ("1: 3, 4", "#fafafa", "#000", "chip"), ("2: 5, 6", "#0a0a0a", "#fff", "chip selected")]
    assert logic.swatches([{"rgb": [200, 30, 30], "probability": 0.256}], (5, 6)) == [
        {"hex": "#c81e1e", "ink": "#fff", "label": "26 %", "x": 5, "y": 6}]


def test_a_colour_chosen_for_a_point_lands_there_whatever_is_selected_now():
    board = logic.HintBoard().place(10, 10, (1, 1, 1)).point(50, 40)  # a later click selected another spot
    assert board.target == (50, 40) and board.select(0).target == (10, 10)
    recoloured = board.choose_at(10, 10, (200, 0, 0))
    assert recoloured.hints == (logic.Hint(10, 10, (200, 0, 0)),) and recoloured.selected == 0
    placed = board.choose_at(30, 20, (0, 0, 200))
    assert [(h.x, h.y) for h in placed.hints] == [(10, 10), (30, 20)] and placed.selected == 1


def test_clicks_on_a_shrunk_view_land_on_the_photos_pixel():
    assert logic.view_size((2560, 1000)) == (1280, 500) and logic.view_size((640, 480)) == (640, 480)
    assert logic.point_on_photo((640, 250), (1280, 500), (2560, 1000)) == (1280, 500)
    assert logic.point_on_photo((1280, -3), (1280, 500), (2560, 1000)) == (2559, 0)


def test_hint_view_marks_each_hint_in_its_colour():
    result = Image.new("RGB", (2560, 1280), "gray")
    board = logic.HintBoard().place(400, 400, (200, 30, 30)).place(2000, 1000, (30, 30, 200)).select(0)
    view = logic.hint_view(result, board)
    assert view.size == (1280, 640)
    assert view.getpixel((200, 200)) == (200, 30, 30) and view.getpixel((1000, 500)) == (30, 30, 200)
    assert view.getpixel((600, 300)) == (128, 128, 128) and result.getpixel((400, 400)) == (128, 128, 128)


def test_hint_editor_matches_colorize_with_hints(editor, hint_colorizer, tmp_path):
    path = saved(photo(96, 72).convert("L"), tmp_path / "g.png")
    board = logic.HintBoard().place(20, 30, (220, 20, 20)).place(70, 50, (20, 20, 220))
    result = editor.colorize(path, "generic", 0.38, board)
    expected = hint_colorizer.colorize(Image.open(path), 0.38, hints=board.as_dicts())
    assert np.array_equal(np.asarray(result), np.asarray(expected))
    without = editor.colorize(path, "generic", 0.38, logic.HintBoard())
    assert not np.array_equal(np.asarray(result), np.asarray(without))
    assert list(editor.photos) == [path]  # read once, kept for the next edit


def test_hint_editor_keeps_only_the_last_photos(editor, tmp_path):
    paths = [saved(photo(32, 32, seed=i), tmp_path / f"p{i}.png") for i in range(6)]
    for path in paths:
        editor.photo(path)
    assert list(editor.photos) == paths[-editor.keep :]


def test_a_click_selects_a_spot_and_a_chosen_colour_places_the_hint(editor, hint_colorizer, tmp_path):
    path = saved(photo(96, 72).convert("L"), tmp_path / "g.png")
    plain = editor.colorize(path, "generic", 0.38, logic.HintBoard())
    board, suggested = editor.click(path, "generic", logic.HintBoard(), 20, 30, move=False)
    assert board.hints == () and board.spot == (20, 30) and board.selected is None  # nothing placed yet
    assert 1 <= len(suggested) <= logic.SUGGESTIONS
    assert suggested == hint_colorizer.suggest(Image.open(path), 20, 30, k=logic.SUGGESTIONS)
    assert editor.colorize(path, "generic", 0.38, board) is plain  # the picture stays, without a network pass
    board = board.choose(suggested[1]["rgb"] if len(suggested) > 1 else (0, 0, 255))
    assert len(board.hints) == 1 and (board.hints[0].x, board.hints[0].y) == (20, 30)
    assert board.selected == 0 and board.spot is None
    assert board.choose((1, 2, 3)).hints[0].rgb == (1, 2, 3)  # the selected hint: recoloured, not a second one
    assert board.undo().hints == () and board.undo().spot is None
    board = board.place(70, 50, (0, 0, 255))
    board, suggested = editor.click(path, "generic", board, 21, 29, move=False)  # on the first marker
    assert len(board.hints) == 2 and board.selected == 0 and board.spot is None
    assert suggested == hint_colorizer.suggest(Image.open(path), 20, 30, k=logic.SUGGESTIONS,
                                               hints=[board.hints[1].as_dict()])
    board, _ = editor.click(path, "generic", board, 5, 60, move=True)
    assert (board.hints[0].x, board.hints[0].y) == (5, 60) and len(board.hints) == 2
    spot, _ = editor.click(path, "generic", board, 90, 10, move=False)
    assert spot.select(1).spot is None and spot.select(1).selected == 1


def test_the_hint_view_rings_the_selected_spot():
    board = logic.HintBoard().point(50, 40)
    view = logic.hint_view(Image.new("RGB", (100, 80), (128, 128, 128)), board)
    ring = logic.marker_radius((100, 80)) * 1.6
    assert view.getpixel((50, 40)) == (128, 128, 128)  # the photo shows through
    assert view.getpixel((50, round(40 - ring + 1))) in ((255, 255, 255), (0, 0, 0))


def test_a_model_without_hint_inputs_says_so(editor, tmp_path):
    path = saved(photo(64, 48), tmp_path / "c.png")
    with pytest.raises(UserError, match="'dogs' takes no colour hints"):
        editor.click(path, "dogs", logic.HintBoard(), 5, 5, move=False)
    board = logic.HintBoard().place(5, 5, (200, 30, 30))
    views = logic.colorize_views(editor.models, path, "dogs", 0.38, board)
    assert any("takes no colour hints" in note and "1 hints are kept" in note for note in views.notes)
    assert views.result.size == (64, 48)


def test_colorize_batched_checks_each_requests_hints(editor, hint_colorizer):
    image = photo(64, 48)
    hints = [{"x": 10, "y": 10, "rgb": [200, 30, 30]}]
    result = editor.models.colorize_batched("generic", image, 0.38, hints)
    assert np.array_equal(np.asarray(result), np.asarray(hint_colorizer.colorize(image, 0.38, hints=hints)))
    with pytest.raises(UserError, match="hint 1: x = 64 lies outside the photo"):
        editor.models.colorize_batched("generic", image, 0.38, [{"x": 64, "y": 0, "rgb": [0, 0, 0]}])
    with pytest.raises(UserError, match="takes no colour hints"):
        editor.models.colorize_batched("dogs", image, 0.38, hints)
