"""A four-condition study (two models, the truth, an import) run through the real server by simulated
participants whose choices follow known Bradley-Terry strengths; `analyze votes` must give their
order, their strengths within its intervals and the fooling rates back."""

from __future__ import annotations

import argparse
import json

import httpx
import pytest

from analysis import cli as analysis_cli
from analysis.simulate import BradleyTerryChooser
from study.app import create_app
from study.db import database_session
from study.export import stimuli
from study.models import CATCH_MODEL
from study.service import assigned_picture
from tests.study_support import (
    FOUR_CONDITIONS,
    IMPORT_NAME,
    MODEL_A,
    MODEL_B,
    TOKEN_HEADER,
    live_app,
    prepare_four_conditions,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

# Log-strengths with mean 0: the truth best, the import worst.
STRENGTHS = {"truth": 1.2, MODEL_A: 0.4, MODEL_B: -0.4, IMPORT_NAME: -1.2}
PARTICIPANTS = 72
PHOTOS = 6


def condition_shown(db_url: str):
    """What the researcher knows and the participant does not: the condition behind a picture URL
    (each participant's own name for it)."""
    file_model = {row["file_name"]: row["model"] for row in stimuli(db_url)}

    def condition_of(url: str) -> str:
        with database_session(db_url) as session:
            return file_model[assigned_picture(session, url.removeprefix("/media/"), None).name]

    return condition_of


def run_participant(http: httpx.Client, external_id: str, condition_of, chooser) -> int:
    """Enrol, then answer each trial as it is released: catch trials by picking the intact side,
    the others by the chooser. Returns the number of votes cast."""
    enrolled = http.post("/api/participants", json={"external_id": external_id})
    assert enrolled.status_code == 201, enrolled.text
    state, token = enrolled.json(), enrolled.json()["participant_token"]
    votes = 0
    while state["trials"]:
        trial = state["trials"][0]
        left, right = (condition_of(trial[side]) for side in ("left", "right"))
        if CATCH_MODEL in (left, right):
            choice = "right" if left == CATCH_MODEL else "left"
        else:
            choice = "left" if chooser.choose(left, right, external_id) == left else "right"
        body = {"participant_id": state["participant_id"], "trial_id": trial["trial_id"], "choice": choice,
                # Answered at once: a claimed time the server's clock contradicts would make it invalid.
                "rt_ms": 100, "client_vote_id": f"{external_id}-{votes}"}
        answer = http.post("/api/votes", json=body, headers={TOKEN_HEADER: token})
        assert answer.status_code == 200, answer.text
        state, votes = answer.json(), votes + 1
    assert state["completion_code"]
    return votes


def test_four_conditions_through_the_server_recover_the_strengths(tmp_path, study_photos):
    db_url = f"sqlite:///{tmp_path / 'votes.db'}"
    prepare_four_conditions(db_url, study_photos, tmp_path, n=PHOTOS, catch=1, practice=1)
    condition_of = condition_shown(db_url)
    chooser = BradleyTerryChooser(STRENGTHS, participant_spread=0.3, seed=0)
    with live_app(create_app(db_url)) as url, httpx.Client(base_url=url, timeout=60) as http:
        votes = [run_participant(http, f"sim-{number:03d}", condition_of, chooser) for number in range(PARTICIPANTS)]
    assert votes == [PHOTOS + 2] * PARTICIPANTS  # the photos, the catch pair and the practice trial

    parser = argparse.ArgumentParser()
    analysis_cli.register(parser.add_subparsers())
    args = parser.parse_args(["analyze", "votes", "--db", db_url, "--out", str(tmp_path / "out")])
    assert args.func(args) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())

    assert summary["n_votes"] == PARTICIPANTS * PHOTOS  # practice and catch votes left out
    assert summary["catch"] == {
        "n_votes": PARTICIPANTS, "pass_rate": 1.0, "n_participants_failed": 0, "excluded": False}
    assert summary["conditions"] == list(STRENGTHS)  # the order of the strengths
    scores, intervals = summary["bradley_terry"]["scores"], summary["bradley_terry"]["ci95"]
    for condition, strength in STRENGTHS.items():
        assert intervals[condition][0] < strength < intervals[condition][1], (condition, scores[condition])
    fooling = summary["fooling_rate"]
    assert sorted(fooling["rates"]) == sorted(set(FOUR_CONDITIONS) - {"truth"})
    for condition, rate in fooling["rates"].items():
        expected = chooser.expected_share(condition, "truth")
        low, high = fooling["ci95"][condition]
        assert low < expected < high and abs(rate - expected) < 0.05, (condition, rate, expected)
