"""The `colorizer` command: train, colorize, prior, eval, export, demo, study, analyze."""

from __future__ import annotations

import argparse

from analysis import cli as analysis_cli
from colorizer import cli as core_cli
from demo import cli as demo_cli
from study import cli as study_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="colorizer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for part in (core_cli, demo_cli, study_cli, analysis_cli):
        part.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    return core_cli.run(build_parser(), argv)
