"""The demo's Video tab: upload a clip, scrub to a frame, place colour hints on it with the photo tab's
hint list (logic.HintBoard, one per keyframe), colorize the clip with a progress bar, play it beside the
gray source and download it. One clip is coloured at a time (a queue, so a long one never blocks the
photo tab's requests), and Stop cancels it: the run ends at its next frame and leaves no file.

`build_tab(models, folder)` adds the tab inside a gr.Blocks; the rest is free of Gradio for tests.
"""


import os
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from colorizer.decode import DEFAULT_TEMPERATURE
from colorizer.errors import UserError
from colorizer.video import Frame, VideoSink, VideoSource, lightness_of_rgb, shown_frame
from demo import logic

MAX_FRAMES = 3000  # about 2 minutes at 25 frames/s: a shared demo's limit, not the library's
MAX_PIXELS = 1920 * 1080


class Cancelled(Exception):
    """Stop was pressed: the run ends at the next frame, and its file is never written."""


@dataclass
class Clip:
    """An uploaded clip: where it is, how many frames, its rate and rotation, and the frame shown last."""

    path: str
    frames: int
    fps: float
    rotation: int
    size: tuple[int, int]  # the frame as shown (after rotation)


def read_clip(path: str | os.PathLike) -> Clip:
    """The clip's facts, counting its frames by decoding it once; bad or oversized clips are UserErrors."""
    name = Path(path).name
    try:
        source = VideoSource(path)
    except UserError as exc:
        raise UserError(str(exc).replace(str(path), name)) from None
    try:
        if source.width * source.height > MAX_PIXELS:
            raise UserError(f"{name}: {source.width}x{source.height} is larger than this demo takes (1920x1080)")
        frames = 0
        for item in source.read():
            if isinstance(item, Frame):
                frames += 1
                if frames > MAX_FRAMES:
                    raise UserError(f"{name}: over {MAX_FRAMES} frames, longer than this demo takes")
        if not frames:
            raise UserError(f"{name}: no video frames")
        size = (source.height, source.width) if source.rotation % 180 else (source.width, source.height)
        return Clip(str(path), frames, float(source.rate or 25), source.rotation, size)
    finally:
        source.close()


def frame_image(clip: Clip, index: int) -> Image.Image:
    """Frame `index` of the clip as shown (rotated as a player turns it)."""
    source = VideoSource(clip.path)
    try:
        seen = 0
        for item in source.read():
            if isinstance(item, Frame):
                if seen == index:
                    return Image.fromarray(shown_frame(item.rgb, source.rotation))
                seen += 1
    finally:
        source.close()
    raise UserError(f"the clip has no frame {index} (frames 0 to {clip.frames - 1})")


@dataclass(frozen=True)
class Keyframes:
    """A HintBoard per keyframe: the photo tab's hint list, one for each frame that has hints."""

    boards: dict[int, logic.HintBoard] = field(default_factory=dict)

    def board(self, frame: int) -> logic.HintBoard:
        return self.boards.get(frame, logic.HintBoard())

    def with_board(self, frame: int, board: logic.HintBoard) -> "Keyframes":
        return Keyframes({**self.boards, frame: board})

    def hints(self) -> list[dict[str, Any]]:
        """What Colorizer.colorize_video takes: [{"frame", "x", "y", "rgb"}], the frames in order."""
        return [{"frame": frame, **hint} for frame in sorted(self.boards) for hint in self.boards[frame].as_dicts()]

    def summary(self) -> str:
        used = {frame: len(board.hints) for frame, board in sorted(self.boards.items()) if board.hints}
        if not used:
            return "No hints: the model chooses every colour."
        return "Hints on " + ", ".join(f"frame {frame} ({count})" for frame, count in used.items())


def gray_copy(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """The clip as the model sees it (its lightness, no colour), for playing beside the result."""
    from colorizer.atomic import atomic_path

    source = VideoSource(src)
    try:
        with atomic_path(dst) as tmp:
            sink = VideoSink(tmp, Path(dst).suffix, source, "libx264", 23)
            try:
                for item in source.read():
                    if isinstance(item, Frame):
                        gray = np.clip(lightness_of_rgb(item.rgb) * 2.55 + 0.5, 0, 255).astype(np.uint8)
                        sink.frame(np.repeat(gray[..., None], 3, axis=2), item.pts, item.time_base, source.rotation)
                sink.close()
            except BaseException:
                sink.container.close()
                raise
    finally:
        source.close()


class Runs:
    """The Stop flags of the runs in progress, by visitor session."""

    def __init__(self) -> None:
        self.flags: dict[str, threading.Event] = {}
        self.lock = threading.Lock()

    def start(self, session: str) -> threading.Event:
        with self.lock:
            self.flags[session] = flag = threading.Event()
        return flag

    def stop(self, session: str) -> None:
        with self.lock:
            if session in self.flags:
                self.flags[session].set()


def colorize_clip(models: logic.Models, clip: Clip, name: str, temperature: float, keyframes: Keyframes,
                  folder: str | os.PathLike, temporal: bool = True, progress=None,
                  stop: threading.Event | None = None) -> str:
    """The clip colorized into `folder` (a fresh name per run); `progress(done, total)` per frame."""
    colorizer = models[name]
    hints = keyframes.hints()
    if hints and not colorizer.takes_hints:
        raise UserError(logic.no_hints_message(name))
    target = logic.fresh_path(folder, f"{Path(clip.path).stem}_colorized", ".mp4", keep_s=3600)

    def report(done: int, total: int | None) -> None:
        if stop is not None and stop.is_set():
            raise Cancelled
        if progress:
            progress(done, total or clip.frames)

    try:
        colorizer.colorize_video(clip.path, target, temperature=temperature, hints=hints, temporal=temporal,
                                 progress=report)
    except BaseException as exc:
        shutil.rmtree(target.parent, ignore_errors=True)  # a failed or stopped run leaves not even its folder
        if isinstance(exc, UserError):
            raise UserError(str(exc).replace(clip.path, Path(clip.path).name)) from None
        raise
    return str(target)


def build_tab(models: logic.Models, folder: str | os.PathLike) -> None:
    """The Video tab, inside the caller's gr.Blocks."""
    import gradio as gr

    from demo.app import shows_user_errors

    editor_note = ("**Hints.** Scrub to a frame and click it to place a hint there, in the colour the model finds "
                   "likeliest; the picker recolours the selected one. A hint follows its object through the "
                   "frames after it until it is lost (hidden, out of the picture, a scene cut); hints on a later "
                   "frame take over.")
    runs = Runs()

    @shows_user_errors
    def uploaded(path):
        if not path:
            return None, gr.update(maximum=1, value=0, interactive=False), None, Keyframes(), Keyframes().summary(), None
        clip = read_clip(path)
        frame = frame_image(clip, 0)
        return (clip, gr.update(maximum=max(1, clip.frames - 1), value=0, interactive=clip.frames > 1), frame,
                Keyframes(), Keyframes().summary(), None)

    @shows_user_errors
    def shown(clip: Clip | None, index: int, name: str, temperature: float, keyframes: Keyframes):
        """Frame `index` coloured with its own hints (their markers drawn on it), or the bare frame."""
        if clip is None:
            return None
        index = int(index)
        image = frame_image(clip, index)
        board = keyframes.board(index)
        if not board.hints:
            return image
        result = models[name].colorize(image, temperature, hints=board.as_dicts())
        return logic.hint_view(result, board)

    @shows_user_errors
    def clicked(clip: Clip | None, index: int, name: str, temperature: float, keyframes: Keyframes,
                evt: gr.SelectData):
        if clip is None or evt.index is None:
            return gr.skip(), gr.skip(), gr.skip()
        colorizer = models[name]
        if not colorizer.takes_hints:
            raise UserError(logic.no_hints_message(name))
        index = int(index)
        image = frame_image(clip, index)
        shown_size = logic.view_size(image.size)
        x, y = logic.point_on_photo(evt.index, shown_size, image.size)
        board = keyframes.board(index)
        near = board.nearest(x, y, within=1.5 * logic.marker_radius(image.size))
        if near is not None:
            board = board.select(near)
        else:
            suggested = colorizer.suggest(image, x, y, k=1, hints=board.as_dicts())
            board = board.place(x, y, suggested[0]["rgb"])
        keyframes = keyframes.with_board(index, board)
        return keyframes, keyframes.summary(), shown(clip, index, name, temperature, keyframes)

    def board_edit(edit):
        @shows_user_errors
        def handler(clip, index, name, temperature, keyframes, *values):
            if clip is None:
                return gr.skip(), gr.skip(), gr.skip()
            index = int(index)
            keyframes = keyframes.with_board(index, edit(keyframes.board(index), *values))
            return keyframes, keyframes.summary(), shown(clip, index, name, temperature, keyframes)
        return handler

    @shows_user_errors
    def colorize(clip: Clip | None, name: str, temperature: float, keyframes: Keyframes, temporal: bool,
                 session: str, progress):
        if clip is None:
            raise UserError("no clip: upload one first")
        stop = runs.start(session)
        progress(0, desc="colorizing")
        gray = logic.fresh_path(folder, f"{Path(clip.path).stem}_gray", ".mp4", keep_s=3600)
        gray_copy(clip.path, gray)
        try:
            result = colorize_clip(models, clip, name, temperature, keyframes, folder, temporal,
                                   lambda done, total: progress((done, total), unit="frames"), stop)
        except Cancelled:
            gr.Info("stopped: nothing was written")
            return gr.skip(), gr.skip(), gr.skip()
        return str(gray), result, result

    # Gradio hands a Request and a Progress only to parameters of the handler's own signature
    def run(clip, name, temperature, keyframes, temporal, request: gr.Request, progress=gr.Progress()):  # noqa: B008
        return colorize(clip, name, temperature, keyframes, temporal, request.session_hash or "", progress)

    # its own tab group, opened on demand: Gradio mounts a tab's components only once it is selected, so the
    # photo page keeps one Model menu and one Temperature slider until a visitor asks for video
    with gr.Tabs(selected="video-intro"):
        with gr.Tab("Video clips", id="video-intro"):
            gr.Markdown("Colorize a video clip without flicker, with hints that follow their object: open the "
                        "Video tab.")
        tab = gr.Tab("Video", id="video", elem_id="video-tab")
    with tab:
        with gr.Row():
            with gr.Column(scale=1):
                upload = gr.Video(label="Clip", sources=["upload"], elem_id="video-upload")
                scrub = gr.Slider(0, 1, value=0, step=1, label="Frame", interactive=False, elem_id="video-frame")
                model = gr.Dropdown(models.names, value=models.default, label="Model")
                temperature = gr.Slider(0, 1, value=DEFAULT_TEMPERATURE, step=0.01, label="Temperature")
                temporal = gr.Checkbox(True, label="Carry colour along the motion (no flicker)")
                gr.Markdown(editor_note)
                picker = gr.ColorPicker("#c0392b", label="Colour of the selected hint")
                with gr.Row():
                    remove = gr.Button("Remove hint", size="sm")
                    clear = gr.Button("Clear this frame", size="sm")
                summary = gr.Markdown(Keyframes().summary(), elem_id="video-hints")
                with gr.Row():
                    go = gr.Button("Colorize clip", variant="primary", elem_id="video-run")
                    stop = gr.Button("Stop", variant="stop", elem_id="video-stop")
            with gr.Column(scale=2):
                frame_view = gr.Image(label="Click to place a hint on this frame", interactive=False,
                                      format="jpeg", elem_id="video-frame-view")
                with gr.Row():
                    gray_view = gr.Video(label="Gray source", interactive=False, elem_id="video-gray")
                    result_view = gr.Video(label="Colorized", interactive=False, elem_id="video-result")
                download = gr.DownloadButton("Download MP4", elem_id="video-download")
        clip_state, keyframes = gr.State(), gr.State(Keyframes())
        private = {"api_visibility": "private"}
        view_inputs = [clip_state, scrub, model, temperature, keyframes]
        upload.change(uploaded, upload, [clip_state, scrub, frame_view, keyframes, summary, result_view], **private)
        gr.on([scrub.release, model.change, temperature.release], shown, view_inputs, frame_view,
              trigger_mode="always_last", **private)
        edited = [keyframes, summary, frame_view]
        frame_view.select(clicked, view_inputs, edited, trigger_mode="always_last", **private)
        gr.on([picker.release, picker.submit, picker.blur],
              board_edit(lambda board, colour: board.recolour(logic.rgb_of_hex(colour)) if board.selected is not None
                         else board), view_inputs + [picker], edited, **private)
        remove.click(board_edit(logic.HintBoard.remove), view_inputs, edited, **private)
        clear.click(board_edit(logic.HintBoard.clear), view_inputs, edited, **private)
        # one clip at a time for every visitor: a queue, so a long clip never holds up the photo requests
        running = go.click(run, [clip_state, model, temperature, keyframes, temporal],
                           [gray_view, result_view, download], concurrency_limit=1, concurrency_id="video",
                           **private)

        def stopped(request: gr.Request):
            runs.stop(request.session_hash or "")

        stop.click(stopped, None, None, cancels=[running], queue=False, **private)

