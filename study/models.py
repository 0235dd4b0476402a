"""The study's database schema (SQLAlchemy 2.0 typed ORM).

A Study compares conditions: models colorizing here, `truth` (the original colour photo) and imports
(colorizations made elsewhere). It owns Images (sampled photos); each Image has one Stimulus per
condition (plus a degraded one for catch images); a Trial pairs two stimuli of one image, one Trial
per pair of conditions. A Participant gets one trial per image (which pair is balanced across
participants), as an Assignment that fixes its position and which stimulus is shown on the left. A Vote
answers one assignment: the composite foreign key makes "vote for a trial that was not assigned"
impossible and the unique (participant, trial) constraint makes a second vote impossible.

Columns added after the first release are nullable (NULL: not recorded), and `study.db` adds them to
an existing database when it opens it.
"""

from __future__ import annotations

import datetime as dt
import secrets

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# The model name recorded for the degraded side of a catch trial.
CATCH_MODEL = "catch-degraded"
# The condition name of the original colour photo.
TRUTH = "truth"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def as_utc(moment: dt.datetime) -> dt.datetime:
    """`moment` as an aware UTC time: SQLite hands timestamps back without a zone; they were written in UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)


def public_id() -> str:
    """Unguessable id for rows whose id is shown to participants (it must not encode order or model).
    Hex, so that no id starts with a character that a spreadsheet would read as a formula."""
    return secrets.token_hex(12)


class Base(DeclarativeBase):
    pass


class Study(Base):
    __tablename__ = "study"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    model_a: Mapped[str] = mapped_column(String(200))
    model_b: Mapped[str] = mapped_column(String(200))
    # Absolute path of the stimulus folder, so export and serve find files without being told.
    media_dir: Mapped[str] = mapped_column(String(4096))
    seed: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Every compared condition in order (models, then truth, then imports); NULL in studies from
    # before conditions, which compared model_a and model_b (still the first two conditions).
    conditions: Mapped[list[str] | None] = mapped_column(JSON)
    # The protocol (NULL: the defaults of study.protocol, as studies before it had).
    exposure_ms: Mapped[int | None] = mapped_column(Integer)
    question: Mapped[str | None] = mapped_column(String(500))
    consent_markdown: Mapped[str | None] = mapped_column(Text)
    completion_url: Mapped[str | None] = mapped_column(String(2000))
    max_participants: Mapped[int | None] = mapped_column(Integer)
    # Added in issue 28 (NULL in older studies: their rules, see study.protocol):
    # votes faster than this (by either clock) are invalid; a participant with more than this share of
    # invalid votes gets no completion code; catch trials per participant, drawn from the photo pool;
    # the recruiting platform's study id, and how many places enrolments without it may take;
    # a break after every this many counted trials.
    min_response_ms: Mapped[int | None] = mapped_column(Integer)
    max_invalid_share: Mapped[float | None] = mapped_column(Float)
    catch_trials: Mapped[int | None] = mapped_column(Integer)
    prolific_study_id: Mapped[str | None] = mapped_column(String(200))
    anonymous_places: Mapped[int | None] = mapped_column(Integer)
    break_every: Mapped[int | None] = mapped_column(Integer)

    images: Mapped[list[Image]] = relationship(back_populates="study", cascade="all, delete-orphan")
    trials: Mapped[list[Trial]] = relationship(back_populates="study", cascade="all, delete-orphan")

    @property
    def condition_names(self) -> list[str]:
        return list(self.conditions or (self.model_a, self.model_b))


class Image(Base):
    __tablename__ = "image"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"), index=True)
    source: Mapped[str] = mapped_column(String(4096))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)

    study: Mapped[Study] = relationship(back_populates="images")
    stimuli: Mapped[list[Stimulus]] = relationship(back_populates="image", cascade="all, delete-orphan")


class Stimulus(Base):
    __tablename__ = "stimulus"

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("image.id", ondelete="CASCADE"), index=True)
    model: Mapped[str] = mapped_column(String(200))
    # Random name under the study's media dir; it is also the URL path, so it must say nothing.
    file_name: Mapped[str] = mapped_column(String(100), unique=True)

    image: Mapped[Image] = relationship(back_populates="stimuli")


class Trial(Base):
    __tablename__ = "trial"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=public_id)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"), index=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("image.id", ondelete="CASCADE"))
    stimulus_a_id: Mapped[int] = mapped_column(ForeignKey("stimulus.id", ondelete="CASCADE"))
    # For a catch trial stimulus_b is the degraded one.
    stimulus_b_id: Mapped[int] = mapped_column(ForeignKey("stimulus.id", ondelete="CASCADE"))
    is_catch: Mapped[bool] = mapped_column(default=False)
    # Practice trials come first, are flagged in the export and left out of the analysis.
    is_practice: Mapped[bool | None] = mapped_column(Boolean)

    study: Mapped[Study] = relationship(back_populates="trials")
    image: Mapped[Image] = relationship()
    stimulus_a: Mapped[Stimulus] = relationship(foreign_keys=[stimulus_a_id])
    stimulus_b: Mapped[Stimulus] = relationship(foreign_keys=[stimulus_b_id])


class Participant(Base):
    __tablename__ = "participant"
    __table_args__ = (
        UniqueConstraint("study_id", "external_id"),
        Index("ix_participant_enrolment_key", "study_id", "enrolment_key_hash"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=public_id)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"), index=True)
    # Prolific PID or similar; NULL for anonymous participants (NULLs never collide in the unique key).
    external_id: Mapped[str | None] = mapped_column(String(200))
    completion_code: Mapped[str] = mapped_column(String(16), default=lambda: secrets.token_hex(4).upper())
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # SHA-256 of the participant's secret token (the token itself is never stored): requests that
    # read or change the participant must carry the token. NULL for participants from before tokens.
    token_hash: Mapped[str | None] = mapped_column(String(64))
    # SHA-256 of the page's enrolment key, so that an enrolment resent after a lost answer gets the
    # participant (with a new token) instead of "already enrolled".
    enrolment_key_hash: Mapped[str | None] = mapped_column(String(64))
    # Prolific's STUDY_ID and SESSION_ID from the study link, the browser's user agent and the
    # page's viewport at enrolment (CSS pixels), for the participants export.
    prolific_study_id: Mapped[str | None] = mapped_column(String(200))
    prolific_session_id: Mapped[str | None] = mapped_column(String(200))
    user_agent: Mapped[str | None] = mapped_column(String(500))
    viewport_width: Mapped[int | None] = mapped_column(Integer)
    viewport_height: Mapped[int | None] = mapped_column(Integer)
    # Whether the participant came with the recruiting platform's ids for this study (they may take
    # the places reserved for recruited participants), when they last enrolled or voted (a place is
    # released when this is too long ago), and when they answered their last trial.
    recruited: Mapped[bool | None] = mapped_column(Boolean)
    last_active_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))

    study: Mapped[Study] = relationship()
    assignments: Mapped[list[Assignment]] = relationship(
        back_populates="participant", order_by="Assignment.position", cascade="all, delete-orphan"
    )


class Assignment(Base):
    """One trial as one participant sees it: its place in their order and its left/right layout."""

    __tablename__ = "assignment"
    __table_args__ = (
        UniqueConstraint("participant_id", "position"),
        Index("ix_assignment_public_id", "public_id", unique=True),
        Index("ix_assignment_left_name", "left_name", unique=True),
        Index("ix_assignment_right_name", "right_name", unique=True),
    )

    participant_id: Mapped[str] = mapped_column(
        ForeignKey("participant.id", ondelete="CASCADE"), primary_key=True
    )
    trial_id: Mapped[str] = mapped_column(ForeignKey("trial.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    left_stimulus_id: Mapped[int] = mapped_column(ForeignKey("stimulus.id", ondelete="CASCADE"))
    right_stimulus_id: Mapped[int] = mapped_column(ForeignKey("stimulus.id", ondelete="CASCADE"))
    # When the server first handed this trial out as the one to answer now: the start of the
    # server's own response time, which, unlike the page's rt_ms, the participant cannot forge.
    released_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # What the participant is sent instead of the shared trial id and stimulus file names, so that
    # nothing they see recurs in another enrolment (recurring ids gave the catch trials away).
    # NULL for assignments from before: the trial id and the file names are shown.
    public_id: Mapped[str | None] = mapped_column(String(32))
    left_name: Mapped[str | None] = mapped_column(String(40))
    right_name: Mapped[str | None] = mapped_column(String(40))

    participant: Mapped[Participant] = relationship(back_populates="assignments")
    trial: Mapped[Trial] = relationship()
    left: Mapped[Stimulus] = relationship(foreign_keys=[left_stimulus_id])
    right: Mapped[Stimulus] = relationship(foreign_keys=[right_stimulus_id])


class Vote(Base):
    __tablename__ = "vote"
    __table_args__ = (
        UniqueConstraint("participant_id", "trial_id"),
        ForeignKeyConstraint(
            ["participant_id", "trial_id"],
            ["assignment.participant_id", "assignment.trial_id"],
            ondelete="CASCADE",
        ),
        CheckConstraint("choice IN ('left', 'right')", name="vote_choice"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    participant_id: Mapped[str] = mapped_column(String(32))
    trial_id: Mapped[str] = mapped_column(String(32))
    choice: Mapped[str] = mapped_column(String(5))
    rt_ms: Mapped[int] = mapped_column(Integer)
    # The page's idempotency key: a resent vote carries the same one and is stored once.
    client_vote_id: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Milliseconds from the trial's release to the vote's arrival, by the server's clock.
    server_ms: Mapped[int | None] = mapped_column(Integer)
    # As measured by the page: from the frame that showed the pictures to the frame that removed them.
    exposure_ms: Mapped[int | None] = mapped_column(Integer)
    # Whether the page lost focus (another tab or window) while the trial was on screen.
    lost_focus: Mapped[bool | None] = mapped_column(Boolean)


class RateCounter(Base):
    """Requests counted per key (an action and a client) in fixed windows; in the database, so that
    every server process sees the same counts."""

    __tablename__ = "rate_counter"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    window_start: Mapped[int] = mapped_column(Integer)
    count: Mapped[int] = mapped_column(Integer)


class RevokedAdminSession(Base):
    """A dashboard session that was logged out: its cookie is refused until it would have expired."""

    __tablename__ = "revoked_admin_session"

    nonce_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[int] = mapped_column(Integer)
