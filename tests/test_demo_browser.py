"""The demo page in headless Chromium (Debian's, driven by Playwright): upload a photo, see the result."""

from __future__ import annotations

import contextlib
import os
import time
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


def test_a_file_that_is_not_an_image_gets_one_message_and_no_broken_image(page, tmp_path):
    bad = tmp_path / "holiday.png"
    bad.write_bytes(b"this is not a png")
    page.locator("#photo input[type=file]").set_input_files(bad)
    page.get_by_text("holiday.png: not an image").first.wait_for()
    page.wait_for_timeout(500)  # whatever else the failure would show
    assert page.get_by_text("holiday.png: not an image").count() == 1
    assert page.get_by_text("Error", exact=True).count() <= 1  # the notice's title; no "Error" on the views
    assert page.get_by_text("Traceback").count() == 0
    broken = page.evaluate("() => Array.from(document.querySelectorAll('img')).filter(img => img.complete"
                           " && img.naturalWidth === 0 && img.getBoundingClientRect().width > 0).length")
    assert broken == 0
    assert page.locator("#photo input[type=file]").count() == 1  # the upload box is back


def test_notes_about_a_photo_appear_once_not_per_slider_move(page, tmp_path):
    upload = tmp_path / "colour.jpg"
    photo(160, 120).save(upload, quality=95)
    before = result_src(page)
    page.locator("#photo input[type=file]").set_input_files(upload)
    page.wait_for_function("src => document.querySelector('#result img').src !== src", arg=before)
    for value in (0.9, 0.2):
        before = result_src(page)
        slide_temperature(page, value)
        page.wait_for_function("src => document.querySelector('#result img').src !== src", arg=before)
    page.wait_for_timeout(300)
    assert page.get_by_text("colour photo: reduced to gray first").count() == 1


def test_a_batch_of_photos_comes_back_as_one_zip(page, tmp_path):
    import zipfile

    paths = [tmp_path / "street.jpg", tmp_path / "portrait.png", tmp_path / "notes.txt"]
    photo(64, 48).convert("L").save(paths[0])
    photo(40, 60, seed=3).save(paths[1])
    paths[2].write_text("not a photo")
    page.get_by_role("tab", name="Several photos").click()
    page.locator("#batch-photos input[type=file]").set_input_files(paths)
    page.wait_for_function("() => document.querySelector('#batch-photos').innerText.includes('portrait')")
    page.locator("#batch-colorize").click()
    page.get_by_text("1 of 3 files skipped: notes.txt: not an image").wait_for()
    link = page.locator("#batch-zip a[download]").first
    with page.expect_download() as download:
        link.click()
    assert download.value.suggested_filename == "colorized_photos.zip"
    with zipfile.ZipFile(download.value.path()) as bundle:
        assert sorted(bundle.namelist()) == ["portrait_colorized.png", "street_colorized.png"]


def slide_temperature(page, to: float) -> None:
    track = page.get_by_role("slider", name="range slider for Temperature").bounding_box()
    y = track["y"] + track["height"] / 2
    now = float(page.get_by_role("spinbutton", name="number input for Temperature").input_value())
    page.mouse.move(track["x"] + track["width"] * now, y)
    page.mouse.down()
    page.mouse.move(track["x"] + track["width"] * to, y, steps=5)
    page.mouse.up()


def test_moving_the_temperature_slider_recolorizes(page):
    before = result_src(page)
    slide_temperature(page, 0.9)
    page.wait_for_function("src => document.querySelector('#result img').src !== src", arg=before)
    assert float(page.get_by_role("spinbutton", name="number input for Temperature").input_value()) > 0.8


# colour hints, on a server whose `generic` takes hints and whose `dogs` does not

from test_demo_app import hint_server  # noqa: E402, F401  (the fixture)

PIXEL = """async ([selector, x, y]) => {
    const img = document.querySelector(selector); await img.decode();
    const canvas = document.createElement('canvas');
    canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
    const context = canvas.getContext('2d'); context.drawImage(img, 0, 0);
    return Array.from(context.getImageData(x, y, 1, 1).data.slice(0, 3)); }"""


@contextlib.contextmanager
def page_with_a_gray_photo(url: str, folder, timeout_ms: int = 30_000):
    """A browser on the page at `url` with a 320x240 gray photo uploaded and colorized."""
    upload = folder / "gray.png"
    photo(320, 240).convert("L").save(upload)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(timeout_ms)
        page.goto(url)
        page.locator("#photo input[type=file]").set_input_files(upload)
        page.locator("#hint-view img").wait_for()
        yield page
        browser.close()


@pytest.fixture
def hint_page(hint_server, tmp_path):  # noqa: F811  (the fixture imported above)
    """The page with a 320x240 gray photo uploaded and colorized by the hint-capable model."""
    with page_with_a_gray_photo(hint_server, tmp_path) as page:
        yield page


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


def at(page, x: float, y: float) -> dict:
    """Where the photo's pixel (x, y) of the 320x240 upload lies on the hint view."""
    box = page.locator("#hint-view img").bounding_box()
    return {"x": box["width"] * x / 320, "y": box["height"] * y / 240}


def place(page, x: int, y: int, swatch: int = 0) -> None:
    """Click a spot, then a suggested colour: a hint there."""
    count = len(chips(page))
    click_view(page, **at(page, x, y))
    page.locator("#swatches button").nth(swatch).click()
    page.wait_for_function("n => document.querySelectorAll('#hint-chips button').length > n", arg=count)


def test_a_click_changes_nothing_until_a_colour_is_chosen(hint_page):
    page = hint_page
    assert page.evaluate("() => document.querySelector('#hint-view img').naturalWidth") == 320
    before = result_pixel(page, 100, 80)
    download = page.locator("#download").get_attribute("href")
    click_view(page, **at(page, 100, 80))
    assert chips(page) == [] and page.get_by_text("No hints yet").is_visible()
    assert page.locator("#swatches button").count() >= 1  # the colours suggested there
    assert page.locator("#download").get_attribute("href") == download  # the colorization as it was
    assert result_pixel(page, 100, 80) == before

    def pick_blue():
        page.locator("#hint-colour button.dialog-button").click()
        page.locator("#hint-colour input[type=text]").fill("#0000ff")
        page.locator("#hint-colour input[type=text]").press("Enter")
        page.locator("h1").click()  # leaving the picker sends its colour

    pick_blue()  # Enter sends the picker's colour before the typed one; leaving it sends the typed one
    page.wait_for_function("() => document.querySelector('#hint-chips button')?.title === '#0000ff'")
    assert chips(page) == ["1: 100, 80"]
    red, _, blue = result_pixel(page, 100, 80)
    assert blue - red > before[2] - before[0] + 30  # bluer where the hint is

    swatch = page.locator("#swatches button").last
    after(page, "#hint-view img", swatch.click)
    assert page.locator("#hint-chips button").first.get_attribute("title") == swatch.get_attribute("data-hex")
    assert len(chips(page)) == 1  # recoloured, not a second hint


def test_hints_are_moved_removed_undone_and_cleared(hint_page):
    page = hint_page
    place(page, 40, 40)
    place(page, 200, 150)
    assert chips(page) == ["1: 40, 40", "2: 200, 150"]
    after(page, "#hint-view img", lambda: page.locator("#hint-chips button").first.click())
    assert page.locator("#hint-chips .selected").inner_text() == "1: 40, 40"
    page.locator("#move-hint input").check()
    click_view(page, **at(page, 60, 100))
    assert chips(page) == ["1: 60, 100", "2: 200, 150"]
    after(page, "#hint-view img", lambda: page.locator("#remove-hint").click())
    assert chips(page) == ["1: 200, 150"]
    after(page, "#hint-view img", lambda: page.locator("#undo-hint").click())
    assert chips(page) == ["1: 60, 100", "2: 200, 150"]
    with page.expect_download() as download:
        page.locator("#download").click()
    assert download.value.suggested_filename == "gray_colorized.png"  # the upload's name, not a hash
    after(page, "#hint-view img", lambda: page.locator("#clear-hints").click())
    assert chips(page) == [] and page.get_by_text("No hints yet").is_visible()


def test_a_model_without_hint_inputs_says_so(hint_page):
    page = hint_page
    page.get_by_label("Model").click()
    page.get_by_role("option", name="dogs").click()
    page.get_by_text("'dogs' takes no colour hints").first.wait_for()
    assert page.locator("#undo-hint").is_disabled()
    page.locator("#hint-view img").click(position={"x": 50, "y": 50})
    page.get_by_text("'dogs' takes no colour hints").nth(1).wait_for()  # the notice beside the panel's text
    assert chips(page) == [] and page.get_by_text("Traceback").count() == 0



@pytest.fixture
def slow_hint_page(tiny_hint_checkpoint, tmp_path):
    """The page on a server whose network takes 0.3 s a pass, like a real model on a busy CPU (and every
    model's first passes), with a 320x240 gray photo uploaded."""
    from colorizer.infer import Colorizer
    from demo.app import build_demo

    colorizer = Colorizer.load(tiny_hint_checkpoint)
    forward = colorizer._forward

    def slowly(*args, **kwargs):
        time.sleep(0.3)
        return forward(*args, **kwargs)

    colorizer._forward = slowly
    demo = build_demo({"generic": colorizer}, examples_dir=None)
    demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True, ssr_mode=False, run_history=False)
    with page_with_a_gray_photo(demo.local_url, tmp_path, timeout_ms=60_000) as page:
        yield page
    demo.close()


@pytest.mark.timeout(240)
def test_twenty_quick_clicks_place_twenty_hints(slow_hint_page):
    page = slow_hint_page
    view = page.locator("#hint-view img").bounding_box()
    page.mouse.click(view["x"] + 5, view["y"] + 5)
    page.locator("#swatches button").first.wait_for()
    swatch = page.locator("#swatches button").first.bounding_box()
    spots = [(20 + 28 * (i % 10), 60 + 120 * (i // 10)) for i in range(20)]
    for x, y in spots:  # a visitor's clicks: raw mouse events, which do not wait for the page as locator.click does
        page.mouse.click(view["x"] + view["width"] * x / 320, view["y"] + view["height"] * y / 240)
        # the colours suggested for the spot, then a choice and at once the next spot, not waiting for the hint
        page.locator(f'#swatches button[data-x="{x}"][data-y="{y}"]').first.wait_for()
        page.mouse.click(swatch["x"] + swatch["width"] / 2, swatch["y"] + swatch["height"] / 2)
    placed, waited = chips(page), 0
    while len(placed) < 20 and waited < 150:  # until all are placed, or none has come for 10 s
        page.wait_for_timeout(10_000)
        waited, before, placed = waited + 10, placed, chips(page)
        if placed == before:
            break
    page.wait_for_timeout(1500)  # nothing more on its way
    assert chips(page) == [f"{i + 1}: {x}, {y}" for i, (x, y) in enumerate(spots)]


def test_a_click_right_after_the_colour_picker_counts(hint_page):
    page = hint_page
    place(page, 50, 50)
    page.locator("#hint-colour button.dialog-button").click()
    page.locator("#hint-colour input[type=text]").fill("#0000ff")
    view = page.locator("#hint-view img").bounding_box()
    page.mouse.click(view["x"] + view["width"] * 250 / 320, view["y"] + view["height"] * 180 / 240)  # closes it
    page.locator('#swatches button[data-x="250"][data-y="180"]').first.click()  # a colour suggested there
    page.wait_for_function("() => document.querySelectorAll('#hint-chips button').length >= 2")
    page.wait_for_timeout(1000)
    assert chips(page) == ["1: 50, 50", "2: 250, 180"]
