"""The demo server on a loopback port, called the way users call it: with gradio_client."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from conftest import photo
from PIL import Image

pytestmark = [pytest.mark.timeout(90), pytest.mark.filterwarnings("ignore:::gradio.queueing")]

gradio_client = pytest.importorskip("gradio_client")


@pytest.fixture(scope="module")
def client(server):
    return gradio_client.Client(server, verbose=False, download_files=True)


def colorize(client, path, **options):
    return client.predict(gradio_client.handle_file(str(path)), api_name="/colorize", **options)


def test_colorize_returns_the_full_size_png(client, tmp_path):
    path = tmp_path / "gray.jpg"
    photo(300, 200).convert("L").save(path)
    with Image.open(colorize(client, path)) as result:
        assert result.format == "PNG" and result.mode == "RGB" and result.size == (300, 200)


def test_colorize_takes_model_and_temperature(client, tmp_path):
    path = tmp_path / "gray.png"
    photo(64, 48).convert("L").save(path)
    with Image.open(colorize(client, path, model="dogs", temperature=1.0)) as result:
        assert result.size == (64, 48)


@pytest.mark.parametrize("name, content, message", [
    ("notes.txt", b"not an image at all", "notes.txt: not an image"),
    ("fake.png", b"\x89PNG\r\n\x1a\n\x00\x00", "fake.png: not an image"),
])
def test_bad_input_gets_a_clear_message_and_the_server_stays_up(client, tmp_path, name, content, message):
    bad = tmp_path / name
    bad.write_bytes(content)
    with pytest.raises(gradio_client.exceptions.AppError, match=message):
        colorize(client, bad)
    good = tmp_path / "ok.png"
    photo(32, 32).save(good)
    assert Image.open(colorize(client, good)).size == (32, 32)


def test_over_40_megapixels_is_refused(client, tmp_path):
    huge = tmp_path / "huge.png"
    Image.new("1", (8000, 5001)).save(huge)
    with pytest.raises(gradio_client.exceptions.AppError, match="40 megapixels"):
        colorize(client, huge)


def test_concurrent_requests_each_get_their_own_image(client, tmp_path):
    paths = []
    for i, size in enumerate([(40, 30), (50, 40), (60, 20), (30, 60)]):
        paths.append(tmp_path / f"p{i}.png")
        photo(*size, seed=i).convert("L").save(paths[-1])
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda path: colorize(client, path), paths))
    assert [Image.open(result).size for result in results] == [Image.open(path).size for path in paths]


def test_only_colorize_is_public(client):
    assert list(client.view_api(print_info=False, return_format="dict")["named_endpoints"]) == ["/colorize"]


def test_page_needs_nothing_from_the_internet(server):
    page = httpx.get(server, timeout=10)
    config = httpx.get(server + "config", timeout=10).json()
    assert page.status_code == 200 and config["analytics_enabled"] is False
    assert "fonts.googleapis.com" not in page.text and "cdn.jsdelivr" not in page.text


# colour hints: `generic` is an untrained hint-capable model, `dogs` one without hint inputs

@pytest.fixture(scope="module")
def hint_server(tiny_hint_checkpoint, tiny_checkpoint):
    """The demo on a loopback port with a hint-capable `generic` and a `dogs` without hint inputs: its URL."""
    from colorizer.infer import Colorizer
    from demo.app import build_demo

    demo = build_demo({"generic": Colorizer.load(tiny_hint_checkpoint), "dogs": Colorizer.load(tiny_checkpoint)},
                      examples_dir=None)
    demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True, ssr_mode=False, run_history=False)
    yield demo.local_url
    demo.close()


@pytest.fixture(scope="module")
def hint_client(hint_server):
    return gradio_client.Client(hint_server, verbose=False, download_files=True)


def test_colorize_takes_hints_as_json(hint_client, tmp_path):
    path = tmp_path / "gray.png"
    photo(96, 72).convert("L").save(path)
    plain = np.asarray(Image.open(colorize(hint_client, path)), dtype=int)
    assert np.array_equal(np.asarray(Image.open(colorize(hint_client, path, hints="")), dtype=int), plain)
    blue = np.asarray(Image.open(colorize(hint_client, path, hints='[{"x": 30, "y": 20, "rgb": [0, 0, 255]}]')),
                      dtype=int)
    assert blue.shape == plain.shape and blue[20, 30, 2] - blue[20, 30, 0] > plain[20, 30, 2] - plain[20, 30, 0] + 30


def test_the_hints_keyword_is_optional_in_the_api(hint_client):
    parameters = hint_client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/colorize"]["parameters"]
    assert [(p["parameter_name"], p["parameter_has_default"]) for p in parameters] == [
        ("photo", False), ("model", True), ("temperature", True), ("hints", True)]


@pytest.mark.parametrize("model, hints, message", [
    ("generic", '[{"x": 30, "y": ', "hints: not valid JSON"),
    ("generic", '{"x": 30, "y": 20, "rgb": [0, 0, 255]}', "hints: expected a JSON list"),
    ("generic", '[{"x": 30, "y": 20, "rgb": [0, 0, 255]}, {"x": 96, "y": 0, "rgb": [0, 0, 0]}]',
     "hint 2: x = 96 lies outside the photo"),
    ("dogs", '[{"x": 30, "y": 20, "rgb": [0, 0, 255]}]', "'dogs' takes no colour hints"),
])
def test_bad_hints_get_a_clear_message(hint_client, tmp_path, model, hints, message):
    path = tmp_path / "gray.png"
    photo(96, 72).convert("L").save(path)
    with pytest.raises(gradio_client.exceptions.AppError, match=message) as error:
        colorize(hint_client, path, model=model, hints=hints)
    assert "Traceback" not in str(error.value)
    assert Image.open(colorize(hint_client, path, model=model)).size == (96, 72)
