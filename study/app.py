"""The participant-facing web app: wiring of the page, its stimuli, the JSON API (rules in
`study/service.py`) and the admin CSV download."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import html
import json
import logging
import re
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, TypeVar
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, Cookie, Depends, FastAPI, Header, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import sessionmaker
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from colorizer.errors import UserError
from study import service
from study.dashboard import PARTICIPANT_COLUMNS, overview, panel_html, participant_rows
from study.db import POOL_OVERFLOW, POOL_SIZE, Database, make_engine, open_database, write_guard
from study.export import rows_csv, session_stimuli, session_vote_rows, stimuli_csv, votes_csv
from study.limits import (
    ENROLMENT_WINDOW_S,
    LOGIN_ATTEMPTS_OVERALL,
    LOGIN_ATTEMPTS_PER_CLIENT,
    LOGIN_WINDOW_S,
    client_key,
)
from study.models import RevokedAdminSession
from study.protocol import FIXATION_MS, Protocol, consent_html
from study.schemas import (
    PARTICIPANT_TOKEN_HEADER,
    EnrolmentOut,
    ErrorOut,
    Name,
    ParticipantOut,
    ParticipantRequest,
    Token,
    VoteOut,
    VoteRequest,
)

T = TypeVar("T")

PACKAGE_DIR = Path(__file__).parent
# After this long without reaching the server the page tells the participant their answers are kept.
DEFAULT_PATIENCE_MS = 30_000
# How long a link without a study name waits for the database's list of studies.
PAGE_REFRESH_WAIT_S = 0.5
STIMULUS_NAME = re.compile(r"[0-9a-f]{32}\.jpg")
MAX_BODY_BYTES = 64 * 1024
MIN_ADMIN_TOKEN_LENGTH = 16
ADMIN_COOKIE = "colorizer_admin"
ADMIN_SESSION_S = 12 * 3600
DEFAULT_DASHBOARD_REFRESH_MS = 10_000
# One thread per pooled connection, so a database operation never waits for a connection.
DATABASE_THREADS = POOL_SIZE + POOL_OVERFLOW
# Looking up a participant's picture names has threads and connections of its own, so pictures never
# wait behind votes queued for a write lock.
PICTURE_THREADS = 4
STORAGE_LOG_INTERVAL_S = 10.0
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]
STORAGE_ERRORS = (OperationalError, InterfaceError, PoolTimeoutError)

logger = logging.getLogger("study")


def check_admin_token(token: str | None) -> None:
    if token is not None and len(token) < MIN_ADMIN_TOKEN_LENGTH:
        raise UserError(f"the admin token must be at least {MIN_ADMIN_TOKEN_LENGTH} characters long")


@dataclass
class StorageErrorLog:
    """Logs storage failures with their cause, at most one line per interval (plus a count of the
    rest), so a dead disk or database is visible without flooding the log."""

    interval_s: float = STORAGE_LOG_INTERVAL_S
    last_logged: float = float("-inf")
    suppressed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def report(self, error: Exception) -> None:
        cause = getattr(error, "orig", None) or error
        reason = (str(cause).strip().splitlines() or [""])[0]
        with self.lock:
            now = time.monotonic()
            if now - self.last_logged < self.interval_s:
                self.suppressed += 1
                return
            suppressed, self.suppressed, self.last_logged = self.suppressed, 0, now
        more = f" ({suppressed} more since the last report)" if suppressed else ""
        logger.error("storage error, answering 503: %s: %s%s", type(cause).__name__, reason, more)


@dataclass
class StudyServer:
    """What the request handlers share: the database, its own worker threads, the stimulus files."""

    database: Database
    media_dir: str | Path | None
    admin_token: str | None
    # Overrides every study's exposure (tests, demonstrations); None: each study's own.
    exposure_ms: int | None
    patience_ms: int
    dashboard_refresh_ms: int = DEFAULT_DASHBOARD_REFRESH_MS
    # Database work runs on these threads, not on the pool that serves files: a database that waits
    # for a lock (held by another process, or a disk that hangs) must not hold up pages and pictures.
    database_threads: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(DATABASE_THREADS, thread_name_prefix="study-db")
    )
    stimuli: dict[str, Path] = field(default_factory=dict)
    # Each study's participant page, rendered once: pages never wait for the database.
    pages: dict[str, str] = field(default_factory=dict)
    pages_refresh: asyncio.Future | None = None
    storage_errors: StorageErrorLog = field(default_factory=StorageErrorLog)
    # Enrolments one client address may make per ENROLMENT_WINDOW_S (0: no limit).
    enrolments_per_client: int = 0
    pictures: Database | None = None
    picture_threads: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(PICTURE_THREADS, thread_name_prefix="study-pictures")
    )

    def load_pages(self, protocols: dict[str, Protocol]) -> None:
        self.pages = {
            name: self.pages.get(name) or self.render_page(name, protocol) for name, protocol in protocols.items()
        }

    def render_page(self, name: str, protocol: Protocol) -> str:
        config = {
            "study": name,
            "exposureMs": self.exposure_ms or protocol.exposure_ms,
            "patienceMs": self.patience_ms,
            "fixationMs": FIXATION_MS,
            "breakEvery": protocol.break_every,
        }
        return page_html(
            "index.html",
            CONFIG=json.dumps(config).replace("<", "\\u003c"),
            CONSENT=consent_html(protocol.consent_markdown),
            QUESTION=html.escape(protocol.question),
        )

    async def refresh_pages(self, wait_s: float | None = None) -> None:
        """Load the pages of studies prepared since; with `wait_s`, give up waiting after that long
        (the refresh goes on, and one refresh at a time serves every request that asks meanwhile)."""
        if self.pages_refresh is None or self.pages_refresh.done():
            self.pages_refresh = asyncio.ensure_future(self.run(service.study_protocols))
            self.pages_refresh.add_done_callback(lambda done: done.exception() or self.load_pages(done.result()))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.pages_refresh), wait_s)

    async def page(self, name: str | None) -> tuple[str, int]:
        """The participant page of study `name` (or of the only study), or a page saying why there is none.
        A study prepared after start-up is looked up once. A link without a name checks for new studies
        each time, but waits at most PAGE_REFRESH_WAIT_S for the database before using what it knows."""
        if name is not None and name not in self.pages:
            await self.refresh_pages()
        if name is None:
            await self.refresh_pages(PAGE_REFRESH_WAIT_S)
        if name is None and len(self.pages) == 1:
            name = next(iter(self.pages))
        if name in self.pages:
            return self.pages[name], 200
        if name is not None:
            return notice_page("No such study", "This link names a study that does not exist. Please check the link "
                               "you were given."), 404
        if not self.pages:
            return notice_page("No study yet", "No study is running here at the moment."), 404
        return notice_page("Which study?", "Several studies run here, and this link does not say which one you "
                           "were invited to. Please use the exact link you were given (it ends in ?study=...)."), 400

    async def run(self, operation: Callable[..., T], *args, database: Database | None = None,
                  threads: ThreadPoolExecutor | None = None) -> T:
        """Run a blocking database operation on a database thread (one hop per request), in its own session."""

        def in_session() -> T:
            with (database or self.database).session() as session:
                return operation(session, *args)

        return await asyncio.get_running_loop().run_in_executor(threads or self.database_threads, in_session)

    async def stimulus_path(self, file_name: str) -> Path | None:
        """The file behind a picture URL: a participant's own name for one side of one of their trials
        (looked up on the picture threads), or, for assignments from before those names, the
        stimulus's file name (known names need no database; new ones are looked up once)."""
        if not STIMULUS_NAME.fullmatch(file_name):
            return None
        if file_name in self.stimuli:
            return self.stimuli[file_name]
        path = await self.run(service.assigned_picture, file_name, self.media_dir,
                              database=self.pictures, threads=self.picture_threads)
        if path is None:
            self.stimuli = await self.run(service.stimulus_files, self.media_dir)
            path = self.stimuli.get(file_name)
        return path

    async def count_request(self, request: Request | None, action: str, limit: int, window_s: int, what: str) -> None:
        """Count a request of `action` by the client of `request`, or with None by everyone together
        (429 past `limit` per window)."""
        await self.run(service.count_request, rate_key(request, action), limit, window_s, what)

    async def count_login(self, request: Request) -> None:
        """Count a login attempt (the form's, or a wrong bearer token) per client and overall."""
        await self.count_request(request, "login", LOGIN_ATTEMPTS_PER_CLIENT, LOGIN_WINDOW_S, "login attempts")
        await self.count_request(None, "login", LOGIN_ATTEMPTS_OVERALL, LOGIN_WINDOW_S, "login attempts")

    async def logins_blocked(self, request: Request) -> bool:
        """Whether the client, or everyone, is past the login attempts of this window."""
        return (await self.run(service.over_limit, rate_key(request, "login"), LOGIN_ATTEMPTS_PER_CLIENT, LOGIN_WINDOW_S)
                or await self.run(service.over_limit, "login", LOGIN_ATTEMPTS_OVERALL, LOGIN_WINDOW_S))


def rate_key(request: Request | None, action: str) -> str:
    """The counter of `action` for the client of `request`, or with None for everyone together."""
    return action if request is None else f"{action}:{client_key(request.client.host if request.client else None)}"


class SecurityHeaders:
    """Adds SECURITY_HEADERS to every HTTP response, errors included."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers if scope["type"] == "http" else send)


class StudyApp(FastAPI):
    """FastAPI with SecurityHeaders outside its whole middleware stack: a middleware added with
    add_middleware runs inside the one that answers 500 and the one that answers 413, whose
    responses would go out without the headers."""

    def build_middleware_stack(self) -> ASGIApp:
        return SecurityHeaders(super().build_middleware_stack())


def study_server(request: Request) -> StudyServer:
    return request.app.state.study


Server = Annotated[StudyServer, Depends(study_server)]
ParticipantToken = Annotated[Token | None, Header(alias=PARTICIPANT_TOKEN_HEADER)]
BearerToken = Annotated[HTTPAuthorizationCredentials | None, Depends(HTTPBearer(auto_error=False))]


def error_responses(*codes: int) -> dict:
    return {code: {"model": ErrorOut} for code in codes}


router = APIRouter()


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def participant_page(server: Server, study: str | None = None) -> HTMLResponse:
    page, status = await server.page(study)
    return HTMLResponse(page, status_code=status, headers={"Cache-Control": "no-store"})


@router.get("/media/{file_name}", include_in_schema=False)
async def stimulus_file(file_name: str, server: Server) -> Response:
    path = await server.stimulus_path(file_name)
    try:
        content = await run_in_threadpool(path.read_bytes) if path else None
    except OSError:
        content = None
    if content is None:
        raise StarletteHTTPException(404, "no such stimulus")
    # No ETag or Last-Modified: both come from the file's time, which says which side was written
    # first. Names are random and never reused, so the browser may keep the file for good.
    return Response(content, media_type="image/jpeg", headers={"Cache-Control": "public, max-age=31536000, immutable"})


@router.post(
    "/api/participants",
    response_model=EnrolmentOut,
    status_code=201,
    responses={200: {"model": EnrolmentOut, "description": "Resumed"}, **error_responses(400, 403, 404, 409, 422, 429)},
)
async def create_participant(
    request: ParticipantRequest,
    response: Response,
    server: Server,
    http_request: Request,
    token: ParticipantToken = None,
    user_agent: Annotated[str | None, Header()] = None,
) -> EnrolmentOut:
    """Enrol a participant (201). An external_id that is already enrolled is resumed (200) only with
    its token in X-Participant-Token, or with the same client_enrolment_id (which also returns an
    anonymous participant again); otherwise 409, also (with reason study_full) when the study has
    its maximum of participants. 403 (reason wrong_study) for another study's STUDY_ID; 429 past the
    enrolments one client may make."""
    if server.enrolments_per_client:
        await server.count_request(http_request, "enrol", server.enrolments_per_client, ENROLMENT_WINDOW_S,
                                   "enrolments")
    state, created = await server.run(service.enrol, request, token, user_agent)
    response.status_code = 201 if created else 200
    return state


@router.get(
    "/api/participants/{participant_id}", response_model=ParticipantOut, responses=error_responses(401, 403, 404, 422)
)
async def get_participant(participant_id: Token, server: Server, token: ParticipantToken = None) -> ParticipantOut:
    """Resume a participant (the page keeps its id and token in localStorage)."""
    return await server.run(service.resume, participant_id, token)


@router.post("/api/votes", response_model=VoteOut, responses=error_responses(400, 401, 403, 404, 409, 422))
async def post_vote(vote: VoteRequest, server: Server, token: ParticipantToken = None) -> VoteOut:
    """Store a vote on the current trial; it is committed before the response, which lists the next
    trials. Resending the same vote is harmless."""
    return await server.run(service.record_vote, vote, token)


def admin_session(token: str, expires: int, nonce: str) -> str:
    """The dashboard's session cookie: its expiry, a random nonce and a MAC of both under the admin
    token, so any server process can check it, changing the token ends every session, and logging out
    (which records the nonce as revoked) ends this one."""
    mac = hmac.new(token.encode(), f"admin-session:{expires}:{nonce}".encode(), hashlib.sha256).hexdigest()
    return f"{expires}.{nonce}.{mac}"


def session_nonce(server: StudyServer, cookie: str | None) -> tuple[str, int] | None:
    """The (nonce, expiry) of a well-formed, unexpired cookie made under this server's token."""
    token = server.admin_token
    expires, _, rest = (cookie or "").partition(".")
    nonce = rest.partition(".")[0]
    if not token or not expires.isdigit() or int(expires) < time.time() or not re.fullmatch(r"[0-9a-f]{32}", nonce):
        return None
    if not secrets.compare_digest(cookie.encode(), admin_session(token, int(expires), nonce).encode()):
        return None
    return nonce, int(expires)


def is_revoked(session, nonce: str) -> bool:
    return session.get(RevokedAdminSession, service.secret_hash(nonce)) is not None


def revoke(session, nonce: str, expires: int) -> None:
    with write_guard(session):
        session.merge(RevokedAdminSession(nonce_hash=service.secret_hash(nonce), expires_at=expires))
        session.commit()


async def is_admin(
    server: StudyServer, request: Request, credentials: HTTPAuthorizationCredentials | None, cookie: str | None
) -> bool:
    """Whether the request carries the admin token (a bearer header) or a live dashboard session.
    A bearer token is a login too: wrong ones count as login attempts, and past the limit even the
    right one is refused (429), so that guessing gets no answer at all."""
    token = server.admin_token
    if not token:
        return False
    if credentials is not None:
        if await server.logins_blocked(request):
            raise TOO_MANY_LOGINS
        if secrets.compare_digest(credentials.credentials.encode(), token.encode()):
            return True
        try:
            await server.count_login(request)
        except service.TooManyRequests:
            raise TOO_MANY_LOGINS from None
        return False
    valid = session_nonce(server, cookie)
    return valid is not None and not await server.run(is_revoked, valid[0])


AdminCookie = Annotated[str | None, Cookie(alias=ADMIN_COOKIE)]


TOO_MANY_LOGINS = StarletteHTTPException(429, "too many login attempts: please try again later",
                                          headers={"Retry-After": str(LOGIN_WINDOW_S)})


async def require_admin(request: Request, server: Server, credentials: BearerToken, cookie: AdminCookie = None) -> None:
    if not await is_admin(server, request, credentials, cookie):
        raise StarletteHTTPException(401, "admin token required", headers={"WWW-Authenticate": "Bearer"})


Admin = Depends(require_admin)


def csv_download(text: str, file_name: str) -> Response:
    return Response(text, media_type="text/csv", headers={"Content-Disposition": f'attachment; filename="{file_name}"'})


async def admin_rows(server: StudyServer, rows: Callable[..., list[dict]], study: str | None) -> list[dict]:
    try:
        return await server.run(rows, study)
    except UserError as error:
        raise StarletteHTTPException(404, str(error)) from None


ADMIN_RESPONSES = {200: {"content": {"text/csv": {}}}, **error_responses(401, 404, 429)}  # 429: past the limit of wrong tokens


@router.get("/admin/export.csv", response_class=Response, responses=ADMIN_RESPONSES, dependencies=[Admin])
async def export_votes(server: Server, study: Name | None = None) -> Response:
    """Every vote as CSV (one study with ?study=NAME). Needs `Authorization: Bearer <admin token>` or
    the dashboard's session cookie."""
    return csv_download(votes_csv(await admin_rows(server, session_vote_rows, study)), "votes.csv")


@router.get("/admin/participants.csv", response_class=Response, responses=ADMIN_RESPONSES, dependencies=[Admin])
async def export_participants(server: Server, study: Name | None = None) -> Response:
    """One row per participant: start, last vote, completed, Prolific ids, device and viewport,
    catch passed, focus losses, too-fast votes."""
    rows = await admin_rows(server, participant_rows, study)
    return csv_download(rows_csv(rows, PARTICIPANT_COLUMNS), "participants.csv")


@router.get("/admin/stimuli.csv", response_class=Response, responses=ADMIN_RESPONSES, dependencies=[Admin])
async def export_stimuli(server: Server, study: Name | None = None) -> Response:
    """One row per stimulus file: file_name, image_id, model (the condition), study."""
    return csv_download(stimuli_csv(await admin_rows(server, session_stimuli, study)), "stimuli.csv")


@router.get("/admin", response_class=HTMLResponse, include_in_schema=False)
async def dashboard(request: Request, server: Server, credentials: BearerToken, cookie: AdminCookie = None) -> HTMLResponse:
    """The dashboard, or the login form (a browser cannot send a bearer header)."""
    if not await is_admin(server, request, credentials, cookie):
        return login_page("")
    panel = panel_html(await server.run(overview))
    refresh_s = f"{server.dashboard_refresh_ms / 1000:g}"
    page = page_html("admin.html", PANEL=panel, REFRESH_MS=str(server.dashboard_refresh_ms), REFRESH_S=refresh_s)
    return HTMLResponse(page, headers={"Cache-Control": "no-store"})


@router.get("/admin/panel", response_class=HTMLResponse, include_in_schema=False, dependencies=[Admin])
async def dashboard_panel(server: Server) -> HTMLResponse:
    return HTMLResponse(panel_html(await server.run(overview)), headers={"Cache-Control": "no-store"})


def login_page(message: str, status: int = 200) -> HTMLResponse:
    page = page_html("admin_login.html", MESSAGE=html.escape(message))
    return HTMLResponse(page, status_code=status, headers={"Cache-Control": "no-store"})


def from_another_site(request: Request) -> bool:
    """Whether the browser says this form was posted from another site (a forged login or logout):
    by Sec-Fetch-Site where the browser sends it, else by the Origin header. Clients that send
    neither (curl, scripts) are no browser acting on someone's behalf."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site not in ("same-origin", "none")
    origin = request.headers.get("origin")
    return origin is not None and urlsplit(origin).netloc != request.headers.get("host")


CROSS_SITE_FORM = "This form can only be sent from this site's own dashboard page."


@router.post("/admin/login", include_in_schema=False)
async def login(request: Request, server: Server) -> Response:
    """The login form: the right token sets an HttpOnly, SameSite=Strict session cookie for /admin."""
    if from_another_site(request):
        return login_page(CROSS_SITE_FORM, 403)
    try:
        fields = parse_qs((await request.body()).decode("utf-8", "replace"), max_num_fields=5)
    except ValueError:  # more fields than the form has
        return login_page("Malformed login form.", 400)
    given = (fields.get("token") or [""])[0].strip()
    try:
        # Every attempt counts, from this client and from everyone: guessing the token takes forever.
        await server.count_login(request)
    except service.TooManyRequests as error:
        page = login_page("Too many login attempts: please wait and try again.", 429)
        page.headers["Retry-After"] = str(error.retry_after_s)
        return page
    if not server.admin_token or not secrets.compare_digest(given.encode(), server.admin_token.encode()):
        return login_page("Wrong admin token.", 401)
    response = RedirectResponse("/admin", status_code=303)
    expires = int(time.time()) + ADMIN_SESSION_S
    response.set_cookie(
        ADMIN_COOKIE, admin_session(server.admin_token, expires, secrets.token_hex(16)), max_age=ADMIN_SESSION_S,
        path="/admin",
        httponly=True, samesite="strict", secure=request.url.scheme == "https",
    )
    return response


@router.post("/admin/logout", include_in_schema=False)
async def logout(request: Request, server: Server, cookie: AdminCookie = None) -> Response:
    """Ends the session: the cookie is deleted, and refused from then on even if a copy of it is kept."""
    if from_another_site(request):
        return login_page(CROSS_SITE_FORM, 403)
    if (valid := session_nonce(server, cookie)) is not None:
        await server.run(revoke, *valid)
    response = RedirectResponse("/admin", status_code=303)
    response.delete_cookie(ADMIN_COOKIE, path="/admin", httponly=True, samesite="strict")
    return response


async def http_error(_request: Request, error: StarletteHTTPException) -> JSONResponse:
    return JSONResponse({"error": str(error.detail)}, status_code=error.status_code, headers=error.headers)


async def service_error(_request: Request, error: service.ServiceError) -> JSONResponse:
    reason = getattr(error, "reason", None)
    retry_after = getattr(error, "retry_after_s", None)
    return JSONResponse({"error": error.message, **({"reason": reason} if reason else {})}, status_code=error.status,
                        headers={"Retry-After": str(retry_after)} if retry_after else None)


async def validation_error(_request: Request, error: RequestValidationError) -> JSONResponse:
    first = error.errors()[0] if error.errors() else {}
    if first.get("type") == "json_invalid":
        return JSONResponse({"error": "the request body is not valid JSON"}, status_code=400)
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
    message = first.get("msg", "invalid request")
    return JSONResponse({"error": f"{where}: {message}" if where else message}, status_code=422)


async def storage_error(request: Request, error: Exception) -> JSONResponse:
    # Nothing was stored; the page keeps the vote and retries with the same client_vote_id.
    study_server(request).storage_errors.report(error)
    return JSONResponse({"error": "database busy, please retry"}, status_code=503, headers={"Retry-After": "2"})


def page_html(template: str, **fields: str) -> str:
    """A page from study/templates with its {{FIELD}}s filled in (the values already HTML)."""
    page = (PACKAGE_DIR / "templates" / template).read_text()
    for name, value in fields.items():
        page = page.replace("{{" + name + "}}", value)
    return page


def notice_page(title: str, message: str) -> str:
    return page_html("notice.html", TITLE=html.escape(title), MESSAGE=html.escape(message))


def create_app(
    db_url: str,
    media_dir: str | Path | None = None,
    admin_token: str | None = None,
    exposure_ms: int | None = None,
    patience_ms: int = DEFAULT_PATIENCE_MS,
    dashboard_refresh_ms: int = DEFAULT_DASHBOARD_REFRESH_MS,
    enrolments_per_client: int = 0,
) -> FastAPI:
    """The app for the studies in `db_url`. Stimuli are read from `media_dir` if given, else from each
    study's recorded media dir. Without `admin_token` the admin pages and downloads are refused to
    everyone. `exposure_ms` overrides every study's exposure. `enrolments_per_client` > 0 limits the
    enrolments one client address makes per ENROLMENT_WINDOW_S (`study serve` does by default)."""
    check_admin_token(admin_token)
    server = StudyServer(open_database(db_url), media_dir, admin_token, exposure_ms, patience_ms, dashboard_refresh_ms,
                         enrolments_per_client=enrolments_per_client)
    engine = make_engine(db_url, pool_size=PICTURE_THREADS, max_overflow=0)
    server.pictures = Database(engine, sessionmaker(engine, expire_on_commit=False))
    with server.database.session() as session:
        server.stimuli = service.stimulus_files(session, media_dir)
        server.load_pages(service.study_protocols(session))

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        server.database_threads.shutdown(wait=False)
        server.picture_threads.shutdown(wait=False)
        server.database.dispose()
        server.pictures.dispose()

    # No /docs or /redoc: their pages load scripts from a CDN, and the study serves nothing third-party.
    app = StudyApp(
        title="Colorization preference study",
        version="2",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        max_body_size=MAX_BODY_BYTES,
    )
    app.state.study = server
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=PACKAGE_DIR / "static"), name="static")
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(service.ServiceError, service_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    for storage_failure in STORAGE_ERRORS:
        app.add_exception_handler(storage_failure, storage_error)
    return app
