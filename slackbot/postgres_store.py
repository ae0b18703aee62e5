"""The `Store` on PostgreSQL (`DATABASE_URL`), for many instances on one database.

psycopg 3 with a connection pool: each method is one transaction on a pooled connection, so
calls from one process run side by side (SQLite's single writer thread has no equivalent to
keep here), and what must be atomic across instances is one statement or one transaction
under an advisory lock, never read-then-write. A database that is down at start stops the bot
within `CONNECT_SECONDS`; one that drops while running fails the calls made meanwhile (the turn
then ends with its note, as on SQLite) and the pool reconnects by itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from slackbot.db_read import to_pyformat
from slackbot.errors import ConfigError
from slackbot.migrations import POSTGRES, merge_split_conversations
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

#: A database that cannot be reached at start stops the bot within this many seconds.
CONNECT_SECONDS = 15.0
#: One connection attempt gives up after this many seconds (then the pool tries again).
ATTEMPT_SECONDS = 5
#: A call waits at most this long for a free (or re-made) connection.
CALL_WAIT_SECONDS = 5.0
#: Connections per instance.
POOL_SIZE = 20
HEALTH_TIMEOUT = 2.0
#: Processed-event records older than this are pruned at start-up (Slack retries for ~5 min).
EVENT_RETENTION_SECONDS = 7 * 24 * 3600
#: An instance silent this long is taken for dead (`SLACKBOT_INSTANCE_TIMEOUT`).
INSTANCE_TIMEOUT = 30.0
#: Heartbeats per timeout: a few may fail (a slow database) before a live one looks dead.
HEARTBEATS_PER_TIMEOUT = 6
#: The NOTIFY channel stops travel on between instances.
STOP_CHANNEL = "slackbot_stop"
#: How often, and how long at most, a mention waits for an earlier one another instance answers.
ORDER_POLL_SECONDS = 0.1
ORDER_WAIT_SECONDS = 900.0
#: The advisory lock that serialises migrations when several instances start at once.
MIGRATION_LOCK = 0x51AC_B07


def masked(url: str) -> str:
    """`url` with its password replaced by `***` (for every message an operator sees)."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def normalised(url: str) -> str:
    """Heroku's `postgres://` is the same thing as `postgresql://`."""
    return (
        "postgresql://" + url.removeprefix("postgres://") if url.startswith("postgres://") else url
    )


def apply_migrations(conn: psycopg.Connection[Any]) -> list[str]:
    """Apply the steps not yet applied, in one transaction under an advisory lock (instances
    starting together wait for each other); the names applied."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [MIGRATION_LOCK])
        conn.execute(
            "CREATE TABLE IF NOT EXISTS slackbot_migrations"
            " (name TEXT PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
        )
        done = {row[0] for row in conn.execute("SELECT name FROM slackbot_migrations")}
        applied = []
        for name, sql in POSTGRES.items():
            if name in done:
                continue
            conn.execute(sql)  # several statements: allowed without parameters
            conn.execute(
                "INSERT INTO slackbot_migrations (name, applied_at) VALUES (%s, %s)",
                [name, time.time()],
            )
            applied.append(name)
    return applied


@dataclass
class PostgresStore:
    """The `Store` on PostgreSQL; construct with `await PostgresStore.open(url)`."""

    url: str
    _pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = field(repr=False)
    #: This instance's id: stamped on the replies and claims it owns, and on its heartbeat.
    instance: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    #: An instance whose heartbeat is older than this is taken for dead (its work is taken over).
    instance_timeout: float = INSTANCE_TIMEOUT
    _beating: asyncio.Task[None] | None = field(default=None, repr=False)
    #: The migration steps this open applied (empty: the schema was up to date).
    _migrated: list[str] = field(default_factory=list, repr=False)

    #: Many instances may share this store (see `recovery`: closing what a dead one left is a
    #: job for every live one, all the time, not only at start).
    shared = True

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        connect_seconds: float = CONNECT_SECONDS,
        size: int = POOL_SIZE,
        instance_timeout: float = INSTANCE_TIMEOUT,
        register: bool = True,
    ) -> PostgresStore:
        """Connect (within `connect_seconds`, else `ConfigError` naming `DATABASE_URL`) and
        migrate. `register=False` (the CLI's tools): no heartbeat, so running instances do not
        count the tool as one of them (they split Slack's budgets by that count)."""
        url = normalised(url)
        pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = AsyncConnectionPool(
            url,
            min_size=1,
            max_size=size,
            open=False,
            timeout=CALL_WAIT_SECONDS,
            kwargs={"connect_timeout": ATTEMPT_SECONDS, "application_name": "slackbot"},
            check=AsyncConnectionPool.check_connection,
        )
        try:
            await pool.open(wait=True, timeout=connect_seconds)
        except Exception as exc:
            await pool.close()
            raise ConfigError(
                f"DATABASE_URL: cannot reach {masked(url)} within {connect_seconds:.0f} s"
                f" ({_reason(exc)})"
            ) from None
        store = cls(url=url, _pool=pool, instance_timeout=instance_timeout)
        try:
            await asyncio.to_thread(store._migrate_sync)
            if register:
                await store._beat()
        except BaseException:
            await pool.close()
            raise
        if register:
            store._beating = asyncio.create_task(store._keep_beating(), name="heartbeat")
        return store

    async def _beat(self) -> None:
        """Say this instance is alive (re-registering if another took it for dead)."""
        now = time.time()
        await self._execute(
            "INSERT INTO instances (id, started_at, heartbeat_at) VALUES (%s, %s, %s)"
            " ON CONFLICT (id) DO UPDATE SET heartbeat_at=excluded.heartbeat_at",
            [self.instance, now, now],
        )

    async def _keep_beating(self) -> None:
        while True:
            await asyncio.sleep(self.instance_timeout / HEARTBEATS_PER_TIMEOUT)
            try:
                await self._beat()
            except Exception as exc:  # the database is away: the next beat tries again
                log.warning("heartbeat failed: %s", _reason(exc))

    def _migrate_sync(self) -> None:
        with psycopg.connect(self.url, connect_timeout=ATTEMPT_SECONDS) as conn:
            applied = self._migrated = apply_migrations(conn)
            if applied:
                log.info("database migrated: %s", ", ".join(applied))
            cutoff = time.time() - EVENT_RETENTION_SECONDS
            with conn.transaction():
                conn.execute("DELETE FROM events WHERE received_at < %s", [cutoff])
                conn.execute("DELETE FROM seen_messages WHERE received_at < %s", [cutoff])

    async def close(self) -> None:
        """Stop beating and sign off: what this instance still owns is now another's to close."""
        if self._beating is not None:
            self._beating.cancel()
            await asyncio.gather(self._beating, return_exceptions=True)
            self._beating = None
            try:
                await self._execute("DELETE FROM instances WHERE id=%s", [self.instance])
            except Exception as exc:
                log.warning("could not sign off instance %s: %s", self.instance, _reason(exc))
        await self._pool.close()

    async def announce_stop(self, key: str) -> None:
        """Tell every instance (this one too) to stop the reply `key` names: a Stop that
        reached an instance not streaming that reply still stops it, at once (NOTIFY)."""
        await self._execute("SELECT pg_notify(%s, %s)", [STOP_CHANNEL, key])

    async def stop_requests(self) -> AsyncIterator[str]:
        """The stops announced by any instance, as they come (LISTEN on a connection of its
        own, re-made if the database drops)."""
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self.url, autocommit=True, connect_timeout=ATTEMPT_SECONDS
                )
                async with conn:
                    await conn.execute(f"LISTEN {STOP_CHANNEL}")
                    async for notice in conn.notifies():
                        yield notice.payload
            except psycopg.Error as exc:
                log.warning("listening for stops: %s; again in a second", _reason(exc))
                await asyncio.sleep(1.0)

    async def live_instances(self) -> int:
        """Instances heard from within the timeout (this one included)."""
        row = await self._fetch_one(
            "SELECT count(*) FROM instances WHERE heartbeat_at >= %s",
            [time.time() - self.instance_timeout],
        )
        return max(1, int(row[0])) if row else 1

    async def migrated_now(self) -> list[str]:
        """The steps this start applied (for `slackbot check`)."""
        return list(self._migrated)

    async def can_write(self) -> bool:
        """Whether this user may write the bot's tables: a write, rolled back."""
        try:
            async with self._pool.connection() as conn, conn.transaction(force_rollback=True):
                await conn.execute(
                    "INSERT INTO events (event_id, received_at) VALUES ('slackbot-check', 0)"
                    " ON CONFLICT DO NOTHING"
                )
        except psycopg.Error as exc:
            log.warning("database: a test write failed: %s", _reason(exc))
            return False
        return True

    async def healthy(self, timeout: float = HEALTH_TIMEOUT) -> bool:
        try:
            async with asyncio.timeout(timeout):
                await self._fetch_one("SELECT 1")
        except TimeoutError:
            log.warning("store: no answer to a trivial query within %.0f s", timeout)
            return False
        except Exception as exc:
            log.warning("store: unhealthy: %s", _reason(exc))
            return False
        return True

    # -- plumbing ---------------------------------------------------------------------------

    async def _fetch_one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        async with self._pool.connection() as conn:
            cur = await conn.execute(sql, params)
            return await cur.fetchone()

    async def _fetch_all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(sql, params)
            return await cur.fetchall()

    async def _execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(sql, params)

    # -- events -----------------------------------------------------------------------------

    async def claim_event(self, event_id: str | None, channel: str, ts: str) -> bool:
        async with self._pool.connection() as conn:
            return await _claim(conn, event_id, channel, ts)

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
        async with self._pool.connection() as conn:
            if not await _claim(conn, event_id, channel, ts):
                return None
            if thread_root is None:
                conversation_id = await _dm(conn, team, channel, ts, idle_seconds)
            else:
                conversation_id = await _get_or_create(conn, team, channel, "thread", thread_root)
            if pending is not None:
                await conn.execute(
                    "INSERT INTO pending (channel, ts, conversation_id, payload, received_at,"
                    " owner) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (channel, ts) DO UPDATE"
                    " SET conversation_id=excluded.conversation_id, payload=excluded.payload,"
                    " received_at=excluded.received_at, owner=excluded.owner",
                    [channel, ts, conversation_id, pending, time.time(), self.instance],
                )
            return conversation_id

    async def wait_for_earlier(self, conversation_id: int, ts: str) -> None:
        """Wait while another live instance still answers an earlier message of this
        conversation (claimed, or its reply streaming): mentions in one thread are answered one
        after the other whichever instances they reach, each seeing the thread as it stood.
        This instance's own earlier ones are ordered in memory (`Sequencer`); a dead one's
        are taken over and closed within the instance timeout. At most `ORDER_WAIT_SECONDS`."""
        deadline = time.monotonic() + ORDER_WAIT_SECONDS
        while time.monotonic() < deadline:
            live = time.time() - self.instance_timeout
            row = await self._fetch_one(
                "SELECT EXISTS (SELECT 1 FROM pending WHERE conversation_id=%s AND ts<%s"
                f" AND owner<>%s AND {_OWNER_LIVE}) OR EXISTS (SELECT 1 FROM messages"
                " WHERE conversation_id=%s AND role='assistant' AND status='streaming'"
                f" AND sort_ts<%s AND owner<>%s AND {_OWNER_LIVE})",
                [conversation_id, ts, self.instance, live] * 2,
            )
            if not row or not row[0]:
                return
            await asyncio.sleep(ORDER_POLL_SECONDS)
        log.warning("conversation %s: gave up waiting for an earlier reply", conversation_id)

    async def thread_conversation(self, team: str, channel: str, root_ts: str) -> int:
        async with self._pool.connection() as conn:
            return await _get_or_create(conn, team, channel, "thread", root_ts)

    async def dm_conversation(self, team: str, channel: str, ts: str, idle_seconds: float) -> int:
        async with self._pool.connection() as conn:
            return await _dm(conn, team, channel, ts, idle_seconds)

    async def reset_dm(self, team: str, channel: str) -> None:
        await self._execute("DELETE FROM dm_sessions WHERE team=%s AND channel=%s", [team, channel])

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
        async with self._pool.connection() as conn:
            return await _add_user_turn(
                conn, conversation_id, ts, user_id, user_name, text, images, notes, documents
            )

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
        async with self._pool.connection() as conn:
            await _add_user_turn(
                conn, conversation_id, ts, user_id, user_name, text, images, notes, documents
            )
            turns = await _history(conn, conversation_id, ts)
            return turns, await _window_state(conn, conversation_id)

    async def sync_point(self, conversation_id: int) -> str | None:
        row = await self._fetch_one(
            "SELECT synced_to FROM conversations WHERE id=%s", [conversation_id]
        )
        return row[0] if row else None

    async def mark_synced(self, conversation_id: int, up_to_ts: str) -> None:
        await self._execute(
            "UPDATE conversations SET synced_to=%s WHERE id=%s"
            " AND (synced_to IS NULL OR synced_to < %s)",
            [up_to_ts, conversation_id, up_to_ts],
        )

    async def known_ts(self, conversation_id: int) -> set[str]:
        known: set[str] = set()
        for ts, reply_ts in await self._fetch_all(
            "SELECT ts, reply_ts FROM messages WHERE conversation_id=%s", [conversation_id]
        ):
            known.add(ts)
            if reply_ts:
                known.update(json.loads(reply_ts))
        return known

    async def begin_reply(
        self, conversation_id: int, *, answers_ts: str, channel: str, first_ts: str
    ) -> int:
        # A native stream has no message before its first content: keyed by the answer.
        key = first_ts or f"{answers_ts}/reply"
        shown = [first_ts] if first_ts else []
        async with self._pool.connection() as conn:
            await conn.execute(
                "DELETE FROM pending WHERE channel=%s AND ts=%s", [channel, answers_ts]
            )
            cur = await conn.execute(
                "INSERT INTO messages (conversation_id, role, ts, sort_ts, text, status,"
                " channel, reply_ts, created_at, owner) VALUES (%s, 'assistant', %s, %s, '',"
                " 'streaming', %s, %s, %s, %s) RETURNING id",
                [
                    conversation_id,
                    key,
                    answers_ts,
                    channel,
                    json.dumps(shown),
                    time.time(),
                    self.instance,
                ],
            )
            row = await cur.fetchone()
            assert row is not None
            return int(row[0])

    async def update_reply(
        self,
        reply_id: int,
        *,
        text: str,
        message_ts: Iterable[str],
        status: str,
        stop_reason: str | None = None,
    ) -> None:
        await self._execute(
            "UPDATE messages SET text=%s, reply_ts=%s, status=%s, tokens=NULL,"
            " stop_reason=COALESCE(%s, stop_reason) WHERE id=%s",
            [text, json.dumps(list(message_ts)), status, stop_reason, reply_id],
        )

    async def history(self, conversation_id: int, up_to_ts: str) -> list[Turn]:
        async with self._pool.connection() as conn:
            return await _history(conn, conversation_id, up_to_ts)

    async def save_token_estimates(self, estimates: dict[int, int]) -> None:
        if not estimates:
            return
        async with self._pool.connection() as conn, conn.cursor() as cur:
            await cur.executemany(
                "UPDATE messages SET tokens=%s WHERE id=%s",
                [(tokens, message_id) for message_id, tokens in estimates.items()],
            )

    # -- context window and usage -----------------------------------------------------------

    async def window_state(self, conversation_id: int) -> WindowState:
        async with self._pool.connection() as conn:
            return await _window_state(conn, conversation_id)

    async def save_window_state(
        self,
        conversation_id: int,
        *,
        kept_from_id: int | None,
        images_from_id: int | None,
        token_ratio: float | None = None,
        trim_noticed: bool = False,
    ) -> None:
        await self._execute(
            "UPDATE conversations SET kept_from_id=%s, images_from_id=%s,"
            " token_ratio=COALESCE(%s, token_ratio),"
            " trim_noticed_at=COALESCE(trim_noticed_at, %s) WHERE id=%s",
            [
                kept_from_id,
                images_from_id,
                token_ratio,
                time.time() if trim_noticed else None,
                conversation_id,
            ],
        )

    async def record_usage(self, record: UsageRecord) -> None:
        row = {**asdict(record), "created_at": time.time()}
        await self._execute(
            f"INSERT INTO usage ({', '.join(row)}) VALUES ({', '.join(['%s'] * len(row))})",
            list(row.values()),
        )

    # -- feedback ---------------------------------------------------------------------------

    async def record_vote(self, vote: Vote) -> None:
        await self._upsert_vote(vote, None)

    async def record_vote_reason(self, vote: Vote, reason: str) -> None:
        await self._upsert_vote(vote, reason)

    async def _upsert_vote(self, vote: Vote, reason: str | None) -> None:
        """One row per person and reply message, whatever order clicks and reasons arrive in
        (see `SqliteStore._upsert_vote`: the same statement)."""
        now = time.time()
        await self._execute(
            "INSERT INTO feedback (team, channel, message_ts, user_id, reply_id, model, vote,"
            " reason, created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (team, channel, message_ts, user_id) DO UPDATE SET"
            " vote=excluded.vote, updated_at=excluded.updated_at,"
            " reply_id=COALESCE(excluded.reply_id, feedback.reply_id),"
            " model=COALESCE(excluded.model, feedback.model),"
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
        """Messages claimed by an instance that is gone (or none), now this one's to answer;
        those older than `max_age` are dropped. A live instance's claims are left alone, and
        two live instances asking at once never get the same message (the takeover is one
        `UPDATE`; the second waits for the first's row locks and then sees a live owner)."""
        async with self._pool.connection() as conn:
            await conn.execute(
                "DELETE FROM pending WHERE received_at < %s", [time.time() - max_age]
            )
            cur = await conn.execute(
                "UPDATE pending SET owner=%s WHERE owner IS DISTINCT FROM %s"
                f" AND {_OWNER_GONE} RETURNING conversation_id, payload, received_at, ts",
                [self.instance, self.instance, time.time() - self.instance_timeout],
            )
            rows = sorted(await cur.fetchall(), key=lambda r: (r[2], r[3]))
            return [PendingMessage(int(r[0]), r[1], float(r[2])) for r in rows]

    async def forget_pending(self, channel: str, ts: str) -> None:
        await self._execute("DELETE FROM pending WHERE channel=%s AND ts=%s", [channel, ts])

    async def unfinished_replies(self) -> list[UnfinishedReply]:
        """Replies left mid-stream by an instance that is gone, now this one's to close (see
        `pending_messages` for why a live one's are never taken)."""
        rows = await self._fetch_all(
            "WITH taken AS (UPDATE messages SET owner=%s WHERE role='assistant'"
            " AND status='streaming' AND owner IS DISTINCT FROM %s"
            f" AND {_OWNER_GONE} RETURNING id, conversation_id, channel, text, reply_ts)"
            " SELECT t.id, t.conversation_id, c.team, t.channel, c.root_ts, c.kind, t.text,"
            " t.reply_ts FROM taken t JOIN conversations c ON c.id = t.conversation_id"
            " ORDER BY t.id",
            [self.instance, self.instance, time.time() - self.instance_timeout],
        )
        return [
            UnfinishedReply(
                id=int(row[0]),
                conversation_id=int(row[1]),
                team=row[2],
                channel=row[3],
                thread_ts=row[4] if row[5] == "thread" else None,
                text=row[6] or "",
                message_ts=tuple(json.loads(row[7] or "[]")),
            )
            for row in rows
        ]

    # -- the installation, spend limits, channel prompts --------------------------------------

    async def adopt_workspace(self, workspace: str) -> int:
        """As `SqliteStore.adopt_workspace`. A database that only this release has written
        holds nothing else (the usual case costs one query); one copied from an older SQLite
        file may, and is re-keyed the same way, under an advisory lock (instances starting
        together do it once)."""
        stray = await self._fetch_one(
            "SELECT EXISTS (SELECT 1 FROM conversations WHERE team<>%s)"
            " OR EXISTS (SELECT 1 FROM dm_sessions WHERE team<>%s)"
            " OR EXISTS (SELECT 1 FROM channel_prompts WHERE team<>%s)",
            [workspace] * 3,
        )
        if not stray or not stray[0]:
            return 0
        return await asyncio.to_thread(self._adopt_sync, workspace)

    def _adopt_sync(self, workspace: str) -> int:
        with psycopg.connect(self.url, connect_timeout=ATTEMPT_SECONDS) as conn:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", [MIGRATION_LOCK])
                merge_split_conversations(_Qmark(conn))
                changed = conn.execute(
                    "UPDATE conversations SET team=%s WHERE team<>%s", [workspace, workspace]
                ).rowcount
                for table, latest in (
                    ("dm_sessions", "last_ts"),
                    ("channel_prompts", "updated_at"),
                ):
                    conn.execute(
                        f"DELETE FROM {table} WHERE team<>%s AND channel IN"
                        f" (SELECT channel FROM {table} WHERE team=%s)",
                        [workspace, workspace],
                    )
                    conn.execute(  # one row per channel: the latest (by its time, then its place)
                        f"DELETE FROM {table} t WHERE team<>%s AND EXISTS (SELECT 1 FROM"
                        f" {table} u WHERE u.channel=t.channel AND u.team<>%s"
                        f" AND (u.{latest}, u.ctid) > (t.{latest}, t.ctid))",
                        [workspace, workspace],
                    )
                    changed += conn.execute(
                        f"UPDATE {table} SET team=%s WHERE team<>%s", [workspace, workspace]
                    ).rowcount
            return changed

    async def usage_totals(
        self, since: float, *, team: str | None = None, user_id: str | None = None
    ) -> list[UsageTotal]:
        where: list[str] = ["created_at >= %s"]
        args: list[object] = [since]
        if team is not None:
            where.append("team = %s")
            args.append(team)
        if user_id is not None:
            where.append("user_id = %s")
            args.append(user_id)
        rows = await self._fetch_all(
            "SELECT model, line, COUNT(*), SUM(input_tokens), SUM(cache_creation_input_tokens),"
            " SUM(cache_read_input_tokens), SUM(output_tokens), SUM(web_search_requests)"
            f" FROM usage WHERE {' AND '.join(where)} GROUP BY model, line",
            args,
        )
        return [
            UsageTotal(model, line, *(int(n or 0) for n in counts)) for model, line, *counts in rows
        ]

    async def channel_prompt(self, team: str, channel: str) -> str | None:
        row = await self._fetch_one(
            "SELECT text FROM channel_prompts WHERE team=%s AND channel=%s", [team, channel]
        )
        return str(row[0]) if row else None

    async def set_channel_prompt(
        self, team: str, channel: str, text: str | None, *, user_id: str
    ) -> str | None:
        """The change and its audit row in one transaction; the old text is read under the
        row's lock, so two admins changing it at once are audited in order."""
        now = time.time()
        async with self._pool.connection() as conn:
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext(%s))", [f"prompt:{team}:{channel}"]
            )
            cur = await conn.execute(
                "SELECT text FROM channel_prompts WHERE team=%s AND channel=%s", [team, channel]
            )
            row = await cur.fetchone()
            old = str(row[0]) if row else None
            if text is None:
                await conn.execute(
                    "DELETE FROM channel_prompts WHERE team=%s AND channel=%s", [team, channel]
                )
            else:
                await conn.execute(
                    "INSERT INTO channel_prompts (team, channel, text, updated_by, updated_at)"
                    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (team, channel) DO UPDATE SET"
                    " text=excluded.text, updated_by=excluded.updated_by,"
                    " updated_at=excluded.updated_at",
                    [team, channel, text, user_id, now],
                )
            await conn.execute(
                "INSERT INTO prompt_audit (team, channel, user_id, at, old_text, new_text)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                [team, channel, user_id, now, old, text],
            )
            return old

    # -- deletions, edits, retention --------------------------------------------------------

    async def erase_user_turn(self, channel: str, ts: str) -> int:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT m.id, m.conversation_id FROM messages m"
                " JOIN conversations c ON c.id = m.conversation_id"
                " WHERE m.ts=%s AND m.role='user' AND c.channel=%s",
                [ts, channel],
            )
            turns = await cur.fetchall()
            ids = [int(row[0]) for row in turns]
            for conversation_id in {row[1] for row in turns}:
                cur = await conn.execute(
                    "SELECT id FROM messages WHERE conversation_id=%s AND role='assistant'"
                    " AND sort_ts=%s",
                    [conversation_id, ts],
                )
                ids += [int(row[0]) for row in await cur.fetchall()]
            await _delete_messages(conn, ids)
            await conn.execute("DELETE FROM pending WHERE channel=%s AND ts=%s", [channel, ts])
            return len(turns)

    async def edit_user_turn(self, channel: str, ts: str, text: str) -> bool:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE messages SET text=%s, tokens=NULL WHERE role='user' AND ts=%s"
                " AND conversation_id IN (SELECT id FROM conversations WHERE channel=%s)",
                [text, ts, channel],
            )
            return cur.rowcount > 0

    async def purge_idle(
        self, idle_seconds: float, *, dry_run: bool = False
    ) -> list[PurgedConversation]:
        cutoff = time.time() - idle_seconds
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT c.id, c.team, c.channel, c.kind, c.root_ts,"
                " GREATEST(COALESCE(c.created_at, 0), COALESCE(MAX(m.created_at), 0)),"
                " COUNT(m.id),"
                " (SELECT COUNT(*) FROM images i JOIN messages im ON im.id = i.message_id"
                "   WHERE im.conversation_id = c.id)"
                " + (SELECT COUNT(*) FROM documents d JOIN messages dm"
                "   ON dm.id = d.message_id WHERE dm.conversation_id = c.id)"
                " FROM conversations c LEFT JOIN messages m ON m.conversation_id = c.id"
                " GROUP BY c.id HAVING GREATEST(COALESCE(c.created_at, 0),"
                " COALESCE(MAX(m.created_at), 0)) <= %s ORDER BY c.id",
                [cutoff],
            )
            found = [
                PurgedConversation(
                    int(r[0]), r[1], r[2], r[3], r[4], float(r[5]), int(r[6]), int(r[7])
                )
                for r in await cur.fetchall()
            ]
            if dry_run:
                return found
            for conversation in found:
                cur = await conn.execute(
                    "SELECT id FROM messages WHERE conversation_id=%s", [conversation.id]
                )
                await _delete_messages(conn, [int(row[0]) for row in await cur.fetchall()])
                for table in ("pending", "dm_sessions"):
                    await conn.execute(
                        f"DELETE FROM {table} WHERE conversation_id=%s", [conversation.id]
                    )
                await conn.execute(
                    "UPDATE usage SET conversation_id=NULL WHERE conversation_id=%s",
                    [conversation.id],
                )
                await conn.execute("DELETE FROM conversations WHERE id=%s", [conversation.id])
            return found


#: A row's owner is alive: heard from since the cutoff (`%s`).
_OWNER_LIVE = "owner IN (SELECT id FROM instances WHERE heartbeat_at >= %s)"
#: A row's owner is gone: never recorded, or not heard from since the cutoff (`%s`).
_OWNER_GONE = "(owner IS NULL OR owner NOT IN (SELECT id FROM instances WHERE heartbeat_at >= %s))"


class _Qmark:
    """A sync connection that takes `?` placeholders, for the SQL both backends share."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = (), /) -> Any:
        return self.conn.execute(to_pyformat(sql), params)


async def _delete_messages(conn: psycopg.AsyncConnection[Any], ids: Sequence[int]) -> None:
    """Messages and their files; usage rows keep their figures, not the link."""
    if not ids:
        return
    chunk = list(ids)
    await conn.execute("DELETE FROM images WHERE message_id = ANY(%s)", [chunk])
    await conn.execute("DELETE FROM documents WHERE message_id = ANY(%s)", [chunk])
    await conn.execute("UPDATE usage SET message_id=NULL WHERE message_id = ANY(%s)", [chunk])
    await conn.execute("DELETE FROM messages WHERE id = ANY(%s)", [chunk])


# -- statements shared by several methods (each runs inside the caller's transaction) -------


async def _claim(
    conn: psycopg.AsyncConnection[Any], event_id: str | None, channel: str, ts: str
) -> bool:
    """Both keys in one transaction, each an atomic insert: whichever instance inserts first
    wins, the others see the conflict."""
    now = time.time()
    if event_id:
        cur = await conn.execute(
            "INSERT INTO events (event_id, received_at) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            [event_id, now],
        )
        if cur.rowcount == 0:
            return False
    cur = await conn.execute(
        "INSERT INTO seen_messages (channel, ts, received_at) VALUES (%s, %s, %s)"
        " ON CONFLICT DO NOTHING",
        [channel, ts, now],
    )
    return cur.rowcount != 0


async def _get_or_create(
    conn: psycopg.AsyncConnection[Any], team: str, channel: str, kind: str, root_ts: str
) -> int:
    cur = await conn.execute(
        "INSERT INTO conversations (team, channel, kind, root_ts, created_at)"
        " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING id",
        [team, channel, kind, root_ts, time.time()],
    )
    row = await cur.fetchone()
    if row is None:  # it existed (or another instance's insert just committed)
        cur = await conn.execute(
            "SELECT id FROM conversations WHERE team=%s AND channel=%s AND kind=%s AND root_ts=%s",
            [team, channel, kind, root_ts],
        )
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def _dm(
    conn: psycopg.AsyncConnection[Any], team: str, channel: str, ts: str, idle_seconds: float
) -> int:
    """The DM's running conversation. Two messages of one DM reaching two instances at once
    would both find no running conversation and start two: the DM's advisory lock makes the
    second wait for the first's decision."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"dm:{team}:{channel}"])
    cur = await conn.execute(
        "SELECT conversation_id, last_ts FROM dm_sessions WHERE team=%s AND channel=%s",
        [team, channel],
    )
    row = await cur.fetchone()
    if row is not None and float(ts) - float(row[1]) <= idle_seconds:
        conversation_id = int(row[0])
    else:
        conversation_id = await _get_or_create(conn, team, channel, "dm", ts)
    await conn.execute(
        "INSERT INTO dm_sessions (team, channel, conversation_id, last_ts)"
        " VALUES (%s, %s, %s, %s) ON CONFLICT (team, channel) DO UPDATE SET"
        " conversation_id=excluded.conversation_id, last_ts=excluded.last_ts",
        [team, channel, conversation_id, ts],
    )
    return conversation_id


async def _add_user_turn(
    conn: psycopg.AsyncConnection[Any],
    conversation_id: int,
    ts: str,
    user_id: str | None,
    user_name: str | None,
    text: str,
    images: Sequence[StoredImage],
    notes: Sequence[str],
    documents: Sequence[StoredDocument],
) -> bool:
    cur = await conn.execute(
        "INSERT INTO messages (conversation_id, role, ts, sort_ts, user_id, user_name, text,"
        " notes, status, created_at) VALUES (%s, 'user', %s, %s, %s, %s, %s, %s, 'done', %s)"
        " ON CONFLICT DO NOTHING RETURNING id",
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
    row = await cur.fetchone()
    if row is None:
        return False
    message_id = int(row[0])
    async with conn.cursor() as many:
        if images:
            await many.executemany(
                "INSERT INTO images (message_id, position, name, media_type, data)"
                " VALUES (%s, %s, %s, %s, %s)",
                [(message_id, i, im.name, im.media_type, im.data) for i, im in enumerate(images)],
            )
        if documents:
            await many.executemany(
                "INSERT INTO documents (message_id, position, name, kind, media_type, data,"
                " size, pages, text_chars) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                [
                    (
                        message_id,
                        i,
                        d.name,
                        d.kind,
                        d.media_type,
                        d.data,
                        d.size,
                        d.pages,
                        d.text_chars,
                    )
                    for i, d in enumerate(documents)
                ],
            )
    return True


async def _history(
    conn: psycopg.AsyncConnection[Any], conversation_id: int, up_to_ts: str
) -> list[Turn]:
    cur = await conn.execute(
        "SELECT id, role, ts, text, user_id, user_name, notes, status, tokens, sort_ts"
        " FROM messages WHERE conversation_id=%s AND ("
        " (role='user' AND sort_ts<=%s) OR (role='assistant' AND sort_ts<%s))"
        " ORDER BY sort_ts, role='assistant', id",
        [conversation_id, up_to_ts, up_to_ts],
    )
    rows = await cur.fetchall()
    images: dict[int, list[StoredImage]] = {}
    cur = await conn.execute(
        "SELECT i.message_id, i.media_type, i.data, i.name FROM images i"
        " JOIN messages m ON m.id = i.message_id WHERE m.conversation_id=%s AND m.sort_ts<=%s"
        " ORDER BY i.message_id, i.position",
        [conversation_id, up_to_ts],
    )
    for message_id, media_type, data, name in await cur.fetchall():
        images.setdefault(message_id, []).append(StoredImage(media_type, data, name))
    documents: dict[int, list[StoredDocument]] = {}
    cur = await conn.execute(
        "SELECT d.message_id, d.kind, d.media_type, d.data, d.name, d.size, d.pages,"
        " d.text_chars FROM documents d JOIN messages m ON m.id = d.message_id"
        " WHERE m.conversation_id=%s AND m.sort_ts<=%s ORDER BY d.message_id, d.position",
        [conversation_id, up_to_ts],
    )
    for message_id, kind, media_type, data, name, size, pages, text_chars in await cur.fetchall():
        documents.setdefault(message_id, []).append(
            StoredDocument(kind, media_type, data, name or "", size or 0, pages, text_chars or 0)
        )
    return [
        Turn(
            id=int(row[0]),
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


async def _window_state(conn: psycopg.AsyncConnection[Any], conversation_id: int) -> WindowState:
    cur = await conn.execute(
        "SELECT kept_from_id, images_from_id, token_ratio, trim_noticed_at"
        " FROM conversations WHERE id=%s",
        [conversation_id],
    )
    row = await cur.fetchone()
    if row is None:
        return WindowState()
    return WindowState(row[0], row[1], row[2], row[3] is not None)


def _reason(exc: BaseException) -> str:
    """An error's first line, with any connection string's password masked."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return masked(text)
