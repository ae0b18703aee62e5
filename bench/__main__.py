"""`python -m bench [--quick]`: what the bot adds on top of Claude, measured end to end.

The fake Slack and fake Claude servers run in one process (`python -m fakes`), the bot in
another (`python -m slackbot` in HTTP mode, as users run it, with its own temporary database), and
this process sends real signed events over HTTP with one aiohttp session. Every time is read on
CLOCK_MONOTONIC, which the three processes share, so "placeholder visible" is the fake Slack's
receipt of `chat.postMessage` minus the moment the event was sent, and so on. Figures with a
natural baseline are printed as a ratio to it, measured in the same run. History rebuild is timed
in this process against `Store` and `build_messages` once the others have stopped.

For profiling: BENCH_PROFILE=DIR records the bot and the fakes with py-spy during the burst
(BENCH_PROFILE_ARGS adds py-spy options, e.g. --gil); BENCH_KEEP_LOGS=DIR keeps their logs;
BENCH_BOT_CMD runs another command as the bot (an experiment).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import inspect
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from fakes.claude import reply_text
from fakes.slack import agent_session_stopped_event, event_callback, signed_event_request

ROOT = Path(__file__).resolve().parent.parent
SIGNING_SECRET = "bench-signing-secret"
TTFT = 0.3  # the fake model's time to first token, unless a row says otherwise
TPS = 40.0  # its tokens a second
CHARS_PER_TOKEN = 4  # the fake's default
# The bot's defaults (slackbot.config): the benchmark runs it unconfigured, as users do.
EDIT_INTERVAL = 1.0
BUDGET_PER_MINUTE = 45.0
BUDGET_BURST = 5


@dataclass(frozen=True)
class Sizes:
    latency_replies: int  # isolated replies for the placeholder / first / final text rows
    latency_spacing: float
    latency_seconds: float  # how long each of those replies streams
    steady_rate: float
    steady_seconds: float
    burst: int
    burst_stream: float  # seconds each burst reply streams after its first token
    long_stream: float
    tier3: int
    history: tuple[int, ...]
    stops: int = 10  # natively streamed DM replies stopped mid-way
    tier2: int = 50  # DM-thread replies started at once in one workspace


FULL = Sizes(30, 0.5, 2.0, 20.0, 10.0, 200, 3.0, 60.0, 50, (10, 100, 1_000, 10_000))
QUICK = Sizes(3, 0.3, 0.5, 20.0, 0.5, 10, 0.5, 3.0, 5, (10, 100), stops=2, tier2=10)


# -- small helpers ------------------------------------------------------------------------------


def pct(values: Sequence[float], q: float) -> float:
    """The q-th percentile (nearest rank); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def ms(seconds: float) -> str:
    if seconds != seconds:  # NaN
        return "n/a"
    return f"{seconds * 1000:.1f} ms" if abs(seconds) < 10 else f"{seconds:.1f} s"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kib(pid: int, field_name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    return 0


def reset_peak_rss(pid: int) -> None:
    """Reset VmHWM to the current RSS (Linux ≥ 4.0), so the peak is that of one scenario."""
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def profiled(pid: int, name: str) -> Any:
    """With BENCH_PROFILE=DIR, record the process with py-spy (if installed) meanwhile."""
    where = os.environ.get("BENCH_PROFILE")
    if not where:
        yield
        return
    out = Path(where) / f"{name}.txt"
    options = os.environ.get("BENCH_PROFILE_ARGS", "").split()
    spy = subprocess.Popen(
        ["py-spy", "record", "-p", str(pid), "-r", "200", "-f", "raw", "-o", str(out), *options],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=30)


def squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


@dataclass
class Row:
    figure: str
    measured: str
    target: str = ""
    ok: bool | None = None


@dataclass
class Sent:
    tag: str
    channel: str
    ts: str
    sent_at: float = 0.0
    ack: float = float("nan")
    status: int = 0


@dataclass
class Reply:
    """One event's reply as the fakes saw it."""

    sent: Sent
    messages: list[dict[str, Any]]
    model: dict[str, Any] | None
    complete: bool

    @property
    def placeholder_at(self) -> float | None:
        return self.messages[0]["posted_at"] if self.messages else None

    @property
    def first_text_at(self) -> float | None:
        updates = self.messages[0]["update_times"] if self.messages else []
        return updates[0] if updates else None

    @property
    def final_at(self) -> float | None:
        if not self.messages:
            return None
        return max(
            m["update_times"][-1] if m["update_times"] else m["posted_at"] for m in self.messages
        )

    @property
    def updates(self) -> list[float]:
        return sorted(t for m in self.messages for t in m["update_times"])


# -- the processes ------------------------------------------------------------------------------


@dataclass
class Harness:
    workdir: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    bot: subprocess.Popen[bytes] | None = None
    bot_url: str = ""
    startup_seconds: float = 0.0
    _started: float = 0.0

    def clean_env(self) -> dict[str, str]:
        prefixes = ("SLACK_", "SLACKBOT_", "ANTHROPIC_", "CLAUDE_")
        env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes) and k != "PORT"}
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def start_fakes(self) -> None:
        out = self.workdir / "fakes.out"
        with out.open("wb") as stdout, (self.workdir / "fakes.err").open("wb") as stderr:
            proc = subprocess.Popen(
                [sys.executable, "-m", "fakes", "--ttft", str(TTFT), "--tps", str(TPS)],
                cwd=ROOT,
                env=self.clean_env(),
                stdout=stdout,
                stderr=stderr,
            )
        self.procs.append(proc)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = out.read_text().strip()
            if line:
                self.info = json.loads(line.splitlines()[0])
                return
            if proc.poll() is not None:
                break
            time.sleep(0.02)
        raise RuntimeError(f"fakes did not start: {(self.workdir / 'fakes.err').read_text()}")

    def spawn_bot(self, **settings: str) -> tuple[subprocess.Popen[bytes], str]:
        """Start a bot (the first becomes `self.bot`); `settings`: more environment (another
        database, `DATABASE_URL`). Returns the process and its URL."""
        port = free_port()
        env = (
            self.clean_env()
            | {
                "SLACK_BOT_TOKEN": self.info["bot_token"],
                "SLACK_SIGNING_SECRET": SIGNING_SECRET,
                "SLACK_API_URL": self.info["slack_api_url"],
                "ANTHROPIC_API_KEY": "sk-ant-bench",
                "ANTHROPIC_BASE_URL": self.info["claude_url"],
                "SLACKBOT_DB": str(self.workdir / "bot.db"),
                "PORT": str(port),
            }
            | settings
        )
        self._started = time.monotonic()
        name = "bot.log" if self.bot is None else f"bot-{port}.log"
        with (self.workdir / name).open("wb") as log:
            # Its own working directory, so that no developer's .env is picked up.
            # BENCH_BOT_CMD runs something else instead (an experiment, while profiling).
            command = os.environ.get("BENCH_BOT_CMD", f"{sys.executable} -m slackbot").split()
            bot = subprocess.Popen(
                command,
                cwd=self.workdir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.procs.append(bot)
        url = f"http://127.0.0.1:{port}"
        if self.bot is None:
            self.bot, self.bot_url = bot, url
        return bot, url

    async def wait_healthy(
        self,
        session: aiohttp.ClientSession,
        bot: subprocess.Popen[bytes] | None = None,
        url: str | None = None,
    ) -> None:
        bot, url = bot or self.bot, url or self.bot_url
        assert bot is not None
        started = self._started
        deadline = started + 60
        while time.monotonic() < deadline:
            if bot.poll() is not None:
                break
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(url + "/healthz") as response:
                    if response.status == 200:
                        self.startup_seconds = time.monotonic() - started
                        return
            await asyncio.sleep(0.02)
        raise RuntimeError(f"bot did not become healthy: {(self.workdir / 'bot.log').read_text()}")

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# -- the load generator -------------------------------------------------------------------------


class Load:
    """Builds and sends signed `app_mention` events; one aiohttp session for everything."""

    def __init__(self, harness: Harness, session: aiohttp.ClientSession) -> None:
        self.h = harness
        self.session = session
        self._n = 0
        self._base = int(time.time())

    def _next_ts(self) -> str:
        self._n += 1
        return f"{self._base}.{self._n:06d}"

    def prepare(
        self,
        scenario: str,
        count: int,
        *,
        team: str,
        marker: str,
        team_each: bool = False,
        dm: bool = False,
    ) -> list[tuple[Sent, bytes, dict[str, str]]]:
        """Signed requests, built before the clock starts so that sending stays cheap.

        `team_each` puts every event in a workspace of its own (so its own edit budget); `dm`
        makes them top-level DMs (answered in their own thread: natively streamed).
        """
        out = []
        for i in range(count):
            team_id = f"{team}{i:05d}" if team_each else team
            prefix = "D" if dm else "C"
            sent = Sent(
                tag=f"tag-{scenario}-{i:05d}", channel=f"{prefix}{scenario.upper()}{i:05d}", ts=""
            )
            sent.ts = self._next_ts()
            user = f"U{(self._n % 20) + 1:05d}"
            event = {
                "type": "app_mention",
                "channel": sent.channel,
                "user": user,
                "text": f"<@{self.h.info['bot_user_id']}> {marker} {sent.tag} how are things?",
                "ts": sent.ts,
                "event_ts": sent.ts,
                "team": team_id,
            }
            if dm:
                event |= {"type": "message", "channel_type": "im"}
                event["text"] = f"{marker} {sent.tag} how are things?"
            payload = event_callback(event, team_id=team_id, bot_user_id=self.h.info["bot_user_id"])
            body, headers = signed_event_request(SIGNING_SECRET, payload)
            out.append((sent, body, headers))
        return out

    async def send(
        self, sent: Sent, body: bytes, headers: dict[str, str], url: str | None = None
    ) -> Sent:
        sent.sent_at = time.monotonic()
        async with self.session.post(
            (url or self.h.bot_url) + "/slack/events", data=body, headers=headers
        ) as response:
            await response.read()
            sent.status = response.status
        sent.ack = time.monotonic() - sent.sent_at
        return sent

    async def steady(
        self, prepared: list[tuple[Sent, bytes, dict[str, str]]], rate: float
    ) -> list[Sent]:
        """Send at `rate` a second on a fixed schedule (late sends do not shift later ones)."""
        start = time.monotonic()
        tasks = []
        for i, (sent, body, headers) in enumerate(prepared):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(self.send(sent, body, headers)))
        return list(await asyncio.gather(*tasks))

    async def burst(self, prepared: list[tuple[Sent, bytes, dict[str, str]]]) -> list[Sent]:
        return list(await asyncio.gather(*(self.send(s, b, h) for s, b, h in prepared)))

    async def script(
        self, marker: str, *, chars: int, ttft: float = TTFT, searched: bool = False
    ) -> None:
        body = {"marker": marker, "chars": chars, "ttft": ttft, "tps": TPS, "searched": searched}
        async with self.session.post(self.h.info["claude_url"] + "/_control/script", json=body):
            pass

    async def slack_stats(self) -> dict[str, Any]:
        async with self.session.get(self.h.info["slack_url"] + "/_control/stats?text=1") as r:
            return dict(await r.json())

    async def claude_stats(self) -> dict[str, Any]:
        async with self.session.get(self.h.info["claude_url"] + "/_control/stats") as r:
            return dict(await r.json())

    async def replies(self, sents: Iterable[Sent], expected: str) -> list[Reply]:
        slack, claude = await asyncio.gather(self.slack_stats(), self.claude_stats())
        threads: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for m in slack["messages"]:
            if m["bot"] and m["thread_ts"]:
                threads.setdefault((m["channel"], m["thread_ts"]), []).append(m)
        models: dict[str, dict[str, Any]] = {}
        for entry in claude["timeline"]:
            if found := re.search(r"tag-[a-z0-9]+-\d+", entry["last_text"]):
                models[found.group(0)] = entry
        out = []
        for sent in sents:
            messages = threads.get((sent.channel, sent.ts), [])
            shown = "".join(m.get("text", "") for m in messages)
            complete = bool(messages) and squash(shown) == squash(expected)
            out.append(Reply(sent, messages, models.get(sent.tag), complete))
        return out

    async def wait_complete(
        self, sents: list[Sent], expected: str, timeout: float, poll: float = 0.5
    ) -> list[Reply]:
        deadline = time.monotonic() + timeout
        while True:
            replies = await self.replies(sents, expected)
            if all(r.complete for r in replies) or time.monotonic() > deadline:
                return replies
            await asyncio.sleep(poll)

    async def rtt(
        self, url: str, n: int, *, post_json: dict[str, Any] | None = None
    ) -> list[float]:
        """Round trips of a trivial request: the baseline for the latency rows."""
        out = []
        for _ in range(n):
            t0 = time.monotonic()
            if post_json is None:
                async with self.session.get(url) as r:
                    await r.read()
            else:
                async with self.session.post(url, json=post_json) as r:
                    await r.read()
            out.append(time.monotonic() - t0)
            await asyncio.sleep(0.01)
        return out


def chars_for(seconds: float) -> int:
    """Reply length that streams for `seconds` after the first token at the fake's pace."""
    return max(CHARS_PER_TOKEN, round(seconds * TPS) * CHARS_PER_TOKEN)


# -- scenarios ----------------------------------------------------------------------------------


async def run_live(h: Harness, load: Load, sizes: Sizes, rows: list[Row], extra: dict[str, Any]):
    bot_pid = h.bot.pid if h.bot else 0
    await asyncio.sleep(1.0)
    extra["idle_rss_kib"] = rss_kib(bot_pid, "VmRSS")

    # Baselines for the latency rows, measured now and in this run.
    healthz = await load.rtt(h.bot_url + "/healthz", 20)
    slack_post = await load.rtt(
        h.info["slack_api_url"] + "chat.postMessage",
        20,
        post_json={"token": h.info["bot_token"], "channel": "CBASELINE", "markdown_text": "x"},
    )
    extra["healthz_rtt"] = statistics.median(healthz)
    extra["slack_rtt"] = statistics.median(slack_post)

    # The 60-second reply streams alone in its own workspace, alongside the next scenarios.
    long_text = reply_text(chars_for(sizes.long_stream))
    await load.script("scriptlong", chars=len(long_text))
    long_req = load.prepare("long", 1, team="TLONG", marker="scriptlong")
    long_task = asyncio.create_task(load.burst(long_req))

    # Isolated replies: placeholder, first text and final text latency.
    lat_text = reply_text(chars_for(sizes.latency_seconds))
    await load.script("scriptlat", chars=len(lat_text))
    # Each in a workspace of its own: this measures the bot, not the shared edit budget.
    prepared = load.prepare(
        "lat", sizes.latency_replies, team="TLAT", marker="scriptlat", team_each=True
    )
    lat = await load.steady(prepared, 1 / sizes.latency_spacing)
    lat_replies = await load.wait_complete(lat, lat_text, 30 + sizes.latency_seconds)
    placeholder = [r.placeholder_at - r.sent.sent_at for r in lat_replies if r.placeholder_at]
    first = [r.first_text_at - r.sent.sent_at - TTFT for r in lat_replies if r.first_text_at]
    final = [
        r.final_at - r.model["end_at"]
        for r in lat_replies
        if r.final_at and r.model and r.model["end_at"]
    ]
    before_claude = [
        r.model["received_at"] - r.sent.sent_at for r in lat_replies if r.model is not None
    ]
    token_to_screen = [
        r.first_text_at - r.model["first_token_at"]
        for r in lat_replies
        if r.first_text_at and r.model and r.model["first_token_at"]
    ]
    n_lat = len(lat_replies)
    rows.append(
        Row(
            f"placeholder visible after the event ({n_lat} replies)",
            f"p50 {ms(pct(placeholder, 50))}  p95 {ms(pct(placeholder, 95))}"
            f"  = {pct(placeholder, 50) / extra['slack_rtt']:.1f}x one Slack call",
            "p50 <= 30 ms",
            pct(placeholder, 50) <= 0.030,
        )
    )
    rows.append(
        Row(
            "first text visible minus the model's TTFT",
            f"p50 {ms(pct(first, 50))}  p95 {ms(pct(first, 95))}",
            "p50 <= 30 ms",
            pct(first, 50) <= 0.030,
        )
    )
    rows.append(
        Row(
            "  of which: event -> request at Claude",
            f"p50 {ms(pct(before_claude, 50))}; first token -> visible p50 "
            f"{ms(pct(token_to_screen, 50))}",
        )
    )
    rows.append(
        Row(
            "final text visible minus the model's end of stream",
            f"p50 {ms(pct(final, 50))}  p95 {ms(pct(final, 95))}",
            "p50 <= 50 ms",
            pct(final, 50) <= 0.050 and all(r.complete for r in lat_replies),
        )
    )

    # Steady arrivals at 20/s: each one starts a 3-second reply.
    burst_text = reply_text(chars_for(sizes.burst_stream))
    await load.script("scriptstream", chars=len(burst_text))
    count = max(1, round(sizes.steady_rate * sizes.steady_seconds))
    prepared = load.prepare("steady", count, team="TSTEADY", marker="scriptstream")
    healthz_during: list[float] = []
    probe = asyncio.create_task(load.rtt(h.bot_url + "/healthz", int(sizes.steady_seconds * 10)))
    steady = await load.steady(prepared, sizes.steady_rate)
    healthz_during = await probe
    acks = [s.ack for s in steady]
    rows.append(
        Row(
            f"event ack, steady {sizes.steady_rate:g}/s ({len(steady)} events)",
            f"p50 {ms(pct(acks, 50))}  p95 {ms(pct(acks, 95))}  max {ms(max(acks))}"
            f"  = {pct(acks, 50) / statistics.median(healthz_during):.1f}x /healthz",
            "p50 <= 5 ms, p95 <= 20 ms",
            pct(acks, 50) <= 0.005
            and pct(acks, 95) <= 0.020
            and all(s.status == 200 for s in steady),
        )
    )
    steady_replies = await load.wait_complete(steady, burst_text, 60)
    steady_placeholder = [
        r.placeholder_at - r.sent.sent_at for r in steady_replies if r.placeholder_at
    ]
    rows.append(
        Row(
            "  placeholder visible, during the steady run",
            f"p50 {ms(pct(steady_placeholder, 50))}  p95 {ms(pct(steady_placeholder, 95))}"
            f"; {sum(r.complete for r in steady_replies)}/{len(steady_replies)} complete",
        )
    )

    # 200 mentions at once, 200 channels, each reply streaming 3 s.
    prepared = load.prepare("burst", sizes.burst, team="TBURST", marker="scriptstream")
    await asyncio.sleep(1.0)
    reset_peak_rss(bot_pid)
    fakes_pid = h.procs[0].pid
    cpu_before = cpu_seconds(bot_pid), cpu_seconds(fakes_pid), time.process_time()
    with profiled(bot_pid, "bot-burst"), profiled(fakes_pid, "fakes-burst"):
        t0 = time.monotonic()
        burst = await load.burst(prepared)
        acks = [s.ack for s in burst]
        await asyncio.sleep(TTFT + sizes.burst_stream)
        burst_replies = await load.wait_complete(burst, burst_text, 120, poll=0.25)
    peak_kib = rss_kib(bot_pid, "VmHWM")
    cpu_after = cpu_seconds(bot_pid), cpu_seconds(fakes_pid), time.process_time()
    done = [r for r in burst_replies if r.complete and r.final_at]
    wall = max((r.final_at or 0) for r in done) - t0 if done else float("nan")
    model_time = TTFT + sizes.burst_stream
    rows.append(
        Row(
            f"event ack during the {sizes.burst}-at-once burst",
            f"p50 {ms(pct(acks, 50))}  p95 {ms(pct(acks, 95))}  max {ms(max(acks))}",
            "report (Slack allows 3 s)",
            max(acks) < 3.0 and all(s.status == 200 for s in burst),
        )
    )
    rows.append(
        Row(
            f"{sizes.burst} at once: wall time / model time ({model_time:g} s)",
            f"{wall / model_time:.3f}  ({ms(wall)}; {len(done)}/{len(burst)} complete)",
            "<= 1.15, all complete",
            wall / model_time <= 1.15 and len(done) == len(burst),
        )
    )
    model_spans = [
        r.model["end_at"] - r.model["received_at"]
        for r in burst_replies
        if r.model and r.model["end_at"]
    ]
    finals = [
        r.final_at - r.model["end_at"]
        for r in burst_replies
        if r.final_at and r.model and r.model["end_at"]
    ]
    requested = [r.model["received_at"] - t0 for r in burst_replies if r.model]
    placed = [r.placeholder_at - t0 for r in burst_replies if r.placeholder_at]
    rows.append(
        Row(
            "  of which: last placeholder / request at Claude; model's own time; final - end",
            f"{ms(max(placed, default=float('nan')))} / "
            f"{ms(max(requested, default=float('nan')))}; p50 {ms(pct(model_spans, 50))} "
            f"max {ms(max(model_spans, default=float('nan')))}; p50 {ms(pct(finals, 50))} "
            f"max {ms(max(finals, default=float('nan')))}",
        )
    )
    rows.append(
        Row(
            "  CPU seconds in that run: bot / fakes / load generator",
            " / ".join(f"{a - b:.1f}" for a, b in zip(cpu_after, cpu_before, strict=True)),
        )
    )
    intermediate = sum(max(0, len(r.updates) - 1) for r in burst_replies)
    allowed = BUDGET_BURST + BUDGET_PER_MINUTE * wall / 60
    rows.append(
        Row(
            "  intermediate chat.update in that run (workspace)",
            f"{intermediate} in {ms(wall)} (budget allows {allowed:.1f}); "
            f"{len(done)}/{len(burst)} final texts",
            "<= budget, every final arrives",
            intermediate <= allowed and len(done) == len(burst),
        )
    )
    rows.append(
        Row(
            "peak RSS of the bot in that run",
            f"{peak_kib / 1024:.1f} MB",
            "<= 150 MB",
            peak_kib <= 150 * 1024,
        )
    )
    rows.append(Row("idle RSS after start", f"{extra['idle_rss_kib'] / 1024:.1f} MB", "report"))

    # The long reply.
    await long_task
    long_sent = long_req[0][0]
    (long_reply,) = await load.wait_complete([long_sent], long_text, 30)
    updates = long_reply.updates[:-1]  # all but the final edit
    model = long_reply.model or {}
    span = (model.get("end_at") or 0) - (model.get("first_token_at") or 0)
    rate = len(updates) / span if span > 0 else float("nan")
    half = (model.get("first_token_at") or 0) + span / 2
    later = [t for t in updates if t >= half]
    steady_rate = len(later) / (span / 2) if span > 0 else float("nan")
    per_message = 1 / EDIT_INTERVAL
    budget_run = (BUDGET_BURST + BUDGET_PER_MINUTE * span / 60) / span if span > 0 else 0
    bound = min(per_message, budget_run)
    steady_bound = min(per_message, BUDGET_PER_MINUTE / 60)
    rows.append(
        Row(
            f"edits/s of one reply streaming alone for {sizes.long_stream:g} s",
            f"{rate:.3f}/s = {rate / bound:.2f}x the bound {bound:.3f}/s; 2nd half "
            f"{steady_rate:.3f}/s = {steady_rate / steady_bound:.2f}x {steady_bound:.3f}/s",
            "0.8x..1.0x of min(1/interval, budget)",
            0.8 <= rate / bound <= 1.0 + 1e-9 and long_reply.complete,
        )
    )
    extra["calls"] = (await load.slack_stats())["calls"]
    extra["replies"] = 1 + len(lat_replies) + len(steady_replies) + len(burst_replies)

    if sizes.tier3:
        await run_tier3(load, sizes, rows, burst_text)


def _first_update(reply: Reply, contains: str) -> float | None:
    """When the reply's first message first showed `contains` (Slack's own clock)."""
    if not reply.messages:
        return None
    first = reply.messages[0]
    for at, text in zip(first["update_times"], first.get("update_texts", []), strict=False):
        if contains in text:
            return float(at)
    return None


async def run_tools(load: Load, sizes: Sizes, rows: list[Row]) -> None:
    """Replies that think, search the web once, then answer: the progress line and the answer
    against the model's own clock (its tool call, its first text token)."""
    text = reply_text(chars_for(sizes.latency_seconds))
    await load.script("scripttools", chars=len(text), searched=True)
    prepared = load.prepare(
        "tools", sizes.latency_replies, team="TTOOLS", marker="scripttools", team_each=True
    )
    sent = await load.steady(prepared, 1 / sizes.latency_spacing)
    replies = await load.wait_complete(sent, text, 30 + sizes.latency_seconds)
    first_text, progress = [], []
    for reply in replies:
        model = reply.model or {}
        shown = _first_update(reply, text[:CHARS_PER_TOKEN])  # the first token's text
        if shown is not None and model.get("first_text_at"):
            first_text.append(shown - model["first_text_at"])
        line = _first_update(reply, "Searching the web")
        if line is not None and model.get("tool_call_at"):
            progress.append(line - model["tool_call_at"])
    rows.append(
        Row(
            f"thinks, searches, answers ({len(replies)}): first text minus first text token",
            f"p50 {ms(pct(first_text, 50))}  p95 {ms(pct(first_text, 95))}",
            "p50 <= 30 ms",
            bool(first_text) and pct(first_text, 50) <= 0.030,
        )
    )
    rows.append(
        Row(
            "  progress line visible after the tool call starts",
            f"p50 {ms(pct(progress, 50))}  max {ms(max(progress, default=float('nan')))}"
            f"  ({len(progress)}/{len(replies)} shown)",
            "<= 300 ms",
            bool(progress) and max(progress) <= 0.300,
        )
    )


async def _reset_slack(load: Load, **configure: Any) -> None:
    async with load.session.post(load.h.info["slack_url"] + "/_control/reset"):
        pass
    if configure:
        async with load.session.post(
            load.h.info["slack_url"] + "/_control/configure", json=configure
        ):
            pass


def _status_calls(stats: dict[str, Any], channels: set[str]) -> int:
    methods = ("agents.sessions.setStatus", "assistant.threads.setStatus")
    return sum(1 for c in stats["call_log"] if c["method"] in methods and c["channel"] in channels)


async def run_native(load: Load, sizes: Sizes, rows: list[Row]) -> None:
    """Top-level DMs, answered natively in their threads: the first text against the model's
    first token, Slack's Stop against the moment Claude's connection closed, and Tier 2 held
    with many replies started at once in one workspace."""
    await _reset_slack(load)
    # 1. Latency: each reply in a workspace of its own (its own Tier-2 minute).
    text = reply_text(chars_for(sizes.latency_seconds))
    await load.script("scriptnative", chars=len(text))
    prepared = load.prepare(
        "nat", sizes.latency_replies, team="TNAT", marker="scriptnative", team_each=True, dm=True
    )
    sent = await load.steady(prepared, 1 / sizes.latency_spacing)
    replies = await load.wait_complete(sent, text, 30 + sizes.latency_seconds)
    first_text = []
    for reply in replies:
        model = reply.model or {}
        shown = _first_update(reply, text[:CHARS_PER_TOKEN])
        if shown is not None and model.get("first_text_at"):
            first_text.append(shown - model["first_text_at"])
    stats = await load.slack_stats()
    natives = sum(1 for c in stats["call_log"] if c["method"] == "chat.startStream")
    status = _status_calls(stats, {s.channel for s in sent})
    rows.append(
        Row(
            f"native DM replies ({natives}/{len(replies)} streamed): first text minus first token",
            f"p50 {ms(pct(first_text, 50))}  p95 {ms(pct(first_text, 95))}",
            "p50 <= 30 ms",
            bool(first_text) and pct(first_text, 50) <= 0.030,
        )
    )
    rows.append(
        Row(
            "  status calls per reply (setStatus; stopStream sets `active`)",
            f"{status / max(len(replies), 1):.2f}",
        )
    )

    # 2. Stop: long replies stopped once their stream shows, through agent_session_stopped.
    long_text = reply_text(chars_for(20.0))
    await load.script("scriptstop", chars=len(long_text))
    prepared = load.prepare(
        "stop", sizes.stops, team="TSTOP", marker="scriptstop", team_each=True, dm=True
    )
    stopped_at: dict[str, float] = {}
    for (s, body, headers), i in zip(prepared, range(len(prepared)), strict=True):
        await load.send(s, body, headers)
        stream_ts = None
        deadline = time.monotonic() + 10
        while stream_ts is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            log = (await load.slack_stats())["call_log"]
            starts = [
                c for c in log if c["method"] == "chat.startStream" and c["channel"] == s.channel
            ]
            stream_ts = starts[0]["ts"] if starts else None
        await asyncio.sleep(0.3)  # a few appends in
        event = agent_session_stopped_event(s.channel, s.ts, "U00001", [stream_ts or ""])
        payload = event_callback(
            event, team_id=f"TSTOP{i:05d}", bot_user_id=load.h.info["bot_user_id"]
        )
        stop_body, stop_headers = signed_event_request(SIGNING_SECRET, payload)
        stopped_at[s.tag] = time.monotonic()
        async with load.session.post(
            load.h.bot_url + "/slack/events", data=stop_body, headers=stop_headers
        ) as response:
            await response.read()
    await asyncio.sleep(1.5)
    timeline = (await load.claude_stats())["timeline"]
    closed = []
    for entry in timeline:
        found = re.search(r"tag-stop-\d+", entry["last_text"])
        if found and entry.get("disconnected_at") and found.group(0) in stopped_at:
            closed.append(entry["disconnected_at"] - stopped_at[found.group(0)])
    rows.append(
        Row(
            f"Stop (agent_session_stopped) -> Claude connection closed ({len(closed)}/"
            f"{len(prepared)})",
            f"p50 {ms(pct(closed, 50))}  max {ms(max(closed, default=float('nan')))}",
            "p50 <= 300 ms, max <= 1 s",
            len(closed) == len(prepared) and pct(closed, 50) <= 0.300 and max(closed) <= 1.0,
        )
    )

    # 3. Tier 2: many DM-thread replies at once in one workspace, the fake enforcing 20/min.
    await _reset_slack(load, stream_start_stop_per_minute=20, minute_seconds=60)
    burst_text = reply_text(chars_for(sizes.burst_stream))
    await load.script("scripttier2", chars=len(burst_text))
    prepared = load.prepare("two", sizes.tier2, team="TTWO", marker="scripttier2", dm=True)
    t0 = time.monotonic()
    sent = await load.burst(prepared)
    replies = await load.wait_complete(sent, burst_text, 120, poll=0.5)
    stats = await load.slack_stats()
    limited = sum(
        stats["errors"].get(m, {}).get("ratelimited", 0)
        for m in ("chat.startStream", "chat.stopStream")
    )
    natives = stats["calls"].get("chat.startStream", 0)
    done = [r for r in replies if r.complete and r.final_at]
    last = max((r.final_at or 0) for r in done) - t0 if done else float("nan")
    rows.append(
        Row(
            f"{sizes.tier2} DM-thread replies at once, fake enforcing Tier 2 (20/min)",
            f"{len(done)}/{len(sent)} complete, {natives} native; last after {ms(last)}; "
            f"{limited} x 429 on start/stop",
            "all complete, no 429 on startStream",
            len(done) == len(sent) and limited == 0,
        )
    )
    await _reset_slack(load, stream_start_stop_per_minute=None)


async def run_tier3(load: Load, sizes: Sizes, rows: list[Row], burst_text: str) -> None:
    """50 at once against a fake Slack enforcing Tier 3 on chat.update (50 a minute, then 429)."""
    async with load.session.post(load.h.info["slack_url"] + "/_control/reset"):
        pass
    async with load.session.post(
        load.h.info["slack_url"] + "/_control/configure",
        json={"chat_update_per_minute": 50, "minute_seconds": 60},
    ):
        pass
    prepared = load.prepare("tier", sizes.tier3, team="TTIER", marker="scriptstream")
    t0 = time.monotonic()
    tier = await load.burst(prepared)
    tier_replies = await load.wait_complete(tier, burst_text, 180, poll=0.5)
    stats = await load.slack_stats()
    limited = stats["errors"].get("chat.update", {}).get("ratelimited", 0)
    done = [r for r in tier_replies if r.complete and r.final_at]
    last = max((r.final_at or 0) for r in done) - t0 if done else float("nan")
    rows.append(
        Row(
            f"{sizes.tier3} at once, fake Slack enforcing Tier 3 (50/min)",
            f"{len(done)}/{len(tier)} final texts; last after {ms(last)}; {limited} x 429",
            "all arrive; report the time",
            len(done) == len(tier),
        )
    )


async def run_history(sizes: Sizes, rows: list[Row], workdir: Path) -> None:
    """History rebuild (store read + build_messages) for conversations of N stored turns."""
    from slackbot.history import build_messages
    from slackbot.sqlite_store import SqliteStore

    store = await SqliteStore.open(str(workdir / "history.db"))
    try:
        timings: dict[int, float] = {}
        for size in sizes.history:
            conversation = await store.thread_conversation("THIST", f"CHIST{size}", f"{size}.0")
            last_ts = ""
            for i in range(0, size, 2):
                last_ts = f"{1_700_000_000 + i}.{size:06d}"
                await store.add_user_turn(
                    conversation,
                    ts=last_ts,
                    user_id=f"U{i % 7:05d}",
                    user_name=f"Person {i % 7}",
                    text=f"Question {i}: " + reply_text(200),
                )
                if i + 1 < size:
                    reply = await store.begin_reply(
                        conversation,
                        answers_ts=last_ts,
                        channel=f"CHIST{size}",
                        first_ts=f"{1_700_000_000 + i}.{size + 1:06d}",
                    )
                    await store.update_reply(
                        reply, text=reply_text(800), message_ts=[last_ts], status="done"
                    )
            # The turn being answered is the last one stored.
            runs = []
            repeat = max(5, min(50, 20_000 // size))
            for _ in range(repeat):
                t0 = time.perf_counter()
                messages = build_messages(await store.history(conversation, last_ts))
                runs.append(time.perf_counter() - t0)
            assert messages, "history rebuild returned nothing"
            timings[size] = statistics.median(runs)
    finally:
        await store.close()
    smallest = min(timings)
    parts = []
    for size, seconds in timings.items():
        parts.append(f"{size}: {ms(seconds)}")
    per_turn = {size: seconds / size for size, seconds in timings.items()}
    largest = max(timings)
    growth = (timings[largest] / timings[smallest]) / (largest / smallest)
    thousand = timings.get(1_000)
    rows.append(
        Row(
            "history rebuild (store read + build_messages)",
            "; ".join(parts),
            "1,000 turns <= 20 ms",
            thousand is None or thousand <= 0.020,
        )
    )
    rows.append(
        Row(
            "  per turn, smallest -> largest",
            f"{per_turn[smallest] * 1e6:.1f} -> {per_turn[largest] * 1e6:.1f} us/turn "
            f"({growth:.2f}x linear)",
            "no worse than linear",
            growth <= 1.25,
        )
    )


async def run_caching(rows: list[Row]) -> None:
    """Prompt caching (issue 4): `bench/caching.py` provides `billed_units()` when it exists."""
    try:
        from fakes import caching  # type: ignore[attr-defined]
    except ImportError:
        rows.append(Row("billed input units, 30-turn thread (caching)", "not measured yet"))
        return
    result = caching.billed_units()
    if inspect.isawaitable(result):
        result = await result
    if isinstance(result, Row):
        rows.append(result)
    else:
        rows.append(Row("billed input units, 30-turn thread (caching)", str(result)))


# -- output -------------------------------------------------------------------------------------


def print_table(rows: list[Row], extra: dict[str, Any], sizes: Sizes, seconds: float) -> None:
    print()
    print(
        f"slackbot benchmark: {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"fake model TTFT {TTFT * 1000:.0f} ms, {TPS:g} tokens/s; bot defaults "
        f"(edit interval {EDIT_INTERVAL:g} s, budget {BUDGET_PER_MINUTE:g}/min burst "
        f"{BUDGET_BURST})"
    )
    width = max(len(r.figure) for r in rows)
    mwidth = max(len(r.measured) for r in rows)
    print(f"{'figure':<{width}}  {'measured':<{mwidth}}  {'target':<36}  ok")
    print("-" * (width + mwidth + 44))
    for r in rows:
        mark = "" if r.ok is None else ("yes" if r.ok else "NO")
        print(f"{r.figure:<{width}}  {r.measured:<{mwidth}}  {r.target:<36}  {mark}")
    print()
    if "calls" in extra:
        replies = extra["replies"]
        calls = Counter(extra["calls"])
        print(f"Slack Web API calls per reply ({replies} replies; baseline calls excluded):")
        baseline = 20  # the chat.postMessage round trips measured as a baseline
        calls["chat.postMessage"] -= baseline
        for method, n in sorted(calls.items()):
            print(f"  {method:<24} {n / replies:6.2f}  ({n} in all)")
    print(
        f"baselines: /healthz round trip {ms(extra.get('healthz_rtt', float('nan')))}, "
        f"one chat.postMessage to the fake {ms(extra.get('slack_rtt', float('nan')))}; "
        f"bot start to healthy {ms(extra.get('startup', float('nan')))}; "
        f"whole run {seconds:.0f} s"
    )


async def main_async(sizes: Sizes) -> int:
    started = time.monotonic()
    rows: list[Row] = []
    extra: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="slackbot-bench-") as tmp:
        workdir = Path(tmp)
        h = Harness(workdir)
        try:
            h.start_fakes()
            connector = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(connector=connector) as session:
                h.spawn_bot()
                await h.wait_healthy(session)
                extra["startup"] = h.startup_seconds
                load = Load(h, session)
                # First: the Tier-3 scenario inside run_live leaves the fake Slack enforcing it.
                await run_native(load, sizes, rows)
                await run_tools(load, sizes, rows)
                await run_live(h, load, sizes, rows, extra)
        finally:
            h.stop()
            if os.environ.get("BENCH_KEEP_LOGS"):
                for name in ("bot.log", "fakes.err"):
                    with contextlib.suppress(OSError):
                        (Path(os.environ["BENCH_KEEP_LOGS"]) / name).write_bytes(
                            (workdir / name).read_bytes()
                        )
        await run_history(sizes, rows, workdir)
    await run_caching(rows)
    print_table(rows, extra, sizes, time.monotonic() - started)
    return 0


@dataclass
class Spread:
    """One run of the instances scenario: N mentions over some bots on one database."""

    label: str
    wall_ratio: float
    complete: int
    duplicates: int
    updates: int
    peak_rss_mb: list[float]


async def run_spread(
    h: Harness,
    session: aiohttp.ClientSession,
    label: str,
    bots: int,
    settings: dict[str, str],
    count: int,
    stream: float,
) -> Spread:
    """`count` mentions at once, spread round robin over `bots` fresh instances on one
    database; a tenth of them redelivered (Slack's retry) to the next instance."""
    started = [h.spawn_bot(**settings) for _ in range(bots)]
    for proc, url in started:
        await h.wait_healthy(session, proc, url)
    try:
        load = Load(h, session)
        text = reply_text(chars_for(stream))
        marker = f"spread{label.replace(' ', '').lower()}"
        await load.script(marker, chars=len(text))
        prepared = load.prepare(marker, count, team="TSPREAD", marker=marker)
        slack_before = await load.slack_stats()
        updates_before = slack_before["calls"].get("chat.update", 0)
        await asyncio.sleep(max(1.0, float(settings.get("SLACKBOT_INSTANCE_TIMEOUT", "3")) / 2))
        for proc, _ in started:
            reset_peak_rss(proc.pid)
        urls = [url for _, url in started]
        t0 = time.monotonic()
        sends = [load.send(sent, b, hd, urls[i % bots]) for i, (sent, b, hd) in enumerate(prepared)]
        retries = []
        for i, (sent, body, _) in enumerate(prepared[::10]):
            payload = json.loads(body)
            rbody, rheaders = signed_event_request(
                SIGNING_SECRET, payload, retry_num=1, retry_reason="http_timeout"
            )
            retries.append(
                load.send(dataclasses.replace(sent), rbody, rheaders, urls[(i + 1) % bots])
            )
        await asyncio.gather(*sends, *retries)
        await asyncio.sleep(TTFT + stream)
        replies = await load.wait_complete([s for s, _, _ in prepared], text, 120, poll=0.25)
        peaks = [rss_kib(proc.pid, "VmHWM") / 1024 for proc, _ in started]
        done = [r for r in replies if r.complete and r.final_at]
        wall = max((r.final_at or 0) for r in done) - t0 if done else float("nan")
        slack = await load.slack_stats()
        updates = slack["calls"].get("chat.update", 0) - updates_before
        return Spread(
            label,
            wall / (TTFT + stream),
            len(done),
            sum(max(0, len(r.messages) - 1) for r in replies),
            updates,
            peaks,
        )
    finally:
        for proc, _ in started:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc, _ in started:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


async def main_instances(instances: int, sizes: Sizes) -> int:
    """`--instances N`: the burst spread over N instances on PostgreSQL, then the same on one
    instance on PostgreSQL and on one on SQLite, in the same run, so the cost of the shared
    database reads as a ratio."""
    from fakes.postgres_server import running_postgres

    started = time.monotonic()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="slackbot-bench-") as tmp, running_postgres() as pg:
        h = Harness(Path(tmp))
        try:
            h.start_fakes()
            connector = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(connector=connector) as session:
                count, stream = sizes.burst, sizes.burst_stream
                runs = [
                    await run_spread(
                        h,
                        session,
                        f"{instances} instances, PostgreSQL",
                        instances,
                        {"DATABASE_URL": pg.create_database(), "SLACKBOT_INSTANCE_TIMEOUT": "3"},
                        count,
                        stream,
                    ),
                    await run_spread(
                        h,
                        session,
                        "1 instance, PostgreSQL",
                        1,
                        {"DATABASE_URL": pg.create_database()},
                        count,
                        stream,
                    ),
                    await run_spread(
                        h,
                        session,
                        "1 instance, SQLite",
                        1,
                        {"SLACKBOT_DB": str(Path(tmp) / "spread.db")},
                        count,
                        stream,
                    ),
                ]
        finally:
            h.stop()
    sqlite = runs[-1].wall_ratio
    for run in runs:
        rows.append(
            Row(
                f"{count} at once over {run.label}: wall / model time",
                f"{run.wall_ratio:.3f}  ({run.wall_ratio / sqlite:.2f}× SQLite's;"
                f" {run.complete}/{count} complete)",
                "report; all complete",
                run.complete == count,
            )
        )
        rows.append(
            Row(
                f"  duplicates ({len(prepared_retried(count))} redelivered to another instance)",
                str(run.duplicates),
                "0",
                run.duplicates == 0,
            )
        )
        rows.append(
            Row(
                "  chat.update calls (one workspace)",
                f"{run.updates}  ({run.updates / count:.2f} per reply)",
                "report",
            )
        )
        rows.append(
            Row(
                "  peak RSS per instance",
                ", ".join(f"{mb:.0f} MB" for mb in run.peak_rss_mb),
                "report",
            )
        )
    print_table(rows, {}, sizes, time.monotonic() - started)
    return 0


def prepared_retried(count: int) -> range:
    """Which of a spread's mentions are redelivered: every tenth."""
    return range(0, count, 10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for the smoke test")
    parser.add_argument(
        "--no-slow", action="store_true", help="skip the 60 s stream and the Tier-3 run"
    )
    parser.add_argument(
        "--instances",
        type=int,
        metavar="N",
        help="instead: the burst spread over N instances on one PostgreSQL database",
    )
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.instances:
        return asyncio.run(main_instances(args.instances, sizes))
    if args.no_slow:
        sizes = dataclasses.replace(sizes, long_stream=min(sizes.long_stream, 3.0), tier3=0)
    return asyncio.run(main_async(sizes))


if __name__ == "__main__":
    sys.exit(main())
