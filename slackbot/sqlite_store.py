"""The `Store` on SQLite (the default): sqlite-utils, owned by one dedicated thread.

SQLite is the source of truth for every conversation (Slack's history API is rate-limited and
best-effort). sqlite-utils is synchronous and a connection belongs to the thread that made it, so
every call runs on one worker thread and is awaited from async code: the event loop never blocks
on disk, and writes are naturally serialised. WAL mode lets `slackbot usage` read while the bot
writes, and a committed row survives `kill -9`.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import sqlite3
import stat
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

import sqlite_utils

from slackbot.db_thread import DatabaseThread
from slackbot.errors import AlreadyRunning
from slackbot.migrations import merge_split_conversations, migrations
from slackbot.store import (
    PendingMessage,
    PurgedConversation,
    StoredDocument,
    StoredImage,
    Turn,
    UnfinishedReply,
    UsageRecord,
    UsageTotal,
    Vote,
    WindowState,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

#: `healthy()` reports a store that does not answer a trivial query within this many seconds.
HEALTH_TIMEOUT = 2.0

#: Processed-event records older than this are pruned at start-up (Slack retries for ~5 min).
EVENT_RETENTION_SECONDS = 7 * 24 * 3600


@dataclass
class SqliteStore:
    """The `Store` on one SQLite file; construct with `await SqliteStore.open(path)`."""

    path: str
    _thread: DatabaseThread = field(repr=False)
    #: One process per file (`AlreadyRunning`): at start it owns all it finds.
    shared = False
    _lock: int | None = field(default=None, repr=False)

    @classmethod
    async def open(cls, path: str, *, busy_timeout: float = 5.0) -> SqliteStore:
        """Open (creating and migrating) the database. A write waits up to `busy_timeout`
        seconds for another process's write lock before it fails.

        The store holds an OS lock on `<path>.lock` until `close()` (or the process's end, even
        by kill -9): a second one on the same file raises `AlreadyRunning`, since its start-up
        recovery would take the first one's live replies for a crash's leftovers."""
        lock = lock_out_others(path)
        thread = DatabaseThread(lambda: _connect(path, busy_timeout), "slackbot-store")
        store = cls(path=path, _thread=thread, _lock=lock)
        try:
            await store._run(store._migrate)
        except BaseException:
            await store.close()
            raise
        return store

    async def close(self) -> None:
        await self._thread.stop()
        if self._lock is not None:
            os.close(self._lock)  # and with it the lock
            self._lock = None

    async def healthy(self, timeout: float = HEALTH_TIMEOUT) -> bool:
        """True if the store thread answers a trivial read within `timeout` seconds. Another
        process holding the write lock does not make it unhealthy: reads go on in WAL mode."""
        try:
            await asyncio.wait_for(self._run(self._ping), timeout)
        except TimeoutError:
            log.warning("store: no answer to a trivial query within %.0f s", timeout)
            return False
        except Exception as exc:
            log.warning("store: unhealthy: %s", exc)
            return False
        return True

    def _ping(self) -> None:
        self._db.execute("SELECT count(*) FROM sqlite_master").fetchone()

    # -- plumbing ---------------------------------------------------------------------------

    @property
    def _db(self) -> sqlite_utils.Database:
        return self._thread.db

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """All-or-nothing writes. The connection is in autocommit mode (so reads never hold a
        transaction open against `slackbot usage`), so transactions are explicit; inside a
        batch (see `DatabaseThread`), or inside another call's transaction, each call's writes
        are a savepoint of the enclosing one."""
        db = self._db
        nested = self._thread.in_batch or db.conn.in_transaction
        begin, commit, rollback = (
            ("SAVEPOINT call", "RELEASE call", "ROLLBACK TO call")
            if nested
            else ("BEGIN IMMEDIATE", "COMMIT", "ROLLBACK")
        )
        db.execute(begin)
        try:
            yield
        except BaseException:
            db.execute(rollback)
            if nested:
                db.execute(commit)  # a savepoint rolled back to still has to be released
            raise
        db.execute(commit)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._thread.run(fn, *args)

    def _migrate(self) -> None:
        assert not self._thread.in_batch  # migrations manage their own transactions
        migrations.apply(self._db)
        cutoff = time.time() - EVENT_RETENTION_SECONDS
        with self._transaction():
            self._db.execute("DELETE FROM events WHERE received_at < ?", [cutoff])
            self._db.execute("DELETE FROM seen_messages WHERE received_at < ?", [cutoff])

    # -- events -----------------------------------------------------------------------------

    async def claim_event(self, event_id: str | None, channel: str, ts: str) -> bool:
        """Record an event as processed; False if it (or the same message) was seen before.

        Slack redelivers events (same `event_id`) and can deliver one post twice under different
        ids (`app_mention` and `message`), so both keys are checked in one transaction.
        """

        return await self._run(self._claim_sync, event_id, channel, ts)

    def _claim_sync(self, event_id: str | None, channel: str, ts: str) -> bool:
        db = self._db
        now = time.time()
        with self._transaction():
            if event_id:
                cur = db.execute(
                    "INSERT OR IGNORE INTO events (event_id, received_at) VALUES (?, ?)",
                    [event_id, now],
                )
                if cur.rowcount == 0:
                    return False
            cur = db.execute(
                "INSERT OR IGNORE INTO seen_messages (channel, ts, received_at) VALUES (?, ?, ?)",
                [channel, ts, now],
            )
            if cur.rowcount == 0:
                return False
        return True

    # -- conversations ----------------------------------------------------------------------

    async def claim_conversation(
        self,
        event_id: str | None,
        channel: str,
        ts: str,
        *,
        team: str,
        thread_root: str | None,
        idle_seconds: float,
        pending: str | None = None,
    ) -> int | None:
        """Claim a message (see `claim_event`) and find its conversation in one trip to the
        store thread; None if the message was seen before. Without `thread_root` it is the DM's
        running conversation (see `dm_conversation`).

        One trip instead of two matters in a burst: every call waits behind all the others
        queued on the one SQLite thread.
        """

        def _claim_and_find() -> int | None:
            with self._transaction():
                if not self._claim_sync(event_id, channel, ts):
                    return None
                if thread_root is None:
                    conversation_id = self._dm_sync(team, channel, ts, idle_seconds)
                else:
                    conversation_id = self._get_or_create(team, channel, "thread", thread_root)
                if pending is not None:
                    self._db.execute(
                        "INSERT OR REPLACE INTO pending (channel, ts, conversation_id, payload,"
                        " received_at) VALUES (?, ?, ?, ?, ?)",
                        [channel, ts, conversation_id, pending, time.time()],
                    )
            return conversation_id

        return await self._run(_claim_and_find)

    async def live_instances(self) -> int:
        return 1

    async def announce_stop(self, key: str) -> None:
        """One process: the stop was already seen where the reply streams."""

    async def stop_requests(self) -> AsyncIterator[str]:
        """One process: no stop comes from elsewhere."""
        return
        yield  # an async generator that yields nothing

    async def wait_for_earlier(self, conversation_id: int, ts: str) -> None:
        """One process per file: its `Sequencer` already orders a conversation's mentions."""

    async def thread_conversation(self, team: str, channel: str, root_ts: str) -> int:
        """The conversation of a Slack thread, created on first use."""
        return await self._run(self._get_or_create, team, channel, "thread", root_ts)

    def _get_or_create(self, team: str, channel: str, kind: str, root_ts: str) -> int:
        db = self._db
        with self._transaction():
            db.execute(
                "INSERT OR IGNORE INTO conversations (team, channel, kind, root_ts, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                [team, channel, kind, root_ts, time.time()],
            )
            row = db.execute(
                "SELECT id FROM conversations WHERE team=? AND channel=? AND kind=? AND root_ts=?",
                [team, channel, kind, root_ts],
            ).fetchone()
        return int(row[0])

    async def dm_conversation(self, team: str, channel: str, ts: str, idle_seconds: float) -> int:
        """The running top-level conversation of a DM; a new one after `idle_seconds` of quiet."""

        return await self._run(self._dm_sync, team, channel, ts, idle_seconds)

    def _dm_sync(self, team: str, channel: str, ts: str, idle_seconds: float) -> int:
        db = self._db
        row = db.execute(
            "SELECT conversation_id, last_ts FROM dm_sessions WHERE team=? AND channel=?",
            [team, channel],
        ).fetchone()
        if row is not None and float(ts) - float(row[1]) <= idle_seconds:
            conversation_id = int(row[0])
        else:
            conversation_id = self._get_or_create(team, channel, "dm", ts)
        with self._transaction():
            db.execute(
                "INSERT INTO dm_sessions (team, channel, conversation_id, last_ts)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (team, channel) DO UPDATE SET"
                " conversation_id=excluded.conversation_id, last_ts=excluded.last_ts",
                [team, channel, conversation_id, ts],
            )
        return conversation_id

    async def reset_dm(self, team: str, channel: str) -> None:
        """Forget the DM's running conversation: the next message starts a new one."""

        def _reset() -> None:
            with self._transaction():
                self._db.execute(
                    "DELETE FROM dm_sessions WHERE team=? AND channel=?", [team, channel]
                )

        await self._run(_reset)

    # -- turns ------------------------------------------------------------------------------

    async def add_user_turn(
        self,
        conversation_id: int,
        *,
        ts: str,
        user_id: str | None,
        user_name: str | None,
        text: str,
        images: Sequence[StoredImage] = (),
        notes: Sequence[str] = (),
        documents: Sequence[StoredDocument] = (),
    ) -> bool:
        """Store a person's message; False if that message is already stored."""

        return await self._run(
            self._add_user_turn_sync,
            conversation_id,
            ts,
            user_id,
            user_name,
            text,
            images,
            notes,
            documents,
        )

    def _add_user_turn_sync(
        self,
        conversation_id: int,
        ts: str,
        user_id: str | None,
        user_name: str | None,
        text: str,
        images: Sequence[StoredImage],
        notes: Sequence[str],
        documents: Sequence[StoredDocument] = (),
    ) -> bool:
        db = self._db
        with self._transaction():
            cur = db.execute(
                "INSERT OR IGNORE INTO messages (conversation_id, role, ts, sort_ts, user_id,"
                " user_name, text, notes, status, created_at)"
                " VALUES (?, 'user', ?, ?, ?, ?, ?, ?, 'done', ?)",
                [
                    conversation_id,
                    ts,
                    ts,
                    user_id,
                    user_name,
                    text,
                    json.dumps(list(notes)) if notes else None,
                    time.time(),
                ],
            )
            if cur.rowcount == 0:
                return False
            message_id = cur.lastrowid
            for position, image in enumerate(images):
                db.execute(
                    "INSERT INTO images (message_id, position, name, media_type, data)"
                    " VALUES (?, ?, ?, ?, ?)",
                    [message_id, position, image.name, image.media_type, image.data],
                )
            for position, document in enumerate(documents):
                db.execute(
                    "INSERT INTO documents (message_id, position, name, kind, media_type, data,"
                    " size, pages, text_chars) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        message_id,
                        position,
                        document.name,
                        document.kind,
                        document.media_type,
                        document.data,
                        document.size,
                        document.pages,
                        document.text_chars,
                    ],
                )
        return True

    async def add_turn_and_load(
        self,
        conversation_id: int,
        *,
        ts: str,
        user_id: str | None,
        user_name: str | None,
        text: str,
        images: Sequence[StoredImage] = (),
        notes: Sequence[str] = (),
        documents: Sequence[StoredDocument] = (),
    ) -> tuple[list[Turn], WindowState]:
        """Store the message being answered, then read the history up to it and the
        conversation's budget state, in one trip to the store thread."""

        def _add_and_load() -> tuple[list[Turn], WindowState]:
            self._add_user_turn_sync(
                conversation_id, ts, user_id, user_name, text, images, notes, documents
            )
            return self._history(conversation_id, ts), self._window_state_sync(conversation_id)

        return await self._run(_add_and_load)

    async def sync_point(self, conversation_id: int) -> str | None:
        """The Slack ts up to which this thread was last synced (None: never)."""

        def _point() -> str | None:
            row = self._db.execute(
                "SELECT synced_to FROM conversations WHERE id=?", [conversation_id]
            ).fetchone()
            return row[0] if row else None

        return await self._run(_point)

    async def mark_synced(self, conversation_id: int, up_to_ts: str) -> None:
        def _mark() -> None:
            with self._transaction():
                self._db.execute(
                    "UPDATE conversations SET synced_to=? WHERE id=?"
                    " AND (synced_to IS NULL OR synced_to < ?)",
                    [up_to_ts, conversation_id, up_to_ts],
                )

        await self._run(_mark)

    async def known_ts(self, conversation_id: int) -> set[str]:
        """Slack timestamps of every message stored for a conversation (people's and the bot's)."""

        def _known() -> set[str]:
            known: set[str] = set()
            for ts, reply_ts in self._db.execute(
                "SELECT ts, reply_ts FROM messages WHERE conversation_id=?", [conversation_id]
            ).fetchall():
                known.add(ts)
                if reply_ts:
                    known.update(json.loads(reply_ts))
            return known

        return await self._run(_known)

    async def begin_reply(
        self, conversation_id: int, *, answers_ts: str, channel: str, first_ts: str
    ) -> int:
        """Store a reply the moment its placeholder exists, so a crash leaves a trace to close.

        A native stream has no message before its first content (`first_ts` is ""): the row
        is then keyed by the answered message (`<answers_ts>/reply`) and lists no message yet.
        """
        key = first_ts or f"{answers_ts}/reply"
        shown = [first_ts] if first_ts else []

        def _begin() -> int:
            db = self._db
            with self._transaction():
                db.execute("DELETE FROM pending WHERE channel=? AND ts=?", [channel, answers_ts])
                cur = db.execute(
                    "INSERT INTO messages (conversation_id, role, ts, sort_ts, text, status,"
                    " channel, reply_ts, created_at) VALUES (?, 'assistant', ?, ?, '',"
                    " 'streaming', ?, ?, ?)",
                    [
                        conversation_id,
                        key,
                        answers_ts,
                        channel,
                        json.dumps(shown),
                        time.time(),
                    ],
                )
            return int(cur.lastrowid or 0)

        return await self._run(_begin)

    async def update_reply(
        self,
        reply_id: int,
        *,
        text: str,
        message_ts: Iterable[str],
        status: str,
        stop_reason: str | None = None,
    ) -> None:
        def _update() -> None:
            with self._transaction():
                self._db.execute(
                    "UPDATE messages SET text=?, reply_ts=?, status=?, tokens=NULL,"
                    " stop_reason=COALESCE(?, stop_reason) WHERE id=?",
                    [text, json.dumps(list(message_ts)), status, stop_reason, reply_id],
                )

        await self._run(_update)

    async def history(self, conversation_id: int, up_to_ts: str) -> list[Turn]:
        """The conversation as it stood at `up_to_ts`: people's messages up to and including it,
        and the bot's replies to the messages before it."""
        return await self._run(self._history, conversation_id, up_to_ts)

    def _history(self, conversation_id: int, up_to_ts: str) -> list[Turn]:
        db = self._db
        rows = db.execute(
            "SELECT id, role, ts, text, user_id, user_name, notes, status, tokens, sort_ts"
            " FROM messages WHERE conversation_id=? AND ("
            " (role='user' AND sort_ts<=?) OR (role='assistant' AND sort_ts<?))"
            " ORDER BY sort_ts, role='assistant', id",
            [conversation_id, up_to_ts, up_to_ts],
        ).fetchall()
        images: dict[int, list[StoredImage]] = {}
        for message_id, media_type, data, name in db.execute(
            "SELECT i.message_id, i.media_type, i.data, i.name FROM images i"
            " JOIN messages m ON m.id = i.message_id WHERE m.conversation_id=? AND m.sort_ts<=?"
            " ORDER BY i.message_id, i.position",
            [conversation_id, up_to_ts],
        ):
            images.setdefault(message_id, []).append(StoredImage(media_type, data, name))
        documents: dict[int, list[StoredDocument]] = {}
        for message_id, *fields in db.execute(
            "SELECT d.message_id, d.kind, d.media_type, d.data, d.name, d.size, d.pages,"
            " d.text_chars FROM documents d JOIN messages m ON m.id = d.message_id"
            " WHERE m.conversation_id=? AND m.sort_ts<=? ORDER BY d.message_id, d.position",
            [conversation_id, up_to_ts],
        ):
            kind, media_type, data, name, size, pages, text_chars = fields
            documents.setdefault(message_id, []).append(
                StoredDocument(
                    kind, media_type, data, name or "", size or 0, pages, text_chars or 0
                )
            )
        return [
            Turn(
                id=row[0],
                role=row[1],
                ts=row[2],
                text=row[3] or "",
                user_id=row[4],
                user_name=row[5],
                notes=tuple(json.loads(row[6])) if row[6] else (),
                status=row[7],
                answers_ts=row[9] if row[1] == "assistant" else None,
                tokens=row[8],
                images=tuple(images.get(row[0], ())),
                documents=tuple(documents.get(row[0], ())),
            )
            for row in rows
        ]

    async def save_token_estimates(self, estimates: dict[int, int]) -> None:
        """Remember turns' estimated token counts, so each turn is estimated once."""
        if not estimates:
            return

        def _save() -> None:
            with self._transaction():
                self._db.conn.executemany(
                    "UPDATE messages SET tokens=? WHERE id=?",
                    [(tokens, message_id) for message_id, tokens in estimates.items()],
                )

        await self._run(_save)

    # -- context budget and usage -----------------------------------------------------------

    async def window_state(self, conversation_id: int) -> WindowState:
        return await self._run(self._window_state_sync, conversation_id)

    def _window_state_sync(self, conversation_id: int) -> WindowState:
        row = self._db.execute(
            "SELECT kept_from_id, images_from_id, token_ratio, trim_noticed_at"
            " FROM conversations WHERE id=?",
            [conversation_id],
        ).fetchone()
        if row is None:
            return WindowState()
        return WindowState(row[0], row[1], row[2], row[3] is not None)

    async def save_window_state(
        self,
        conversation_id: int,
        *,
        kept_from_id: int | None,
        images_from_id: int | None,
        token_ratio: float | None = None,
        trim_noticed: bool = False,
    ) -> None:
        """Store where the conversation is cut; `token_ratio` and the notice only ever get set."""

        def _save() -> None:
            with self._transaction():
                self._db.execute(
                    "UPDATE conversations SET kept_from_id=?, images_from_id=?,"
                    " token_ratio=COALESCE(?, token_ratio),"
                    " trim_noticed_at=COALESCE(trim_noticed_at, ?) WHERE id=?",
                    [
                        kept_from_id,
                        images_from_id,
                        token_ratio,
                        time.time() if trim_noticed else None,
                        conversation_id,
                    ],
                )

        await self._run(_save)

    async def record_usage(self, record: UsageRecord) -> None:
        def _record() -> None:
            # Plain SQL: sqlite-utils' insert() commits on its own, which would end a batch.
            row = {**asdict(record), "created_at": time.time()}
            with self._transaction():
                self._db.execute(
                    f"INSERT INTO usage ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                    list(row.values()),
                )

        await self._run(_record)

    # -- feedback ---------------------------------------------------------------------------

    async def record_vote(self, vote: Vote) -> None:
        await self._run(self._upsert_vote, vote, None)

    async def record_vote_reason(self, vote: Vote, reason: str) -> None:
        await self._run(self._upsert_vote, vote, reason)

    def _upsert_vote(self, vote: Vote, reason: str | None) -> None:
        now = time.time()
        with self._transaction():
            self._db.execute(
                "INSERT INTO feedback (team, channel, message_ts, user_id, reply_id, model, vote,"
                " reason, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (team, channel, message_ts, user_id) DO UPDATE SET"
                " vote=excluded.vote, updated_at=excluded.updated_at,"
                " reply_id=COALESCE(excluded.reply_id, feedback.reply_id),"
                " model=COALESCE(excluded.model, feedback.model),"
                # A reason given is kept; a switch to 👍 drops the old 👎's reason.
                " reason=CASE WHEN excluded.reason IS NOT NULL THEN excluded.reason"
                " WHEN excluded.vote='bad' THEN feedback.reason ELSE NULL END",
                [
                    vote.team,
                    vote.channel,
                    vote.message_ts,
                    vote.user_id,
                    vote.reply_id,
                    vote.model,
                    vote.vote,
                    reason,
                    now,
                    now,
                ],
            )

    # -- recovery ---------------------------------------------------------------------------

    async def pending_messages(self, max_age: float) -> list[PendingMessage]:
        def _pending() -> list[PendingMessage]:
            with self._transaction():
                self._db.execute(
                    "DELETE FROM pending WHERE received_at < ?", [time.time() - max_age]
                )
            return [
                PendingMessage(conversation_id=row[0], payload=row[1], received_at=row[2])
                for row in self._db.execute(
                    "SELECT conversation_id, payload, received_at FROM pending"
                    " ORDER BY received_at, ts"
                ).fetchall()
            ]

        return await self._run(_pending)

    async def forget_pending(self, channel: str, ts: str) -> None:
        def _forget() -> None:
            with self._transaction():
                self._db.execute("DELETE FROM pending WHERE channel=? AND ts=?", [channel, ts])

        await self._run(_forget)

    async def unfinished_replies(self) -> list[UnfinishedReply]:
        """Replies a crash left mid-stream; they are closed with a note at start-up."""

        def _unfinished() -> list[UnfinishedReply]:
            return [
                UnfinishedReply(
                    id=row[0],
                    conversation_id=row[1],
                    team=row[2],
                    channel=row[3],
                    thread_ts=row[4] if row[5] == "thread" else None,
                    text=row[6] or "",
                    message_ts=tuple(json.loads(row[7] or "[]")),
                )
                for row in self._db.execute(
                    "SELECT m.id, m.conversation_id, c.team, m.channel, c.root_ts, c.kind,"
                    " m.text, m.reply_ts FROM messages m"
                    " JOIN conversations c ON c.id = m.conversation_id"
                    " WHERE m.role='assistant' AND m.status='streaming' ORDER BY m.id"
                ).fetchall()
            ]

        return await self._run(_unfinished)

    # -- the installation -------------------------------------------------------------------

    async def adopt_workspace(self, workspace: str) -> int:
        """Key every conversation, DM session and channel prompt by `workspace` (the
        installation's Grid enterprise, or its team), as events are keyed since m016; returns
        how many rows changed. One database serves one installation (one bot token), so rows
        kept under an envelope's team id are this installation's."""

        def _adopt() -> int:
            db = self._db
            stray = db.execute(
                "SELECT EXISTS (SELECT 1 FROM conversations WHERE team<>?)"
                " OR EXISTS (SELECT 1 FROM dm_sessions WHERE team<>?)"
                " OR EXISTS (SELECT 1 FROM channel_prompts WHERE team<>?)",
                [workspace] * 3,
            ).fetchone()
            if not stray or not stray[0]:  # the usual start: nothing to re-key, no write lock
                return 0
            with self._transaction():
                merge_split_conversations(db)
                changed = db.execute(
                    "UPDATE conversations SET team=? WHERE team<>?", [workspace, workspace]
                ).rowcount
                for table in ("dm_sessions", "channel_prompts"):
                    # One row per channel: the installation's own, else the latest stored.
                    db.execute(
                        f"DELETE FROM {table} WHERE team<>? AND channel IN"
                        f" (SELECT channel FROM {table} WHERE team=?)",
                        [workspace, workspace],
                    )
                    db.execute(
                        f"DELETE FROM {table} WHERE team<>? AND rowid NOT IN"
                        f" (SELECT MAX(rowid) FROM {table} WHERE team<>? GROUP BY channel)",
                        [workspace, workspace],
                    )
                    changed += db.execute(
                        f"UPDATE {table} SET team=? WHERE team<>?", [workspace, workspace]
                    ).rowcount
            return changed

        return await self._run(_adopt)

    # -- spend limits -----------------------------------------------------------------------

    async def usage_totals(
        self, since: float, *, team: str | None = None, user_id: str | None = None
    ) -> list[UsageTotal]:
        def _totals() -> list[UsageTotal]:
            where: list[str] = ["created_at >= ?"]
            args: list[object] = [since]
            if team is not None:
                where.append("team = ?")
                args.append(team)
            if user_id is not None:
                where.append("user_id = ?")
                args.append(user_id)
            rows = self._db.execute(
                "SELECT model, line, COUNT(*), SUM(input_tokens), SUM(cache_creation_input_tokens),"
                " SUM(cache_read_input_tokens), SUM(output_tokens), SUM(web_search_requests)"
                f" FROM usage WHERE {' AND '.join(where)} GROUP BY model, line",
                args,
            ).fetchall()
            return [
                UsageTotal(model, line, *(int(n or 0) for n in counts))
                for model, line, *counts in rows
            ]

        return await self._run(_totals)

    # -- channel prompts --------------------------------------------------------------------

    async def channel_prompt(self, team: str, channel: str) -> str | None:
        def _prompt() -> str | None:
            row = self._db.execute(
                "SELECT text FROM channel_prompts WHERE team=? AND channel=?", [team, channel]
            ).fetchone()
            return str(row[0]) if row else None

        return await self._run(_prompt)

    async def set_channel_prompt(
        self, team: str, channel: str, text: str | None, *, user_id: str
    ) -> str | None:
        def _set() -> str | None:
            db = self._db
            now = time.time()
            with self._transaction():
                row = db.execute(
                    "SELECT text FROM channel_prompts WHERE team=? AND channel=?", [team, channel]
                ).fetchone()
                old = str(row[0]) if row else None
                if text is None:
                    db.execute(
                        "DELETE FROM channel_prompts WHERE team=? AND channel=?", [team, channel]
                    )
                else:
                    db.execute(
                        "INSERT INTO channel_prompts (team, channel, text, updated_by, updated_at)"
                        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (team, channel) DO UPDATE SET"
                        " text=excluded.text, updated_by=excluded.updated_by,"
                        " updated_at=excluded.updated_at",
                        [team, channel, text, user_id, now],
                    )
                db.execute(
                    "INSERT INTO prompt_audit (team, channel, user_id, at, old_text, new_text)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    [team, channel, user_id, now, old, text],
                )
            return old

        return await self._run(_set)

    # -- deletions, edits, retention --------------------------------------------------------

    async def erase_user_turn(self, channel: str, ts: str) -> int:
        def _erase() -> int:
            db = self._db
            with self._transaction():
                turns = db.execute(
                    "SELECT m.id, m.conversation_id FROM messages m"
                    " JOIN conversations c ON c.id = m.conversation_id"
                    " WHERE m.ts=? AND m.role='user' AND c.channel=?",
                    [ts, channel],
                ).fetchall()
                ids = [row[0] for row in turns]
                for conversation_id in {row[1] for row in turns}:
                    ids += [
                        row[0]
                        for row in db.execute(
                            "SELECT id FROM messages WHERE conversation_id=? AND role='assistant'"
                            " AND sort_ts=?",
                            [conversation_id, ts],
                        )
                    ]
                self._delete_messages(ids)
                db.execute("DELETE FROM pending WHERE channel=? AND ts=?", [channel, ts])
            return len(turns)

        return await self._run(_erase)

    def _delete_messages(self, ids: Sequence[int]) -> None:
        """Messages and their files; usage rows keep their figures, not the link."""
        db = self._db
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            marks = ", ".join("?" * len(chunk))
            db.execute(f"DELETE FROM images WHERE message_id IN ({marks})", chunk)
            db.execute(f"DELETE FROM documents WHERE message_id IN ({marks})", chunk)
            db.execute(f"UPDATE usage SET message_id=NULL WHERE message_id IN ({marks})", chunk)
            db.execute(f"DELETE FROM messages WHERE id IN ({marks})", chunk)

    async def edit_user_turn(self, channel: str, ts: str, text: str) -> bool:
        def _edit() -> bool:
            with self._transaction():
                cur = self._db.execute(
                    "UPDATE messages SET text=?, tokens=NULL WHERE role='user' AND ts=?"
                    " AND conversation_id IN (SELECT id FROM conversations WHERE channel=?)",
                    [text, ts, channel],
                )
            return cur.rowcount > 0

        return await self._run(_edit)

    async def purge_idle(
        self, idle_seconds: float, *, dry_run: bool = False
    ) -> list[PurgedConversation]:
        def _purge() -> list[PurgedConversation]:
            db = self._db
            cutoff = time.time() - idle_seconds
            with self._transaction():
                found = [
                    PurgedConversation(*row)
                    for row in db.execute(
                        "SELECT c.id, c.team, c.channel, c.kind, c.root_ts,"
                        " MAX(COALESCE(c.created_at, 0), COALESCE(MAX(m.created_at), 0)),"
                        " COUNT(m.id),"
                        " (SELECT COUNT(*) FROM images i JOIN messages im ON im.id = i.message_id"
                        "   WHERE im.conversation_id = c.id)"
                        " + (SELECT COUNT(*) FROM documents d JOIN messages dm"
                        "   ON dm.id = d.message_id WHERE dm.conversation_id = c.id)"
                        " FROM conversations c LEFT JOIN messages m ON m.conversation_id = c.id"
                        " GROUP BY c.id HAVING MAX(COALESCE(c.created_at, 0),"
                        " COALESCE(MAX(m.created_at), 0)) <= ? ORDER BY c.id",
                        [cutoff],
                    ).fetchall()
                ]
                if dry_run:
                    return found
                for conversation in found:
                    ids = [
                        row[0]
                        for row in db.execute(
                            "SELECT id FROM messages WHERE conversation_id=?", [conversation.id]
                        )
                    ]
                    self._delete_messages(ids)
                    for table in ("pending", "dm_sessions"):
                        db.execute(
                            f"DELETE FROM {table} WHERE conversation_id=?", [conversation.id]
                        )
                    db.execute(
                        "UPDATE usage SET conversation_id=NULL WHERE conversation_id=?",
                        [conversation.id],
                    )
                    db.execute("DELETE FROM conversations WHERE id=?", [conversation.id])
            return found

        return await self._run(_purge)


def _connect(path: str, busy_timeout: float) -> sqlite_utils.Database:
    _owner_only(path)
    # The busy timeout is set first: switching a new file to WAL can wait for a lock too.
    conn = sqlite3.connect(path, isolation_level=None, timeout=busy_timeout)
    try:
        db = sqlite_utils.Database(conn)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # in WAL mode: durable across a process crash
        db.execute("PRAGMA foreign_keys=ON")
    except BaseException:
        conn.close()
        raise
    return db


def lock_out_others(path: str) -> int | None:
    """Take `<path>.lock` (flock, not waiting); the descriptor holds it until closed."""
    if path == ":memory:":
        return None
    fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise AlreadyRunning(
            f"another slackbot is already running on {path}"
            " (several instances need PostgreSQL: DATABASE_URL)"
        ) from None
    except BaseException:
        os.close(fd)
        raise
    return fd


def _owner_only(path: str) -> None:
    """Conversations are private: create the database file readable by its owner alone before
    SQLite does (SQLite gives its -wal and -shm files the database file's mode), and take group
    and other access away from those files where they exist and are ours."""
    if path == ":memory:":
        return
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    for name in (path, f"{path}-wal", f"{path}-shm"):
        with contextlib.suppress(FileNotFoundError):
            info = os.stat(name)
            if info.st_uid == os.getuid() and info.st_mode & 0o077:
                os.chmod(name, stat.S_IMODE(info.st_mode) & 0o700)
