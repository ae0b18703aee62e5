"""After a reply: what it cost, and what the API's count taught about the thread's size.

Both are stored so that `slackbot usage` can sum costs and the next mention in the thread fits
the context window with a calibrated estimate and the same cut (see `context_window`).
"""

from __future__ import annotations

from slackbot import context_window
from slackbot.context_window import Fitted
from slackbot.events import Incoming
from slackbot.store import Store, UsageRecord
from slackbot.stream_events import StreamResult


def usage_record(
    msg: Incoming,
    *,
    conversation_id: int,
    reply_id: int,
    result: StreamResult,
    line: str | None,
) -> UsageRecord:
    first_token = result.first_token_seconds
    return UsageRecord(
        message_id=reply_id,
        conversation_id=conversation_id,
        team=msg.workspace,  # spend counts against the installation
        channel=msg.channel,
        user_id=msg.user,
        model=result.model,
        line=line,
        input_tokens=result.usage.get("input_tokens", 0),
        output_tokens=result.usage.get("output_tokens", 0),
        cache_creation_input_tokens=result.usage.get("cache_creation_input_tokens", 0),
        cache_read_input_tokens=result.usage.get("cache_read_input_tokens", 0),
        stop_reason=result.stop_reason,
        error=type(result.error).__name__ if result.error is not None else None,
        seconds=round(result.seconds, 3),
        first_token_seconds=round(first_token, 3) if first_token is not None else None,
        web_search_requests=result.web_search_requests,
        web_fetch_requests=result.web_fetch_requests,
    )


async def account(
    store: Store,
    msg: Incoming,
    *,
    conversation_id: int,
    reply_id: int,
    fitted: Fitted,
    ratio: float,
    estimates: dict[int, int],
    result: StreamResult,
    trim_noticed: bool,
    line: str | None,
) -> None:
    """Store the turns' estimates, the cut and calibration, and the reply's usage."""
    await store.save_token_estimates(estimates)
    if result.prompt_tokens:
        ratio = context_window.calibration(result.prompt_tokens, fitted.raw_tokens)
    await store.save_window_state(
        conversation_id,
        kept_from_id=fitted.trim.kept_from_id,
        images_from_id=fitted.trim.images_from_id,
        token_ratio=ratio,
        trim_noticed=trim_noticed,
    )
    await store.record_usage(
        usage_record(
            msg, conversation_id=conversation_id, reply_id=reply_id, result=result, line=line
        )
    )
