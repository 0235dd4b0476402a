"""`colorizer study prepare|serve|export`. Heavy imports happen inside the commands so the CLI starts fast."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from colorizer.defaults import DEFAULT_TEMPERATURE
from study import DEFAULT_DB_URL


def add_db_argument(parser: argparse.ArgumentParser | argparse._MutuallyExclusiveGroup) -> None:
    """The `--db` option of every study and analysis command."""
    parser.add_argument("--db", default=DEFAULT_DB_URL, metavar="URL",
                        help=f"SQLAlchemy URL of the study database (default {DEFAULT_DB_URL})")


def register(subparsers: argparse._SubParsersAction) -> None:
    study = subparsers.add_parser("study", help="run the preference study (prepare, serve, export)")
    commands = study.add_subparsers(dest="study_command", required=True, metavar="COMMAND")

    prepare = commands.add_parser("prepare", help="sample photos, colorize them with two models, record the study")
    prepare.add_argument("--name", required=True, help="study name (unique in the database)")
    prepare.add_argument("--models", nargs=2, required=True, metavar=("A", "B"), help="the two models to compare")
    prepare.add_argument("--images", required=True, metavar="DIR", help="photo folder, searched recursively")
    prepare.add_argument("--n", type=int, default=30, help="number of photos to compare (default 30)")
    prepare.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    add_db_argument(prepare)
    prepare.add_argument("--media", required=True, metavar="DIR", help="folder for the stimulus images")
    prepare.add_argument("--catch", type=int, default=2, help="attention-check pairs (default 2)")
    prepare.add_argument("--temperature", type=float, default=DEFAULT_TEMPERATURE,
                         help=f"annealed-mean temperature (default {DEFAULT_TEMPERATURE})")
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
        help="file holding the bearer token for /admin/export.csv (default $COLORIZER_ADMIN_TOKEN, "
        "else a random one is printed)",
    )
    tokens.add_argument("--admin-token", help="the token itself (visible to other users in `ps`: prefer the file)")
    serve.set_defaults(func=run_serve)

    export = commands.add_parser("export", help="write every vote to a CSV file")
    add_db_argument(export)
    export.add_argument("--out", required=True, metavar="CSV", help="output file (written atomically)")
    export.add_argument("--study", help="only this study (default: all)")
    export.set_defaults(func=run_export)


def run_prepare(args: argparse.Namespace) -> int:
    from colorizer import Colorizer
    from colorizer.errors import UserError
    from study.prepare import prepare_study

    if args.models[0] == args.models[1]:
        raise UserError("--models needs two different models")
    colorizers = {}
    for name in args.models:
        colorizer = Colorizer.load(name)
        colorizers[name] = lambda photo, colorizer=colorizer: colorizer.colorize(photo, temperature=args.temperature)
    prepare_study(
        args.db, args.name, colorizers, args.images, args.media, n=args.n, seed=args.seed, catch=args.catch
    )
    print(f"study {args.name!r} prepared: {args.n} pairs + {args.catch} catch pairs, stimuli in {args.media}")
    return 0


# Connection limits of `study serve`. Past MAX_CONNECTIONS open connections and requests, new
# requests get an immediate 503 instead of exhausting file descriptors (which resets everyone's
# connections); idle keep-alive connections close after KEEP_ALIVE_S.
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
    print(f"admin token for /admin/export.csv: {token}", file=sys.stderr)
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

    from study.app import create_app

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(args.db, args.media, admin_token(args))
    raise_open_file_limit()
    print(f"study page: http://{args.host}:{args.port}/ (add ?PROLIFIC_PID=... or ?pid=...)", file=sys.stderr)
    # One process: SQLite has one writer anyway, and votes are short transactions.
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        access_log=False,
        log_level="warning",
        limit_concurrency=MAX_CONNECTIONS,
        timeout_keep_alive=KEEP_ALIVE_S,
        backlog=LISTEN_BACKLOG,
    )
    return 0


def run_export(args: argparse.Namespace) -> int:
    from study.export import export_csv

    count = export_csv(args.db, args.out, args.study)
    print(f"wrote {count} votes to {args.out}")
    return 0
