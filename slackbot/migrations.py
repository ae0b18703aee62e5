"""Schema migrations, applied in order at every start.

Append new ones; never edit a released one.
"""

from __future__ import annotations

import sqlite_utils
from sqlite_utils.migrations import Migrations

migrations = Migrations("slackbot")


@migrations()
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


@migrations()
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


@migrations()
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


@migrations()
def m004_create_dedup_tables(db: sqlite_utils.Database) -> None:
    """Processed events, by event id and by (channel, ts), so a redelivery or the same post
    arriving as both `app_mention` and `message` is answered once, across restarts too."""
    db.table("events").create({"event_id": str, "received_at": float}, pk="event_id")
    db.table("seen_messages").create(
        {"channel": str, "ts": str, "received_at": float}, pk=("channel", "ts")
    )


@migrations()
def m005_create_dm_sessions(db: sqlite_utils.Database) -> None:
    """The running top-level conversation of each DM and when it was last active."""
    db.table("dm_sessions").create(
        {"team": str, "channel": str, "conversation_id": int, "last_ts": str},
        pk=("team", "channel"),
    )


@migrations()
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


@migrations()
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


@migrations()
def m008_add_conversation_sync_point(db: sqlite_utils.Database) -> None:
    """How far a thread has been synced from Slack, so the next sync asks only for what came
    after (`conversations.replies` with `oldest`) instead of paging through the whole thread."""
    db.table("conversations").add_column("synced_to", str)


@migrations()
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


@migrations()
def m010_add_server_tool_use(db: sqlite_utils.Database) -> None:
    """Web searches and fetches per reply (the API's `usage.server_tool_use`): searches are
    billed per use, besides their result tokens, and `slackbot usage` shows and prices them."""
    usage = db.table("usage")
    usage.add_column("web_search_requests", int, not_null_default=0)
    usage.add_column("web_fetch_requests", int, not_null_default=0)


@migrations()
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


@migrations()
def m012_create_channel_prompts(db: sqlite_utils.Database) -> None:
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


@migrations()
def m013_index_for_quotas_and_revisions(db: sqlite_utils.Database) -> None:
    """Spend limits sum today's usage per person and per workspace before every reply, and a
    deleted or edited Slack message is found by its ts: indexes for both."""
    db.table("usage").create_index(["user_id", "created_at"])
    db.table("usage").create_index(["team", "created_at"])
    db.table("messages").create_index(["ts"])


def merge_split_conversations(db: sqlite_utils.Database) -> int:
    """Make each (channel, kind, root) one conversation again, whatever team it was stored
    under; returns how many conversations were folded into another.

    An Enterprise Grid org-wide install sees one shared channel from several workspaces, and
    releases before m014 keyed conversations by the envelope's `team_id`, which changes from
    one event to the next: one thread could be stored as several conversations. Channel ids are
    unique within an installation, so these are the same thread: the oldest conversation keeps
    everything (a message stored twice keeps its oldest copy), and its context-window cut is
    forgotten so the next mention fits the merged thread afresh. Used by m014 and at every
    start (`SqliteStore.adopt_workspace`)."""
    folded = 0
    groups = db.execute(
        "SELECT MIN(id), GROUP_CONCAT(id) FROM conversations"
        " GROUP BY channel, kind, root_ts HAVING COUNT(*) > 1"
    ).fetchall()
    for keep, ids in groups:
        for other in sorted({int(i) for i in str(ids).split(",")} - {int(keep)}):
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


@migrations()
def m014_merge_threads_split_by_team(db: sqlite_utils.Database) -> None:
    """Conversations are keyed by the installation (the Grid enterprise, else the team),
    channel and thread: threads an org-wide install stored under several teams' ids become one
    conversation again (see `merge_split_conversations`). The rows take the installation's key
    at the next start, when `auth.test` has said what it is."""
    merge_split_conversations(db)
