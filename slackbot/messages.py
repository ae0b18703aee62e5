"""Every piece of text a person sees in Slack, in one place.

The placeholder, the notes under a reply, and the reasons a reply is incomplete. They are fixed,
friendly sentences: the full exception goes to the log, never into Slack (`str(exc)` can carry
request ids, URLs or internals).
"""

from __future__ import annotations

import anthropic
import httpx2  # the HTTP client anthropic uses; a cut-off stream raises its errors

from slackbot.errors import StreamCutOff
from slackbot.stream_events import StreamResult

PLACEHOLDER = "_Thinking…_"
QUEUED = "_Thinking… (after the reply above)_"

INCOMPLETE_SUFFIX = "_⚠️ This reply is incomplete: {reason}_"
MAX_TOKENS_NOTE = (
    "_✂️ This reply was cut off because it reached the length limit. "
    'Say "continue" and I\'ll pick up where I stopped._'
)
CONTEXT_TRIMMED = (
    "_📜 This conversation has grown longer than I can read at once: its earliest part is no "
    "longer in my context (I still see its first message)._"
)
REFUSAL_NOTE = "_I can't help with that request._"
EMPTY_REPLY = "_(Claude returned an empty reply.)_"
INTERRUPTED = "the bot restarted while writing it. Mention me again to get a full answer."
RESET_DONE = "Starting a fresh conversation. Earlier messages in this DM are forgotten."
INTERNAL = "something went wrong on my side. Please try again."
STOPPED = "_Stopped._"
#: The store could not be written or read: the reply goes out, but may be forgotten.
STORE_FAILED = "I couldn't reach my memory (the database), so I couldn't answer. Please try again."


def claude_failure(exc: BaseException) -> str:
    """A one-line reason for a failed Claude call, for the end of the reply."""
    if isinstance(exc, anthropic.RateLimitError):
        return "Claude is rate-limiting this workspace right now. Please try again in a minute."
    if isinstance(exc, anthropic.APITimeoutError | httpx2.TimeoutException):
        return "Claude took too long to answer. Please try again."
    if isinstance(exc, anthropic.APIConnectionError):
        return "I couldn't reach Claude (network problem). Please try again shortly."
    if isinstance(exc, anthropic.AuthenticationError | anthropic.PermissionDeniedError):
        return "the bot's Claude API key was refused. Ask the person who runs the bot to check it."
    if isinstance(exc, anthropic.BadRequestError):
        return "Claude rejected the request (this thread may hold something it can't read)."
    if isinstance(exc, anthropic.NotFoundError):
        return "the configured Claude model was not found. Ask the person who runs the bot."
    if _is_overloaded(exc):
        return "Claude is overloaded right now. Please try again in a minute."
    if isinstance(exc, anthropic.APIStatusError) and exc.status_code >= 500:
        return "Claude had a server error. Please try again in a minute."
    if isinstance(exc, anthropic.APIError | httpx2.TransportError | StreamCutOff):
        return "the connection to Claude broke off mid-reply. Please try again."
    return INTERNAL


def _is_overloaded(exc: BaseException) -> bool:
    if isinstance(exc, anthropic.OverloadedError):
        return True
    if isinstance(exc, anthropic.APIStatusError) and exc.status_code == 529:
        return True
    if getattr(exc, "type", None) == "overloaded_error":  # an SSE error event after HTTP 200
        return True
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        return isinstance(err, dict) and err.get("type") == "overloaded_error"
    return False


def incomplete(reason: str) -> str:
    return INCOMPLETE_SUFFIX.format(reason=reason)


def reply_note(
    result: StreamResult, file_notes: list[str], *, context_trimmed: bool = False
) -> str | None:
    """What goes under a reply: file notes, a trimmed context, and how the stream ended."""
    lines = [f"_{note}_" for note in file_notes]
    if context_trimmed:
        lines.append(CONTEXT_TRIMMED)
    if result.error is not None:
        lines.append(incomplete(claude_failure(result.error)))
    elif result.stop_reason == "max_tokens":
        lines.append(MAX_TOKENS_NOTE)
    elif result.stop_reason == "refusal":
        lines.append(REFUSAL_NOTE)
    elif not result.text.strip():
        lines.append(EMPTY_REPLY)
    return "\n".join(lines) or None
