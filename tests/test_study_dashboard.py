"""The researcher's dashboard at /admin: the login form and its cookie, the figures per study, the
downloads, and the page in Chromium (log in, see the study, watch it update, download)."""

from __future__ import annotations

import csv
import io
import re
import shutil

import httpx
import pytest
from fastapi.testclient import TestClient

from study.app import ADMIN_COOKIE, create_app
from study.export import vote_rows
from tests.study_support import (
    ADMIN_TOKEN,
    FOUR_CONDITIONS,
    TOKEN_HEADER,
    answer_all,
    enrol,
    live_app,
    prepare_four_conditions,
    vote,
)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def four(tmp_path, study_photos):
    db_url = f"sqlite:///{tmp_path / 'votes.db'}"
    prepare_four_conditions(db_url, study_photos, tmp_path, n=4, catch=1)
    return db_url


def log_in(client: TestClient, token: str = ADMIN_TOKEN):
    return client.post("/admin/login", data={"token": token}, follow_redirects=False)


def test_the_dashboard_needs_the_login_and_its_cookie_is_httponly_and_strict(four):
    with TestClient(create_app(four, admin_token=ADMIN_TOKEN)) as client:
        form = client.get("/admin")
        assert form.status_code == 200 and 'name="token"' in form.text and "enrolled" not in form.text
        for path in ("/admin/panel", "/admin/participants.csv", "/admin/stimuli.csv", "/admin/export.csv"):
            assert client.get(path).status_code == 401
        wrong = log_in(client, "wrong-token-wrong-token")
        assert wrong.status_code == 401 and "Wrong admin token" in wrong.text and ADMIN_COOKIE not in client.cookies
        client.cookies.set(ADMIN_COOKIE, "9999999999.forged", path="/admin")
        assert client.get("/admin/panel").status_code == 401
        client.cookies.clear()
        answer = log_in(client)
        assert answer.status_code == 303 and answer.headers["location"] == "/admin"
        cookie = answer.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/admin" in cookie
        assert ADMIN_TOKEN not in cookie
        assert "enrolled" in client.get("/admin").text
        assert client.get("/admin/panel").status_code == 200
        client.post("/admin/logout")
        assert client.get("/admin/panel").status_code == 401
    with TestClient(create_app(four, admin_token=None)) as no_token:
        assert log_in(no_token, "").status_code == 401


def test_login_and_logout_refuse_forms_from_other_sites_and_malformed_forms(four):
    with TestClient(create_app(four, admin_token=ADMIN_TOKEN)) as client:
        for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
                        {"Origin": "https://evil.example"}, {"Origin": "null"}):
            forged = client.post("/admin/login", data={"token": ADMIN_TOKEN}, headers=headers, follow_redirects=False)
            assert forged.status_code == 403 and "set-cookie" not in forged.headers
        # More fields than the form has: a 400 page, not a 500.
        many = client.post("/admin/login", content="&".join(f"f{i}=x" for i in range(10)),
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert many.status_code == 400 and "Malformed" in many.text
        same = {"Sec-Fetch-Site": "same-origin", "Origin": "http://testserver"}
        assert client.post("/admin/login", data={"token": ADMIN_TOKEN}, headers=same,
                           follow_redirects=False).status_code == 303
        assert client.get("/admin/panel").status_code == 200
        forged_logout = client.post("/admin/logout", headers={"Sec-Fetch-Site": "cross-site"}, follow_redirects=False)
        assert forged_logout.status_code == 403 and "set-cookie" not in forged_logout.headers
        assert client.get("/admin/panel").status_code == 200
        assert client.post("/admin/logout", headers={"Origin": "http://testserver"}).status_code == 200
        assert client.get("/admin/panel").status_code == 401


def test_the_figures_and_downloads_per_study(four):
    with TestClient(create_app(four, admin_token=ADMIN_TOKEN)) as client:
        done = enrol(client, "done", viewport_width=390, viewport_height=844, headers={"User-Agent": "Phone/1"})
        answer_all(client, done)
        started = enrol(client, "started")
        vote(client, started, started["trials"][0], lost_focus=True)
        log_in(client)
        panel = client.get("/admin/panel").text
        cells = dict(re.findall(r'<td class="([a-z-]+)">([^<]*)</td>', panel))
        assert (cells["enrolled"], cells["completed"], cells["dropped"]) == ("2", "1", "0")
        assert re.fullmatch(r"\d+% of [12]", cells["catch"])
        # Answered at once, but the simulated participants' study has no minimum response time; their
        # claimed 1.2 s contradict the server's clock, though, which makes every vote invalid.
        assert (cells["too-fast"], cells["invalid"]) == ("0 of 6", "6 of 6")
        assert "<svg" in panel and all(condition in panel for condition in FOUR_CONDITIONS)
        people = list(csv.DictReader(io.StringIO(client.get("/admin/participants.csv?study=pilot").text)))
        by_id = {row["external_id"]: row for row in people}
        assert by_id["done"]["completed"] == "True" and by_id["done"]["answered"] == "5"
        assert by_id["done"]["viewport_width"] == "390" and by_id["done"]["user_agent"] == "Phone/1"
        (started_vote,) = [row for row in vote_rows(four) if row["external_id"] == "started"]
        # Its first trial may be the catch trial.
        expected = str(started_vote["catch_passed"]) if started_vote["is_catch"] else ""
        assert by_id["done"]["catch_passed"] in ("True", "False") and by_id["started"]["catch_passed"] == expected
        assert by_id["started"]["completed"] == "False" and by_id["started"]["focus_losses"] == "1"
        stimuli_rows = list(csv.DictReader(io.StringIO(client.get("/admin/stimuli.csv").text)))
        assert {row["model"] for row in stimuli_rows} >= set(FOUR_CONDITIONS)
        assert client.get("/admin/participants.csv?study=nope").status_code == 404
        # The bearer token still works for scripts.
        bearer = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        client.cookies.clear()
        assert client.get("/admin/participants.csv", headers=bearer).status_code == 200


CHROMIUM = "/usr/bin/chromium"


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason=f"{CHROMIUM} is not installed")
def test_download_links_encode_the_study_name():
    from study.dashboard import StudyOverview, panel_html

    study = StudyOverview(name="dogs & cats #2+", conditions=["a"], enrolled=0, completed=0, dropped_out=0,
                          median_duration_s=None, catch_votes=0, catch_pass_rate=None, votes=0, too_fast=0,
                          per_image={})
    links = re.findall(r'href="([^"]*)"', panel_html([study]))
    assert links and all(link.endswith("?study=dogs%20%26%20cats%20%232%2B") for link in links)


def test_the_dashboard_in_chromium(four, tmp_path):
    from tests.test_study_browser import CHROMIUM_ARGS, sync_api

    app = create_app(four, admin_token=ADMIN_TOKEN, dashboard_refresh_ms=300)
    with live_app(app) as url, httpx.Client(base_url=url) as http, sync_api.sync_playwright() as playwright:
        first = http.post("/api/participants", json={"external_id": "one"}).json()
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(accept_downloads=True)
        page = context.new_page()
        page.goto(f"{url}/admin")
        page.fill("#token", "not-the-token-at-all")
        page.click("button[type=submit]")
        page.locator(".status", has_text="Wrong admin token").wait_for()
        page.fill("#token", ADMIN_TOKEN)
        page.click("button[type=submit]")
        page.locator(".study h2", has_text="pilot").wait_for()
        assert page.locator(".enrolled").inner_text() == "1"
        (cookie,) = context.cookies()
        assert (cookie["name"], cookie["httpOnly"], cookie["sameSite"]) == (ADMIN_COOKIE, True, "Strict")
        assert page.evaluate("document.cookie") == ""  # out of reach of scripts

        # Votes and a new participant show up without reloading the page. Two votes: the one catch
        # trial, which the chart leaves out, may come first, and a participant cannot tell which it is.
        for number, trial in enumerate(first["trials"][:2]):
            body = {"participant_id": first["participant_id"], "trial_id": trial["trial_id"], "choice": "left",
                    "rt_ms": 2000, "client_vote_id": f"v{number}"}
            headers = {TOKEN_HEADER: first["participant_token"]}
            assert http.post("/api/votes", json=body, headers=headers).status_code == 200
        http.post("/api/participants", json={})
        page.locator(".enrolled", has_text="2").wait_for()
        assert page.locator(".study svg rect").count() > 0

        with page.expect_download() as download:
            page.click("text=participants CSV")
        rows = list(csv.DictReader(io.StringIO(download.value.path().read_text())))
        assert sorted(row["external_id"] for row in rows) == ["", "one"]
        with page.expect_download() as download:
            page.click("text=votes CSV")
        assert len(list(csv.DictReader(io.StringIO(download.value.path().read_text())))) == 2
        browser.close()
