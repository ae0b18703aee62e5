"""Files Claude's code execution made (charts, CSVs), taken from Anthropic's Files API and
uploaded into the reply's thread.

The sandbox's outputs come back only as `file_id`s inside the tool's result blocks
(`stream_events.output_file_ids`, summed in `StreamResult.files`); the bytes
stay with Anthropic until asked for. They are fetched once the answer is final (the text never
waits for a chart), one at a time and capped like downloads from Slack, so a script that writes
a gigabyte cannot fill the bot's memory. Whatever cannot be brought over gets a note naming the
file; the answer itself is already in the thread.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import aiohttp
import anthropic
from slack_sdk.errors import SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from slackbot import messages

log = logging.getLogger(__name__)

#: The Files API is a beta: its requests carry this header.
FILES_BETA = "files-api-2025-04-14"
#: At most this many files are uploaded from one reply; the rest are named in a note.
MAX_FILES_PER_REPLY = 10


@dataclass(frozen=True)
class CodeFiles:
    """Brings code execution's files into Slack: the Files API on one side, Slack's external
    upload (`files.getUploadURLExternal` → upload → `files.completeUploadExternal`, which
    `files_upload_v2` does) on the other."""

    claude: anthropic.AsyncAnthropic
    slack: AsyncWebClient
    max_bytes: int

    async def upload(
        self, file_ids: Iterable[str], *, channel: str, thread_ts: str | None
    ) -> list[str]:
        """Upload each file into the thread; the notes for those that could not be."""
        wanted = list(dict.fromkeys(file_ids))
        notes: list[str] = []
        for file_id in wanted[:MAX_FILES_PER_REPLY]:
            note = await self._upload_one(file_id, channel=channel, thread_ts=thread_ts)
            if note:
                notes.append(note)
        if len(wanted) > MAX_FILES_PER_REPLY:
            notes.append(messages.code_files_left_out(len(wanted) - MAX_FILES_PER_REPLY))
        return notes

    async def _upload_one(self, file_id: str, *, channel: str, thread_ts: str | None) -> str | None:
        try:
            meta = await self.claude.beta.files.retrieve_metadata(file_id, betas=[FILES_BETA])
        except anthropic.APIError as exc:
            log.warning("code execution file %s: no metadata (%r)", file_id, exc)
            return messages.code_file_failed(None)
        name = meta.filename or file_id
        if meta.size_bytes > self.max_bytes:
            return messages.code_file_too_big(name, self.max_bytes, meta.size_bytes)
        try:
            data = await self._download(file_id)
        except anthropic.APIError as exc:
            log.warning("code execution file %s: download failed (%r)", file_id, exc)
            return messages.code_file_failed(name)
        if data is None:
            return messages.code_file_too_big(name, self.max_bytes)
        try:
            await self.slack.files_upload_v2(
                channel=channel, thread_ts=thread_ts, content=data, filename=name, title=name
            )
        except (TimeoutError, SlackClientError, aiohttp.ClientError, OSError) as exc:
            log.warning("code execution file %s: upload to Slack failed (%r)", file_id, exc)
            return messages.code_file_failed(name)
        return None

    async def _download(self, file_id: str) -> bytes | None:
        """The file's bytes, or None past `max_bytes` (the size the metadata gave may lie)."""
        chunks: list[bytes] = []
        size = 0
        async with self.claude.beta.files.with_streaming_response.download(
            file_id, betas=[FILES_BETA]
        ) as response:
            async for chunk in response.iter_bytes():
                size += len(chunk)
                if size > self.max_bytes:
                    return None
                chunks.append(chunk)
        return b"".join(chunks)
