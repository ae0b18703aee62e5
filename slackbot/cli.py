"""The `slackbot` command. Settings are checked before anything heavy is imported, so a missing
variable is reported in one line, at once, without a traceback."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import Callable

from dotenv import load_dotenv

from slackbot.config import Settings, load_settings
from slackbot.errors import ConfigError

DB_HELP = "the SQLite file or PostgreSQL URL (default DATABASE_URL, else SLACKBOT_DB)"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="slackbot", description="Claude in Slack.")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("run", help="run the bot (the default): Socket Mode if SLACK_APP_TOKEN is set")
    usage = sub.add_parser(
        "usage",
        help="tokens and estimated cost of replies, from the database (no credentials needed)",
    )
    usage.add_argument(
        "--since", default="7d", help="how far back: 30m, 24h, 7d, 2w or all (default 7d)"
    )
    usage.add_argument(
        "--by",
        default="model",
        choices=["channel", "user", "model", "team"],
        help="one row per … (default model)",
    )
    usage.add_argument("--db", help=DB_HELP)
    feedback = sub.add_parser(
        "feedback",
        help="👍/👎 counts on replies and the latest 👎 reasons, from the database",
    )
    feedback.add_argument(
        "--since", default="7d", help="how far back: 30m, 24h, 7d, 2w or all (default 7d)"
    )
    feedback.add_argument(
        "--by",
        default="model",
        choices=["channel", "user", "model"],
        help="one row per … (default model)",
    )
    feedback.add_argument("--db", help=DB_HELP)
    sub.add_parser(
        "check",
        help="check the settings, tokens and scopes, model and database; exit 0 if all pass",
    )
    purge = sub.add_parser(
        "purge",
        help="delete conversations idle longer than --older-than (turns, files, replies)",
    )
    purge.add_argument(
        "--older-than", required=True, help="idle for longer than: 30d, 12h, 90m (0d: all)"
    )
    purge.add_argument("--dry-run", action="store_true", help="only say what would go")
    purge.add_argument("--db", help=DB_HELP)
    audit = sub.add_parser("audit", help="every change of a channel's instructions")
    audit.add_argument("--channel", help="one channel's changes only")
    audit.add_argument("--db", help=DB_HELP)
    copy = sub.add_parser(
        "copy-db", help="copy the SQLite database (bot stopped) into an empty PostgreSQL one"
    )
    copy.add_argument("--to", required=True, help="the PostgreSQL URL: postgresql://…")
    copy.add_argument("--db", help="the SQLite file (default SLACKBOT_DB or slackbot.db)")
    return parser.parse_args(argv)


def check_command() -> int:
    """Print one row per check; 0 only when every one passes (1 otherwise)."""
    from slackbot.doctor import Result, fail, ok, run_checks, table

    try:
        settings = load_settings(os.environ)
    except ConfigError as exc:
        print(table([fail("settings", str(exc))]))
        return 1
    from slackbot import logs

    # The rows say what went wrong; the lookups' own warnings would only repeat them.
    logs.configure("ERROR", settings.log_format)
    mode = "Socket Mode" if settings.socket_mode else f"HTTP mode on port {settings.port}"
    results: list[Result] = [ok("settings", f"loaded ({mode})")]
    results += asyncio.run(run_checks(settings))
    print(table(results))
    return 0 if all(result.passed for result in results) else 1


def _offline(make: Callable[[Settings], str]) -> int:
    """Run a command that needs only the database: its text on stdout (exit 0), or its one-line
    problem on stderr (exit 2). No Slack or Claude credentials are needed."""
    from slackbot.errors import UsageError

    try:
        text = make(load_settings(os.environ, need_slack=False))
    except (ConfigError, UsageError) as exc:
        print(f"slackbot: {exc}", file=sys.stderr)
        return 2
    print(text)
    return 0


def _source(args: argparse.Namespace, settings: Settings) -> str:
    """The database a command reads: `--db`, else `DATABASE_URL`, else `SLACKBOT_DB`."""
    return str(args.db or settings.database_url or settings.db_path)


def usage_command(args: argparse.Namespace) -> int:
    """Print the usage table; reads only the database, so it runs beside a live bot."""
    from slackbot.usage import report

    return _offline(
        lambda settings: report(
            _source(args, settings),
            since_text=args.since,
            by=args.by,
            overrides=settings.prices,
            web_search_price=settings.web_search_price,
        )
    )


def feedback_command(args: argparse.Namespace) -> int:
    """Print the feedback table; reads only the database, so it runs beside a live bot."""
    from slackbot.feedback_report import report

    return _offline(
        lambda settings: report(_source(args, settings), since_text=args.since, by=args.by)
    )


def audit_command(args: argparse.Namespace) -> int:
    """Print every change of a channel prompt; reads only the database."""
    from slackbot.audit import report

    return _offline(lambda settings: report(_source(args, settings), channel=args.channel))


def purge_command(args: argparse.Namespace) -> int:
    """Delete (or list) idle conversations. On SQLite it takes the database's lock, so the bot
    must be stopped (a running bot prunes by itself with SLACKBOT_RETENTION_DAYS); PostgreSQL
    takes it beside running instances."""
    from slackbot.db_read import is_postgres
    from slackbot.errors import AlreadyRunning, UsageError
    from slackbot.retention import describe, parse_age
    from slackbot.sqlite_store import SqliteStore
    from slackbot.store import Store

    async def run(path: str, seconds: float) -> str:
        store: Store
        if is_postgres(path):
            from slackbot.postgres_store import PostgresStore

            store = await PostgresStore.open(path, register=False)
        else:
            store = await SqliteStore.open(path)
        try:
            purged = await store.purge_idle(seconds, dry_run=args.dry_run)
        finally:
            await store.close()
        return describe(purged, dry_run=args.dry_run, age_text=args.older_than)

    def purge(settings: Settings) -> str:
        seconds = parse_age(args.older_than)
        path = _source(args, settings)
        if not is_postgres(path) and not os.path.exists(path):
            raise UsageError(f"no database at {path}: set SLACKBOT_DB to the bot's database")
        try:
            return asyncio.run(run(path, seconds))
        except AlreadyRunning:
            raise UsageError(
                "the bot is running on this database: stop it first"
                " (or set SLACKBOT_RETENTION_DAYS and let it prune daily)"
            ) from None

    return _offline(purge)


def copy_db_command(args: argparse.Namespace) -> int:
    """Move the memory to PostgreSQL: every table, into an empty database."""
    from slackbot.copy_db import copy_db, describe
    from slackbot.db_read import is_postgres
    from slackbot.errors import UsageError

    def copy(settings: Settings) -> str:
        path = args.db or settings.db_path
        if not is_postgres(args.to):
            raise UsageError("--to must be a postgresql:// (or postgres://) URL")
        if not os.path.exists(path):
            raise UsageError(f"no database at {path}: set SLACKBOT_DB to the bot's database")
        return describe(copy_db(path, args.to), args.to)

    return _offline(copy)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load_dotenv(".env")  # from the working directory; real environment variables win
    if args.command == "usage":
        return usage_command(args)
    if args.command == "feedback":
        return feedback_command(args)
    if args.command == "check":
        return check_command()
    if args.command == "purge":
        return purge_command(args)
    if args.command == "audit":
        return audit_command(args)
    if args.command == "copy-db":
        return copy_db_command(args)
    try:
        settings = load_settings(os.environ)
    except ConfigError as exc:
        print(f"slackbot: {exc}", file=sys.stderr)
        return 2
    from slackbot import logs
    from slackbot.server import serve

    logs.configure(settings.log_level, settings.log_format)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(settings))
    except ConfigError as exc:  # found at start-up, e.g. a retired CLAUDE_MODEL
        print(f"slackbot: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
