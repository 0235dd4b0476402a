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
    track = page.get_by_role("slider", name="range slider for Temperature").bounding_box()
    y = track["y"] + track["height"] / 2
    page.mouse.move(track["x"] + track["width"] * 0.38, y)
    page.mouse.down()
    page.mouse.move(track["x"] + track["width"] * 0.9, y, steps=5)
    page.mouse.up()
    page.wait_for_function("src => document.querySelector('#result img').src !== src", arg=before)
    assert float(page.locator("input[type=number]").first.input_value()) > 0.8


# colour hints, on a server whose `generic` takes hints and whose `dogs` does not

from test_demo_app import hint_server  # noqa: E402, F401  (the fixture)

PIXEL = """async ([selector, x, y]) => {
    const img = document.querySelector(selector); await img.decode();
    const canvas = document.createElement('canvas');
    canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
    const context = canvas.getContext('2d'); context.drawImage(img, 0, 0);
    return Array.from(context.getImageData(x, y, 1, 1).data.slice(0, 3)); }"""


@pytest.fixture
def hint_page(hint_server, tmp_path):  # noqa: F811  (the fixture imported above)
    """The page with a 320x240 gray photo uploaded and colorized by the hint-capable model."""
    upload = tmp_path / "gray.png"
    photo(320, 240).convert("L").save(upload)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(30_000)
        page.goto(hint_server)
        page.locator("#photo input[type=file]").set_input_files(upload)
        page.locator("#hint-view img").wait_for()
        yield page
        browser.close()


def after(page, selector: str, action) -> None:
    """Do `action`, then wait until the image at `selector` shows another file."""
    before = page.locator(selector).get_attribute("src")
    action()
    page.wait_for_function("([selector, src]) => document.querySelector(selector)?.src !== src", arg=[selector, before])


def chips(page) -> list[str]:
    return page.locator("#hint-chips button").all_inner_texts()


def click_view(page, x: int, y: int) -> None:
    after(page, "#hint-view img", lambda: page.locator("#hint-view img").click(position={"x": x, "y": y}))


def result_pixel(page, x: int, y: int) -> list[int]:
    page.get_by_role("tab", name="Full resolution").click()
    pixel = page.evaluate(PIXEL, ["#result img", x, y])
    page.get_by_role("tab", name="Colour hints").click()
    return pixel


def test_a_hint_in_the_colour_picked_colours_the_photo_there(hint_page):
    page = hint_page
    assert page.evaluate("() => document.querySelector('#hint-view img').naturalWidth") == 320
    box = page.locator("#hint-view img").bounding_box()
    click_view(page, box["width"] * 100 / 320, box["height"] * 80 / 240)
    assert chips(page) == ["1: 100, 80"]
    assert page.locator("#swatches button").count() == 6  # the likeliest colours there
    before = result_pixel(page, 100, 80)

    def pick_blue():
        page.locator("#hint-colour button.dialog-button").click()
        page.locator("#hint-colour input[type=text]").fill("#0000ff")
        page.locator("#hint-colour input[type=text]").press("Enter")
        page.locator("h1").click()  # leaving the picker sends its colour

    after(page, "#hint-view img", pick_blue)
    assert page.locator("#hint-chips button").first.get_attribute("title") == "#0000ff"
    red, _, blue = result_pixel(page, 100, 80)
    assert blue - red > before[2] - before[0] + 30  # bluer where the hint is

    after(page, "#hint-view img", lambda: page.locator("#swatches button").nth(1).click())
    assert page.locator("#hint-chips button").first.get_attribute("title") == \
        page.locator("#swatches button").nth(1).get_attribute("data-hex")


def test_hints_are_moved_removed_undone_and_cleared(hint_page):
    page = hint_page
    box = page.locator("#hint-view img").bounding_box()
    at = lambda x, y: (box["width"] * x / 320, box["height"] * y / 240)  # noqa: E731
    click_view(page, *at(40, 40))
    click_view(page, *at(200, 150))
    assert chips(page) == ["1: 40, 40", "2: 200, 150"]
    after(page, "#hint-view img", lambda: page.locator("#hint-chips button").first.click())
    assert page.locator("#hint-chips .selected").inner_text() == "1: 40, 40"
    page.locator("#move-hint input").check()
    click_view(page, *at(60, 100))
    assert chips(page) == ["1: 60, 100", "2: 200, 150"]
    after(page, "#hint-view img", lambda: page.locator("#remove-hint").click())
    assert chips(page) == ["1: 200, 150"]
    after(page, "#hint-view img", lambda: page.locator("#undo-hint").click())
    assert chips(page) == ["1: 60, 100", "2: 200, 150"]
    after(page, "#hint-view img", lambda: page.locator("#clear-hints").click())
    assert chips(page) == [] and page.get_by_text("No hints yet").is_visible()
    with page.expect_download() as download:
        page.locator("#download").click()
    assert download.value.suggested_filename.endswith(".png")


def test_a_model_without_hint_inputs_says_so(hint_page):
    page = hint_page
    page.get_by_label("Model").click()
    page.get_by_role("option", name="dogs").click()
    page.get_by_text("'dogs' takes no colour hints").first.wait_for()
    assert page.locator("#undo-hint").is_disabled()
    page.locator("#hint-view img").click(position={"x": 50, "y": 50})
    page.get_by_text("'dogs' takes no colour hints").nth(1).wait_for()  # the notice beside the panel's text
    assert chips(page) == [] and page.get_by_text("Traceback").count() == 0
