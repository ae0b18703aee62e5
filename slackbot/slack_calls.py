"""Slack Web API calls that must land: rate limits waited out, transient failures retried.

slack_sdk retries connection errors and (with the handler `server.py` installs) 5xx answers a
couple of times; on top, a post without which there is nowhere to answer (the placeholder) is
retried through rate limits (`Retry-After`), 5xx answers and network errors for up to a
minute (`post_with_backoff`); edits that must land take their turn in the workspace's budget
(`update_reply`, `session_status`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse

log = logging.getLogger(__name__)

#: How often a final edit or a continuation post is retried when Slack rate-limits it.
FINAL_ATTEMPTS = 8
#: Seconds between attempts at a post that must land; the last one repeats.
BACKOFF = (1.0, 2.0, 4.0, 8.0, 15.0)
#: A post that must land is given up after trying for this long.
GIVE_UP_SECONDS = 60.0
#: Errors Slack answers when it, not the request, is at fault (usually with a 5xx).
SLACK_SIDE_ERRORS = frozenset(
    {"internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)


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


def is_transient(exc: BaseException) -> bool:
    """A failure that trying again later may fix: a 5xx, a network error, a timeout."""
    if isinstance(exc, SlackApiError):
        status = exc.response.status_code
        return status >= 500 or exc.response.get("error") in SLACK_SIDE_ERRORS
    return isinstance(exc, aiohttp.ClientError | TimeoutError | OSError)


async def post_with_backoff(
    call: Callable[[], Awaitable[Any]],
    *,
    what: str,
    give_up_after: float = GIVE_UP_SECONDS,
    backoff: Sequence[float] = BACKOFF,
) -> Any:
    """Run a Slack call that must land through rate limits, 5xx answers and network errors.

    A rate limit waits `Retry-After`, anything transient the next step of `backoff`; a refusal
    that trying again cannot fix (`channel_not_found`, `msg_too_long`…) is raised at once, and
    so is the last failure once the next wait would pass `give_up_after` seconds in all.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + give_up_after
    failures = 0
    while True:
        try:
            return await call()
        except Exception as exc:
            wait = retry_after_seconds(exc) if isinstance(exc, SlackApiError) else None
            if wait is None and is_transient(exc):
                wait = backoff[min(failures, len(backoff) - 1)]
            failures += 1
            if wait is None:
                raise
            if loop.time() + wait > deadline:
                log.warning("%s failed %d times; giving up: %r", what, failures, exc)
                raise
            log.info("%s failed (%r); trying again in %.1fs", what, exc, wait)
            await asyncio.sleep(wait)


class CountRateLimits(AsyncRetryHandler):
    """Tells `count` the method of every `ratelimited` answer the client gets, whoever made the
    call; retries nothing (the policy for each call stays where it is).

    slack_sdk shows each answer to the client's retry handlers in turn, so this one, first in
    the list, sees them all, including the calls no helper here wraps.
    """

    def __init__(self, count: Callable[[str], None]) -> None:
        super().__init__(max_retry_count=0)
        self._count = count

    async def can_retry_async(
        self,
        *,
        state: Any,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is not None and _rate_limited(response):
            method = _method(request.url)
            if method is not None:
                self._count(method)
        return False


def _rate_limited(response: HttpResponse) -> bool:
    body = response.body if isinstance(response.body, dict) else {}
    return response.status_code == 429 or body.get("error") == "ratelimited"


def _method(url: str) -> str | None:
    """`chat.update` from `https://slack.com/api/chat.update`; None for a non-method URL (a
    file upload's), which would make a label per file."""
    _, api, method = url.partition("/api/")
    method = method.split("?", 1)[0]
    return method if api and method and "/" not in method else None
