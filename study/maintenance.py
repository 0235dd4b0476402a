"""Keeping a running study's data safe: an online SQLite backup, and withdrawing a participant's data."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from colorizer.atomic import atomic_path
from colorizer.errors import UserError
from study.db import database_session, write_guard
from study.models import Participant, Study, Vote

# Pages copied per step of the backup: between steps the server's writers get the database back.
BACKUP_PAGES_PER_STEP = 1024


def backup_sqlite(db_url: str, out: str | Path) -> int:
    """Copy the SQLite database at `db_url` to `out` with SQLite's online backup API, while the
    server keeps taking votes (a file copy of a database in WAL mode can be torn); the copy appears
    atomically and is checked. Returns its size in bytes."""
    url = make_url(db_url)
    if url.get_backend_name() != "sqlite":
        raise UserError("study backup copies SQLite databases; for PostgreSQL use pg_dump (docs/deploy.md)")
    source_path = Path(url.database or "")
    if not source_path.is_file():
        raise UserError(f"no database at {source_path}")
    out = Path(out)
    if out.resolve() == source_path.resolve():
        raise UserError("the backup must go to another file than the database")
    try:
        with atomic_path(out) as tmp:
            source = sqlite3.connect(f"file:{source_path}?mode=ro", uri=True, timeout=10)
            target = sqlite3.connect(tmp)
            try:
                source.backup(target, pages=BACKUP_PAGES_PER_STEP)
                # WAL would leave the copy in two files; one self-contained file is what a backup is.
                target.execute("PRAGMA journal_mode=DELETE")
                if target.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
                    raise UserError(f"the backup of {source_path} failed its integrity check")
            finally:
                target.close()
                source.close()
    except sqlite3.Error as error:
        raise UserError(f"cannot back up {source_path}: {error}") from None
    except OSError as error:
        raise UserError(f"cannot write {out}: {error.strerror or error}") from None
    return out.stat().st_size


def withdraw(db_url: str, external_id: str, study: str | None = None) -> tuple[int, int]:
    """Delete every participant with `external_id` (in `study`, or in every study) and all their
    votes and trials: a participant's right to withdraw. Returns (participants, votes) deleted."""
    with database_session(db_url, must_exist=True) as session:
        query = select(Participant).where(Participant.external_id == external_id)
        if study is not None:
            study_id = session.scalar(select(Study.id).where(Study.name == study))
            if study_id is None:
                raise UserError(f"no study named {study!r} in the database")
            query = query.where(Participant.study_id == study_id)
        participants = session.scalars(query).all()
        if not participants:
            where = f" in study {study!r}" if study else ""
            raise UserError(f"no participant with external id {external_id!r}{where}")
        ids = [participant.id for participant in participants]
        votes = session.scalar(select(func.count()).select_from(Vote).where(Vote.participant_id.in_(ids)))
        with write_guard(session):
            for participant in participants:
                session.delete(participant)
            session.commit()
        return len(participants), votes
