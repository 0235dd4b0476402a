"""`study serve`'s HTTP server: uvicorn, with a request-head timeout and a limit on the connections
one client address may hold, enforced in the HTTP protocol itself (uvicorn has neither: a connection
that never finishes its head is kept for good, so 2,000 of them made it answer 503 to everyone).
With `--workers N` each process builds its app from the settings in an environment variable."""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from study.limits import DEFAULT_CONNECTIONS_PER_CLIENT, DEFAULT_HEAD_TIMEOUT_S, client_key

# Where `study serve --workers N` leaves its settings for the worker processes (which inherit the
# environment; like COLORIZER_ADMIN_TOKEN, only the same user can read it).
SETTINGS_VARIABLE = "COLORIZER_STUDY_SERVE"


@dataclass
class ServeSettings:
    db: str
    media: str | None = None
    admin_token: str | None = None
    enrolments_per_client: int = 0
    connections_per_client: int = DEFAULT_CONNECTIONS_PER_CLIENT
    head_timeout_s: float = DEFAULT_HEAD_TIMEOUT_S
    # Reverse proxies: all their clients arrive from their address, so it is not limited.
    trusted_proxies: list[str] = field(default_factory=lambda: ["127.0.0.1"])


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol that closes a connection whose request head has not arrived
    within `head_timeout_s` (from the connection's start, or from the first byte of a later request
    on it), and refuses a client's connections beyond `connections_per_client` at once."""

    settings: ClassVar[ServeSettings] = ServeSettings(db="")
    open_by_client: ClassVar[Counter[str]] = Counter()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.head_timer: asyncio.TimerHandle | None = None
        self.counted_as: str | None = None
        host = self.client[0] if self.client else None
        settings = self.settings
        if "*" not in settings.trusted_proxies and host not in settings.trusted_proxies:
            key = client_key(host)
            if self.open_by_client[key] >= settings.connections_per_client:
                self.transport.close()
                return
            self.open_by_client[key] += 1
            self.counted_as = key
        self.start_head_timer()

    def start_head_timer(self) -> None:
        if self.head_timer is None:
            self.head_timer = self.loop.call_later(self.settings.head_timeout_s, self.head_timed_out)

    def stop_head_timer(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def head_timed_out(self) -> None:
        self.head_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.start_head_timer()

    def on_headers_complete(self) -> None:
        self.stop_head_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self.stop_head_timer()
        if self.counted_as is not None:
            self.open_by_client[self.counted_as] -= 1
            if not self.open_by_client[self.counted_as]:
                del self.open_by_client[self.counted_as]
            self.counted_as = None
        super().connection_lost(exc)


def configure(settings: ServeSettings) -> None:
    GuardedHttpProtocol.settings = settings


def app_for(settings: ServeSettings):
    from study.app import create_app

    configure(settings)
    return create_app(settings.db, settings.media, settings.admin_token,
                      enrolments_per_client=settings.enrolments_per_client)


def app_from_environment():
    """The app of one `study serve --workers N` process (uvicorn's factory)."""
    return app_for(ServeSettings(**json.loads(os.environ[SETTINGS_VARIABLE])))


def settings_environment(settings: ServeSettings) -> str:
    return json.dumps(asdict(settings))
