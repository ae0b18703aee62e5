"""Slack Web API calls that must land: rate limits waited out, transient failures retried.

slack_sdk retries connection errors and (with the handler `server.py` installs) 5xx answers a
couple of times; these helpers add what a reply needs on top: `ratelimited` answers wait for
`Retry-After`, and the placeholder, without which there is nowhere to answer, is retried with
backoff for up to a minute.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_sdk.errors import SlackApiError

log = logging.getLogger(__name__)

#: How often a final edit or a continuation post is retried when Slack rate-limits it.
FINAL_ATTEMPTS = 8


def retry_after_seconds(exc: SlackApiError, default: float = 1.0) -> float | None:
    """Seconds Slack asked us to wait, or None if the error is not a rate limit."""
    response = exc.response
    if response.status_code != 429 and response.get("error") != "ratelimited":
        return None
    raw = (response.headers or {}).get("Retry-After") or (response.headers or {}).get("retry-after")
    try:
        return max(float(raw), 0.0) if raw is not None else default
    except ValueError:
        return default


async def call_with_retry(call: Callable[[], Awaitable[Any]], *, what: str) -> Any:
    """Run a Slack call that must land (a final edit, a post), waiting out rate limits."""
    for attempt in range(1, FINAL_ATTEMPTS + 1):
        try:
            return await call()
        except SlackApiError as exc:
            wait = retry_after_seconds(exc)
            if wait is None or attempt == FINAL_ATTEMPTS:
                raise
            log.info("%s rate-limited; retrying in %.1fs", what, wait)
            await asyncio.sleep(wait)
    raise AssertionError("unreachable")
