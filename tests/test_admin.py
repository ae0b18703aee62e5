"""Admin controls through the real Bolt app: who may use the bot, spend limits, `/claude`."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

import pytest

from fakes.claude import FakeClaude, Script
from fakes.harness import CHANNEL, DM, Harness, conversation, running_harness
from fakes.slack import FakeSlack, event_callback, message_event
from slackbot.cli import main
from slackbot.config import DEFAULT_SYSTEM_PROMPT
from slackbot.quotas import Quotas, day_start, week_start
from slackbot.store import UsageTotal


def count(db_path: str, table: str) -> int:
    conn = sqlite3.connect(db_path)
    try:
        return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
    finally:
        conn.close()


def stored_nothing(db_path: str) -> bool:
    return all(count(db_path, t) == 0 for t in ("conversations", "messages", "pending", "usage"))


# -- who may use it ----------------------------------------------------------------------------


async def test_a_person_not_allowed_gets_one_ephemeral_and_nothing_is_stored(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    async with running_harness(
        slack, claude, db_path, allowed_users=("U1",), admin_contact="#it-help"
    ) as h:
        message = await h.mention("hello", user="U2")
        await h.settled()
        # the redelivery of the refused event is recognised: no second note
        await h.post_event(
            event_callback(message_event(message, type="app_mention")),
            retry_num=1,
        )
        assert claude.requests == []
        assert h.replies(CHANNEL, None) == []
        (note,) = slack.ephemerals
        assert note["user"] == "U2" and note["channel"] == CHANNEL
        assert "can't use me here" in note["text"] and "#it-help" in note["text"]
        assert stored_nothing(db_path) and count(db_path, "events") == 1

        await h.mention("hello", user="U1")  # the allowed person is answered
        await h.settled()
        assert len(claude.requests) == 1 and len(slack.ephemerals) == 1


async def test_denied_wins_over_allowed_and_applies_in_dms(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    async with running_harness(
        slack, claude, db_path, allowed_users=("U1", "U2"), denied_users=("U2",)
    ) as h:
        await h.dm("hi", user="U2")
        await h.dm("reset", user="U2")
        await h.settled()
        assert claude.requests == [] and len(slack.ephemerals) == 2
        assert "Ask your Slack admin" in slack.ephemerals[0]["text"]
        assert stored_nothing(db_path)


async def test_allowed_channels_leave_dms_open(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    async with running_harness(slack, claude, db_path, allowed_channels=("C2",)) as h:
        first = await h.mention("here?", channel=CHANNEL)
        await h.mention("and here?", channel="C2")
        await h.dm("and in private?")
        await h.settled()
        assert len(claude.requests) == 2
        (note,) = slack.ephemerals
        assert note["channel"] == CHANNEL and "not available in this channel" in note["text"]
        assert h.replies(CHANNEL, first["ts"]) == []


async def test_slack_connect_and_guests_are_refused_by_default(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    slack.add_user("U7", display_name="Eve", team_id="T9")  # another organisation
    slack.add_user("U8", display_name="Gus", is_restricted=True)
    slack.add_user("U9", display_name="Una", is_ultra_restricted=True)
    slack.add_user("U6", display_name="Sam", is_stranger=True)
    async with running_harness(slack, claude, db_path) as h:
        for user in ("U7", "U8", "U9", "U6"):
            await h.mention("hi", user=user)
        await h.settled()
        assert claude.requests == []
        assert [n["user"] for n in slack.ephemerals] == ["U7", "U8", "U9", "U6"]
        assert stored_nothing(db_path)
        # users.info was asked once per person, however often they come back (cached)
        await h.mention("again", user="U7")
        await h.settled()
        asked = [c.params["user"] for c in slack.calls_to("users.info")]
        assert asked.count("U7") == 1


async def test_external_users_and_guests_when_allowed(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    slack.add_user("U7", display_name="Eve", team_id="T9")
    slack.add_user("U8", display_name="Gus", is_restricted=True)
    # a Slack Connect user users.info can't see: named from the event's user_profile
    slack.missing_users.add("U5")
    async with running_harness(slack, claude, db_path, allow_external=True, allow_guests=True) as h:
        await h.mention("hi from Eve", user="U7")
        await h.mention("hi from Gus", user="U8")
        message = slack.add_user_message(CHANNEL, "U5", "<@UBOT> hi from Zed")
        event = {
            **message_event(message, type="app_mention"),
            "user_team": "T9",
            "user_profile": {"display_name": "Zed", "real_name": "Zed Z", "team": "T9"},
        }
        await h.post_event(event_callback(event))
        h.expected += 1
        await h.settled()
        texts = sorted(conversation(r)[-1]["content"][0]["text"] for r in claude.requests)
        assert texts == ["Eve: hi from Eve", "Gus: hi from Gus", "Zed: hi from Zed"]
        assert slack.ephemerals == []


async def test_unknown_stranger_is_refused_but_a_sibling_grid_workspace_is_not(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    slack.missing_users.add("U5")  # Slack won't describe them: not one of ours
    slack.add_user("U4", display_name="Sib", team_id="T2", enterprise_user={"enterprise_id": "E1"})
    async with running_harness(slack, claude, db_path) as h:
        for user in ("U5", "U4"):
            message = slack.add_user_message(CHANNEL, user, "<@UBOT> hi")
            await h.post_event(
                event_callback(message_event(message, type="app_mention"), enterprise_id="E1")
            )
            h.expected += 1
        await h.settled()
        assert [n["user"] for n in slack.ephemerals] == ["U5"]
        assert conversation(claude.requests[0])[-1]["content"][0]["text"] == "Sib: hi"


# -- spend limits ------------------------------------------------------------------------------


async def test_a_quota_crossed_by_the_previous_reply(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    claude.default = Script(text="A fairly long answer " * 10)
    async with running_harness(slack, claude, db_path, user_daily_tokens=50) as h:
        first = await h.mention("first question")
        await h.settled()
        assert len(claude.requests) == 1  # under the limit before it: answered in full
        assert "A fairly long answer" in h.texts(CHANNEL, first["ts"])[0]
        messages_before = count(db_path, "messages")

        await h.mention("second question", thread_ts=first["ts"])
        await h.settled()
        assert len(claude.requests) == 1
        (note,) = slack.ephemerals
        assert note["thread_ts"] == first["ts"] and note["user"] == "U1"
        assert "daily allowance of 50 tokens" in note["text"]
        assert "resets at midnight UTC" in note["text"]
        assert count(db_path, "messages") == messages_before  # nothing stored

        await h.mention("my own question", user="U2")  # another person has their own allowance
        await h.settled()
        assert len(claude.requests) == 2


async def test_admins_have_no_per_person_limit(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    async with running_harness(slack, claude, db_path, user_daily_tokens=1, admins=("U1",)) as h:
        await h.mention("one")
        await h.settled()
        await h.mention("two")
        await h.settled()
        assert len(claude.requests) == 2 and slack.ephemerals == []


async def test_a_workspace_spend_limit_applies_to_everyone(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    async with running_harness(
        slack, claude, db_path, workspace_daily_usd=0.00001, admins=("U2",)
    ) as h:
        await h.mention("one")
        await h.settled()
        await h.mention("two", user="U2")
        await h.dm("three")
        await h.settled()
        assert len(claude.requests) == 1
        assert [n["user"] for n in slack.ephemerals] == ["U2", "U1"]
        assert all("daily spending limit" in n["text"] for n in slack.ephemerals)
        assert "$0.00" in slack.ephemerals[0]["text"]


async def test_spend_counts_cache_tokens_and_searches(db_path: str) -> None:
    from slackbot.config import load_settings

    settings = load_settings(
        {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s", "ANTHROPIC_API_KEY": "k"}
    )
    quotas = Quotas(settings, store=None)  # type: ignore[arg-type]  # cost() needs no store
    total = UsageTotal(
        "claude-sonnet-5-5", "sonnet", 1, 1_000_000, 1_000_000, 1_000_000, 1_000_000, 100
    )
    # Sonnet 5.x: $2 in, $10 out; cache writes 1.25×, reads 0.1×; $10 per 1,000 searches
    assert quotas.cost([total]) == pytest.approx(2 + 2.5 + 0.2 + 10 + 1)
    assert total.tokens == 4_000_000


def test_days_and_weeks_are_utc() -> None:
    now = datetime(2026, 3, 12, 23, 30, tzinfo=UTC)  # a Thursday
    assert day_start(now) == datetime(2026, 3, 12, tzinfo=UTC)
    assert week_start(now) == datetime(2026, 3, 9, tzinfo=UTC)


# -- /claude -------------------------------------------------------------------------------


async def test_help_and_unknown_subcommands(harness: Harness) -> None:
    for text in ("help", "", "frobnicate now"):
        status, answer = await harness.command(text)
        assert status == 200
        assert answer["response_type"] == "ephemeral"
        assert "/claude usage" in answer["text"] and "/claude prompt set" in answer["text"]
    assert harness.claude.requests == []
    assert harness.slack.calls_to("chat.postMessage") == []


async def test_a_command_without_a_valid_signature_is_refused(harness: Harness) -> None:
    status, _ = await harness.command("help", secret="wrong")
    assert status == 401


async def test_model_and_usage(harness: Harness) -> None:
    _, answer = await harness.command("model")
    assert harness.bot.conversations.claude.model in answer["text"]

    _, answer = await harness.command("usage")
    assert "Today: 0 tokens" in answer["text"]
    await harness.mention("hello")
    await harness.settled()
    conn = sqlite3.connect(harness.bot.store.path)
    (tokens,) = conn.execute(
        "SELECT input_tokens + cache_creation_input_tokens + cache_read_input_tokens"
        " + output_tokens FROM usage"
    ).fetchone()
    conn.close()
    _, answer = await harness.command("usage")
    assert f"Today: {tokens:,} tokens" in answer["text"]
    assert f"This week (since Monday): {tokens:,} tokens" in answer["text"]
    _, other = await harness.command("usage", user="U2")  # nobody sees another's figures
    assert "Today: 0 tokens" in other["text"]


async def test_the_same_access_rules_apply_to_the_command(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    slack.add_user("U7", display_name="Eve", team_id="T9")
    async with running_harness(slack, claude, db_path, denied_users=("U2",)) as h:
        for user in ("U2", "U7"):
            status, answer = await h.command("help", user=user)
            assert status == 200 and "can't use me here" in answer["text"]


async def test_channel_prompt_reaches_the_system_prompt_and_is_audited(
    slack: FakeSlack,
    claude: FakeClaude,
    db_path: str,
    source: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    slack.add_channel(CHANNEL, "design", creator="U2")
    on = {"database_url": source} if source != db_path else {}  # SQLite, then PostgreSQL
    async with running_harness(slack, claude, db_path, admins=("U9",), **on) as h:
        _, answer = await h.command("prompt")
        assert answer["text"] == "This channel has no extra instructions for me."
        _, answer = await h.command("prompt set Answer in French.", user="U1")
        assert "Only the bot's admins and this channel's creator" in answer["text"]
        _, answer = await h.command("prompt set", user="U2")
        assert "Say what the instructions are" in answer["text"]

        _, answer = await h.command("prompt set Answer in French.\nBe brief.", user="U2")
        assert "Answer in French.\nBe brief." in answer["text"]
        _, answer = await h.command("prompt", user="U1")  # anyone may read them
        assert "Answer in French." in answer["text"]

        await h.mention("bonjour")
        await h.mention("elsewhere", channel="C2")
        await h.dm("privately")
        await h.settled()
        systems = {conversation(r)[-1]["content"][0]["text"]: r["system"] for r in claude.requests}
        french = systems["Alice: bonjour"]
        assert french.startswith(DEFAULT_SYSTEM_PROMPT)
        assert french.endswith("Answer in French.\nBe brief.")
        assert systems["Alice: elsewhere"] == DEFAULT_SYSTEM_PROMPT
        assert systems["Alice: privately"] == DEFAULT_SYSTEM_PROMPT

        _, answer = await h.command("prompt set Answer in German.", user="U9")  # an admin
        assert "German" in answer["text"]
        _, answer = await h.command("prompt clear", user="U2")
        assert answer["text"].startswith("Done")
        _, answer = await h.command("prompt clear", user="U2")
        assert "nothing to clear" in answer["text"]
        await h.mention("hallo")
        await h.settled()
        assert claude.requests[-1]["system"] == DEFAULT_SYSTEM_PROMPT

    assert main(["audit", "--db", source]) == 0
    printed = capsys.readouterr().out
    assert printed.count(" set by U2") == 1 and printed.count(" set by U9") == 1
    assert printed.count(" cleared by U2") == 1
    assert "old: (none)" in printed and "new: Answer in French." in printed
    assert "old: Answer in French." in printed and "new: Answer in German." in printed
    assert f"  {CHANNEL}  " in printed and "UTC" in printed
    assert main(["audit", "--db", source, "--channel", "C2"]) == 0
    assert "No channel instructions have been changed." in capsys.readouterr().out


async def test_a_dm_person_may_set_their_own_dm_prompt(harness: Harness) -> None:
    harness.slack.add_channel(DM, "", is_im=True, user="U1")
    _, answer = await harness.command("prompt set Call me Al.", channel=DM)
    assert answer["text"].startswith("Done")
