"""Statistics of a forced-choice preference study: the paper's two-model analysis (section 5.1), and
for any number of conditions Bradley-Terry scores, the win matrix and, against the ground truth,
fooling rates.

Everything works on a pandas DataFrame with one row per vote, in the shape `study.export.vote_rows`
returns, so the statistics are testable without a database; `load_votes` and `load_votes_csv` are
the only functions that touch storage.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from colorizer.errors import UserError
from study.models import CATCH_MODEL, TRUTH

if TYPE_CHECKING:
    import pandas as pd

REQUIRED_COLUMNS = (
    "participant_id", "image_id", "left_model", "right_model", "chosen_model", "choice", "rt_ms", "is_catch",
)
ALPHA = 0.05
BOOTSTRAP_REPLICATES = 2000
BOOTSTRAP_METHOD = (
    "two-way (pigeonhole) cluster bootstrap: participants and images resampled independently, "
    f"{BOOTSTRAP_REPLICATES} replicates, percentile interval"
)
# choix's regularisation (a small virtual comparison between every pair): keeps the estimate finite
# when, in a bootstrap replicate, a condition never wins; negligible against real vote counts.
BRADLEY_TERRY_ALPHA = 0.01
BRADLEY_TERRY_METHOD = (
    "Bradley-Terry maximum likelihood (choix.ilsr_pairwise_dense, alpha 0.01), log-strengths centred to "
    "mean 0; intervals from the same two-way cluster bootstrap, refitted on each replicate"
)

_TRUE_TEXT = {"true", "t", "1", "yes"}
_FALSE_TEXT = {"false", "f", "0", "no"}


@dataclass(frozen=True)
class VoteAnalysis:
    models: tuple[str, ...]  # the conditions: the overall winner first (two), by Bradley-Terry score (more)
    images: pd.DataFrame  # two conditions: per_image_table; more: per_image_condition_table
    win_matrix: pd.DataFrame  # wins of the row's condition over the column's
    summary: dict[str, Any]  # JSON-ready, written as summary.json


def load_votes(db_url: str, study: str | None = None) -> pd.DataFrame:
    import pandas as pd

    from study.export import vote_rows

    return prepare_votes(pd.DataFrame(vote_rows(db_url, study=study)))


def load_votes_csv(path: str | Path, study: str | None = None) -> pd.DataFrame:
    """Votes from a `colorizer study export` CSV file."""
    import pandas as pd

    try:
        votes = pd.read_csv(path)
    except FileNotFoundError:
        raise UserError(f"no such vote file: {path}") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read {path} as CSV: {error}") from None
    if study is not None:
        if "study" not in votes:
            raise UserError(f"{path} has no study column to select study {study!r} with")
        votes = votes[votes["study"] == study]
    return prepare_votes(votes)


def prepare_votes(votes: pd.DataFrame) -> pd.DataFrame:
    """Check the columns and normalise types (ids as text, booleans from CSV text) of raw vote rows."""
    import pandas as pd

    if votes.empty:
        raise UserError("no votes to analyse")
    missing = [column for column in REQUIRED_COLUMNS if column not in votes]
    if missing:
        raise UserError(f"the vote rows lack the columns {', '.join(missing)}")
    votes = votes.assign(
        participant_id=votes["participant_id"].astype(str),
        image_id=votes["image_id"].astype(str),
        is_catch=_as_bool(votes["is_catch"]),
        rt_ms=pd.to_numeric(votes["rt_ms"], errors="coerce"),
        # Too fast, or a response time the server's clock contradicts (exports from before: none).
        invalid=_as_bool(votes["invalid"].fillna(False)) if "invalid" in votes else False,
    )
    bad_choices = ~votes["choice"].isin(["left", "right"])
    if bad_choices.any():
        raise UserError(f"choice must be left or right, got {votes.loc[bad_choices, 'choice'].iloc[0]!r}")
    if "is_practice" in votes:
        # Practice trials only teach the task: they are never analysed.
        votes = votes[~_as_bool(votes["is_practice"].fillna(False))]
        if votes.empty:
            raise UserError("only practice votes: nothing to analyse")
    # Derived rather than read, so database rows and CSV exports agree on what passing means.
    return votes.assign(catch_passed=votes["is_catch"] & votes["chosen_model"].ne(CATCH_MODEL))


def _as_bool(column: pd.Series) -> pd.Series:
    if column.dtype == bool:
        return column
    text = column.astype(str).str.strip().str.lower()
    unknown = ~text.isin(_TRUE_TEXT | _FALSE_TEXT)
    if unknown.any():
        raise UserError(f"{column.name} must be true or false, got {column[unknown].iloc[0]!r}")
    return text.isin(_TRUE_TEXT)


def participants_failing_catch(votes: pd.DataFrame) -> set[str]:
    catch = votes[votes["is_catch"]]
    return set(catch.loc[~catch["catch_passed"], "participant_id"])


def analysed_votes(votes: pd.DataFrame, exclude_failed_catch: bool) -> pd.DataFrame:
    """The non-catch votes, without the participants who failed a catch trial if asked."""
    analysed = votes[~votes["is_catch"]]
    if exclude_failed_catch:
        analysed = analysed[~analysed["participant_id"].isin(participants_failing_catch(votes))]
    if analysed.empty:
        raise UserError("no non-catch votes left to analyse")
    return analysed


def model_order(votes: pd.DataFrame) -> tuple[str, str]:
    """The two compared models, the one with more votes first (ties by name)."""
    models = sorted(set(votes["left_model"]) | set(votes["right_model"]))
    if len(models) != 2:
        raise UserError(f"expected votes between two models, found {len(models)}: {', '.join(models)}")
    tally = votes["chosen_model"].value_counts()
    first, second = sorted(models, key=lambda model: (-tally.get(model, 0), model))
    return first, second


def per_image_table(votes: pd.DataFrame, models: tuple[str, str]) -> pd.DataFrame:
    """Per image: votes and share for models[0], Wilson 95% interval, exact binomial p against 50%,
    Holm-adjusted p over all images, the significance flag and the majority winner (None on a tie)."""
    import pandas as pd
    from scipy.stats import binomtest
    from statsmodels.stats.multitest import multipletests
    from statsmodels.stats.proportion import proportion_confint

    first, second = models
    table = (
        votes.assign(for_first=votes["chosen_model"].eq(first))
        .groupby("image_id")["for_first"]
        .agg(n_votes="size", votes_first="sum")
        .reset_index()
    )
    won, n = table["votes_first"].to_numpy(), table["n_votes"].to_numpy()
    ci_low, ci_high = proportion_confint(won, n, alpha=ALPHA, method="wilson")
    p_values = [binomtest(int(k), int(total)).pvalue for k, total in zip(won, n, strict=True)]
    significant, p_holm, _, _ = multipletests(p_values, alpha=ALPHA, method="holm")
    winner = [first if 2 * k > total else second if 2 * k < total else None for k, total in zip(won, n, strict=True)]
    table = table.assign(
        share_first=won / n, ci_low=ci_low, ci_high=ci_high,
        p_value=p_values, p_holm=p_holm, significant=significant,
        winner=pd.Series(winner, dtype=object),  # object, so a tie stays None rather than NaN
    )
    return table.sort_values(["share_first", "image_id"], ascending=[False, True], ignore_index=True)


def clustered_share_interval(
    votes: pd.DataFrame, model: str, seed: int = 0, replicates: int = BOOTSTRAP_REPLICATES
) -> tuple[float, float]:
    """95% interval for the model's share of all votes that allows for votes being correlated
    within a participant and within an image.

    Owen's pigeonhole bootstrap (Owen 2007): each replicate draws participants and images
    independently with replacement and takes the share over the crossed sample. It needs no model
    fit and costs one tensor contraction for all replicates. It errs on the safe side: about right
    when participants or images differ (as they do in preference studies), up to sqrt(3) too wide
    when every vote is independent (docs/analysis.md has the coverage measured).
    """
    import numpy as np

    cells = (
        votes.assign(chosen=votes["chosen_model"].eq(model))
        .groupby(["participant_id", "image_id"])["chosen"]
        .agg(["sum", "size"])
    )
    chosen = cells["sum"].unstack(fill_value=0).to_numpy(float)
    shown = cells["size"].unstack(fill_value=0).to_numpy(float)
    participant_draws, image_draws = pigeonhole_draws(*shown.shape, seed, replicates)
    chosen_total = np.einsum("rp,pi,ri->r", participant_draws, chosen, image_draws, optimize=True)
    shown_total = np.einsum("rp,pi,ri->r", participant_draws, shown, image_draws, optimize=True)
    shares = chosen_total[shown_total > 0] / shown_total[shown_total > 0]
    low, high = np.percentile(shares, [100 * ALPHA / 2, 100 * (1 - ALPHA / 2)])
    return float(low), float(high)


def pigeonhole_draws(n_participants: int, n_images: int, seed: int, replicates: int) -> tuple[Any, Any]:
    """How often each participant and each image is drawn in each bootstrap replicate (Owen 2007)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    participant_draws = rng.multinomial(n_participants, np.full(n_participants, 1 / n_participants), replicates)
    image_draws = rng.multinomial(n_images, np.full(n_images, 1 / n_images), replicates)
    return participant_draws, image_draws


def condition_names(votes: pd.DataFrame) -> list[str]:
    """The compared conditions (models, truth, imports), catch stimuli aside, sorted by name."""
    conditions = sorted((set(votes["left_model"]) | set(votes["right_model"])) - {CATCH_MODEL})
    if len(conditions) < 2:
        raise UserError(f"expected votes between at least two conditions, found {len(conditions)}")
    return conditions


def win_counts(votes: pd.DataFrame, conditions: list[str]) -> Any:
    """wins[participant, image, i, j]: how often conditions[i] was chosen over conditions[j], per
    participant and image (in the order of their sorted ids), for the bootstrap."""
    import numpy as np

    index = {condition: number for number, condition in enumerate(conditions)}
    participants, participant_number = np.unique(votes["participant_id"], return_inverse=True)
    images, image_number = np.unique(votes["image_id"], return_inverse=True)
    loser = np.where(votes["chosen_model"].eq(votes["left_model"]), votes["right_model"], votes["left_model"])
    wins = np.zeros((len(participants), len(images), len(conditions), len(conditions)))
    np.add.at(wins, (participant_number, image_number, votes["chosen_model"].map(index).to_numpy(),
                     np.vectorize(index.get)(loser)), 1)
    return wins


def bradley_terry_scores(wins: Any) -> Any:
    """Log-strengths, centred to mean 0, from a matrix of wins (row over column)."""
    import choix

    scores = choix.ilsr_pairwise_dense(wins.astype(float), alpha=BRADLEY_TERRY_ALPHA)
    return scores - scores.mean()


def bradley_terry(
    votes: pd.DataFrame, conditions: list[str], seed: int = 0, replicates: int = BOOTSTRAP_REPLICATES
) -> dict[str, Any]:
    """Bradley-Terry scores with 95% intervals, the win matrix and, when `truth` is a condition, the
    fooling rate of every other condition (share of its trials against the truth where it was chosen),
    all with intervals from the two-way cluster bootstrap: participants' votes (and images' votes)
    are correlated, so each replicate resamples whole participants and whole images and refits."""
    import numpy as np

    wins = win_counts(votes, conditions)
    participant_draws, image_draws = pigeonhole_draws(wins.shape[0], wins.shape[1], seed, replicates)
    replicate_wins = np.einsum("rp,pmij,rm->rij", participant_draws, wins, image_draws, optimize=True)
    total = wins.sum(axis=(0, 1))
    scores = bradley_terry_scores(total)
    replicate_scores = np.array([bradley_terry_scores(matrix) for matrix in replicate_wins])
    bounds = np.percentile(replicate_scores, [100 * ALPHA / 2, 100 * (1 - ALPHA / 2)], axis=0)
    result: dict[str, Any] = {
        "bradley_terry": {
            "scores": {condition: float(scores[i]) for i, condition in enumerate(conditions)},
            "ci95": {condition: [float(bounds[0, i]), float(bounds[1, i])] for i, condition in enumerate(conditions)},
            "method": BRADLEY_TERRY_METHOD,
        },
        "win_matrix": {a: {b: int(total[i, j]) for j, b in enumerate(conditions) if i != j}
                       for i, a in enumerate(conditions)},
    }
    if TRUTH in conditions:
        t = conditions.index(TRUTH)
        rates, intervals = {}, {}
        for i, condition in enumerate(conditions):
            if i == t or total[i, t] + total[t, i] == 0:
                continue
            rates[condition] = float(total[i, t] / (total[i, t] + total[t, i]))
            shown = replicate_wins[:, i, t] + replicate_wins[:, t, i]
            shares = replicate_wins[shown > 0, i, t] / shown[shown > 0]
            low, high = np.percentile(shares, [100 * ALPHA / 2, 100 * (1 - ALPHA / 2)])
            intervals[condition] = [float(low), float(high)]
        result["fooling_rate"] = {"rates": rates, "ci95": intervals,
                                  "n": {c: int(total[conditions.index(c), t] + total[t, conditions.index(c)])
                                        for c in rates}}
    return result


def per_image_condition_table(votes: pd.DataFrame, conditions: list[str]) -> pd.DataFrame:
    """Per image and condition: trials (the condition was one of the pair), wins, win rate and its
    Wilson 95% interval. Images are sorted by the first condition's win rate, descending."""
    import pandas as pd
    from statsmodels.stats.proportion import proportion_confint

    rows = []
    for side in ("left_model", "right_model"):
        rows.append(votes[["image_id", side, "chosen_model"]].rename(columns={side: "condition"}))
    shown = pd.concat(rows, ignore_index=True)
    shown = shown[shown["condition"].isin(conditions)]
    table = (
        shown.assign(won=shown["condition"].eq(shown["chosen_model"]))
        .groupby(["image_id", "condition"])["won"]
        .agg(trials="size", wins="sum")
        .reset_index()
    )
    low, high = proportion_confint(table["wins"], table["trials"], alpha=ALPHA, method="wilson")
    table = table.assign(win_rate=table["wins"] / table["trials"], ci_low=low, ci_high=high)
    first_rate = table[table["condition"] == conditions[0]].set_index("image_id")["win_rate"]
    order = {image: rank for rank, image in enumerate(first_rate.sort_values(ascending=False, kind="stable").index)}
    table = table.assign(order=table["image_id"].map(order).fillna(len(order)))
    return table.sort_values(["order", "image_id", "condition"], ignore_index=True).drop(columns="order")


def proportion_test(successes: int, trials: int) -> dict[str, Any]:
    """Share with its Wilson 95% interval and the exact two-sided binomial p against 50%."""
    from scipy.stats import binomtest
    from statsmodels.stats.proportion import proportion_confint

    if trials == 0:
        return {"n": 0, "share": None, "ci95": None, "p_value": None}
    low, high = proportion_confint(successes, trials, alpha=ALPHA, method="wilson")
    return {
        "n": trials,
        "share": successes / trials,
        "ci95": [float(low), float(high)],
        "p_value": float(binomtest(successes, trials).pvalue),
    }


def sign_test(images: pd.DataFrame, models: tuple[str, str]) -> dict[str, Any]:
    """Exact sign test over images: does models[0] win more images than chance? Ties are dropped."""
    first, second = models
    won = int((images["winner"] == first).sum())
    lost = int((images["winner"] == second).sum())
    test = proportion_test(won, won + lost)
    return {"model": first, "images_won": won, "images_lost": lost, "ties": len(images) - won - lost,
            "p_value": test["p_value"]}


def showcase_images(images: pd.DataFrame, models: tuple[str, str]) -> dict[str, str]:
    """The paper's figures 3 to 5: the image each model was most preferred on (the paper shows the
    overall loser's first) and the most evenly split image. Ties go to the image with more votes."""
    first, second = models
    share = images["share_first"]
    return {
        f"most_preferred_{second}": _image_with_least(images, share),
        f"most_preferred_{first}": _image_with_least(images, -share),
        "most_even": _image_with_least(images, (share - 0.5).abs()),
    }


def _image_with_least(images: pd.DataFrame, score: pd.Series) -> str:
    ranked = images.assign(score=score).sort_values(["score", "n_votes"], ascending=[True, False])
    return ranked["image_id"].iloc[0]


def analyze(votes: pd.DataFrame, exclude_failed_catch: bool = False, seed: int = 0) -> VoteAnalysis:
    """All the vote statistics of the report; `votes` as from `prepare_votes`, catch trials included,
    invalid votes left out (and counted).
    Two conditions give the paper's analysis; every number of conditions gets Bradley-Terry scores,
    the win matrix and, with `truth` among them, fooling rates."""
    import pandas as pd

    invalid = int(votes["invalid"].sum())
    votes = votes[~votes["invalid"]]
    if votes.empty:
        raise UserError(f"all {invalid} votes are invalid (faster than the study's minimum response time): "
                        "nothing to analyse")
    failing = participants_failing_catch(votes)
    analysed = analysed_votes(votes, exclude_failed_catch)
    conditions = condition_names(analysed)
    paired = bradley_terry(analysed, conditions, seed=seed)
    catch = votes[votes["is_catch"]]
    rt = analysed["rt_ms"].dropna()
    summary = {
        "n_participants": int(analysed["participant_id"].nunique()),
        "n_votes": len(analysed),
        "n_images": int(analysed["image_id"].nunique()),
        "conditions": conditions,
        "left_choices": proportion_test(int(analysed["choice"].eq("left").sum()), len(analysed)),  # position bias
        "catch": {
            "n_votes": len(catch),
            "pass_rate": float(catch["catch_passed"].mean()) if len(catch) else None,
            "n_participants_failed": len(failing),
            "excluded": exclude_failed_catch,
        },
        "response_time_ms": {
            "median": float(rt.median()) if len(rt) else None,
            "quartiles": [float(rt.quantile(0.25)), float(rt.quantile(0.75))] if len(rt) else None,
        },
        # Left out of everything above, catch trials included.
        "invalid_votes_excluded": invalid,
        "bootstrap_seed": seed,
    } | paired
    win_matrix = pd.DataFrame(paired["win_matrix"]).T.reindex(index=conditions, columns=conditions)
    if len(conditions) == 2:
        return analyze_pair(analysed, summary, win_matrix, seed)
    scores = paired["bradley_terry"]["scores"]
    ranked = tuple(sorted(conditions, key=lambda condition: (-scores[condition], condition)))
    images = per_image_condition_table(analysed, list(ranked))
    summary["conditions"] = list(ranked)
    summary["images"] = [
        {"image_id": image_id,
         "conditions": {row.condition: _condition_record(row) for row in rows.itertuples(index=False)}}
        for image_id, rows in images.groupby("image_id", sort=False)
    ]
    return VoteAnalysis(models=ranked, images=images, win_matrix=win_matrix.loc[list(ranked), list(ranked)],
                        summary=summary)


def _condition_record(row: Any) -> dict[str, Any]:
    return {"trials": int(row.trials), "wins": int(row.wins), "win_rate": float(row.win_rate),
            "ci95": [float(row.ci_low), float(row.ci_high)]}


def analyze_pair(analysed: pd.DataFrame, summary: dict[str, Any], win_matrix: pd.DataFrame, seed: int) -> VoteAnalysis:
    """The paper's two-model analysis on top of `summary`: shares, images won, sign test, showcase."""
    models = model_order(analysed)
    images = per_image_table(analysed, models)
    first, second = models
    n_votes = len(analysed)
    first_votes = int(analysed["chosen_model"].eq(first).sum())
    low, high = clustered_share_interval(analysed, first, seed=seed)
    shares = {first: first_votes / n_votes, second: 1 - first_votes / n_votes}
    intervals = {first: [low, high], second: [1 - high, 1 - low]}
    summary = summary | {
        "n_images": len(images),
        "conditions": list(models),
        "models": {
            model: {
                "votes": first_votes if model == first else n_votes - first_votes,
                "share": shares[model],
                "share_ci95": intervals[model],
                "images_won": int((images["winner"] == model).sum()),
            }
            for model in models
        },
        "share_interval_method": BOOTSTRAP_METHOD,
        "share_unclustered": proportion_test(first_votes, n_votes) | {"model": first},
        "sign_test": sign_test(images, models),
        "showcase": showcase_images(images, models),
        "images": [_image_record(row, models) for row in images.itertuples(index=False)],
    }
    return VoteAnalysis(models=models, images=images, win_matrix=win_matrix.loc[list(models), list(models)],
                        summary=summary)


def _image_record(row: Any, models: tuple[str, str]) -> dict[str, Any]:
    first, second = models
    return {
        "image_id": row.image_id,
        "n_votes": int(row.n_votes),
        "votes": {first: int(row.votes_first), second: int(row.n_votes - row.votes_first)},
        "share": {first: float(row.share_first), second: float(1 - row.share_first)},
        "ci95": {first: [float(row.ci_low), float(row.ci_high)], second: [float(1 - row.ci_high), float(1 - row.ci_low)]},
        "p_value": float(row.p_value),
        "p_holm": float(row.p_holm),
        "significant": bool(row.significant),
        "winner": row.winner,
    }
