"""`colorizer study prepare|serve|export`. Heavy imports happen inside the commands so the CLI starts fast."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from colorizer.defaults import DEFAULT_TEMPERATURE
from study import DEFAULT_DB_URL
from study.limits import (
    DEFAULT_CONNECTIONS_PER_CLIENT,
    DEFAULT_ENROLMENTS_PER_CLIENT,
    DEFAULT_HEAD_TIMEOUT_S,
    ENROLMENT_WINDOW_S,
)
from study.protocol import (
    DEFAULT_BREAK_EVERY,
    DEFAULT_EXPOSURE_MS,
    DEFAULT_MAX_INVALID_SHARE,
    DEFAULT_MIN_RESPONSE_MS,
    DEFAULT_QUESTION,
)


def add_db_argument(parser: argparse.ArgumentParser | argparse._MutuallyExclusiveGroup) -> None:
    """The `--db` option of every study and analysis command."""
    parser.add_argument("--db", default=DEFAULT_DB_URL, metavar="URL",
                        help=f"SQLAlchemy URL of the study database (default {DEFAULT_DB_URL})")


def register(subparsers: argparse._SubParsersAction) -> None:
    study = subparsers.add_parser("study", help="run the preference study (prepare, serve, export, backup, withdraw)")
    commands = study.add_subparsers(dest="study_command", required=True, metavar="COMMAND")

    prepare = commands.add_parser(
        "prepare",
        help="sample photos, make each condition's picture of them (models, truth, imports), record the study",
    )
    prepare.add_argument("--name", required=True, help="study name (unique in the database)")
    prepare.add_argument("--models", nargs="+", default=[], metavar="MODEL",
                         help="models to compare (bundled names, run folders or checkpoint files)")
    prepare.add_argument("--truth", action="store_true", help="add the original colour photo as condition 'truth'")
    prepare.add_argument("--import", dest="imports", action="append", default=[], metavar="NAME=DIR",
                         help="add colorizations made elsewhere as condition NAME, matched to the photos by file "
                         "stem (repeatable)")
    prepare.add_argument("--images", required=True, metavar="DIR", help="photo folder, searched recursively")
    prepare.add_argument("--n", type=int, default=30, help="number of photos to compare (default 30)")
    prepare.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    add_db_argument(prepare)
    prepare.add_argument("--media", required=True, metavar="DIR", help="folder for the stimulus images")
    prepare.add_argument("--catch", type=int, default=2,
                         help="attention-check trials per participant, drawn for each from the photos (default 2)")
    prepare.add_argument("--practice", type=int, default=0,
                         help="practice trials shown first, left out of the analysis (default 0)")
    prepare.add_argument("--temperature", type=float, default=DEFAULT_TEMPERATURE,
                         help=f"annealed-mean temperature (default {DEFAULT_TEMPERATURE})")
    protocol = prepare.add_argument_group("protocol (stored with the study)")
    protocol.add_argument("--exposure-ms", type=int, default=DEFAULT_EXPOSURE_MS,
                          help=f"how long the pictures are shown (default {DEFAULT_EXPOSURE_MS})")
    protocol.add_argument("--question", default=DEFAULT_QUESTION, help=f"the question (default {DEFAULT_QUESTION!r})")
    protocol.add_argument("--consent", metavar="FILE.md",
                          help="consent and instructions in Markdown, with the researcher's and the ethics "
                          "contact's details (default: a generic text)")
    protocol.add_argument("--completion-url", metavar="URL",
                          help="where a participant goes when done, {code} replaced by the completion code "
                          "(Prolific: https://app.prolific.com/submissions/complete?cc={code})")
    protocol.add_argument("--max-participants", type=int, metavar="N",
                          help="enrol at most N participants; later ones are told the study is full")
    protocol.add_argument("--min-response-ms", type=int, default=DEFAULT_MIN_RESPONSE_MS,
                          help="votes faster than this by the page's or the server's clock are invalid "
                          f"(default {DEFAULT_MIN_RESPONSE_MS}; 0: none)")
    protocol.add_argument("--max-invalid-share", type=float, default=DEFAULT_MAX_INVALID_SHARE,
                          help="withhold the completion code from a participant with more than this share of "
                          f"invalid votes (default {DEFAULT_MAX_INVALID_SHARE}; 1: never)")
    protocol.add_argument("--prolific-study-id", metavar="STUDY_ID",
                          help="Prolific's STUDY_ID: links with it (and a PROLIFIC_PID and SESSION_ID) get the "
                          "reserved places, links with another are refused")
    protocol.add_argument("--anonymous-places", type=int, metavar="N",
                          help="places that enrolments without the platform's ids may take (default: all of "
                          "them, or none with --prolific-study-id)")
    protocol.add_argument("--break-every", type=int, default=DEFAULT_BREAK_EVERY, metavar="N",
                          help=f"a break screen after every N counted trials (default {DEFAULT_BREAK_EVERY}; 0: none)")
    prepare.set_defaults(func=run_prepare)

    serve = commands.add_parser("serve", help="serve the participant page and the JSON API")
    add_db_argument(serve)
    serve.add_argument("--media", metavar="DIR", help="stimulus folder (default: the one recorded by prepare)")
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    tokens = serve.add_mutually_exclusive_group()
    tokens.add_argument(
        "--admin-token-file",
        metavar="FILE",
        help="file holding the admin token for /admin and its downloads (default $COLORIZER_ADMIN_TOKEN, "
        "else a random one is printed)",
    )
    tokens.add_argument("--admin-token", help="the token itself (visible to other users in `ps`: prefer the file)")
    limits = serve.add_argument_group("limits")
    limits.add_argument("--workers", type=int, default=1,
                        help="server processes (default 1; several are for PostgreSQL: SQLite has one writer)")
    limits.add_argument("--enrolments-per-client", type=int, default=DEFAULT_ENROLMENTS_PER_CLIENT, metavar="N",
                        help=f"enrolments one client address may make per {ENROLMENT_WINDOW_S // 60} minutes "
                        f"(default {DEFAULT_ENROLMENTS_PER_CLIENT}; 0: no limit)")
    limits.add_argument("--connections-per-client", type=int, default=DEFAULT_CONNECTIONS_PER_CLIENT, metavar="N",
                        help=f"open connections one client address may hold per process (default "
                        f"{DEFAULT_CONNECTIONS_PER_CLIENT}; the proxies of --forwarded-allow-ips are not limited)")
    limits.add_argument("--head-timeout-s", type=float, default=DEFAULT_HEAD_TIMEOUT_S, metavar="S",
                        help=f"close a connection whose request head is not complete after S seconds "
                        f"(default {DEFAULT_HEAD_TIMEOUT_S:g})")
    limits.add_argument("--forwarded-allow-ips", default="127.0.0.1", metavar="IPS",
                        help="reverse proxies whose X-Forwarded-For names the client (default 127.0.0.1)")
    serve.set_defaults(func=run_serve)

    export = commands.add_parser("export", help="write every vote (or, with --stimuli, every stimulus file) to CSV")
    add_db_argument(export)
    export.add_argument("--out", required=True, metavar="CSV", help="output file (written atomically)")
    export.add_argument("--stimuli", action="store_true",
                        help="one row per stimulus file: file_name, image_id, model (the condition), study")
    export.add_argument("--study", help="only this study (default: all)")
    export.set_defaults(func=run_export)

    backup = commands.add_parser(
        "backup", help="copy a SQLite study database while the server runs (SQLite's backup API)"
    )
    add_db_argument(backup)
    backup.add_argument("--out", required=True, metavar="FILE", help="the copy (written atomically)")
    backup.set_defaults(func=run_backup)

    withdraw = commands.add_parser("withdraw", help="delete a participant's data (votes, trials, ids)")
    add_db_argument(withdraw)
    withdraw.add_argument("--external-id", required=True, metavar="ID", help="the participant's id (e.g. Prolific's)")
    withdraw.add_argument("--study", help="only in this study (default: every study)")
    withdraw.set_defaults(func=run_withdraw)


def parse_imports(specs: list[str]) -> dict[str, Path]:
    """--import NAME=DIR options as {name: folder}, or a one-line UserError."""
    from colorizer.errors import UserError

    imports: dict[str, Path] = {}
    for spec in specs:
        name, separator, folder = spec.partition("=")
        if not separator or not name.strip() or not folder:
            raise UserError(f"--import takes NAME=DIR, got {spec!r}")
        if name in imports:
            raise UserError(f"--import {name} is given twice")
        if not Path(folder).is_dir():
            raise UserError(f"--import {name}: {folder} is not a folder")
        imports[name] = Path(folder)
    return imports


def run_prepare(args: argparse.Namespace) -> int:
    from colorizer import Colorizer
    from colorizer.errors import UserError
    from study.prepare import prepare_study
    from study.protocol import Protocol, read_consent

    if len(set(args.models)) != len(args.models):
        raise UserError("--models must name different models")
    imports = parse_imports(args.imports)
    protocol = Protocol(
        exposure_ms=args.exposure_ms,
        question=args.question,
        consent_markdown=read_consent(args.consent) if args.consent else None,
        completion_url=args.completion_url,
        max_participants=args.max_participants,
        min_response_ms=args.min_response_ms,
        max_invalid_share=args.max_invalid_share,
        prolific_study_id=args.prolific_study_id,
        anonymous_places=args.anonymous_places,
        break_every=args.break_every,
    ).check()
    colorizers = {}
    for name in args.models:
        colorizer = Colorizer.load(name)
        colorizers[name] = lambda photo, colorizer=colorizer: colorizer.colorize(photo, temperature=args.temperature)
    prepare_study(
        args.db, args.name, colorizers, args.images, args.media, n=args.n, seed=args.seed, catch=args.catch,
        truth=args.truth, imports=imports, practice=args.practice, protocol=protocol,
    )
    conditions = [*args.models, *(["truth"] if args.truth else []), *imports]
    print(f"study {args.name!r} prepared: {', '.join(conditions)} on {args.n + args.catch} photos, "
          f"{args.catch} of them catch trials for each participant"
          f"{f' + {args.practice} practice trials' if args.practice else ''}, stimuli in {args.media}")
    return 0


# Connection limits of `study serve` (per process; those per client are in study/limits.py). Past
# MAX_CONNECTIONS open connections and requests, new requests get an immediate 503 instead of
# exhausting file descriptors (which resets everyone's connections); idle keep-alive connections
# close after KEEP_ALIVE_S.
MAX_CONNECTIONS = 2000
KEEP_ALIVE_S = 5
LISTEN_BACKLOG = 2048


def admin_token(args: argparse.Namespace) -> str:
    """The token from --admin-token-file, --admin-token (with a warning) or the environment, else a new one."""
    import secrets

    from colorizer.errors import UserError

    if args.admin_token_file:
        try:
            return Path(args.admin_token_file).read_text().strip()
        except (OSError, UnicodeDecodeError) as error:
            raise UserError(f"cannot read the admin token file {args.admin_token_file}: {error}") from None
    if args.admin_token:
        print(
            "warning: --admin-token is visible to every user of this machine (ps); "
            "use --admin-token-file or COLORIZER_ADMIN_TOKEN",
            file=sys.stderr,
        )
        return args.admin_token
    if token := os.environ.get("COLORIZER_ADMIN_TOKEN"):
        return token
    token = secrets.token_urlsafe(24)
    print(f"admin token for /admin (the dashboard) and its downloads: {token}", file=sys.stderr)
    return token


def raise_open_file_limit() -> None:
    """Allow as many open files as the hard limit does (up to what MAX_CONNECTIONS needs): the
    usual soft limit of 1024 would let a thousand idle connections lock everyone else out."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = MAX_CONNECTIONS + 256
    if soft != resource.RLIM_INFINITY and soft < wanted:
        allowed = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (allowed, hard))


def run_serve(args: argparse.Namespace) -> int:
    import logging

    import uvicorn

    from colorizer.errors import UserError
    from study.server import SETTINGS_VARIABLE, GuardedHttpProtocol, ServeSettings, app_for, settings_environment

    if args.workers < 1:
        raise UserError("--workers must be at least 1")
    if args.connections_per_client < 1 or args.head_timeout_s <= 0 or args.enrolments_per_client < 0:
        raise UserError("--connections-per-client must be at least 1, --head-timeout-s above 0, "
                        "--enrolments-per-client at least 0")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = ServeSettings(
        db=args.db, media=args.media, admin_token=admin_token(args), enrolments_per_client=args.enrolments_per_client,
        connections_per_client=args.connections_per_client, head_timeout_s=args.head_timeout_s,
        trusted_proxies=[ip.strip() for ip in args.forwarded_allow_ips.split(",")],
    )
    options = dict(
        host=args.host,
        port=args.port,
        access_log=False,
        log_level="warning",
        limit_concurrency=MAX_CONNECTIONS,
        timeout_keep_alive=KEEP_ALIVE_S,
        backlog=LISTEN_BACKLOG,
        server_header=False,  # no `server: uvicorn` on every response: it tells an attacker what to try
        http=GuardedHttpProtocol,
        forwarded_allow_ips=args.forwarded_allow_ips,
    )
    # Checked (and any new tables and columns added) once, before the workers start.
    app = app_for(settings)
    raise_open_file_limit()
    print(f"study page: http://{args.host}:{args.port}/?study=NAME (add &PROLIFIC_PID=... or &pid=...), "
          f"dashboard: http://{args.host}:{args.port}/admin", file=sys.stderr)
    if args.workers == 1:
        uvicorn.run(app, **options)
    else:
        os.environ[SETTINGS_VARIABLE] = settings_environment(settings)
        uvicorn.run("study.server:app_from_environment", factory=True, workers=args.workers, **options)
    return 0


def run_export(args: argparse.Namespace) -> int:
    from study.export import export_csv, export_stimuli_csv

    if args.stimuli:
        count = export_stimuli_csv(args.db, args.out, args.study)
        print(f"wrote {count} stimulus files to {args.out}")
    else:
        count = export_csv(args.db, args.out, args.study)
        print(f"wrote {count} votes to {args.out}")
    return 0


def run_backup(args: argparse.Namespace) -> int:
    from study.maintenance import backup_sqlite

    size = backup_sqlite(args.db, args.out)
    print(f"backed up {args.db} to {args.out} ({size / 1e6:.1f} MB)")
    return 0


def run_withdraw(args: argparse.Namespace) -> int:
    from study.maintenance import withdraw

    participants, votes = withdraw(args.db, args.external_id, args.study)
    print(f"withdrew {participants} participant(s) with external id {args.external_id!r}: {votes} votes deleted")
    return 0
