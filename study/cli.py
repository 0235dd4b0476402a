"""`colorizer study prepare|serve|export`. Heavy imports happen inside the commands so the CLI starts fast."""

from __future__ import annotations

import argparse
import os
import sys

from study import DEFAULT_DB_URL


def add_db_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default=DEFAULT_DB_URL, metavar="URL", help=f"database URL (default {DEFAULT_DB_URL})")


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
    prepare.add_argument("--temperature", type=float, default=0.38, help="annealed-mean temperature (default 0.38)")
    prepare.set_defaults(func=run_prepare)

    serve = commands.add_parser("serve", help="serve the participant page and the JSON API")
    add_db_argument(serve)
    serve.add_argument("--media", metavar="DIR", help="stimulus folder (default: the one recorded by prepare)")
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument(
        "--admin-token",
        help="bearer token for /admin/export.csv (default $COLORIZER_ADMIN_TOKEN, else a random one is printed)",
    )
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


def run_serve(args: argparse.Namespace) -> int:
    import secrets

    import uvicorn

    from study.app import create_app

    token = args.admin_token or os.environ.get("COLORIZER_ADMIN_TOKEN")
    if not token:
        token = secrets.token_urlsafe(24)
        print(f"admin token for /admin/export.csv: {token}", file=sys.stderr)
    app = create_app(args.db, args.media, token)
    print(f"study page: http://{args.host}:{args.port}/ (add ?PROLIFIC_PID=... or ?pid=...)", file=sys.stderr)
    # One process: SQLite has one writer anyway, and votes are short transactions.
    uvicorn.run(app, host=args.host, port=args.port, access_log=False, log_level="warning")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from study.export import export_csv

    count = export_csv(args.db, args.out, args.study)
    print(f"wrote {count} votes to {args.out}")
    return 0
