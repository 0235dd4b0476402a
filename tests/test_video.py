"""Video colorization: tiny clips made here with PyAV (a moving coloured square, a cut, an audio track)."""

from __future__ import annotations

import tracemalloc
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from colorizer import video
from colorizer.bins import NUM_BINS, ab_bins
from colorizer.cli import main
from colorizer.color import lab_to_rgb, rgb_to_lab
from colorizer.errors import UserError
from colorizer.infer import Colorizer

SQUARE = (230, 40, 40)


def square_frame(index: int, width: int = 64, height: int = 48, scene: int = 0, step: int = 2) -> np.ndarray:
    """A gray-textured background with a red square moving right by `step` pixels a frame; `scene` 1 is
    a different, darker shot with the square elsewhere (for cuts)."""
    y, x = np.mgrid[0:height, 0:width]
    background = 90 + 40 * np.sin(x / 5.0) * np.cos(y / 7.0) if scene == 0 else 20 + 10 * np.cos(x / 3.0)
    frame = np.repeat(background[..., None], 3, axis=2)
    left, top = 6 + step * index, height // 3
    if scene:
        left, top = width - 20, 4
    # a textured object, as real ones are: the flow of a flat patch is ambiguous inside it
    region = frame[top : top + 14, left : left + 14]
    ty, tx = np.mgrid[0 : region.shape[0], 0 : region.shape[1]]
    region[:] = np.array(SQUARE) * (0.75 + 0.25 * ((ty // 3 + tx // 3) % 2))[..., None]
    return frame.astype(np.uint8)


def make_clip(path: Path, frames: int = 16, size: tuple[int, int] = (64, 48), fps: int = 12, audio: bool = False,
              cut_at: int | None = None, rotation: int = 0, pix_fmt: str = "yuv420p", pts=None) -> Path:
    container = av.open(str(path), "w")
    stream = container.add_stream("libx264", rate=fps)
    stream.width, stream.height = size
    stream.pix_fmt = pix_fmt
    if pts is not None:
        stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
    if rotation:
        stream.set_display_rotation(rotation)
    sound = container.add_stream("aac", rate=8000) if audio else None
    for i in range(frames):
        scene = 1 if cut_at is not None and i >= cut_at else 0
        frame = av.VideoFrame.from_ndarray(square_frame(i, *size, scene=scene), format="rgb24")
        if pts is not None:
            frame.pts, frame.time_base = pts[i], Fraction(1, 1000)
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))
    if sound is not None:
        samples = int(8000 * frames / fps)
        tone = (0.2 * np.sin(np.arange(samples) * 2 * np.pi * 440 / 8000)).astype(np.float32)[None]
        for start in range(0, samples, 1024):
            chunk = av.AudioFrame.from_ndarray(tone[:, start : start + 1024], format="fltp", layout="mono")
            chunk.sample_rate, chunk.pts = 8000, start
            container.mux(sound.encode(chunk))
        container.mux(sound.encode(None))
    container.close()
    return path


def probe(path: Path) -> dict:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        rate, pix_fmt = stream.average_rate, stream.codec_context.pix_fmt
    with av.open(str(path)) as container:
        audio = [bytes(p) for s in container.streams.audio for p in container.demux(s) if p.size]
    return {"frames": len(frames), "size": (frames[0].width, frames[0].height), "rotation": frames[0].rotation,
            "times": [round(f.time, 3) for f in frames], "audio": audio, "rate": rate, "pix_fmt": pix_fmt,
            "rgb": [f.to_ndarray(format="rgb24") for f in frames]}


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


class FlickeringModel:
    """A stand-in for a Colorizer: each frame's logits favour the square's red, plus fresh noise on
    every call, as a network colouring frames alone flickers. Takes hints (and ignores them)."""

    input_size, takes_hints = 16, True

    def __init__(self, noise: float = 3.0, seed: int = 0):
        self.noise, self.generator = noise, torch.Generator().manual_seed(seed)
        red = rgb_to_lab(torch.tensor(SQUARE, dtype=torch.float32)[None, :, None, None] / 255)[0, 1:, 0, 0]
        self.base = -((ab_bins() - red) ** 2).sum(1) / 200  # (313,)
        self.hint_batches: list[torch.Tensor | None] = []

    def require_hints(self) -> None:
        pass

    def hint_map_of_size(self, size, hints):
        return Colorizer.hint_map_of_size(self, size, hints)

    def logits(self, lightness: torch.Tensor, hint_maps: torch.Tensor | None = None) -> torch.Tensor:
        self.hint_batches.append(hint_maps)
        n = len(lightness)
        noise = self.noise * torch.randn(n, NUM_BINS, 4, 4, generator=self.generator)
        return self.base[None, :, None, None] + noise


def test_lightness_and_colour_match_the_photo_conversions():
    rgb = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    lab = rgb_to_lab(torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255)
    assert np.abs(video.lightness_of_rgb(rgb) - lab[0, 0].numpy()).max() < 0.05
    back = video.rgb_of_lab(lab[0, 0].numpy(), lab[0, 1:].permute(1, 2, 0).numpy())
    assert np.abs(back.astype(int) - rgb.astype(int)).max() <= 2
    expected = (lab_to_rgb(lab)[0].permute(1, 2, 0).numpy() * 255).round()
    assert np.abs(back - expected).max() <= 2


def test_cli_keeps_frames_rate_size_and_audio(tiny_checkpoint, tmp_path, capsys):
    clip = make_clip(tmp_path / "clip.mp4", frames=18, fps=12, audio=True)
    code, out, _ = run(capsys, "colorize", clip, "--out", tmp_path / "out", "--model", tiny_checkpoint)
    assert code == 0 and "colorized 1 of 1 videos" in out
    source, result = probe(clip), probe(tmp_path / "out" / "clip.mp4")
    assert result["frames"] == 18 and result["rate"] == 12 and result["size"] == (64, 48)
    assert result["times"] == source["times"]
    assert result["audio"] and result["audio"] == source["audio"]  # copied packet for packet
    assert result["pix_fmt"] == "yuv420p"
    # the source's own lightness comes through: gray levels of the output follow the input's
    gray_in = video.lightness_of_rgb(source["rgb"][5])
    gray_out = video.lightness_of_rgb(result["rgb"][5])
    assert np.corrcoef(gray_in.ravel(), gray_out.ravel())[0, 1] > 0.95


def test_variable_frame_rate_timestamps_are_kept(tiny_checkpoint, tmp_path):
    pts = [0, 40, 120, 160, 300, 340, 380, 600]  # ms: irregular gaps
    clip = make_clip(tmp_path / "vfr.mp4", frames=len(pts), pts=pts)
    Colorizer.load(tiny_checkpoint).colorize_video(clip, tmp_path / "out.mp4")
    assert probe(tmp_path / "out.mp4")["times"] == [p / 1000 for p in pts]


@pytest.mark.parametrize("size, pix_fmt, rotation", [((33, 25), "yuv444p", 0), ((48, 32), "yuv420p10le", 0),
                                                      ((64, 48), "yuv420p", 90)])
def test_odd_sizes_deep_and_rotated_sources(tiny_checkpoint, tmp_path, size, pix_fmt, rotation):
    clip = make_clip(tmp_path / "in.mp4", frames=6, size=size, pix_fmt=pix_fmt, rotation=rotation)
    Colorizer.load(tiny_checkpoint).colorize_video(clip, tmp_path / "out.mp4")
    result = probe(tmp_path / "out.mp4")
    assert (result["frames"], result["size"], result["rotation"]) == (6, size, rotation)


def test_bad_inputs_fail_alone_and_leave_nothing(tiny_checkpoint, tmp_path, capsys):
    good = make_clip(tmp_path / "good.mp4", frames=6)
    text = tmp_path / "notes.mp4"
    text.write_text("not a video at all")
    whole = make_clip(tmp_path / "whole.mp4", frames=30).read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(whole[: len(whole) // 2])
    empty = tmp_path / "empty.mp4"
    container = av.open(str(empty), "w")
    container.add_stream("libx264", rate=12).pix_fmt = "yuv420p"
    container.close()
    unknown = tmp_path / "unknown.mkv"  # a codec id no decoder knows
    mkv = make_clip(tmp_path / "h264.mkv", frames=3).read_bytes()
    unknown.write_bytes(mkv.replace(b"V_MPEG4/ISO/AVC", b"V_XXXXX/XXX/XXX"))
    out = tmp_path / "out"
    code, _, err = run(capsys, "colorize", good, text, truncated, empty, unknown, "--out", out, "--model", tiny_checkpoint)
    assert code == 1
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 4 and all(any(str(p) in line for line in errors) for p in (text, truncated, empty, unknown))
    assert f"error: {unknown}: unsupported video codec" in errors
    assert sorted(p.name for p in out.iterdir()) == ["good.mp4"]  # no partial or temporary file
    assert probe(out / "good.mp4")["frames"] == 6


def test_interrupt_leaves_no_file(tiny_checkpoint, tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", frames=20)

    def interrupt(done, total):
        if done == 9:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Colorizer.load(tiny_checkpoint).colorize_video(clip, tmp_path / "out" / "clip.mp4", progress=interrupt,
                                                       batch_size=3)
    assert list((tmp_path / "out").iterdir()) == []


def test_frame_folders_become_clips_only_when_asked(tiny_checkpoint, tmp_path, capsys):
    from PIL import Image

    frames = tmp_path / "shot"
    frames.mkdir()
    for i in range(5):
        Image.fromarray(square_frame(i)).save(frames / f"frame_{i + 1:04d}.png")
    code, out, _ = run(capsys, "colorize", frames, "--out", tmp_path / "photos", "--model", tiny_checkpoint)
    assert code == 0 and len(list((tmp_path / "photos").glob("*.png"))) == 5
    code, out, _ = run(capsys, "colorize", frames, "--frames-as-video", "--fps", 24, "--out", tmp_path / "clips",
                       "--model", tiny_checkpoint)
    result = probe(tmp_path / "clips" / "shot.mp4")
    assert code == 0 and result["frames"] == 5 and result["rate"] == 24


def test_mixed_photos_and_clips_in_one_call(tiny_checkpoint, tmp_path, capsys):
    from PIL import Image

    Image.fromarray(square_frame(0)).save(tmp_path / "photo.png")
    clip = make_clip(tmp_path / "clip.mp4", frames=4)
    code, out, _ = run(capsys, "colorize", tmp_path / "photo.png", clip, "--out", tmp_path / "out", "--model", tiny_checkpoint)
    assert code == 0 and "1 of 1 images" in out and "1 of 1 videos" in out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["clip.mp4", "photo.png"]


def warping_errors(frames: list[np.ndarray], model, temporal: bool) -> float:
    clip = video.ClipColorizer(model, temporal=temporal, batch_size=4)
    outputs = [out for frame in frames for out in clip.push(frame)] + clip.finish()
    error = video.WarpingError()
    for frame, output in zip(frames, outputs, strict=True):
        error.add(frame, output)
    return error.value


def test_temporal_pass_lowers_the_warping_error_of_a_flickering_model():
    frames = [square_frame(i) for i in range(16)]
    per_frame = warping_errors(frames, FlickeringModel(), temporal=False)
    temporal = warping_errors(frames, FlickeringModel(), temporal=True)
    assert temporal < 0.5 * per_frame


def test_a_cut_resets_the_temporal_state():
    frames = [square_frame(i, scene=int(i >= 8)) for i in range(12)]
    clip = video.ClipColorizer(FlickeringModel(), batch_size=4)
    outputs = [out for frame in frames for out in clip.push(frame)] + clip.finish()
    assert clip.cuts == 1 and len(outputs) == 12
    motions = []
    tracker = video.FlowTracker()
    for frame in frames:
        size = video.flow_size(64, 48)
        motions.append(tracker.step(video.gray_u8(video.lightness_of_rgb(frame), size)))
    assert [m.cut for m in motions] == [True] + [False] * 7 + [True] + [False] * 3


def test_a_cut_frame_gets_no_colour_from_before_it():
    frames = [square_frame(i, scene=int(i >= 4)) for i in range(6)]

    def alone(frame: np.ndarray) -> np.ndarray:  # the frame coloured with nothing carried into it
        return video.ClipColorizer(FlickeringModel(noise=0), batch_size=1).push(frame)[0]

    clip = video.ClipColorizer(FlickeringModel(noise=0), batch_size=1)
    clip.push(frames[0])
    clip.state[:] = 60.0  # a loud colour in the state, which a cut must not drag across
    outputs = [clip.push(frame)[0] for frame in frames[1:]]
    assert np.abs(outputs[0].astype(int) - alone(frames[1])).mean() > 10  # carried into frame 1
    assert np.array_equal(outputs[3], alone(frames[4]))  # frame 4, after the cut: nothing carried


def test_hints_follow_their_object_and_stop_at_a_cut():
    frames = [square_frame(i, step=2, scene=int(i >= 12)) for i in range(14)]
    model = FlickeringModel()
    clip = video.ClipColorizer(model, hints={0: [{"x": 13, "y": 23, "rgb": [0, 200, 0]}]}, batch_size=4)
    positions = []
    for frame in frames:
        clip.push(frame)
        positions.append([(h["x"], h["y"]) for h in clip.tracks.active])
    clip.finish()
    for i in range(10):
        (x, y), = positions[i]
        assert abs(x - (13 + 2 * i)) < 3 and abs(y - 23) < 3, (i, x, y)
    assert positions[12] == [] and positions[13] == []
    hinted = torch.cat([m for m in model.hint_batches if m is not None])
    assert hinted[:, 2].amax((1, 2)).tolist()[:12] == [1.0] * 12  # every frame before the cut got the hint


def test_a_later_keyframe_takes_over():
    tracks = video.HintTracks({0: [{"x": 1, "y": 1, "rgb": [0, 0, 0]}], 3: [{"x": 5, "y": 5, "rgb": [9, 9, 9]}]})
    still = video.Motion(np.zeros((8, 8, 2), np.float32), np.ones((8, 8), bool), np.zeros((8, 8, 2), np.float32),
                         np.ones((8, 8), bool), cut=False)
    seen = [tracks.step(i, still, 1.0, (8, 8)) for i in range(5)]
    assert [[h["rgb"] for h in hints] for hints in seen] == [[[0, 0, 0]]] * 3 + [[[9, 9, 9]]] * 2


def test_keyframe_hints_are_checked_as_photo_hints(tiny_hint_checkpoint, tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", frames=5)
    colorizer = Colorizer.load(tiny_hint_checkpoint)
    cases = {"past the clip's end": [{"frame": 5, "x": 1, "y": 1, "rgb": [1, 2, 3]}],
             "x = 64 lies outside": [{"frame": 0, "x": 64, "y": 1, "rgb": [1, 2, 3]}],
             "rgb must be three numbers": [{"frame": 1, "x": 1, "y": 1, "rgb": [1, 2]}],
             "frame must be a frame number": [{"frame": -1, "x": 1, "y": 1, "rgb": [1, 2, 3]}]}
    for message, hints in cases.items():
        with pytest.raises(UserError, match=message) as caught:
            colorizer.colorize_video(clip, tmp_path / "out.mp4", hints=hints)
        assert str(clip) in str(caught.value) and "\n" not in str(caught.value)
    assert not (tmp_path / "out.mp4").exists()
    result = colorizer.colorize_video(clip, tmp_path / "out.mp4", hints=[{"frame": 0, "x": 20, "y": 20, "rgb": [0, 200, 0]}])
    assert result["frames"] == 5 and result["hinted_frames"] >= 1


def test_hints_are_placed_on_the_frame_as_shown():
    # a 4x2 frame turned a quarter counter-clockwise shows as 2 wide, 4 high
    decoded = np.arange(8).reshape(2, 4)
    shown = np.rot90(decoded)
    for sx in range(2):
        for sy in range(4):
            x, y = video.decoded_point(sx, sy, 90, 4, 2)
            assert decoded[int(y), int(x)] == shown[sy, sx]


def test_memory_stays_flat_with_the_clip_length():
    def peak(frames: int) -> int:
        clip = video.ClipColorizer(FlickeringModel(), batch_size=4)
        tracemalloc.start()
        for i in range(frames):
            clip.push(square_frame(i % 8, step=1))
        clip.finish()
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    assert peak(64) < 1.2 * peak(8)


def test_cli_hints_on_a_clip_and_clips_inside_folders(tiny_hint_checkpoint, tmp_path, capsys):
    folder = tmp_path / "reels" / "day1"
    folder.mkdir(parents=True)
    make_clip(folder / "a.mov", frames=5)
    hints = tmp_path / "hints.json"
    hints.write_text('[{"frame": 1, "x": 20, "y": 20, "rgb": [0, 200, 0]}]')
    code, out, _ = run(capsys, "colorize", folder / "a.mov", "--hints", hints, "--out", tmp_path / "one",
                       "--model", tiny_hint_checkpoint)
    assert code == 0 and probe(tmp_path / "one" / "a.mov")["frames"] == 5
    hints.write_text('[{"frame": 9, "x": 20, "y": 20, "rgb": [0, 200, 0]}]')
    code, _, err = run(capsys, "colorize", folder / "a.mov", "--hints", hints, "--out", tmp_path / "two",
                       "--model", tiny_hint_checkpoint)
    assert code == 1 and f"error: {folder / 'a.mov'}: hint 1: frame 9 is past the clip's end" in err
    assert not (tmp_path / "two").exists() or not list((tmp_path / "two").iterdir())
    code, out, _ = run(capsys, "colorize", tmp_path / "reels", "--out", tmp_path / "all", "--model", tiny_hint_checkpoint)
    assert code == 0 and (tmp_path / "all" / "day1" / "a.mov").is_file()
