"""The demo's reference colours and alternatives: the /colorize API's new inputs and the page in Chromium."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import photo
from PIL import Image

from demo.reference import added_to_palette

gradio_client = pytest.importorskip("gradio_client")
pytestmark = [pytest.mark.timeout(120), pytest.mark.filterwarnings("ignore:::gradio.queueing")]

RED = (200, 30, 30)


@pytest.fixture(scope="module")
def client(server):  # the demo on the tiny model (conftest)
    return gradio_client.Client(server, verbose=False, download_files=True)


def redness(path) -> float:
    rgb = np.asarray(Image.open(path).convert("RGB"), dtype=float)
    return float((rgb[..., 0] - (rgb[..., 1] + rgb[..., 2]) / 2).mean())


def test_the_api_takes_a_reference_or_a_palette(client, tmp_path):
    gray, reference = tmp_path / "gray.png", tmp_path / "red.png"
    Image.new("L", (64, 48), 128).save(gray)
    Image.new("RGB", (40, 30), RED).save(reference)
    plain = client.predict(gradio_client.handle_file(str(gray)), api_name="/colorize")
    with_reference = client.predict(gradio_client.handle_file(str(gray)), reference=gradio_client.handle_file(str(reference)),
                                    api_name="/colorize")
    with_palette = client.predict(gradio_client.handle_file(str(gray)), palette="#c81e1e", api_name="/colorize")
    assert redness(with_reference) > redness(plain) + 40
    assert redness(with_palette) > redness(plain) + 40


@pytest.mark.parametrize("options, message", [
    ({"palette": "#12345g"}, "not a colour"), ({"palette": "#ff0000", "strength": 3}, "strength must be a number"),
])
def test_bad_reference_inputs_are_one_line_messages(client, tmp_path, options, message):
    gray = tmp_path / "gray.png"
    Image.new("L", (64, 48), 128).save(gray)
    with pytest.raises(gradio_client.exceptions.AppError, match=message):
        client.predict(gradio_client.handle_file(str(gray)), api_name="/colorize", **options)


def test_a_gray_reference_says_it_carries_no_colour(client, tmp_path):
    gray, reference = tmp_path / "gray.png", tmp_path / "gray-reference.png"
    Image.new("L", (64, 48), 128).save(gray)
    photo(40, 30).convert("L").save(reference)
    with pytest.raises(gradio_client.exceptions.AppError, match="carries no colour"):
        client.predict(gradio_client.handle_file(str(gray)), reference=gradio_client.handle_file(str(reference)),
                       api_name="/colorize")


def test_a_suggested_colour_is_added_to_the_palette():
    assert added_to_palette(None, "#112233") == "#112233"
    assert added_to_palette("#8b4513:0.5, ", "#112233") == "#8b4513:0.5,#112233"


# the page in headless Chromium

from test_demo_browser import CHROMIUM, CHROMIUM_ARGS, PIXEL  # noqa: E402


@pytest.fixture
def page(server, tmp_path):
    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    sync_api = pytest.importorskip("playwright.sync_api")
    upload = tmp_path / "gray.png"
    Image.new("L", (160, 120), 128).save(upload)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1400})
        page.set_default_timeout(30_000)
        page.goto(server)
        page.locator("#photo input[type=file]").set_input_files(upload)
        page.locator("#hint-view img").wait_for()
        page.get_by_role("tab", name="Full resolution").click()
        page.locator("#result img").wait_for()  # a tab's content is drawn once it has been shown
        page.get_by_role("tab", name="Colour hints").click()
        yield page
        browser.close()


def changed(page, action) -> list[int]:
    """Do `action`, wait for the result to change, and return its centre pixel."""
    before = page.locator("#result img").get_attribute("src")
    action()
    page.wait_for_function("src => document.querySelector('#result img')?.src !== src", arg=before)
    page.get_by_role("tab", name="Full resolution").click()
    pixel = page.evaluate(PIXEL, ["#result img", 80, 60])
    page.get_by_role("tab", name="Colour hints").click()
    return pixel


@pytest.mark.browser
def test_uploading_a_reference_turns_the_photo_its_colour(page, tmp_path):
    reference = tmp_path / "red.png"
    Image.new("RGB", (60, 40), RED).save(reference)
    page.get_by_role("tab", name="Full resolution").click()
    before = page.evaluate(PIXEL, ["#result img", 80, 60])
    page.get_by_role("tab", name="Colour hints").click()
    page.locator("#reference input[type=file]").set_input_files(reference)
    page.locator("#reference img").wait_for()
    red, green, blue = changed(page, lambda: page.locator("#apply-reference").click())
    assert red - (green + blue) / 2 > before[0] - (before[1] + before[2]) / 2 + 40
    assert page.get_by_text("Traceback").count() == 0


@pytest.mark.browser
def test_a_picked_alternative_becomes_the_result_and_a_bad_palette_gets_a_message(page):
    page.locator("#show-alternatives").click()
    page.locator("#alternatives img").nth(3).wait_for()
    changed(page, lambda: page.locator("#alternatives img").nth(1).click())
    page.locator("#palette textarea, #palette input").first.fill("#12345g")
    page.locator("#apply-reference").click()
    page.get_by_text("not a colour").first.wait_for()
    assert page.get_by_text("Traceback").count() == 0
