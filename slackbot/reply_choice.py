"""Which mechanism each reply uses: native streaming or `chat.update` (`SLACKBOT_STREAMING`).

- `update`: every reply edits a placeholder with `chat.update`.
- `native`: every reply in a thread streams natively (`native_reply.NativeReply`).
- `auto` (default): native in DM threads, where one person watches; `chat.update` in channels,
  where a native stream shows its live text to its recipient only and everyone else in the
  thread would see nothing until it ends.

A reply that is not in a thread (a top-level DM in conversation mode) uses `chat.update` in every
mode: a native stream needs a thread. So does every reply in a workspace that refused
`chat.startStream` within the hour (`stream_budget.TeamStreams.refuse`). `chat.update` replies
carry the Stop button; native ones have Slack's own (the agent session's).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

from slack_sdk.web.async_client import AsyncWebClient

from slackbot.edit_budget import EditBudgets
from slackbot.events import Incoming
from slackbot.native_reply import NativeReply
from slackbot.reply import Reply
from slackbot.session_status import SessionStatus
from slackbot.stopping import stop_block
from slackbot.stream_budget import StreamBudgets
from slackbot.update_reply import UpdateReplies, UpdateReply


class ChosenReplies:
    def __init__(
        self,
        client: AsyncWebClient,
        updates: UpdateReplies,
        status: SessionStatus,
        *,
        streaming: str,
        streams: StreamBudgets | None = None,
    ) -> None:
        self._client = client
        self.updates = updates
        self.status = status
        self.streaming = streaming
        self.streams = streams or StreamBudgets()

    @property
    def budgets(self) -> EditBudgets:
        """Every workspace's `chat.update` budget (shared with the status calls)."""
        return self.updates.budgets

    def split_among(self, instances: int) -> None:
        """Several instances on one database: this one takes its part of every workspace's
        Slack budgets, the edits' (with the status calls) and the native streams'."""
        self.updates.budgets.split_among(instances)
        self.streams.split_among(instances)

    def uses_native(self, msg: Incoming) -> bool:
        if msg.thread_root is None or self.streaming == "update":
            return False
        if self.streaming == "auto" and not msg.is_dm:
            return False
        return self.streams.for_team(msg.team).native_allowed

    def open(self, msg: Incoming) -> Reply:
        if not self.uses_native(msg):
            return self.updates.open(msg, stop_button=stop_block(msg.ts))
        assert msg.thread_root is not None
        team = msg.team
        return NativeReply(
            self._client,
            self.streams.for_team(team),
            self.updates.budgets.for_team(team),
            channel=msg.channel,
            thread_ts=msg.thread_root,
            recipient_user_id=msg.user,
            recipient_team_id=msg.user_team or team,
            update_interval=self.updates.interval,
            ends_session=lambda: self.status.mode(team) == "sessions",
            stop_button=stop_block(msg.ts),
        )

    def resume(
        self,
        *,
        team: str,
        channel: str,
        thread_ts: str | None,
        message_ts: Sequence[str],
        text: str,
    ) -> UpdateReply:
        """A reply a crash left unfinished is finished with `chat.update`, whichever way it
        streamed (after `reopen`)."""
        return self.updates.resume(
            team=team, channel=channel, thread_ts=thread_ts, message_ts=message_ts, text=text
        )

    async def reopen(
        self, *, channel: str, thread_ts: str | None, message_ts: Sequence[str]
    ) -> None:
        """Before a resumed reply is finished: a native stream the crash left open is stopped,
        so `chat.update` can edit its message (best-effort: one that has expired, or was never
        a stream, just answers an error)."""
        if thread_ts is None or not message_ts or self.streaming == "update":
            return
        with contextlib.suppress(Exception):
            await self._client.chat_stopStream(channel=channel, ts=message_ts[-1])
