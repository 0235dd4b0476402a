"""Synthetic vote sets with chosen marginals, in the row shape of `study.export.vote_rows`.

The default reproduces the paper's study (section 5.1): 73 participants judge 30 image pairs,
68% of the votes go to the dogs model, which wins the majority on 21 images. The marginals are hit
exactly, so analysing the simulated votes must give them back; everything else (which participants
vote which way, sides, response times, catch failures) is random but seeded.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy as np
    import pandas as pd
    from sqlalchemy.orm import Session

    from study.models import Study, Trial

# A study whose name starts with this is labelled as simulated in every report and figure.
SIMULATED_PREFIX = "simulated"
SIMULATED_STUDY_NAME = f"{SIMULATED_PREFIX}-paper-study"
PAPER_PARTICIPANTS = 73
PAPER_IMAGE_IDS = tuple(f"img{number:02d}" for number in range(1, 31))
PAPER_CATCH_IDS = ("catch1", "catch2")
PAPER_SHARE = 0.68
PAPER_IMAGES_WON = 21
_START = datetime(2024, 1, 1, tzinfo=UTC)


def simulate_votes(
    n_participants: int = PAPER_PARTICIPANTS,
    image_ids: Sequence[str] = PAPER_IMAGE_IDS,
    models: tuple[str, str] = ("dogs", "generic"),
    share: float = PAPER_SHARE,
    images_won: int = PAPER_IMAGES_WON,
    catch_ids: Sequence[str] = PAPER_CATCH_IDS,
    catch_pass_rate: float = 0.95,
    participant_spread: float = 0.5,
    seed: int = 0,
    study: str = SIMULATED_STUDY_NAME,
) -> pd.DataFrame:
    """Every participant votes once on every image and every catch pair, in a random order.

    round(share * votes) of the non-catch votes go to models[0], which gets more than half of the
    votes on exactly `images_won` images. `participant_spread` is the SD of the participants'
    log-odds of picking models[0], so votes cluster by participant as in a real study. Each catch
    pair puts one model against CATCH_MODEL and is passed with probability `catch_pass_rate`."""
    import numpy as np
    import pandas as pd

    from study.models import CATCH_MODEL

    rng = np.random.default_rng(seed)
    first, second = models
    n_images = len(image_ids)
    total_first = round(share * n_participants * n_images)
    votes_first = _votes_per_image(rng, n_participants, n_images, total_first, images_won)
    leaning = np.exp(participant_spread * rng.standard_normal(n_participants))
    prefers_first = np.zeros((n_participants, n_images), dtype=bool)
    for image, k in enumerate(votes_first):
        prefers_first[rng.choice(n_participants, size=k, replace=False, p=leaning / leaning.sum()), image] = True

    rows = []
    for participant in range(n_participants):
        participant_id = f"sim-p{participant + 1:03d}"
        trials = [(image_id, (first, second), first if prefers_first[participant, image] else second)
                  for image, image_id in enumerate(image_ids)]
        for catch, image_id in enumerate(catch_ids):
            real = models[catch % 2]
            trials.append((image_id, (real, CATCH_MODEL), real if rng.random() < catch_pass_rate else CATCH_MODEL))
        # Sides balanced within each participant, trial order shuffled, as the study app does.
        pair_as_given = rng.permutation(len(trials)) < len(trials) // 2
        started = _START + timedelta(minutes=10 * participant)
        for position, trial in enumerate(rng.permutation(len(trials))):
            image_id, pair, chosen = trials[trial]
            left, right = pair if pair_as_given[trial] else pair[::-1]
            is_catch = CATCH_MODEL in pair
            rows.append({
                "participant_id": participant_id,
                "external_id": None,
                "trial_id": f"{participant_id}-t{trial + 1:02d}",
                "image_id": image_id,
                "left_model": left,
                "right_model": right,
                "chosen_model": chosen,
                "choice": "left" if chosen == left else "right",
                "rt_ms": int(rng.lognormal(np.log(1800), 0.4)),
                "is_catch": is_catch,
                "catch_passed": chosen != CATCH_MODEL if is_catch else None,
                "study": study,
                "created_at": started + timedelta(seconds=4 * position),
            })
    return pd.DataFrame(rows)


def _votes_per_image(
    rng: np.random.Generator, n_participants: int, n_images: int, total: int, images_won: int
) -> np.ndarray:
    """Votes for the first model on each image, summing to `total`, above half on `images_won` images."""
    import numpy as np

    if not 0 <= images_won <= n_images:
        raise ValueError(f"images_won must lie in 0..{n_images}, got {images_won}")
    half = n_participants // 2  # an image with at most this many votes is not won
    won = rng.permutation(n_images) < images_won
    low = np.where(won, half + 1, 0)
    high = np.where(won, n_participants, half)
    if not low.sum() <= total <= high.sum():
        raise ValueError(f"{total} votes cannot win exactly {images_won} of {n_images} images")
    counts = rng.integers(low, high + 1)
    # Move single votes between random images with room until the total is exact.
    while (gap := total - counts.sum()) != 0:
        room = high - counts if gap > 0 else counts - low
        counts[rng.choice(np.flatnonzero(room > 0))] += np.sign(gap)
    return counts


def write_simulated_study(db_url: str, name: str = SIMULATED_STUDY_NAME, seed: int = 0) -> int:
    """Fill study `name` with the paper's simulated votes through the study's ORM; return the vote count.

    An existing study (say one made by `colorizer study prepare --models dogs generic`, so figures 3
    to 5 have real stimuli) must have no participants yet; its first model gets 68% of the votes and
    wins 70% of the images, as dogs did in the paper. A missing study is created bare: dogs vs
    generic on 30 images and 2 catch pairs without stimulus files. The name must start with
    SIMULATED_PREFIX, so that every report on these votes says they are simulated.
    """
    from sqlalchemy import select

    from colorizer.errors import UserError
    from study.db import database_session
    from study.models import CATCH_MODEL, Study
    from study.service import GivenAnswer, add_finished_participant, has_participants

    if not name.startswith(SIMULATED_PREFIX):
        raise UserError(f"a simulated study's name must start with {SIMULATED_PREFIX!r}, got {name!r}")
    with database_session(db_url) as session, session.begin():
        study = session.scalars(select(Study).where(Study.name == name)).first() or _bare_study(session, name)
        if has_participants(session, study):
            raise UserError(f"study {name!r} already has participants")
        trials = simulated_trials(study)
        image_ids = [image_id for image_id, trial in trials.items() if not trial.is_catch]
        votes = simulate_votes(
            image_ids=image_ids,
            models=(study.model_a, study.model_b),
            images_won=round(PAPER_IMAGES_WON / len(PAPER_IMAGE_IDS) * len(image_ids)),
            catch_ids=[image_id for image_id, trial in trials.items() if trial.is_catch],
            seed=seed,
            study=name,
        )
        for _, rows in votes.groupby("participant_id", sort=False):
            answers = []
            for row in rows.itertuples(index=False):
                trial = trials[row.image_id]
                # Stimulus a is never the degraded side of a catch pair.
                a_on_left = row.left_model != CATCH_MODEL if trial.is_catch else row.left_model == trial.stimulus_a.model
                answers.append(GivenAnswer(trial, a_on_left, row.choice, int(row.rt_ms), row.created_at))
            add_finished_participant(session, study, answers, created_at=rows["created_at"].iloc[0])
        session.flush()
        return len(votes)


def simulated_trials(study: Study) -> dict[str, Trial]:
    """The trial every simulated participant gets per image: the last `study.catch_trials` photos of
    a study that draws catch trials from its photos (and the catch photos of studies from before)
    give their catch trial, every other photo its first compared pair."""
    by_image: dict[str, list[Trial]] = {}
    for trial in sorted(study.trials, key=lambda trial: (trial.image_id, trial.is_catch)):
        by_image.setdefault(str(trial.image_id), []).append(trial)
    pooled = [image for image, trials in by_image.items() if len({trial.is_catch for trial in trials}) == 2]
    as_catch = set(pooled[len(pooled) - (study.catch_trials or 0):])
    return {image: trials[-1] if image in as_catch else trials[0] for image, trials in by_image.items()}


def _bare_study(session: Session, name: str) -> Study:
    """Dogs vs generic on the paper's 30 images and 2 catch pairs, with no files behind the stimuli."""
    from study.models import CATCH_MODEL, Image, Stimulus, Study, Trial

    study = Study(name=name, model_a="dogs", model_b="generic", media_dir="", seed=0)
    for number in range(1, 33):
        is_catch = number > 30
        image = Image(source="", width=0, height=0)
        models = ("generic", CATCH_MODEL) if is_catch else ("dogs", "generic")
        a, b = (Stimulus(model=model, file_name=f"{name}-{number}-{model}.jpg", image=image) for model in models)
        study.images.append(image)
        study.trials.append(Trial(image=image, stimulus_a=a, stimulus_b=b, is_catch=is_catch))
    session.add(study)
    session.flush()  # assigns the ids that the votes refer to
    return study


class BradleyTerryChooser:
    """Simulated choices between conditions with known Bradley-Terry log-strengths: `a` is chosen
    over `b` with probability 1 / (1 + exp(s_b - s_a)), shifted per participant by a normal offset
    per condition (SD `participant_spread`), so that votes cluster by participant.

    The draws are low-discrepancy: for each pair of conditions the wins track their expected number
    to within one vote (a running balance decides), so a test of recovery checks the analysis, not
    the luck of one sample; who wins each trial still depends on the participant and the pair."""

    def __init__(self, strengths: dict[str, float], participant_spread: float = 0.0, seed: int = 0):
        import numpy as np

        self.strengths = dict(strengths)
        self.participant_spread = participant_spread
        self.rng = np.random.default_rng(seed)
        self.offsets: dict[tuple[str, str], float] = {}
        self.balance: dict[tuple[str, str], float] = {}
        self.expected: dict[tuple[str, str], float] = {}
        self.shown: dict[tuple[str, str], int] = {}

    def strength(self, condition: str, participant: str) -> float:
        if (participant, condition) not in self.offsets:
            self.offsets[participant, condition] = self.participant_spread * self.rng.standard_normal()
        return self.strengths[condition] + self.offsets[participant, condition]

    def choose(self, a: str, b: str, participant: str) -> str:
        import math

        first, second = sorted((a, b))
        p_first = 1 / (1 + math.exp(self.strength(second, participant) - self.strength(first, participant)))
        key = (first, second)
        self.expected[key] = self.expected.get(key, 0.0) + p_first
        self.shown[key] = self.shown.get(key, 0) + 1
        balance = self.balance.get(key, 0.0) + p_first
        chosen = first if balance >= 0.5 else second
        self.balance[key] = balance - (chosen == first)
        return chosen

    def expected_share(self, a: str, b: str) -> float:
        """The expected share of a's wins over b in the trials simulated so far."""
        first, second = sorted((a, b))
        share = self.expected[first, second] / self.shown[first, second]
        return share if a == first else 1 - share


def simulate_condition_votes(
    strengths: dict[str, float],
    n_participants: int,
    image_ids: Sequence[str],
    participant_spread: float = 0.3,
    seed: int = 0,
    study: str = f"{SIMULATED_PREFIX}-conditions",
) -> pd.DataFrame:
    """Votes on several conditions in the study's design: each participant sees each image once, the
    pair of conditions rotating over participants and images, sides at random; choices from a
    BradleyTerryChooser with `strengths`."""
    import itertools

    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    chooser = BradleyTerryChooser(strengths, participant_spread, seed)
    pairs = list(itertools.combinations(strengths, 2))
    rows = []
    for participant in range(n_participants):
        participant_id = f"sim-p{participant + 1:03d}"
        for image, image_id in enumerate(image_ids):
            pair = pairs[(participant + image) % len(pairs)]
            left, right = pair if rng.random() < 0.5 else pair[::-1]
            chosen = chooser.choose(left, right, participant_id)
            rows.append({
                "participant_id": participant_id, "external_id": None, "trial_id": f"{participant_id}-{image_id}",
                "image_id": image_id, "left_model": left, "right_model": right, "chosen_model": chosen,
                "choice": "left" if chosen == left else "right", "rt_ms": int(rng.lognormal(np.log(1800), 0.4)),
                "is_catch": False, "catch_passed": None, "study": study,
                "created_at": _START + timedelta(minutes=10 * participant, seconds=4 * image),
            })
    return pd.DataFrame(rows)
