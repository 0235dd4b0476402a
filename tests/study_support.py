"""Fixtures shared by the study tests: tiny photo folders, fake models, databases on both backends.

tests/conftest.py makes its fixtures available to every test; the test_study_* modules import its
helpers. PostgreSQL runs when COLORIZER_TEST_PG_URL is set
(e.g. postgresql+psycopg://colorizer:colorizer@127.0.0.1:5432/colorizer_test); each test gets its
own schema, dropped afterwards, so reruns and parallel runs never see each other's rows.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from study.prepare import prepare_study
from study.protocol import Protocol

PG_URL_VARIABLE = "COLORIZER_TEST_PG_URL"
MODEL_A, MODEL_B = "dogs", "coco"
STUDY = "pilot"
ADMIN_TOKEN = "test-admin-token"
TOKEN_HEADER = "X-Participant-Token"


def tint(colour: str):
    """A stand-in colorizer: the photo's grey levels blended with one colour."""

    def colorize(photo: Image.Image) -> Image.Image:
        return Image.blend(photo.convert("L").convert("RGB"), Image.new("RGB", photo.size, colour), 0.3)

    return colorize


FAKE_COLORIZERS = {MODEL_A: tint("red"), MODEL_B: tint("blue")}
# The protocol of the tests' simulated participants, who answer at once: no minimum response time,
# and every participant gets their code (the tests of those rules prepare studies of their own).
SIMULATED = Protocol(min_response_ms=0, max_invalid_share=1.0)


def write_photos(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """`count` small random photos in nested folders and mixed formats."""
    rng = np.random.default_rng(seed)
    paths = []
    for index in range(count):
        suffix = ("png", "jpg", "webp")[index % 3]
        path = folder / ("nested/deeper" if index % 3 == 0 else "") / f"photo{index}.{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (24 + index, 32, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


@pytest.fixture
def study_photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    write_photos(folder, 10)
    return folder


def postgres_schema_url(base_url: str, schema: str) -> str:
    from sqlalchemy.engine import make_url

    url = make_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request, tmp_path: Path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'votes.db'}"
        return
    base_url = os.environ.get(PG_URL_VARIABLE)
    if not base_url:
        pytest.skip(f"{PG_URL_VARIABLE} is not set")
    from sqlalchemy import create_engine, text

    schema = f"study_test_{secrets.token_hex(6)}"
    admin = create_engine(base_url)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield postgres_schema_url(base_url, schema)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@dataclass
class PreparedStudy:
    db_url: str
    media_dir: Path
    n: int
    catch: int

    @property
    def trials(self) -> int:
        return self.n + self.catch


@pytest.fixture
def prepared(db_url: str, study_photos: Path, tmp_path: Path) -> PreparedStudy:
    media_dir = tmp_path / "media"
    prepare_study(db_url, STUDY, FAKE_COLORIZERS, study_photos, media_dir, n=4, seed=3, catch=2, protocol=SIMULATED)
    return PreparedStudy(db_url, media_dir, n=4, catch=2)


@pytest.fixture
def client(prepared: PreparedStudy):
    from fastapi.testclient import TestClient

    from study.app import create_app

    with TestClient(create_app(prepared.db_url, admin_token=ADMIN_TOKEN)) as test_client:
        yield test_client



def token_header(participant: dict) -> dict:
    return {TOKEN_HEADER: participant["participant_token"]}


def enrol(client, external_id=None, expected_status=201, headers=None, **fields) -> dict:
    response = client.post("/api/participants", json={"external_id": external_id, **fields}, headers=headers)
    assert response.status_code == expected_status, response.text
    return response.json()


def vote_body(participant: dict, trial: dict, choice="left", client_vote_id=None, **fields) -> dict:
    return {
        "participant_id": participant["participant_id"],
        "trial_id": trial["trial_id"],
        "choice": choice,
        "rt_ms": 1234,
        "client_vote_id": client_vote_id or f"{participant['participant_id']}-{trial['trial_id']}",
        **fields,
    }


def vote(
    client, participant: dict, trial: dict, choice="left", client_vote_id=None, expected_status=200, **fields
) -> dict:
    body = vote_body(participant, trial, choice, client_vote_id, **fields)
    response = client.post("/api/votes", json=body, headers=token_header(participant))
    assert response.status_code == expected_status, response.text
    return response.json()


def answer_all(client, participant: dict, choice="left") -> list[dict]:
    """Answer the participant's trials one at a time, as they are released; the vote answers."""
    answers = []
    trials = participant["trials"]
    while trials:
        answers.append(vote(client, participant, trials[0], choice))
        trials = answers[-1]["trials"]
    return answers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def live_app(app) -> Iterator[str]:
    """`app` served by uvicorn in a thread on a free loopback port: its URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


IMPORT_NAME = "elsewhere"
FOUR_CONDITIONS = (MODEL_A, MODEL_B, "truth", IMPORT_NAME)


def write_import(photos: Path, folder: Path, colour: str = "green") -> Path:
    """Colorizations "made by another tool" of every photo in `photos`: same stem, PNG, same size."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in photos.rglob("*"):
        if path.is_file():
            with Image.open(path) as photo:
                tint(colour)(photo.convert("RGB")).save(folder / f"{path.stem}.png")
    return folder


def prepare_four_conditions(db_url: str, photos: Path, folder: Path, n: int = 6, **options) -> None:
    """Two models, the truth and an import on `n` photos: six pairs of conditions per photo."""
    imports = {IMPORT_NAME: write_import(photos, folder / "imported")}
    options.setdefault("protocol", SIMULATED)
    prepare_study(db_url, STUDY, FAKE_COLORIZERS, photos, folder / "media", n=n, catch=options.pop("catch", 1),
                  truth=True, imports=imports, **options)
