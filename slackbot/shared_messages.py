"""Messages shared into a conversation → the text Claude reads with the message that shares them.

Sharing a Slack message (or pasting its link) adds it to the sharing message as an attachment:
its text (`text`, in Slack's markup, or only as rich-text `message_blocks`), its author
(`author_name`, `author_subname`) and where it came from (`from_url`). Claude should read it as
part of the turn, labelled as someone else's words: `[Shared message from Bob at <link>: …]`.

Link previews of web pages are attachments too; they are not messages and are left out (Claude
reads the link itself in the text).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: The longest shared text kept (Slack caps a message at 40,000 characters anyway).
MAX_SHARED_CHARS = 40_000


@dataclass(frozen=True)
class SharedMessage:
    """One shared message: its text in Slack's markup (as a message's `text` is), so mentions
    and links are rewritten like the sharing message's own."""

    author: str
    markup: str
    url: str | None = None


def shared_messages(message: Mapping[str, Any]) -> list[SharedMessage]:
    """The messages shared in `message`, in order; those without any text are skipped."""
    found = []
    for attachment in message.get("attachments") or ():
        if not isinstance(attachment, Mapping) or not _is_message(attachment):
            continue
        text = attachment.get("text")
        markup = text if isinstance(text, str) and text.strip() else _blocks_markup(attachment)
        if not markup.strip():
            continue
        url = attachment.get("from_url") or attachment.get("original_url")
        found.append(
            SharedMessage(
                author=_author(attachment),
                markup=markup[:MAX_SHARED_CHARS],
                url=url if isinstance(url, str) and url else None,
            )
        )
    return found


def render(shared: SharedMessage, text: str) -> str:
    """How Claude reads a shared message, given its text made plain."""
    source = f" at {shared.url}" if shared.url else ""
    return f"[Shared message from {shared.author}{source}: {text.strip()}]"


def _is_message(attachment: Mapping[str, Any]) -> bool:
    return bool(
        attachment.get("is_share")
        or attachment.get("is_msg_unfurl")
        or attachment.get("message_blocks")
    )


def _author(attachment: Mapping[str, Any]) -> str:
    name = str(attachment.get("author_name") or "").strip()
    subname = str(attachment.get("author_subname") or "").strip()
    if name and subname and subname != name:
        return f"{name} ({subname})"
    return name or subname or "someone"


# --- Rich text (a shared message that comes only as blocks)


def _blocks_markup(attachment: Mapping[str, Any]) -> str:
    parts = []
    for shared in attachment.get("message_blocks") or ():
        message = shared.get("message") if isinstance(shared, Mapping) else None
        for block in (message or {}).get("blocks") or ():
            if isinstance(block, Mapping) and block.get("type") == "rich_text":
                parts.append(_rich_text(block.get("elements") or ()))
    return "\n".join(part for part in parts if part)


def _escape(text: str) -> str:
    """Plain text as Slack's markup holds it, so `slack_text` unescapes it back."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _rich_text(elements: Any) -> str:
    """A rich_text block's elements as Slack markup: sections, lists, code and quotes."""
    lines = []
    for element in elements:
        if not isinstance(element, Mapping):
            continue
        kind = element.get("type")
        inner = element.get("elements") or ()
        if kind == "rich_text_list":
            ordered = element.get("style") == "ordered"
            for number, item in enumerate(inner, start=1):
                bullet = f"{number}." if ordered else "-"
                lines.append(f"{bullet} {_inline(item.get('elements') or ())}")
        elif kind == "rich_text_preformatted":
            lines.append(f"```\n{_inline(inner)}\n```")
        elif kind == "rich_text_quote":
            lines.append("\n".join(f"> {line}" for line in _inline(inner).split("\n")))
        else:
            lines.append(_inline(inner))
    return "\n".join(lines)


def _inline(elements: Any) -> str:
    out = []
    for element in elements:
        if not isinstance(element, Mapping):
            continue
        kind = element.get("type")
        if kind == "text":
            out.append(_escape(str(element.get("text") or "")))
        elif kind == "link":
            url = str(element.get("url") or "")
            label = element.get("text")
            out.append(f"<{url}|{_escape(str(label))}>" if label else f"<{url}>")
        elif kind == "user":
            out.append(f"<@{element.get('user_id')}>")
        elif kind == "channel":
            out.append(f"<#{element.get('channel_id')}>")
        elif kind == "emoji":
            out.append(f":{element.get('name')}:")
        elif kind == "broadcast":
            out.append(f"<!{element.get('range')}>")
        elif isinstance(element.get("text"), str):  # dates, user groups, … carry a fallback
            out.append(_escape(str(element["text"])))
    return "".join(out)
