"""Downloading a Slack file's bytes with the bot token, without leaking the token.

Why this module is careful:

- The bot token reads every file the bot can see, so it is only ever sent to Slack's own hosts
  (and the origins the operator configured), over https unless the operator said otherwise, and
  to no other port: whoever runs another service on the same host must not receive it. HTTP
  clients drop the header on a cross-host redirect, which breaks Enterprise Grid downloads, so
  redirects are followed here, one hop at a time, and the token is re-sent only where it may go.
- Slack answers a download it does not authorise with HTTP 200 and an HTML sign-in page, so the
  response is checked, never the status code alone.
- File sizes come from users: the body is read only up to a cap, whatever Content-Length says.
  A file read from its start only (a long log) stops there, and the rest is never transferred.
- Files shared with `file_access: "check_file_info"` arrive without links (or even a name), and
  deleted or hidden files arrive as tombstones: those are looked up or refused before any download.

It knows nothing of what the bytes are: that is `images.py`'s business (and the next kinds').
Every refusal is a `FileRefused` carrying the note the person will see.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import aiohttp
from slack_sdk.errors import SlackClientError
from slack_sdk.web.async_client import AsyncWebClient
from yarl import URL

from slackbot import messages
from slackbot.config import DEFAULT_MAX_FILE_BYTES
from slackbot.errors import FileRefused

logger = logging.getLogger(__name__)

# Slack's file hosts, matched with their subdomains and only over https on port 443.
SLACK_FILE_DOMAINS = ("slack.com", "slack-files.com", "slack-gov.com")
_DEFAULT_PORTS = {"http": 80, "https": 443}

DEFAULT_MAX_BYTES = DEFAULT_MAX_FILE_BYTES
DEFAULT_TIMEOUT_SECONDS = 60.0
MAX_REDIRECTS = 5

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_READ_CHUNK = 64 * 1024
_HOST_CHARS = re.compile(r"[a-z0-9.:\-]+")

FilesInfo = Callable[[str], Awaitable[Mapping[str, Any]]]
"""Looks a file up by id (Slack's `files.info`) and returns its file object."""


@dataclass(frozen=True)
class Downloaded:
    """A file's bytes as Slack served them; `content_type` is the server's claim, no more.

    `size` is the whole file's, in bytes: `len(data)` unless only its start was read
    (`download(first=)`), and then None when neither Slack nor the server said.
    """

    data: bytes
    content_type: str
    size: int | None = None

    @property
    def complete(self) -> bool:
        return self.size == len(self.data)


def _refuse(name: str, problem: messages.FileProblem, **details: object) -> FileRefused:
    return FileRefused(name, messages.file_note(problem, name, **details))


# --- Trusted hosts


def _normalise_host(host: str | None) -> str | None:
    """Lower-case, without a trailing dot; None unless it looks like a plain DNS name or IP.

    Refusing odd characters (`%`, `@`, empty labels) keeps the suffix match below honest.
    """
    if not host:
        return None
    host = host.lower().rstrip(".")
    if not _HOST_CHARS.fullmatch(host) or not all(host.split(".")):
        return None
    return host


def _is_slack_domain(host: str) -> bool:
    return any(host == domain or host.endswith("." + domain) for domain in SLACK_FILE_DOMAINS)


class Origin(NamedTuple):
    """Where a request goes: the token is trusted to exact origins, never to a host alone."""

    scheme: str
    host: str
    port: int


def origin_of(entry: str) -> Origin:
    """The one origin a `SLACK_API_URL` or `SLACK_FILE_HOSTS` entry names.

    A URL means exactly its scheme, host and port (the scheme's default port if none is given);
    a bare host name means https on 443, and `host:port` https on that port, so a plain entry
    never sends the token in the clear. Raises ValueError naming a malformed entry, so a typo in
    configuration fails at start-up instead of silently withholding the token.
    """
    text = entry.strip()
    malformed = ValueError(f"not a host name, host:port or http(s) URL: {entry!r}")
    try:
        url = URL(text if "://" in text else f"https://{text}")
        host = _normalise_host(url.raw_host)
        port = url.explicit_port or _DEFAULT_PORTS.get(url.scheme)
    except ValueError:
        raise malformed from None
    if host is None or port is None or url.scheme not in _DEFAULT_PORTS:
        raise malformed
    return Origin(url.scheme, host, port)


def trusted_origins(entries: Iterable[str]) -> frozenset[Origin]:
    """The origins besides Slack's own that get the bot token (the Slack API URL's — a fake Slack
    in tests, GovSlack, a proxy — and configured file hosts); blanks are skipped.

    Origins on Slack's own domains are dropped, so `http://slack.com/api/` as the API URL cannot
    make plain-http slack.com trusted: those stay https on 443 only.
    """
    origins = (origin_of(entry) for entry in entries if entry and entry.strip())
    return frozenset(origin for origin in origins if not _is_slack_domain(origin.host))


# --- files.info


def files_info_from(client: AsyncWebClient) -> FilesInfo:
    """Adapts slack_sdk's `files_info(file=...)` to the `FilesInfo` callable SlackFiles takes,
    so downloading depends on one small function rather than a whole Web API client."""

    async def files_info(file_id: str) -> Mapping[str, Any]:
        response = await client.files_info(file=file_id)
        file = response.get("file")
        return file if isinstance(file, dict) else {}

    return files_info


# --- Reading a Slack file object


def display_name(file: Mapping[str, Any]) -> str:
    """A one-line, bounded name for notes: file names are user input."""
    raw = file.get("name") or file.get("title") or file.get("id") or "a file"
    name = "".join(ch if ch.isprintable() else " " for ch in str(raw)).strip()
    if len(name) > 80:
        name = name[:79] + "…"
    return name or "a file"


def download_url(file: Mapping[str, Any]) -> str | None:
    for key in ("url_private_download", "url_private"):
        value = file.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _looks_like_html(data: bytes, content_type: str) -> bool:
    head = data[:512].lstrip().lower()
    return content_type == "text/html" or head.startswith((b"<!doctype html", b"<html"))


def _claims_html(file: Mapping[str, Any]) -> bool:
    """Whether the person shared an HTML file, whose download is legitimately HTML."""
    return (
        str(file.get("mimetype") or "").lower() == "text/html"
        or str(file.get("filetype") or "").lower() == "html"
    )


# --- The downloader


class SlackFiles:
    """Downloads Slack files with the bot token, sending it only to trusted hosts.

    Made once with the app's aiohttp session; safe to use from many conversations at once.
    """

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        bot_token: str,
        trusted_hosts: Iterable[str] = (),
        max_bytes: int = DEFAULT_MAX_BYTES,
        files_info: FilesInfo | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        """`trusted_hosts` are the origins besides Slack's own that get the token, each a URL,
        host name or `host:port` (see `origin_of`); a malformed one raises ValueError."""
        if max_bytes < 1 or timeout <= 0:
            raise ValueError("limits must be positive")
        self._session = session
        self._bot_token = bot_token
        self._origins = trusted_origins(trusted_hosts)
        self._max_bytes = max_bytes
        self._files_info = files_info
        self._timeout = timeout

    def __repr__(self) -> str:
        # Spelled out so the token can never end up in a log line through repr().
        origins = sorted(f"{scheme}://{host}:{port}" for scheme, host, port in self._origins)
        return f"SlackFiles(trusted={origins!r})"

    def is_trusted(self, url: str | URL) -> bool:
        """Whether the bot token may be sent to `url`.

        Slack's domains and their subdomains over https on 443; the configured origins exactly:
        same scheme, host and port. URLs with credentials in them are never trusted (aiohttp
        would send them).
        """
        try:
            parsed = url if isinstance(url, URL) else URL(url)
            if not parsed.absolute or parsed.user is not None or parsed.password is not None:
                return False
            host = _normalise_host(parsed.raw_host)
            port = parsed.explicit_port or _DEFAULT_PORTS.get(parsed.scheme)
        except ValueError:
            return False
        if host is None or port is None:
            return False
        origin = Origin(parsed.scheme, host, port)
        if origin.scheme == "https" and origin.port == 443 and _is_slack_domain(host):
            return True
        return origin in self._origins

    async def resolve(self, file: Mapping[str, Any]) -> Mapping[str, Any]:
        """The complete file object: looked up with `files.info` when the event's copy has no
        link, refused when Slack says the file is deleted or hidden."""
        if file.get("file_access") == "check_file_info" or (
            not download_url(file) and file.get("mode") not in ("tombstone", "hidden_by_limit")
        ):
            file = await self._look_up(file)
        name = display_name(file)
        mode = file.get("mode")
        if mode == "tombstone":
            raise _refuse(name, "deleted")
        if mode == "hidden_by_limit":
            raise _refuse(name, "hidden_by_limit")
        return file

    async def download(self, file: Mapping[str, Any], *, first: int | None = None) -> Downloaded:
        """The bytes of a resolved file object, or FileRefused with the note to show. With
        `first`, only the file's first `first` bytes (at most the cap) are read, and a larger
        file is not refused: a text is read from its start."""
        name = display_name(file)
        size = file.get("size")
        if isinstance(size, int) and size > self._max_bytes and first is None:
            raise FileRefused(name, messages.file_too_big(name, self._max_bytes, size))
        url = download_url(file)
        if url is None:
            raise _refuse(name, "no_link")
        limit = self._max_bytes if first is None else max(1, min(first, self._max_bytes))
        downloaded = await self._download(url, name, file.get("id"), limit, first is not None)
        if not downloaded.complete and downloaded.size is None and isinstance(size, int):
            downloaded = dataclasses.replace(downloaded, size=size)
        if _looks_like_html(downloaded.data, downloaded.content_type) and not _claims_html(file):
            raise _refuse(name, "refused")
        return downloaded

    async def _look_up(self, file: Mapping[str, Any]) -> Mapping[str, Any]:
        """Files shared with `file_access: check_file_info` arrive without URLs or even a name."""
        name = display_name(file)
        file_id = file.get("id")
        if self._files_info is None or not isinstance(file_id, str):
            raise _refuse(name, "no_link")
        try:
            info = await self._files_info(file_id)
        except (SlackClientError, aiohttp.ClientError, TimeoutError) as exc:
            logger.warning("files.info failed for %s: %s", file_id, type(exc).__name__)
            raise _refuse(name, "lookup_failed") from exc
        return {**file, **info}

    async def _download(
        self, url: str, name: str, file_id: object, limit: int, partial: bool
    ) -> Downloaded:
        """Follows redirects by hand so the token is re-sent to trusted hosts and only to them."""
        try:
            current = URL(url)
        except ValueError as exc:
            raise _refuse(name, "untrusted") from exc
        if not self.is_trusted(current):
            logger.warning(
                "not downloading Slack file %s from untrusted host %s", file_id, current.host
            )
            raise _refuse(name, "untrusted")
        try:
            async with asyncio.timeout(self._timeout):
                for _hop in range(MAX_REDIRECTS + 1):
                    headers = (
                        {"Authorization": f"Bearer {self._bot_token}"}
                        if self.is_trusted(current)
                        else {}
                    )
                    async with self._session.get(
                        current, headers=headers, allow_redirects=False
                    ) as response:
                        if response.status in _REDIRECT_STATUSES:
                            current = _redirect_target(current, response, name)
                            response.close()
                            continue
                        if response.status != 200:
                            logger.warning(
                                "Slack file %s: HTTP %s from %s",
                                file_id,
                                response.status,
                                current.host,
                            )
                            raise _refuse(name, "http_status", status=response.status)
                        return await self._read_capped(response, name, limit, partial)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            logger.warning("downloading Slack file %s failed: %s", file_id, type(exc).__name__)
            raise _refuse(
                name, "timed_out" if isinstance(exc, TimeoutError) else "network_error"
            ) from exc
        raise _refuse(name, "too_many_redirects")

    async def _read_capped(
        self, response: aiohttp.ClientResponse, name: str, limit: int, partial: bool
    ) -> Downloaded:
        """Reads the body but stops past `limit`, whatever Content-Length said: a refusal, or
        with `partial` the first `limit` bytes."""
        length = response.content_length
        if length is not None and length > self._max_bytes and not partial:
            response.close()
            raise FileRefused(name, messages.file_too_big(name, self._max_bytes, length))
        body = bytearray()
        async for chunk in response.content.iter_chunked(_READ_CHUNK):
            body += chunk
            if len(body) > limit:
                # Closing drops the connection, so the rest of the body is never transferred.
                response.close()
                if not partial:
                    raise FileRefused(name, messages.file_too_big(name, self._max_bytes))
                return Downloaded(bytes(body[:limit]), response.content_type, length)
        return Downloaded(bytes(body), response.content_type, len(body))


def _redirect_target(current: URL, response: aiohttp.ClientResponse, name: str) -> URL:
    location = response.headers.get("Location")
    if not location:
        raise _refuse(name, "redirect_without_location", status=response.status)
    target = current.join(URL(location))
    if target.scheme not in ("http", "https"):
        raise _refuse(name, "redirect_not_web")
    return target
