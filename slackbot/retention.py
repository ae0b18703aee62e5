"""Retention: conversations idle longer than `SLACKBOT_RETENTION_DAYS` are deleted.

At start-up and then once a day the bot deletes every conversation with nothing stored for
that long, with its turns, files, replies and pending answers (`Store.purge_idle`); usage rows
stay, without their links, since they hold no text and feed the spend limits and `slackbot
usage`. `slackbot purge --older-than 30d [--dry-run]` does the same on demand.
"""

from __future__ import annotations

import asyncio
import logging
import re

from slackbot.errors import UsageError
from slackbot.store import PurgedConversation, Store

log = logging.getLogger(__name__)

DAY = 86400.0
UNITS = {"d": DAY, "h": 3600.0, "m": 60.0}


def parse_age(text: str) -> float:
    """'30d', '12h', '90m' → seconds (`0d`: everything idle now)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([dhm])\s*", text.lower())
    if not match:
        raise UsageError(f"--older-than must look like 30d, 12h or 90m, got {text!r}")
    return float(match.group(1)) * UNITS[match.group(2)]


async def prune(store: Store, days: float) -> list[PurgedConversation]:
    """Delete what has been idle for `days`; logs what went."""
    purged = await store.purge_idle(days * DAY)
    if purged:
        log.info(
            "retention: deleted %d conversation(s) idle for more than %g day(s)",
            len(purged),
            days,
        )
    return purged


async def keep_pruning(store: Store, days: float, *, every: float = DAY) -> None:
    """Prune once every `every` seconds until cancelled; a failure waits for the next round."""
    while True:
        await asyncio.sleep(every)
        try:
            await prune(store, days)
        except Exception:
            log.exception("retention: pruning failed; trying again in %.0f s", every)


def describe(purged: list[PurgedConversation], *, dry_run: bool, age_text: str) -> str:
    """What `slackbot purge` prints: a line per conversation and a total."""
    verb = "Would remove" if dry_run else "Removed"
    if not purged:
        done = "to remove" if dry_run else "removed"
        return f"Nothing idle for more than {age_text}: nothing {done}."
    lines = []
    for c in purged:
        where = f"thread {c.root_ts}" if c.kind == "thread" else f"DM conversation from {c.root_ts}"
        lines.append(
            f"{c.team or '-'}  {c.channel}  {where}: {c.messages} message(s), {c.files} file(s)"
        )
    messages = sum(c.messages for c in purged)
    files = sum(c.files for c in purged)
    lines.append(
        f"{verb} {len(purged)} conversation(s) idle for more than {age_text}"
        f" ({messages} message(s), {files} file(s)); usage figures are kept."
    )
    return "\n".join(lines)
