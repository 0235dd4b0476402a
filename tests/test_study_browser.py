"""A whole participant session in headless Chromium: consent, a real 5-second exposure, keys and
buttons, a reload in the middle, the completion code, and the votes in the database; and a shared
computer, where the next anonymous person starts afresh."""

from __future__ import annotations

import shutil
import time
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import func, select

from study.app import create_app
from study.db import database_session
from study.export import vote_rows
from study.models import Participant
from study.prepare import prepare_study
from study.protocol import Protocol
from tests.study_support import FAKE_COLORIZERS, SIMULATED, STUDY, live_app, write_photos

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.timeout(120),
    pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason=f"{CHROMIUM} is not installed"),
]
sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture
def live_server(tmp_path: Path, request):
    """The app (default 5 s exposure, or the `exposure_ms` parameter) on a free loopback port."""
    db_url = f"sqlite:///{tmp_path / 'votes.db'}"
    write_photos(tmp_path / "photos", 5)
    prepare_study(db_url, STUDY, FAKE_COLORIZERS, tmp_path / "photos", tmp_path / "media", n=3, catch=1,
                  protocol=SIMULATED)
    with live_app(create_app(db_url, exposure_ms=getattr(request, "param", 5000))) as url:
        yield url, db_url


def test_participant_session(live_server):
    url, db_url = live_server
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1000, "height": 800})
        requested = []
        page.on("request", lambda request: requested.append(request.url))
        page.goto(f"{url}/?PROLIFIC_PID=browser-1")

        start = page.locator("#start")
        assert start.is_disabled()
        page.check("#consent-check")
        start.click()

        # Trial 1: both pictures appear together, stay for 5 s, then leave the document; a choice is
        # still needed.
        left, right = page.locator("#frame-left img"), page.locator("#frame-right img")
        left.wait_for(state="visible")
        assert right.is_visible()
        shown = time.monotonic()
        page.wait_for_timeout(4000)
        assert left.is_visible() and right.is_visible()
        left.wait_for(state="detached", timeout=4000)
        hidden_after = time.monotonic() - shown
        assert 4.5 < hidden_after < 6.5, hidden_after
        assert page.locator(".frame img").count() == 0
        assert page.locator(".progress-text").inner_text() == "0 / 4"
        page.keyboard.press("ArrowLeft")

        # Trial 2 by button, well within the 5 s.
        page.locator(".progress-text", has_text="1 / 4").wait_for()
        left.wait_for(state="visible")
        page.click("button[data-choice=right]")
        page.locator(".progress-text", has_text="2 / 4").wait_for()

        # A reload resumes at trial 3, without the consent page and without repeating trials.
        page.reload()
        page.locator(".progress-text", has_text="2 / 4").wait_for()
        assert page.locator("#consent").is_hidden()
        for answered, key in ((2, "ArrowRight"), (3, "ArrowLeft")):
            # the previous trial's pictures are still visible until the answer is taken: wait for it
            page.locator(".progress-text", has_text=f"{answered} / 4").wait_for()
            left.wait_for(state="visible")
            page.keyboard.press(key)

        page.locator("#done").wait_for(state="visible")
        code = page.locator("#completion-code").inner_text()
        assert page.locator("#new-participant").is_hidden()  # a recruited participant has their own id
        browser.close()

    rows = vote_rows(db_url)
    assert [row["choice"] for row in rows] == ["left", "right", "right", "left"]
    assert {row["external_id"] for row in rows} == {"browser-1"}
    assert len({row["trial_id"] for row in rows}) == 4
    assert rows[0]["rt_ms"] >= 5000 and all(row["rt_ms"] > 0 for row in rows)
    # The page measured the exposure from the frames that showed and removed the pictures.
    assert rows[0]["exposure_ms"] >= 5000 and all(0 < row["exposure_ms"] <= row["rt_ms"] + 100 for row in rows)
    assert all(row["lost_focus"] is False for row in rows)
    assert all(row["server_ms"] is not None for row in rows)
    assert code and len(code) == 8
    # Everything came from the study server itself: no CDN, no third-party requests.
    assert all(address.startswith(url) for address in requested), requested


def await_the_choice(page) -> None:
    """Until the pair has been shown and the page takes an answer (the pictures themselves may
    already be gone again after a short exposure)."""
    page.locator("button[data-choice=right]:enabled").wait_for()


def answer_everything(page, url: str) -> None:
    """An anonymous participant who consents and answers the 4 trials at once."""
    page.goto(url)
    page.check("#consent-check")
    page.click("#start")
    for answered in range(4):
        page.locator(".progress-text", has_text=f"{answered} / 4").wait_for()
        await_the_choice(page)
        page.keyboard.press("ArrowRight")
    page.locator("#done").wait_for(state="visible")


@pytest.mark.parametrize("live_server", [300], indirect=True)
def test_next_anonymous_person_on_a_shared_computer_starts_afresh(live_server):
    url, db_url = live_server
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        answer_everything(page, url)
        first_code = page.locator("#completion-code").inner_text()

        # The next person opens the page in the same browser: the previous thank-you page, with a way out.
        page.reload()
        page.locator("#done").wait_for(state="visible")
        page.click("#new-participant")
        page.locator("#consent").wait_for(state="visible")
        page.check("#consent-check")
        page.click("#start")
        page.locator(".progress-text", has_text="0 / 4").wait_for()
        browser.close()

    rows = vote_rows(db_url)
    assert len(rows) == 4 and len({row["participant_id"] for row in rows}) == 1
    assert first_code and len(first_code) == 8
    with database_session(db_url) as session:
        assert session.scalar(select(func.count()).select_from(Participant)) == 2


def test_a_participant_the_server_no_longer_knows_starts_afresh_despite_pending_votes(live_server):
    """E.g. the database was restored from a backup made before they enrolled, while a vote of theirs
    was waiting for the server: the page must not be stuck on an error for good."""
    url, _ = live_server
    vote = {"participant_id": "gone", "trial_id": "gone", "choice": "left", "rt_ms": 900, "client_vote_id": "v"}
    saved = {"participantId": "gone", "token": "old-token", "pending": [vote]}
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(url)
        page.evaluate("(saved) => localStorage.setItem('colorizer-study::', JSON.stringify(saved))", saved)
        page.reload()
        page.locator("#consent").wait_for(state="visible")
        assert page.locator("#failure").is_hidden()
        browser.close()


def test_the_page_tells_the_participant_their_answers_are_kept_when_storage_fails(tmp_path):
    """Issue 15, finding 7: with votes failing (503), the page keeps retrying and, after the patience
    time (30 s in a study, 1 s here), says the answers are kept; the vote is stored once storage is back."""
    from sqlalchemy import event
    from sqlalchemy.exc import OperationalError

    db_url = f"sqlite:///{tmp_path / 'votes.db'}"
    write_photos(tmp_path / "photos", 5)
    prepare_study(db_url, STUDY, FAKE_COLORIZERS, tmp_path / "photos", tmp_path / "media", n=3, catch=1,
                  protocol=SIMULATED)
    app = create_app(db_url, exposure_ms=300, patience_ms=1000)
    engine = app.state.study.database.engine

    def disk_full(_connection, _cursor, statement, *_args):
        if statement.startswith("INSERT INTO vote"):
            raise OperationalError(statement, {}, Exception("database or disk is full"))

    with live_app(app) as url, sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(url)
        page.check("#consent-check")
        page.click("#start")
        await_the_choice(page)
        event.listen(engine, "before_cursor_execute", disk_full)
        page.keyboard.press("ArrowLeft")
        page.locator(".status", has_text="Your answers are not lost").wait_for(timeout=30_000)
        assert "keep this page open" in page.locator(".status").inner_text()
        event.remove(engine, "before_cursor_execute", disk_full)
        page.locator(".progress-text", has_text="1 / 4").wait_for(timeout=30_000)
        browser.close()
    assert [row["choice"] for row in vote_rows(db_url)] == ["left"]


def prepare_with_protocol(tmp_path: Path, **options) -> str:
    db_url = f"sqlite:///{tmp_path / 'votes.db'}"
    write_photos(tmp_path / "photos", 6)
    options.setdefault("protocol", SIMULATED)
    prepare_study(db_url, STUDY, FAKE_COLORIZERS, tmp_path / "photos", tmp_path / "media", n=3, catch=1, **options)
    return db_url


def test_consent_practice_trials_and_the_redirect_to_the_recruiting_site(tmp_path):
    """Also issue 25's page: a fixation cross before each pair, a screen at the end of the practice,
    a counter that counts only the counted trials, and a break screen (here after every 2)."""
    completion = "https://recruiter.example/complete?cc={code}"
    consent = "## Colour study\n\nResearcher: Ada Lovelace. Ethics contact: ethics@example.org.\n"
    protocol = replace(SIMULATED, exposure_ms=2000, question="Which one looks more natural?",
                       consent_markdown=consent, completion_url=completion, break_every=2)
    db_url = prepare_with_protocol(tmp_path, practice=1, protocol=protocol)
    with live_app(create_app(db_url)) as url, sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        # The recruiting site, answered here: nothing leaves the machine.
        page.route("https://recruiter.example/**", lambda route: route.fulfill(body="<p>Prolific</p>",
                                                                                 content_type="text/html"))
        page.goto(f"{url}/?PROLIFIC_PID=p-1&STUDY_ID=s-9&SESSION_ID=x-3")
        assert page.locator("#consent h2").inner_text() == "Colour study"
        assert "ethics@example.org" in page.locator("#consent").inner_text()
        assert page.locator(".exposure-seconds").inner_text() == "2"
        page.check("#consent-check")
        page.click("#start")
        for answered in range(5):
            counter = "Practice" if answered == 0 else f"{answered - 1} / 4"
            page.locator(".progress-text", has_text=counter).wait_for()
            # The cross first, alone; then the pair.
            page.locator(".fixation").wait_for(state="visible")
            assert page.locator(".frame img").count() == 0
            page.locator("#frame-left img").wait_for(state="attached")
            assert page.locator(".fixation").is_hidden()
            assert page.locator(".practice-note").is_visible() == (answered == 0)
            assert page.locator(".prompt").inner_text() == "Which one looks more natural?"
            page.keyboard.press("ArrowLeft")
            if answered == 0:  # the end of the practice: nothing counted yet, and it says so
                page.locator("#practice-end").wait_for(state="visible")
                assert "4 pairs to go" in page.locator("#practice-end").inner_text()
                assert page.locator("#trial").is_hidden()
                page.click("#practice-end button")
            if answered == 2:  # 2 counted trials answered: a break
                page.locator("#break").wait_for(state="visible")
                assert "2 of 4 pairs done" in page.locator("#break").inner_text()
                page.keyboard.press("Enter")
        page.wait_for_url("https://recruiter.example/complete?cc=*")
        code = page.url.rsplit("=", 1)[1]
        browser.close()
    rows = vote_rows(db_url)
    assert [row["is_practice"] for row in rows] == [True, False, False, False, False]
    with database_session(db_url) as session:
        participant = session.scalars(select(Participant)).one()
    assert participant.completion_code == code
    assert (participant.external_id, participant.prolific_study_id, participant.prolific_session_id) == (
        "p-1", "s-9", "x-3")


def picture_boxes(page) -> list[dict]:
    page.locator("#frame-left img").wait_for(state="visible")
    return [page.locator(f"#frame-{side} img").bounding_box() for side in ("left", "right")]


@pytest.mark.parametrize("width, height", [(390, 844), (844, 390), (1280, 800)])
def test_on_a_phone_the_pictures_are_stacked_upright_and_fit_sideways(tmp_path, width, height):
    db_url = prepare_with_protocol(tmp_path)
    with live_app(create_app(db_url)) as url, sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": width, "height": height}, is_mobile=width < 1000,
                                has_touch=width < 1000)
        page.goto(url)
        page.check("#consent-check")
        page.click("#start")
        left, right = picture_boxes(page)
        buttons = [page.locator(f"button[data-choice={side}]").bounding_box() for side in ("left", "right")]
        browser.close()
    if height > width:  # upright: stacked, each at least 90% of the screen's width
        assert left["width"] >= 0.9 * width and right["width"] >= 0.9 * width
        assert right["y"] >= left["y"] + left["height"] - 1
    else:  # sideways or a desktop: side by side, pictures and buttons all on the screen
        assert right["x"] >= left["x"] + left["width"] - 1 and abs(right["y"] - left["y"]) < 1
        for box in (left, right, *buttons):
            assert box["x"] >= 0 and box["y"] >= 0
            assert box["x"] + box["width"] <= width + 0.5 and box["y"] + box["height"] <= height + 0.5, box
    with database_session(db_url) as session:
        participant = session.scalars(select(Participant)).one()
    assert (participant.viewport_width, participant.viewport_height) == (width, height)


def test_a_participant_answering_faster_than_anyone_can_gets_no_code(tmp_path):
    """The default protocol: votes under 600 ms (and a fixation cross) are invalid, and a session of
    mostly invalid votes ends without a completion code, saying why."""
    db_url = prepare_with_protocol(tmp_path, protocol=Protocol(exposure_ms=300))
    with live_app(create_app(db_url)) as url, sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        answer_everything(page, url)
        assert page.locator("#code-withheld").is_visible() and page.locator("#code-given").is_hidden()
        assert "cannot be counted" in page.locator("#done").inner_text()
        browser.close()
    assert all(row["invalid"] for row in vote_rows(db_url))
