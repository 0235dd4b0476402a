"""Votes and stimuli as plain rows, for the analysis code, the CSV export and the admin download."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from colorizer.atomic import atomic_path
from colorizer.errors import UserError
from study.db import database_session
from study.models import CATCH_MODEL, Assignment, Image, Participant, Stimulus, Study, Trial, Vote, as_utc
from study.protocol import vote_timing
from study.service import find_study

VOTE_COLUMNS = [
    "participant_id",
    "external_id",
    "trial_id",
    "image_id",
    "left_model",
    "right_model",
    "chosen_model",
    "choice",
    "rt_ms",
    "is_catch",
    "catch_passed",
    "study",
    "created_at",
    "server_ms",
    "too_fast",
    "exposure_ms",
    "lost_focus",
    "is_practice",
    "time_mismatch",
    "invalid",
    "participant_trial_id",
]
STIMULUS_COLUMNS = ["file_name", "image_id", "model", "study"]

# OWASP's CSV-injection rule: a cell starting with one of these is a formula to a spreadsheet.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: object) -> object:
    """`value`, with a leading apostrophe if it is text a spreadsheet would run as a formula."""
    return f"'{value}" if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value


def studies_to_export(session: Session, name: str | None) -> list[int]:
    """Ids of the studies an export covers: the named one, or all of them."""
    if name is None:
        return list(session.scalars(select(Study.id)))
    study = find_study(session, name)
    if study is None:
        raise UserError(f"no study named {name!r} in the database")
    return [study.id]


def session_vote_rows(session: Session, study: str | None = None) -> list[dict]:
    left, right = aliased(Stimulus), aliased(Stimulus)
    query = (
        select(Vote, Participant.external_id, Trial, left.model, right.model, Study.name, Study.min_response_ms,
           Assignment.public_id)
        .join(Assignment, (Assignment.participant_id == Vote.participant_id) & (Assignment.trial_id == Vote.trial_id))
        .join(Participant, Participant.id == Vote.participant_id)
        .join(Trial, Trial.id == Vote.trial_id)
        .join(Study, Study.id == Trial.study_id)
        .join(left, left.id == Assignment.left_stimulus_id)
        .join(right, right.id == Assignment.right_stimulus_id)
        .where(Study.id.in_(studies_to_export(session, study)))
        .order_by(Vote.id)
    )
    rows = []
    for vote, external_id, trial, left_model, right_model, study_name, min_response_ms, shown_id in session.execute(query):
        chosen_model = left_model if vote.choice == "left" else right_model
        timing = vote_timing(vote.rt_ms, vote.server_ms, min_response_ms)
        rows.append(
            {
                "participant_id": vote.participant_id,
                "external_id": external_id,
                "trial_id": vote.trial_id,
                "image_id": trial.image_id,
                "left_model": left_model,
                "right_model": right_model,
                "chosen_model": chosen_model,
                "choice": vote.choice,
                "rt_ms": vote.rt_ms,
                "is_catch": trial.is_catch,
                "catch_passed": (chosen_model != CATCH_MODEL) if trial.is_catch else None,
                "study": study_name,
                "created_at": as_utc(vote.created_at).isoformat(),
                "server_ms": vote.server_ms,
                "too_fast": timing.too_fast,
                "exposure_ms": vote.exposure_ms,
                "lost_focus": vote.lost_focus,
                "is_practice": bool(trial.is_practice),
                "time_mismatch": timing.time_mismatch,
                "invalid": timing.invalid,
                # The trial id this participant was sent (each participant's are their own).
                "participant_trial_id": shown_id or vote.trial_id,
            }
        )
    return rows


def vote_rows(db_url: str, study: str | None = None) -> list[dict]:
    """One dict per vote (keys: VOTE_COLUMNS), oldest first; all studies unless `study` is named."""
    with database_session(db_url, must_exist=True) as session:
        return session_vote_rows(session, study)


def session_stimuli(session: Session, study: str | None = None) -> list[dict]:
    """One dict per stimulus file: file_name, image_id, model (the condition: a model, 'truth', an
    import's name, or 'catch-degraded' for a degraded side), study, the file's absolute path under
    the study's media dir, and the source photo it was made from."""
    query = (
        select(Stimulus.file_name, Stimulus.image_id, Stimulus.model, Study.name, Study.media_dir, Image.source)
        .join(Image, Image.id == Stimulus.image_id)
        .join(Study, Study.id == Image.study_id)
        .where(Study.id.in_(studies_to_export(session, study)))
        .order_by(Stimulus.id)
    )
    return [
        {"file_name": file_name, "image_id": image_id, "model": model, "study": study_name,
         "path": str(Path(media_dir) / file_name), "source": source}
        for file_name, image_id, model, study_name, media_dir, source in session.execute(query)
    ]


def stimuli(db_url: str, study: str | None = None) -> list[dict]:
    """`session_stimuli` of the database at `db_url`."""
    with database_session(db_url, must_exist=True) as session:
        return session_stimuli(session, study)


def rows_csv(rows: list[dict], columns: list[str]) -> str:
    """The rows' `columns` as CSV text, every cell safe to open in a spreadsheet."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows({column: spreadsheet_safe(row.get(column)) for column in columns} for row in rows)
    return buffer.getvalue()


def votes_csv(rows: list[dict]) -> str:
    return rows_csv(rows, VOTE_COLUMNS)


def stimuli_csv(rows: list[dict]) -> str:
    return rows_csv(rows, STIMULUS_COLUMNS)


def write_csv_file(out: str | Path, text: str) -> None:
    """Write `text` to `out` atomically, or raise a one-line UserError."""
    try:
        with atomic_path(out) as tmp:
            tmp.write_text(text, newline="")
    except OSError as error:
        raise UserError(f"cannot write {out}: {error.strerror or error}") from None


def export_csv(db_url: str, out: str | Path, study: str | None = None) -> int:
    """Write the votes to `out` atomically; return how many were written."""
    rows = vote_rows(db_url, study)
    write_csv_file(out, votes_csv(rows))
    return len(rows)


def export_stimuli_csv(db_url: str, out: str | Path, study: str | None = None) -> int:
    """Write one row per stimulus file (STIMULUS_COLUMNS) to `out` atomically; return how many."""
    rows = stimuli(db_url, study)
    write_csv_file(out, stimuli_csv(rows))
    return len(rows)
