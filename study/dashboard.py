"""The researcher's dashboard: per study, who enrolled, completed or dropped out, how long they took,
catch trials and invalid (too fast) votes, votes per photo and condition (a figure with each photo's
thumbnail), and the downloads.
Plain functions on a session (the app runs them on its database threads) and HTML rendering."""

from __future__ import annotations

import dataclasses
import datetime as dt
import html
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass
from urllib.parse import quote

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from study.export import session_stimuli, session_vote_rows, studies_to_export
from study.models import TRUTH, Assignment, Participant, Study, as_utc, utcnow
from study.service import DROPPED_AFTER

PARTICIPANT_COLUMNS = [
    "participant_id", "external_id", "prolific_study_id", "prolific_session_id", "study", "started_at",
    "last_vote_at", "completed", "dropped_out", "trials", "answered", "catch_passed", "focus_losses", "too_fast_votes",
    "invalid_votes", "user_agent", "viewport_width", "viewport_height", "recruited",
]


def participant_rows(session: Session, study: str | None = None, now: dt.datetime | None = None) -> list[dict]:
    """One dict per participant (PARTICIPANT_COLUMNS, plus `dropped_out` and `duration_s`)."""
    now = now or utcnow()
    ids = studies_to_export(session, study)
    votes_by_participant: dict[str, list[dict]] = defaultdict(list)
    for vote in session_vote_rows(session, study):
        votes_by_participant[vote["participant_id"]].append(vote)
    trials = dict(session.execute(
        select(Assignment.participant_id, func.count()).join(Participant).where(Participant.study_id.in_(ids))
        .group_by(Assignment.participant_id)
    ).all())
    query = select(Participant, Study.name).join(Study).where(Study.id.in_(ids)).order_by(Participant.created_at)
    rows = []
    for participant, study_name in session.execute(query):
        votes = votes_by_participant.get(participant.id, [])
        started = as_utc(participant.created_at)
        last = max((dt.datetime.fromisoformat(vote["created_at"]) for vote in votes), default=None)
        completed = bool(votes) and len(votes) == trials.get(participant.id, 0)
        catch = [vote["catch_passed"] for vote in votes if vote["is_catch"]]
        rows.append({
            "participant_id": participant.id,
            "external_id": participant.external_id,
            "prolific_study_id": participant.prolific_study_id,
            "prolific_session_id": participant.prolific_session_id,
            "study": study_name,
            "started_at": started.isoformat(),
            "last_vote_at": last.isoformat() if last else None,
            "completed": completed,
            "trials": trials.get(participant.id, 0),
            "answered": len(votes),
            "catch_passed": all(catch) if catch else None,
            "focus_losses": sum(bool(vote["lost_focus"]) for vote in votes),
            "too_fast_votes": sum(vote["too_fast"] for vote in votes),
            "invalid_votes": sum(vote["invalid"] for vote in votes),
            "recruited": bool(participant.recruited),
            "user_agent": participant.user_agent,
            "viewport_width": participant.viewport_width,
            "viewport_height": participant.viewport_height,
            "dropped_out": not completed and now - (last or started) > DROPPED_AFTER,
            "duration_s": (last - started).total_seconds() if completed and last else None,
        })
    return rows


@dataclass
class StudyOverview:
    name: str
    conditions: list[str]
    enrolled: int
    completed: int
    dropped_out: int
    median_duration_s: float | None
    catch_votes: int
    catch_pass_rate: float | None
    votes: int
    too_fast: int
    # (image id, condition): [votes in which it was shown, votes in which it was chosen]
    per_image: dict[tuple[int, str], list[int]]
    # Votes too fast or with a claimed time the server contradicts: `analyze votes` leaves them out.
    invalid: int = 0
    # Image id: the URL of its thumbnail (the original photo where it is a condition).
    thumbnails: dict[int, str] = dataclasses.field(default_factory=dict)


def overview(session: Session) -> list[StudyOverview]:
    """Every study's figures, newest study first."""
    now = utcnow()
    result = []
    for study in session.scalars(select(Study).order_by(Study.id.desc())):
        people = participant_rows(session, study.name, now)
        votes = session_vote_rows(session, study.name)
        catch = [vote for vote in votes if vote["is_catch"]]
        per_image: dict[tuple[int, str], list[int]] = defaultdict(lambda: [0, 0])
        for vote in votes:
            if vote["is_catch"] or vote["is_practice"]:
                continue
            for side in ("left_model", "right_model"):
                counts = per_image[vote["image_id"], vote[side]]
                counts[0] += 1
                counts[1] += vote["chosen_model"] == vote[side]
        durations = [person["duration_s"] for person in people if person["duration_s"] is not None]
        thumbnails: dict[int, str] = {}
        for row in session_stimuli(session, study.name):  # the original photo wins over the first condition
            if row["model"] == TRUTH or (row["model"] == study.condition_names[0] and row["image_id"] not in thumbnails):
                thumbnails[row["image_id"]] = f"/media/{row['file_name']}"
        result.append(StudyOverview(
            name=study.name,
            conditions=study.condition_names,
            enrolled=len(people),
            completed=sum(person["completed"] for person in people),
            dropped_out=sum(person["dropped_out"] for person in people),
            median_duration_s=statistics.median(durations) if durations else None,
            catch_votes=len(catch),
            catch_pass_rate=sum(vote["catch_passed"] for vote in catch) / len(catch) if catch else None,
            votes=len(votes),
            too_fast=sum(vote["too_fast"] for vote in votes),
            per_image=dict(per_image),
            invalid=sum(vote["invalid"] for vote in votes),
            thumbnails=thumbnails,
        ))
    return result


COLOURS = ("#2457c5", "#e07b00", "#2a9d3a", "#c0392b", "#8e44ad", "#6d4c41", "#d81b60", "#00838f")


THUMB_W, THUMB_H, BAR_H = 96, 72, 14


def votes_figure(study: StudyOverview) -> str:
    """An SVG chart, one row per photo: its thumbnail, then one bar per condition, its length the
    votes in which the condition was shown (pale) and chosen (dark), with the counts written out."""
    images = sorted({image for image, _ in study.per_image})
    if not images:
        return "<p>No votes yet.</p>"
    most = max(shown for shown, _ in study.per_image.values())
    label_w, bars_w, gap = 110, 420, 10
    row_h = max(THUMB_H, len(study.conditions) * (BAR_H + 2)) + gap
    width, height = THUMB_W + label_w + bars_w + 90, len(images) * row_h + 20
    parts = [f'<svg class="figure" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
             'xmlns="http://www.w3.org/2000/svg"><title>votes per photo and condition</title>']
    for number, image in enumerate(images):
        y0 = 10 + number * row_h
        if image in study.thumbnails:
            parts.append(f'<image href="{html.escape(study.thumbnails[image])}" x="0" y="{y0}" width="{THUMB_W}" '
                         f'height="{THUMB_H}" preserveAspectRatio="xMidYMid meet"/>')
        parts.append(f'<text x="{THUMB_W + 6}" y="{y0 + 12}" font-size="12">photo {image}</text>')
        for offset, condition in enumerate(study.conditions):
            shown, chosen = study.per_image.get((image, condition), (0, 0))
            y = y0 + offset * (BAR_H + 2)
            x = THUMB_W + label_w
            colour = COLOURS[offset % len(COLOURS)]
            shown_w, chosen_w = bars_w * shown / most, bars_w * chosen / most
            name = html.escape(condition)
            parts.append(f'<text x="{x - 4}" y="{y + BAR_H - 3}" font-size="11" text-anchor="end">{name}</text>')
            parts.append(f'<rect x="{x}" y="{y}" width="{shown_w:.1f}" height="{BAR_H}" fill="{colour}" '
                         f'fill-opacity="0.3"><title>{name} on photo {image}: shown {shown}, chosen {chosen}</title></rect>')
            parts.append(f'<rect x="{x}" y="{y}" width="{chosen_w:.1f}" height="{BAR_H}" fill="{colour}"/>')
            parts.append(f'<text x="{x + shown_w + 4:.1f}" y="{y + BAR_H - 3}" font-size="11">{chosen} / {shown}</text>')
    parts.append("</svg>")
    legend = " ".join(f'<svg width="10" height="10"><rect width="10" height="10" fill="{COLOURS[i % len(COLOURS)]}"/>'
                      f"</svg> {html.escape(c)}" for i, c in enumerate(study.conditions))
    return "".join(parts) + f"<p>{legend} (bar: votes in which it was shown; dark part: chosen)</p>"


def _percent(share: float | None) -> str:
    return "–" if share is None else f"{100 * share:.0f}%"


def _minutes(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds / 60:.1f} min"


def panel_html(studies: list[StudyOverview]) -> str:
    """The dashboard's live part: one block per study."""
    if not studies:
        return "<p>No study has been prepared yet.</p>"
    blocks = []
    for study in studies:
        name = html.escape(study.name)
        query = html.escape(f"?study={quote(study.name, safe='')}")
        counts = Counter(image for image, _ in study.per_image)
        rows = "".join(
            f"<tr><td>{image}</td>" + "".join(
                f"<td>{study.per_image.get((image, c), (0, 0))[1]} / {study.per_image.get((image, c), (0, 0))[0]}</td>"
                for c in study.conditions) + "</tr>"
            for image in sorted(counts)
        )
        header = "".join(f"<th>{html.escape(condition)}</th>" for condition in study.conditions)
        blocks.append(f"""<section class="study" data-study="{name}">
<h2>{name}</h2>
<p>Conditions: {', '.join(html.escape(c) for c in study.conditions)}</p>
<table class="figures">
<tr><th>enrolled</th><td class="enrolled">{study.enrolled}</td></tr>
<tr><th>completed</th><td class="completed">{study.completed}</td></tr>
<tr><th>dropped out (no vote for {int(DROPPED_AFTER.total_seconds() // 60)} min)</th>
<td class="dropped">{study.dropped_out}</td></tr>
<tr><th>median duration (completed)</th><td class="duration">{_minutes(study.median_duration_s)}</td></tr>
<tr><th>catch pass rate</th><td class="catch">{_percent(study.catch_pass_rate)} of {study.catch_votes}</td></tr>
<tr><th>votes flagged too fast</th><td class="too-fast">{study.too_fast} of {study.votes}</td></tr>
<tr><th>invalid votes (too fast, or a response time the server contradicts; left out by
<code>analyze votes</code>)</th><td class="invalid">{study.invalid} of {study.votes}</td></tr>
</table>
<p class="downloads"><a href="/admin/export.csv{query}">votes CSV</a> ·
<a href="/admin/participants.csv{query}">participants CSV</a> ·
<a href="/admin/stimuli.csv{query}">stimuli CSV</a></p>
<h3>Votes per photo and condition</h3>
{votes_figure(study)}
<details><summary>Table (chosen / shown)</summary>
<table class="per-image"><tr><th>photo</th>{header}</tr>{rows}</table></details>
</section>""")
    return "\n".join(blocks)
