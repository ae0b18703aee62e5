"""Fitting one request into the model's context window: estimate, trim, calibrate, count.

A thread can outgrow the window. `fit` keeps the request within the token limit, the number of
images, the PDF pages and the bytes a request may carry, by cutting the conversation: first the
files (images and documents) of older turns, then the oldest turns after the thread's first
message (which usually states the task), with a marker where turns were left out. A cut goes
well below the limit (`TRIM_TO`) and is remembered per conversation (`Trim`), so the following
mentions send the same prefix again and keep reading it from the prompt cache.

Every turn carries a token estimate (computed once and stored); each conversation keeps a
calibration ratio learnt from the API's own count of its last request. Estimates decide while a
request is clearly within the window; near the limit `messages.count_tokens` is asked and decides.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import io
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

from PIL import Image

from slackbot import pdfs
from slackbot.claude import Claude
from slackbot.history import OMITTED_MARKER, OMITTED_ROLE, Message, build_messages, render_turn
from slackbot.model_lookup import ModelLimits
from slackbot.store import StoredDocument, StoredImage, Turn, WindowState

#: The note that replaces the images of an older turn.
IMAGES_OMITTED = "{n} image(s) shared here were omitted to fit the context window"
#: The note that replaces the documents (PDFs, texts) of an older turn.
FILES_OMITTED = "{n} file(s) shared here were omitted to fit the context window"
#: Appended to a message whose text had to be shortened (only when nothing else could go).
TEXT_SHORTENED = "\n[…the rest of this message was cut to fit the context window]"

#: The API accepts 100 images per request (above 20, each must be at most 2000 px on a side,
#: which `images.py` guarantees by keeping images within 1568 px).
MAX_IMAGES_PER_REQUEST = 100
#: The API's 32 MB per request, less room for the JSON around the base64 data.
MAX_REQUEST_BYTES = 30 * 1024 * 1024
#: When a conversation must be cut, cut it down to this share of each limit at once, so the
#: next mentions share a stable prefix instead of shifting it by one turn each time.
TRIM_TO = 0.65

#: Estimation: tokens per character of text (an over-estimate for English prose), a fixed cost
#: per content block, and the API's image formula (width × height / 750, at most ~1600 tokens
#: after its own downscaling to 1568 px / 1.15 megapixels).
CHARS_PER_TOKEN = 3.5
BLOCK_TOKENS = 8
IMAGE_TOKENS_MAX = 1600
MIN_SHORTENED_CHARS = 400
#: A PDF page costs its text plus the page as an image; this is the image part, and a guess
#: (the API's guidance is 1,500–3,000 tokens a page in all) until calibrated.
PDF_PAGE_TOKENS = 1500


def estimate_text_tokens(text: str) -> int:
    return BLOCK_TOKENS + math.ceil(len(text) / CHARS_PER_TOKEN)


def image_tokens(image: StoredImage) -> int:
    """The API's cost of an image: width × height / 750 after it fits 1568 px and 1.15 MP."""
    try:
        raw = base64.b64decode(image.data, validate=False)
        with Image.open(io.BytesIO(raw)) as opened:
            width, height = opened.size
    except (binascii.Error, ValueError, OSError, SyntaxError):
        return IMAGE_TOKENS_MAX
    return BLOCK_TOKENS + min(IMAGE_TOKENS_MAX, math.ceil(width * height / 750))


def document_tokens(document: StoredDocument) -> int:
    """A document's cost: its text (a PDF's as sampled when it was read), its title, and for a
    PDF each page's image."""
    chars = document.text_chars if document.kind == "pdf" else len(document.data)
    pages = (document.pages or 0) if document.kind == "pdf" else 0
    return (
        BLOCK_TOKENS
        + math.ceil((chars + len(document.name)) / CHARS_PER_TOKEN)
        + pages * PDF_PAGE_TOKENS
    )


def estimate_turn_tokens(turn: Turn) -> int:
    """Estimated input tokens of one rendered turn (images are decoded: not on the event loop
    for a turn with large images)."""
    _, blocks = render_turn(turn)
    text_tokens = sum(estimate_text_tokens(b["text"]) for b in blocks if b["type"] == "text")
    return (
        text_tokens
        + sum(image_tokens(image) for image in turn.images)
        + sum(document_tokens(document) for document in turn.documents)
    )


def _document_bytes(document: StoredDocument) -> int:
    data = document.data
    return (len(data) if data.isascii() else len(data.encode("utf-8"))) + len(document.name) + 128


def _turn_bytes(turn: Turn) -> int:
    return (
        len(turn.text)
        + sum(len(image.data) for image in turn.images)
        + sum(_document_bytes(document) for document in turn.documents)
        + 64
    )


def _pdf_pages(turn: Turn) -> int:
    return sum(document.pages or 0 for document in turn.documents if document.kind == "pdf")


@dataclass(frozen=True)
class Trim:
    """Where a conversation was cut: turns between its first message and `kept_from_id` are
    left out, and so are the files (images and documents) of turns before `images_from_id` (the
    turn being answered always keeps its own). Stored per conversation so every mention cuts at
    the same place."""

    kept_from_id: int | None = None
    images_from_id: int | None = None

    @property
    def active(self) -> bool:
        return self.kept_from_id is not None or self.images_from_id is not None


@dataclass(frozen=True)
class Window:
    """What one request may hold. `tokens` covers everything but the output (the caller has
    already taken `max_tokens` and a safety margin off the window); `fixed_tokens` is the raw
    estimate of what always goes (the system prompt); `ratio` turns raw estimates into the
    API's count, as measured on the conversation's last request."""

    tokens: int
    fixed_tokens: int = 0
    ratio: float = 1.0
    max_images: int = MAX_IMAGES_PER_REQUEST
    max_bytes: int = MAX_REQUEST_BYTES
    max_pages: int = pdfs.MAX_PAGES

    def fits(self, tokens: int, images: int, pages: int, size: int, share: float = 1.0) -> bool:
        return (
            tokens * self.ratio <= self.tokens * share
            and images <= self.max_images * share
            and pages <= self.max_pages * share
            and size <= self.max_bytes * share
        )


@dataclass(frozen=True)
class Fitted:
    """The turns to send (marker included) and what they are estimated to cost."""

    turns: list[Turn]
    trim: Trim
    raw_tokens: int  # estimate before calibration, system prompt included
    images: int
    size: int
    shortened: bool = False
    pages: int = 0  # of PDF

    @property
    def omitted(self) -> bool:
        return self.trim.active or self.shortened

    def tokens(self, ratio: float) -> int:
        return math.ceil(self.raw_tokens * ratio)

    def messages(self) -> list[Message]:
        return build_messages(self.turns)


class _Cost(NamedTuple):
    tokens: int
    images: int
    pages: int
    size: int


def _plus(a: _Cost, b: _Cost) -> _Cost:
    return _Cost(a.tokens + b.tokens, a.images + b.images, a.pages + b.pages, a.size + b.size)


def _minus(a: _Cost, b: _Cost) -> _Cost:
    return _Cost(a.tokens - b.tokens, a.images - b.images, a.pages - b.pages, a.size - b.size)


_ZERO = _Cost(0, 0, 0, 0)
_MARKER = Turn(id=0, role=OMITTED_ROLE, ts="", text=OMITTED_MARKER)


def _tokens_of(turn: Turn) -> int:
    return turn.tokens if turn.tokens is not None else estimate_turn_tokens(turn)


def _cost(turn: Turn) -> _Cost:
    return _Cost(_tokens_of(turn), len(turn.images), _pdf_pages(turn), _turn_bytes(turn))


def without_files(turn: Turn) -> Turn:
    """The turn without its images and documents, and a note for each kind that went."""
    return keep_newest_documents(keep_newest_images(turn, 0), 0)


def keep_newest_images(turn: Turn, keep: int) -> Turn:
    """The turn with only its `keep` newest images, and a note saying how many went."""
    dropped = len(turn.images) - max(keep, 0)
    if dropped <= 0:
        return turn
    note = IMAGES_OMITTED.format(n=dropped)
    kept = turn.images[dropped:]
    return replace(turn, images=kept, notes=(*turn.notes, note), tokens=None)


def keep_newest_documents(turn: Turn, keep: int) -> Turn:
    """The turn with only its `keep` newest documents, and a note saying how many went."""
    dropped = len(turn.documents) - max(keep, 0)
    if dropped <= 0:
        return turn
    note = FILES_OMITTED.format(n=dropped)
    kept = turn.documents[dropped:]
    return replace(turn, documents=kept, notes=(*turn.notes, note), tokens=None)


def fit(turns: Sequence[Turn], window: Window, trim: Trim = Trim()) -> Fitted:
    """The turns to send for this request (see the module doc).

    `turns` is the conversation in order, ending with the message being answered. The stored
    `trim` is applied first; only if the result does not fit is a new, deeper cut made (from
    where the old one was, towards the end), to `TRIM_TO` of each limit. If even the first
    message plus the last one do not fit, their text is shortened: a mention never fails
    because the thread is long.
    """
    turns = _from_first_user_turn(turns)
    if not turns:
        return Fitted([], Trim(), window.fixed_tokens, 0, 0)
    positions = {turn.id: i for i, turn in enumerate(turns)}
    last = len(turns) - 1
    keep = _position(positions, trim.kept_from_id, default=1, last=last)
    images = _position(positions, trim.images_from_id, default=0, last=last)
    costs = _Costs(turns, window.fixed_tokens)
    if window.fits(*costs.total(keep, images)):
        return _build(turns, keep, images, costs)
    for images_at in range(images + 1, last + 1):
        had_files = turns[images_at - 1].images or turns[images_at - 1].documents
        if had_files and window.fits(*costs.total(keep, images_at), TRIM_TO):
            return _build(turns, keep, images_at, costs)
    images = last
    for keep_at in range(keep, last + 1):
        if window.fits(*costs.total(keep_at, images), TRIM_TO):
            return _build(turns, keep_at, images, costs)
    return _shorten(_build(turns, last, images, costs), window)


def _from_first_user_turn(turns: Sequence[Turn]) -> list[Turn]:
    """Leading bot messages are never sent (a request starts with a user turn)."""
    start = next((i for i, turn in enumerate(turns) if turn.role == "user"), len(turns))
    return list(turns[start:])


def _position(positions: dict[int, int], turn_id: int | None, *, default: int, last: int) -> int:
    if turn_id is None or turn_id not in positions:
        return min(default, last)
    return max(min(positions[turn_id], last), default)


class _Costs:
    """Prefix sums of each turn's cost with and without its files, so any cut is priced in
    O(1). A cut is (keep, images): turns 1..keep-1 are left out, turns before `images` lose
    their images and documents; turn 0 (the first message) and the last turn are always
    sent."""

    def __init__(self, turns: list[Turn], fixed_tokens: int) -> None:
        self.last = len(turns) - 1
        self.fixed = _Cost(fixed_tokens, 0, 0, 0)
        self.marker = _cost(_MARKER)
        self.full = [_cost(turn) for turn in turns]
        self.bare = [_cost(without_files(turn)) for turn in turns[:-1]] + [self.full[-1]]
        self._full_sums = self._sums(self.full)
        self._bare_sums = self._sums(self.bare)

    @staticmethod
    def _sums(costs: list[_Cost]) -> list[_Cost]:
        sums = [_ZERO]
        for cost in costs:
            sums.append(_plus(sums[-1], cost))
        return sums

    def total(self, keep: int, images: int) -> _Cost:
        end = self.last + 1
        first = self.bare[0] if images > 0 else self.full[0]
        if self.last == 0:
            return _plus(self.fixed, self.full[0])
        split = max(keep, min(images, end))
        bare = _minus(self._bare_sums[split], self._bare_sums[keep])
        full = _minus(self._full_sums[end], self._full_sums[split])
        marker = self.marker if keep > 1 else _ZERO
        return _plus(_plus(self.fixed, first), _plus(marker, _plus(bare, full)))


def _build(turns: list[Turn], keep: int, images: int, costs: _Costs) -> Fitted:
    last = len(turns) - 1
    out: list[Turn] = []
    for i, turn in enumerate(turns):
        if 0 < i < keep and i < last:
            if i == 1:
                out.append(_MARKER)
            continue
        out.append(without_files(turn) if i < images and i < last else turn)
    total = costs.total(keep, images)
    trim = Trim(
        kept_from_id=turns[keep].id if keep > 1 else None,
        images_from_id=turns[images].id if images > 0 else None,
    )
    return Fitted(out, trim, total.tokens, total.images, total.size, pages=total.pages)


def _shorten(fitted: Fitted, window: Window) -> Fitted:
    """Last resort: the message being answered keeps only its newest documents, then its newest
    images, that a request can carry; then the text of the first, then the last message is
    halved until it all fits; then the last message's oldest documents go, then its oldest
    images, one by one, until it does."""
    turns = list(fitted.turns)

    def measure() -> _Cost:
        total = _Cost(window.fixed_tokens, 0, 0, 0)
        for turn in turns:
            total = _plus(total, _cost(turn))
        return total

    def keep_while(
        count: Callable[[Turn], int],
        keep_newest: Callable[[Turn, int], Turn],
        too_many: Callable[[], bool],
    ) -> None:
        original = turns[-1]
        keep = count(original)
        while keep > 0 and too_many():
            keep -= 1
            turns[-1] = keep_newest(original, keep)

    def documents(turn: Turn) -> int:
        return len(turn.documents)

    def images(turn: Turn) -> int:
        return len(turn.images)

    def over_request() -> bool:
        cost = measure()
        return cost.pages > window.max_pages or cost.size > window.max_bytes

    def over_images() -> bool:
        cost = measure()
        return cost.images > window.max_images or cost.size > window.max_bytes

    keep_while(documents, keep_newest_documents, over_request)
    keep_while(images, keep_newest_images, over_images)
    for index in [0, len(turns) - 1] if len(turns) > 1 else [0]:
        while not window.fits(*measure()) and len(turns[index].text) > MIN_SHORTENED_CHARS:
            turn = turns[index]
            text = turn.text.removesuffix(TEXT_SHORTENED)
            turns[index] = replace(turn, text=text[: len(text) // 2] + TEXT_SHORTENED, tokens=None)
    keep_while(documents, keep_newest_documents, lambda: not window.fits(*measure()))
    keep_while(images, keep_newest_images, lambda: not window.fits(*measure()))
    total = measure()
    return Fitted(
        turns,
        fitted.trim,
        total.tokens,
        total.images,
        total.size,
        shortened=True,
        pages=total.pages,
    )


log = logging.getLogger(__name__)

#: Above this share of the token window (by estimate), the API counts the request first.
NEAR_LIMIT = 0.85
#: Kept free in the window besides `max_tokens`: the count-tokens endpoint is an estimate too.
SAFETY_SHARE = 0.02
SAFETY_MIN_TOKENS = 256
#: Calibration ratios outside this range are taken for a glitch and clamped.
RATIO_RANGE = (0.25, 4.0)


def calibration(actual: int, estimated: int) -> float:
    """The API's count over our estimate, clamped so one odd reading can't skew the window."""
    low, high = RATIO_RANGE
    return min(high, max(low, actual / max(1, estimated)))


async def with_estimates(turns: Sequence[Turn]) -> tuple[list[Turn], dict[int, int]]:
    """The turns with their token estimates, and the estimates that were missing (computed
    off the event loop) for the caller to store once the reply is under way."""
    missing = [turn for turn in turns if turn.tokens is None]
    if not missing:
        return list(turns), {}
    if any(turn.images for turn in missing):  # images are decoded to measure them
        estimates = await asyncio.to_thread(
            lambda: {turn.id: estimate_turn_tokens(turn) for turn in missing}
        )
    else:  # text is only measured: cheaper than a hop to another thread
        estimates = {turn.id: estimate_turn_tokens(turn) for turn in missing}
    turns = [dataclasses.replace(t, tokens=estimates.get(t.id, t.tokens)) for t in turns]
    return turns, estimates


def window_for(
    claude: Claude, limits: ModelLimits, ratio: float | None, *, extra: str = ""
) -> Window:
    """What one request may hold; `extra` is text sent besides the turns (the mention's
    context)."""
    window = limits.max_input_tokens
    margin = max(SAFETY_MIN_TOKENS, int(window * SAFETY_SHARE))
    fixed = estimate_text_tokens(claude.system) + (estimate_text_tokens(extra) if extra else 0)
    return Window(
        tokens=max(1, window - claude.max_tokens - margin),
        fixed_tokens=fixed,
        ratio=ratio or 1.0,
        max_pages=pdfs.page_limit(window),
    )


async def fit_to_window(
    claude: Claude,
    limits: ModelLimits,
    turns: list[Turn],
    state: WindowState,
    *,
    extra: str = "",
) -> tuple[Fitted, float]:
    """The turns that fit the window, and the calibration ratio they were measured with."""
    window = window_for(claude, limits, state.token_ratio, extra=extra)
    fitted = fit(turns, window, Trim(state.kept_from_id, state.images_from_id))
    if fitted.tokens(window.ratio) > NEAR_LIMIT * window.tokens:
        counted = await claude.count_tokens(fitted.messages())
        if counted:
            window = dataclasses.replace(window, ratio=calibration(counted, fitted.raw_tokens))
            if counted > window.tokens:
                fitted = fit(turns, window, fitted.trim)
    if fitted.trim != Trim(state.kept_from_id, state.images_from_id):
        log.info(
            "conversation cut to fit the window: about %d of %d tokens",
            fitted.tokens(window.ratio),
            window.tokens,
        )
    return fitted, window.ratio
