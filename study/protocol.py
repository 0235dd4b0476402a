"""A study's protocol: what the participant page says and does, stored with the study by `prepare`.

The consent and instruction text is Markdown written by the researcher (with the researcher's and
the ethics contact's details); it is rendered without raw HTML, so the text cannot carry scripts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from colorizer.errors import UserError

DEFAULT_EXPOSURE_MS = 5000
DEFAULT_QUESTION = "Which colorization is more appealing?"
DEFAULT_CONSENT_FILE = Path(__file__).parent / "templates" / "consent.md"
# The completion URL's placeholder for the participant's completion code (Prolific: ?cc={code}).
CODE_PLACEHOLDER = "{code}"
MIN_EXPOSURE_MS, MAX_EXPOSURE_MS = 100, 600_000
MAX_CONSENT_CHARACTERS = 50_000
# Nobody looks at two photos and chooses in less: faster votes (by the page's or the server's clock)
# are a bot or a key pressed before the pictures showed, and count as invalid.
DEFAULT_MIN_RESPONSE_MS = 600
# Studies from before the setting flagged votes under 300 ms, without making them invalid.
LEGACY_TOO_FAST_MS = 300
# A participant with more than this share of invalid (counted) votes gets no completion code.
DEFAULT_MAX_INVALID_SHARE = 0.5
# A break screen after every this many counted trials (long studies only).
DEFAULT_BREAK_EVERY = 40
# The page shows a fixation cross this long before each pair: the server's time includes it.
FIXATION_MS = 800
# The page's response time starts after the server released the trial and ends before the vote
# arrives, so it can never honestly exceed the server's time; this much is left for clock jitter.
TIME_MISMATCH_SLACK_MS = 250


@dataclass(frozen=True)
class Protocol:
    exposure_ms: int = DEFAULT_EXPOSURE_MS
    question: str = DEFAULT_QUESTION
    consent_markdown: str | None = None  # None: the bundled text
    completion_url: str | None = None
    max_participants: int | None = None
    min_response_ms: int = DEFAULT_MIN_RESPONSE_MS
    max_invalid_share: float = DEFAULT_MAX_INVALID_SHARE
    # Prolific's STUDY_ID: enrolments that bring it (with a PROLIFIC_PID and SESSION_ID) are recruited.
    prolific_study_id: str | None = None
    # Places that enrolments without the platform's ids may take; None: all of them without a
    # prolific_study_id, none with one (every place is kept for recruited participants).
    anonymous_places: int | None = None
    break_every: int = DEFAULT_BREAK_EVERY

    def check(self) -> Protocol:
        """This protocol, or a one-line UserError naming what is wrong with it."""
        if not MIN_EXPOSURE_MS <= self.exposure_ms <= MAX_EXPOSURE_MS:
            raise UserError(f"--exposure-ms must lie in {MIN_EXPOSURE_MS}..{MAX_EXPOSURE_MS}, got {self.exposure_ms}")
        if not self.question.strip() or len(self.question) > 500:
            raise UserError("--question must be 1 to 500 characters")
        if self.consent_markdown is not None and len(self.consent_markdown) > MAX_CONSENT_CHARACTERS:
            raise UserError(f"the consent text must be at most {MAX_CONSENT_CHARACTERS} characters")
        if self.completion_url is not None:
            parts = urlsplit(self.completion_url)
            if parts.scheme not in ("https", "http") or not parts.netloc:
                raise UserError(f"--completion-url must be an http(s) URL, got {self.completion_url!r}")
            if CODE_PLACEHOLDER not in self.completion_url:
                raise UserError(f"--completion-url must contain {CODE_PLACEHOLDER}, where the completion code goes")
        if self.max_participants is not None and self.max_participants < 1:
            raise UserError("--max-participants must be at least 1")
        if not 0 <= self.min_response_ms <= 60_000:
            raise UserError(f"--min-response-ms must lie in 0..60000, got {self.min_response_ms}")
        if not 0 <= self.max_invalid_share <= 1:
            raise UserError(f"--max-invalid-share must lie in 0..1, got {self.max_invalid_share}")
        if self.prolific_study_id is not None and not 1 <= len(self.prolific_study_id.strip()) <= 200:
            raise UserError("--prolific-study-id must be 1 to 200 characters")
        if self.anonymous_places is not None and self.anonymous_places < 0:
            raise UserError("--anonymous-places must be at least 0")
        if self.break_every < 0:
            raise UserError("--break-every must be at least 0 (0: no breaks)")
        return self


@dataclass(frozen=True)
class VoteTiming:
    """What the two clocks say about a vote: `too_fast` (under the study's minimum by either clock,
    the server's less the fixation cross; a minimum of 0 turns this off), `time_mismatch` (the page
    claims more time than the server saw pass), and `invalid` (either: analysis leaves such votes out)."""

    too_fast: bool
    time_mismatch: bool

    @property
    def invalid(self) -> bool:
        return self.too_fast or self.time_mismatch


def vote_timing(rt_ms: int, server_ms: int | None, min_response_ms: int | None) -> VoteTiming:
    """The timing verdict on a vote of a study whose minimum response time is `min_response_ms`
    (None: a study from before the setting, whose votes were only flagged under 300 ms by either clock)."""
    if min_response_ms is None:
        fast = rt_ms < LEGACY_TOO_FAST_MS or (server_ms is not None and server_ms < LEGACY_TOO_FAST_MS)
        return VoteTiming(fast, False)
    server_fast = server_ms is not None and server_ms < min_response_ms + FIXATION_MS
    mismatch = server_ms is not None and rt_ms > server_ms + TIME_MISMATCH_SLACK_MS
    return VoteTiming(min_response_ms > 0 and (rt_ms < min_response_ms or server_fast), mismatch)


def read_consent(path: str | Path) -> str:
    """The Markdown text of a consent file, or a one-line UserError."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read the consent file {path}: {getattr(error, 'strerror', None) or error}") from None


def consent_html(markdown: str | None) -> str:
    """The consent text as HTML: CommonMark with raw HTML escaped and unsafe links refused."""
    from markdown_it import MarkdownIt

    text = markdown if markdown is not None else DEFAULT_CONSENT_FILE.read_text(encoding="utf-8")
    return MarkdownIt("commonmark", {"html": False}).render(text)


def completion_link(url: str | None, code: str | None) -> str | None:
    """Where the page sends a participant who has finished: the URL with their code filled in."""
    from urllib.parse import quote

    if url is None or code is None:
        return None
    return url.replace(CODE_PLACEHOLDER, quote(code, safe=""))
