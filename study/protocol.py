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


@dataclass(frozen=True)
class Protocol:
    exposure_ms: int = DEFAULT_EXPOSURE_MS
    question: str = DEFAULT_QUESTION
    consent_markdown: str | None = None  # None: the bundled text
    completion_url: str | None = None
    max_participants: int | None = None

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
        return self


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
