"""Messages shared into a message → the text Claude reads with it."""

from __future__ import annotations

from slackbot.shared_messages import SharedMessage, render, shared_messages


def test_shares_are_found_and_link_previews_are_not() -> None:
    message = {
        "attachments": [
            {"is_share": True, "text": "hello", "author_name": "Bob", "from_url": "https://s/1"},
            {"title": "A web page", "text": "preview text", "from_url": "https://example.com"},
            {"is_msg_unfurl": True, "text": "  ", "author_name": "Empty"},
            "not an attachment",
        ]
    }
    assert shared_messages(message) == [SharedMessage("Bob", "hello", "https://s/1")]
    assert shared_messages({"text": "no attachments"}) == []


def test_author_names_and_rendering() -> None:
    [shared] = shared_messages(
        {"attachments": [{"is_share": True, "text": "x", "author_name": "Bob Smith",
                          "author_subname": "bob"}]}
    )  # fmt: skip
    assert shared.author == "Bob Smith (bob)"
    assert render(shared, " the text \n") == "[Shared message from Bob Smith (bob): the text]"
    anonymous = SharedMessage("someone", "x", "https://s/2")
    assert render(anonymous, "hi") == "[Shared message from someone at https://s/2: hi]"


def test_rich_text_only_shares_keep_their_structure_as_markup() -> None:
    elements = [
        {"type": "rich_text_section", "elements": [
            {"type": "text", "text": "Plan for "}, {"type": "channel", "channel_id": "C1"},
            {"type": "text", "text": " (a < b & c):"},
        ]},
        {"type": "rich_text_list", "style": "ordered", "elements": [
            {"type": "rich_text_section", "elements": [
                {"type": "link", "url": "https://x.y", "text": "spec"}]},
            {"type": "rich_text_section", "elements": [
                {"type": "user", "user_id": "U2"}, {"type": "emoji", "name": "tada"}]},
        ]},
        {"type": "rich_text_preformatted", "elements": [{"type": "text", "text": "make test"}]},
        {"type": "rich_text_quote", "elements": [
            {"type": "broadcast", "range": "here"}, {"type": "text", "text": " look"}]},
    ]  # fmt: skip
    message = {
        "attachments": [
            {
                "is_msg_unfurl": True,
                "author_subname": "carol",
                "message_blocks": [
                    {"message": {"blocks": [{"type": "rich_text", "elements": elements}]}}
                ],
            }
        ]
    }
    [shared] = shared_messages(message)
    assert shared.markup == (
        "Plan for <#C1> (a &lt; b &amp; c):\n"
        "1. <https://x.y|spec>\n"
        "2. <@U2>:tada:\n"
        "```\nmake test\n```\n"
        "> <!here> look"
    )
