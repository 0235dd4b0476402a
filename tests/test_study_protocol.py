"""The per-study protocol: exposure, question, consent Markdown, practice trials, the completion
redirect, Prolific's ids, the participant limit, and pages for links that name no study."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from colorizer.errors import UserError
from study.app import create_app
from study.db import database_session
from study.export import vote_rows
from study.models import Participant
from study.prepare import prepare_study
from study.protocol import Protocol
from tests.study_support import FAKE_COLORIZERS, SIMULATED, STUDY, answer_all, enrol, vote

pytestmark = pytest.mark.timeout(60)

CONSENT = """## Colour study

Researcher: Ada Lovelace, ada@example.org. Ethics contact: ethics@example.org (approval 2026-17).

<script>alert("not run")</script> [a link](javascript:alert(1))
"""


def prepare(db_url, photos, tmp_path, name=STUDY, **options):
    prepare_study(db_url, name, FAKE_COLORIZERS, photos, tmp_path / f"media-{name}", n=3, catch=1, **options)


def page_config(page: str) -> dict:
    return json.loads(re.search(r'<script id="config" type="application/json">(.*?)</script>', page).group(1))


def test_the_protocol_is_stored_with_the_study_and_shapes_the_page(db_url, study_photos, tmp_path):
    protocol = Protocol(exposure_ms=3000, question="Which photo looks real?", consent_markdown=CONSENT)
    prepare(db_url, study_photos, tmp_path, protocol=protocol)
    with TestClient(create_app(db_url)) as client:
        page = client.get("/").text
    assert page_config(page) == {"study": STUDY, "exposureMs": 3000, "patienceMs": 30_000, "fixationMs": 800,
                                 "breakEvery": 40}
    assert "Which photo looks real?" in page and "<h2>Colour study</h2>" in page
    assert "Ada Lovelace, ada@example.org" in page and "ethics@example.org" in page
    # Raw HTML in the Markdown is shown as text, and javascript: links are not made links.
    assert "<script>alert" not in page and "&lt;script&gt;" in page and 'href="javascript' not in page


@pytest.mark.parametrize(
    "protocol, message",
    [
        (Protocol(exposure_ms=5), "--exposure-ms"),
        (Protocol(completion_url="https://app.prolific.com/submissions/complete"), "must contain {code}"),
        (Protocol(completion_url="javascript:alert(1)//{code}"), "http"),
        (Protocol(max_participants=0), "at least 1"),
        (Protocol(question=" "), "--question"),
    ],
)
def test_bad_protocols_are_refused(tmp_path, study_photos, protocol, message):
    with pytest.raises(UserError, match=message):
        prepare(f"sqlite:///{tmp_path / 'v.db'}", study_photos, tmp_path, protocol=protocol)


def test_practice_trials_come_first_flagged_and_the_completion_url_gets_the_code(db_url, study_photos, tmp_path):
    url = "https://app.prolific.com/submissions/complete?cc={code}"
    prepare(db_url, study_photos, tmp_path, practice=2, protocol=replace(SIMULATED, completion_url=url))
    with TestClient(create_app(db_url)) as client:
        participant = enrol(client, "prolific-1")
        assert participant["total"] == 3 + 1 + 2
        answers = answer_all(client, participant)
    practice = [participant["trials"][0]["practice"]] + [a["trials"][0]["practice"] for a in answers[:-1]]
    assert practice == [True, True, False, False, False, False]
    done = answers[-1]
    assert done["completion_url"] == f"https://app.prolific.com/submissions/complete?cc={done['completion_code']}"
    assert all(a["completion_url"] is None for a in answers[:-1])
    rows = vote_rows(db_url)
    assert [row["is_practice"] for row in rows] == [True, True, False, False, False, False]


def test_prolific_ids_viewport_and_device_are_recorded(client, prepared):
    enrol(client, "PID-1", prolific_study_id="STUDY-9", prolific_session_id="SESSION-3",
          viewport_width=390, viewport_height=844, headers={"User-Agent": "Mozilla/5.0 (iPhone)"})
    with database_session(prepared.db_url) as session:
        participant = session.scalars(select(Participant)).one()
    assert (participant.external_id, participant.prolific_study_id, participant.prolific_session_id) == (
        "PID-1", "STUDY-9", "SESSION-3")
    assert (participant.viewport_width, participant.viewport_height) == (390, 844)
    assert participant.user_agent == "Mozilla/5.0 (iPhone)"
    for bad in ({"viewport_width": -1}, {"viewport_width": "390"}, {"prolific_study_id": "x" * 300}):
        assert client.post("/api/participants", json=bad).status_code == 422


def test_a_full_study_says_so_but_lets_its_participants_continue(db_url, study_photos, tmp_path):
    prepare(db_url, study_photos, tmp_path, protocol=Protocol(max_participants=2))
    with TestClient(create_app(db_url)) as client:
        first = enrol(client, "first")
        enrol(client)
        refused = client.post("/api/participants", json={"external_id": "third"})
        assert refused.status_code == 409 and refused.json()["reason"] == "study_full"
        # The enrolled participant still gets back in, and votes.
        again = enrol(client, "first", expected_status=200, headers={"X-Participant-Token": first["participant_token"]})
        vote(client, again, again["trials"][0])
        assert client.get("/static/study.js").text.count("study_full") == 1


def test_a_link_without_a_study_name_gets_a_clear_page_when_several_studies_run(db_url, study_photos, tmp_path):
    prepare(db_url, study_photos, tmp_path, name="first", protocol=Protocol(exposure_ms=2000))
    with TestClient(create_app(db_url)) as client:
        assert page_config(client.get("/").text)["study"] == "first"  # the only study
        prepare(db_url, study_photos, tmp_path, name="second", protocol=Protocol(exposure_ms=4000))
        page = client.get("/")
        assert page.status_code == 400 and "does not say which one" in page.text and "config" not in page.text
        refused = client.post("/api/participants", json={})
        assert refused.status_code == 400 and "?study=NAME" in refused.json()["error"]
        assert page_config(client.get("/?study=second").text)["exposureMs"] == 4000
        assert page_config(client.get("/?study=first").text)["exposureMs"] == 2000
        missing = client.get("/?study=nope")
        assert missing.status_code == 404 and "does not exist" in missing.text
        assert enrol(client, study="second")["total"] == 4
