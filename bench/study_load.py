"""Load and crash test of the study server: no acknowledged vote may be lost, doubled or invented.

Simulated participants (16 at a time) enrol and answer every trial over loopback HTTP against
`colorizer study serve` running in a subprocess on a fresh SQLite database, as the page does: with
the participant token, one trial at a time as the server releases them. Some votes are resent
(must be stored once), some trials get a conflicting second vote (must be refused with 409), some
participants reload midway (must resume without answered trials). When half the votes are
acknowledged the server is killed with SIGKILL and restarted on the same database while clients
keep retrying. Finally the admin CSV export must hold exactly the acknowledged votes.

The last line printed is the figures; the exit status is 1 if any vote was lost, doubled or invented.
"""

from __future__ import annotations

import argparse
import csv
import http.client
import io
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

ADMIN_TOKEN = "bench-admin-token"
TOKEN_HEADER = "X-Participant-Token"
# The real `study serve` command, without the main CLI's start-up cost (which would lengthen the outage).
SERVE = (
    "import argparse, sys; from study.cli import register; parser = argparse.ArgumentParser(); "
    "register(parser.add_subparsers()); args = parser.parse_args(sys.argv[1:]); sys.exit(args.func(args))"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prepare(workdir: Path, images: int, catch: int, db_url: str | None = None) -> str:
    """A study on fresh photos in `db_url` (default: a new SQLite file in `workdir`). Its simulated
    participants answer 10 times faster than people, so it has no minimum response time."""
    from study.prepare import prepare_study
    from study.protocol import Protocol

    rng = np.random.default_rng(0)
    photos = workdir / "photos"
    photos.mkdir()
    for index in range(images + catch):
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(photos / f"{index}.png")
    db_url = db_url or f"sqlite:///{workdir / 'votes.db'}"
    fake_models = {"model-a": ImageOps.autocontrast, "model-b": ImageOps.equalize}
    prepare_study(db_url, "load", fake_models, photos, workdir / "media", n=images, catch=catch,
                  protocol=Protocol(min_response_ms=0, max_invalid_share=1.0))
    return db_url


class Server:
    """`study serve` in a subprocess that can be killed and restarted on the same database."""

    def __init__(self, db_url: str, port: int, log: Path, workers: int = 1, options: tuple[str, ...] = ()):
        self.command = [sys.executable, "-c", SERVE, "study", "serve", "--db", db_url, "--port", str(port)]
        # Every simulated participant connects from 127.0.0.1: no limit on enrolments per client.
        self.command += ["--admin-token", ADMIN_TOKEN, "--workers", str(workers), "--enrolments-per-client", "0"]
        self.command += options
        self.address = ("127.0.0.1", port)
        self.log = log
        self.workers = workers
        self.process: subprocess.Popen | None = None

    def start(self, timeout_s: float = 60) -> None:
        with self.log.open("a") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"server exited with {self.process.returncode}; see {self.log}")
            try:
                with socket.create_connection(self.address, timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise SystemExit(f"server did not answer within {timeout_s} s")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def worker_pids(self) -> list[int]:
        """The worker processes of `--workers N` (children of the supervisor)."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        pids = []
        for pid in children:
            # uvicorn's spawn start method also leaves a resource tracker among the children.
            if "resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                pids.append(int(pid))
        return pids

    def kill_worker(self) -> None:
        """SIGKILL one worker: the supervisor starts a new one; the others go on serving."""
        deadline = time.monotonic() + 60
        while len(pids := self.worker_pids()) < self.workers:
            if time.monotonic() > deadline:
                raise SystemExit(f"only {len(pids)} of {self.workers} workers started")
            time.sleep(0.1)
        os.kill(pids[0], signal.SIGKILL)
        print(f"killed worker {pids[0]} of {pids}", file=sys.stderr)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()


@dataclass
class Tally:
    acknowledged: dict[tuple[str, str], str] = field(default_factory=dict)  # (participant, trial) -> choice
    latencies_ms: list[float] = field(default_factory=list)
    requests: int = 0
    retries: int = 0
    problems: list[str] = field(default_factory=list)


class Client:
    """One simulated browser: a keep-alive connection (http.client: httpx would cost the 2-core
    machine as much CPU as the server does) that reconnects and resends while the server is down."""

    def __init__(self, address: tuple[str, int], tally: Tally):
        self.address = address
        self.tally = tally
        self.connection: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: dict | None = None, token: str | None = None) -> tuple[int, dict]:
        payload = json.dumps(body) if body is not None else None
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if token is not None:
            headers[TOKEN_HEADER] = token
        for attempt in range(600):
            started = time.perf_counter()
            try:
                if self.connection is None:
                    self.connection = http.client.HTTPConnection(*self.address, timeout=30)
                self.connection.request(method, path, payload, headers)
                response = self.connection.getresponse()
                status, answer = response.status, json.loads(response.read())
            except (OSError, http.client.HTTPException):
                self.connection = None
                self.tally.retries += 1
                time.sleep(min(0.5, 0.02 * 2**attempt))
                continue
            self.tally.requests += 1
            if path == "/api/votes":
                self.tally.latencies_ms.append((time.perf_counter() - started) * 1000)
            if status >= 500:
                self.tally.problems.append(f"{path}: {status} {answer}")
            return status, answer
        raise RuntimeError(f"{path}: server unreachable")


def participant(server: Server, tally: Tally, number: int, args) -> None:
    rng = random.Random(f"{args.seed}-{number}")
    client = Client(server.address, tally)
    external_id = f"bench-{number}"
    # The enrolment key makes a resent enrolment (its answer lost to the SIGKILL) return this participant.
    enrolment = {"external_id": external_id, "client_enrolment_id": f"{external_id}-key"}
    status, state = client.request("POST", "/api/participants", enrolment)
    if status not in (200, 201):
        tally.problems.append(f"{external_id}: enrolment refused: {status} {state}")
        return
    token, participant_id = state["participant_token"], state["participant_id"]
    reload_at = rng.randrange(1, state["total"]) if rng.random() < args.reload else None
    for index in range(state["total"]):
        trial = state["trials"][0]
        if index == reload_at:
            resumed = client.request("GET", f"/api/participants/{participant_id}", token=token)[1]
            if resumed.get("trials") != state["trials"] or resumed.get("answered") != index:
                tally.problems.append(f"{external_id}: resume did not continue at trial {index}")
        time.sleep(rng.uniform(0, 2 * args.think_ms) / 1000)
        vote = {
            "participant_id": participant_id,
            "trial_id": trial["trial_id"],
            "choice": rng.choice(["left", "right"]),
            "rt_ms": rng.randrange(300, 5000),
            "client_vote_id": f"{external_id}-{index}",
        }
        status, answer = client.request("POST", "/api/votes", vote, token)
        if status != 200:
            tally.problems.append(f"vote refused: {status} {answer}")
            return
        tally.acknowledged[(vote["participant_id"], vote["trial_id"])] = vote["choice"]
        if rng.random() < args.resend and client.request("POST", "/api/votes", vote, token)[0] != 200:
            tally.problems.append("a resent vote was not accepted")
        if rng.random() < args.conflict:
            other = "right" if vote["choice"] == "left" else "left"
            conflict = {**vote, "choice": other, "client_vote_id": vote["client_vote_id"] + "-changed"}
            if client.request("POST", "/api/votes", conflict, token)[0] != 409:
                tally.problems.append("a conflicting re-vote was not refused")
        state = answer
    if not state.get("completion_code"):
        tally.problems.append(f"{external_id}: no completion code after the last trial")


def crash_halfway(server: Server, tally: Tally, total_votes: int, done: threading.Event) -> float:
    """SIGKILL the server (with several workers: one worker) once half the votes are acknowledged,
    restart it; return the outage in s (the time until the server takes connections again)."""
    while len(tally.acknowledged) < total_votes // 2:
        if done.wait(0.01):
            return 0.0
    started = time.monotonic()
    if server.workers > 1:
        server.kill_worker()
    else:
        server.kill()
        server.start()
    return time.monotonic() - started


def run_participants(server: Server, tally: Tally, trials: int, args) -> float:
    done = threading.Event()
    with ThreadPoolExecutor(max_workers=args.concurrency + 1) as pool:
        crash = pool.submit(crash_halfway, server, tally, args.participants * trials, done) if args.kill else None
        with ThreadPoolExecutor(max_workers=args.concurrency) as participants:
            for result in [participants.submit(participant, server, tally, n, args) for n in range(args.participants)]:
                result.result()
        done.set()
        return crash.result() if crash else 0.0


def exported_votes(server: Server) -> list[tuple[str, str, str]]:
    connection = http.client.HTTPConnection(*server.address, timeout=60)
    connection.request("GET", "/admin/export.csv", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    response = connection.getresponse()
    if response.status != 200:
        raise SystemExit(f"export failed: {response.status}")
    rows = csv.DictReader(io.StringIO(response.read().decode()))
    return [(row["participant_id"], row["participant_trial_id"], row["choice"]) for row in rows]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--images", type=int, default=30, help="model-vs-model trials per participant")
    parser.add_argument("--catch", type=int, default=2, help="catch trials per participant")
    parser.add_argument("--resend", type=float, default=0.1, help="share of votes sent twice")
    parser.add_argument("--conflict", type=float, default=0.1, help="share of trials given a conflicting re-vote")
    parser.add_argument("--reload", type=float, default=0.2, help="share of participants who reload midway")
    parser.add_argument(
        "--think-ms",
        type=float,
        default=100,
        help="mean pause before each vote (default 100: a person takes 1-5 s, so this is 10-50x faster); "
        "0 saturates the server",
    )
    parser.add_argument("--no-kill", dest="kill", action="store_false", help="do not SIGKILL the server halfway")
    parser.add_argument("--db", metavar="URL",
                        help="an empty database to run on, e.g. PostgreSQL (default: a new SQLite file)")
    parser.add_argument("--workers", type=int, default=1,
                        help="server processes; with more than one, one worker is killed instead of the server")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="study-load-") as tmp:
        workdir = Path(tmp)
        db_url = prepare(workdir, args.images, args.catch, args.db)
        server = Server(db_url, free_port(), workdir / "server.log", workers=args.workers)
        server.start()
        tally = Tally()
        started = time.monotonic()
        try:
            outage_s = run_participants(server, tally, args.images + args.catch, args)
            elapsed = time.monotonic() - started
            exported = exported_votes(server)
        finally:
            server.stop()
        if tally.problems:
            print(*tally.problems[:10], sep="\n", file=sys.stderr)

    acknowledged = {(p, t, c) for (p, t), c in tally.acknowledged.items()}
    exported_set = set(exported)
    lost = len(acknowledged - exported_set)
    invented = len(exported_set - acknowledged)
    duplicates = len(exported) - len(exported_set)
    expected = args.participants * (args.images + args.catch)
    p50, p99 = np.percentile(tally.latencies_ms, [50, 99])
    print(
        f"{tally.requests} requests in {elapsed:.1f} s ({tally.requests / elapsed:.0f}/s) on {os.cpu_count()} CPUs, "
        f"{args.workers} worker(s) on {db_url.partition(':')[0]}, "
        f"{tally.retries} retried connection failures, "
        + (f"outage after SIGKILL {outage_s:.2f} s" if args.workers == 1 else "a worker SIGKILLed halfway" if args.kill
           else "no SIGKILL")
        + f", p50 {p50:.1f} ms"
    )
    print(
        f"votes={expected} acknowledged={len(acknowledged)} exported={len(exported)} lost={lost} "
        f"duplicates={duplicates} invented={invented} errors={len(tally.problems)} p99_ms={p99:.1f}"
    )
    ok = lost == duplicates == invented == len(tally.problems) == 0 and len(acknowledged) == expected
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
