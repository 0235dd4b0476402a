"""Vote statistics, the output folder and the `analyze votes` command, on hand-built vote tables."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

from analysis import cli
from analysis.report import write_vote_analysis
from analysis.simulate import simulate_condition_votes, simulate_votes, write_simulated_study
from analysis.votes import (
    analyze,
    clustered_share_interval,
    load_votes_csv,
    model_order,
    per_image_table,
    prepare_votes,
)
from colorizer.errors import UserError
from study.models import CATCH_MODEL
from study.prepare import prepare_study

MODELS = ("dogs", "generic")


def votes_frame(counts: dict[str, tuple[int, int]], models: tuple[str, str] = MODELS) -> pd.DataFrame:
    """Participant k votes once on every image; counts[image] = (votes for models[0], for models[1]).
    Sides alternate, so participants 0, 2, 4... see models[0] on the left."""
    rows = []
    for image_id, (first_votes, second_votes) in counts.items():
        for participant in range(first_votes + second_votes):
            left, right = models if participant % 2 == 0 else models[::-1]
            chosen = models[0] if participant < first_votes else models[1]
            rows.append(vote_row(f"p{participant}", image_id, left, right, chosen))
    return pd.DataFrame(rows)


def vote_row(participant_id: str, image_id: str, left: str, right: str, chosen: str, rt_ms: int = 1500) -> dict:
    return {
        "participant_id": participant_id, "external_id": None, "trial_id": f"{participant_id}-{image_id}",
        "image_id": image_id, "left_model": left, "right_model": right, "chosen_model": chosen,
        "choice": "left" if chosen == left else "right", "rt_ms": rt_ms,
        "is_catch": CATCH_MODEL in (left, right), "created_at": None, "study": "test",
    }


def test_per_image_table_uses_exact_tests_wilson_intervals_and_holm():
    votes = prepare_votes(votes_frame({"a": (9, 1), "b": (5, 5), "c": (2, 8), "d": (7, 3)}))
    table = per_image_table(votes, MODELS)

    assert list(table["image_id"]) == ["a", "d", "b", "c"]  # by share of dogs, descending
    assert list(table["winner"]) == ["dogs", "dogs", None, "generic"]
    expected_p = [binomtest(k, 10).pvalue for k in (9, 7, 5, 2)]
    assert table["p_value"].tolist() == pytest.approx(expected_p)
    assert table["p_holm"].tolist() == pytest.approx(list(multipletests(expected_p, method="holm")[1]))
    low, high = proportion_confint(9, 10, method="wilson")
    assert (table.loc[0, "ci_low"], table.loc[0, "ci_high"]) == pytest.approx((low, high))
    assert not table["significant"].any()  # ten votes per image cannot survive Holm over four images


def test_analyze_counts_models_images_won_and_left_choices():
    summary = analyze(prepare_votes(votes_frame({"a": (30, 0), "b": (25, 5), "c": (10, 20)}))).summary

    assert (summary["n_participants"], summary["n_votes"], summary["n_images"]) == (30, 90, 3)
    assert summary["models"]["dogs"] | {"share_ci95": None} == {
        "votes": 65, "share": pytest.approx(65 / 90), "images_won": 2, "share_ci95": None}
    assert summary["models"]["generic"]["images_won"] == 1
    assert summary["sign_test"] == {"model": "dogs", "images_won": 2, "images_lost": 1, "ties": 0,
                                    "p_value": pytest.approx(1.0)}
    assert summary["left_choices"]["share"] == pytest.approx(46 / 90)  # 15 + 16 + 15 left choices
    assert summary["showcase"] == {"most_preferred_generic": "c", "most_preferred_dogs": "a", "most_even": "c"}
    assert [image["significant"] for image in summary["images"]] == [True, True, False]
    assert summary["catch"]["n_votes"] == 0 and summary["catch"]["pass_rate"] is None
    json.dumps(summary)  # must be plain JSON types all the way down


def test_failed_catch_participants_are_kept_unless_excluded():
    votes = votes_frame({"a": (2, 2)})
    catch = [vote_row("p0", "x", "dogs", CATCH_MODEL, CATCH_MODEL), vote_row("p1", "x", CATCH_MODEL, "dogs", "dogs")]
    votes = prepare_votes(pd.concat([votes, pd.DataFrame(catch)], ignore_index=True))

    kept = analyze(votes).summary
    assert kept["n_participants"] == 4 and kept["n_votes"] == 4
    assert kept["catch"] == {"n_votes": 2, "pass_rate": 0.5, "n_participants_failed": 1, "excluded": False}
    excluded = analyze(votes, exclude_failed_catch=True).summary
    assert excluded["n_participants"] == 3 and excluded["catch"]["excluded"]


def test_clustered_interval_is_reproducible_and_wider_than_the_independent_one():
    votes = prepare_votes(simulate_votes(seed=3))
    votes = votes[~votes["is_catch"]]
    share = votes["chosen_model"].eq("dogs").mean()

    low, high = clustered_share_interval(votes, "dogs", seed=7)
    assert (low, high) == clustered_share_interval(votes, "dogs", seed=7)
    assert low < share < high
    wilson_low, wilson_high = proportion_confint(votes["chosen_model"].eq("dogs").sum(), len(votes), method="wilson")
    # Images differ a lot in the simulated study, so the clustered interval must be much wider.
    assert high - low > 3 * (wilson_high - wilson_low)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda votes: votes.drop(columns="chosen_model"), "lack the columns chosen_model"),
        (lambda votes: votes.assign(choice="up"), "choice must be left or right"),
        (lambda votes: votes.assign(is_catch="maybe"), "is_catch must be true or false"),
        (lambda votes: votes.iloc[:0], "no votes"),
    ],
)
def test_prepare_votes_rejects_malformed_rows(change, message):
    with pytest.raises(UserError, match=message):
        prepare_votes(change(votes_frame({"a": (1, 1)})))


def test_model_order_needs_exactly_two_models():
    votes = pd.concat([votes_frame({"a": (1, 1)}), votes_frame({"b": (1, 1)}, models=("dogs", "other"))])
    with pytest.raises(UserError, match="two models, found 3"):
        model_order(votes)
    assert model_order(votes_frame({"a": (1, 3)})) == ("generic", "dogs")  # the winner comes first


def test_csv_export_round_trip_parses_booleans_and_selects_the_study(tmp_path):
    votes = votes_frame({"7": (3, 1)})
    path = tmp_path / "votes.csv"
    pd.concat([votes, votes.assign(study="other", chosen_model="generic")]).to_csv(path, index=False)

    loaded = load_votes_csv(path, study="test")
    assert len(loaded) == 4 and loaded["is_catch"].dtype == bool
    assert loaded["image_id"].tolist() == ["7"] * 4
    with pytest.raises(UserError, match="no such vote file"):
        load_votes_csv(tmp_path / "missing.csv")


def test_output_folder_has_summary_report_and_figures_and_notes_missing_stimuli(tmp_path):
    votes = prepare_votes(votes_frame({"a": (9, 1), "b": (6, 4), "c": (1, 9)}))
    summary = write_vote_analysis(votes, tmp_path, stimuli=[])

    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    for name in ("figure2_votes_per_image.png", "figure2_votes_per_image.pdf"):
        assert (tmp_path / name).stat().st_size > 1000
    report = (tmp_path / "report.md").read_text()
    assert "![Figure 2](figure2_votes_per_image.png)" in report
    assert "Figure 3 (the image most preferred for generic, image c) is not drawn" in report
    assert "Simulated data" not in report


def analyze_command(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="colorizer")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["analyze", *argv])
    return args.func(args)


def test_analyze_votes_command_reads_a_csv_export(tmp_path, capsys):
    csv = tmp_path / "votes.csv"
    simulate_votes(n_participants=9, image_ids=["a", "b", "c"], share=0.6, images_won=2).to_csv(csv, index=False)

    assert analyze_command("votes", "--csv", str(csv), "--out", str(tmp_path / "out")) == 0
    assert "9 participants, 27 votes: dogs 59.3% of the votes, 2 of 3 images won" in capsys.readouterr().out
    assert "Simulated data" in (tmp_path / "out" / "report.md").read_text()
    with pytest.raises(SystemExit):
        analyze_command("votes", "--csv", str(csv), "--db", "sqlite://", "--out", "x")


def test_analyze_votes_command_draws_the_montages_of_a_prepared_study(tmp_path):
    from PIL import Image

    photos = tmp_path / "photos"
    photos.mkdir()
    for number in range(4):
        Image.new("RGB", (48, 32), (60 * number, 90, 120)).save(photos / f"{number}.png")
    db = f"sqlite:///{tmp_path / 'votes.db'}"
    identity = {"dogs": lambda photo: photo, "generic": lambda photo: photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT)}
    prepare_study(db, "simulated-small", identity, photos, tmp_path / "media", n=3, catch=1)
    write_simulated_study(db, "simulated-small")

    out = tmp_path / "out"
    assert analyze_command("votes", "--db", db, "--study", "simulated-small", "--out", str(out)) == 0
    summary = json.loads((out / "summary.json").read_text())
    # The paper's 73 participants and 219 votes, less the few simulated votes under 600 ms (invalid).
    assert (summary["n_participants"], summary["studies"]) == (73, ["simulated-small"])
    assert summary["n_votes"] + summary["invalid_votes_excluded"] == 219 and summary["invalid_votes_excluded"] < 5
    assert summary["models"]["dogs"]["images_won"] == 2  # 70% of three images, as in the paper
    assert sorted(summary["figures"]) == [
        "bradley_terry", "figure2", "most_even", "most_preferred_dogs", "most_preferred_generic", "win_matrix"]
    assert summary["bradley_terry"]["scores"]["dogs"] > summary["bradley_terry"]["scores"]["generic"]
    assert "is not drawn" not in (out / "report.md").read_text()


STRENGTHS = {"truth": 1.2, "dogs": 0.4, "generic": -0.4, "ddcolor": -1.2}


def test_bradley_terry_recovers_known_strengths_and_fooling_rates():
    images = [f"i{k}" for k in range(12)]
    votes = prepare_votes(simulate_condition_votes(STRENGTHS, n_participants=60, image_ids=images))
    summary = analyze(votes, seed=1).summary
    bradley_terry = summary["bradley_terry"]
    assert summary["conditions"] == list(STRENGTHS)  # ranked by score
    assert sum(bradley_terry["scores"].values()) == pytest.approx(0, abs=1e-9)
    for condition, strength in STRENGTHS.items():  # the strengths have mean 0 already
        low, high = bradley_terry["ci95"][condition]
        assert low < strength < high and low < bradley_terry["scores"][condition] < high
    for condition in ("dogs", "generic", "ddcolor"):
        expected = 1 / (1 + np.exp(STRENGTHS["truth"] - STRENGTHS[condition]))
        low, high = summary["fooling_rate"]["ci95"][condition]
        assert low < expected < high
        assert summary["fooling_rate"]["rates"][condition] == pytest.approx(expected, abs=0.06)
    assert summary["win_matrix"]["truth"]["ddcolor"] > summary["win_matrix"]["ddcolor"]["truth"]
    json.dumps(summary)


def test_bradley_terry_intervals_allow_for_participants_who_agree_with_themselves():
    """Participants with strong personal tastes (half always choose the condition first in the
    alphabet, half the last): the intervals from resampling participants must be wider than those of
    the same votes treated as independent (each vote its own participant)."""
    votes = simulate_condition_votes(STRENGTHS, 30, [f"i{k}" for k in range(12)])
    taste = votes["participant_id"].str[-1].astype(int) % 2 == 0
    pair = votes[["left_model", "right_model"]]
    votes = votes.assign(chosen_model=np.where(taste, pair.min(axis=1), pair.max(axis=1)))
    votes = prepare_votes(votes.assign(choice=np.where(votes["chosen_model"] == votes["left_model"], "left", "right")))
    independent = votes.assign(participant_id=[f"v{k}" for k in range(len(votes))])
    def width(summary: dict) -> float:
        return np.mean([high - low for low, high in summary["bradley_terry"]["ci95"].values()])

    assert width(analyze(votes).summary) > 1.2 * width(analyze(independent).summary)


def test_several_conditions_write_win_matrix_scores_and_figure2(tmp_path):
    votes = prepare_votes(simulate_condition_votes(STRENGTHS, 24, ["a", "b", "c"]))
    summary = write_vote_analysis(votes, tmp_path)
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    assert sorted(summary["figures"]) == ["bradley_terry", "figure2", "win_matrix"]
    for stem in ("figure2_votes_per_image", "win_matrix", "bradley_terry_scores"):
        assert (tmp_path / f"{stem}.png").stat().st_size > 1000
    report = (tmp_path / "report.md").read_text()
    assert "## Fooling rates" in report and "Simulated data" in report
    assert [image["image_id"] for image in summary["images"]] and "models" not in summary


def test_practice_votes_are_left_out():
    votes = votes_frame({"a": (3, 1)}).assign(is_practice=False)
    practice = votes_frame({"p": (0, 4)}).assign(is_practice=True)
    summary = analyze(prepare_votes(pd.concat([votes, practice], ignore_index=True))).summary
    assert summary["n_votes"] == 4 and summary["n_images"] == 1
    assert summary["models"]["dogs"]["votes"] == 3
