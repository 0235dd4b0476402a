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
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased, selectinload

from study.db import write_guard
from study.models import (
    Assignment,
    Image,
    Participant,
    RateCounter,
    Stimulus,
    Study,
    Trial,
    Vote,
    as_utc,
    public_id,
    utcnow,
)
from study.protocol import (
    DEFAULT_BREAK_EVERY,
    DEFAULT_EXPOSURE_MS,
    DEFAULT_MAX_INVALID_SHARE,
    DEFAULT_QUESTION,
    Protocol,
    completion_link,
    vote_timing,
)
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


class WrongStudyLink(ServiceError):
    status = 403
    reason = "wrong_study"


class TooManyRequests(ServiceError):
    status = 429

    def __init__(self, message: str, retry_after_s: int):
        super().__init__(message)
        self.retry_after_s = retry_after_s


# A participant who has not finished and has not enrolled or voted for this long has dropped out,
# and their place is free for someone else (they may still come back and finish).
DROPPED_AFTER = dt.timedelta(minutes=30)


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


def catch_images(
    catch_by_image: Mapping[int, Trial], count: int, history: Mapping[str, TrialHistory], rng: secrets.SystemRandom
) -> set[int]:
    """The `count` photos this participant sees as catch trials: of the photos with a catch trial,
    those used as one least often so far (ties by chance), so every photo takes its turn."""
    images = list(catch_by_image)
    rng.shuffle(images)
    images.sort(key=lambda image: history.get(catch_by_image[image].id, NEVER_ASSIGNED).assigned)
    return set(images[:count])


def choose_trials(
    trials: Sequence[Trial], history: Mapping[str, TrialHistory], rng: secrets.SystemRandom, catch_count: int = 0
) -> list[Trial]:
    """One trial per image. `catch_count` photos (`catch_images`) get their catch trial (a condition
    against its own degraded copy); every other photo, of its trials (one per pair of conditions), the
    one assigned least often so far, so that across participants every pair is shown about equally
    often on every photo; among those, the pair this participant has had least, so that each
    participant sees all pairs; the rest is chance. Practice images, and the catch images of studies
    from before catch trials were drawn per participant, have a single trial each."""
    by_image: dict[int, list[Trial]] = {}
    for trial in trials:
        by_image.setdefault(trial.image_id, []).append(trial)
    catch_by_image: dict[int, Trial] = {}
    for image, group in by_image.items():
        regular = [trial for trial in group if not trial.is_catch]
        if regular and len(regular) < len(group):
            catch_by_image[image] = next(trial for trial in group if trial.is_catch)
            by_image[image] = regular
    as_catch = catch_images(catch_by_image, catch_count, history, rng)
    images = [[catch_by_image[image]] if image in as_catch else candidates for image, candidates in by_image.items()]
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
    participant: Participant,
    trials: Sequence[Trial],
    history: Mapping[str, TrialHistory] | None = None,
    catch_count: int = 0,
) -> None:
    """Give the participant one trial per image (`choose_trials`, from `history`: the trials'
    assignments so far): the practice trials first, the rest in a random order. Within each pair of
    conditions (and among the catch trials) the sides are swapped in half of the trials
    (`trials_to_swap`), so no condition and not the degraded side owns a side. The order, the draw
    and the ties come from the operating system's random source: nothing a participant sees can
    reproduce them. Each assignment gets its own public id and picture names: nothing the participant
    is sent recurs in another participant's trials."""
    rng = secrets.SystemRandom()
    history = history or {}
    groups: dict[object, list[Trial]] = {}
    for trial in choose_trials(trials, history, rng, catch_count):
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
        Assignment(
            trial_id=trial_id, position=position, left_stimulus_id=left, right_stimulus_id=right,
            public_id=public_id(), left_name=picture_name(), right_name=picture_name(),
        )
        for position, (trial_id, (left, right)) in enumerate(practice + layout)
    ]


def picture_name() -> str:
    """A participant's own URL name for one of their pictures (the file behind it is shared)."""
    return f"{secrets.token_hex(16)}.jpg"


@dataclass
class AssignedTrial:
    """One of a participant's trials as the service needs it: `trial_id` is the study's trial,
    `public_id` and the picture names what the participant is sent."""

    trial_id: str
    public_id: str
    left_name: str
    right_name: str
    released_at: dt.datetime | None
    answered: bool
    practice: bool

    def out(self) -> TrialOut:
        return TrialOut(
            trial_id=self.public_id, left=f"/media/{self.left_name}", right=f"/media/{self.right_name}",
            practice=self.practice,
        )


# Statements run on every vote are built once: building one costs more CPU than SQLite takes to run it.
_left, _right = aliased(Stimulus), aliased(Stimulus)
ASSIGNED_TRIALS = (
    select(
        Assignment.trial_id, Assignment.public_id, func.coalesce(Assignment.left_name, _left.file_name),
        func.coalesce(Assignment.right_name, _right.file_name), Assignment.released_at, Vote.id, Trial.is_practice,
    )
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
TOUCH_PARTICIPANT = (
    update(Participant).where(Participant.id == bindparam("participant")).values(last_active_at=bindparam("moment"))
)
COMPLETE_PARTICIPANT = (
    update(Participant)
    .where(Participant.id == bindparam("participant"))
    .values(last_active_at=bindparam("moment"), completed_at=bindparam("moment"))
)
# Locks the study's row for the rest of the enrolment's transaction: on PostgreSQL a row lock, on
# SQLite (a write as the transaction's first statement) the database's write lock, so that
# enrolments in every process count the places one after the other.
LOCK_STUDY = update(Study).where(Study.id == bindparam("study")).values(id=Study.id)


def assigned_trials(session: Session, participant_id: str) -> list[AssignedTrial]:
    """The participant's trials in their order, with whether each has a vote."""
    rows = session.execute(ASSIGNED_TRIALS, {"participant_id": participant_id}).all()
    return [
        AssignedTrial(trial_id, public or trial_id, left, right, released_at, vote_id is not None, bool(practice))
        for trial_id, public, left, right, released_at, vote_id, practice in rows
    ]


def mostly_invalid(session: Session, participant: Participant) -> bool:
    """Whether more than the study's share of the participant's counted votes are invalid."""
    study = participant.study
    timings = session.execute(
        select(Vote.rt_ms, Vote.server_ms)
        .join(Trial, Trial.id == Vote.trial_id)
        .where(Vote.participant_id == participant.id, Trial.is_practice.is_not(True))
    ).all()
    invalid = sum(vote_timing(rt_ms, server_ms, study.min_response_ms).invalid for rt_ms, server_ms in timings)
    share = DEFAULT_MAX_INVALID_SHARE if study.max_invalid_share is None else study.max_invalid_share
    # Studies from before the rule gave everyone their code.
    return study.min_response_ms is not None and bool(timings) and invalid > share * len(timings)


def participant_state(session: Session, participant: Participant, assigned: Sequence[AssignedTrial]) -> ParticipantOut:
    """Progress, and only the open trials the participant may see now. Once every trial is answered,
    the completion code, unless most of the votes were invalid."""
    pending = [trial for trial in assigned if not trial.answered]
    # Only worked out once the participant is done: the study row and the votes are more queries.
    withheld = not pending and mostly_invalid(session, participant)
    code = None if pending or withheld else participant.completion_code
    return ParticipantOut(
        participant_id=participant.id,
        trials=[trial.out() for trial in pending[:VISIBLE_TRIALS]],
        answered=len(assigned) - len(pending),
        total=len(assigned),
        practice=sum(trial.practice for trial in assigned),
        completion_code=code,
        completion_url=completion_link(participant.study.completion_url, code) if code else None,
        completion_withheld=withheld,
    )


def enrolment_answer(session: Session, participant: Participant, token: str) -> EnrolmentOut:
    state = participant_state(session, participant, assigned_trials(session, participant.id))
    return EnrolmentOut(**state.model_dump(), participant_token=token)


def find_enrolled(session: Session, study: Study, request: ParticipantRequest) -> Participant | None:
    """The participant this enrolment is a repeat of: the same external id, or for an anonymous one
    the same enrolment key (a resend after a lost answer)."""
    query = select(Participant).where(Participant.study_id == study.id)
    if request.external_id is not None:
        query = query.where(Participant.external_id == request.external_id)
    elif request.client_enrolment_id is not None:
        key_hash = secret_hash(request.client_enrolment_id)
        query = query.where(Participant.external_id.is_(None), Participant.enrolment_key_hash == key_hash)
    else:
        return None
    return session.scalars(query.order_by(Participant.created_at).limit(1)).first()


def rejoin(session: Session, participant: Participant, request: ParticipantRequest, token: str | None) -> EnrolmentOut:
    """An enrolment for a participant already enrolled: only whoever holds its token (or the key of
    the enrolment itself, resent after a lost answer) gets the participant back."""
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


def is_recruited(study: Study, request: ParticipantRequest) -> bool:
    """Whether the enrolment brings the recruiting platform's ids for this study (Prolific's
    PROLIFIC_PID, STUDY_ID and SESSION_ID); a STUDY_ID of another study is refused."""
    if study.prolific_study_id is None or request.prolific_study_id is None:
        return False
    if not secrets.compare_digest(request.prolific_study_id.encode(), study.prolific_study_id.encode()):
        raise WrongStudyLink("this link belongs to another study: please use the link from the recruiting site")
    return request.external_id is not None and request.prolific_session_id is not None


def anonymous_places(study: Study) -> int | None:
    """Places that enrolments without the platform's ids may take (None: no limit)."""
    if study.anonymous_places is not None:
        return study.anonymous_places
    return 0 if study.prolific_study_id is not None and study.max_participants is not None else None


def places_taken(session: Session, study: Study, now: dt.datetime) -> tuple[int, int]:
    """(places taken, of which by participants who were not recruited): everyone who completed, or
    enrolled or voted within DROPPED_AFTER."""
    active = func.coalesce(Participant.last_active_at, Participant.created_at)
    holding = and_(
        Participant.study_id == study.id,
        or_(Participant.completed_at.is_not(None), active >= now - DROPPED_AFTER),
    )
    taken, unrecruited = session.execute(
        select(func.count(), func.sum(case((Participant.recruited.is_(True), 0), else_=1))).where(holding)
    ).one()
    return taken, unrecruited or 0


def check_place(session: Session, study: Study, recruited: bool, now: dt.datetime) -> None:
    taken, unrecruited = places_taken(session, study, now)
    limit = anonymous_places(study)
    if study.max_participants is not None and taken >= study.max_participants:
        raise StudyFull("this study is full: thank you for your interest")
    if not recruited and limit is not None and unrecruited >= limit:
        raise StudyFull("this study is full: thank you for your interest")


def enrol(
    session: Session, request: ParticipantRequest, token: str | None, user_agent: str | None = None
) -> tuple[EnrolmentOut, bool]:
    """A new participant with a fresh trial order and token (True), or the one already enrolled
    with this external id or enrolment key, for its token holder (False).

    The places are counted and the participant stored in one transaction that holds the study's
    row (LOCK_STUDY), so no number of processes can enrol past --max-participants."""
    study = study_to_join(session, request.study)
    recruited = is_recruited(study, request)
    if (existing := find_enrolled(session, study, request)) is not None:
        return rejoin(session, existing, request, token), False
    now = utcnow()
    participant = Participant(
        id=public_id(), study_id=study.id, external_id=request.external_id,
        prolific_study_id=request.prolific_study_id, prolific_session_id=request.prolific_session_id,
        viewport_width=request.viewport_width, viewport_height=request.viewport_height,
        user_agent=(user_agent or None) and user_agent[:USER_AGENT_CHARACTERS],
        recruited=recruited, created_at=now, last_active_at=now,
    )
    if request.client_enrolment_id is not None:
        participant.enrolment_key_hash = secret_hash(request.client_enrolment_id)
    new_token = issue_token(participant)
    assign_trials(participant, study_trials(session, study), trial_history(session, study), study.catch_trials or 0)
    if participant.assignments:
        participant.assignments[0].released_at = now
    study_id = study.id
    session.commit()  # ends the reads above; the transaction below starts with the lock
    try:
        with write_guard(session):
            session.connection().execute(LOCK_STUDY, {"study": study_id})
            # Under the lock: a copy of this enrolment that got here first is the participant.
            if (existing := find_enrolled(session, study, request)) is not None:
                session.rollback()
                return rejoin(session, existing, request, token), False
            check_place(session, study, recruited, now)
            session.add(participant)
            session.commit()
    except IntegrityError:
        # The same external id enrolled concurrently (a double click, two tabs, a resend).
        session.rollback()
        if (existing := find_enrolled(session, study, request)) is None:
            raise
        return rejoin(session, existing, request, token), False
    except StudyFull:
        session.rollback()
        raise
    return enrolment_answer(session, participant, new_token), True


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


def count_request(session: Session, key: str, limit: int, window_s: int, what: str) -> None:
    """Count one request under `key` (an action and a client) in the current window of `window_s`
    seconds, and refuse it (429) past `limit` in that window. The count lives in the database, so
    every server process shares it."""
    now = utcnow().timestamp()
    window = int(now // window_s) * window_s
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(RateCounter).values(key=key, window_start=window, count=1)
    statement = statement.on_conflict_do_update(
        index_elements=[RateCounter.key],
        set_={
            "count": case((RateCounter.window_start == window, RateCounter.count + 1), else_=1),
            "window_start": window,
        },
    ).returning(RateCounter.count)
    with write_guard(session):
        count = session.connection().execute(statement).scalar_one()
        session.commit()
    if count > limit:
        raise TooManyRequests(f"too many {what} from your network: please try again later",
                              max(1, int(window + window_s - now)))


def over_limit(session: Session, key: str, limit: int, window_s: int) -> bool:
    """Whether `key` already has more than `limit` requests counted in the current window."""
    window = int(utcnow().timestamp() // window_s) * window_s
    counted = session.scalar(select(RateCounter.count).where(RateCounter.key == key, RateCounter.window_start == window))
    return (counted or 0) > limit


def resume(session: Session, participant_id: str, token: str | None) -> ParticipantOut:
    participant = authenticate(session, participant_id, token)
    return participant_state(session, participant, assigned_trials(session, participant.id))


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
    trial = next((trial for trial in assigned if trial.public_id == vote.trial_id), None)
    if trial is None:
        raise NotFound("no such trial for this participant")
    # From here on the study's own trial id: the public one is the participant's alone.
    vote = vote.model_copy(update={"trial_id": trial.trial_id})
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
                touch = TOUCH_PARTICIPANT if len(pending) > 1 else COMPLETE_PARTICIPANT
                connection.execute(touch, {"participant": participant.id, "moment": arrived})
                session.commit()
            trial.answered = True
        except IntegrityError:
            session.rollback()
            check_replay(vote, votes_in_the_way(session, vote))
            assigned = assigned_trials(session, participant.id)
    return VoteOut(**participant_state(session, participant, assigned).model_dump(), stored=True)


@dataclass(frozen=True)
class GivenAnswer:
    """A trial answered as a simulation says, not as the live protocol draws it: the trial, whether
    stimulus a showed on the left, the choice ('left' or 'right'), the response time and the moment."""

    trial: Trial
    a_on_left: bool
    choice: str
    rt_ms: int
    answered_at: dt.datetime


def has_participants(session: Session, study: Study) -> bool:
    return session.scalars(select(Participant.id).where(Participant.study_id == study.id).limit(1)).first() is not None


def add_finished_participant(session: Session, study: Study, answers: Sequence[GivenAnswer],
                             created_at: dt.datetime) -> Participant:
    """Store a participant of `study` who answered `answers` (one or more) in that order (simulated votes,
    analysis/simulate.py), in the rows a live participant who finished leaves: assignments with their
    own public ids and picture names, each released when the one before was answered, and votes with
    fresh client ids. Nothing is committed."""
    finished = answers[-1].answered_at
    participant = Participant(id=public_id(), study_id=study.id, created_at=created_at, last_active_at=finished,
                              completed_at=finished)
    released = created_at
    for position, answer in enumerate(answers):
        stimuli = (answer.trial.stimulus_a, answer.trial.stimulus_b)
        left, right = stimuli if answer.a_on_left else stimuli[::-1]
        participant.assignments.append(Assignment(
            trial=answer.trial, position=position, left=left, right=right, released_at=released,
            public_id=public_id(), left_name=picture_name(), right_name=picture_name()))
        released = answer.answered_at
    session.add(participant)
    # Votes refer to assignments by a bare composite key, so the ORM cannot order the inserts itself.
    session.flush()
    # No server_ms: the simulated response times are not timed against the release by a server.
    session.add_all(Vote(participant_id=participant.id, trial_id=answer.trial.id, choice=answer.choice,
                         rt_ms=answer.rt_ms, client_vote_id=public_id(), created_at=answer.answered_at)
                    for answer in answers)
    return participant


def study_protocols(session: Session) -> dict[str, Protocol]:
    """Every study's protocol by name, for the participant pages (studies are never changed after prepare)."""
    return {
        study.name: Protocol(
            exposure_ms=study.exposure_ms or DEFAULT_EXPOSURE_MS,
            question=study.question or DEFAULT_QUESTION,
            consent_markdown=study.consent_markdown,
            completion_url=study.completion_url,
            max_participants=study.max_participants,
            break_every=DEFAULT_BREAK_EVERY if study.break_every is None else study.break_every,
        )
        for study in session.scalars(select(Study).order_by(Study.id))
    }


def assigned_picture(session: Session, name: str, media_dir: str | Path | None) -> Path | None:
    """The file behind a participant's own picture name (one side of one of their trials), or None."""
    for column, stimulus in ((Assignment.left_name, Assignment.left_stimulus_id),
                             (Assignment.right_name, Assignment.right_stimulus_id)):
        row = session.execute(
            select(Stimulus.file_name, Study.media_dir)
            .join(Assignment, stimulus == Stimulus.id)
            .join(Image, Image.id == Stimulus.image_id)
            .join(Study, Study.id == Image.study_id)
            .where(column == name)
        ).first()
        if row is not None:
            return Path(media_dir or row.media_dir) / row.file_name
    return None


def stimulus_files(session: Session, media_dir: str | Path | None) -> dict[str, Path]:
    """Every recorded stimulus: file name (its URL) to path, under `media_dir` if given, else under
    its study's recorded media folder."""
    rows = session.execute(
        select(Stimulus.file_name, Study.media_dir)
        .join(Image, Image.id == Stimulus.image_id)
        .join(Study, Study.id == Image.study_id)
    )
    return {file_name: Path(media_dir or recorded_dir) / file_name for file_name, recorded_dir in rows}
