"""Slack files → Claude image blocks, or a short note for the user when a file can't be used.

Why this module is careful:

- The bot token reads every file the bot can see, so it is only ever sent to Slack's own hosts
  (and hosts the operator configured). HTTP clients drop the header on a cross-host redirect, which
  breaks Enterprise Grid downloads, so redirects are followed here, one hop at a time.
- Slack answers a download it does not authorise with HTTP 200 and an HTML sign-in page, so the
  bytes are checked, never the status code or the claimed type alone.
- Images come from users: their size, pixel count and decoding are bounded, and decoding runs in
  worker threads so the event loop keeps serving other conversations.
- An image Claude rejects, once stored in a thread's history, breaks every later turn, so every
  image is decoded again, in its final form, before it is returned.

Nothing here raises for a bad file: every failure becomes a `FileNote` the conversation can show.
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import math
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from PIL import ExifTags, Image
from slack_sdk.errors import SlackClientError
from slack_sdk.web.async_client import AsyncWebClient
from yarl import URL

logger = logging.getLogger(__name__)

# Slack's file hosts, matched with their subdomains and only over https.
SLACK_FILE_DOMAINS = ("slack.com", "slack-files.com", "slack-gov.com")

DEFAULT_MAX_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_CONCURRENT_DECODES = 2
# Claude downscales anything with a longer edge anyway; sending less saves tokens and upload time.
DEFAULT_MAX_LONG_EDGE = 1568
# Refuse before decoding: 50 MP of RGBA is already 200 MB of memory per decode.
DEFAULT_MAX_PIXELS = 50_000_000
DEFAULT_TIMEOUT_SECONDS = 60.0
# Claude's limit is 5 MB (5,242,880 bytes) of base64 per image.
MAX_BASE64_BYTES = 5 * 1024 * 1024
# Claude refuses images with an edge above 8000 px.
MAX_ALLOWED_LONG_EDGE = 8000
MAX_REDIRECTS = 5

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_READ_CHUNK = 64 * 1024

# Media types Claude accepts, and the Pillow format that decodes each.
_PILLOW_FORMATS = {
    "image/png": "PNG",
    "image/jpeg": "JPEG",
    "image/gif": "GIF",
    "image/webp": "WEBP",
}
_FILETYPE_MEDIA_TYPES = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
}
# Slack names files after the user's upload, so the extension is a fallback when Slack gives
# neither a mimetype nor a filetype (some `files.info` shapes).
_EXTENSION = re.compile(r"\.([A-Za-z0-9]+)$")
_HOST_CHARS = re.compile(r"[a-z0-9.:\-]+")

# Modes Claude's decoders may not read faithfully: such images are re-encoded even when small.
_RE_ENCODE_MODES = frozenset({"CMYK", "YCbCr", "LAB", "HSV"})
_EXIF_ORIENTATION_FIX = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_JPEG_QUALITIES = (90, 80, 70, 55, 40)

FilesInfo = Callable[[str], Awaitable[Mapping[str, Any]]]
"""Looks a file up by id (Slack's `files.info`) and returns its file object."""


# --- What the user is told. All user-facing text of this module lives here.

_SUPPORTED_KINDS = "PNG, JPEG, GIF and WebP images"


def _unsupported(name: str, kind: str) -> str:
    return f"I can't read {name} ({kind}) yet — I can only see {_SUPPORTED_KINDS}."


def _refused(name: str) -> str:
    return f"I couldn't download {name} (Slack refused access — is the `files:read` scope granted?)"


def _lookup_failed(name: str) -> str:
    return f"I couldn't look up {name} (Slack's files.info failed — is `files:read` granted?)"


def _untrusted(name: str) -> str:
    return f"I didn't download {name}: its link doesn't point to Slack."


def _no_link(name: str) -> str:
    return f"I couldn't download {name}: Slack didn't give me a link to it."


def _deleted(name: str) -> str:
    return f"I can't see {name}: it was deleted."


def _hidden_by_limit(name: str) -> str:
    return f"I can't see {name}: it's hidden by this workspace's file history limit."


def _network(name: str, why: str) -> str:
    return f"I couldn't download {name} ({why})."


def _too_big(name: str, limit: int, size: int | None = None) -> str:
    sized = f"{_megabytes(size)}; " if size is not None else ""
    return f"{name} is too big for me ({sized}I read files up to {_megabytes(limit)})."


def _too_many_pixels(name: str, size: str = "too many pixels") -> str:
    return f"{name} is too large to open ({size})."


def _not_an_image(name: str) -> str:
    return f"I couldn't read {name}: it isn't a valid PNG, JPEG, GIF or WebP image."


def _too_detailed(name: str) -> str:
    return f"I couldn't shrink {name} below Claude's 5 MB image limit."


def _unexpected(name: str) -> str:
    return f"I couldn't read {name} (something went wrong on my side)."


def _megabytes(size: int) -> str:
    value = size / (1024 * 1024)
    return f"{value:.0f} MB" if value >= 10 or value == int(value) else f"{value:.1f} MB"


# --- Public types


@dataclass(frozen=True)
class ImageBlock:
    """An image that has been checked and shrunk, ready to send to Claude as-is."""

    media_type: str
    data: str
    name: str

    def to_claude(self) -> dict[str, Any]:
        """The Messages API content block; a plain dict so the store can serialise it too."""
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": self.media_type, "data": self.data},
        }


@dataclass(frozen=True)
class FileNote:
    """Something to tell the user instead of an image, so a bad file never ends the turn.

    `text` is plain text containing the file's name; whoever posts it escapes it for Slack.
    """

    name: str
    text: str


class _Refused(Exception):
    """Internal: unwinds from wherever a file turns out to be unusable, carrying the note."""

    def __init__(self, note: FileNote) -> None:
        super().__init__(note.text)
        self.note = note


def _refuse(name: str, text: str) -> _Refused:
    return _Refused(FileNote(name=name, text=text))


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


def trusted_hosts_for(api_url: str | None, extra: Iterable[str] = ()) -> frozenset[str]:
    """The extra hosts to trust: the Slack API URL's host (a fake Slack in tests, GovSlack, a
    proxy) and configured file hosts, each a host name, `host:port` or URL; blanks are skipped.

    Raises ValueError naming a malformed entry, so a typo in configuration fails at start-up
    instead of silently withholding the token.
    """
    hosts = (_host_of(entry) for entry in (api_url, *extra) if entry and entry.strip())
    return frozenset(hosts)


def _host_of(entry: str) -> str:
    text = entry.strip()
    try:
        host = _normalise_host(URL(text if "://" in text else f"//{text}").raw_host)
    except ValueError:
        host = None
    if host is None:
        raise ValueError(f"not a host name or URL: {entry!r}")
    return host


# --- files.info


def files_info_from(client: AsyncWebClient) -> FilesInfo:
    """Adapts slack_sdk's `files_info(file=...)` to the `FilesInfo` callable FileFetcher takes,
    so FileFetcher depends on one small function rather than a whole Web API client."""

    async def files_info(file_id: str) -> Mapping[str, Any]:
        response = await client.files_info(file=file_id)
        file = response.get("file")
        return file if isinstance(file, dict) else {}

    return files_info


# --- The fetcher


@dataclass(frozen=True)
class _ImageLimits:
    max_long_edge: int
    max_pixels: int
    max_base64: int


class FileFetcher:
    """Turns the files of a Slack message into Claude image blocks or notes for the user.

    Made once in `main()` with the app's aiohttp session; `fetch_all` is safe to call from many
    conversations at once, and the decode semaphore is shared between them.
    """

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        bot_token: str,
        trusted_hosts: Iterable[str] = (),
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_concurrent_decodes: int = DEFAULT_MAX_CONCURRENT_DECODES,
        max_long_edge: int = DEFAULT_MAX_LONG_EDGE,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        files_info: FilesInfo | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        """`trusted_hosts` are extra hosts (see `trusted_hosts_for`) trusted over http or https;
        a malformed one raises ValueError.

        Extra hosts that are Slack's own domains are dropped, so `https://slack.com/api/` as the
        API URL does not make plain-http slack.com trusted.
        """
        if max_bytes < 1 or max_concurrent_decodes < 1 or max_pixels < 1 or timeout <= 0:
            raise ValueError("limits must be positive")
        if not 1 <= max_long_edge <= MAX_ALLOWED_LONG_EDGE:
            raise ValueError(f"max_long_edge must be between 1 and {MAX_ALLOWED_LONG_EDGE}")
        self._session = session
        self._bot_token = bot_token
        extra = trusted_hosts_for(None, trusted_hosts)
        self._extra_hosts = frozenset(host for host in extra if not _is_slack_domain(host))
        self._max_bytes = max_bytes
        self._decode_slots = asyncio.Semaphore(max_concurrent_decodes)
        self._limits = _ImageLimits(
            max_long_edge=max_long_edge, max_pixels=max_pixels, max_base64=MAX_BASE64_BYTES
        )
        self._files_info = files_info
        self._timeout = timeout

    def __repr__(self) -> str:
        # Spelled out so the token can never end up in a log line through repr().
        return f"FileFetcher(extra_hosts={sorted(self._extra_hosts)!r})"

    def is_trusted(self, url: str | URL) -> bool:
        """Whether the bot token may be sent to `url`.

        Slack's domains and their subdomains over https; the configured extra hosts exactly, over
        http or https. URLs with credentials in them are never trusted (aiohttp would send them).
        """
        try:
            parsed = url if isinstance(url, URL) else URL(url)
        except ValueError:
            return False
        if not parsed.absolute or parsed.user is not None or parsed.password is not None:
            return False
        host = _normalise_host(parsed.raw_host)
        if host is None:
            return False
        if parsed.scheme == "https" and _is_slack_domain(host):
            return True
        return parsed.scheme in ("http", "https") and host in self._extra_hosts

    async def fetch_all(
        self, files: Sequence[Mapping[str, Any]]
    ) -> tuple[list[ImageBlock], list[FileNote]]:
        """Fetches every file concurrently; both lists keep the order the files were attached in."""
        results = await asyncio.gather(*(self.fetch(file) for file in files))
        images = [result for result in results if isinstance(result, ImageBlock)]
        notes = [result for result in results if isinstance(result, FileNote)]
        return images, notes

    async def fetch(self, file: Mapping[str, Any]) -> ImageBlock | FileNote:
        """One Slack file object (from an event or `files.info`) → an image block or a note.

        Never raises (except cancellation): one unreadable attachment must not stop the bot from
        answering the rest of the message.
        """
        try:
            return await self._fetch(file)
        except _Refused as refusal:
            return refusal.note
        except Exception:
            logger.exception("unexpected error reading Slack file %s", file.get("id"))
            name = _display_name(file)
            return FileNote(name=name, text=_unexpected(name))

    async def _fetch(self, file: Mapping[str, Any]) -> ImageBlock:
        if file.get("file_access") == "check_file_info" or (
            not _download_url(file) and file.get("mode") not in ("tombstone", "hidden_by_limit")
        ):
            file = await self._look_up(file)
        name = _display_name(file)
        mode = file.get("mode")
        if mode == "tombstone":
            raise _refuse(name, _deleted(name))
        if mode == "hidden_by_limit":
            raise _refuse(name, _hidden_by_limit(name))
        if _claimed_media_type(file) is None:
            raise _refuse(name, _unsupported(name, _kind(file)))
        size = file.get("size")
        if isinstance(size, int) and size > self._max_bytes:
            raise _refuse(name, _too_big(name, self._max_bytes, size))
        url = _download_url(file)
        if url is None:
            raise _refuse(name, _no_link(name))
        data, content_type = await self._download(url, name, file.get("id"))
        async with self._decode_slots:
            media_type, encoded = await asyncio.to_thread(
                _prepare_image, data, content_type, name, self._limits
            )
        return ImageBlock(
            media_type=media_type, data=base64.b64encode(encoded).decode("ascii"), name=name
        )

    async def _look_up(self, file: Mapping[str, Any]) -> Mapping[str, Any]:
        """Files shared with `file_access: check_file_info` arrive without URLs or even a name."""
        name = _display_name(file)
        file_id = file.get("id")
        if self._files_info is None or not isinstance(file_id, str):
            raise _refuse(name, _no_link(name))
        try:
            info = await self._files_info(file_id)
        except (SlackClientError, aiohttp.ClientError, TimeoutError) as exc:
            logger.warning("files.info failed for %s: %s", file_id, type(exc).__name__)
            raise _refuse(name, _lookup_failed(name)) from exc
        return {**file, **info}

    async def _download(self, url: str, name: str, file_id: object) -> tuple[bytes, str]:
        """Follows redirects by hand so the token is re-sent to trusted hosts and only to them."""
        try:
            current = URL(url)
        except ValueError as exc:
            raise _refuse(name, _untrusted(name)) from exc
        if not self.is_trusted(current):
            logger.warning(
                "not downloading Slack file %s from untrusted host %s", file_id, current.host
            )
            raise _refuse(name, _untrusted(name))
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
                            raise _refuse(name, _network(name, f"HTTP {response.status}"))
                        return await self._read_capped(response, name), response.content_type
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            logger.warning("downloading Slack file %s failed: %s", file_id, type(exc).__name__)
            why = "timed out" if isinstance(exc, TimeoutError) else "network error"
            raise _refuse(name, _network(name, why)) from exc
        raise _refuse(name, _network(name, "too many redirects"))

    async def _read_capped(self, response: aiohttp.ClientResponse, name: str) -> bytes:
        """Reads the body but stops past `max_bytes`, whatever Content-Length said."""
        length = response.content_length
        if length is not None and length > self._max_bytes:
            response.close()
            raise _refuse(name, _too_big(name, self._max_bytes, length))
        body = bytearray()
        async for chunk in response.content.iter_chunked(_READ_CHUNK):
            body += chunk
            if len(body) > self._max_bytes:
                # Closing drops the connection, so the rest of the body is never transferred.
                response.close()
                raise _refuse(name, _too_big(name, self._max_bytes))
        return bytes(body)


def _redirect_target(current: URL, response: aiohttp.ClientResponse, name: str) -> URL:
    location = response.headers.get("Location")
    if not location:
        raise _refuse(name, _network(name, f"HTTP {response.status} without a Location"))
    target = current.join(URL(location))
    if target.scheme not in ("http", "https"):
        raise _refuse(name, _network(name, "redirected to a non-web address"))
    return target


# --- Reading a Slack file object


def _display_name(file: Mapping[str, Any]) -> str:
    """A one-line, bounded name for notes: file names are user input."""
    raw = file.get("name") or file.get("title") or file.get("id") or "a file"
    name = "".join(ch if ch.isprintable() else " " for ch in str(raw)).strip()
    if len(name) > 80:
        name = name[:79] + "…"
    return name or "a file"


def _download_url(file: Mapping[str, Any]) -> str | None:
    for key in ("url_private_download", "url_private"):
        value = file.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _claimed_media_type(file: Mapping[str, Any]) -> str | None:
    """The image type Slack claims, to skip PDFs and such without downloading them.

    Only a claim: the downloaded bytes decide the media type sent to Claude.
    """
    mimetype = str(file.get("mimetype") or "").lower()
    if mimetype:
        return mimetype if mimetype in _PILLOW_FORMATS else None
    filetype = str(file.get("filetype") or "").lower()
    if filetype:
        return _FILETYPE_MEDIA_TYPES.get(filetype)
    match = _EXTENSION.search(str(file.get("name") or ""))
    return _FILETYPE_MEDIA_TYPES.get(match.group(1).lower()) if match else None


def _kind(file: Mapping[str, Any]) -> str:
    for key in ("pretty_type", "filetype", "mimetype"):
        value = file.get(key)
        if isinstance(value, str) and value:
            return value.upper() if key == "filetype" else value
    return "unknown type"


# --- Image checks and re-encoding (runs in a worker thread)


def sniff_media_type(data: bytes) -> str | None:
    """The image type from the magic bytes; None for anything else (e.g. Slack's sign-in page)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _looks_like_html(data: bytes, content_type: str) -> bool:
    head = data[:512].lstrip().lower()
    return content_type == "text/html" or head.startswith((b"<!doctype html", b"<html"))


def _base64_length(size: int) -> int:
    return 4 * math.ceil(size / 3)


def _prepare_image(
    data: bytes, content_type: str, name: str, limits: _ImageLimits
) -> tuple[str, bytes]:
    """Checks the bytes are the image they claim to be and returns (media type, bytes) that Claude
    accepts: the original when it already fits, else a shrunk re-encoding.

    Blocking (Pillow): call through `asyncio.to_thread`.
    """
    media_type = sniff_media_type(data)
    if media_type is None:
        if _looks_like_html(data, content_type):
            raise _refuse(name, _refused(name))
        raise _refuse(name, _not_an_image(name))
    try:
        with Image.open(io.BytesIO(data), formats=[_PILLOW_FORMATS[media_type]]) as image:
            width, height = image.size
            # Pillow's own bomb check only warns below 2× MAX_IMAGE_PIXELS: check ours first.
            if width * height > limits.max_pixels:
                raise _refuse(name, _too_many_pixels(name, f"{width}×{height} pixels"))
            if _fits_as_is(image, len(data), limits):
                _decode_all_frames(image)
                return media_type, data
            image.seek(0)
            return _re_encode(image, media_type, name, limits)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Raised by Image.open for headers far beyond MAX_IMAGE_PIXELS (the warning only when
        # warnings are errors, as in tests); either way, far beyond our own limit.
        raise _refuse(name, _too_many_pixels(name)) from exc
    except _Refused:
        raise
    except Exception as exc:
        # Pillow's decoders raise a zoo of types for malformed input (OSError, SyntaxError,
        # ValueError, struct.error, EOFError, ...): all mean "not an image Claude would accept".
        logger.info("image %s does not decode: %s", name, type(exc).__name__)
        raise _refuse(name, _not_an_image(name)) from exc


def _frame_count(image: Image.Image) -> int:
    return int(getattr(image, "n_frames", 1))


def _orientation(image: Image.Image) -> int:
    value = image.getexif().get(ExifTags.Base.Orientation, 1)
    return value if isinstance(value, int) else 1


def _fits_as_is(image: Image.Image, size: int, limits: _ImageLimits) -> bool:
    """Whether the original bytes can go to Claude unchanged (no quality loss, no work).

    Animations are kept only when decoding every frame stays within the pixel budget, because
    every frame is decoded to validate them.
    """
    width, height = image.size
    return (
        max(width, height) <= limits.max_long_edge
        and _base64_length(size) <= limits.max_base64
        and image.mode not in _RE_ENCODE_MODES
        and _orientation(image) == 1
        and width * height * _frame_count(image) <= limits.max_pixels
    )


def _decode_all_frames(image: Image.Image) -> None:
    for index in range(_frame_count(image)):
        image.seek(index)
        image.load()


def _normalised(image: Image.Image) -> Image.Image:
    """The frame in a mode that resizes smoothly and saves as PNG or JPEG (L, LA, RGB, RGBA)."""
    mode = image.mode
    if mode in ("L", "LA", "RGB", "RGBA"):
        return image
    if mode == "1":
        return image.convert("L")
    if mode == "P":
        return image.convert("RGBA" if "transparency" in image.info else "RGB")
    if mode.startswith("I"):
        # 16-bit greyscale: scale to 8 bits instead of letting convert() clip to white.
        return image.convert("I").point(lambda value: value * (1 / 256)).convert("L")
    if mode in ("PA", "La", "RGBa"):
        return image.convert("RGBA")
    return image.convert("RGB")


def _re_encode(
    image: Image.Image, source_type: str, name: str, limits: _ImageLimits
) -> tuple[str, bytes]:
    orientation = _orientation(image)
    if source_type == "image/jpeg" and image.mode in ("L", "RGB"):
        # Resize before anything loads the pixels: thumbnail() then uses JPEG draft mode and
        # decodes at a fraction of the size.
        image.thumbnail((limits.max_long_edge, limits.max_long_edge), Image.Resampling.LANCZOS)
        frame: Image.Image = image
    else:
        frame = _normalised(image)
        frame.thumbnail((limits.max_long_edge, limits.max_long_edge), Image.Resampling.LANCZOS)
    frame = _normalised(frame)
    if orientation in _EXIF_ORIENTATION_FIX:
        frame = frame.transpose(_EXIF_ORIENTATION_FIX[orientation])

    budget = limits.max_base64 * 3 // 4
    for _round in range(4):
        for media_type, encoded in _encodings(
            frame, prefer_png=source_type != "image/jpeg", budget=budget
        ):
            if len(encoded) <= budget:
                _check_decodes(encoded, media_type, limits)
                return media_type, encoded
        # Only reachable with a very large max_long_edge: shrink and try again.
        width, height = frame.size
        frame = frame.resize(
            (max(1, width * 3 // 4), max(1, height * 3 // 4)), Image.Resampling.LANCZOS
        )
    raise _refuse(name, _too_detailed(name))


def _encodings(frame: Image.Image, *, prefer_png: bool, budget: int) -> Iterable[tuple[str, bytes]]:
    """Candidate encodings, best quality first, produced lazily so the first that fits wins."""
    if prefer_png:
        plain = _save(frame, "PNG")
        yield "image/png", plain
        # Optimising rarely saves more than a fifth, and it is slow: skip it when hopeless.
        if len(plain) <= budget * 1.3:
            yield "image/png", _save(frame, "PNG", optimize=True)
    opaque = _flattened(frame)
    for quality in _JPEG_QUALITIES:
        yield "image/jpeg", _save(opaque, "JPEG", quality=quality, optimize=True)


def _flattened(frame: Image.Image) -> Image.Image:
    """JPEG has no alpha: composite transparent pixels onto white, as Slack shows them."""
    if frame.mode in ("RGBA", "LA"):
        background = Image.new("RGB", frame.size, (255, 255, 255))
        background.paste(frame.convert("RGBA"), mask=frame.getchannel("A"))
        return background
    return frame


def _save(frame: Image.Image, pillow_format: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    frame.save(buffer, format=pillow_format, **options)
    return buffer.getvalue()


def _check_decodes(encoded: bytes, media_type: str, limits: _ImageLimits) -> None:
    """Decodes the final bytes once more: what goes into history must be an image Claude reads."""
    with Image.open(io.BytesIO(encoded), formats=[_PILLOW_FORMATS[media_type]]) as check:
        check.load()
        if max(check.size) > limits.max_long_edge:
            raise ValueError("re-encoded image is larger than the limit")
