"""The demo's Video tab in headless Chromium: upload a clip, see a frame, colorize it, get the clip back."""

from __future__ import annotations

import pytest

from tests.test_demo_browser import CHROMIUM, CHROMIUM_ARGS
from tests.test_video import make_clip

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120), pytest.mark.filterwarnings("ignore:::gradio.queueing"),
              pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"no Chromium at {CHROMIUM}")]
sync_api = pytest.importorskip("playwright.sync_api")


def test_upload_a_clip_and_colorize_it(server, tmp_path):
    clip = make_clip(tmp_path / "square.mp4", frames=12, audio=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(60_000)
        page.goto(server)
        page.get_by_role("tab", name="Video", exact=True).click()
        page.locator("#video-upload input[type=file]").set_input_files(clip)
        page.locator("#video-frame-view img").wait_for()  # frame 0, ready for hints
        page.locator("#video-run").click()
        page.locator("#video-result video").wait_for()
        page.wait_for_function("() => document.querySelector('#video-result video').src.includes('.mp4')")
        assert page.locator("#video-gray video").count() == 1
        assert page.get_by_text("Traceback").count() == 0
        browser.close()
