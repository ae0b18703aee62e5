"""Slack markup → the plain text Claude reads."""

from __future__ import annotations

import pytest

from slackbot.slack_text import mentioned_user_ids, to_plain_text

NAMES = {"U1": "Ana", "U2": "Bo"}
BOT = "UBOT"


def plain(text: str, bot_user_id: str | None = BOT) -> str:
    return to_plain_text(text, names=NAMES, bot_user_id=bot_user_id)


def test_mentioned_user_ids_in_order_and_unique() -> None:
    text = "<@U2> and <@U1|ana>, again <@U2>, enterprise <@W3>, the bot <@UBOT>"
    assert mentioned_user_ids(text) == ["U2", "U1", "W3", "UBOT"]


def test_mentioned_user_ids_ignores_escaped_and_other_markup() -> None:
    assert mentioned_user_ids("&lt;@U1&gt; <#C1|general> <!here> <https://a.b|@U2>") == []


@pytest.mark.parametrize(
    ("slack", "shown"),
    [
        ("hi <@U1>", "hi @Ana"),
        ("hi <@U1|ana.legacy>", "hi @Ana"),
        ("hi <@U9>", "hi @U9"),
        ("hi <@U9|nine>", "hi @nine"),
        ("see <#C1|general>", "see #general"),
        ("see <#C1>", "see #C1"),
        ("see <#C1|>", "see #C1"),
        ("<!here> look", "@here look"),
        ("<!channel> look", "@channel look"),
        ("<!everyone> look", "@everyone look"),
        ("<!here|@here> look", "@here look"),
        ("ping <!subteam^S1|@team>", "ping @team"),
        ("ping <!subteam^S1>", "ping @S1"),
        (
            "on <!date^1392734382^{date_short} at {time}|Feb 18, 2014 at 6:39 AM>",
            "on Feb 18, 2014 at 6:39 AM",
        ),
        ("read <https://example.com/a?b=1|the docs>", "read the docs (https://example.com/a?b=1)"),
        ("read <https://example.com/a>", "read https://example.com/a"),
        ("read <https://example.com|https://example.com>", "read https://example.com"),
        ("read <http://example.com|example.com>", "read http://example.com"),
        ("mail <mailto:a@b.c|a@b.c>", "mail a@b.c"),
        ("mail <mailto:a@b.c>", "mail a@b.c"),
        ("mail <mailto:a@b.c|Ana>", "mail Ana (a@b.c)"),
        ("call <tel:+15550100|+1 555 0100>", "call +1 555 0100 (tel:+15550100)"),
    ],
)
def test_markup_forms(slack: str, shown: str) -> None:
    assert plain(slack) == shown


def test_entities_are_unescaped_last() -> None:
    assert plain("a &amp; b &lt;c&gt;") == "a & b <c>"
    # Typed literally, a mention stays text; an escaped entity is unescaped only once.
    assert plain("&lt;@U1&gt; and &lt;!here&gt;") == "<@U1> and <!here>"
    assert plain("&amp;lt; is how you write &lt;") == "&lt; is how you write <"
    # Entities inside a link's label and url are unescaped too.
    assert plain("<https://x.y/?a=1&amp;b=2|Q&amp;A>") == "Q&A (https://x.y/?a=1&b=2)"
    # Only those three: others are left as typed.
    assert plain("&quot;&nbsp;&#39;") == "&quot;&nbsp;&#39;"


@pytest.mark.parametrize(
    ("slack", "shown"),
    [
        ("<@UBOT> what is 2+2?", "what is 2+2?"),
        ("<@UBOT|claude>  what is 2+2?", "what is 2+2?"),
        ("<@UBOT>: summarise this", "summarise this"),
        ("<@UBOT>, summarise this", "summarise this"),
        ("hey <@UBOT> what is 2+2?", "hey what is 2+2?"),
        ("thanks <@UBOT>, that works", "thanks, that works"),
        ("what is 2+2? <@UBOT>", "what is 2+2?"),
        ("<@UBOT> <@UBOT> hi", "hi"),
        ("<@UBOT>\nfirst line\nsecond", "first line\nsecond"),
        ("question\n<@UBOT>\nmore", "question\nmore"),
        ("question <@UBOT>\nmore", "question\nmore"),
        ("<@UBOT>", ""),
        ("<@UBOT> :wave: hi", ":wave: hi"),
        ("<@UBOT>:wave: hi", ":wave: hi"),
        ("<@UBOT> ask <@U1> about it", "ask @Ana about it"),
    ],
)
def test_the_bots_own_mention_is_removed(slack: str, shown: str) -> None:
    assert plain(slack) == shown


def test_without_a_bot_id_every_mention_is_kept() -> None:
    assert plain("<@UBOT> hi", bot_user_id=None) == "@UBOT hi"


def test_a_name_for_the_bot_does_not_bring_its_mention_back() -> None:
    text = "<@UBOT> hi"
    assert to_plain_text(text, names={"UBOT": "Claude"}, bot_user_id=BOT) == "hi"


def test_everything_else_is_untouched() -> None:
    text = (
        "**bold** _it_ ~strike~ `code &lt;x&gt;` :smile:\n"
        "```python\nif a &lt; b and c &gt; d:\n    print('x')\n```\n"
        "> quote\n- list\n  1. nested\n"
    )
    expected = text.replace("&lt;", "<").replace("&gt;", ">")
    assert plain(text) == expected


def test_unknown_forms_are_left_as_they_are() -> None:
    assert plain("<!somethingnew> and <nolink>") == "<!somethingnew> and <nolink>"
    assert plain("<!somethingnew|shown text>") == "shown text"
