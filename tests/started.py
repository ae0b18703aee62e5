"""A harness whose bot went through start-up (`prepare`: the Models API, auth.test, recovery),
for tests that depend on the model's limits."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fakes.claude import FakeClaude, model_info
from fakes.harness import Harness, start_harness
from fakes.slack import FakeSlack
from slackbot.server import prepare

DEFAULT_MODEL = "claude-sonnet-5-5"


def sonnet_5(**limits: Any) -> dict[str, Any]:
    """The built-in default model as the fake Models API describes it."""
    return model_info(
        DEFAULT_MODEL,
        "Claude Sonnet 5.5",
        created_at="2026-11-03T00:00:00Z",
        line="sonnet",
        thinking_types=("adaptive", "disabled"),
        **limits,
    )


@contextlib.asynccontextmanager
async def started(
    slack: FakeSlack, claude: FakeClaude, db_path: str, **overrides: Any
) -> AsyncIterator[Harness]:
    harness, runner = await start_harness(slack, claude, db_path, **overrides)
    try:
        await prepare(harness.bot)
        yield harness
        await harness.settled()
    finally:
        await runner.cleanup()
        await harness.close()
        await harness.bot.close()
