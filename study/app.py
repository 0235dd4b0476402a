"""The participant-facing web app: the page, its stimuli, the JSON API and the admin CSV download."""

from __future__ import annotations

import contextlib
import json
import random
import re
import secrets
from pathlib import Path
from typing import Annotated, AsyncIterator, Callable, Literal, Sequence, TypeVar

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field, StringConstraints
from sqlalchemy import and_, func, insert, or_, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, aliased
from starlette.exceptions import HTTPException as StarletteHTTPException

from colorizer.errors import UserError
from study.db import open_database, write_guard
from study.export import find_study, session_vote_rows, votes_csv
from study.models import Assignment, Image, Participant, Stimulus, Study, Trial, Vote, public_id

T = TypeVar("T")

PACKAGE_DIR = Path(__file__).parent
DEFAULT_EXPOSURE_MS = 5000
STIMULUS_NAME = re.compile(r"[0-9a-f]{32}\.jpg")

# Ids are printable ASCII without spaces: that also keeps NUL bytes away from PostgreSQL.
Token = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[!-~]+$")]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[ -~]+$")]


class ParticipantRequest(BaseModel):
    external_id: Name | None = None
    study: Name | None = None


class TrialOut(BaseModel):
    trial_id: str
    left: str
    right: str


class ParticipantOut(BaseModel):
    participant_id: str
    trials: list[TrialOut] = Field(description="The trials still to answer, in this participant's order.")
    answered: int = Field(description="How many of the participant's trials already have a vote.")
    total: int
    completion_code: str | None = Field(description="Set once every trial is answered.")


class VoteRequest(BaseModel):
    participant_id: Token
    trial_id: Token
    choice: Literal["left", "right"]
    rt_ms: int = Field(ge=0, le=3_600_000)
    client_vote_id: Token


class VoteOut(BaseModel):
    stored: bool
    answered: int
    total: int
    completion_code: str | None


class ErrorOut(BaseModel):
    error: str


def error_responses(*codes: int) -> dict:
    return {code: {"model": ErrorOut} for code in codes}


BearerToken = Annotated[HTTPAuthorizationCredentials | None, Depends(HTTPBearer(auto_error=False))]


def participant_state(session: Session, participant: Participant) -> ParticipantOut:
    left, right = aliased(Stimulus), aliased(Stimulus)
    rows = session.execute(
        select(Assignment.trial_id, left.file_name, right.file_name, Vote.id)
        .join(left, left.id == Assignment.left_stimulus_id)
        .join(right, right.id == Assignment.right_stimulus_id)
        .outerjoin(Vote, and_(Vote.participant_id == Assignment.participant_id, Vote.trial_id == Assignment.trial_id))
        .where(Assignment.participant_id == participant.id)
        .order_by(Assignment.position)
    ).all()
    pending = [
        TrialOut(trial_id=trial_id, left=f"/media/{left_name}", right=f"/media/{right_name}")
        for trial_id, left_name, right_name, vote_id in rows
        if vote_id is None
    ]
    return ParticipantOut(
        participant_id=participant.id,
        trials=pending,
        answered=len(rows) - len(pending),
        total=len(rows),
        completion_code=None if pending else participant.completion_code,
    )


def balanced_flips(count: int, rng: random.Random) -> list[bool]:
    """`count` coin flips with as many heads as tails (one extra random flip when odd)."""
    flips = [True, False] * (count // 2) + [rng.random() < 0.5] * (count % 2)
    rng.shuffle(flips)
    return flips


def assign_trials(participant: Participant, trials: list[Trial]) -> None:
    """Give the participant every trial in a random order, with sides swapped in exactly half of the
    model trials (and half of the catch trials), so neither model nor the degraded side owns a side."""
    rng = random.Random(participant.id)
    layout = []
    for group in ([t for t in trials if not t.is_catch], [t for t in trials if t.is_catch]):
        for trial, swap in zip(group, balanced_flips(len(group), rng)):
            sides = (trial.stimulus_b_id, trial.stimulus_a_id) if swap else (trial.stimulus_a_id, trial.stimulus_b_id)
            layout.append((trial.id, sides))
    rng.shuffle(layout)
    participant.assignments = [
        Assignment(trial_id=trial_id, position=position, left_stimulus_id=left, right_stimulus_id=right)
        for position, (trial_id, (left, right)) in enumerate(layout)
    ]


def find_or_create_participant(session: Session, request: ParticipantRequest) -> tuple[Participant, bool]:
    study = find_study(session, request.study)
    if study is None:
        raise HTTPException(404, "no such study" if request.study else "no study has been prepared yet")

    def existing() -> Participant | None:
        if request.external_id is None:
            return None
        return session.scalars(
            select(Participant).where(Participant.study_id == study.id, Participant.external_id == request.external_id)
        ).first()

    if (participant := existing()) is not None:
        return participant, False
    participant = Participant(id=public_id(), study_id=study.id, external_id=request.external_id)
    trials = session.scalars(select(Trial).where(Trial.study_id == study.id).order_by(Trial.id)).all()
    assign_trials(participant, list(trials))
    try:
        with write_guard(session):
            session.add(participant)
            session.commit()
        return participant, True
    except IntegrityError:
        # The same external id enrolled concurrently (a double click, two tabs): join that one.
        session.rollback()
        if (participant := existing()) is None:
            raise
        return participant, False


def enrol(session: Session, request: ParticipantRequest) -> tuple[ParticipantOut, bool]:
    """The participant for (study, external_id), created with a fresh trial order if new."""
    participant, created = find_or_create_participant(session, request)
    return participant_state(session, participant), created


def resume(session: Session, participant_id: str) -> ParticipantOut:
    participant = session.get(Participant, participant_id)
    if participant is None:
        raise HTTPException(404, "unknown participant")
    return participant_state(session, participant)


def stimulus_path(session: Session, file_name: str, media_dir: str | Path | None) -> Path:
    """The file behind a stimulus URL; only names of recorded stimuli are served."""
    recorded_dir = None
    if STIMULUS_NAME.fullmatch(file_name):
        recorded_dir = session.scalar(
            select(Study.media_dir)
            .join(Image, Image.study_id == Study.id)
            .join(Stimulus, Stimulus.image_id == Image.id)
            .where(Stimulus.file_name == file_name)
        )
    if recorded_dir is None or not (path := Path(media_dir or recorded_dir) / file_name).is_file():
        raise HTTPException(404, "no such stimulus")
    return path


def check_replay(vote: VoteRequest, existing: Sequence[Vote]) -> None:
    """Accept a resent vote (same client_vote_id, same content); anything else is a conflict."""
    stored = [(v.client_vote_id, v.participant_id, v.trial_id, v.choice) for v in existing]
    if stored != [(vote.client_vote_id, vote.participant_id, vote.trial_id, vote.choice)]:
        raise HTTPException(409, "this trial already has a different vote, or client_vote_id was used for another vote")


def votes_in_the_way(session: Session, vote: VoteRequest) -> Sequence[Vote]:
    """Stored votes that collide with `vote`: one for the same trial, or one with the same key."""
    same_trial = and_(Vote.participant_id == vote.participant_id, Vote.trial_id == vote.trial_id)
    return session.scalars(select(Vote).where(or_(same_trial, Vote.client_vote_id == vote.client_vote_id))).all()


def record_vote(session: Session, vote: VoteRequest) -> VoteOut:
    """Store the vote, or accept an identical resend. The insert comes first because resends are rare:
    the unique constraints, not a prior read, decide between two racing copies."""
    completion_code = session.scalar(
        select(Participant.completion_code)
        .join(Assignment, Assignment.participant_id == Participant.id)
        .where(Assignment.participant_id == vote.participant_id, Assignment.trial_id == vote.trial_id)
    )
    if completion_code is None:
        raise HTTPException(404, "unknown participant, or a trial not assigned to this participant")
    try:
        with write_guard(session):
            session.execute(insert(Vote).values(**vote.model_dump()))
            session.commit()
    except IntegrityError:
        session.rollback()
        check_replay(vote, votes_in_the_way(session, vote))
    answered, total = session.execute(
        select(
            select(func.count()).where(Vote.participant_id == vote.participant_id).scalar_subquery(),
            select(func.count()).where(Assignment.participant_id == vote.participant_id).scalar_subquery(),
        )
    ).one()
    return VoteOut(
        stored=True, answered=answered, total=total, completion_code=completion_code if answered == total else None
    )


def create_app(
    db_url: str,
    media_dir: str | Path | None = None,
    admin_token: str | None = None,
    exposure_ms: int = DEFAULT_EXPOSURE_MS,
) -> FastAPI:
    """The app for the studies in `db_url`. Stimuli are read from `media_dir` if given, else from each
    study's recorded media dir. Without `admin_token` the CSV download is refused to everyone."""
    sessions = open_database(db_url)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        sessions.kw["bind"].dispose()

    # No /docs or /redoc: their pages load scripts from a CDN, and the study serves nothing third-party.
    app = FastAPI(title="Colorization preference study", version="1", lifespan=lifespan, docs_url=None, redoc_url=None)
    page = (PACKAGE_DIR / "templates" / "index.html").read_text()
    page = page.replace("{{CONFIG}}", json.dumps({"exposureMs": exposure_ms}))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, error: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(error.detail)}, status_code=error.status_code, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {}
        if first.get("type") == "json_invalid":
            return JSONResponse({"error": "the request body is not valid JSON"}, status_code=422)
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
        message = first.get("msg", "invalid request")
        return JSONResponse({"error": f"{where}: {message}" if where else message}, status_code=422)

    @app.exception_handler(OperationalError)
    async def database_busy(_request: Request, _error: OperationalError) -> JSONResponse:
        # Nothing was stored; the page retries with the same client_vote_id.
        return JSONResponse({"error": "database busy, please retry"}, status_code=503, headers={"Retry-After": "1"})

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def participant_page() -> HTMLResponse:
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    app.mount("/static", StaticFiles(directory=PACKAGE_DIR / "static"), name="static")

    async def in_session(operation: Callable[..., T], *args) -> T:
        """Run a blocking database operation in a worker thread (one hop per request), in its own session."""

        def run() -> T:
            with sessions() as session:
                return operation(session, *args)

        return await run_in_threadpool(run)

    @app.get("/media/{file_name}", include_in_schema=False)
    async def stimulus_file(file_name: str) -> FileResponse:
        path = await in_session(stimulus_path, file_name, media_dir)
        # Names are random and never reused, so the browser may keep the file for good.
        return FileResponse(
            path, media_type="image/jpeg", headers={"Cache-Control": "public, max-age=31536000, immutable"}
        )

    @app.post(
        "/api/participants",
        response_model=ParticipantOut,
        status_code=201,
        responses={200: {"model": ParticipantOut, "description": "Resumed"}, **error_responses(400, 404, 422)},
    )
    async def create_participant(request: ParticipantRequest, response: Response) -> ParticipantOut:
        """Enrol a participant, or resume the one already enrolled with this external_id (200)."""
        state, created = await in_session(enrol, request)
        response.status_code = 201 if created else 200
        return state

    @app.get("/api/participants/{participant_id}", response_model=ParticipantOut, responses=error_responses(404))
    async def get_participant(participant_id: Token) -> ParticipantOut:
        """Resume a participant by id (the page keeps it in localStorage)."""
        return await in_session(resume, participant_id)

    @app.post("/api/votes", response_model=VoteOut, responses=error_responses(400, 404, 409, 422))
    async def post_vote(vote: VoteRequest) -> VoteOut:
        """Store a vote; it is committed before the response. Resending the same vote is harmless."""
        return await in_session(record_vote, vote)

    @app.get(
        "/admin/export.csv",
        response_class=Response,
        responses={200: {"content": {"text/csv": {}}}, **error_responses(401, 404)},
    )
    async def export_votes(credentials: BearerToken, study: Name | None = None) -> Response:
        """Every vote as CSV (one study with ?study=NAME). Needs `Authorization: Bearer <admin token>`."""
        given = credentials.credentials if credentials else ""
        if not admin_token or not secrets.compare_digest(given.encode(), admin_token.encode()):
            raise HTTPException(401, "admin token required", headers={"WWW-Authenticate": "Bearer"})
        try:
            rows = await in_session(session_vote_rows, study)
        except UserError as error:
            raise HTTPException(404, str(error)) from None
        return Response(
            votes_csv(rows),
            media_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="votes.csv"'},
        )

    return app
