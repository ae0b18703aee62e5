"""The `slackbot` command. Settings are checked before anything heavy is imported, so a missing
variable is reported in one line, at once, without a traceback."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys

from dotenv import load_dotenv

from slackbot.config import ConfigError, load_settings


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="slackbot", description="Claude in Slack.")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("run", help="run the bot (the default): Socket Mode if SLACK_APP_TOKEN is set")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    parse_args(argv)
    load_dotenv(".env")  # from the working directory; real environment variables win
    try:
        settings = load_settings(os.environ)
    except ConfigError as exc:
        print(f"slackbot: {exc}", file=sys.stderr)
        return 2
    from slackbot import logs
    from slackbot.server import serve

    logs.configure(settings.log_level)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
