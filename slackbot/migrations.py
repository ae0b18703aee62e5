"""Schema migrations, applied in order at every start: one numbered list for both backends.

Each step is a function for SQLite (sqlite-utils) with the same step's SQL for PostgreSQL next
to it (`@step(postgres=...)`): the list, its order and its names are shared, so a database
moved from one backend to the other (`slackbot copy-db`) has the same schema, and a test
migrates both and compares them. Append new steps; never edit a released one.

PostgreSQL notes: Slack timestamps are compared as strings ("1700000000.000100"), so their
columns are `COLLATE "C"` (byte order) whatever the database's locale; ids are `BIGSERIAL`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import sqlite_utils
from sqlite_utils.migrations import Migrations

migrations = Migrations("slackbot")

#: Each step's SQL on PostgreSQL, by step name, in the steps' order.
POSTGRES: dict[str, str] = {}

_Step = Callable[[sqlite_utils.Database], None]


def step(*, postgres: str) -> Callable[[_Step], _Step]:
    """Register a step: the function runs on SQLite, `postgres` on PostgreSQL."""

    def register(fn: _Step) -> _Step:
        POSTGRES[fn.__name__] = postgres
        return migrations()(fn)

    return register


@step(
    postgres="""
    CREATE TABLE conversations (
        id BIGSERIAL PRIMARY KEY,
        team TEXT NOT NULL,
        channel TEXT NOT NULL,
        kind TEXT NOT NULL,
        root_ts TEXT COLLATE "C" NOT NULL,
        created_at DOUBLE PRECISION
    );
    CREATE UNIQUE INDEX idx_conversations_team_channel_kind_root_ts
        ON conversations (team, channel, kind, root_ts);
    """
)
def m001_create_conversations(db: sqlite_utils.Database) -> None:
    """Conversations are keyed by workspace, channel and thread root so nothing leaks between
    them; `kind` separates a DM's running top-level conversation from a thread whose root is the
    same message."""
    db.table("conversations").create(
        {
            "id": int,
            "team": str,
            "channel": str,
            "kind": str,
            "root_ts": str,
            "created_at": float,
        },
        pk="id",
        not_null={"team", "channel", "kind", "root_ts"},
    )
    db.table("conversations").create_index(["team", "channel", "kind", "root_ts"], unique=True)


@step(
    postgres="""
    CREATE TABLE messages (
        id BIGSERIAL PRIMARY KEY,
        conversation_id BIGINT NOT NULL REFERENCES conversations (id),
        role TEXT NOT NULL,
        ts TEXT COLLATE "C" NOT NULL,
        sort_ts TEXT COLLATE "C" NOT NULL,
        user_id TEXT,
        user_name TEXT,
        text TEXT,
        notes TEXT,
        status TEXT,
        channel TEXT,
        reply_ts TEXT,
        stop_reason TEXT,
        input_tokens BIGINT,
        created_at DOUBLE PRECISION
    );
    CREATE UNIQUE INDEX idx_messages_conversation_id_ts ON messages (conversation_id, ts);
    CREATE INDEX idx_messages_conversation_id_sort_ts ON messages (conversation_id, sort_ts);
    CREATE INDEX idx_messages_status ON messages (status);
    """
)
def m002_create_messages(db: sqlite_utils.Database) -> None:
    """Every turn of every conversation. `sort_ts` orders a reply right after the message it
    answers; `reply_ts` lists the Slack messages a long reply was split into."""
    db.table("messages").create(
        {
            "id": int,
            "conversation_id": int,
            "role": str,
            "ts": str,
            "sort_ts": str,
            "user_id": str,
            "user_name": str,
            "text": str,
            "notes": str,
            "status": str,
            "channel": str,
            "reply_ts": str,
            "stop_reason": str,
            "input_tokens": int,
            "created_at": float,
        },
        pk="id",
        foreign_keys=[("conversation_id", "conversations", "id")],
        not_null={"conversation_id", "role", "ts", "sort_ts"},
    )
    db.table("messages").create_index(["conversation_id", "ts"], unique=True)
    db.table("messages").create_index(["conversation_id", "sort_ts"])
    db.table("messages").create_index(["status"])


@step(
    postgres="""
    CREATE TABLE images (
        id BIGSERIAL PRIMARY KEY,
        message_id BIGINT REFERENCES messages (id),
        position BIGINT,
        name TEXT,
        media_type TEXT,
        data TEXT
    );
    CREATE INDEX idx_images_message_id_position ON images (message_id, position);
    """
)
def m003_create_images(db: sqlite_utils.Database) -> None:
    """Images already checked and resized, kept as base64 so later mentions never re-download."""
    db.table("images").create(
        {
            "id": int,
            "message_id": int,
            "position": int,
            "name": str,
            "media_type": str,
            "data": str,
        },
        pk="id",
        foreign_keys=[("message_id", "messages", "id")],
    )
    db.table("images").create_index(["message_id", "position"])


@step(
    postgres="""
    CREATE TABLE events (
        event_id TEXT PRIMARY KEY,
        received_at DOUBLE PRECISION
    );
    CREATE TABLE seen_messages (
        channel TEXT,
        ts TEXT COLLATE "C",
        received_at DOUBLE PRECISION,
        PRIMARY KEY (channel, ts)
    );
    """
)
def m004_create_dedup_tables(db: sqlite_utils.Database) -> None:
    """Processed events, by event id and by (channel, ts), so a redelivery or the same post
    arriving as both `app_mention` and `message` is answered once, across restarts too."""
    db.table("events").create({"event_id": str, "received_at": float}, pk="event_id")
    db.table("seen_messages").create(
        {"channel": str, "ts": str, "received_at": float}, pk=("channel", "ts")
    )


@step(
    postgres="""
    CREATE TABLE dm_sessions (
        team TEXT,
        channel TEXT,
        conversation_id BIGINT,
        last_ts TEXT COLLATE "C",
        PRIMARY KEY (team, channel)
    );
    """
)
def m005_create_dm_sessions(db: sqlite_utils.Database) -> None:
    """The running top-level conversation of each DM and when it was last active."""
    db.table("dm_sessions").create(
        {"team": str, "channel": str, "conversation_id": int, "last_ts": str},
        pk=("team", "channel"),
    )


@step(
    postgres="""
    ALTER TABLE messages ADD COLUMN tokens BIGINT;
    ALTER TABLE conversations
        ADD COLUMN kept_from_id BIGINT,
        ADD COLUMN images_from_id BIGINT,
        ADD COLUMN token_ratio DOUBLE PRECISION,
        ADD COLUMN trim_noticed_at DOUBLE PRECISION;
    """
)
def m006_add_context_budget(db: sqlite_utils.Database) -> None:
    """Long threads: each turn's estimated token count (`tokens`, filled in lazily, so a
    mention never re-estimates the whole thread), and per conversation where it was cut to fit
    the context window (kept_from_id, images_from_id: the cut stays put so the prompt prefix is
    stable), how the estimates compare with the API's count (`token_ratio`), and when the
    thread was told that its start is out of context."""
    db.table("messages").add_column("tokens", int)
    conversations = db.table("conversations")
    conversations.add_column("kept_from_id", int)
    conversations.add_column("images_from_id", int)
    conversations.add_column("token_ratio", float)
    conversations.add_column("trim_noticed_at", float)


@step(
    postgres="""
    CREATE TABLE usage (
        id BIGSERIAL PRIMARY KEY,
        message_id BIGINT,
        conversation_id BIGINT,
        team TEXT,
        channel TEXT,
        user_id TEXT,
        model TEXT,
        line TEXT,
        input_tokens BIGINT,
        output_tokens BIGINT,
        cache_creation_input_tokens BIGINT,
        cache_read_input_tokens BIGINT,
        stop_reason TEXT,
        error TEXT,
        seconds DOUBLE PRECISION,
        first_token_seconds DOUBLE PRECISION,
        created_at DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX idx_usage_created_at ON usage (created_at);
    """
)
def m007_create_usage(db: sqlite_utils.Database) -> None:
    """What each reply cost: the API's usage, the model, how it stopped, how long it took, and
    who asked where. `slackbot usage` sums it."""
    db.table("usage").create(
        {
            "id": int,
            "message_id": int,
            "conversation_id": int,
            "team": str,
            "channel": str,
            "user_id": str,
            "model": str,
            "line": str,
            "input_tokens": int,
            "output_tokens": int,
            "cache_creation_input_tokens": int,
            "cache_read_input_tokens": int,
            "stop_reason": str,
            "error": str,
            "seconds": float,
            "first_token_seconds": float,
            "created_at": float,
        },
        pk="id",
        not_null={"created_at"},
    )
    db.table("usage").create_index(["created_at"])


@step(
    postgres="""
    ALTER TABLE conversations ADD COLUMN synced_to TEXT COLLATE "C";
    """
)
def m008_add_conversation_sync_point(db: sqlite_utils.Database) -> None:
    """How far a thread has been synced from Slack, so the next sync asks only for what came
    after (`conversations.replies` with `oldest`) instead of paging through the whole thread."""
    db.table("conversations").add_column("synced_to", str)


@step(
    postgres="""
    CREATE TABLE pending (
        channel TEXT,
        ts TEXT COLLATE "C",
        conversation_id BIGINT,
        payload TEXT,
        received_at DOUBLE PRECISION,
        PRIMARY KEY (channel, ts)
    );
    """
)
def m009_create_pending(db: sqlite_utils.Database) -> None:
    """Messages acknowledged to Slack but not yet answered: a claimed event is recorded here
    before its delivery is acknowledged, and removed once its reply exists, so a crash in
    between leaves a message to answer at the next start instead of losing it."""
    db.table("pending").create(
        {
            "channel": str,
            "ts": str,
            "conversation_id": int,
            "payload": str,
            "received_at": float,
        },
        pk=("channel", "ts"),
    )


@step(
    postgres="""
    ALTER TABLE usage
        ADD COLUMN web_search_requests BIGINT NOT NULL DEFAULT 0,
        ADD COLUMN web_fetch_requests BIGINT NOT NULL DEFAULT 0;
    """
)
def m010_add_server_tool_use(db: sqlite_utils.Database) -> None:
    """Web searches and fetches per reply (the API's `usage.server_tool_use`): searches are
    billed per use, besides their result tokens, and `slackbot usage` shows and prices them."""
    usage = db.table("usage")
    usage.add_column("web_search_requests", int, not_null_default=0)
    usage.add_column("web_fetch_requests", int, not_null_default=0)


@step(
    postgres="""
    CREATE TABLE documents (
        id BIGSERIAL PRIMARY KEY,
        message_id BIGINT NOT NULL REFERENCES messages (id),
        position BIGINT NOT NULL,
        name TEXT,
        kind TEXT NOT NULL,
        media_type TEXT NOT NULL,
        data TEXT NOT NULL,
        size BIGINT,
        pages BIGINT,
        text_chars BIGINT
    );
    CREATE INDEX idx_documents_message_id_position ON documents (message_id, position);
    """
)
def m011_create_documents(db: sqlite_utils.Database) -> None:
    """Documents people shared (PDFs as base64, text files and Office documents as text),
    checked and converted once and kept so later mentions re-send them without downloading
    again; `pages`, `size` and `text_chars` feed the context window's estimates."""
    db.table("documents").create(
        {
            "id": int,
            "message_id": int,
            "position": int,
            "name": str,
            "kind": str,
            "media_type": str,
            "data": str,
            "size": int,
            "pages": int,
            "text_chars": int,
        },
        pk="id",
        foreign_keys=[("message_id", "messages", "id")],
        not_null={"message_id", "position", "kind", "media_type", "data"},
    )
    db.table("documents").create_index(["message_id", "position"])


@step(
    postgres="""
    CREATE TABLE feedback (
        team TEXT NOT NULL,
        channel TEXT NOT NULL,
        message_ts TEXT COLLATE "C" NOT NULL,
        user_id TEXT NOT NULL,
        reply_id BIGINT,
        model TEXT,
        vote TEXT NOT NULL,
        reason TEXT,
        created_at DOUBLE PRECISION,
        updated_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (team, channel, message_ts, user_id)
    );
    CREATE INDEX idx_feedback_updated_at ON feedback (updated_at);
    """
)
def m012_create_feedback(db: sqlite_utils.Database) -> None:
    """People's 👍/👎 on the bot's replies: one row per person and reply message (a second
    click, or a switch, updates it: Slack resends a click on an already-selected button), with
    the 👎 reason from the modal, and the reply's model, channel and workspace so `slackbot
    feedback` can group by them."""
    db.table("feedback").create(
        {
            "team": str,
            "channel": str,
            "message_ts": str,
            "user_id": str,
            "reply_id": int,
            "model": str,
            "vote": str,
            "reason": str,
            "created_at": float,
            "updated_at": float,
        },
        pk=("team", "channel", "message_ts", "user_id"),
        not_null={"team", "channel", "message_ts", "user_id", "vote", "updated_at"},
    )
    db.table("feedback").create_index(["updated_at"])


@step(
    postgres="""
    CREATE TABLE instances (
        id TEXT PRIMARY KEY,
        started_at DOUBLE PRECISION NOT NULL,
        heartbeat_at DOUBLE PRECISION NOT NULL
    );
    ALTER TABLE messages ADD COLUMN owner TEXT;
    ALTER TABLE pending ADD COLUMN owner TEXT;
    """
)
def m013_add_instances(db: sqlite_utils.Database) -> None:
    """Many instances on one database: each records a heartbeat, and each reply and claimed
    message records which instance owns it, so a live instance closes (or answers) what a
    silent one left, and never another live instance's work. One SQLite process owns
    everything it finds at start; the columns are there so both schemas stay one."""
    db.table("instances").create(
        {"id": str, "started_at": float, "heartbeat_at": float},
        pk="id",
        not_null={"started_at", "heartbeat_at"},
    )
    db.table("messages").add_column("owner", str)
    db.table("pending").add_column("owner", str)


@step(
    postgres="""
    CREATE TABLE channel_prompts (
        team TEXT,
        channel TEXT,
        text TEXT NOT NULL,
        updated_by TEXT,
        updated_at DOUBLE PRECISION,
        PRIMARY KEY (team, channel)
    );
    CREATE TABLE prompt_audit (
        id BIGSERIAL PRIMARY KEY,
        team TEXT NOT NULL,
        channel TEXT NOT NULL,
        user_id TEXT NOT NULL,
        at DOUBLE PRECISION NOT NULL,
        old_text TEXT,
        new_text TEXT
    );
    CREATE INDEX idx_prompt_audit_at ON prompt_audit (at);
    """
)
def m014_create_channel_prompts(db: sqlite_utils.Database) -> None:
    """Per-channel instructions (`/claude prompt set`), added to the system prompt of every
    reply in that channel, and the audit of every change to them: who, when, old and new
    (`slackbot audit`)."""
    db.table("channel_prompts").create(
        {"team": str, "channel": str, "text": str, "updated_by": str, "updated_at": float},
        pk=("team", "channel"),
        not_null={"text"},
    )
    db.table("prompt_audit").create(
        {
            "id": int,
            "team": str,
            "channel": str,
            "user_id": str,
            "at": float,
            "old_text": str,
            "new_text": str,
        },
        pk="id",
        not_null={"team", "channel", "user_id", "at"},
    )
    db.table("prompt_audit").create_index(["at"])


@step(
    postgres="""
    CREATE INDEX idx_usage_user_id_created_at ON usage (user_id, created_at);
    CREATE INDEX idx_usage_team_created_at ON usage (team, created_at);
    CREATE INDEX idx_messages_ts ON messages (ts);
    """
)
def m015_index_for_quotas_and_revisions(db: sqlite_utils.Database) -> None:
    """Spend limits sum today's usage per person and per workspace before every reply, and a
    deleted or edited Slack message is found by its ts: indexes for both."""
    db.table("usage").create_index(["user_id", "created_at"])
    db.table("usage").create_index(["team", "created_at"])
    db.table("messages").create_index(["ts"])


class Executes(Protocol):
    """What `merge_split_conversations` needs of a connection: `execute(sql, params)` with
    `?` placeholders, returning a cursor (a SQLite database, or PostgreSQL through
    `postgres_store`'s adapter)."""

    def execute(self, sql: str, params: Sequence[Any] = ..., /) -> Any: ...


def merge_split_conversations(db: Executes) -> int:
    """Make each (channel, kind, root) one conversation again, whatever team it was stored
    under; returns how many conversations were folded into another.

    An Enterprise Grid org-wide install sees one shared channel from several workspaces, and
    releases before m016 keyed conversations by the envelope's `team_id`, which changes from
    one event to the next: one thread could be stored as several conversations. Channel ids are
    unique within an installation, so these are the same thread: the oldest conversation keeps
    everything (a message stored twice keeps its oldest copy), and its context-window cut is
    forgotten so the next mention fits the merged thread afresh. Used by m016 and at every
    start (`SqliteStore.adopt_workspace`)."""
    folded = 0
    groups = db.execute(
        "SELECT channel, kind, root_ts, MIN(id) FROM conversations"
        " GROUP BY channel, kind, root_ts HAVING COUNT(*) > 1"
    ).fetchall()
    for channel, kind, root_ts, keep in groups:
        ids = db.execute(
            "SELECT id FROM conversations WHERE channel=? AND kind=? AND root_ts=? AND id<>?",
            [channel, kind, root_ts, keep],
        ).fetchall()
        for other in sorted(int(row[0]) for row in ids):
            twice = [
                row[0]
                for row in db.execute(
                    "SELECT id FROM messages WHERE conversation_id=? AND ts IN"
                    " (SELECT ts FROM messages WHERE conversation_id=?)",
                    [other, keep],
                )
            ]
            for message_id in twice:
                db.execute("DELETE FROM images WHERE message_id=?", [message_id])
                db.execute("DELETE FROM documents WHERE message_id=?", [message_id])
                db.execute("UPDATE usage SET message_id=NULL WHERE message_id=?", [message_id])
                db.execute("DELETE FROM messages WHERE id=?", [message_id])
            for table in ("messages", "dm_sessions", "pending", "usage"):
                db.execute(
                    f"UPDATE {table} SET conversation_id=? WHERE conversation_id=?", [keep, other]
                )
            db.execute("DELETE FROM conversations WHERE id=?", [other])
            folded += 1
        db.execute(
            "UPDATE conversations SET kept_from_id=NULL, images_from_id=NULL, synced_to=NULL"
            " WHERE id=?",
            [keep],
        )
    return folded


@step(
    # A PostgreSQL database only ever holds conversations keyed this way: it starts empty, or
    # from `slackbot copy-db`, which copies a SQLite database migrated through this step.
    postgres="SELECT 1;"
)
def m016_merge_threads_split_by_team(db: sqlite_utils.Database) -> None:
    """Conversations are keyed by the installation (the Grid enterprise, else the team),
    channel and thread: threads an org-wide install stored under several teams' ids become one
    conversation again (see `merge_split_conversations`). The rows take the installation's key
    at the next start, when `auth.test` has said what it is."""
    merge_split_conversations(db)
