"""The study's database schema (SQLAlchemy 2.0 typed ORM).

A Study owns Images (sampled photos); each Image has one Stimulus per model (plus a degraded one for
catch images); a Trial pairs two stimuli of one image. A Participant gets every trial of the study
once, as an Assignment that fixes its position and which stimulus is shown on the left. A Vote
answers one assignment: the composite foreign key makes "vote for a trial that was not assigned"
impossible and the unique (participant, trial) constraint makes a second vote impossible.
"""

from __future__ import annotations

import datetime as dt
import secrets

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# The model name recorded for the degraded side of a catch trial.
CATCH_MODEL = "catch-degraded"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def public_id() -> str:
    """Unguessable id for rows whose id is shown to participants (it must not encode order or model)."""
    return secrets.token_urlsafe(12)


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

    images: Mapped[list[Image]] = relationship(back_populates="study", cascade="all, delete-orphan")
    trials: Mapped[list[Trial]] = relationship(back_populates="study", cascade="all, delete-orphan")


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

    study: Mapped[Study] = relationship(back_populates="trials")
    image: Mapped[Image] = relationship()
    stimulus_a: Mapped[Stimulus] = relationship(foreign_keys=[stimulus_a_id])
    stimulus_b: Mapped[Stimulus] = relationship(foreign_keys=[stimulus_b_id])


class Participant(Base):
    __tablename__ = "participant"
    __table_args__ = (UniqueConstraint("study_id", "external_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=public_id)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"), index=True)
    # Prolific PID or similar; NULL for anonymous participants (NULLs never collide in the unique key).
    external_id: Mapped[str | None] = mapped_column(String(200))
    completion_code: Mapped[str] = mapped_column(String(16), default=lambda: secrets.token_hex(4).upper())
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    study: Mapped[Study] = relationship()
    assignments: Mapped[list[Assignment]] = relationship(
        back_populates="participant", order_by="Assignment.position", cascade="all, delete-orphan"
    )


class Assignment(Base):
    """One trial as one participant sees it: its place in their order and its left/right layout."""

    __tablename__ = "assignment"
    __table_args__ = (UniqueConstraint("participant_id", "position"),)

    participant_id: Mapped[str] = mapped_column(
        ForeignKey("participant.id", ondelete="CASCADE"), primary_key=True
    )
    trial_id: Mapped[str] = mapped_column(ForeignKey("trial.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    left_stimulus_id: Mapped[int] = mapped_column(ForeignKey("stimulus.id", ondelete="CASCADE"))
    right_stimulus_id: Mapped[int] = mapped_column(ForeignKey("stimulus.id", ondelete="CASCADE"))

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
