"""How much one client may ask of `study serve`: enrolments and admin logins per time window (counted
in the database, so every server process shares them), and open connections and request-head time
(per process, in the server's HTTP protocol: `study/server.py`). Kept apart from the server so the
CLI can show the defaults without importing it."""

from __future__ import annotations

import ipaddress

# Enrolments one client address may make per window; `serve --enrolments-per-client`.
DEFAULT_ENROLMENTS_PER_CLIENT = 20
ENROLMENT_WINDOW_S = 600
# Admin login attempts per window, from one client and from everyone together.
LOGIN_WINDOW_S = 900
LOGIN_ATTEMPTS_PER_CLIENT = 10
LOGIN_ATTEMPTS_OVERALL = 100
# Open connections one client address may hold in one server process (a browser opens at most 6 to
# a site; a lab behind one address a few dozen), and how long a request head may take to arrive.
DEFAULT_CONNECTIONS_PER_CLIENT = 64
DEFAULT_HEAD_TIMEOUT_S = 10.0


def client_key(host: str | None) -> str:
    """The address a client is counted under: IPv4 as it is, IPv6 by its /64 (one household or
    machine gets a whole /64, so counting single IPv6 addresses would count nothing)."""
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        return host or "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)
