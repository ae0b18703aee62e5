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


def configure(level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets())
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # Their DEBUG output includes request headers; keep them quiet unless asked for.
    for noisy in ("slack_sdk", "slack_bolt", "httpx", "anthropic"):
        logging.getLogger(noisy).setLevel(max(logging.getLevelName(level), logging.INFO))
