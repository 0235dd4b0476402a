"""`colorizer analyze ...`: rebuild the paper's results. Heavy imports wait until a command runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from analysis.classify import register as register_classify
from analysis.decoding import register as register_decoding
from analysis.hint_locality import register as register_hint_locality
from analysis.hints import register as register_hints
from analysis.samples import register as register_samples
from study.cli import add_db_argument


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `analyze` and its subcommands to the colorizer command line."""
    analyze = subparsers.add_parser("analyze", help="rebuild the paper's figures and tables")
    commands = analyze.add_subparsers(dest="analyze_command", required=True, metavar="COMMAND")
    _register_votes(commands)
    _register_simulate(commands)
    register_classify(commands)
    register_samples(commands)
    register_hints(commands)
    register_hint_locality(commands)
    register_decoding(commands)


def _register_votes(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "votes",
        help="statistics and figures of the preference study (Bradley-Terry scores for any number of conditions)",
        description="Analyse the votes of a preference study: writes summary.json, report.md, figures 2 to 5, "
        "the win matrix and the Bradley-Terry scores (PNG and PDF) into --out.",
    )
    source = parser.add_mutually_exclusive_group()
    add_db_argument(source)
    source.add_argument("--csv", metavar="FILE", type=Path,
                        help="a `colorizer study export` file instead of a database (no montages)")
    parser.add_argument("--study", metavar="NAME", help="analyse only this study (default: all votes)")
    parser.add_argument("--out", metavar="DIR", type=Path, required=True, help="output folder")
    parser.add_argument("--exclude-failed-catch", action="store_true",
                        help="drop every vote of participants who failed a catch trial")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap interval (default 0)")
    parser.set_defaults(func=run_votes)


def _register_simulate(commands: argparse._SubParsersAction) -> None:
    from analysis.simulate import SIMULATED_PREFIX, SIMULATED_STUDY_NAME

    parser = commands.add_parser(
        "simulate",
        help="fill a study with simulated votes that have the paper's marginals (a demo database)",
        description="Write 73 simulated participants' votes into study --study: its first model gets 68% of "
        "the votes and wins 70% of the images, as in the paper. A missing study is created without "
        f"stimulus files. The name must start with {SIMULATED_PREFIX!r}; reports label such studies as simulated.",
    )
    add_db_argument(parser)
    parser.add_argument("--study", default=SIMULATED_STUDY_NAME, metavar="NAME",
                        help=f"study to fill (default {SIMULATED_STUDY_NAME})")
    parser.add_argument("--seed", type=int, default=0, help="simulation seed (default 0)")
    parser.set_defaults(func=run_simulate)


def run_votes(args: argparse.Namespace) -> int:
    from analysis.report import write_vote_analysis
    from analysis.votes import load_votes, load_votes_csv

    if args.csv is not None:
        votes, stimuli = load_votes_csv(args.csv, args.study), []
    else:
        from study.export import stimuli as study_stimuli

        votes, stimuli = load_votes(args.db, args.study), study_stimuli(args.db, study=args.study)
    summary = write_vote_analysis(
        votes, args.out, stimuli=stimuli, exclude_failed_catch=args.exclude_failed_catch, seed=args.seed
    )
    from analysis.report import counted

    counts = f"{counted(summary['n_participants'], 'participant')}, {counted(summary['n_votes'], 'vote')}"
    if summary["invalid_votes_excluded"]:
        counts += f" ({counted(summary['invalid_votes_excluded'], 'invalid vote')} left out)"
    if "models" in summary:
        first = next(iter(summary["models"]))
        share = summary["models"][first]
        print(f"{counts}: {first} {100 * share['share']:.1f}% of the votes, "
              f"{share['images_won']} of {summary['n_images']} images won")
    else:
        scores = summary["bradley_terry"]["scores"]
        print(f"{counts}: Bradley-Terry " + " > ".join(f"{c} ({scores[c]:+.2f})" for c in summary["conditions"]))
    for condition, rate in summary.get("fooling_rate", {}).get("rates", {}).items():
        print(f"fooling rate of {condition}: {100 * rate:.1f}%")
    print(f"wrote {args.out / 'report.md'}")
    return 0


def run_simulate(args: argparse.Namespace) -> int:
    from analysis.simulate import write_simulated_study

    count = write_simulated_study(args.db, args.study, seed=args.seed)
    print(f"wrote {count} simulated votes into study {args.study!r} of {args.db}")
    return 0
