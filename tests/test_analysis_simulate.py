"""The simulator hits the marginals it is given, and the analysis gives the paper's numbers back."""

from __future__ import annotations

import pytest

from analysis.simulate import simulate_votes, write_simulated_study
from analysis.votes import analyze, load_votes, prepare_votes
from colorizer.errors import UserError


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_paper_marginals_come_back_from_the_analysis(seed):
    votes = prepare_votes(simulate_votes(seed=seed))
    summary = analyze(votes, seed=seed).summary

    assert (summary["n_participants"], summary["n_images"], summary["n_votes"]) == (73, 30, 73 * 30)
    dogs, generic = summary["models"]["dogs"], summary["models"]["generic"]
    assert round(dogs["share"], 2) == 0.68
    assert (dogs["images_won"], generic["images_won"]) == (21, 9)
    assert dogs["share_ci95"][0] < 0.68 < dogs["share_ci95"][1]
    assert summary["catch"]["n_votes"] == 73 * 2


def test_other_marginals_are_hit_exactly_including_ties():
    votes = simulate_votes(n_participants=10, image_ids=list("abcde"), share=0.5, images_won=2, catch_ids=[])
    summary = analyze(prepare_votes(votes)).summary

    first = next(iter(summary["models"]))
    assert summary["n_votes"] == 50 and summary["models"][first]["votes"] == 25
    assert summary["models"]["dogs"]["images_won"] == 2
    assert summary["catch"]["n_votes"] == 0


def test_same_seed_same_votes_and_sides_balanced_within_participants():
    votes = simulate_votes(seed=5)
    assert votes.equals(simulate_votes(seed=5))
    assert not votes["chosen_model"].equals(simulate_votes(seed=6)["chosen_model"])
    dogs_on_left = votes[votes["left_model"] == "dogs"].groupby("participant_id").size()
    assert dogs_on_left.between(15, 16).all()  # half of 32 trials, less the catch pairs without dogs


def test_impossible_marginals_are_refused():
    with pytest.raises(ValueError, match="cannot win exactly 30 of 30"):
        simulate_votes(share=0.3, images_won=30)


def test_simulated_database_gives_the_paper_numbers_back(tmp_path):
    db = f"sqlite:///{tmp_path / 'votes.db'}"
    assert write_simulated_study(db) == 73 * 32

    summary = analyze(load_votes(db)).summary
    assert (summary["n_participants"], summary["n_images"], summary["n_votes"]) == (73, 30, 73 * 30)
    assert round(summary["models"]["dogs"]["share"], 2) == 0.68
    assert summary["models"]["dogs"]["images_won"] == 21
    with pytest.raises(UserError, match="already has participants"):
        write_simulated_study(db)
    with pytest.raises(UserError, match="must start with 'simulated'"):
        write_simulated_study(db, name="pilot")


def test_simulated_participants_are_stored_as_the_study_stores_finished_ones(tmp_path):
    from sqlalchemy import func, select

    from study.db import database_session
    from study.models import Assignment, Participant

    db = f"sqlite:///{tmp_path / 'votes.db'}"
    write_simulated_study(db)
    with database_session(db) as session:
        participants = session.scalars(select(Participant)).all()
        assert len(participants) == 73 and all(p.completed_at == p.last_active_at is not None for p in participants)
        assignments = session.scalars(select(Assignment)).all()
        assert len({a.public_id for a in assignments}) == len(assignments) == 73 * 32
        assert all(a.left_name != a.right_name and a.released_at is not None for a in assignments)
        assert session.scalar(select(func.count()).select_from(Assignment).where(Assignment.position == 31)) == 73
