"""The demo's Video tab, free of Gradio: reading an upload, frames, keyframe hints, a run and its Stop."""

from __future__ import annotations

import threading

import pytest

from colorizer.errors import UserError
from demo import logic, video
from tests.test_video import make_clip, probe


@pytest.fixture
def models(tiny_hint_checkpoint):
    return logic.Models({"generic": str(tiny_hint_checkpoint)})


def test_upload_facts_and_frames_as_shown(tmp_path):
    clip = video.read_clip(make_clip(tmp_path / "phone.mp4", frames=7, size=(64, 48), rotation=90))
    assert (clip.frames, clip.rotation, clip.size, clip.fps) == (7, 90, (48, 64), 12)
    assert video.frame_image(clip, 6).size == (48, 64)
    with pytest.raises(UserError, match="no frame 7"):
        video.frame_image(clip, 7)


def test_a_bad_upload_is_named_without_its_server_path(tmp_path):
    bad = tmp_path / "holiday.mp4"
    bad.write_text("no video here")
    with pytest.raises(UserError) as caught:
        video.read_clip(bad)
    assert str(caught.value).startswith("holiday.mp4: ") and str(tmp_path) not in str(caught.value)


def test_keyframe_boards_become_the_hint_list():
    keyframes = video.Keyframes().with_board(5, logic.HintBoard().place(3, 4, (10, 20, 30)))
    keyframes = keyframes.with_board(0, logic.HintBoard().place(1, 2, (1, 2, 3)))
    assert keyframes.hints() == [{"frame": 0, "x": 1, "y": 2, "rgb": [1, 2, 3]},
                                 {"frame": 5, "x": 3, "y": 4, "rgb": [10, 20, 30]}]
    assert keyframes.summary() == "Hints on frame 0 (1), frame 5 (1)"


def test_a_run_colours_the_clip_with_progress_and_its_gray_copy(models, tmp_path):
    clip = video.read_clip(make_clip(tmp_path / "clip.mp4", frames=9, audio=True))
    keyframes = video.Keyframes().with_board(2, logic.HintBoard().place(20, 20, (0, 200, 0)))
    seen = []
    result = video.colorize_clip(models, clip, "generic", 0.38, keyframes, tmp_path / "out",
                                 progress=lambda done, total: seen.append((done, total)))
    assert probe(result)["frames"] == 9 and seen[-1] == (9, 9)
    video.gray_copy(clip.path, tmp_path / "gray.mp4")
    gray = probe(tmp_path / "gray.mp4")
    assert gray["frames"] == 9 and abs(gray["rgb"][3].astype(int).std(-1)).max() <= 3


def test_stop_ends_a_run_and_leaves_no_file(models, tmp_path):
    clip = video.read_clip(make_clip(tmp_path / "clip.mp4", frames=20))
    stop = threading.Event()

    def progress(done, total):
        if done == 8:
            stop.set()

    (tmp_path / "out").mkdir()
    with pytest.raises(video.Cancelled):
        video.colorize_clip(models, clip, "generic", 0.38, video.Keyframes(), tmp_path / "out", progress=progress,
                            stop=stop)
    assert list((tmp_path / "out").iterdir()) == []


def test_runs_stop_only_their_own_session():
    runs = video.Runs()
    mine, theirs = runs.start("a"), runs.start("b")
    runs.stop("a")
    assert mine.is_set() and not theirs.is_set()
