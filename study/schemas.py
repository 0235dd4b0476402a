"""The JSON shapes of the participant API: what the page sends and what it gets back."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, Field, StrictBool, StringConstraints

# Ids are printable ASCII without spaces: that also keeps NUL bytes away from PostgreSQL.
Token = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[!-~]+$")]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[ -~]+$")]


def json_integer(value: object) -> int:
    """A JSON integer: 5, or 5.0 (JSON Schema counts it as an integer too); never true, "5" or 5.5."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a JSON integer")
    if isinstance(value, float) and not value.is_integer():
        raise ValueError("must be a whole number")
    return int(value)


Milliseconds = Annotated[int, Field(ge=0, le=3_600_000), BeforeValidator(json_integer)]

PARTICIPANT_TOKEN_HEADER = "X-Participant-Token"


Pixels = Annotated[int, Field(ge=0, le=100_000), BeforeValidator(json_integer)]


class ParticipantRequest(BaseModel):
    external_id: Name | None = Field(default=None, description="Prolific's PROLIFIC_PID, or the site's participant id.")
    study: Name | None = None
    prolific_study_id: Name | None = Field(default=None, description="Prolific's STUDY_ID from the study link.")
    prolific_session_id: Name | None = Field(default=None, description="Prolific's SESSION_ID from the study link.")
    viewport_width: Pixels | None = Field(default=None, description="The page's viewport in CSS pixels.")
    viewport_height: Pixels | None = None
    client_enrolment_id: Token | None = Field(
        default=None,
        description="A random key the page keeps: resending the enrolment with it after a lost answer "
        "returns the same participant (with a new token) instead of 409.",
    )


class TrialOut(BaseModel):
    trial_id: str
    left: str
    right: str
    practice: bool = Field(default=False, description="A practice trial (not analysed).")


class ParticipantOut(BaseModel):
    participant_id: str
    trials: list[TrialOut] = Field(
        description="The trial to answer now, then the next one (to preload); empty once every trial is answered."
    )
    answered: int = Field(description="How many of the participant's trials already have a vote.")
    total: int
    practice: int = Field(default=0, description="How many of the trials (the first ones) are practice trials.")
    completion_code: str | None = Field(
        description="Set once every trial is answered (unless withheld: see completion_withheld)."
    )
    completion_url: str | None = Field(
        default=None, description="Once every trial is answered: where the study sends the participant (with the code)."
    )
    completion_withheld: bool = Field(
        default=False,
        description="Every trial is answered, but most answers came faster than anyone compares two photos: no code.",
    )


class EnrolmentOut(ParticipantOut):
    participant_token: str = Field(
        description=f"Secret; every later request about this participant sends it as {PARTICIPANT_TOKEN_HEADER}."
    )


class VoteRequest(BaseModel):
    participant_id: Token
    trial_id: Token
    choice: Literal["left", "right"]
    rt_ms: Milliseconds
    client_vote_id: Token
    exposure_ms: Milliseconds | None = Field(
        default=None,
        description="Measured on the page: from the frame that showed the pictures to the one that removed them.",
    )
    lost_focus: StrictBool | None = Field(default=None, description="Whether the page lost focus during the trial.")


class VoteOut(ParticipantOut):
    stored: bool


class ErrorOut(BaseModel):
    error: str
    reason: str | None = Field(
        default=None, description="A machine-readable cause where the page acts on it: study_full, wrong_study."
    )
