"""Every piece of text a person sees in Slack, in one place.

The placeholder, the notes under a reply (attachments included), and the reasons a reply is
incomplete. They are fixed, friendly sentences: the full exception goes to the log, never into
Slack (`str(exc)` can carry request ids, URLs or internals).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

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
REFUSAL_NOTE = (
    "_I can't help with that request. I'll leave it out of the rest of this conversation, so "
    "you can carry on with something else._"
)
EMPTY_REPLY = "_(Claude returned an empty reply.)_"
INTERRUPTED = "the bot restarted while writing it. Mention me again to get a full answer."
RESET_DONE = "Starting a fresh conversation. Earlier messages in this DM are forgotten."
INTERNAL = "something went wrong on my side. Please try again."
STOPPED = "_Stopped._"
#: `reset` at the top of a DM in sessions mode, where every top-level message starts afresh.
RESET_HINT = (
    "No need to reset here: every new message at the top of this DM starts a fresh "
    "conversation, and replying in a thread continues that one."
)
#: The Stop button on a `chat.update` reply while it streams.
STOP_BUTTON = "Stop"
#: Someone other than the asker pressed it (shown to them alone).
STOP_NOT_YOURS = "Only the person who asked (or one of the bot's admins) can stop this reply."
#: The thread's status while the bot works on a reply (the fallback status and its rotation).
STATUS_LOADING = "is thinking…"
LOADING_MESSAGES = (
    "Reading the conversation…",
    "Thinking…",
    "Working on an answer…",
    "Almost there…",
)
#: Thinking steps of a natively streamed reply.
TASK_THINKING = "Thinking"
THINKING_PROGRESS = "_Thinking…_"
PAUSED_TOO_OFTEN = "Claude was still working (searching, fetching) after several rounds. Ask again."
STOPPED_EARLY = "Claude stopped early ({reason})."
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


def thinking_progress(summary: str, words: int = 12) -> str | None:
    """A few words of the model's thinking summary, as the line shown while it thinks."""
    first = " ".join(summary.split()[:words]).strip()
    if not first:
        return None
    return f"_{_no_emphasis(first)}…_"


def tool_progress(name: str, tool_input: dict[str, Any]) -> str:
    """The line shown while a tool runs: what it is doing, in a few words."""
    if name == "web_search" and tool_input.get("query"):
        return f"_Searching the web for “{_no_emphasis(str(tool_input['query']))[:80]}”…_"
    if name == "web_search":
        return "_Searching the web…_"
    if name == "web_fetch" and tool_input.get("url"):
        return f"_Reading {_no_emphasis(str(tool_input['url']))[:120]}…_"
    if name in ("code_execution", "bash_code_execution"):
        return "_Running code…_"
    if name == "text_editor_code_execution":
        return "_Writing a file…_"
    return f"_Using {_no_emphasis(name)}…_"


def tool_task_title(name: str, tool_input: dict[str, Any]) -> str:
    """A thinking step's title for a tool call (plain text: Slack shows it as a task row)."""
    return tool_progress(name, tool_input).strip("_").rstrip("…").rstrip(".") or name


def session_title(text: str, limit: int = 60) -> str:
    """An agent session's title: the thread's first message, on one line, at most `limit`
    characters (cut at a word where one is near)."""
    line = " ".join(text.split())
    if len(line) <= limit:
        return line
    cut = line[: limit - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut).rstrip() + "…"


def _no_emphasis(text: str) -> str:
    """Text that can stand inside `_…_` without ending it early."""
    return text.replace("_", " ").replace("*", " ").replace("`", "'").strip()


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
    elif result.stop_reason == "pause_turn":
        lines.append(incomplete(PAUSED_TOO_OFTEN))
    elif result.stop_reason not in (None, "end_turn", "stop_sequence"):
        lines.append(incomplete(STOPPED_EARLY.format(reason=result.stop_reason)))
    elif not result.text.strip():
        lines.append(EMPTY_REPLY)
    return "\n".join(lines) or None


# --- Files ----------------------------------------------------------------------------------
#
# Notes shown under a reply about an attachment the bot could not use, so one bad file never
# ends the turn. Plain text containing the file's name (user input): whoever posts a note escapes
# it for Slack.

SUPPORTED_FILES = (
    "images (PNG, JPEG, GIF, WebP), PDFs, text files (text, Markdown, CSV, JSON, logs, code…) "
    "and Word, Excel and PowerPoint documents"
)

FileProblem = Literal[
    "unsupported",
    "refused",
    "lookup_failed",
    "untrusted",
    "no_link",
    "deleted",
    "hidden_by_limit",
    "http_status",
    "redirect_without_location",
    "redirect_not_web",
    "too_many_redirects",
    "timed_out",
    "network_error",
    "too_many_pixels",
    "too_many_pixels_sized",
    "over_message_budget",
    "not_an_image",
    "too_detailed",
    "not_text",
    "empty",
    "text_cut",
    "snippet_preview",
    "pdf_not_read_by_model",
    "pdf_too_big",
    "pdf_too_many_pages",
    "pdf_encrypted",
    "pdf_invalid",
    "office_invalid",
    "office_encrypted",
    "office_too_big",
    "office_no_text",
    "office_cut",
    "conversion_timed_out",
    "conversion_failed",
    "unexpected",
]

_FILE_NOTES: dict[FileProblem, str] = {
    "unsupported": f"I can't read {{name}} ({{kind}}) yet — I can only see {SUPPORTED_FILES}.",
    "refused": (
        "I couldn't download {name} (Slack refused access — is the `files:read` scope granted?)"
    ),
    "lookup_failed": (
        "I couldn't look up {name} (Slack's files.info failed — is `files:read` granted?)"
    ),
    "untrusted": "I didn't download {name}: its link doesn't point to Slack.",
    "no_link": "I couldn't download {name}: Slack didn't give me a link to it.",
    "deleted": "I can't see {name}: it was deleted.",
    "hidden_by_limit": "I can't see {name}: it's hidden by this workspace's file history limit.",
    "http_status": "I couldn't download {name} (HTTP {status}).",
    "redirect_without_location": "I couldn't download {name} (HTTP {status} without a Location).",
    "redirect_not_web": "I couldn't download {name} (redirected to a non-web address).",
    "too_many_redirects": "I couldn't download {name} (too many redirects).",
    "timed_out": "I couldn't download {name} (timed out).",
    "network_error": "I couldn't download {name} (network error).",
    "too_many_pixels": "{name} is too large to open (too many pixels).",
    "too_many_pixels_sized": "{name} is too large to open ({width}×{height} pixels).",
    "over_message_budget": (
        "I didn't open {name}: this message's images add up to more than the {megapixels} "
        "megapixels I open per message."
    ),
    "not_an_image": "I couldn't read {name}: it isn't a valid PNG, JPEG, GIF or WebP image.",
    "too_detailed": "I couldn't shrink {name} below Claude's 5 MB image limit.",
    "not_text": "I couldn't read {name}: it doesn't look like text (it holds binary data).",
    "empty": "{name} is empty.",
    "text_cut": "{name} is {size}: I read the first {kept}.",
    "snippet_preview": "I could only read the start of {name} (the preview Slack sent).",
    "pdf_not_read_by_model": "I can't read {name}: the Claude model I use doesn't read PDFs.",
    "pdf_too_big": (
        "{name} is too big for Claude ({size}; a PDF can be at most {limit} to fit in one request)."
    ),
    "pdf_too_many_pages": (
        "I can't read {name}: it has {pages} pages, and Claude reads at most {limit} pages of PDF "
        "per request here."
    ),
    "pdf_encrypted": "I can't read {name}: it is encrypted (password-protected).",
    "pdf_invalid": "I couldn't read {name}: it isn't a valid PDF.",
    "office_invalid": "I couldn't read {name}: it isn't a valid Word, Excel or PowerPoint file.",
    "office_encrypted": (
        "I couldn't read {name}: it is password-protected, or in the old Office format "
        "(.doc, .xls, .ppt)."
    ),
    "office_too_big": "I didn't open {name}: it unpacks to more than the {limit} I allow.",
    "office_no_text": "I found no text in {name}.",
    "office_cut": "{name} holds more text than I read at once: I read the first {kept} of it.",
    "conversion_timed_out": "I couldn't read {name}: converting it took longer than {seconds} s.",
    "conversion_failed": (
        "I couldn't read {name}: converting it needed more memory or time than I give one file."
    ),
    "unexpected": "I couldn't read {name} (something went wrong on my side).",
}


def file_note(problem: FileProblem, name: str, **details: object) -> str:
    """The note for `problem` with file `name`; `details` fill the rest (`kind`, `status`, …)."""
    return _FILE_NOTES[problem].format(name=name, **details)


def file_too_big(name: str, limit: int, size: int | None = None) -> str:
    """Over the download cap; `size` when it is known before reading (Slack's or the server's)."""
    sized = f"{_megabytes(size)}; " if size is not None else ""
    return f"{name} is too big for me ({sized}I read files up to {_megabytes(limit)})."


def _megabytes(size: int) -> str:
    value = size / (1024 * 1024)
    return f"{value:.0f} MB" if value >= 10 or value == int(value) else f"{value:.1f} MB"


# --- Access, limits and /claude -------------------------------------------------------------
#
# Shown to one person only (ephemeral): a refusal, a limit reached, a slash command's answer.


def refused(reason: str, contact: str | None) -> str:
    """Why the bot won't answer this person here, and whom to ask."""
    first = (
        "Sorry, I'm not available in this channel."
        if reason == "channel"
        else "Sorry, you can't use me here."
    )
    ask = (
        f"Ask {contact} if you need access."
        if contact
        else "Ask your Slack admin if you need access."
    )
    return f"{first} {ask}"


def _resets(resets_at: datetime, now: datetime) -> str:
    left = max(0, int((resets_at - now).total_seconds()) // 60)
    hours, minutes = divmod(left, 60)
    wait = f"{hours} h {minutes} min" if hours else f"{minutes} min"
    return f"It resets at midnight UTC (in {wait})."


def over_limit(kind: str, limit: float, resets_at: datetime, now: datetime) -> str:
    """A daily limit reached: which one, and when it resets."""
    if kind == "user_tokens":
        first = f"You've used your daily allowance of {int(limit):,} tokens with me."
    else:
        first = f"This workspace has reached its daily spending limit for me (${limit:,.2f})."
    return f"{first} {_resets(resets_at, now)} Nothing was sent to Claude."


COMMAND_HELP = (
    "*Claude in Slack*\n"
    "• Mention me in a channel (`@Claude …`) and I answer in the thread; I read the whole "
    "thread for context. In a DM I answer every message (`reset` starts afresh).\n"
    "• I can read images, PDFs, text files and Office documents you attach, and search the web.\n"
    "*`/claude` commands* (only you see the answers)\n"
    "• `/claude help`: this help\n"
    "• `/claude usage`: your own usage today and this week\n"
    "• `/claude prompt`: this channel's extra instructions for me\n"
    "• `/claude prompt set <text>` / `/claude prompt clear`: change them (admins and the "
    "channel's creator)\n"
    "• `/claude model`: the Claude model I use"
)
NO_CHANNEL_PROMPT = "This channel has no extra instructions for me."
PROMPT_SET_NEEDS_TEXT = "Say what the instructions are: `/claude prompt set <text>`."
PROMPT_NOT_YOURS = "Only the bot's admins and this channel's creator can change its instructions."
PROMPT_CLEARED = "Done: this channel has no extra instructions for me any more."
PROMPT_ALREADY_CLEAR = "This channel had no extra instructions for me: nothing to clear."
COMMAND_FAILED = "Something went wrong on my side. Please try again."


def prompt_too_long(limit: int) -> str:
    return f"Those instructions are too long: at most {limit:,} characters."


def channel_prompt(text: str) -> str:
    return f"This channel's extra instructions for me:\n>>> {text}"


def prompt_set(text: str) -> str:
    return f"Done: every reply in this channel now follows these instructions:\n>>> {text}"


def model_in_use(model: str) -> str:
    return f"I use the Claude model `{model}`."


def usage_summary(
    today: tuple[int, float],
    week: tuple[int, float],
    *,
    daily_tokens: int | None,
    exempt: bool,
) -> str:
    """`/claude usage`: the caller's tokens and estimated cost, today and this week."""
    lines = [
        f"*Your usage* (UTC; cost is an estimate from list prices)\n"
        f"• Today: {today[0]:,} tokens, about ${today[1]:,.2f}\n"
        f"• This week (since Monday): {week[0]:,} tokens, about ${week[1]:,.2f}"
    ]
    if daily_tokens is not None and not exempt:
        lines.append(f"Your daily limit is {daily_tokens:,} tokens; it resets at midnight UTC.")
    return "\n".join(lines)


def code_file_failed(name: str | None) -> str:
    """A file code execution made could not be brought into the thread."""
    which = f"*{name}*" if name else "a file"
    return f"_I made {which} while running code but couldn't upload it here._"


def code_file_too_big(name: str, limit: int, size: int | None = None) -> str:
    """A file code execution made is over the bot's file cap (`SLACKBOT_MAX_FILE_MB`)."""
    sized = f" ({_megabytes(size)})" if size is not None else ""
    return (
        f"_I made *{name}*{sized} while running code, but it is too big to upload here "
        f"(the limit is {_megabytes(limit)})._"
    )


def code_files_left_out(count: int) -> str:
    """More files than one reply uploads."""
    files = "file was" if count == 1 else "files were"
    return f"_{count} more {files} made while running code but not uploaded._"


# --- Feedback, the Messages tab and Home ----------------------------------------------------

FEEDBACK_GOOD = "👍"
FEEDBACK_BAD = "👎"
FEEDBACK_GOOD_LABEL = "Good answer"
FEEDBACK_BAD_LABEL = "Bad answer"
#: The 👎 modal (title at most 24 characters, buttons at most 24).
FEEDBACK_MODAL_TITLE = "What went wrong?"
FEEDBACK_MODAL_SUBMIT = "Send"
FEEDBACK_MODAL_CLOSE = "Skip"
FEEDBACK_MODAL_INTRO = (
    "Thanks: your 👎 is saved. If you tell me what was wrong, the people who run this bot can "
    "make it better."
)
FEEDBACK_MODAL_LABEL = "What was wrong with the answer?"
FEEDBACK_MODAL_PLACEHOLDER = "Wrong, out of date, too long, missed the point…"

#: Pinned in the app's Messages tab (`SLACKBOT_SUGGESTED_PROMPTS` replaces them).
SUGGESTED_PROMPTS_TITLE = "Try asking"
SUGGESTED_PROMPTS = (
    ("Summarise a document", "I'll attach a document: summarise it in five bullet points."),
    ("Explain something", "Explain the difference between a mutex and a semaphore."),
    ("Draft a message", "Help me write a short, friendly note to my team about a delayed launch."),
    ("Search the web", "What are the most important changes in the latest Python release?"),
)

HOME_TITLE = "Claude in Slack"
HOME_ABOUT = (
    "I'm Claude, an AI assistant. I answer questions, explain, write and review text and code, "
    "read the images and documents you share (PDF, Word, Excel, PowerPoint, text) and can "
    "search the web. I remember each thread, so you can ask follow-ups."
)
HOME_HOW = (
    "*How to use me*\n"
    "• *In a channel:* mention me (`@Claude …`) and I answer in the thread. I only answer when "
    "mentioned, and I read the whole thread for context.\n"
    "• *In a direct message:* open the *Messages* tab and just write.\n"
    "• Under each answer, 👍 or 👎 tells the people who run me how I did."
)
HOME_MODEL = "*Model:* `{model}`"
HOME_USAGE_TITLE = "*Your usage*"
HOME_USAGE_ROW = "*{period}:* {replies} · {tokens} · ≈ ${cost:,.2f}"
HOME_TODAY = "Today"
HOME_WEEK = "Last 7 days"
HOME_USAGE_NOTE = "Costs are estimates from list prices."


def home_replies(count: int) -> str:
    return f"{count:,} {'reply' if count == 1 else 'replies'}"


def home_tokens(count: int) -> str:
    return f"{count:,} {'token' if count == 1 else 'tokens'}"
