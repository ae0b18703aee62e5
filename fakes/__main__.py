"""Run the fakes in their own process for the benchmark.

    python -m fakes --slack-port 0 --claude-port 0 [--ttft 0.3 --tps 40 --reply-chars N
        --chat-update-per-minute N --minute-seconds S]

Prints one JSON line with the URLs and tokens, then serves until SIGTERM/SIGINT. Results are read
back over HTTP: ``GET {slack_url}/_control/stats`` (calls per method, call log, messages with
their monotonic post/update times; CLOCK_MONOTONIC is shared by processes on Linux),
``POST {slack_url}/_control/reset``, ``POST {slack_url}/_control/configure``
({chat_update_per_minute, minute_seconds}), ``POST {slack_url}/_control/user_message``
({channel, user, text, thread_ts?}), ``POST {slack_url}/_control/push`` ({payload}) to
deliver an event over Socket Mode, ``GET {claude_url}/_control/stats`` (with a per-reply
``timeline``) and ``POST {claude_url}/_control/script`` ({marker?, chars?, ttft?, tps?}) to
change what the fake model answers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

from fakes.claude import FakeClaude, Script, reply_text
from fakes.slack import FakeSlack, FakeSocketModeServer

__all__ = ["main", "reply_text"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m fakes", description=__doc__)
    parser.add_argument("--slack-port", type=int, default=0)
    parser.add_argument("--claude-port", type=int, default=0)
    parser.add_argument("--socket-port", type=int, default=0)
    parser.add_argument("--ttft", type=float, default=0.0, help="seconds to first token")
    parser.add_argument("--tps", type=float, default=None, help="tokens per second")
    parser.add_argument("--reply-chars", type=int, default=None, help="length of every reply")
    parser.add_argument("--chat-update-per-minute", type=int, default=None)
    parser.add_argument("--minute-seconds", type=float, default=60.0, help="Tier-3 window")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    slack = FakeSlack(chat_update_per_minute=args.chat_update_per_minute)
    slack.minute_seconds = args.minute_seconds
    claude = FakeClaude()
    claude.default = Script(ttft=args.ttft, tokens_per_second=args.tps)
    if args.reply_chars is not None:
        claude.default.text = reply_text(args.reply_chars)
    socket_mode = FakeSocketModeServer()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    await slack.start(args.slack_port)
    await claude.start(args.claude_port)
    await socket_mode.start(args.socket_port)
    slack.attach_socket_mode(socket_mode)
    try:
        info = {
            "slack_api_url": slack.api_url,
            "slack_url": slack.base_url,
            "claude_url": claude.base_url,
            "socket_url": socket_mode.url,
            "bot_token": slack.bot_token,
            "app_token": slack.app_token,
            "bot_user_id": slack.bot_user_id,
            "team_id": slack.team_id,
        }
        sys.stdout.write(json.dumps(info) + "\n")
        sys.stdout.flush()
        await stop.wait()
    finally:
        await socket_mode.close()
        await claude.close()
        await slack.close()


def main(argv: list[str] | None = None) -> None:
    asyncio.run(serve(parse_args(argv)))


if __name__ == "__main__":
    main()
