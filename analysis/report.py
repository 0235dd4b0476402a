"""Write a vote analysis into a folder: summary.json, the figures (PNG and PDF) and report.md."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from analysis.simulate import SIMULATED_PREFIX
from colorizer.atomic import write_text

if TYPE_CHECKING:
    import pandas as pd

    from analysis.votes import VoteAnalysis

FIGURE2_STEM = "figure2_votes_per_image"
WIN_MATRIX_STEM = "win_matrix"
BRADLEY_TERRY_STEM = "bradley_terry_scores"


def write_vote_analysis(
    votes: pd.DataFrame,
    out_dir: str | Path,
    stimuli: list[dict[str, Any]] | None = None,
    exclude_failed_catch: bool = False,
    seed: int = 0,
) -> dict[str, Any]:
    """Analyse `votes` (as from `analysis.votes.prepare_votes`) and write everything into `out_dir`.

    `stimuli` are `study.export.stimuli` rows; the montages of figures 3 to 5 are drawn from their
    files and skipped, with a note in the report, when there are none or a file is missing.
    Returns the summary that went into summary.json.
    """
    from analysis.figures import (
        plot_bradley_terry,
        plot_condition_wins_per_image,
        plot_votes_per_image,
        plot_win_matrix,
    )
    from analysis.votes import analyze

    out_dir = Path(out_dir)
    analysis = analyze(votes, exclude_failed_catch=exclude_failed_catch, seed=seed)
    studies = sorted(set(votes["study"].dropna())) if "study" in votes else []
    simulated = any(name.startswith(SIMULATED_PREFIX) for name in studies)
    label = "SIMULATED votes: " if simulated else ""
    bradley_terry = analysis.summary["bradley_terry"]
    figures = {
        "win_matrix": plot_win_matrix(analysis.win_matrix, out_dir / WIN_MATRIX_STEM, f"{label}win matrix"),
        "bradley_terry": plot_bradley_terry(bradley_terry["scores"], bradley_terry["ci95"],
                                            out_dir / BRADLEY_TERRY_STEM, f"{label}Bradley-Terry scores"),
    }
    if len(analysis.models) == 2:
        first, second = analysis.models
        figures["figure2"] = plot_votes_per_image(
            analysis.images, analysis.models, out_dir / FIGURE2_STEM, f"{label}votes per image, {first} vs {second}"
        )
        montages, notes = _write_montages(analysis, stimuli or [], out_dir, label)
        figures |= montages
    else:
        figures["figure2"] = plot_condition_wins_per_image(
            analysis.images, analysis.models, out_dir / FIGURE2_STEM, f"{label}win rate per image and condition"
        )
        notes = ["Figures 3 to 5 (showcase pairs) are drawn for two-condition studies only."]
    summary = {"studies": studies, "simulated": simulated} | analysis.summary
    summary["figures"] = {name: [path.name for path in paths] for name, paths in figures.items()}
    write_text(out_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    render = render_report if len(analysis.models) == 2 else render_conditions_report
    write_text(out_dir / "report.md", render(summary, notes))
    return summary


def _write_montages(
    analysis: VoteAnalysis, stimuli: list[dict[str, Any]], out_dir: Path, label: str
) -> tuple[dict[str, list[Path]], list[str]]:
    """Figures 3 to 5, keyed like summary["showcase"], and a note for each one that was skipped."""
    from analysis.figures import plot_pair_montage

    colorizations = {(str(row["image_id"]), row["model"]): Path(row["path"]) for row in stimuli}
    sources = {str(row["image_id"]): Path(row["source"]) for row in stimuli if row.get("source")}
    records = {record["image_id"]: record for record in analysis.summary["images"]}
    figures, notes = {}, []
    for number, (name, image_id) in enumerate(analysis.summary["showcase"].items(), start=3):
        record = records[image_id]
        panels = [
            (f"{model}: {record['votes'][model]} of {record['n_votes']} votes", colorizations.get((image_id, model)), False)
            for model in analysis.models
        ]
        missing = [model for model, (_, path, _) in zip(analysis.models, panels, strict=True)
                   if path is None or not path.is_file()]
        if missing:
            notes.append(f"Figure {number} ({_caption(name)}, image {image_id}) is not drawn: "
                         f"no stimulus file for {', '.join(missing)}.")
            continue
        source = sources.get(image_id)
        if source is not None and source.is_file():
            panels.insert(0, ("grayscale input", source, True))
        title = f"{label}figure {number}: {_caption(name)} (image {image_id})"
        figures[name] = plot_pair_montage(panels, out_dir / f"figure{number}_{name}", title)
    return figures, notes


def _caption(showcase_name: str) -> str:
    if showcase_name == "most_even":
        return "the most evenly split image"
    return f"the image most preferred for {showcase_name.removeprefix('most_preferred_')}"


def _percent(share: float) -> str:
    return f"{100 * share:.1f}%"


def _interval(bounds: list[float]) -> str:
    return f"{_percent(bounds[0])} to {_percent(bounds[1])}"


def _p(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2g}"


def render_report(summary: dict[str, Any], notes: list[str]) -> str:
    first, second = summary["models"]
    share = summary["models"][first]
    unclustered = summary["share_unclustered"]
    signs = summary["sign_test"]
    left = summary["left_choices"]
    catch = summary["catch"]
    rt = summary["response_time_ms"]
    images = summary["images"]
    significant = {model: sum(1 for row in images if row["significant"] and row["winner"] == model)
                   for model in (first, second)}
    failed = catch["n_participants_failed"]
    lines = _report_opening(summary, f"{first} vs {second}")
    lines += [
        f"- **Overall preference:** {first} got {share['votes']} votes, {_percent(share['share'])} "
        f"(95% interval {_interval(share['share_ci95'])}, allowing for clustering by participant and by "
        f"image; {_interval(unclustered['ci95'])} if every vote were independent).",
        f"- **Images won** (more than half of an image's votes): {first} {signs['images_won']}, "
        f"{second} {signs['images_lost']}, ties {signs['ties']}; exact sign test p = {_p(signs['p_value'])}.",
        f"- **Significant images** after Holm correction: {significant[first] + significant[second]} of "
        f"{summary['n_images']} ({first} {significant[first]}, {second} {significant[second]}).",
        f"- **Position bias:** {_percent(left['share'])} of the choices were the left image "
        f"(95% interval {_interval(left['ci95'])}; binomial p = {_p(left['p_value'])} against 50%).",
        "- **Catch trials:** " + (
            f"{_percent(catch['pass_rate'])} of {catch['n_votes']} passed; {counted(failed, 'participant')} failed at least one."
            if catch["n_votes"] else "none in these votes."),
        "- **Response time:** " + (
            f"median {rt['median']:.0f} ms (quartiles {rt['quartiles'][0]:.0f} to {rt['quartiles'][1]:.0f} ms)."
            if rt["median"] is not None else "not recorded."),
        "",
        "## Figure 2: votes per image",
        "",
        f"![Figure 2]({FIGURE2_STEM}.png)",
        "",
        f"Share of the votes for {first} (below) and {second} (above) on each image, sorted by share; "
        "error bars are Wilson 95% intervals, the dashed line is 50%, a star marks an image whose "
        f"preference is significant after Holm correction. [PDF]({FIGURE2_STEM}.pdf)",
        "",
        "## Figures 3 to 5: showcase pairs",
        "",
    ]
    for number, name in enumerate(summary["showcase"], start=3):
        if name in summary["figures"]:
            png, pdf = summary["figures"][name]
            lines += [f"### Figure {number}: {_caption(name)}", "", f"![Figure {number}]({png})", "", f"[PDF]({pdf})", ""]
    lines += [f"- {note}" for note in notes] + ([""] if notes else [])
    lines += [
        "## Per-image results",
        "",
        f"| image | votes {first} | votes {second} | share {first} | 95% interval | p | p (Holm) | significant |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: | --- |",
    ]
    lines += [
        f"| {row['image_id']} | {row['votes'][first]} | {row['votes'][second]} | {_percent(row['share'][first])} | "
        f"{_interval(row['ci95'][first])} | {_p(row['p_value'])} | {_p(row['p_holm'])} | "
        f"{'yes' if row['significant'] else 'no'} |"
        for row in images
    ]
    lines += ["", *_paired_sections(summary)]
    lines += [
        "## Methods",
        "",
        "- Each image: exact two-sided binomial test of its votes against 50% (scipy), Wilson 95% interval "
        "(statsmodels), Holm correction over all images at alpha = 0.05 (statsmodels).",
        f"- Overall share: {summary['share_interval_method']} (seed {summary['bootstrap_seed']}). Votes of one "
        "participant, and votes on one image, are correlated, so an interval that treats the votes as "
        "independent is far too narrow; the pigeonhole bootstrap is slightly conservative for such crossed designs.",
        "- Images won: exact sign test (binomial against 50%) over the images with a majority, ties dropped.",
        "- Position bias: exact binomial test of the share of left choices against 50%, Wilson interval.",
        "- Catch trials: one side visibly degraded; a catch trial is passed when the other side is chosen.",
        f"- Bradley-Terry: {summary['bradley_terry']['method']}.",
        "",
    ]
    return "\n".join(lines)


def _report_opening(summary: dict[str, Any], title: str) -> list[str]:
    """The title, the simulated-data warning, the studies, and the participants bullet of Results."""
    catch = summary["catch"]
    failed = catch["n_participants_failed"]
    return [
        f"# Preference votes: {title}", "", *_simulated_warning(summary),
        f"Studies: {', '.join(summary['studies']) or 'unnamed'}. Written by `colorizer analyze votes`; "
        "every number is also in [summary.json](summary.json).",
        "",
        "## Results",
        "",
        f"- **Participants:** {summary['n_participants']}, casting {counted(summary['n_votes'], 'vote')} on "
        f"{counted(summary['n_images'], 'image')} (catch and practice trials not counted). "
        + (f"{counted(failed, 'participant')} who failed a catch trial {'is' if failed == 1 else 'are'} excluded."
           if catch["excluded"]
           else f"All participants are kept, including {failed} who failed at least one catch trial.")
        + invalid_note(summary.get("invalid_votes_excluded", 0)),
    ]


def counted(number: int, noun: str) -> str:
    """`1 participant`, `2 participants`."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def invalid_note(invalid: int) -> str:
    if not invalid:
        return ""
    return (f" {counted(invalid, 'invalid vote')} (faster than the study's minimum response time, or with a "
            "response time the server's clock contradicts) left out.")


def _simulated_warning(summary: dict[str, Any]) -> list[str]:
    if not summary["simulated"]:
        return []
    return ["> **Simulated data.** These votes were generated by `analysis.simulate` to exercise the",
            "> analysis; no person cast them. Do not read them as the study's results.", ""]


def _paired_sections(summary: dict[str, Any]) -> list[str]:
    """The Bradley-Terry scores, the fooling rates (with `truth`) and the win matrix, as Markdown."""
    bradley_terry = summary["bradley_terry"]
    ranked = sorted(bradley_terry["scores"], key=lambda condition: -bradley_terry["scores"][condition])
    lines = ["## Bradley-Terry scores", "", "![Bradley-Terry scores](bradley_terry_scores.png)", "",
             "| condition | score | 95% interval |", "| --- | ---: | --- |"]
    lines += [f"| {condition} | {bradley_terry['scores'][condition]:+.2f} | "
              f"{bradley_terry['ci95'][condition][0]:+.2f} to {bradley_terry['ci95'][condition][1]:+.2f} |"
              for condition in ranked]
    lines += ["", "A difference of d between two scores means the first is chosen with probability "
              "1 / (1 + exp(-d)) in a trial between them.", ""]
    if "fooling_rate" in summary:
        fooling = summary["fooling_rate"]
        lines += ["## Fooling rates", "", "Share of the trials against the original photo (`truth`) in which "
                  "the colorization was chosen (Zhang et al. 2016 report 32% for their full method).", "",
                  "| condition | trials | fooling rate | 95% interval |", "| --- | ---: | ---: | --- |"]
        lines += [f"| {condition} | {fooling['n'][condition]} | {_percent(rate)} | "
                  f"{_interval(fooling['ci95'][condition])} |"
                  for condition, rate in sorted(fooling["rates"].items(), key=lambda item: -item[1])]
        lines += [""]
    lines += ["## Win matrix", "", "![Win matrix](win_matrix.png)", "",
              "How often the row's condition was chosen over the column's.", ""]
    return lines


def render_conditions_report(summary: dict[str, Any], notes: list[str]) -> str:
    """The report of a study of more than two conditions."""
    catch = summary["catch"]
    left = summary["left_choices"]
    failed = catch["n_participants_failed"]
    lines = _report_opening(summary, ", ".join(summary["conditions"]))
    lines += [
        f"- **Position bias:** {_percent(left['share'])} of the choices were the left image "
        f"(95% interval {_interval(left['ci95'])}; binomial p = {_p(left['p_value'])} against 50%).",
        "- **Catch trials:** " + (
            f"{_percent(catch['pass_rate'])} of {catch['n_votes']} passed; {counted(failed, 'participant')} failed at least one."
            if catch["n_votes"] else "none in these votes."),
        "",
        *_paired_sections(summary),
        "## Figure 2: win rate per image",
        "",
        f"![Figure 2]({FIGURE2_STEM}.png)",
        "",
        "Each condition's share of its trials on each image that it won, with Wilson 95% intervals. "
        f"[PDF]({FIGURE2_STEM}.pdf)",
        "",
        *[f"- {note}" for note in notes],
        "",
        "## Methods",
        "",
        f"- Bradley-Terry: {summary['bradley_terry']['method']}.",
        "- Fooling rates: share of the truth-versus-condition trials won by the condition, intervals from the "
        "same bootstrap.",
        "- Position bias: exact binomial test of the share of left choices against 50%, Wilson interval.",
        "",
    ]
    return "\n".join(lines)
