"""Fuzzing the JSON API: whatever arrives, the answer is a documented 2xx/4xx, never a 5xx."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from study.app import create_app
from study.export import vote_rows
from tests.study_support import ADMIN_TOKEN

pytestmark = pytest.mark.timeout(120)

FUZZ_SETTINGS = settings(
    max_examples=100, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=True
)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_schema_driven_fuzz(prepared, mode):
    """Requests generated from the app's own OpenAPI schema, valid ones and deliberately invalid ones."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(prepared.db_url, admin_token=ADMIN_TOKEN))

    @FUZZ_SETTINGS
    @given(schema.as_strategy(generation_mode=mode))
    def check(case):
        # Every default check: no 5xx, and status codes, content types and bodies as documented.
        case.call_and_validate()

    check()


def test_fuzzed_votes_with_real_ids(client, prepared):
    """Random mixes of real and fake ids, tokens, choices, keys and times: only 200, 401, 403, 404,
    409 or 422 come back, and no trial ever holds more than one vote."""
    participants = [client.post("/api/participants", json={}).json() for _ in range(2)]
    participant_ids = [p["participant_id"] for p in participants]
    tokens = [p["participant_token"] for p in participants]
    trial_ids = [t["trial_id"] for p in participants for t in p["trials"]]
    text = st.text(max_size=30)
    vote = st.fixed_dictionaries(
        {
            "participant_id": st.sampled_from(participant_ids) | text,
            "trial_id": st.sampled_from(trial_ids) | text,
            "choice": st.sampled_from(["left", "right"]) | text,
            "rt_ms": st.integers(-10, 10**7) | st.floats(allow_nan=False, allow_infinity=False) | text,
            "client_vote_id": st.sampled_from(["k1", "k2", "k3"]) | text,
        }
    )
    bodies = vote | st.dictionaries(text, st.none() | text | st.integers()) | st.lists(st.integers())
    headers = st.fixed_dictionaries({"X-Participant-Token": st.sampled_from(tokens)}) | st.just({})

    @FUZZ_SETTINGS
    @given(bodies, headers)
    def send(body, header):
        response = client.post("/api/votes", json=body, headers=header)
        assert response.status_code in (200, 401, 403, 404, 409, 422), response.text
        assert "error" in response.json() or response.json()["stored"] is True

    send()
    answered = [(row["participant_id"], row["trial_id"]) for row in vote_rows(prepared.db_url)]
    assert len(answered) == len(set(answered))
