"""Logging set-up with a last line of defence: secrets are masked in every record."""

from __future__ import annotations

import logging
import re

SECRET = re.compile(r"\b(xox[abposr]-|xapp-|sk-ant-)[A-Za-z0-9-_]+")


class RedactSecrets(logging.Filter):
    """Mask Slack tokens and Anthropic keys, wherever a library might log them."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if SECRET.search(message):
            record.msg = SECRET.sub(lambda m: m.group(1) + "***", message)
            record.args = None
        return True


class DropBoltClientWarning(logging.Filter):
    """Bolt warns that `token` is unused whenever SLACK_BOT_TOKEN is in the environment and a
    client is passed (as `server.py` does, to share one session): true, and not news."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "`token` will be unused" not in record.getMessage()


#: Libraries whose INFO lines are one per HTTP request or connection: the operator should see
#: the bot's own lines; theirs (with request headers at DEBUG) only when asked for.
THIRD_PARTY = ("slack_sdk", "slack_bolt", "httpx", "httpx2", "httpcore", "anthropic", "aiohttp")


def configure(level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets())
    handler.addFilter(DropBoltClientWarning())
    logging.basicConfig(level=level, handlers=[handler], force=True)
    third_party = logging.DEBUG if level == "DEBUG" else logging.WARNING
    for noisy in THIRD_PARTY:
        logging.getLogger(noisy).setLevel(third_party)
    # The PostgreSQL pool warns at every failed connection attempt while the database is down
    # (two lines each, several a second); the store says what failed once, in its own words.
    pool = logging.DEBUG if level == "DEBUG" else logging.ERROR
    logging.getLogger("psycopg.pool").setLevel(pool)
