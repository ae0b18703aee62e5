"""Prompt caching, measured: a 30-turn thread through the real bot against the fake Claude API.

Every mention re-sends the whole thread. Without caching each request is billed in full at the
base input price; with the bot's cache breakpoints the earlier turns are read from the cache
(0.1×) and only the new part is written (1.25×). The fake server accounts for the cache the way
the API does (longest remembered prefix read, the rest up to the last breakpoint written), with
the API's minimum cacheable prefix of 1024 tokens.

    python -m bench.caching            # prints both figures and the saving
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass
from pathlib import Path

from fakes.claude import FakeClaude, Script
from fakes.harness import CHANNEL, start_harness
from fakes.slack import FakeSlack

CACHE_WRITE = 1.25
CACHE_READ = 0.1
TARGET_SAVING = 0.70
PROSE = (
    "A question about the project, with enough context that the answer needs some thought: "
    "what changed, what we tried, and what we would like to happen next. "
)


def prose(chars: int) -> str:
    """Deterministic text of exactly `chars` characters."""
    return (PROSE * (chars // len(PROSE) + 1))[:chars]


@dataclass(frozen=True)
class BilledUnits:
    """Billed input-token units of a thread's requests, with the bot's caching and without."""

    turns: int
    cached: float
    uncached: float
    cache_read_tokens: int
    cache_write_tokens: int

    @property
    def saved(self) -> float:
        return 1 - self.cached / self.uncached if self.uncached else 0.0

    @property
    def ok(self) -> bool:
        return self.saved >= TARGET_SAVING

    def __str__(self) -> str:
        return (
            f"{self.turns}-turn thread: {self.uncached:,.0f} billed input units without caching, "
            f"{self.cached:,.0f} with caching ({self.saved:.0%} fewer; target >= "
            f"{TARGET_SAVING:.0%})"
        )


async def billed_units(
    turns: int = 30,
    *,
    question_chars: int = 400,
    reply_chars: int = 1600,
    min_cacheable_tokens: int = 1024,
) -> BilledUnits:
    """Run a `turns`-mention thread through the bot (Bolt over signed HTTP, the store, history,
    the Anthropic SDK) against FakeSlack and FakeClaude, and sum the input side of each request's
    usage: with caching as billed (input 1×, cache writes 1.25×, cache reads 0.1×), without
    caching as every prompt token at 1× (the same prompts, uncached)."""
    with tempfile.TemporaryDirectory() as tmp:
        async with FakeSlack() as slack, FakeClaude() as claude:
            slack.add_user("U1", display_name="Alice")
            slack.add_user("U2", display_name="Bob")
            claude.min_cacheable_tokens = min_cacheable_tokens
            claude.default = Script(text=prose(reply_chars))
            harness, runner = await start_harness(slack, claude, str(Path(tmp) / "bench.db"))
            try:
                root = await harness.mention(f"turn 0: {prose(question_chars)}")
                await harness.settled(timeout=60)
                for turn in range(1, turns):
                    await harness.mention(
                        f"turn {turn}: {prose(question_chars)}",
                        thread_ts=root["ts"],
                        user="U2" if turn % 2 else "U1",
                    )
                    await harness.settled(timeout=60)
                assert len(harness.texts(CHANNEL, root["ts"])) == turns
            finally:
                await harness.settled(timeout=60)
                await runner.cleanup()
                await harness.close()
                await harness.bot.close()
            usages = list(claude.usages)
    cached = sum(
        u.input_tokens
        + CACHE_WRITE * u.cache_creation_input_tokens
        + CACHE_READ * u.cache_read_input_tokens
        for u in usages
    )
    uncached = sum(
        u.input_tokens + u.cache_creation_input_tokens + u.cache_read_input_tokens for u in usages
    )
    return BilledUnits(
        turns=len(usages),
        cached=cached,
        uncached=uncached,
        cache_read_tokens=sum(u.cache_read_input_tokens for u in usages),
        cache_write_tokens=sum(u.cache_creation_input_tokens for u in usages),
    )


def main() -> None:
    result = asyncio.run(billed_units())
    print(f"without caching: {result.uncached:,.0f} billed input units")
    print(f"with caching:    {result.cached:,.0f} billed input units")
    print(
        f"saved:           {result.saved:.1%} (target >= {TARGET_SAVING:.0%}: "
        f"{'ok' if result.ok else 'MISSED'})"
    )


if __name__ == "__main__":
    main()
