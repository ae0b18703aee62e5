"""The benchmark runs end to end on a tiny setting; its timings are not checked here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quick_benchmark_prints_its_table() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    for figure in (
        "event ack, steady",
        "placeholder visible after the event",
        "first text visible minus the model's TTFT",
        "final text visible minus the model's end of stream",
        "wall time / model time",
        "peak RSS of the bot",
        "idle RSS after start",
        "edits/s of one reply streaming alone",
        "fake Slack enforcing Tier 3",
        "history rebuild",
        "Slack Web API calls per reply",
        "chat.postMessage",
    ):
        assert figure in out, f"{figure!r} missing from:\n{out}"


def test_quick_instances_benchmark_runs_on_postgresql(postgres_server: object) -> None:
    del postgres_server  # skipped, with the reason, where no PostgreSQL server can start
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--instances", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for figure in ("over 2 instances, PostgreSQL", "1 instance, SQLite", "duplicates"):
        assert figure in done.stdout, done.stdout
    assert " NO" not in done.stdout, done.stdout
