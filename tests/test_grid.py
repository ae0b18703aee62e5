"""Enterprise Grid: one thread seen from several workspaces stays one conversation, spend counts
against the installation, and older databases are re-keyed."""

from __future__ import annotations

import sqlite3
from typing import Any

import sqlite_utils

from fakes.claude import FakeClaude
from fakes.harness import (
    CHANNEL,
    DM,
    Harness,
    conversation,
    make_settings,
    running_harness,
    start_harness,
)
from fakes.slack import FakeSlack, event_callback, message_event
from slackbot.migrations import migrations
from slackbot.server import create_bot, prepare
from slackbot.sqlite_store import SqliteStore


def ts(n: int) -> str:
    return f"{1_700_000_000 + n}.{n:06d}"


def org_users(slack: FakeSlack) -> None:
    """Alice in workspace T1 and Bob in T2, both of the org E1."""
    slack.add_user("U1", display_name="Alice", enterprise_user={"enterprise_id": "E1"})
    slack.add_user("U2", display_name="Bob", team_id="T2", enterprise_user={"enterprise_id": "E1"})


async def deliver_from(
    h: Harness, message: dict[str, Any], team_id: str, *, channel_type: str | None = None
) -> None:
    """An org-wide install's event: the envelope's team is the workspace it happened in."""
    kind = "message" if channel_type else "app_mention"
    event = {**message_event(message, type=kind, channel_type=channel_type), "team": team_id}
    payload = event_callback(event, team_id=team_id, enterprise_id="E1", is_enterprise_install=True)
    response = await h.post_event(payload)
    assert response.status == 200
    h.expected += 1


def rows(path: str, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


async def test_a_thread_stays_one_conversation_whichever_team_the_event_carries(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    org_users(slack)
    # the DM part is about the running conversation of top-level DMs (conversation mode)
    h, runner = await start_harness(
        slack, claude, db_path, user_daily_tokens=10**9, dm_mode="conversation"
    )
    try:
        root = slack.add_user_message(CHANNEL, "U1", "<@UBOT> remember 7")
        await deliver_from(h, root, "T1")
        await h.settled()
        follow = slack.add_user_message(
            CHANNEL, "U2", "<@UBOT> which number?", thread_ts=root["ts"]
        )
        await deliver_from(h, follow, "T2")
        await h.settled()
        dm_one = slack.add_user_message(DM, "U1", "hello")
        await deliver_from(h, dm_one, "T1", channel_type="im")
        await h.settled()
        dm_two = slack.add_user_message(DM, "U1", "again")
        await deliver_from(h, dm_two, "T3", channel_type="im")
        await h.settled()
    finally:
        await runner.cleanup()
        await h.close()
        await h.bot.close()

    thread = conversation(claude.requests[1])
    assert [m["role"] for m in thread] == ["user", "assistant", "user"]
    assert thread[0]["content"][0]["text"] == "Alice: remember 7"
    assert len(conversation(claude.requests[3])) == 3  # the DM's running conversation too
    assert rows(db_path, "SELECT DISTINCT team FROM conversations") == [("E1",)]
    assert rows(db_path, "SELECT COUNT(*) FROM conversations") == [(2,)]
    # spend counts against the installation, whoever asks from whichever workspace
    assert rows(db_path, "SELECT DISTINCT team FROM usage") == [("E1",)]


def split_database(path: str) -> None:
    """What an older release left after an org-wide install: one thread stored under two
    teams (its root twice), a DM session and a channel prompt under a team id."""
    db = sqlite_utils.Database(path)
    migrations.apply(db, stop_before="m016_merge_threads_split_by_team")
    for cid, team in ((1, "T1"), (2, "T2")):
        db.execute(
            "INSERT INTO conversations (id, team, channel, kind, root_ts, kept_from_id)"
            " VALUES (?, ?, 'C1', 'thread', ?, 1)",
            [cid, team, ts(1)],
        )
    turns = [(1, ts(1), "Alice", "remember 7"), (2, ts(1), "Alice", "remember 7")]
    turns += [(2, ts(3), "Bob", "and 8")]
    for cid, when, name, text in turns:
        db.execute(
            "INSERT INTO messages (conversation_id, role, ts, sort_ts, user_name, text, status)"
            " VALUES (?, 'user', ?, ?, ?, ?, 'done')",
            [cid, when, when, name, text],
        )
    db.execute(
        "INSERT INTO messages (conversation_id, role, ts, sort_ts, text, status, channel,"
        " reply_ts) VALUES (1, 'assistant', ?, ?, 'Noted: 7.', 'done', 'C1', ?)",
        [ts(2), ts(1), f'["{ts(2)}"]'],
    )
    db.execute(
        "INSERT INTO usage (message_id, conversation_id, team, created_at) VALUES (4, 2, 'T2', 1)"
    )
    db.execute(
        "INSERT INTO conversations (id, team, channel, kind, root_ts)"
        " VALUES (3, 'T1', 'D1', 'dm', ?)",
        [ts(5)],
    )
    db.execute(
        "INSERT INTO dm_sessions (team, channel, conversation_id, last_ts)"
        " VALUES ('T1', 'D1', 3, ?)",
        [ts(5)],
    )
    db.execute("INSERT INTO channel_prompts (team, channel, text) VALUES ('T2', 'C1', 'Be brief.')")
    db.conn.commit()
    db.close()


async def test_the_upgrade_merges_a_split_thread_and_takes_the_installations_key(
    tmp_path: Any,
) -> None:
    path = str(tmp_path / "old.db")
    split_database(path)
    store = await SqliteStore.open(path)  # m016 runs
    try:
        assert rows(path, "SELECT id, team FROM conversations ORDER BY id") == [
            (1, "T1"),
            (3, "T1"),
        ]
        turns = await store.history(1, ts(9))
        assert [(t.role, t.text) for t in turns] == [
            ("user", "remember 7"),
            ("assistant", "Noted: 7."),
            ("user", "and 8"),
        ]
        assert rows(path, "SELECT conversation_id FROM usage") == [(1,)]
        assert (await store.window_state(1)).kept_from_id is None  # refitted at the next mention

        assert await store.adopt_workspace("E1") == 4
        assert rows(path, "SELECT DISTINCT team FROM conversations") == [("E1",)]
        assert await store.channel_prompt("E1", "C1") == "Be brief."
        assert await store.dm_conversation("E1", "D1", ts(6), idle_seconds=3600) == 3
        assert await store.adopt_workspace("E1") == 0  # every later start: nothing to do
    finally:
        await store.close()


async def test_start_up_adopts_the_installations_key_and_old_threads_carry_on(
    slack: FakeSlack, claude: FakeClaude, tmp_path: Any
) -> None:
    path = str(tmp_path / "old.db")
    split_database(path)
    org_users(slack)
    slack.handlers["auth.test"] = lambda params: {
        "ok": True,
        "url": f"{slack.base_url}/",
        "team": "Test Org",
        "user": "slackbot",
        "team_id": "T1",
        "enterprise_id": "E1",
        "user_id": slack.bot_user_id,
        "bot_id": slack.bot_id,
        "is_enterprise_install": True,
    }
    bot = await create_bot(make_settings(slack, claude, path), anthropic_max_retries=0)
    try:
        await prepare(bot)
        assert bot.conversations.access.home_enterprise == "E1"
    finally:
        await bot.close()
    assert rows(path, "SELECT DISTINCT team FROM conversations") == [("E1",)]

    h, runner = await start_harness(slack, claude, path)
    try:
        message = slack.add_user_message(CHANNEL, "U2", "<@UBOT> which numbers?", thread_ts=ts(1))
        slack.fail_next("conversations.replies", "thread_not_found")  # from the store alone
        await deliver_from(h, message, "T2")
        await h.settled()
    finally:
        await runner.cleanup()
        await h.close()
        await h.bot.close()
    texts = [b["text"] for m in conversation(claude.requests[-1]) for b in m["content"]]
    assert texts == ["Alice: remember 7", "Noted: 7.", "Bob: and 8", "Bob: which numbers?"]
    assert claude.requests[-1]["system"].endswith("Be brief.")


async def test_an_org_wide_installs_home_tab_shows_the_viewers_usage(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    """Usage is kept under the Grid org, whichever workspace the reply was asked in: the Home
    tab, opened from another workspace of the org, finds it."""
    from fakes.slack import app_home_opened

    org_users(slack)
    async with running_harness(slack, claude, db_path) as h:
        root = slack.add_user_message(CHANNEL, "U1", "<@UBOT> hello")
        await deliver_from(h, root, "T1")
        await h.settled()
        response = await h.post_event(
            app_home_opened("U1", tab="home", team_id="T2", enterprise_id="E1")
        )
        assert response.status == 200
        await slack.wait_for(lambda: "U1" in slack.home_views)
        text = str(slack.home_views["U1"])
        assert "1 reply" in text
