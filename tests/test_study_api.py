"""The JSON API, the page and the admin export, on SQLite and (when configured) PostgreSQL."""

from __future__ import annotations

import csv
import io
import threading
from collections import Counter

import pytest

from study.app import create_app
from study.db import open_database
from study.export import VOTE_COLUMNS, vote_rows
from study.models import CATCH_MODEL
from study.schemas import VoteRequest
from study.service import ServiceError, record_vote
from tests.study_support import (
    ADMIN_TOKEN,
    FOUR_CONDITIONS,
    MODEL_A,
    MODEL_B,
    STUDY,
    answer_all,
    enrol,
    prepare_four_conditions,
    token_header,
    vote,
    vote_body,
)

pytestmark = pytest.mark.timeout(60)


def test_enrolment_lists_the_current_and_next_trial_without_revealing_models(client, prepared):
    participant = enrol(client)
    assert participant["total"] == prepared.trials and len(participant["trials"]) == 2
    assert participant["answered"] == 0 and participant["completion_code"] is None
    page = client.get("/").text
    for text in (str(participant), page, client.get("/static/study.js").text):
        for secret in (MODEL_A, MODEL_B, CATCH_MODEL):
            assert secret not in text
    for trial in participant["trials"]:
        for side in ("left", "right"):
            response = client.get(trial[side])
            assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"


def test_each_participant_gets_own_random_order(client):
    orders = {tuple(t["trial_id"] for t in enrol(client)["trials"]) for _ in range(6)}
    assert len(orders) > 1


def test_sides_are_balanced_per_participant(client, prepared):
    participant = enrol(client)
    answer_all(client, participant, "left")
    rows = vote_rows(prepared.db_url)
    model_trials = [r for r in rows if not r["is_catch"]]
    catch_trials = [r for r in rows if r["is_catch"]]
    assert Counter(r["left_model"] for r in model_trials) == {MODEL_A: prepared.n // 2, MODEL_B: prepared.n // 2}
    assert sum(r["left_model"] == CATCH_MODEL for r in catch_trials) == prepared.catch // 2


def test_resume_continues_at_the_next_open_trial(client):
    other = enrol(client, "PROLIFIC-2")
    after_one = vote(client, other, other["trials"][0])
    assert after_one["trials"][0] == other["trials"][1]
    again = enrol(client, "PROLIFIC-2", expected_status=200, headers=token_header(other))
    assert again["participant_id"] == other["participant_id"]
    assert again["participant_token"] == other["participant_token"]
    assert again["trials"] == after_one["trials"] and again["answered"] == 1
    by_id = client.get(f"/api/participants/{other['participant_id']}", headers=token_header(other)).json()
    assert by_id == {key: value for key, value in again.items() if key != "participant_token"}
    assert enrol(client, "PROLIFIC-3")["participant_id"] != other["participant_id"]


def test_completion_code_once_every_trial_is_answered(client):
    participant = enrol(client, "done-1")
    results = answer_all(client, participant)
    assert len(results) == participant["total"]
    assert all(r["completion_code"] is None for r in results[:-1])
    code = results[-1]["completion_code"]
    assert code and results[-1]["answered"] == results[-1]["total"] and results[-1]["trials"] == []
    resumed = enrol(client, "done-1", expected_status=200, headers=token_header(participant))
    assert resumed["trials"] == [] and resumed["completion_code"] == code


def test_resent_vote_is_stored_once_and_conflicts_are_refused(client, prepared):
    participant = enrol(client)
    first = participant["trials"][0]
    assert vote(client, participant, first, "left", "vote-1") == vote(client, participant, first, "left", "vote-1")
    second = vote(client, participant, first, "left", "vote-1")["trials"][0]
    vote(client, participant, first, "right", "vote-2", expected_status=409)  # a different answer
    vote(client, participant, first, "left", "vote-3", expected_status=409)  # a second vote, same answer
    vote(client, participant, first, "right", "vote-1", expected_status=409)  # same key, other content
    vote(client, participant, second, "left", "vote-1", expected_status=409)  # key reused for another trial
    rows = vote_rows(prepared.db_url)
    assert [r["choice"] for r in rows] == ["left"]


@pytest.mark.parametrize(
    "change, status",
    [
        ({"participant_id": "nobody"}, 404),
        ({"trial_id": "no-such-trial"}, 404),
        ({"choice": "up"}, 422),
        ({"rt_ms": -5}, 422),
        ({"rt_ms": 10**12}, 422),
        ({"rt_ms": "fast"}, 422),
        ({"client_vote_id": ""}, 422),
        ({"client_vote_id": "has\x00nul"}, 422),
        ({"participant_id": None}, 422),
        ({"exposure_ms": "5000"}, 422),
        ({"lost_focus": "no"}, 422),
    ],
)
def test_bad_votes_get_a_json_4xx(client, prepared, change, status):
    participant = enrol(client)
    body = vote_body(participant, participant["trials"][0])
    response = client.post("/api/votes", json={**body, **change}, headers=token_header(participant))
    assert response.status_code == status
    assert isinstance(response.json()["error"], str)
    assert vote_rows(prepared.db_url) == []


@pytest.mark.parametrize(
    "body, status",
    [(b"{not json", 400), (b'{"rt_ms": \xff}', 400), (b"[]", 422), (b"null", 422), (b'{"choice": "left"}', 422)],
)
def test_malformed_bodies(client, body, status):
    """Bodies that are not JSON at all get 400, JSON of the wrong shape 422 (as docs/study.md says)."""
    response = client.post("/api/votes", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == status and "error" in response.json()


def test_unknown_study_and_unknown_participant(client):
    assert client.post("/api/participants", json={"study": "nope"}).status_code == 404
    assert client.post("/api/participants", json={"study": STUDY}).status_code == 201
    some_token = {"X-Participant-Token": "x" * 43}
    assert client.get("/api/participants/nobody", headers=some_token).status_code == 404
    # PostgreSQL text cannot hold NUL
    assert client.get("/api/participants/no%00body", headers=some_token).status_code == 422
    token = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    assert client.get("/admin/export.csv?study=a%00b", headers=token).status_code == 422


def test_no_study_yet(db_url):
    from fastapi.testclient import TestClient

    with TestClient(create_app(db_url)) as empty:
        response = empty.post("/api/participants", json={})
    assert response.status_code == 404 and "no study" in response.json()["error"]


def test_media_only_serves_stimuli(client, prepared):
    (prepared.media_dir / "notes.txt").write_text("private")
    for path in ("/media/notes.txt", "/media/..%2Fvotes.db", f"/media/{'0' * 32}.jpg"):
        assert client.get(path).status_code == 404


def test_admin_export_needs_the_token(client, prepared):
    participant = enrol(client, "ext-7")
    answer_all(client, participant, "right")
    assert client.get("/admin/export.csv").status_code == 401
    wrong = client.get("/admin/export.csv", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
    response = client.get("/admin/export.csv", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == prepared.trials
    assert list(rows[0]) == VOTE_COLUMNS
    assert {r["external_id"] for r in rows} == {"ext-7"}
    assert all(r["chosen_model"] == r["right_model"] for r in rows)
    catch_rows = [r for r in rows if r["is_catch"] == "True"]
    assert len(catch_rows) == prepared.catch
    assert all(r["catch_passed"] == str(r["right_model"] != CATCH_MODEL) for r in catch_rows)


def test_admin_export_disabled_without_a_token(prepared):
    from fastapi.testclient import TestClient

    with TestClient(create_app(prepared.db_url, admin_token=None)) as no_token:
        assert no_token.get("/admin/export.csv", headers={"Authorization": "Bearer "}).status_code == 401


def test_concurrent_copies_of_a_vote_store_one(client, prepared):
    """Racing resends and racing conflicting votes: exactly one vote survives, none get a 5xx."""
    participant = enrol(client)
    trial = participant["trials"][0]
    database = open_database(prepared.db_url)
    outcomes: list[int] = []

    def send(choice: str, key: str) -> None:
        request = VoteRequest(
            participant_id=participant["participant_id"],
            trial_id=trial["trial_id"],
            choice=choice,
            rt_ms=10,
            client_vote_id=key,
        )
        with database.session() as session:
            try:
                record_vote(session, request, participant["participant_token"])
                outcomes.append(200)
            except ServiceError as error:
                outcomes.append(error.status)

    threads = [threading.Thread(target=send, args=("left", "same-key")) for _ in range(6)]
    threads += [threading.Thread(target=send, args=("right", f"other-{i}")) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    database.dispose()
    rows = vote_rows(prepared.db_url)
    assert len(rows) == 1
    winner = rows[0]["choice"]
    assert sorted(outcomes) == sorted([200] * 6 + [409] * 6 if winner == "left" else [200] + [409] * 11)


def test_readers_refuse_a_missing_sqlite_file(tmp_path):
    from colorizer.errors import UserError
    from study.export import vote_rows

    missing = tmp_path / "typo.db"
    with pytest.raises(UserError, match="no database at"):
        vote_rows(f"sqlite:///{missing}")
    assert not missing.exists()


def test_several_conditions_are_balanced_across_participants(tmp_path, study_photos):
    """Two models, the truth and an import: 6 pairs of conditions. Each participant sees each photo
    once; after 12 participants every pair was shown exactly twice on every photo, and each
    condition was on the left in half of its trials."""
    from fastapi.testclient import TestClient

    db_url = f"sqlite:///{tmp_path / 'votes.db'}"
    prepare_four_conditions(db_url, study_photos, tmp_path, n=4, catch=1)
    with TestClient(create_app(db_url)) as four:
        for _ in range(12):
            participant = enrol(four)
            assert participant["total"] == 4 + 1
            answer_all(four, participant)
    votes = vote_rows(db_url)
    rows = [row for row in votes if not row["is_catch"]]
    per_participant = Counter((row["participant_id"], row["image_id"]) for row in votes)
    assert len(per_participant) == 12 * 5 and set(per_participant.values()) == {1}
    # Each of the 5 photos is a catch trial for 2 or 3 of the 12, a compared pair for the others,
    # every pair of conditions shown equally often on it to within one.
    catch_photos = Counter(row["image_id"] for row in votes if row["is_catch"])
    assert len(catch_photos) == 5 and set(catch_photos.values()) <= {2, 3}
    shown = Counter((row["image_id"], frozenset((row["left_model"], row["right_model"]))) for row in rows)
    assert len(shown) == 5 * 6
    for image in catch_photos:
        counts = [count for (shown_image, _), count in shown.items() if shown_image == image]
        assert max(counts) - min(counts) <= 1, counts
    for condition in FOUR_CONDITIONS:
        trials = [row for row in rows if condition in (row["left_model"], row["right_model"])]
        on_left = sum(row["left_model"] == condition for row in trials)
        assert 21 <= len(trials) <= 27 and abs(on_left - len(trials) / 2) <= 2, (condition, on_left, len(trials))
