"""Video colorization on real clips (../shared/data/video/clips): flicker, fidelity, hints, speed, memory.

    python bench/video.py quality [--clips DIR] [--only NAME ...]   # per clip: per-frame against temporal
    python bench/video.py table --json docs/eval/video.json         # its figures as docs/video.md's table
    python bench/video.py speed                                      # frames/s at 640x360, the temporal cost
    python bench/video.py hints                                      # a hint on frame 0, 2 s later
    python bench/video.py figure                                     # docs/figures/video.png
    python bench/video.py memory                                     # peak RSS, a clip and one 8x longer

quality: each clip coloured twice by the bundled generic model (optimize=True), each frame alone
(temporal=False) and with colour carried along the flow (the default), the network's logits computed once
and shared (without hints both passes feed it the same frames); then, from the frames as coloured, Lai et
al. (2018)'s warping error (flow and occlusion mask from the source frames, colorizer.video.WarpingError),
PSNR against the colour source and Hasler-Suesstrunk colourfulness (colorizer.evaluate), each averaged
over frames. The source's own warping error is the floor (flow errors, compression). Last lines: the
averages and ratios, as docs/video.md reports them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import av
import numpy as np
import torch

from colorizer.evaluate import colorfulness, psnr
from colorizer.infer import Colorizer
from colorizer.video import ClipColorizer, WarpingError, lightness_of_rgb, read_frames

ROOT = Path(__file__).resolve().parents[1]
CLIPS = ROOT.parent / "shared" / "data" / "video" / "clips"
if not CLIPS.is_dir():
    CLIPS = Path("/work/shared/data/video/clips")
# the hint check: the jeans of the woman in sam2_dogwalk, placed on frame 0 in a colour the model would not
# guess (red); 2 s later (frame 60) the jeans were found by eye at JEANS_AT_2S (the middle of a thigh)
HINT_CLIP = "sam2_dogwalk.mp4"
HINT = {"frame": 0, "x": 150, "y": 208, "rgb": [200, 30, 30]}
JEANS_AT_2S = (60, 142, 200)  # frame, x, y
JEANS_BOX = 6  # half side of the box measured around it


def tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255


class Replay:
    """The Colorizer's network, each batch's logits kept on the first pass and replayed on the second: without
    hints the network sees the same frames in both passes, so the two differ only in what video.py adds."""

    def __init__(self, colorizer: Colorizer):
        self.colorizer, self.kept, self.calls = colorizer, [], 0
        self.input_size, self.takes_hints = colorizer.input_size, colorizer.takes_hints

    def logits(self, lightness, hint_maps=None):
        if self.calls == len(self.kept):
            self.kept.append(self.colorizer.logits(lightness, hint_maps))
        self.calls += 1
        return self.kept[self.calls - 1]

    def replay(self) -> Replay:
        self.calls = 0
        return self


def gray(rgb: np.ndarray) -> np.ndarray:
    """The frame's lightness alone, as RGB: what is left of a clip with no colour at all."""
    from colorizer.video import rgb_of_lab

    return rgb_of_lab(lightness_of_rgb(rgb), np.zeros((1, 1, 2), np.float32))


def measure(frames: list[np.ndarray], **outputs: list[np.ndarray]) -> dict[str, dict[str, float]]:
    """Per output: warping error, PSNR and colourfulness; all outputs scored on the same source flow, beside
    the source itself and its gray version (the part of the error that lightness alone makes)."""
    outputs = {"source": frames, "gray": [gray(f) for f in frames], **outputs}
    error = WarpingError(len(outputs))
    for i, truth in enumerate(frames):
        error.add(truth, *(each[i] for each in outputs.values()))
    result = {}
    for (name, each), value in zip(outputs.items(), error.values, strict=True):
        result[name] = {"warping_error": value,
                        "psnr": float(np.mean([float(psnr(tensor(o), tensor(t))) for o, t in zip(each, frames, strict=True)])),
                        "colourfulness": float(np.mean([float(colorfulness(tensor(o))) for o in each]))}
    return result


def coloured(model, frames: list[np.ndarray], temporal: bool) -> list[np.ndarray]:
    clip = ClipColorizer(model, temporal=temporal)
    return [out for frame in frames for out in clip.push(frame)] + clip.finish()


def quality(args: argparse.Namespace) -> None:
    """Flicker, fidelity and colourfulness per clip, from the frames as coloured (before encoding)."""
    model = Replay(Colorizer.load("generic", optimize=True))
    clips = sorted(args.clips.glob("*.mp4"))
    if args.only:
        clips = [c for c in clips if c.stem in args.only or c.name in args.only]
    # a run of some clips (--only) adds them to the rows an earlier run left in --json
    rows = json.loads(args.json.read_text())["clips"] if args.only and args.json and args.json.is_file() else {}
    for clip in clips:
        frames = list(read_frames(clip))
        model.kept = []
        per_frame = coloured(model.replay(), frames, temporal=False)
        scores = measure(frames, per_frame=per_frame, temporal=coloured(model.replay(), frames, temporal=True))
        p, t = scores["per_frame"], scores["temporal"]
        source, floor = scores["source"]["warping_error"], scores["gray"]["warping_error"]
        row = rows[clip.stem] = {"size": f"{frames[0].shape[1]}x{frames[0].shape[0]}", "frames": len(frames),
                                 "per_frame": p, "temporal": t, "source_warping_error": source,
                                 "gray_warping_error": floor}
        print(f"{clip.stem:32} {row['size']:>8} E {1e3 * p['warping_error']:.3f} -> {1e3 * t['warping_error']:.3f} "
              f"(x{t['warping_error'] / p['warping_error']:.2f}; gray {1e3 * floor:.3f}, colour part "
              f"x{(t['warping_error'] - floor) / (p['warping_error'] - floor):.2f}; source {1e3 * source:.3f}) "
              f"PSNR {p['psnr']:.2f} -> {t['psnr']:.2f}  colourful {p['colourfulness']:.1f} -> {t['colourfulness']:.1f}",
              flush=True)
    mean = lambda key, field: float(np.mean([r[key][field] for r in rows.values()]))  # noqa: E731
    summary = {
        "clips": len(rows),
        "warping_error_per_frame": mean("per_frame", "warping_error"),
        "warping_error_temporal": mean("temporal", "warping_error"),
        "warping_error_source": float(np.mean([r["source_warping_error"] for r in rows.values()])),
        "warping_error_gray": float(np.mean([r["gray_warping_error"] for r in rows.values()])),
        "warping_error_ratio_mean_of_clips": float(np.mean([r["temporal"]["warping_error"] / r["per_frame"]["warping_error"]
                                                            for r in rows.values()])),
        "psnr_per_frame": mean("per_frame", "psnr"), "psnr_temporal": mean("temporal", "psnr"),
        "colourfulness_per_frame": mean("per_frame", "colourfulness"),
        "colourfulness_temporal": mean("temporal", "colourfulness"),
    }
    summary["warping_error_ratio"] = summary["warping_error_temporal"] / summary["warping_error_per_frame"]
    summary["colour_warping_error_ratio"] = ((summary["warping_error_temporal"] - summary["warping_error_gray"])
                                             / (summary["warping_error_per_frame"] - summary["warping_error_gray"]))
    summary["psnr_change_db"] = summary["psnr_temporal"] - summary["psnr_per_frame"]
    summary["colourfulness_ratio"] = summary["colourfulness_temporal"] / summary["colourfulness_per_frame"]
    if args.json:
        args.json.write_text(json.dumps({"clips": rows, "summary": summary}, indent=1))
    for key, value in summary.items():
        print(f"{key}={value:.6g}")


def table(args: argparse.Namespace) -> None:
    """quality's --json as the Markdown table of docs/video.md."""
    data = json.loads(args.json.read_text())
    print("| clip | size | frames | E per-frame | E temporal | ratio | E gray | E source | PSNR per-frame | PSNR temporal "
          "| colourful per-frame | colourful temporal |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, r in data["clips"].items():
        p, t = r["per_frame"], r["temporal"]
        print(f"| {name} | {r['size']} | {r['frames']} | {1e3 * p['warping_error']:.3f} | {1e3 * t['warping_error']:.3f} "
              f"| {t['warping_error'] / p['warping_error']:.2f} | {1e3 * r['gray_warping_error']:.3f} "
              f"| {1e3 * r['source_warping_error']:.3f} | {p['psnr']:.2f} | {t['psnr']:.2f} | {p['colourfulness']:.1f} "
              f"| {t['colourfulness']:.1f} |")
    m = data["summary"]
    print(f"| **mean** | | | {1e3 * m['warping_error_per_frame']:.3f} | {1e3 * m['warping_error_temporal']:.3f} "
          f"| {m['warping_error_ratio']:.2f} | {1e3 * m['warping_error_gray']:.3f} | {1e3 * m['warping_error_source']:.3f} "
          f"| {m['psnr_per_frame']:.2f} | {m['psnr_temporal']:.2f} | {m['colourfulness_per_frame']:.1f} "
          f"| {m['colourfulness_temporal']:.1f} |")


def speed(args: argparse.Namespace) -> None:
    """Frames/s of colorize_video (decoding and encoding included) on a 640x360 clip, each frame alone and
    temporal, alternating so that other processes' load hits both alike; the ratio is of the summed times."""
    colorizer = Colorizer.load("generic", optimize=True)
    clip = args.clips / args.speed_clip
    seconds = {False: [], True: []}
    cpu = {False: [], True: []}  # CPU seconds of this process (all its threads): less at the mercy of the load
    with tempfile.TemporaryDirectory() as tmp:
        colorizer.colorize_video(clip, Path(tmp) / "warm.mp4", temporal=False)  # first calls optimise the graph
        for _ in range(args.repeats):
            for temporal in (False, True):
                start, start_cpu = time.perf_counter(), time.process_time()
                frames = colorizer.colorize_video(clip, Path(tmp) / "out.mp4", temporal=temporal)["frames"]
                seconds[temporal].append(time.perf_counter() - start)
                cpu[temporal].append(time.process_time() - start_cpu)
    per_frame, temporal = (frames * len(seconds[k]) / sum(seconds[k]) for k in (False, True))
    cpu_per_frame, cpu_temporal = (1e3 * sum(cpu[k]) / (frames * len(cpu[k])) for k in (False, True))
    print(f"clip={clip.name} frames={frames} load_average={os.getloadavg()[0]:.1f}")
    print(f"cpu_ms_per_frame: per_frame={cpu_per_frame:.1f} temporal={cpu_temporal:.1f} "
          f"cpu_cost_ratio={cpu_temporal / cpu_per_frame:.3f}")
    print(f"fps_per_frame={per_frame:.2f} fps_temporal={temporal:.2f} cost_ratio={per_frame / temporal:.3f}")


def hints(args: argparse.Namespace) -> None:
    colorizer = Colorizer.load("generic", optimize=True)
    clip = args.clips / HINT_CLIP
    frame, x, y = JEANS_AT_2S
    hint_lab = torch.tensor(HINT["rgb"], dtype=torch.float32)[None, :, None, None] / 255
    from colorizer.color import rgb_to_lab

    hint_ab = rgb_to_lab(hint_lab)[0, 1:, 0, 0]
    with tempfile.TemporaryDirectory() as tmp:
        for name, given in (("without hint", None), ("with the hint", [HINT])):
            out = Path(tmp) / "out.mp4"
            result = colorizer.colorize_video(clip, out, hints=given)
            rgb = next(f for i, f in enumerate(read_frames(out)) if i == frame)
            box = tensor(rgb[y - JEANS_BOX : y + JEANS_BOX, x - JEANS_BOX : x + JEANS_BOX])
            ab = rgb_to_lab(box)[0, 1:].mean((1, 2))
            print(f"{name}: frame {frame} (2.0 s) jeans ab {ab[0]:.1f}, {ab[1]:.1f}; distance to the hint's ab "
                  f"({hint_ab[0]:.1f}, {hint_ab[1]:.1f}) {float((ab - hint_ab).norm()):.1f}; "
                  f"frames carrying the hint {result['hinted_frames']} of {result['frames']}")


def figure(args: argparse.Namespace) -> None:
    from PIL import Image, ImageDraw

    colorizer = Colorizer.load("generic", optimize=True)
    clip = args.clips / args.figure_clip
    with tempfile.TemporaryDirectory() as tmp:
        outputs = {}
        for name, options in (("per-frame", {"temporal": False}), ("temporal", {}),
                              ("temporal + hint", {"hints": [HINT]} if clip.name == HINT_CLIP else None)):
            if options is None:
                continue
            out = Path(tmp) / f"{len(outputs)}.mp4"
            colorizer.colorize_video(clip, out, **options)
            outputs[name] = list(read_frames(out))
        source = list(read_frames(clip))
    picks = [0, len(source) // 2, len(source) - 1]
    rows = {"gray": [np.repeat(np.asarray(Image.fromarray(source[i]).convert("L"))[..., None], 3, 2) for i in picks]}
    rows |= {name: [frames[i] for i in picks] for name, frames in outputs.items()}
    height, width = source[0].shape[:2]
    scale = 0.5
    w, h, label = int(width * scale), int(height * scale), 110
    sheet = Image.new("RGB", (label + 3 * (w + 4), len(rows) * (h + 4) + 20), "white")
    draw = ImageDraw.Draw(sheet)
    for col, i in enumerate(picks):
        draw.text((label + col * (w + 4) + 4, 4), f"frame {i}", fill="black")
    for row, (name, frames) in enumerate(rows.items()):
        draw.text((4, 20 + row * (h + 4) + h // 2), name, fill="black")
        for col, frame in enumerate(frames):
            sheet.paste(Image.fromarray(frame).resize((w, h), Image.LANCZOS), (label + col * (w + 4), 20 + row * (h + 4)))
    target = ROOT / "docs" / "figures" / "video.png"
    sheet.save(target)
    print(f"wrote {target}")


def peak_rss(clip: Path) -> None:
    """(subprocess) colorize `clip` and print the peak RSS in MiB."""
    colorizer = Colorizer.load("generic", optimize=True)
    with tempfile.TemporaryDirectory() as tmp:
        frames = colorizer.colorize_video(clip, Path(tmp) / "out.mp4")["frames"]
    print(frames, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def looped(source: Path, target: Path, times: int) -> None:
    """`source` played `times` times over, as one clip."""
    frames = list(read_frames(source))
    with av.open(str(target), "w") as container:
        stream = container.add_stream("libx264", rate=24, options={"preset": "ultrafast", "crf": "18"})
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        for _ in range(times):
            for frame in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))


def memory(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        short, long = Path(tmp) / "short.mp4", Path(tmp) / "long.mp4"
        looped(args.clips / args.memory_clip, short, 1)
        looped(args.clips / args.memory_clip, long, 8)
        results = {}
        for name, clip in (("short", short), ("long", long)):
            out = subprocess.run([sys.executable, __file__, "_rss", str(clip)], capture_output=True, text=True, check=True)
            frames, mib = out.stdout.split()[-2:]
            results[name] = (int(frames), float(mib))
            print(f"{name}: {frames} frames, peak RSS {float(mib):.0f} MiB")
    print(f"rss_growth={results['long'][1] / results['short'][1] - 1:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=["quality", "table", "speed", "hints", "figure", "memory", "_rss"])
    parser.add_argument("clip", nargs="?", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--clips", type=Path, default=CLIPS)
    parser.add_argument("--only", nargs="*", help="clip names to run (default: all)")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    parser.add_argument("--figure-clip", default=HINT_CLIP)
    parser.add_argument("--memory-clip", default="sam2_juggle.mp4")
    parser.add_argument("--speed-clip", default="sam2_dogwalk.mp4")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    if args.part == "_rss":
        peak_rss(args.clip)
    else:
        {"quality": quality, "table": table, "speed": speed, "hints": hints, "figure": figure, "memory": memory}[args.part](args)


if __name__ == "__main__":
    main()
