"""Claude's Markdown, cut into Slack messages.

Slack renders standard Markdown passed as `markdown_text` to chat.postMessage and chat.update, so
Claude's answer needs no conversion. What it does need is cutting: one message holds at most
12,000 characters, and a long answer must continue in further messages without breaking what
Slack shows. A cut should land where a reader would pause (a blank line, then a line break, then a
sentence end or a space) and must never leave a code block open: the first message gets a closing
fence and the next one reopens the block with the same language, so both render as code.

The streaming reply calls `split_first` on the growing tail of an answer many times, so the work
per call is bounded by `limit` (plus the line that crosses it), not by the length of the text.

Fences are recognised as CommonMark has them at the top level: three or more backticks or tildes
indented by at most three spaces, closed by a line of the same character, at least as long, with
nothing after it. Fences inside block quotes or deeper list indentation are treated as prose;
cutting near them is still safe, only less pretty.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

#: Default size of one message: a margin under Slack's 12,000-character `markdown_text` limit.
MESSAGE_LIMIT = 10_000

# A fence line at the top level: indent, marker, the rest of the line (the info string).
_FENCE = re.compile(r"^( {0,3})(`{3,}|~{3,})([^\n]*)", re.MULTILINE)
# A line break followed by a blank line: the end of a paragraph.
_PARAGRAPH_END = re.compile(r"\n(?=[ \t]*\n)")
# Sentence-ending punctuation (with closing quotes or brackets) followed by a space or tab.
_SENTENCE_END = re.compile(r"[.!?…][\"'”’)\]*_]*(?=[ \t])")
# Spans a cut should not fall into: links and images, inline code, autolinks, bold, strikethrough.
_ATOM = re.compile(
    r"!?\[[^\]\n]*\]\([^)\n]*\)|`[^`\n]+`|<[a-z][a-z0-9+.-]*:[^>\s]*>"
    r"|\*\*[^*\n]+\*\*|__[^_\n]+__|~~[^~\n]+~~"
)
# A heading line: a cut right after one would leave it at the bottom of a message, cut off from
# the section it introduces.
_HEADING = re.compile(r" {0,3}#{1,6}(?:[ \t]|$)")
_NON_SPACE = re.compile(r"\S")
_SPACE_RUN = re.compile(r"\s*")

# How far back (in characters) the search for a paragraph or sentence end looks at first.
_SEARCH_CHUNK = 512
# How far past `limit` to look for the end of a link that starts before it.
_ATOM_LOOKAHEAD = 2048
# A cut moves back at most this far to keep a grapheme (emoji sequence, accents) whole.
_MAX_GRAPHEME_BACKOFF = 32


@dataclass(frozen=True, slots=True)
class _Block:
    """A fenced code block as found in the text (positions are indexes into it)."""

    open_start: int  # first character of the opening fence line
    content_start: int  # first character after the opening line's newline
    close_start: int | None  # first character of the closing fence line; None while unclosed
    close_end: int | None  # the newline ending the closing line (or the end of the text)
    opening: str  # the opening line: indent, marker and info string, e.g. "```python"
    closing: str  # what closes it: the same indent and marker, e.g. "```"


@dataclass(frozen=True, slots=True)
class _Segment:
    """A run of positions where a cut is allowed, all inside one code block or all outside.

    A cut at position p means the head is text[:p]. Positions within a fence line, right after
    an opening line and right before a closing line are in no segment: a cut there would leave
    an empty code block on one side.
    """

    start: int
    end: int  # inclusive
    block: _Block | None  # the code block the cut would fall in, or None for prose
    before_fence: bool = False  # `end` is the start of an opening fence line
    after_fence: bool = False  # `start` is the newline that ends a closing fence line


def split_first(text: str, limit: int = MESSAGE_LIMIT) -> tuple[str, str]:
    """Cut `text` into a first message of at most `limit` characters and the rest.

    Returns `(text, "")` when it already fits. Otherwise the head ends at the cleanest boundary
    in reach, preferring the second half of the window so messages are not needlessly short:
    a paragraph break outside code, a line break outside code, a line break inside code, a
    sentence end, a space, and only then a hard cut. Breaks right after a heading are passed
    over (the heading belongs with its section); cuts avoid the middle of a `[label](url)`
    link, inline code and bold text when they can, and keep surrogate pairs, emoji sequences
    and accented letters whole.

    Whitespace at a cut in prose is dropped; nothing else is. A cut inside a fenced code block
    gives the head a closing fence (counted within `limit`) and starts the rest with the opening
    fence line again, info string included; apart from those two lines the rest is a suffix of
    `text`, which lets a streaming reply keep reading the text by offset.
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    if len(text) <= limit:
        return text, ""
    first_visible = _NON_SPACE.search(text)
    if first_visible is None:
        return _raw_cut(text, limit)  # nothing visible to protect; just make progress
    if first_visible.start() >= limit:
        # Blank lines longer than a message lead the text: they would show nothing, so drop them.
        text = text[text.rfind("\n", 0, first_visible.start()) + 1 :]
        if len(text) <= limit:
            return text, ""
        first_visible = _NON_SPACE.search(text)
        assert first_visible is not None
        if first_visible.start() >= limit:
            return _raw_cut(text, limit)  # one line indented by more than a message
    segments = _segments(text, limit, first_visible.start() + 1)
    if not segments:
        return _raw_cut(text, limit)
    position, block = _choose(text, segments, limit)
    if block is None:
        return _prose_cut(text, position)
    return _code_cut(text, position, block)


def split(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Cut `text` into messages of at most `limit` characters each (none for empty text)."""
    pieces: list[str] = []
    rest = text
    while rest:
        head, rest = split_first(rest, limit)
        pieces.append(head)
    return pieces


def close_open_fence(text: str) -> str:
    """Close a code block that is still open at the end of `text`.

    While an answer streams in, an edit can show a code block whose closing fence has not
    arrived yet; closing it makes the partial block render as code instead of as a stray
    fence followed by prose.
    """
    blocks = _scan_fences(text, len(text))
    if not blocks or blocks[-1].close_start is not None:
        return text
    separator = "" if text.endswith("\n") else "\n"
    return f"{text}{separator}{blocks[-1].closing}"


def open_fence(text: str) -> tuple[str, str] | None:
    """The opening line and closing marker of a code block still open at the end of `text`
    (e.g. ("```python", "```")), or None: a message sealed mid-block closes it, and the next
    message reopens it."""
    blocks = _scan_fences(text, len(text))
    if not blocks or blocks[-1].close_start is not None:
        return None
    return blocks[-1].opening, blocks[-1].closing


# -- finding the fences -------------------------------------------------------------------------


def _scan_fences(text: str, end: int) -> list[_Block]:
    """The fenced code blocks whose fence lines start before `end`, in order.

    Only fence lines are visited (the regex finds them), so this costs one pass of the C regex
    engine over text[:end] plus a little per fence.
    """
    blocks: list[_Block] = []
    opened: re.Match[str] | None = None
    for candidate in _FENCE.finditer(text, 0, end):
        # Match the whole line again: `end` may have cut the marker or the info string short.
        line = _FENCE.match(text, candidate.start())
        assert line is not None  # the same pattern matched here a moment ago
        _, marker, info = line.groups()
        if opened is None:
            if marker[0] == "`" and "`" in info:
                continue  # a backtick line with backticks after it is inline code, not a fence
            opened = line
            continue
        open_marker = opened.group(2)
        if marker[0] == open_marker[0] and len(marker) >= len(open_marker) and not info.strip():
            blocks.append(_block(text, opened, line))
            opened = None
    if opened is not None:
        blocks.append(_block(text, opened, None))
    return blocks


def _block(text: str, opening: re.Match[str], closing: re.Match[str] | None) -> _Block:
    return _Block(
        open_start=opening.start(),
        content_start=min(opening.end() + 1, len(text)),
        close_start=None if closing is None else closing.start(),
        close_end=None if closing is None else closing.end(),
        opening=opening.group(0).rstrip(),
        closing=opening.group(1) + opening.group(2),
    )


def _segments(text: str, limit: int, first_cut: int) -> list[_Segment]:
    """The allowed cut positions in [first_cut, limit], as prose and code segments in order.

    `first_cut` is the first position whose head has something visible in it. A cut inside code
    must leave room for the closing fence, so code segments stop `len(closing) + 1` earlier.
    """
    # A fence line that starts at limit + 1 can matter (its newline is a candidate cut), and it
    # is recognisable within 3 spaces of indent plus a 3-character marker.
    blocks = _scan_fences(text, min(len(text), limit + 8))
    raw: list[_Segment] = []
    prose_start: int | None = 0
    after_fence = False
    for block in blocks:
        assert prose_start is not None  # only the last block can be unclosed
        raw.append(_Segment(prose_start, block.open_start, None, True, after_fence))
        code_end = len(text) if block.close_start is None else block.close_start - 2
        code_end = min(code_end, limit - 1 - len(block.closing))
        raw.append(_Segment(block.content_start + 1, code_end, block))
        prose_start = block.close_end
        after_fence = True
    if prose_start is not None:
        raw.append(_Segment(prose_start, len(text), None, False, after_fence))
    segments = []
    for segment in raw:
        start = max(segment.start, first_cut)
        end = min(segment.end, limit)
        if start > limit:
            break
        if start <= end:
            segments.append(
                _Segment(
                    start,
                    end,
                    segment.block,
                    segment.before_fence and end == segment.end,
                    segment.after_fence and start == segment.start,
                )
            )
    return segments


# -- choosing the cut ---------------------------------------------------------------------------


def _choose(text: str, segments: list[_Segment], limit: int) -> tuple[int, _Block | None]:
    """The best cut: each kind of boundary in the second half of the window, then in the first
    half, then a hard cut at the end of the window."""
    atoms = _Atoms(text, limit)
    finders = (_paragraph_end, _line_end_in_prose, _line_end_in_code, _sentence_end, _space)
    half = limit // 2
    for low, high in ((half, limit), (0, half - 1)):
        for finder in finders:
            for segment in reversed(segments):
                start, end = max(segment.start, low), min(segment.end, high)
                if start > end:
                    continue
                position = finder(text, segment, start, end, atoms)
                if position is not None:
                    return position, segment.block
    segment = segments[-1]
    return _hard_cut(text, segment, atoms), segment.block


def _paragraph_end(text: str, segment: _Segment, start: int, end: int, atoms: _Atoms) -> int | None:
    """The last blank line in prose, or a line break next to a code fence (as good as one)."""
    if segment.block is not None:
        return None
    before_fence = end - 1 if segment.before_fence and end == segment.end else -1
    if (
        before_fence >= start
        and text[before_fence] == "\n"
        and not _ends_heading(text, before_fence)
    ):
        return before_fence
    while start <= end:
        position = _last_match(_PARAGRAPH_END, text, start, end, after=False)
        if position is None:
            break
        if not _ends_heading(text, position):
            return position
        end = position - 1
    if segment.after_fence and start == segment.start and text[start] == "\n":
        return start
    return None


def _line_end_in_prose(
    text: str, segment: _Segment, start: int, end: int, atoms: _Atoms
) -> int | None:
    if segment.block is not None:
        return None
    while start <= end:
        position = text.rfind("\n", start, end + 1)
        if position == -1:
            return None
        if not _ends_heading(text, position):
            return position
        end = position - 1
    return None


def _ends_heading(text: str, position: int) -> bool:
    """Whether the line that ends at `position` is a heading."""
    line_start = text.rfind("\n", 0, position) + 1
    return _HEADING.match(text, line_start, position) is not None


def _line_end_in_code(
    text: str, segment: _Segment, start: int, end: int, atoms: _Atoms
) -> int | None:
    if segment.block is None:
        return None
    position = text.rfind("\n", start, end + 1)
    return None if position == -1 else position


def _sentence_end(text: str, segment: _Segment, start: int, end: int, atoms: _Atoms) -> int | None:
    """The space after the last sentence end in prose that is not inside a link or code span."""
    if segment.block is not None:
        return None
    while start <= end:
        position = _last_match(_SENTENCE_END, text, start, end, after=True)
        if position is None:
            return None
        inside = atoms.start_around(position)
        if inside is None:
            return position
        end = inside - 1
    return None


def _space(text: str, segment: _Segment, start: int, end: int, atoms: _Atoms) -> int | None:
    """The last space or tab: in prose the cut drops it; in code it stays at the end of the head
    (code keeps every character), so the cut goes just after it."""
    if segment.block is not None:
        found = max(text.rfind(" ", start - 1, end), text.rfind("\t", start - 1, end))
        return None if found == -1 else found + 1
    while start <= end:
        found = max(text.rfind(" ", start, end + 1), text.rfind("\t", start, end + 1))
        if found == -1:
            return None
        inside = atoms.start_around(found)
        if inside is None:
            return found
        end = inside - 1
    return None


def _hard_cut(text: str, segment: _Segment, atoms: _Atoms) -> int:
    """The last allowed position, moved back out of a link and off a grapheme's middle."""
    position = segment.end
    if segment.block is None:
        inside = atoms.start_around(position)
        if inside is not None and inside >= segment.start:
            position = inside
    floor = segment.start
    for _ in range(_MAX_GRAPHEME_BACKOFF):
        if position <= floor or not _joined(text, position):
            return position
        position -= 1
    return segment.end


def _last_match(
    pattern: re.Pattern[str], text: str, start: int, end: int, *, after: bool
) -> int | None:
    """The last match position (its start, or its end if `after`) in [start, end].

    Regexes only search forwards, so this searches ever larger chunks backwards from `end`: the
    usual answer is near the end and costs one small chunk.
    """
    chunk = _SEARCH_CHUNK
    high = end
    while high >= start:
        low = max(start, high - chunk + 1)
        best = None
        for match in pattern.finditer(text, low, min(len(text), end + 256)):
            if match.start() > high:
                break
            position = match.end() if after else match.start()
            if start <= position <= end:
                best = position
        if best is not None:
            return best
        high = low - 1
        chunk *= 2
    return None


class _Atoms:
    """Where links, inline code and bold spans lie near the cut window; found once, if needed."""

    def __init__(self, text: str, limit: int) -> None:
        self._text = text
        self._end = min(len(text), limit + _ATOM_LOOKAHEAD)
        self._spans: list[tuple[int, int]] | None = None

    def start_around(self, position: int) -> int | None:
        """The start of the span that `position` is strictly inside, if any."""
        if self._spans is None:
            self._spans = [m.span() for m in _ATOM.finditer(self._text, 0, self._end)]
        for start, end in reversed(self._spans):
            if start < position < end:
                return start
            if end <= position:
                return None
        return None


def _joined(text: str, position: int) -> bool:
    """Whether the characters on either side of `position` belong to one visible character."""
    before, after = text[position - 1], text[position]
    if "\ud800" <= before <= "\udbff" and "\udc00" <= after <= "\udfff":
        return True  # a surrogate pair
    if before == "\u200d" or after == "\u200d":
        return True  # zero-width joiner inside an emoji sequence
    if before == "\r" and after == "\n":
        return True
    if unicodedata.category(after) in ("Mn", "Mc", "Me"):
        return True  # combining marks, variation selectors
    if "\U0001f3fb" <= after <= "\U0001f3ff" or "\U000e0020" <= after <= "\U000e007f":
        return True  # skin-tone modifiers, flag tag sequences
    if _is_regional_indicator(before) and _is_regional_indicator(after):
        count = 0
        while position - count > 0 and _is_regional_indicator(text[position - count - 1]):
            count += 1
        return count % 2 == 1  # inside a flag: an odd number of indicators precede the cut
    return False


def _is_regional_indicator(char: str) -> bool:
    return "\U0001f1e6" <= char <= "\U0001f1ff"


# -- making the pieces --------------------------------------------------------------------------


def _prose_cut(text: str, position: int) -> tuple[str, str]:
    """Cut in prose: trailing whitespace leaves the head, blank lines leave the rest.

    The indentation of the rest's first line stays: it can mean a nested list item.
    """
    head = text[:position].rstrip()
    space_end = _SPACE_RUN.match(text, position)
    assert space_end is not None  # \s* always matches
    rest_start = space_end.end()
    if rest_start == len(text):
        return head, ""
    newline = text.rfind("\n", position, rest_start)
    if newline != -1:
        rest_start = newline + 1
    return head, text[rest_start:]


def _code_cut(text: str, position: int, block: _Block) -> tuple[str, str]:
    """Cut inside a code block: close it in the head, reopen it (same info string) in the rest."""
    if text[position] == "\n":
        head, rest = text[: position + 1], text[position + 1 :]
    else:
        head, rest = text[:position] + "\n", text[position:]
    return head + block.closing, f"{block.opening}\n{rest}"


def _raw_cut(text: str, limit: int) -> tuple[str, str]:
    """The last resort when no allowed position exists (a fence longer than the limit, a text
    of whitespace): cut at the limit, keeping only graphemes whole."""
    position = limit
    for _ in range(_MAX_GRAPHEME_BACKOFF):
        if position <= 1 or not _joined(text, position):
            break
        position -= 1
    else:
        position = limit
    return text[:position], text[position:]
