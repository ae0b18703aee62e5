"""Image bytes → an image block Claude accepts, or a refusal with the note to show.

Why this module is careful:

- Images come from users: their pixel count is checked before decoding, and decoding runs in
  worker threads so the event loop keeps serving other conversations.
- A small file can decode to a huge image (a 150 kB single-colour PNG is 200 MB of pixels), so
  what decoding will cost is read from the header first (`Images.open`): the caller can refuse an
  image its message cannot afford, and the pixels being decoded at once, across every
  conversation, are bounded (`Images.convert`), not just the number of decodes.
- Memory freed after a large decode is handed back to the system: a long-running bot must not
  keep the peak of its largest attachment for ever.
- The media type sent to Claude comes from the bytes, never from what the uploader's file name
  (or Slack, which derives it from the name) claims: Claude rejects a block whose type is wrong.
- Claude downscales anything above ~1568 px on the long edge anyway, so larger images are shrunk
  here first (fewer tokens, faster uploads) and re-encoded under its 5 MB base64 limit.
- An image Claude rejects, once stored in a thread's history, breaks every later turn, so every
  image is decoded again, in its final form, before it is returned.

It knows nothing of Slack: `slack_files.py` fetches the bytes, `attachments.py` calls this.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ctypes
import functools
import io
import logging
import math
import sys
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from PIL import ExifTags, Image

from slackbot import messages
from slackbot.errors import FileRefused

logger = logging.getLogger(__name__)

DEFAULT_MAX_CONCURRENT_DECODES = 2
# Claude downscales anything with a longer edge anyway; sending less saves tokens and upload time.
DEFAULT_MAX_LONG_EDGE = 1568
# Refuse before decoding: 50 MP of RGBA is already 200 MB of memory per decode.
DEFAULT_MAX_PIXELS = 50_000_000
# Pixels decoded at once in the whole process: one image at the limit above, or several smaller.
DEFAULT_MAX_DECODING_PIXELS = DEFAULT_MAX_PIXELS
# Claude's limit is 5 MB (5,242,880 bytes) of base64 per image.
MAX_BASE64_BYTES = 5 * 1024 * 1024
# Claude refuses images with an edge above 8000 px.
MAX_ALLOWED_LONG_EDGE = 8000

# Media types Claude accepts, and the Pillow format that decodes each.
_PILLOW_FORMATS = {
    "image/png": "PNG",
    "image/jpeg": "JPEG",
    "image/gif": "GIF",
    "image/webp": "WEBP",
}
MEDIA_TYPES = frozenset(_PILLOW_FORMATS)
"""The image types this module reads: the ones Claude accepts."""

FILETYPES = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
}
"""Slack's `filetype` (and file-name extension) of each of them."""

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
# Shrinking first decodes (JPEG draft mode, 1/2 to 1/8 scale) or reduces to no less than this
# multiple of the final size, then resamples the rest of the way.
_REDUCING_GAP = 2.0


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
class OpenedImage:
    """Bytes whose header has been read and checked, and what decoding them will cost."""

    data: bytes
    name: str
    media_type: str
    as_is: bool  # the bytes go to Claude unchanged (after every frame decodes)
    pixels: int  # decoded in all: every frame of an animation kept as is, else one
    frame_pixels: int  # decoded at once: what one decode holds in memory


@dataclass(frozen=True)
class _Limits:
    max_long_edge: int
    max_pixels: int
    max_base64: int


def _refuse(name: str, problem: messages.FileProblem, **details: object) -> FileRefused:
    return FileRefused(name, messages.file_note(problem, name, **details))


class Images:
    """Turns downloaded bytes into image blocks.

    Made once per process; safe to call from many conversations at once, and the limit on
    decoding (`max_concurrent_decodes` decodes, `max_decoding_pixels` pixels) is shared by them.
    """

    def __init__(
        self,
        *,
        max_long_edge: int = DEFAULT_MAX_LONG_EDGE,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        max_concurrent_decodes: int = DEFAULT_MAX_CONCURRENT_DECODES,
        max_decoding_pixels: int = DEFAULT_MAX_DECODING_PIXELS,
    ) -> None:
        if max_concurrent_decodes < 1 or max_pixels < 1 or max_decoding_pixels < 1:
            raise ValueError("limits must be positive")
        if not 1 <= max_long_edge <= MAX_ALLOWED_LONG_EDGE:
            raise ValueError(f"max_long_edge must be between 1 and {MAX_ALLOWED_LONG_EDGE}")
        self._limits = _Limits(
            max_long_edge=max_long_edge, max_pixels=max_pixels, max_base64=MAX_BASE64_BYTES
        )
        self._decoding = _DecodeLimit(max_concurrent_decodes, max_decoding_pixels)

    async def open(self, data: bytes, name: str) -> OpenedImage:
        """Reads the header only: the media type from the bytes, the size, what decoding will
        cost. Raises FileRefused for bytes that are not an image or one with too many pixels."""
        return await asyncio.to_thread(_open, data, name, self._limits)

    async def convert(self, opened: OpenedImage) -> ImageBlock:
        """The image block for an opened image, or FileRefused (it doesn't decode, …); waits
        while other decodes hold the process's pixels."""
        async with self._decoding.hold(opened.frame_pixels):
            media_type, encoded = await asyncio.to_thread(_decode, opened, self._limits)
        return ImageBlock(
            media_type=media_type, data=base64.b64encode(encoded).decode("ascii"), name=opened.name
        )


class _DecodeLimit:
    """At most `max_decodes` decodes and `max_pixels` pixels being decoded at once, first come
    first served.

    Memory is what a decode costs (Pillow holds RGB and RGBA at 4 bytes a pixel, plus the
    resizing), so a count of decodes alone let a handful of tiny PNGs take most of a gigabyte.
    An image larger than `max_pixels` is decoded alone. Waiting is in arrival order, so a large
    image is not starved by a stream of small ones.
    """

    def __init__(self, max_decodes: int, max_pixels: int) -> None:
        self._max_decodes = max_decodes
        self._max_pixels = max_pixels
        self._decodes = 0
        self._pixels = 0
        self._waiting: deque[tuple[int, asyncio.Future[None]]] = deque()

    @contextlib.asynccontextmanager
    async def hold(self, pixels: int) -> AsyncIterator[None]:
        weight = min(max(pixels, 1), self._max_pixels)
        await self._acquire(weight)
        try:
            yield
        finally:
            self._release(weight)

    def _fits(self, weight: int) -> bool:
        return self._decodes < self._max_decodes and self._pixels + weight <= self._max_pixels

    def _take(self, weight: int) -> None:
        self._decodes += 1
        self._pixels += weight

    async def _acquire(self, weight: int) -> None:
        if not self._waiting and self._fits(weight):
            self._take(weight)
            return
        entry = (weight, asyncio.get_running_loop().create_future())
        self._waiting.append(entry)
        try:
            await entry[1]
        except asyncio.CancelledError:
            if entry[1].done() and not entry[1].cancelled():
                self._release(weight)  # granted just as the waiter was cancelled
            else:
                self._waiting.remove(entry)
                self._wake()
            raise

    def _release(self, weight: int) -> None:
        self._decodes -= 1
        self._pixels -= weight
        self._wake()

    def _wake(self) -> None:
        while self._waiting and self._fits(self._waiting[0][0]):
            weight, granted = self._waiting.popleft()
            self._take(weight)
            granted.set_result(None)


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


def _base64_length(size: int) -> int:
    return 4 * math.ceil(size / 3)


def _open(data: bytes, name: str, limits: _Limits) -> OpenedImage:
    """Checks the header and works out what decoding will cost, without decoding any pixels.

    Blocking (Pillow): call through `asyncio.to_thread`.
    """
    media_type = sniff_media_type(data)
    if media_type is None:
        raise _refuse(name, "not_an_image")
    with _pillow_errors_refused(name), _pillow_open(data, media_type) as image:
        width, height = image.size
        # Pillow's own bomb check only warns below 2× MAX_IMAGE_PIXELS: check ours first.
        if width * height > limits.max_pixels:
            raise _refuse(name, "too_many_pixels_sized", width=width, height=height)
        if _fits_as_is(image, len(data), limits):
            pixels = width * height
            return OpenedImage(data, name, media_type, True, pixels * _frame_count(image), pixels)
        if _drafts(image, media_type, limits):
            _draft(image, limits)  # as `_re_encode` will; changes only the size decoded
            width, height = image.size
        pixels = width * height
        return OpenedImage(data, name, media_type, False, pixels, pixels)


def _decode(opened: OpenedImage, limits: _Limits) -> tuple[str, bytes]:
    """Returns (media type, bytes) that Claude accepts: the original when it already fits (every
    frame decoded to check), else a shrunk re-encoding.

    Blocking (Pillow): call through `asyncio.to_thread`.
    """
    try:
        with (
            _pillow_errors_refused(opened.name),
            _pillow_open(opened.data, opened.media_type) as image,
        ):
            if opened.as_is:
                _decode_all_frames(image)
                return opened.media_type, opened.data
            return _re_encode(image, opened.media_type, opened.name, limits)
    finally:
        if opened.frame_pixels >= _RELEASE_AFTER_PIXELS:
            _release_memory()


def _pillow_open(data: bytes, media_type: str) -> Image.Image:
    return Image.open(io.BytesIO(data), formats=[_PILLOW_FORMATS[media_type]])


@contextlib.contextmanager
def _pillow_errors_refused(name: str) -> Iterator[None]:
    """Pillow's errors for a bad image, as the refusal the person sees."""
    try:
        yield
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Raised by Image.open for headers far beyond MAX_IMAGE_PIXELS (the warning only when
        # warnings are errors, as in tests); either way, far beyond our own limit.
        raise _refuse(name, "too_many_pixels") from exc
    except FileRefused:
        raise
    except Exception as exc:
        # Pillow's decoders raise a zoo of types for malformed input (OSError, SyntaxError,
        # ValueError, struct.error, EOFError, ...): all mean "not an image Claude would accept".
        logger.info("image %s does not decode: %s", name, type(exc).__name__)
        raise _refuse(name, "not_an_image") from exc


def _drafts(image: Image.Image, media_type: str, limits: _Limits) -> bool:
    """Whether re-encoding lets the JPEG decoder scale down while decoding (draft mode)."""
    return (
        media_type == "image/jpeg"
        and image.mode in ("L", "RGB")
        and max(image.size) > limits.max_long_edge
    )


def _draft(image: Image.Image, limits: _Limits) -> None:
    """Has the JPEG decoder scale down while decoding, to no less than `_REDUCING_GAP` times the
    final size along both edges.

    thumbnail() asks the same of a square box, which leaves a 4:3 photo at full size: an
    8000×6000 one then decodes to 48 MP (~250 MB) instead of 12 MP (~70 MB).
    """
    width, height = image.size
    scale = limits.max_long_edge / max(width, height) * _REDUCING_GAP
    image.draft(None, (max(1, int(width * scale)), max(1, int(height * scale))))


def _frame_count(image: Image.Image) -> int:
    return int(getattr(image, "n_frames", 1))


def _orientation(image: Image.Image) -> int:
    value = image.getexif().get(ExifTags.Base.Orientation, 1)
    return value if isinstance(value, int) else 1


def _fits_as_is(image: Image.Image, size: int, limits: _Limits) -> bool:
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
    image: Image.Image, source_type: str, name: str, limits: _Limits
) -> tuple[str, bytes]:
    orientation = _orientation(image)
    box = (limits.max_long_edge, limits.max_long_edge)
    if source_type == "image/jpeg" and image.mode in ("L", "RGB"):
        # Resize before anything loads the pixels: the decoder then works at a fraction of the
        # size (what `_open` counted).
        if _drafts(image, source_type, limits):
            _draft(image, limits)
        image.thumbnail(box, Image.Resampling.LANCZOS, reducing_gap=_REDUCING_GAP)
        frame: Image.Image = image
    else:
        frame = _normalised(image)
        frame.thumbnail(box, Image.Resampling.LANCZOS, reducing_gap=_REDUCING_GAP)
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
    raise _refuse(name, "too_detailed")


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


def _check_decodes(encoded: bytes, media_type: str, limits: _Limits) -> None:
    """Decodes the final bytes once more: what goes into history must be an image Claude reads."""
    with Image.open(io.BytesIO(encoded), formats=[_PILLOW_FORMATS[media_type]]) as check:
        check.load()
        if max(check.size) > limits.max_long_edge:
            raise ValueError("re-encoded image is larger than the limit")


# --- Giving memory back
#
# Measured with `tests/decode_memory.py` (nine 7000×7000 PNGs over two messages, from a ~95 MB
# baseline). Before any of this: ~800 MB peak, ~650 MB kept. Bounding the pixels decoded at once
# alone did not help (~800 MB peak, ~700 MB kept): glibc keeps what a decode freed in the arena of
# the worker thread that used it, and Pillow's 16 MB blocks stop being mmapped once the first one
# is freed, so each decode in another thread added its ~200 MB. Trimming after each large decode,
# with that bound, keeps the peak at one decode (~370 MB) and gives everything back (~95 MB);
# trimming without the bound still peaked at ~640 MB. Fixing glibc's mmap threshold instead
# helped as much but changes every allocation of the process; Pillow's block cache
# (`Image.core.set_blocks_max`) is already off by default and, turned on, only keeps more.

# Below this, a decode's memory is small enough to leave to the allocator.
_RELEASE_AFTER_PIXELS = 1_000_000


def _find_malloc_trim() -> Callable[[], object] | None:
    """glibc's `malloc_trim(0)`, or None where there is none (musl, macOS)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        malloc_trim = ctypes.CDLL(None).malloc_trim  # the C library the interpreter runs on
    except (OSError, AttributeError):
        return None
    malloc_trim.argtypes = [ctypes.c_size_t]
    malloc_trim.restype = ctypes.c_int
    return functools.partial(malloc_trim, 0)


_MALLOC_TRIM = _find_malloc_trim()


def _release_memory() -> None:
    """Hands the memory a decode freed back to the system, in every thread's arena.

    Called after the decoded image is closed. A failed decode's partial copies may still be
    held by its traceback at that point: they are at most a resized frame, and the next large
    decode's trim returns them.
    """
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM()
