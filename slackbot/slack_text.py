"""Slack's message markup → the plain text Claude reads.

Slack stores a message with its own markup: `<@U123>` for a mention, `<#C123|general>` for a
channel, `<https://x.y|label>` for a link, `&amp;`, `&lt;` and `&gt;` for the three characters the
markup uses. Claude should read what people see (`@Ana`, `#general`, `label (https://x.y)`), and
should not read its own mention at the start of every question, so this rewrites the markup and
leaves everything else (Markdown, code, emoji codes) exactly as typed.

Because Slack escapes every literal `<`, `>` and `&`, an unescaped `<…>` is always markup. The
entities are unescaped last, so text typed as `<@U1>` (sent as `&lt;@U1&gt;`) stays text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache

# One markup token: a sigil (@ user, # channel, ! special) or none (a link), the target, an
# optional label after the first "|".
_MARKUP = re.compile(r"<(?P<sigil>[@#!]?)(?P<target>[^<>|]*)(?:\|(?P<label>[^<>]*))?>")
_USER_MENTION = re.compile(r"<@(?P<user>[A-Z0-9]+)(?:\|[^<>]*)?>")
_ENTITY = re.compile(r"&(amp|lt|gt);")
_ENTITIES = {"amp": "&", "lt": "<", "gt": ">"}
_BROADCASTS = frozenset({"here", "channel", "everyone"})


def mentioned_user_ids(text: str) -> list[str]:
    """The users mentioned in `text`, in order of first mention, each once.

    The caller looks their names up before calling `to_plain_text`.
    """
    return list(dict.fromkeys(m.group("user") for m in _USER_MENTION.finditer(text)))


def to_plain_text(text: str, *, names: Mapping[str, str], bot_user_id: str | None) -> str:
    """Rewrite Slack markup in `text` as the plain text a reader sees.

    `names` maps user ids to display names (a missing one shows as `@U123`). The bot's own
    mention is removed with the space around it, since it only says who the question is for:
    `<@UBOT> what is 2+2?` becomes `what is 2+2?`.
    """
    if bot_user_id:
        text = _bot_mention(bot_user_id).sub(_drop_bot_mention, text)
    text = _MARKUP.sub(lambda m: _plain(m, names), text)
    return _ENTITY.sub(lambda m: _ENTITIES[m.group(1)], text)


@lru_cache(maxsize=8)
def _bot_mention(bot_user_id: str) -> re.Pattern[str]:
    """The bot's mention (repeated mentions together), the spaces around it, and a `:` or `,`
    that follows it as in `@bot: do this`. Compiled once per bot id."""
    mention = rf"<@{re.escape(bot_user_id)}(?:\|[^<>]*)?>"
    return re.compile(
        rf"[ \t]*{mention}(?:[ \t]*{mention})*(?P<punct>[:,](?=\s|$))?[ \t]*(?P<newline>\r?\n)?"
    )


def _drop_bot_mention(match: re.Match[str]) -> str:
    """What the bot's mention leaves behind: nothing at the start of a line (a line that held
    only the mention goes entirely), the line break at the end of one, else one space; and the
    punctuation that followed it mid-line, as in `thanks @bot, that works`."""
    text = match.string
    newline = match.group("newline") or ""
    at_line_start = match.start() == 0 or text[match.start() - 1] == "\n"
    at_line_end = bool(newline) or match.end() == len(text)
    punct = match.group("punct") or ""
    if at_line_start:
        return ""
    if at_line_end:
        return punct + newline
    return f"{punct} "


def _plain(match: re.Match[str], names: Mapping[str, str]) -> str:
    sigil, target, label = match.group("sigil"), match.group("target"), match.group("label")
    if sigil == "@":
        return f"@{names.get(target) or label or target}"
    if sigil == "#":
        return f"#{label or target}"
    if sigil == "!":
        return _special(target, label) or match.group(0)
    return _link(target, label) or match.group(0)


def _special(target: str, label: str | None) -> str | None:
    """`<!here>`, `<!subteam^S1|@team>`, `<!date^…|fallback>`; None for a form we don't know."""
    name, _, argument = target.partition("^")
    if name in _BROADCASTS:
        return f"@{name}"
    if name == "subteam":
        return label or f"@{argument}"
    return label  # `date` and any newer form: Slack's fallback text is the label


def _link(url: str, label: str | None) -> str | None:
    """`label (url)`, or just the url when the label only repeats it. None if not a link."""
    scheme, colon, address = url.partition(":")
    if not colon or not scheme:
        return None
    if scheme == "mailto":
        url = address  # people write and read the address, not the URI
    if not label or label in (url, address, address.removeprefix("//")):
        return url
    return f"{label} ({url})"
