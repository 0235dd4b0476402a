"""A colorizer network as an ONNX file, and ONNX Runtime to run one: for deploying without PyTorch, and
the faster CPU path where the CPU has no native bf16 (docs/benchmarks.md).

The graph maps the network's input, L / 50 - 1 at the working size (N, 1, S, S), and for hint-capable
models a hint map (N, 3, S, S) as colorizer/hints.py makes it, to bin logits (N, 313, S/4, S/4); the
batch size is free. The hint propagation's geodesic distances relax for a fixed number of rounds with
no data-dependent branch, so they are part of the graph: a deployment passes hints and nothing else.
The file's metadata holds the checkpoint's config (`colorizer_config`) and how to decode the logits
(`colorizer_decode`: the 313 ab bin centres and the annealed mean's temperature).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from colorizer.atomic import write_bytes
from colorizer.bins import NUM_BINS, ab_bins
from colorizer.decode import DEFAULT_TEMPERATURE
from colorizer.errors import UserError
from colorizer.hints import HINT_CHANNELS, empty_hints

FORMAT = "colorizer-onnx/1"
FORMATS = ("onnx",)
OPSET = 18
MISSING = "ONNX support is not installed: pip install onnx onnxruntime"


def _require(module: str):
    """onnx or onnxruntime, or a one-line error saying how to get them."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(MISSING) from None


def available() -> bool:
    """Whether ONNX Runtime and the exporter's onnx package can be imported."""
    try:
        _require("onnx")
        _require("onnxruntime")
    except UserError:
        return False
    return True


def takes_hints(config: dict[str, Any]) -> bool:
    return bool(config.get("options", {}).get("hint_inputs"))


def input_names(config: dict[str, Any]) -> list[str]:
    return ["lightness", "hints"] if takes_hints(config) else ["lightness"]


def decode_settings(stride: int) -> dict[str, Any]:
    """How a deployment turns the graph's logits into colour, as the Colorizer does (colorizer/decode.py)."""
    return {"method": "annealed mean: ab = softmax(logits / temperature) @ ab_bins, upsampled bilinearly "
                      "to the photo and joined with its own L",
            "temperature": DEFAULT_TEMPERATURE, "output_stride": stride,
            "input": "lightness = CIELAB L / 50 - 1, resized to input_size x input_size",
            "hints": "a / 110, b / 110 and a mask of 1 where a hint is, at input_size x input_size; all zero for none",
            "ab_bins": ab_bins().tolist()}


def onnx_bytes(network: torch.nn.Module, config: dict[str, Any]) -> bytes:
    """The network (float32, on the CPU) as a checked ONNX model with the config and decoding as metadata."""
    onnx = _require("onnx")
    size = int(config.get("input_size", 224))
    network = network.eval().float().cpu()
    example: tuple[torch.Tensor, ...] = (torch.zeros(1, 1, size, size),)
    if takes_hints(config):
        example += (empty_hints(1, size, size),)
    names = input_names(config)
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # the TorchScript exporter is deprecated, but torch.export takes minutes over the unrolled
        # geodesic relaxation where a trace takes seconds; tracer warnings name shape arithmetic
        warnings.simplefilter("ignore")
        torch.onnx.export(network, example, buffer, input_names=names, output_names=["logits"], opset_version=OPSET,
                          dynamic_axes={name: {0: "batch"} for name in [*names, "logits"]}, dynamo=False)
    model = onnx.load_from_string(buffer.getvalue())
    stride = int(getattr(network, "output_stride", 4))
    # the tracer leaves the logits' spatial size symbolic behind the hint layers: stated, and checked below
    for dim, value in zip(model.graph.output[0].type.tensor_type.shape.dim[1:], (NUM_BINS, size // stride, size // stride),
                          strict=True):
        dim.dim_value = value
    model.producer_name, model.doc_string = "colorizer", __doc__.splitlines()[0]
    for key, value in (("colorizer_format", FORMAT), ("colorizer_config", json.dumps(config)),
                       ("colorizer_decode", json.dumps(decode_settings(stride)))):
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


def save(path: str | os.PathLike, network: torch.nn.Module, config: dict[str, Any], format: str = "onnx") -> Path:
    """Write the network to `path` in `format` (only "onnx"), atomically; returns the path."""
    if format not in FORMATS:
        raise UserError(f"unknown export format {format!r}: give {' or '.join(FORMATS)}")
    data = onnx_bytes(network, config)
    write_bytes(path, data)
    return Path(path)


def _graph_shapes(model) -> dict[str, list[int | str]]:
    """Each graph input's and output's shape, a free dimension by its name."""
    return {value.name: [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
            for value in [*model.graph.input, *model.graph.output]}


def read(path: str | os.PathLike) -> tuple[bytes, dict[str, Any]]:
    """An exported file's bytes and the config in its metadata, after checking that its graph is the
    one the metadata describes: one-line errors for other files."""
    onnx = _require("onnx")
    path = Path(path)
    try:
        data = path.read_bytes()
        model = onnx.load_from_string(data)
    except OSError as exc:
        raise UserError(f"{path}: {exc.strerror}") from None
    except Exception as exc:  # protobuf's DecodeError and onnx's own: not an ONNX file
        raise UserError(f"{path}: not an ONNX model ({type(exc).__name__})") from None
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    if metadata.get("colorizer_format") != FORMAT or "colorizer_config" not in metadata:
        raise UserError(f"{path}: an ONNX model, but not one exported by `colorizer export` (no {FORMAT} metadata)")
    try:
        config = json.loads(metadata["colorizer_config"])
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: its colorizer_config metadata is not valid JSON ({exc})") from None
    check_graph(model, config, path)
    return data, config


def check_graph(model, config: dict[str, Any], where: str | os.PathLike) -> None:
    """A one-line error unless the graph's inputs and outputs are those the config implies."""
    size = int(config.get("input_size", 224))
    shapes = _graph_shapes(model)
    expected = {"lightness": [1, size, size], **({"hints": [HINT_CHANNELS, size, size]} if takes_hints(config) else {})}
    inputs = [value.name for value in model.graph.input]
    if inputs != list(expected):
        raise UserError(f"{where}: its graph takes {', '.join(inputs) or 'nothing'}, but its metadata describes a model "
                        f"that takes {', '.join(expected)}")
    for name, dims in expected.items():
        if shapes[name][1:] != dims:
            raise UserError(f"{where}: its graph's {name} input is {shapes[name][1:]}, but its metadata says {dims}")
    logits = shapes.get("logits", [])
    if len(logits) != 4 or logits[1] != NUM_BINS:
        raise UserError(f"{where}: its graph does not output logits over the {NUM_BINS} colour bins")


class OnnxRuntimeNetwork:
    """An ONNX Runtime session called like the network it was exported from: torch tensors in, float32
    logits out, on the CPU."""

    def __init__(self, data: bytes, threads: int | None = None):
        ort = _require("onnxruntime")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        self.input_names = [value.name for value in self.session.get_inputs()]

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        feeds = {name: x.detach().cpu().float().contiguous().numpy() for name, x in zip(self.input_names, inputs, strict=True)}
        return torch.from_numpy(self.session.run(None, feeds)[0])


def cache_dir() -> Path:
    """Where exports made for the onnxruntime backend are kept: $COLORIZER_CACHE, else the user's cache."""
    if os.environ.get("COLORIZER_CACHE"):
        return Path(os.environ["COLORIZER_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "colorizer"


def model_digest(network: torch.nn.Module, config: dict[str, Any]) -> str:
    """A hash of the weights, the config and the torch version: what names a model's cached files."""
    digest = hashlib.sha256(json.dumps([FORMAT, torch.__version__, config], sort_keys=True, default=str).encode())
    for name, tensor in network.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:32]


def runtime_network(network: torch.nn.Module, config: dict[str, Any], digest: str | None = None) -> OnnxRuntimeNetwork:
    """The network on ONNX Runtime. Exporting takes seconds, so the export is kept in `cache_dir()` under
    `model_digest` and reused by later loads."""
    path = cache_dir() / "onnx" / f"{digest or model_digest(network, config)}.onnx"
    try:
        return OnnxRuntimeNetwork(read(path)[0])
    except UserError:
        pass  # not there yet, or unreadable: made again
    data = onnx_bytes(network, config)
    with contextlib.suppress(OSError):  # a read-only home still runs, exporting at each load
        write_bytes(path, data)
    return OnnxRuntimeNetwork(data)
