"""Colorizing video clips without flicker: `Colorizer.colorize_video("clip.mp4", "out.mp4")`.

Frames stream from PyAV's decoder through the network in small batches and back into PyAV's
encoder, so memory stays flat whatever the clip's length. Between consecutive frames, DIS optical
flow (OpenCV) on the gray frames, the L the network sees, both ways: where the two flows agree
(forward-backward consistency, Sundaram et al. 2010), the previous output's ab, warped along the
flow, is blended with the current prediction, an exponential average along each pixel's path;
where they disagree (occlusion, a new object) the current prediction stands alone. A scene cut (a
jump in the gray histogram, or a flow that agrees almost nowhere) resets that state. Hints placed
on keyframes follow their point along the same flow until it is lost (occluded, left the frame, a
cut); a later keyframe's hints replace them. docs/video.md justifies the choices and measures them.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av
import cv2
import numpy as np
import torch

from colorizer.atomic import atomic_path
from colorizer.decode import DEFAULT_TEMPERATURE, annealed_mean
from colorizer.errors import UserError
from colorizer.hints import empty_hints
from colorizer.images import IMAGE_SUFFIXES, open_image

if TYPE_CHECKING:
    from colorizer.infer import Colorizer

VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts", ".wmv", ".flv"}
# containers H.264 and copied audio go into as they are; others are written as MP4
KEPT_CONTAINERS = {".mp4", ".m4v", ".mov", ".mkv"}
DEFAULT_CODEC = "libx264"
DEFAULT_CRF = 18  # visually lossless for x264; the colour is smooth, the L is the source's
DEFAULT_PRESET = "fast"  # x264's encoding costs ~1/10 of a frame's network time at this preset
BATCH = 8  # frames per network pass: batching pays on a CPU, and 8 frames of 1080p are ~150 MB
FLOW_SIDE = 320  # flow, blending and tracking run on frames shrunk to this longer side; colour is smooth
CARRY = 0.85  # share of the warped previous colour kept where the flow is trusted (docs/video.md)
CUT_HISTOGRAM = 0.4  # total-variation distance between gray histograms above which a frame starts a new shot
CUT_TRUSTED = 0.1  # ...or when the flow is trusted on less than this share of the frame
_DIS = cv2.DISOPTICAL_FLOW_PRESET_FAST

Progress = Callable[[int, int | None], None]  # (frames done, frames in the clip if known)


# ---------------------------------------------------------------------------------------- colour


def _srgb_to_linear_table() -> np.ndarray:
    values = np.arange(256, dtype=np.float64) / 255.0
    return np.where(values <= 0.04045, values / 12.92, ((values + 0.055) / 1.055) ** 2.4).astype(np.float32)


_LINEAR = _srgb_to_linear_table()
_Y_WEIGHTS = np.array([0.212671, 0.715160, 0.072169], dtype=np.float32)  # D65 sRGB -> CIE Y


def lightness_of_rgb(rgb: np.ndarray) -> np.ndarray:
    """CIELAB L in [0, 100] (H, W) float32 of an 8-bit sRGB frame (H, W, 3): what colorizer.color's
    rgb_to_lab gives for L, through a lookup table (L depends on Y alone), several times faster."""
    y = _LINEAR[rgb] @ _Y_WEIGHTS
    return np.where(y > 0.008856, 116.0 * np.cbrt(y) - 16.0, 903.3 * y).astype(np.float32)


def rgb_of_lab(lightness: np.ndarray, ab: np.ndarray) -> np.ndarray:
    """8-bit sRGB (H, W, 3) of L (H, W) and ab (h, w, 2) of any size (bilinearly resized): OpenCV's
    Lab -> RGB, the same D65 conversion as colorizer.color's (to within a level in gamut) at video speed."""
    height, width = lightness.shape
    if ab.shape[:2] != (height, width):
        ab = cv2.resize(ab, (width, height), interpolation=cv2.INTER_LINEAR)
    rgb = cv2.cvtColor(np.dstack([lightness, ab]).astype(np.float32), cv2.COLOR_Lab2RGB)
    return (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)


# ------------------------------------------------------------------------------------------ flow


def flow_size(width: int, height: int, side: int = FLOW_SIDE) -> tuple[int, int]:
    scale = min(1.0, side / max(width, height))
    return max(8, round(width * scale)), max(8, round(height * scale))


def gray_u8(lightness: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """L (H, W) as the 8-bit gray image (at `size`, width x height) the flow runs on."""
    small = cv2.resize(lightness, size, interpolation=cv2.INTER_AREA)
    return np.clip(small * 2.55, 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=4)
def _grid(height: int, width: int) -> np.ndarray:
    """(h, w, 2) float32 pixel coordinates (x, y)."""
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    return np.dstack([grid_x, grid_y])


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """`image` (h, w[, c]) sampled at x + flow(x): the frame the flow points into, brought onto this one."""
    return cv2.remap(image, _grid(*flow.shape[:2]) + flow, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def consistent(flow: np.ndarray, back: np.ndarray) -> np.ndarray:
    """(h, w) bool: where following `flow` and then `back` returns to the start (Sundaram et al. 2010)
    and lands inside the frame; elsewhere the pixel is occluded, new, or the flow is wrong."""
    height, width = flow.shape[:2]
    back_there = warp(back, flow)
    error = np.square(flow + back_there).sum(-1)
    tolerance = 0.01 * (np.square(flow).sum(-1) + np.square(back_there).sum(-1)) + 0.5
    target = _grid(height, width) + flow
    inside = (target[..., 0] >= 0) & (target[..., 0] <= width - 1) & (target[..., 1] >= 0) & (target[..., 1] <= height - 1)
    return (error < tolerance) & inside


def histogram_distance(a: np.ndarray, b: np.ndarray, bins: int = 32) -> float:
    """Total-variation distance (0 same .. 1 disjoint) between the gray histograms of two 8-bit frames."""
    ha = np.bincount(a.ravel() // (256 // bins), minlength=bins) / a.size
    hb = np.bincount(b.ravel() // (256 // bins), minlength=bins) / b.size
    return 0.5 * float(np.abs(ha - hb).sum())


@dataclass
class Motion:
    """What the flow between a frame and the one before it tells: None fields on a clip's first frame or a cut."""

    backward: np.ndarray | None = None  # (h, w, 2) this frame -> the previous one
    trusted: np.ndarray | None = None  # (h, w) bool: where `backward` is consistent
    forward: np.ndarray | None = None  # (h, w, 2) the previous frame -> this one
    forward_trusted: np.ndarray | None = None
    cut: bool = True


class FlowTracker:
    """The flow between each frame and the one before it, for a clip fed frame by frame."""

    def __init__(self) -> None:
        self.dis = cv2.DISOpticalFlow_create(_DIS)
        self.previous: np.ndarray | None = None

    def step(self, gray: np.ndarray) -> Motion:
        previous, self.previous = self.previous, gray
        if previous is None or histogram_distance(previous, gray) > CUT_HISTOGRAM:
            return Motion()
        backward = self.dis.calc(gray, previous, None)
        forward = self.dis.calc(previous, gray, None)
        trusted = consistent(backward, forward)
        if trusted.mean() < CUT_TRUSTED:
            return Motion()
        return Motion(backward, trusted, forward, consistent(forward, backward), cut=False)


# ----------------------------------------------------------------------------------------- hints


def keyframe_hints(hints: Sequence[Any] | None, frame_size: tuple[int, int], rotation: int = 0,
                   name: object = "hints", frames: int | None = None) -> dict[int, list[dict[str, Any]]]:
    """Hints on keyframes, [{"frame": 0, "x", "y", "rgb", optional "radius"}] in the pixels of the frame as
    shown (after the clip's rotation; no "frame": the first), as {frame: [hint in the decoded frame's pixels]}. Checked as photo
    hints are (colorizer.hints.user_hint_map, whose messages name the hint), plus the frame number."""
    from colorizer.hints import user_hint_map

    if not hints:
        return {}
    if not isinstance(hints, (list, tuple)):
        raise UserError(f"{name}: expected a JSON list of hints like "
                        '[{"frame": 0, "x": 120, "y": 40, "rgb": [200, 30, 30]}]')
    width, height = frame_size
    shown = (height, width) if rotation % 180 else (width, height)
    try:
        user_hint_map(hints, shown, (1, 1), lambda rgb: torch.zeros(len(rgb), 2))
    except UserError as exc:
        raise UserError(f"{name}: {exc}") from None
    by_frame: dict[int, list[dict[str, Any]]] = {}
    for i, hint in enumerate(hints):
        frame = hint.get("frame", 0)
        if not isinstance(frame, int) or isinstance(frame, bool) or frame < 0:
            raise UserError(f"{name}: hint {i + 1}: frame must be a frame number from 0, got {frame!r}")
        if frames and frame >= frames:
            raise UserError(f"{name}: hint {i + 1}: frame {frame} is past the clip's end (frames 0 to {frames - 1})")
        x, y = decoded_point(hint["x"], hint["y"], rotation, width, height)
        by_frame.setdefault(frame, []).append({**{k: v for k, v in hint.items() if k != "frame"}, "x": x, "y": y})
    return by_frame


def decoded_point(x: float, y: float, rotation: int, width: int, height: int) -> tuple[float, float]:
    """A point of the frame as shown (rotated `rotation` degrees counter-clockwise, as a display matrix
    says) in the pixels of the decoded frame of `width` x `height`."""
    turns = (rotation // 90) % 4
    shown_w, shown_h = (height, width) if turns % 2 else (width, height)
    for _ in range(turns):  # undo one quarter turn counter-clockwise at a time
        x, y, shown_w, shown_h = shown_h - 1 - y, x, shown_h, shown_w
    return float(x), float(y)


def shown_frame(rgb: np.ndarray, rotation: int) -> np.ndarray:
    """A decoded frame (H, W, 3) as a player shows it, turned by its display rotation."""
    return np.ascontiguousarray(np.rot90(rgb, k=(rotation // 90) % 4))


@dataclass
class HintTracks:
    """The hints in force, each at its point in the current frame, moved along the flow frame by frame."""

    keyframes: dict[int, list[dict[str, Any]]]
    active: list[dict[str, Any]] = field(default_factory=list)

    def step(self, index: int, motion: Motion, scale: float, size: tuple[int, int]) -> list[dict[str, Any]]:
        """The hints of frame `index` (decoded pixels), given the motion from the previous frame and the
        flow grid's `scale` to the frame of `size` (width, height)."""
        if index in self.keyframes:
            self.active = [dict(hint) for hint in self.keyframes[index]]
        elif motion.cut:
            self.active = []
        else:
            self.active = [moved for hint in self.active if (moved := _moved(hint, motion, scale, size))]
        return self.active


def _moved(hint: dict[str, Any], motion: Motion, scale: float, size: tuple[int, int]) -> dict[str, Any] | None:
    """The hint where the forward flow carries its point, or None where the point is lost."""
    height, width = motion.forward.shape[:2]
    col = min(width - 1, max(0, int(hint["x"] * scale)))
    row = min(height - 1, max(0, int(hint["y"] * scale)))
    if not motion.forward_trusted[row, col]:
        return None
    dx, dy = motion.forward[row, col] / scale
    x, y = hint["x"] + float(dx), hint["y"] + float(dy)
    if not (0 <= x < size[0] and 0 <= y < size[1]):
        return None
    return {**hint, "x": x, "y": y}


# ---------------------------------------------------------------------------------- colorization


class ClipColorizer:
    """Colorizes a clip's frames in order: `push(rgb)` returns the frames it has finished (in batches),
    `finish()` the rest. Holds at most one batch of frames and one frame of temporal state."""

    def __init__(self, colorizer: Colorizer, temperature: float = DEFAULT_TEMPERATURE,
                 hints: dict[int, list[dict[str, Any]]] | None = None, temporal: bool = True,
                 batch_size: int = BATCH, carry: float = CARRY):
        self.colorizer, self.temperature, self.temporal = colorizer, temperature, temporal
        self.batch_size, self.carry = batch_size, carry
        self.flow = FlowTracker()
        self.use_hints(hints or {})
        self.pending: list[tuple[np.ndarray, Motion, list[dict[str, Any]]]] = []
        self.state: np.ndarray | None = None  # the previous output's ab at the flow's size (h, w, 2)
        self.index = 0
        self.cuts = 0

    def use_hints(self, keyframes: dict[int, list[dict[str, Any]]]) -> None:
        """Hints by keyframe, in decoded pixels (keyframe_hints); before the first frame."""
        if keyframes:
            self.colorizer.require_hints()
        self.tracks = HintTracks(keyframes)
        self.needs_flow = self.temporal or bool(keyframes)

    def push(self, rgb: np.ndarray) -> list[np.ndarray]:
        height, width = rgb.shape[:2]
        lightness = lightness_of_rgb(rgb)
        motion, hints = Motion(), []
        if self.needs_flow:
            size = flow_size(width, height)
            motion = self.flow.step(gray_u8(lightness, size))
            self.cuts += motion.cut and self.index > 0
            hints = self.tracks.step(self.index, motion, size[0] / width, (width, height))
        self.index += 1
        self.pending.append((lightness, motion, [dict(hint) for hint in hints]))
        return self.finish() if len(self.pending) >= self.batch_size else []

    def finish(self) -> list[np.ndarray]:
        if not self.pending:
            return []
        batch, self.pending = self.pending, []
        # shrunk to the network's input here, with OpenCV's area filter: torch's antialiased resize of
        # whole frames cost more than the network's pass at 640x360
        side = self.colorizer.input_size
        small = torch.stack([torch.from_numpy(cv2.resize(each, (side, side), interpolation=cv2.INTER_AREA))
                             for each, _, _ in batch])[:, None]
        logits = self.colorizer.logits(small, self._hint_maps(batch))
        ab = annealed_mean(logits, self.temperature).permute(0, 2, 3, 1).numpy()  # (N, h, w, 2) at the network's size
        return [self._blend(each, motion, frame_ab) for (each, motion, _), frame_ab in zip(batch, ab, strict=True)]

    def _hint_maps(self, batch) -> torch.Tensor | None:
        if not any(hints for _, _, hints in batch):
            return None
        size = (self.colorizer.input_size, self.colorizer.input_size)
        maps = []
        for lightness, _, hints in batch:
            shape = (lightness.shape[1], lightness.shape[0])
            maps.append(self.colorizer.hint_map_of_size(shape, hints) if hints else empty_hints(1, *size))
        return torch.cat(maps)

    def _blend(self, lightness: np.ndarray, motion: Motion, ab: np.ndarray) -> np.ndarray:
        if not self.temporal:
            return rgb_of_lab(lightness, np.ascontiguousarray(ab))
        height, width = lightness.shape
        size = flow_size(width, height)
        ab = cv2.resize(np.ascontiguousarray(ab), size, interpolation=cv2.INTER_LINEAR)
        if self.state is not None and not motion.cut:
            # a soft mask: a hard one leaves seams where trusted and untrusted pixels meet
            weight = self.carry * cv2.blur(motion.trusted.astype(np.float32), (5, 5))[..., None]
            ab = ab + weight * (warp(self.state, motion.backward) - ab)
        self.state = ab
        return rgb_of_lab(lightness, ab)


# ------------------------------------------------------------------------------------------- I/O


@dataclass
class Frame:
    rgb: np.ndarray  # (H, W, 3) uint8, as decoded (before any display rotation)
    pts: int | None
    time_base: Fraction | None


class VideoSource:
    """A clip's frames, decoded one at a time, and what its output needs: size, rate, rotation, audio."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            self.container = av.open(str(path))
        except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
            raise UserError(f"{path}: cannot read ({exc.strerror})") from None
        except av.error.FFmpegError:
            raise UserError(f"{path}: not a video, or a truncated one (no readable header)") from None
        if not self.container.streams.video:
            self.container.close()
            raise UserError(f"{path}: no video stream")
        self.stream = self.container.streams.video[0]
        codec = self.stream.codec_context
        if codec is None or not self.stream.codec_context.codec.is_decoder:
            self.container.close()
            raise UserError(f"{path}: unsupported video codec")
        self.stream.thread_type = "AUTO"
        self.width, self.height = codec.width, codec.height
        if not self.width or not self.height:
            self.container.close()
            raise UserError(f"{path}: unsupported or damaged video stream (no frame size)")
        self.frames = self.stream.frames or None
        self.rate = self.stream.average_rate or self.stream.guessed_rate
        self.time_base = self.stream.time_base
        self.audio = [s for s in self.container.streams.audio]
        self.rotation = 0  # known once the first frame is decoded

    def read(self) -> Iterator[Frame | av.Packet]:
        """Decoded video frames and the audio packets between them, in file order."""
        try:
            for packet in self.container.demux(self.stream, *self.audio):
                if packet.stream is self.stream:
                    for frame in packet.decode():
                        self.rotation = frame.rotation
                        yield Frame(frame.to_ndarray(format="rgb24"), frame.pts, frame.time_base)
                elif packet.dts is not None:
                    yield packet
        except av.error.FFmpegError as exc:
            raise UserError(f"{self.path}: corrupt or truncated video ({exc})") from None

    def close(self) -> None:
        self.container.close()


class FrameFolder:
    """A folder of numbered frames as a clip at `fps` (`--frames-as-video`)."""

    def __init__(self, path: str | os.PathLike, fps: float):
        self.path = Path(path)
        self.files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not self.files:
            raise UserError(f"{path}: no frames found")
        if not fps or fps <= 0:
            raise UserError(f"{path}: a frame rate (--fps) above 0 is needed to make a clip of its frames")
        self.rate = Fraction(fps).limit_denominator(1001)
        self.time_base = 1 / self.rate
        first = open_image(self.files[0])
        self.width, self.height = first.size
        self.frames, self.audio, self.rotation = len(self.files), [], 0

    def read(self) -> Iterator[Frame]:
        for index, file in enumerate(self.files):
            image = open_image(file).convert("RGB")
            if image.size != (self.width, self.height):
                raise UserError(f"{file}: {image.width}x{image.height}, unlike the first frame's {self.width}x{self.height}")
            yield Frame(np.asarray(image), index, self.time_base)

    def close(self) -> None:
        pass


def output_suffix(source: Path) -> str:
    suffix = source.suffix.lower()
    return suffix if suffix in KEPT_CONTAINERS else ".mp4"


class VideoSink:
    """The output clip: H.264 (or `codec`) at the source's size, timestamps and rotation, the audio
    packets copied as they are. Opened on the first frame, when the rotation is known."""

    def __init__(self, path: Path, suffix: str, source: VideoSource | FrameFolder, codec: str, crf: int | None):
        self.source, self.codec, self.crf = source, codec, crf
        formats = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
        self.container = av.open(str(path), "w", format=formats.get(suffix.lower(), "mp4"))
        self.stream = None
        self.audio: dict[int, Any] = {}
        self.waiting: list[av.Packet] = []  # audio read before the first frame
        self.count = 0

    def _open(self, rotation: int) -> None:
        source = self.source
        try:
            self.stream = self.container.add_stream(self.codec, rate=source.rate)
        except (ValueError, av.error.FFmpegError) as exc:
            raise UserError(f"unknown or unavailable video codec {self.codec!r} ({exc})") from None
        self.stream.width, self.stream.height = source.width, source.height
        # 4:2:0 halves the chroma planes, which needs even sizes; odd ones keep full chroma
        even = source.width % 2 == 0 and source.height % 2 == 0
        self.stream.pix_fmt = "yuv420p" if even or self.codec not in ("libx264", "h264") else "yuv444p"
        self.stream.time_base = source.time_base
        self.stream.codec_context.time_base = source.time_base
        if self.codec in ("libx264", "libx265"):
            self.stream.options = {"preset": DEFAULT_PRESET, **({"crf": str(self.crf)} if self.crf is not None else {})}
        if rotation:
            self.stream.set_display_rotation(rotation)
        for audio in self.source.audio:
            try:
                self.audio[audio.index] = self.container.add_stream_from_template(audio)
            except (ValueError, av.error.FFmpegError) as exc:
                raise UserError(f"{source.path}: its audio ({audio.codec_context.name}) cannot be copied into "
                                f"{Path(self.container.name).suffix} ({exc})") from None

    def audio_packet(self, packet: av.Packet) -> None:
        if self.stream is None:
            self.waiting.append(packet)
            return
        packet.stream = self.audio[packet.stream.index]
        self.container.mux(packet)

    def frame(self, rgb: np.ndarray, pts: int | None, time_base: Fraction | None, rotation: int) -> None:
        if self.stream is None:
            self._open(rotation)
            for packet in self.waiting:
                self.audio_packet(packet)
            self.waiting = []
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts = self.count if pts is None else pts
        frame.time_base = time_base or self.source.time_base
        self.count += 1
        self.container.mux(self.stream.encode(frame))

    def close(self) -> None:
        if self.stream is not None:
            self.container.mux(self.stream.encode(None))
        self.container.close()


def open_source(src: str | os.PathLike, fps: float | None = None) -> VideoSource | FrameFolder:
    return FrameFolder(src, fps) if Path(src).is_dir() else VideoSource(src)


def colorize_video(colorizer: Colorizer, src: str | os.PathLike, dst: str | os.PathLike, *,
                   temperature: float = DEFAULT_TEMPERATURE, hints: Sequence[dict[str, Any]] | None = None,
                   temporal: bool = True, progress: Progress | None = None, codec: str = DEFAULT_CODEC,
                   crf: int | None = DEFAULT_CRF, fps: float | None = None, batch_size: int = BATCH) -> dict[str, Any]:
    """Colorize clip `src` (a video file, or a folder of frames at `fps`) into `dst`, written whole or not at
    all. Returns {"frames", "cuts", "hinted_frames"}. Errors are UserErrors naming `src`."""
    source = open_source(src, fps)
    try:
        return _colorize(colorizer, source, Path(dst), temperature, hints, temporal, progress, codec, crf, batch_size)
    finally:
        source.close()


def _colorize(colorizer, source, dst, temperature, hints, temporal, progress, codec, crf, batch_size):
    clip = ClipColorizer(colorizer, temperature, None, temporal, batch_size)
    keyframes: dict[int, list[dict[str, Any]]] | None = None  # checked on the first frame, once its rotation is known
    pending: list[Frame] = []
    hinted = decoded = 0
    with atomic_path(dst) as tmp:
        sink = VideoSink(tmp, dst.suffix, source, codec, crf)
        try:
            def write(outputs: list[np.ndarray]) -> None:
                for rgb in outputs:
                    frame = pending.pop(0)
                    sink.frame(rgb, frame.pts, frame.time_base, source.rotation)
                    if progress:
                        progress(sink.count, source.frames)

            for item in source.read():
                if not isinstance(item, Frame):
                    sink.audio_packet(item)
                    continue
                if keyframes is None:
                    # hints are placed on the frame as shown, so they are checked once the rotation is known
                    keyframes = keyframe_hints(hints, (source.width, source.height), source.rotation,
                                               source.path, source.frames)
                    clip.use_hints(keyframes)
                if item.rgb.shape[:2] != (source.height, source.width):
                    raise UserError(f"{source.path}: the frame size changes mid-clip, which is not supported")
                decoded += 1
                pending.append(item)
                write(clip.push(item.rgb))
                hinted += bool(clip.tracks.active)
            write(clip.finish())
            if decoded == 0:
                raise UserError(f"{source.path}: no video frames")
            late = [frame for frame in keyframes or {} if frame >= decoded]
            if late:
                raise UserError(f"{source.path}: hints on frame {min(late)}, past the clip's end (frames 0 to {decoded - 1})")
            sink.close()
        except BaseException:
            sink.container.close()  # atomic_path then removes the partial file
            raise
    return {"frames": decoded, "cuts": clip.cuts, "hinted_frames": hinted}


# --------------------------------------------------------------------------------------- measures


class WarpingError:
    """Lai et al. (2018)'s temporal warping error of an output clip, fed frame by frame with the source:
    the flow and its occlusion mask M come from the source frames; per frame pair
    E_t = sum(M * ||warp(O_t) - O_{t-1}||^2) / sum(M) over RGB in [0, 1], and the clip's error is the mean.
    `outputs` > 1 scores several outputs of the same source at once, on the same flow."""

    def __init__(self, outputs: int = 1) -> None:
        self.dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        self.previous: tuple[np.ndarray, list[np.ndarray]] | None = None
        self.errors: list[list[float]] = [[] for _ in range(outputs)]

    def add(self, source: np.ndarray, *outputs: np.ndarray) -> None:
        gray = np.clip(lightness_of_rgb(source) * 2.55, 0, 255).astype(np.uint8)
        outputs = [output.astype(np.float32) / 255.0 for output in outputs]
        if self.previous is not None:
            previous_gray, previous_outputs = self.previous
            forward = self.dis.calc(previous_gray, gray, None)
            mask = consistent(forward, self.dis.calc(gray, previous_gray, None)).astype(np.float32)
            if mask.sum() > 0:
                for errors, output, previous in zip(self.errors, outputs, previous_outputs, strict=True):
                    difference = np.square(warp(output, forward) - previous).sum(-1)
                    errors.append(float((mask * difference).sum() / mask.sum()))
        self.previous = gray, outputs

    @property
    def values(self) -> list[float]:
        return [float(np.mean(errors)) if errors else 0.0 for errors in self.errors]

    @property
    def value(self) -> float:
        return self.values[0]


def read_frames(path: str | os.PathLike) -> Iterator[np.ndarray]:
    """A clip's decoded RGB frames (H, W, 3) uint8, one at a time."""
    source = VideoSource(path)
    try:
        for item in source.read():
            if isinstance(item, Frame):
                yield item.rgb
    finally:
        source.close()


def video_jobs(inputs: Sequence[str | os.PathLike], out_dir: Path, frames_as_video: bool = False
               ) -> tuple[list[tuple[Path, Path]], list[Path]]:
    """The (clip, output clip) jobs among a command line's inputs, and the inputs left for photos: clip
    files (by suffix), clips inside folders (keeping their layout), and with `frames_as_video` each folder
    as one clip of its frames (FOLDER.mp4)."""
    jobs: list[tuple[Path, Path]] = []
    rest: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir() and frames_as_video:
            jobs.append((item, _fresh_target(item, out_dir / f"{item.resolve().name}.mp4")))
        elif item.is_dir():
            clips = sorted(p for p in item.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
            jobs += [(clip, _fresh_target(clip, (out_dir / clip.relative_to(item)).with_suffix(output_suffix(clip))))
                     for clip in clips]
            rest.append(item)
        elif item.suffix.lower() in VIDEO_SUFFIXES:
            jobs.append((item, _fresh_target(item, (out_dir / item.name).with_suffix(output_suffix(item)))))
        else:
            rest.append(item)
    return jobs, rest


def _fresh_target(source: Path, target: Path) -> Path:
    """`target`, unless that is the source itself (an output folder that is the input's)."""
    if target.exists() and target.resolve() == source.resolve():
        return target.with_name(f"{target.stem}_colorized{target.suffix}")
    return target
