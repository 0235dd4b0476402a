"""The study's rules as plain functions on a database session: enrolment, trial assignment, voting,
a participant's state, and which files are stimuli. `study/app.py` only wires them to HTTP.

What a participant may know: their own id and secret token, the trial they answer now and the next
one. What they must not be able to work out: which model made which picture, which trials are catch
trials, or anything about other participants. Hence layouts come from the operating system's random
source, trials are released one at a time, and every request about a participant needs its token.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import and_, bindparam, case, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased, selectinload

from study.db import write_guard
from study.models import Assignment, Image, Participant, Stimulus, Study, Trial, Vote, as_utc, public_id, utcnow
from study.protocol import DEFAULT_EXPOSURE_MS, DEFAULT_QUESTION, Protocol, completion_link
from study.schemas import (
    PARTICIPANT_TOKEN_HEADER,
    EnrolmentOut,
    ParticipantOut,
    ParticipantRequest,
    TrialOut,
    VoteOut,
    VoteRequest,
)

# 256 random bits (the issue asks for at least 128).
PARTICIPANT_TOKEN_BYTES = 32
# Trials a participant can see at once: the current one and the next (so the page can preload it).
VISIBLE_TRIALS = 2


class ServiceError(Exception):
    """A request the study refuses; `status` is the HTTP status the app answers it with."""

    status = 400

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class NotFound(ServiceError):
    status = 404


class Conflict(ServiceError):
    status = 409


class MissingToken(ServiceError):
    status = 401


class WrongToken(ServiceError):
    status = 403


class StudyFull(ServiceError):
    status = 409
    reason = "study_full"


# Longest user agent kept per participant (they are about 150 characters; anything longer is noise).
USER_AGENT_CHARACTERS = 500


def find_study(session: Session, name: str | None) -> Study | None:
    """The study called `name`, or with no name the most recently prepared one."""
    query = select(Study)
    query = query.where(Study.name == name) if name is not None else query.order_by(Study.id.desc())
    return session.scalars(query.limit(1)).first()


def study_to_join(session: Session, name: str | None) -> Study:
    """The study a participant joins: the named one, or the only one. With several studies a link
    without a name is refused rather than given the newest study, which may not be the one recruited for."""
    if name is not None:
        study = find_study(session, name)
        if study is None:
            raise NotFound("no such study")
        return study
    studies = session.scalars(select(Study).limit(2)).all()
    if not studies:
        raise NotFound("no study has been prepared yet")
    if len(studies) > 1:
        raise ServiceError("several studies run here: the study link must name one (?study=NAME)")
    return studies[0]


def secret_hash(secret: str) -> str:
    """What is stored of a secret: a leaked database then lets nobody act as a participant."""
    return hashlib.sha256(secret.encode()).hexdigest()


def holds_secret(given: str | None, stored_hash: str | None) -> bool:
    return given is not None and stored_hash is not None and secrets.compare_digest(secret_hash(given), stored_hash)


def issue_token(participant: Participant) -> str:
    """A new secret token for `participant` (replacing any earlier one); only its hash is kept."""
    token = secrets.token_urlsafe(PARTICIPANT_TOKEN_BYTES)
    participant.token_hash = secret_hash(token)
    return token


def authenticate(session: Session, participant_id: str, token: str | None) -> Participant:
    if token is None:
        raise MissingToken(f"the {PARTICIPANT_TOKEN_HEADER} header is required")
    participant = session.get(Participant, participant_id)
    if participant is None:
        raise NotFound("unknown participant")
    if not holds_secret(token, participant.token_hash):
        raise WrongToken("wrong participant token")
    return participant


@dataclass(frozen=True)
class TrialHistory:
    """How many participants a trial was assigned to so far, and to how many with stimulus a on the left."""

    assigned: int = 0
    a_on_left: int = 0


NEVER_ASSIGNED = TrialHistory()


def choose_trials(
    trials: Sequence[Trial], history: Mapping[str, TrialHistory], rng: secrets.SystemRandom
) -> list[Trial]:
    """One trial per image: of an image's trials (one per pair of conditions) the one assigned least
    often so far, so that across participants every pair is shown about equally often on every photo;
    among those, the pair this participant has had least, so that each participant sees all pairs;
    the rest is chance. Catch and practice images have a single trial each."""
    by_image: dict[int, list[Trial]] = {}
    for trial in trials:
        by_image.setdefault(trial.image_id, []).append(trial)
    images = list(by_image.values())
    rng.shuffle(images)
    pairs_had: Counter = Counter()
    chosen = []
    for candidates in images:
        fewest = min(history.get(trial.id, NEVER_ASSIGNED).assigned for trial in candidates)
        least_shown = [trial for trial in candidates if history.get(trial.id, NEVER_ASSIGNED).assigned == fewest]
        fewest_had = min(pairs_had[condition_pair(trial)] for trial in least_shown)
        trial = rng.choice([trial for trial in least_shown if pairs_had[condition_pair(trial)] == fewest_had])
        pairs_had[condition_pair(trial)] += 1
        chosen.append(trial)
    return chosen


def condition_pair(trial: Trial) -> tuple[str, str]:
    return trial.stimulus_a.model, trial.stimulus_b.model


def trials_to_swap(group: Sequence[Trial], history: Mapping[str, TrialHistory], rng: secrets.SystemRandom) -> set[str]:
    """Which of a participant's trials of one pair of conditions show stimulus b on the left: exactly
    half of them (when odd, the extra one by need or by chance), preferring the trials that earlier
    participants saw with a on the left more often, so each side is balanced within the participant
    and, across participants, on every trial."""

    def excess(trial: Trial) -> float:  # > 0: a was on the left more often than b so far
        seen = history.get(trial.id, NEVER_ASSIGNED)
        return seen.a_on_left - seen.assigned / 2

    ranked = list(group)
    rng.shuffle(ranked)  # ties in random order
    ranked.sort(key=excess, reverse=True)
    count = len(ranked) // 2
    if len(ranked) % 2:
        extra = excess(ranked[count])
        count += 1 if extra > 0 or (extra == 0 and rng.random() < 0.5) else 0
    return {trial.id for trial in ranked[:count]}


def assign_trials(
    participant: Participant, trials: Sequence[Trial], history: Mapping[str, TrialHistory] | None = None
) -> None:
    """Give the participant one trial per image (`choose_trials`, from `history`: the trials'
    assignments so far): the practice trials first, the rest in a random order. Within each pair of
    conditions (and among the catch trials) the sides are swapped in half of the trials
    (`trials_to_swap`), so no condition and not the degraded side owns a side. The order, the draw
    and the ties come from the operating system's random source: nothing a participant sees can
    reproduce them."""
    rng = secrets.SystemRandom()
    history = history or {}
    groups: dict[object, list[Trial]] = {}
    for trial in choose_trials(trials, history, rng):
        groups.setdefault("catch" if trial.is_catch else condition_pair(trial), []).append(trial)
    practice, layout = [], []
    for group in groups.values():
        swapped = trials_to_swap(group, history, rng)
        for trial in group:
            swap = trial.id in swapped
            sides = (trial.stimulus_b_id, trial.stimulus_a_id) if swap else (trial.stimulus_a_id, trial.stimulus_b_id)
            (practice if trial.is_practice else layout).append((trial.id, sides))
    rng.shuffle(practice)
    rng.shuffle(layout)
    participant.assignments = [
        Assignment(trial_id=trial_id, position=position, left_stimulus_id=left, right_stimulus_id=right)
        for position, (trial_id, (left, right)) in enumerate(practice + layout)
    ]


@dataclass
class AssignedTrial:
    """One of a participant's trials as the service needs it."""

    trial_id: str
    left_file: str
    right_file: str
    released_at: dt.datetime | None
    answered: bool
    practice: bool

    def out(self) -> TrialOut:
        return TrialOut(
            trial_id=self.trial_id, left=f"/media/{self.left_file}", right=f"/media/{self.right_file}",
            practice=self.practice,
        )


# Statements run on every vote are built once: building one costs more CPU than SQLite takes to run it.
_left, _right = aliased(Stimulus), aliased(Stimulus)
ASSIGNED_TRIALS = (
    select(Assignment.trial_id, _left.file_name, _right.file_name, Assignment.released_at, Vote.id, Trial.is_practice)
    .join(Trial, Trial.id == Assignment.trial_id)
    .join(_left, _left.id == Assignment.left_stimulus_id)
    .join(_right, _right.id == Assignment.right_stimulus_id)
    .outerjoin(Vote, and_(Vote.participant_id == Assignment.participant_id, Vote.trial_id == Assignment.trial_id))
    .where(Assignment.participant_id == bindparam("participant_id"))
    .order_by(Assignment.position)
)
INSERT_VOTE = insert(Vote)
RELEASE_TRIAL = (
    update(Assignment)
    .where(
        Assignment.participant_id == bindparam("participant"),
        Assignment.trial_id == bindparam("trial"),
        Assignment.released_at.is_(None),
    )
    .values(released_at=bindparam("released_at"))
)


def assigned_trials(session: Session, participant_id: str) -> list[AssignedTrial]:
    """The participant's trials in their order, with whether each has a vote."""
    rows = session.execute(ASSIGNED_TRIALS, {"participant_id": participant_id}).all()
    return [
        AssignedTrial(trial_id, left_file, right_file, released_at, vote_id is not None, bool(practice))
        for trial_id, left_file, right_file, released_at, vote_id, practice in rows
    ]


def participant_state(participant: Participant, assigned: Sequence[AssignedTrial]) -> ParticipantOut:
    """Progress, and only the open trials the participant may see now."""
    pending = [trial for trial in assigned if not trial.answered]
    code = None if pending else participant.completion_code
    return ParticipantOut(
        participant_id=participant.id,
        trials=[trial.out() for trial in pending[:VISIBLE_TRIALS]],
        answered=len(assigned) - len(pending),
        total=len(assigned),
        completion_code=code,
        # Only read once the participant is done: the study row is one more query.
        completion_url=completion_link(participant.study.completion_url, code) if code else None,
    )


def enrolment_answer(session: Session, participant: Participant, token: str) -> EnrolmentOut:
    state = participant_state(participant, assigned_trials(session, participant.id))
    return EnrolmentOut(**state.model_dump(), participant_token=token)


def find_enrolled(session: Session, study: Study, external_id: str | None) -> Participant | None:
    if external_id is None:
        return None
    return session.scalars(
        select(Participant).where(Participant.study_id == study.id, Participant.external_id == external_id)
    ).first()


def rejoin(session: Session, participant: Participant, request: ParticipantRequest, token: str | None) -> EnrolmentOut:
    """An enrolment for an external id that is already enrolled: only whoever holds its token (or
    the key of the enrolment itself, resent after a lost answer) gets the participant back."""
    if holds_secret(token, participant.token_hash):
        return enrolment_answer(session, participant, token)
    if holds_secret(request.client_enrolment_id, participant.enrolment_key_hash):
        # The first answer, and the token in it, never arrived: nobody holds it, so replace it.
        new_token = issue_token(participant)
        with write_guard(session):
            session.commit()
        return enrolment_answer(session, participant, new_token)
    if token is not None:
        raise WrongToken("wrong participant token")
    raise Conflict(
        "this participant id has already started the study: please continue in the browser where you started"
    )


def enrol(
    session: Session, request: ParticipantRequest, token: str | None, user_agent: str | None = None
) -> tuple[EnrolmentOut, bool]:
    """A new participant with a fresh trial order and token (True), or the one already enrolled
    with this external id, for its token holder (False)."""
    study = study_to_join(session, request.study)
    if (existing := find_enrolled(session, study, request.external_id)) is not None:
        return rejoin(session, existing, request, token), False
    participant = Participant(
        id=public_id(), study_id=study.id, external_id=request.external_id,
        prolific_study_id=request.prolific_study_id, prolific_session_id=request.prolific_session_id,
        viewport_width=request.viewport_width, viewport_height=request.viewport_height,
        user_agent=(user_agent or None) and user_agent[:USER_AGENT_CHARACTERS],
    )
    if request.client_enrolment_id is not None:
        participant.enrolment_key_hash = secret_hash(request.client_enrolment_id)
    new_token = issue_token(participant)
    assign_trials(participant, study_trials(session, study), trial_history(session, study))
    if participant.assignments:
        participant.assignments[0].released_at = utcnow()
    try:
        with write_guard(session):
            # Counted under the write lock, so SQLite never enrols past the limit (PostgreSQL with
            # several server processes may, by as many as enrol at the same moment).
            if study.max_participants is not None and enrolled_count(session, study) >= study.max_participants:
                raise StudyFull("this study is full: thank you for your interest")
            session.add(participant)
            session.commit()
    except IntegrityError:
        # The same external id enrolled concurrently (a double click, two tabs, a resend).
        session.rollback()
        if (existing := find_enrolled(session, study, request.external_id)) is None:
            raise
        return rejoin(session, existing, request, token), False
    return enrolment_answer(session, participant, new_token), True


def enrolled_count(session: Session, study: Study) -> int:
    return session.scalar(select(func.count()).select_from(Participant).where(Participant.study_id == study.id))


def study_trials(session: Session, study: Study) -> Sequence[Trial]:
    query = select(Trial).where(Trial.study_id == study.id).options(
        selectinload(Trial.stimulus_a), selectinload(Trial.stimulus_b)
    )
    return session.scalars(query).all()


def trial_history(session: Session, study: Study) -> dict[str, TrialHistory]:
    """Each of the study's trials' assignments so far (one aggregate query per enrolment)."""
    a_on_left = case((Assignment.left_stimulus_id == Trial.stimulus_a_id, 1), else_=0)
    query = (
        select(Assignment.trial_id, func.count(), func.sum(a_on_left))
        .join(Trial, Trial.id == Assignment.trial_id)
        .where(Trial.study_id == study.id)
        .group_by(Assignment.trial_id)
    )
    return {trial_id: TrialHistory(count, int(left)) for trial_id, count, left in session.execute(query)}


def resume(session: Session, participant_id: str, token: str | None) -> ParticipantOut:
    participant = authenticate(session, participant_id, token)
    return participant_state(participant, assigned_trials(session, participant.id))


def check_replay(vote: VoteRequest, existing: Sequence[Vote]) -> None:
    """Accept a resent vote (same client_vote_id, same content); anything else is a conflict."""
    stored = [(v.client_vote_id, v.participant_id, v.trial_id, v.choice) for v in existing]
    if stored != [(vote.client_vote_id, vote.participant_id, vote.trial_id, vote.choice)]:
        raise Conflict("this trial already has a different vote, or client_vote_id was used for another vote")


def votes_in_the_way(session: Session, vote: VoteRequest) -> Sequence[Vote]:
    """Stored votes that collide with `vote`: one for the same trial, or one with the same key."""
    same_trial = and_(Vote.participant_id == vote.participant_id, Vote.trial_id == vote.trial_id)
    return session.scalars(select(Vote).where(or_(same_trial, Vote.client_vote_id == vote.client_vote_id))).all()


def elapsed_ms(since: dt.datetime | None, until: dt.datetime) -> int | None:
    return None if since is None else round((until - as_utc(since)).total_seconds() * 1000)


def record_vote(session: Session, vote: VoteRequest, token: str | None) -> VoteOut:
    """Store the vote on the participant's current trial and release the next one, or accept an
    identical resend. The insert comes first because resends are rare: the unique constraints, not a
    prior read, decide between two racing copies."""
    participant = authenticate(session, vote.participant_id, token)
    assigned = assigned_trials(session, participant.id)
    trial = next((trial for trial in assigned if trial.trial_id == vote.trial_id), None)
    if trial is None:
        raise NotFound("no such trial for this participant")
    pending = [trial for trial in assigned if not trial.answered]
    if trial.answered:
        check_replay(vote, votes_in_the_way(session, vote))
    elif trial is not pending[0]:
        raise Conflict("this trial is not open yet: answer the current trial first")
    else:
        arrived = utcnow()
        try:
            with write_guard(session):
                connection = session.connection()
                connection.execute(
                    INSERT_VOTE,
                    {**vote.model_dump(), "created_at": arrived, "server_ms": elapsed_ms(trial.released_at, arrived)},
                )
                if len(pending) > 1:
                    release = {"participant": participant.id, "trial": pending[1].trial_id, "released_at": arrived}
                    connection.execute(RELEASE_TRIAL, release)
                session.commit()
            trial.answered = True
        except IntegrityError:
            session.rollback()
            check_replay(vote, votes_in_the_way(session, vote))
            assigned = assigned_trials(session, participant.id)
    return VoteOut(**participant_state(participant, assigned).model_dump(), stored=True)


def study_protocols(session: Session) -> dict[str, Protocol]:
    """Every study's protocol by name, for the participant pages (studies are never changed after prepare)."""
    return {
        study.name: Protocol(
            exposure_ms=study.exposure_ms or DEFAULT_EXPOSURE_MS,
            question=study.question or DEFAULT_QUESTION,
            consent_markdown=study.consent_markdown,
            completion_url=study.completion_url,
            max_participants=study.max_participants,
        )
        for study in session.scalars(select(Study).order_by(Study.id))
    }


def stimulus_files(session: Session, media_dir: str | Path | None) -> dict[str, Path]:
    """Every recorded stimulus: file name (its URL) to path, under `media_dir` if given, else under
    its study's recorded media folder."""
    rows = session.execute(
        select(Stimulus.file_name, Study.media_dir)
        .join(Image, Image.id == Stimulus.image_id)
        .join(Study, Study.id == Image.study_id)
    )
    return {file_name: Path(media_dir or recorded_dir) / file_name for file_name, recorded_dir in rows}
