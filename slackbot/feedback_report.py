"""`slackbot feedback`: 👍/👎 counts per channel, person or model, and the latest 👎 reasons.

Like `slackbot usage`, it only reads the database (`db_read`; on SQLite, WAL lets it read while
the bot writes) and needs no Slack or Claude credentials. A vote counts from when it was last
cast (a switch moves it to the other column, it is never counted twice).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import dataclass

from slackbot.db_read import reading
from slackbot.errors import UsageError
from slackbot.usage import parse_since

GROUPS = {"channel": "channel", "user": "user_id", "model": "model"}
#: How many 👎 reasons the report lists, newest first.
LATEST_REASONS = 10


@dataclass(frozen=True)
class Reason:
    at: float
    channel: str
    user_id: str
    model: str | None
    text: str


@dataclass(frozen=True)
class Summary:
    counts: dict[str, tuple[int, int]]  # group → (👍, 👎)
    reasons: list[Reason]


def summarise(source: str, *, since: float | None, by: str, now: float | None = None) -> Summary:
    """`source`: the SQLite file's path or the PostgreSQL URL."""
    if by not in GROUPS:
        raise UsageError(f"--by must be one of {', '.join(GROUPS)}, got {by!r}")
    cutoff = 0.0 if since is None else (now or time.time()) - since
    column = GROUPS[by]
    with reading(source) as db:
        if not db.has_table("feedback"):
            return Summary({}, [])
        rows = db.rows(
            f"SELECT COALESCE({column}, '?'), SUM(CASE WHEN vote='good' THEN 1 ELSE 0 END),"
            " SUM(CASE WHEN vote='bad' THEN 1 ELSE 0 END) FROM feedback"
            f" WHERE updated_at >= ? GROUP BY COALESCE({column}, '?')",
            [cutoff],
        )
        reasons = db.rows(
            "SELECT updated_at, channel, user_id, model, reason FROM feedback"
            " WHERE vote='bad' AND reason IS NOT NULL AND reason != '' AND updated_at >= ?"
            " ORDER BY updated_at DESC LIMIT ?",
            [cutoff, LATEST_REASONS],
        )
    return Summary(
        {str(key): (int(good or 0), int(bad or 0)) for key, good, bad in rows},
        [Reason(*row) for row in reasons],
    )


def render(summary: Summary, *, by: str, since_text: str) -> str:
    """A plain-text table, most votes first, with a total row; then the latest 👎 reasons."""
    if not summary.counts:
        return f"No feedback recorded ({since_text})."
    header = (by, "👍", "👎", "👎 share")
    ordered = sorted(summary.counts.items(), key=lambda kv: (-sum(kv[1]), kv[0]))
    good = sum(g for g, _ in summary.counts.values())
    bad = sum(b for _, b in summary.counts.values())
    body = [_row(key, g, b) for key, (g, b) in ordered]
    total = _row("total", good, bad)
    lines = [header, *body, total]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]

    def fmt(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True))
        return "  ".join([first, *rest]).rstrip()

    rule = fmt(["-" * w for w in widths])
    out = [fmt(header), rule, *(fmt(row) for row in body), rule, fmt(total)]
    out.append(f"Votes {since_text}, one per person and reply.")
    if summary.reasons:
        out.append("")
        out.append(f"Latest 👎 reasons (newest first, at most {LATEST_REASONS}):")
        for reason in summary.reasons:
            when = dt.datetime.fromtimestamp(reason.at, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
            text = " ".join(reason.text.split())
            out.append(f"- {when}  {reason.channel}  {reason.user_id}  {reason.model or '?'}")
            out.append(f"  {text}")
    return "\n".join(out)


def _row(key: str, good: int, bad: int) -> tuple[str, ...]:
    share = f"{bad / (good + bad):.0%}" if good + bad else "-"
    return (key, f"{good:,}", f"{bad:,}", share)


def report(source: str, *, since_text: str, by: str) -> str:
    since = parse_since(since_text)
    label = "of all time" if since is None else f"of the last {since_text}"
    return render(summarise(source, since=since, by=by), by=by, since_text=label)
