"""Issue 28's attacks on a paid study, replayed: paced bots, catch trials found across enrolments,
enrolment floods, the participant cap across processes, never-finished request heads, and the admin
login. Each test does what the attacker did and checks that it no longer gets through."""

from __future__ import annotations

import csv
import datetime as dt
import http.client
import io
import json
import resource
import socket
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import func, select, update

from analysis.votes import analyze, load_votes
from study.app import ADMIN_COOKIE, create_app
from study.db import database_session
from study.export import vote_rows
from study.models import Participant, Trial
from study.prepare import prepare_study
from study.protocol import Protocol
from tests.conftest import photo
from tests.study_support import ADMIN_TOKEN, FAKE_COLORIZERS, STUDY, TOKEN_HEADER, enrol, live_app, vote
from tests.test_study_integrity import load_bench

pytestmark = pytest.mark.timeout(180)

PROLIFIC_STUDY = "prolific-study-1"


def smooth_photos(folder: Path, count: int) -> Path:
    """Photo-like pictures (smooth colour blobs), so image statistics behave as on photos, not noise."""
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        photo(64, 48, seed=index).save(folder / f"{index}.png")
    return folder


def lab_colorizer(scale: float, sigma: float):
    """A stand-in model that colours as the real ones do, in Lab: the photo's lightness, and its own
    colours blurred by `sigma` and scaled by `scale` (a muted, smooth guess)."""
    from scipy.ndimage import gaussian_filter
    from skimage.color import lab2rgb, rgb2lab

    def colorize(picture: Image.Image) -> Image.Image:
        lab = rgb2lab(np.asarray(picture.convert("RGB")))
        ab = gaussian_filter(lab[..., 1:], sigma=(sigma, sigma, 0)) * scale
        return Image.fromarray((lab2rgb(np.dstack([lab[..., :1], ab])) * 255).round().astype(np.uint8))

    return colorize


LAB_COLORIZERS = {"dogs": lab_colorizer(0.6, 2), "coco": lab_colorizer(0.8, 4)}


def prepare(db_url: str, tmp_path: Path, n: int = 4, catch: int = 2, truth: bool = False, **protocol) -> None:
    photos = smooth_photos(tmp_path / "photos", n + catch)
    prepare_study(db_url, STUDY, LAB_COLORIZERS, photos, tmp_path / "media", n=n, catch=catch, truth=truth,
                  protocol=Protocol(**protocol))


# 1. Paced bots


def paced_bot(client: TestClient, external_id: str | None = None) -> dict:
    """The bot of the issue: a vote per trial, each claiming 1.5 s."""
    participant = enrol(client, external_id)
    answer, trials = participant, participant["trials"]
    while trials:
        answer = vote(client, participant, trials[0], rt_ms=1500)
        trials = answer["trials"]
    return answer


def pace(monkeypatch, seconds: float) -> None:
    """The server's clock moves `seconds` between one reading and the next: a client that waits that
    long per request, without the test waiting (and without timings that depend on the machine)."""
    from study import service

    start, readings = service.utcnow(), iter(range(1, 100_000))
    monkeypatch.setattr(service, "utcnow", lambda: start + dt.timedelta(seconds=seconds * next(readings)))


def test_a_paced_bot_gets_no_code_and_its_votes_are_invalid(tmp_path, monkeypatch):
    db_url = f"sqlite:///{tmp_path / 'votes.db'}"
    prepare(db_url, tmp_path)  # the default protocol: 600 ms minimum, codes withheld past half invalid
    with TestClient(create_app(db_url, admin_token=ADMIN_TOKEN)) as client:
        pace(monkeypatch, 0.31)  # the bot sleeps 0.31 s per trial
        done = paced_bot(client, "bot")
        assert done["answered"] == done["total"] == 6 and done["trials"] == []
        assert done["completion_code"] is None and done["completion_withheld"] is True
        assert done["completion_url"] is None

        pace(monkeypatch, 3.0)  # a person takes seconds per trial, and gets the code
        person = paced_bot(client, "person")
        assert person["completion_code"] and person["completion_withheld"] is False
        monkeypatch.undo()

        client.post("/admin/login", data={"token": ADMIN_TOKEN})
        panel = client.get("/admin/panel").text
    # Both clocks are stored; the bot's claimed 1.5 s are contradicted by the server's 0.31 s.
    rows = [row for row in vote_rows(db_url) if row["external_id"] == "bot"]
    assert all(row["rt_ms"] == 1500 and row["server_ms"] == 310 for row in rows)
    assert all(row["too_fast"] and row["time_mismatch"] and row["invalid"] for row in rows)
    assert not any(row["invalid"] for row in vote_rows(db_url) if row["external_id"] == "person")
    assert '<td class="invalid">6 of 12</td>' in panel
    # The analysis leaves the bot out and says how many votes it left out.
    summary = analyze(load_votes(db_url)).summary
    assert summary["invalid_votes_excluded"] == 6 and summary["n_participants"] == 1

    # The share is the researcher's: with 1 (never withhold), the same bot gets its code.
    lenient = f"sqlite:///{tmp_path / 'lenient.db'}"
    prepare_study(lenient, STUDY, LAB_COLORIZERS, tmp_path / "photos", tmp_path / "media-lenient", n=4, catch=2,
                  protocol=Protocol(max_invalid_share=1.0))
    with TestClient(create_app(lenient)) as client:
        assert paced_bot(client)["completion_code"]


def test_the_minimum_response_time_is_a_protocol_setting_of_at_least_600_ms(tmp_path):
    from study.protocol import DEFAULT_MIN_RESPONSE_MS

    assert DEFAULT_MIN_RESPONSE_MS >= 600
    with pytest.raises(Exception, match="--min-response-ms"):
        Protocol(min_response_ms=-1).check()


# 2. Catch trials found across enrolments


def chroma_noise(path: Path) -> float:
    """The attack's statistic: the high-frequency energy of the chroma channels (grain and blotches)."""
    from scipy.ndimage import gaussian_filter
    from skimage.color import rgb2lab

    with Image.open(path) as picture:
        ab = rgb2lab(np.asarray(picture.convert("RGB")))[..., 1:]
    return float(np.abs(ab - gaussian_filter(ab, sigma=(2, 2, 0))).mean())


def test_catch_trials_cannot_be_found_by_recurring_ids_or_chroma_noise(tmp_path):
    db_url = f"sqlite:///{tmp_path / 'votes.db'}"
    prepare(db_url, tmp_path, n=10, catch=2, truth=True, **{"min_response_ms": 0, "max_invalid_share": 1.0})
    seen: list[set[str]] = []
    with TestClient(create_app(db_url)) as client:
        for _ in range(6):
            participant = enrol(client)
            ids = set()
            answer = participant
            while answer["trials"]:
                trial = answer["trials"][0]
                ids |= {trial["trial_id"], trial["left"], trial["right"]}
                answer = vote(client, participant, trial)
            seen.append(ids)
    # The first attack: ids (trial ids, picture URLs) recurring across six anonymous enrolments.
    recurring = Counter(identifier for ids in seen for identifier in ids)
    assert max(recurring.values()) == 1

    # Each participant's catch trials are drawn from the photos that others compare.
    rows = vote_rows(db_url)
    catch_photos = {row["image_id"] for row in rows if row["is_catch"]}
    compared_photos = {row["image_id"] for row in rows if not row["is_catch"]}
    assert len(catch_photos) > 2 and catch_photos <= compared_photos

    # The second attack: pick the side with more chroma noise as the degraded one, on every catch
    # pair of the pool (the old blurred, inverted and grainy side lost 12 of 12).
    media = tmp_path / "media"
    with database_session(db_url) as session:
        pairs = [(trial.stimulus_a.file_name, trial.stimulus_b.file_name)
                 for trial in session.scalars(select(Trial).where(Trial.is_catch))]
    assert len(pairs) == 12
    noisier_is_degraded = [chroma_noise(media / degraded) > chroma_noise(media / intact) for intact, degraded in pairs]
    larger_is_degraded = [(media / degraded).stat().st_size > (media / intact).stat().st_size
                          for intact, degraded in pairs]
    for picks in (noisier_is_degraded, larger_is_degraded):
        assert 3 <= sum(picks) <= 9, picks  # no better than chance, either way


# 3. Enrolment floods


def test_an_enrolment_flood_leaves_the_reserved_places_to_recruited_participants(tmp_path):
    db_url = f"sqlite:///{tmp_path / 'votes.db'}"
    prepare(db_url, tmp_path, max_participants=40, prolific_study_id=PROLIFIC_STUDY, anonymous_places=10,
            min_response_ms=0, max_invalid_share=1.0)
    with live_app(create_app(db_url)) as url, httpx.Client(base_url=url, timeout=60) as client, \
            ThreadPoolExecutor(16) as pool:
        flood = list(pool.map(lambda n: client.post("/api/participants", json={}), range(100)))
        statuses = Counter(response.status_code for response in flood)
        assert statuses == {201: 10, 409: 90}
        assert all(response.json()["reason"] == "study_full" for response in flood if response.status_code == 409)
        # Fake Prolific ids with another STUDY_ID get nothing.
        forged = {"external_id": "fake", "prolific_study_id": "guessed", "prolific_session_id": "s"}
        refused = client.post("/api/participants", json=forged)
        assert refused.status_code == 403 and refused.json()["reason"] == "wrong_study"
        # The real participant arriving after the flood gets in.
        real = {"external_id": "PID-1", "prolific_study_id": PROLIFIC_STUDY, "prolific_session_id": "SESSION-1"}
        assert client.post("/api/participants", json=real).status_code == 201
    with database_session(db_url) as session:
        recruited = session.scalars(select(Participant.recruited).where(Participant.external_id == "PID-1")).one()
        assert recruited is True
        assert session.scalar(select(func.count()).select_from(Participant)) == 11


def test_enrolments_are_rate_limited_per_client_with_the_count_in_the_database(tmp_path):
    db_url = f"sqlite:///{tmp_path / 'votes.db'}"
    prepare(db_url, tmp_path)
    attacker, neighbour = ("203.0.113.7", 40000), ("198.51.100.9", 40000)
    # Two server processes (two apps) on one database: the count is shared.
    with TestClient(create_app(db_url, enrolments_per_client=20), client=attacker) as first, \
            TestClient(create_app(db_url, enrolments_per_client=20), client=attacker) as second:
        statuses = [(first if n % 2 else second).post("/api/participants", json={}).status_code for n in range(30)]
        assert statuses[:20] == [201] * 20 and statuses[20:] == [429] * 10
        limited = first.post("/api/participants", json={})
        assert limited.status_code == 429 and 0 < int(limited.headers["retry-after"]) <= 600
    with TestClient(create_app(db_url, enrolments_per_client=20), client=neighbour) as other:
        assert other.post("/api/participants", json={}).status_code == 201


def test_an_anonymous_enrolment_resent_with_its_key_is_the_same_participant(client):
    first = enrol(client, client_enrolment_id="page-key-anonymous")
    again = enrol(client, expected_status=200, client_enrolment_id="page-key-anonymous")
    assert again["participant_id"] == first["participant_id"]
    assert enrol(client, client_enrolment_id="another-page")["participant_id"] != first["participant_id"]


def test_dropped_out_enrolments_release_their_place(tmp_path):
    db_url = f"sqlite:///{tmp_path / 'votes.db'}"
    prepare(db_url, tmp_path, max_participants=2, min_response_ms=0, max_invalid_share=1.0)
    with TestClient(create_app(db_url)) as client:
        gone, finished = enrol(client), enrol(client)
        while finished["trials"]:
            finished = {**finished, **vote(client, finished, finished["trials"][0])}
        assert client.post("/api/participants", json={}).json()["reason"] == "study_full"
        with database_session(db_url) as session:  # an hour without a vote
            an_hour_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
            session.execute(update(Participant).values(last_active_at=an_hour_ago, created_at=an_hour_ago))
            session.commit()
        # The one who dropped out gave their place back; the one who finished keeps theirs.
        late = enrol(client)
        assert client.post("/api/participants", json={}).json()["reason"] == "study_full"
        # Who dropped out may still come back and answer.
        vote(client, gone, gone["trials"][0])
    assert late["participant_id"] not in (gone["participant_id"], finished["participant_id"])


# 4. The cap across processes


def concurrent_enrolments(addresses: list[tuple[str, int]], count: int) -> Counter:
    def enrol_once(number: int) -> int:
        connection = http.client.HTTPConnection(*addresses[number % len(addresses)], timeout=60)
        connection.request("POST", "/api/participants", json.dumps({}), {"Content-Type": "application/json"})
        status = connection.getresponse().status
        connection.close()
        return status

    with ThreadPoolExecutor(24) as pool:
        return Counter(pool.map(enrol_once, range(count)))


@pytest.mark.slow
def test_the_cap_holds_across_server_processes(db_url, tmp_path):
    """Two `study serve` processes on one database (on PostgreSQL one of them with --workers 2):
    100 concurrent enrolments for 40 places enrol exactly 40."""
    bench = load_bench()
    prepare(db_url, tmp_path, max_participants=40)
    postgres = db_url.startswith("postgresql")
    servers = [bench.Server(db_url, bench.free_port(), tmp_path / f"server{n}.log", workers=1 + (postgres and n))
               for n in range(2)]
    for server in servers:
        server.start()
    try:
        statuses = concurrent_enrolments([server.address for server in servers], 100)
    finally:
        for server in servers:
            server.stop()
    assert statuses == {201: 40, 409: 60}
    with database_session(db_url) as session:
        assert session.scalar(select(func.count()).select_from(Participant)) == 40


@pytest.mark.slow
@pytest.mark.postgres
def test_four_workers_on_postgresql_keep_every_vote_through_a_killed_worker(db_url, tmp_path):
    import subprocess
    import sys

    if not db_url.startswith("postgresql"):
        pytest.skip("--workers is for PostgreSQL")
    arguments = ["--db", db_url, "--workers", "4", "--participants", "16", "--concurrency", "8", "--images", "6",
                 "--catch", "2", "--think-ms", "5"]
    result = subprocess.run([sys.executable, str(Path(load_bench().__file__)), *arguments], capture_output=True,
                            text=True, timeout=170)
    assert result.returncode == 0, result.stdout + result.stderr
    figures = dict(pair.split("=") for pair in result.stdout.strip().splitlines()[-1].split() if "=" in pair)
    assert figures["votes"] == figures["acknowledged"] == figures["exported"] == "128"
    assert figures["lost"] == figures["duplicates"] == figures["invented"] == "0"


# 5. Never-finished request heads


@pytest.mark.slow
def test_never_finished_request_heads_do_not_take_the_server_down(tmp_path):
    """2,100 connections from one address that never finish their request head: the server keeps at
    most --connections-per-client of them, closes those after --head-timeout-s, and answers everyone
    else. Loopback only: the attacker is 127.0.0.2, the participant 127.0.0.3."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2400:
        pytest.skip("the open-file limit is too low to open 2,100 connections")
    resource.setrlimit(resource.RLIMIT_NOFILE, (4096 if hard == resource.RLIM_INFINITY else min(4096, hard), hard))
    bench = load_bench()
    db_url = f"sqlite:///{tmp_path / 'votes.db'}"
    prepare(db_url, tmp_path)
    server = bench.Server(db_url, bench.free_port(), tmp_path / "server.log", options=("--head-timeout-s", "3"))
    server.start()
    slow = []
    try:
        for _ in range(2100):
            sock = socket.socket()
            sock.bind(("127.0.0.2", 0))
            sock.settimeout(10)
            try:
                sock.connect(server.address)
                sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # a request head that never ends
            except OSError:
                pass
            slow.append(sock)
        participant = http.client.HTTPConnection(*server.address, timeout=30, source_address=("127.0.0.3", 0))
        participant.request("GET", "/")
        assert participant.getresponse().status == 200
        participant.close()
        participant.request("POST", "/api/participants", "{}", {"Content-Type": "application/json"})
        assert participant.getresponse().status == 201
        # The heads that were kept are closed once their time is up.
        time.sleep(4)
        still_open = 0
        for sock in slow:
            sock.setblocking(False)
            try:
                still_open += sock.recv(1) != b""
            except BlockingIOError:
                still_open += 1
            except OSError:
                pass
        assert still_open == 0
    finally:
        for sock in slow:
            sock.close()
        server.stop()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# 6. The admin login


def test_admin_logins_are_rate_limited_per_client_and_overall(prepared):
    with TestClient(create_app(prepared.db_url, admin_token=ADMIN_TOKEN), client=("203.0.113.1", 1)) as guesser:
        answers = [guesser.post("/admin/login", data={"token": f"guess-{n:012d}"}) for n in range(12)]
        assert [answer.status_code for answer in answers] == [401] * 10 + [429] * 2
        assert int(answers[-1].headers["retry-after"]) > 0
        # Not even the right token gets through from this client now.
        assert guesser.post("/admin/login", data={"token": ADMIN_TOKEN}, follow_redirects=False).status_code == 429
    # Guesses spread over many addresses meet the overall limit.
    statuses = []
    for address in range(12):  # each a server process of its own: the counts are in the database
        with TestClient(create_app(prepared.db_url, admin_token=ADMIN_TOKEN), client=(f"198.51.100.{address}", 1)) as other:
            statuses += [other.post("/admin/login", data={"token": f"guess-{n:012d}"}).status_code for n in range(9)]
    # The guesser's 10 counted; 90 more were let through to the token check.
    assert statuses.count(401) == 90 and statuses[-1] == 429


def test_guessing_the_bearer_token_is_limited_too(prepared):
    with TestClient(create_app(prepared.db_url, admin_token=ADMIN_TOKEN), client=("203.0.113.2", 1)) as guesser:
        statuses = [guesser.get("/admin/export.csv", headers={"Authorization": f"Bearer guess-{n:012d}"}).status_code
                    for n in range(12)]
        assert statuses == [401] * 10 + [429] * 2
        # Past the limit the right token gets no answer either, so a lucky guess cannot be told apart.
        right = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        assert guesser.get("/admin/export.csv", headers=right).status_code == 429
    with TestClient(create_app(prepared.db_url, admin_token=ADMIN_TOKEN), client=("198.51.100.77", 1)) as script:
        # A script with the token, elsewhere, is not limited by its successes.
        assert [script.get("/admin/export.csv", headers=right).status_code for _ in range(15)] == [200] * 15


def test_a_logged_out_cookie_is_refused_afterwards(prepared):
    with TestClient(create_app(prepared.db_url, admin_token=ADMIN_TOKEN)) as client:
        client.post("/admin/login", data={"token": ADMIN_TOKEN})
        cookie = client.cookies.get(ADMIN_COOKIE)
        assert cookie and client.get("/admin/panel").status_code == 200
        client.post("/admin/logout")
        # Someone who kept a copy of the cookie (another browser, a stolen one) is refused too.
        client.cookies.set(ADMIN_COOKIE, cookie, path="/admin")
        assert client.get("/admin/panel").status_code == 401
        assert client.get("/admin/export.csv").status_code == 401
        assert 'name="token"' in client.get("/admin").text
        # A new login is a new session.
        client.cookies.clear()
        client.post("/admin/login", data={"token": ADMIN_TOKEN})
        assert client.get("/admin/panel").status_code == 200


def test_the_participant_export_lists_invalid_votes(client, prepared):
    participant = enrol(client)
    vote(client, participant, participant["trials"][0])
    text = client.get("/admin/participants.csv", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).text
    (row,) = csv.DictReader(io.StringIO(text))
    assert row["invalid_votes"] == "1"  # claimed 1.2 s, answered at once


# A database from before these rules


def test_a_study_from_before_keeps_its_rules_and_its_participants(tmp_path):
    """An older database: no new tables, columns or indexes, a catch photo of its own, a participant
    enrolled back then. Opening it adds what is missing; the old participant continues with the
    shared trial ids and file names, a new one gets ids of their own, and nobody's code is withheld."""
    from study.db import open_database

    db_url = f"sqlite:///{tmp_path / 'old.db'}"
    prepare_study(db_url, STUDY, FAKE_COLORIZERS, smooth_photos(tmp_path / "photos", 4), tmp_path / "media", n=3,
                  catch=1)
    with TestClient(create_app(db_url)) as client:
        old = enrol(client, "from-before")
    database = open_database(db_url)
    with database.engine.begin() as connection:
        # The last photo becomes a catch photo of the old kind: its catch trial only.
        catch_image = connection.exec_driver_sql("SELECT max(image_id) FROM trial").scalar()
        connection.exec_driver_sql(f"DELETE FROM trial WHERE image_id = {catch_image} AND NOT is_catch")
        connection.exec_driver_sql(f"DELETE FROM trial WHERE image_id != {catch_image} AND is_catch")
        for index in ("ix_assignment_public_id", "ix_assignment_left_name", "ix_assignment_right_name",
                      "ix_participant_enrolment_key"):
            connection.exec_driver_sql(f"DROP INDEX {index}")
        for table, columns in {"study": ("min_response_ms", "max_invalid_share", "catch_trials", "prolific_study_id",
                                         "anonymous_places", "break_every"),
                               "participant": ("recruited", "last_active_at", "completed_at"),
                               "assignment": ("public_id", "left_name", "right_name")}.items():
            for column in columns:
                connection.exec_driver_sql(f"ALTER TABLE {table} DROP COLUMN {column}")
        connection.exec_driver_sql("DROP TABLE rate_counter")
        connection.exec_driver_sql("DROP TABLE revoked_admin_session")
    database.dispose()

    with TestClient(create_app(db_url)) as client:
        resumed = client.get(f"/api/participants/{old['participant_id']}", headers={TOKEN_HEADER: old["participant_token"]})
        assert resumed.status_code == 200
        with database_session(db_url) as session:
            trial_ids = set(session.scalars(select(Trial.id)))
        assert resumed.json()["trials"][0]["trial_id"] in trial_ids  # the shared id, as back then
        answer = resumed.json()
        while answer["trials"]:
            answer = vote(client, {**old, **answer}, answer["trials"][0])
        assert answer["completion_code"]  # votes at once, but the old study has no minimum
        new = enrol(client, "after")
        assert new["total"] == 4 and new["trials"][0]["trial_id"] not in trial_ids
        answer = new
        while answer["trials"]:
            answer = vote(client, {**new, **answer}, answer["trials"][0])
        assert answer["completion_code"]
    rows = vote_rows(db_url)
    # The old kind of catch photo is everyone's catch trial.
    after = [row for row in rows if row["external_id"] == "after"]
    assert len(after) == 4 and [row["image_id"] for row in after if row["is_catch"]] == [catch_image]
    # The old rule: flagged under 300 ms by either clock, no mismatch check, and every code given.
    assert not any(row["time_mismatch"] for row in rows)
