"""Image bytes → an image block Claude accepts, or a refusal with the note to show.

Why this module is careful:

- Images come from users: their pixel count is checked before decoding, and decoding runs in
  worker threads so the event loop keeps serving other conversations.
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
import io
import logging
import math
from collections.abc import Iterable
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
class _Limits:
    max_long_edge: int
    max_pixels: int
    max_base64: int


def _refuse(name: str, problem: messages.FileProblem, **details: object) -> FileRefused:
    return FileRefused(name, messages.file_note(problem, name, **details))


class Images:
    """Turns downloaded bytes into image blocks.

    Made once per process; `convert` is safe to call from many conversations at once, and the
    decode semaphore is shared between them.
    """

    def __init__(
        self,
        *,
        max_long_edge: int = DEFAULT_MAX_LONG_EDGE,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        max_concurrent_decodes: int = DEFAULT_MAX_CONCURRENT_DECODES,
    ) -> None:
        if max_concurrent_decodes < 1 or max_pixels < 1:
            raise ValueError("limits must be positive")
        if not 1 <= max_long_edge <= MAX_ALLOWED_LONG_EDGE:
            raise ValueError(f"max_long_edge must be between 1 and {MAX_ALLOWED_LONG_EDGE}")
        self._limits = _Limits(
            max_long_edge=max_long_edge, max_pixels=max_pixels, max_base64=MAX_BASE64_BYTES
        )
        self._decode_slots = asyncio.Semaphore(max_concurrent_decodes)

    async def convert(self, data: bytes, name: str) -> ImageBlock:
        """The image block for `data`, or FileRefused (not an image, too large, …)."""
        async with self._decode_slots:
            media_type, encoded = await asyncio.to_thread(_prepare_image, data, name, self._limits)
        return ImageBlock(
            media_type=media_type, data=base64.b64encode(encoded).decode("ascii"), name=name
        )


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


def _prepare_image(data: bytes, name: str, limits: _Limits) -> tuple[str, bytes]:
    """Checks the bytes are the image they claim to be and returns (media type, bytes) that Claude
    accepts: the original when it already fits, else a shrunk re-encoding.

    Blocking (Pillow): call through `asyncio.to_thread`.
    """
    media_type = sniff_media_type(data)
    if media_type is None:
        raise _refuse(name, "not_an_image")
    try:
        with Image.open(io.BytesIO(data), formats=[_PILLOW_FORMATS[media_type]]) as image:
            width, height = image.size
            # Pillow's own bomb check only warns below 2× MAX_IMAGE_PIXELS: check ours first.
            if width * height > limits.max_pixels:
                raise _refuse(name, "too_many_pixels_sized", width=width, height=height)
            if _fits_as_is(image, len(data), limits):
                _decode_all_frames(image)
                return media_type, data
            image.seek(0)
            return _re_encode(image, media_type, name, limits)
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
