"""`colorizer demo`: the browser demo's command line. Gradio is imported only when it runs."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the browser demo (Gradio)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--share", action="store_true", help="also open a public Gradio share link")
    p.add_argument("--models-dir", default="models", help="extra checkpoints offered in the model menu")
    p.add_argument("--open", action="store_true", help="also open the page in the default web browser")
    p.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    from demo.app import launch

    launch(host=args.host, port=args.port, share=args.share, models_dir=args.models_dir, open_browser=args.open)
    return 0
