"""What a person running the bot reads: the bot's own lines, no third-party request noise."""

from __future__ import annotations

import asyncio
import os
import sys

from fakes.claude import FakeClaude, Script
from fakes.harness import CHANNEL, bot_env
from fakes.slack import FakeSlack
from tests.processes import free_port, mention_over_http, wait_healthy


async def test_start_up_and_a_reply_log_only_the_bots_own_lines(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    claude.default = Script(text="Logged answer.")
    port = free_port()
    env = {**os.environ, **bot_env(slack, claude, db_path), "PORT": str(port)}
    env.pop("SLACKBOT_LOG_LEVEL", None)  # the default, INFO
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "slackbot", env=env, stderr=asyncio.subprocess.PIPE
    )
    try:
        await wait_healthy(port)
        message, _ = await mention_over_http(slack, port, "hello")
        await slack.wait_for(
            lambda: any(
                slack.final_text(CHANNEL, m["ts"]) == "Logged answer."
                for m in slack.bot_messages(CHANNEL, message["ts"])
            )
        )
    finally:
        proc.terminate()
        _, stderr = await proc.communicate()
    lines = stderr.decode().splitlines()
    assert any("slackbot.server" in line and "listening" in line for line in lines)
    assert not [line for line in lines if "HTTP Request:" in line]
    assert not [line for line in lines if "will be unused" in line]
    assert all(" slackbot" in line for line in lines if " INFO " in line), lines
