"""Stored turns → the Claude `messages` list.

The Messages API is stateless, so every mention re-sends the whole conversation. The rendering
here must be deterministic — the same stored turn always becomes the same bytes — so that a
thread reads the same to Claude every time and prompt caching can hit. Which turns are sent is
decided by `context_window.fit`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from slackbot.documents import claude_block
from slackbot.store import Turn

Message = dict[str, Any]
Block = dict[str, Any]

#: What Claude reads where turns were left out.
OMITTED_MARKER = "[Earlier messages in this conversation were omitted to fit the context window.]"
#: `role` of the marker turn `fit` inserts; rendered as a user-side text block.
OMITTED_ROLE = "omitted"


def render_user_turn(turn: Turn) -> list[Block]:
    """A person's message: their documents (PDFs, texts, each titled with its file name and
    citable), their images, then one text block labelled with their name."""
    blocks: list[Block] = [
        claude_block(document.media_type, document.data, document.name)
        for document in turn.documents
    ]
    blocks.extend(
        {
            "type": "image",
            "source": {"type": "base64", "media_type": image.media_type, "data": image.data},
        }
        for image in turn.images
    )
    speaker = turn.user_name or turn.user_id or "Someone"
    text = turn.text.strip()
    parts = [f"{speaker}: {text}" if text else f"{speaker}: (no text)"]
    parts.extend(f"[{note}]" for note in turn.notes)
    blocks.append({"type": "text", "text": "\n".join(parts)})
    return blocks


def render_assistant_turn(turn: Turn) -> list[Block]:
    text = turn.text.strip()
    return [{"type": "text", "text": text}] if text else []


def render_turn(turn: Turn) -> tuple[str, list[Block]]:
    """(role, blocks) of one turn as Claude reads it."""
    if turn.role == OMITTED_ROLE:
        return "user", [{"type": "text", "text": OMITTED_MARKER}]
    if turn.role == "user":
        return "user", render_user_turn(turn)
    return "assistant", render_assistant_turn(turn)


def without_refused(turns: Iterable[Turn]) -> list[Turn]:
    """The conversation less every refused exchange (the refusal and the message it refused).

    After a refusal the API's guidance is to reset the conversation, or the refusals go on: the
    exchange stays in the store (marked `refused`) but is never sent again.
    """
    turns = list(turns)
    refused = {t.answers_ts for t in turns if t.role == "assistant" and t.status == "refused"}
    if not refused:
        return turns
    return [
        t
        for t in turns
        if not (t.role == "assistant" and t.status == "refused")
        and not (t.role == "user" and t.ts in refused)
    ]


def build_messages(turns: Iterable[Turn]) -> list[Message]:
    """Alternating user/assistant messages, merged by role, starting and ending with a user turn.

    Current models reject a request that ends with an assistant turn (no prefill), and a
    conversation may start with the bot's own message; both ends are trimmed to user turns.
    """
    messages: list[Message] = []
    for turn in turns:
        role, blocks = render_turn(turn)
        if not blocks:
            continue
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"].extend(blocks)
        else:
            messages.append({"role": role, "content": blocks})
    while messages and messages[0]["role"] != "user":
        messages.pop(0)
    while messages and messages[-1]["role"] != "user":
        messages.pop()
    return messages
