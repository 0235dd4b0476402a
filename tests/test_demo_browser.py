"""The demo page in headless Chromium (Debian's, driven by Playwright): upload a photo, see the result."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import photo

CHROMIUM = Path(os.environ.get("COLORIZER_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = [pytest.mark.browser, pytest.mark.timeout(90), pytest.mark.filterwarnings("ignore:::gradio.queueing"),
              pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"no Chromium at {CHROMIUM}")]
sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture
def page(server):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(30_000)
        page.outside_requests = []
        page.on("request", lambda request: request.url.startswith(("http://", "https://"))
                and not request.url.startswith(server) and page.outside_requests.append(request.url))
        page.goto(server)
        page.get_by_role("tab", name="Full resolution").click()
        page.locator("#result img").wait_for()  # the first example is shown, already colorized
        yield page
        browser.close()


def result_src(page) -> str:
    return page.locator("#result img").get_attribute("src")


def test_upload_a_colour_photo_and_see_it_colorized(page, tmp_path):
    upload = tmp_path / "colour.jpg"
    photo(320, 240).save(upload, quality=95)
    example_src = result_src(page)
    page.locator("#photo input[type=file]").set_input_files(upload)
    page.get_by_role("tab", name="Compare with the truth").wait_for()
    page.get_by_text("reduced to gray first").first.wait_for()
    page.wait_for_function("src => document.querySelector('#result img').src !== src", arg=example_src)
    assert result_src(page).endswith(".png")
    size = page.evaluate("async () => { const img = document.querySelector('#result img'); await img.decode();"
                         " return [img.naturalWidth, img.naturalHeight]; }")
    assert size == [320, 240]
    assert page.outside_requests == []


def test_a_file_that_is_not_an_image_gets_a_message(page, tmp_path):
    bad = tmp_path / "holiday.png"
    bad.write_bytes(b"this is not a png")
    page.locator("#photo input[type=file]").set_input_files(bad)
    page.get_by_text("holiday.png: not an image").first.wait_for()
    assert page.get_by_text("Traceback").count() == 0


def test_moving_the_temperature_slider_recolorizes(page):
    before = result_src(page)
    track = page.locator("input[type=range]").bounding_box()
    y = track["y"] + track["height"] / 2
    page.mouse.move(track["x"] + track["width"] * 0.38, y)
    page.mouse.down()
    page.mouse.move(track["x"] + track["width"] * 0.9, y, steps=5)
    page.mouse.up()
    page.wait_for_function("src => document.querySelector('#result img').src !== src", arg=before)
    assert float(page.locator("input[type=number]").input_value()) > 0.8
