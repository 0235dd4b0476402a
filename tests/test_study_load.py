"""A small run of bench/study_load.py: SIGKILL halfway, resends and conflicts, and not one vote lost."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "study_load.py"


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_votes_survive_a_killed_server():
    arguments = ["--participants", "12", "--concurrency", "6", "--images", "6", "--catch", "2", "--think-ms", "5"]
    arguments += ["--resend", "0.3", "--conflict", "0.3", "--reload", "0.5"]
    result = subprocess.run(
        [sys.executable, str(BENCH), *arguments], capture_output=True, text=True, timeout=170
    )
    last_line = result.stdout.strip().splitlines()[-1]
    assert result.returncode == 0, result.stdout + result.stderr
    figures = dict(re.findall(r"(\w+)=([\d.]+)", last_line))
    assert figures["votes"] == figures["acknowledged"] == figures["exported"] == "96"
    assert figures["lost"] == figures["duplicates"] == figures["invented"] == figures["errors"] == "0"
    outage_s = float(re.search(r"outage after SIGKILL ([\d.]+) s", result.stdout).group(1))
    assert outage_s > 0  # the server really was killed and restarted
