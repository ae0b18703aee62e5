"""Cutting Claude's Markdown into Slack messages: clean boundaries, balanced fences, no loss."""

from __future__ import annotations

import itertools
import random
import re
import time

import pytest

from slackbot.message_split import MESSAGE_LIMIT, close_open_fence, split, split_first

FENCE_LINE = re.compile(r" {0,3}(`{3,}|~{3,})")


def reassemble(text: str, pieces: list[str]) -> None:
    """Assert that `pieces` are `text` cut up: only whitespace at a cut, a closing fence added at
    the end of a piece and the opening fence line added at the start of the next one, are new."""
    position = 0
    reopened = False
    for index, piece in enumerate(pieces):
        body = piece
        if reopened:
            first_line, _, body = body.partition("\n")
            assert FENCE_LINE.match(first_line), f"piece {index} should reopen a fence: {piece!r}"
        end = _consume(text, position, body)
        reopened = False
        last_line = body.rpartition("\n")[2]
        if end is not None and FENCE_LINE.match(last_line) and text[end : end + 1].strip():
            end = None  # the piece's last fence line is only the start of a longer line here
        if end is None:
            # The piece must end with a closing fence that the text does not have here.
            body, _, closing = body.rpartition("\n")
            assert FENCE_LINE.fullmatch(closing), f"piece {index} does not match the text"
            end = _consume(text, position, body)
            assert end is not None, f"piece {index} does not match the text: {piece!r}"
            reopened = True
        position = end
    assert not reopened, "the last piece closed a fence that the text leaves open"
    assert not text[position:].strip(), f"text lost after the pieces: {text[position:]!r}"


def _consume(text: str, position: int, body: str) -> int | None:
    """Where `body` ends in `text` if it starts at `position` after some dropped whitespace."""
    while True:
        if text.startswith(body, position):
            return position + len(body)
        if position < len(text) and text[position].isspace():
            position += 1
            continue
        return None


def assert_pieces(text: str, limit: int) -> list[str]:
    """The invariants every split must keep, checked on split() and on split_first's rest."""
    pieces = split(text, limit)
    assert all(len(piece) <= limit for piece in pieces), [len(p) for p in pieces]
    assert all(piece.strip() for piece in pieces)
    reassemble(text, pieces)
    # Every piece but the last shows no open code block; the last one only if the text ends open.
    for piece in pieces[:-1]:
        assert close_open_fence(piece) == piece, piece
    if close_open_fence(text) == text and pieces:
        assert close_open_fence(pieces[-1]) == pieces[-1]
    # The streaming reply reads the rest by offset: it is a suffix, maybe after a reopened fence.
    _, rest = split_first(text, limit)
    if rest and not text.endswith(rest):
        first_line, _, raw = rest.partition("\n")
        assert FENCE_LINE.match(first_line)
        assert text.endswith(raw)
    return pieces


# -- basics -------------------------------------------------------------------------------------


def test_short_text_is_untouched() -> None:
    text = "Hello *world*\n\n```py\nx = 1\n```\n"
    assert split_first(text) == (text, "")
    assert split(text) == [text]
    assert split("") == []
    assert split_first("x" * MESSAGE_LIMIT) == ("x" * MESSAGE_LIMIT, "")


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError):
        split_first("text", 0)


def test_paragraph_break_is_preferred_to_a_later_line_break() -> None:
    first = "First paragraph, " * 3 + "ends here."  # 61 characters
    second = "Second one.\nIt goes on and on. And on and on and on past the limit of the message."
    head, rest = split_first(f"{first}\n\n{second}", 100)
    assert head == first
    assert rest == second


def test_line_break_then_sentence_then_space_then_hard_cut() -> None:
    line = "a" * 70
    assert split_first(f"{line}\n{'b ' * 40}", 100) == (line, "b " * 40)
    sentence = "Word " * 12 + "end."  # 64 characters
    head, rest = split_first(f"{sentence} More words here and more words past the limit", 100)
    assert head == sentence
    assert rest.startswith("More words")
    head, rest = split_first("word " * 40, 100)
    assert head == ("word " * 20).rstrip()
    assert rest == "word " * 20
    assert split_first("x" * 150, 100) == ("x" * 100, "x" * 50)


def test_early_boundary_beats_a_hard_cut() -> None:
    """With nothing clean in the second half of the window, an early paragraph break still wins
    over cutting a long token (a URL, base64) in two."""
    token = "x" * 150
    assert split_first(f"Intro.\n\n{token}", 100) == ("Intro.", token)


def test_whitespace_at_the_cut_is_dropped_but_indentation_kept() -> None:
    text = "- item " + "one " * 20 + "\n   \n\n  - nested item\n" + "more " * 30
    head, rest = split_first(text, 100)
    assert head == ("- item " + "one " * 20).rstrip()
    assert rest.startswith("  - nested item\n")


# -- code blocks --------------------------------------------------------------------------------


def code_lines(count: int) -> str:
    return "".join(f"value_{i} = compute({i})\n" for i in range(count))


def test_code_block_split_closes_and_reopens_with_the_language() -> None:
    text = f"Here is the code:\n\n```python\n{code_lines(40)}```\n\nThat's all."
    pieces = assert_pieces(text, 300)
    assert len(pieces) > 2
    for first, second in itertools.pairwise(pieces):
        if first.endswith("\n```"):
            assert second.startswith("```python\nvalue_")
    # Cuts inside code fall between whole lines.
    for piece in pieces:
        for line in piece.splitlines():
            assert line in ("Here is the code:", "", "```python", "```", "That's all.") or (
                re.fullmatch(r"value_\d+ = compute\(\d+\)", line)
            ), line


def test_a_code_block_that_fits_the_next_message_is_not_split() -> None:
    prose = "Some prose before the code, long enough to matter. " * 2  # 104 characters
    block = "```sh\n" + "echo hello world\n" * 8 + "```"  # 146 characters
    head, rest = split_first(f"{prose}\n\n{block}\n\nAfter.", 200)
    assert head == prose.rstrip()
    assert rest == f"{block}\n\nAfter."


def test_closing_fence_fits_within_the_limit() -> None:
    text = "```\n" + "".join(f"{i:08d}\n" for i in range(100))
    for limit in (20, 21, 22, 23, 50, 97):
        assert_pieces(text, limit)
        head, _ = split_first(text, limit)
        assert len(head) <= limit
        assert head.endswith("\n```")


def test_unclosed_code_block_at_the_end_stays_open_in_the_last_piece() -> None:
    text = "Streaming:\n\n```js\n" + "console.log(1);\n" * 30
    pieces = assert_pieces(text, 150)
    assert pieces[-1].startswith("```js\n")
    assert close_open_fence(pieces[-1]) != pieces[-1]


def test_nested_fences_close_with_the_outer_marker() -> None:
    inner = "```python\nprint('hi')\n```\n" * 20
    text = f"````markdown\n{inner}````\n"
    pieces = assert_pieces(text, 200)
    assert pieces[0].startswith("````markdown\n")
    assert pieces[0].endswith("\n````")
    assert pieces[1].startswith("````markdown\n")


def test_indented_fences_reopen_with_their_indent() -> None:
    text = "1. Run this:\n\n   ```bash\n" + "   make test\n" * 30 + "   ```\n\n2. Done.\n"
    pieces = assert_pieces(text, 160)
    assert pieces[0].endswith("\n   ```")
    assert pieces[1].startswith("   ```bash\n   make test\n")


def test_four_space_indent_is_not_a_fence() -> None:
    text = "Text\n\n    ```\n" + "    not a fence line\n" * 20
    pieces = assert_pieces(text, 120)
    assert not any(piece.endswith("```") for piece in pieces[:-1])


def test_tilde_fences_and_backtick_lines_inside_them() -> None:
    text = "~~~ruby\n" + "puts 1\n```\n" * 30 + "~~~\nafter\n"
    pieces = assert_pieces(text, 100)
    assert pieces[0].endswith("\n~~~")
    assert all(piece.startswith("~~~ruby\n") for piece in pieces[1:-1])


def test_backtick_info_string_with_backticks_is_not_a_fence() -> None:
    assert close_open_fence("``` not `a` fence\ntext") == "``` not `a` fence\ntext"


# -- large inputs and progress ------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(("Lorem ipsum dolor sit amet. " * 8 + "\n\n") * 230, id="prose"),
        pytest.param("word " * 10_000, id="one-line"),
        pytest.param("x" * 50_000, id="one-token"),
        pytest.param("```python\n" + "x = 1  # comment\n" * 2_941 + "```\n", id="code-block"),
        pytest.param("```\n" + "y" * 50_000 + "\n```", id="code-one-line"),
        pytest.param("\n" * 20_000 + "a\n" * 15_000, id="blank-lines"),
    ],
)
def test_fifty_thousand_characters(text: str) -> None:
    assert len(text) >= 50_000
    pieces = assert_pieces(text, MESSAGE_LIMIT)
    assert len(pieces) <= 7


def test_splitting_is_fast() -> None:
    texts = [("Lorem ipsum dolor sit amet. " * 8 + "\n\n") * 220, "w " * 25_000, "z" * 50_000]
    texts.append("```c\n" + "int x = 1;\n" * 5_000 + "```\n")
    for text in texts:
        best = min(_timed(split, text) for _ in range(3))
        assert best < 0.02, f"{best * 1000:.1f} ms"


def test_split_first_cost_does_not_grow_with_the_text() -> None:
    """The streaming reply calls split_first on a growing tail; the work must stay near `limit`."""
    huge = "word " * 400_000  # 2,000,000 characters
    assert min(_timed(split_first, huge) for _ in range(3)) < 0.01


def _timed(function: object, text: str) -> float:
    assert callable(function)
    start = time.perf_counter()
    function(text)
    return time.perf_counter() - start


def test_tiny_limits_still_make_progress() -> None:
    text = "```python\n" + "x" * 50 + "\n```"
    for limit in range(1, 20):
        pieces = split(text, limit)
        assert all(0 < len(piece) <= limit for piece in pieces)
        assert len(pieces) <= len(text)
        if limit >= len("```python\nx\n```"):
            reassemble(text, pieces)


def test_leading_blank_lines_longer_than_the_limit_are_dropped() -> None:
    assert split("\n" * 300 + "  hello", 100) == ["  hello"]


# -- characters and links -----------------------------------------------------------------------


def test_surrogate_pairs_are_not_cut() -> None:
    text = "\ud83d\ude00" * 100  # a surrogate pair, as a JSON decoder can leave it
    pieces = split(text, 51)
    assert all(len(piece) % 2 == 0 for piece in pieces)
    assert "".join(pieces) == text


@pytest.mark.parametrize("unit", ["👩\u200d💻", "e\u0301", "🇫🇷", "👍🏽", "❤\ufe0f"])
def test_graphemes_are_not_cut(unit: str) -> None:
    text = unit * 100
    for limit in (37, 50, 61):
        pieces = split(text, limit)
        assert "".join(pieces) == text
        assert all(len(piece) % len(unit) == 0 for piece in pieces), [len(p) for p in pieces]


def test_a_link_is_not_cut_at_a_space_in_its_label() -> None:
    text = "a" * 80 + " [click here to read](https://example.com/page) and the rest of it"
    head, rest = split_first(text, 100)
    assert head == "a" * 80
    assert rest.startswith("[click here to read](")


def test_a_hard_cut_moves_before_a_link() -> None:
    text = "x" * 80 + "[label](https://example.com/a/long/path)" + "y" * 50
    head, rest = split_first(text, 100)
    assert head == "x" * 80
    assert rest.startswith("[label](https://")


def test_a_heading_stays_with_its_section() -> None:
    intro = "An introduction long enough to pass half of the window. " * 2
    section = "## Details\n\nThe section goes on " + "and on " * 20
    head, rest = split_first(f"{intro}\n\n{section}", 150)
    assert head == intro.rstrip()
    assert rest == section


def test_bold_text_is_not_cut_at_its_spaces() -> None:
    words = "a " * 40
    head, rest = split_first(f"{words}**bold words that go on** and past the limit", 100)
    assert head == words.rstrip()
    assert rest.startswith("**bold words")


# -- close_open_fence ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("partial", "shown"),
    [
        ("plain text", "plain text"),
        ("```py\nx = 1", "```py\nx = 1\n```"),
        ("```py\nx = 1\n", "```py\nx = 1\n```"),
        ("```py\nx = 1\n```\n", "```py\nx = 1\n```\n"),
        ("```py\nx\n```\ntext\n~~~\ny", "```py\nx\n```\ntext\n~~~\ny\n~~~"),
        ("````md\n```py\nx\n```\n", "````md\n```py\nx\n```\n````"),
        ("  ~~~~\n~~~\n", "  ~~~~\n~~~\n  ~~~~"),
        ("```", "```\n```"),
        ("``", "``"),
        ("    ```\ncode", "    ```\ncode"),
    ],
)
def test_close_open_fence(partial: str, shown: str) -> None:
    assert close_open_fence(partial) == shown


# -- random texts -------------------------------------------------------------------------------


def random_markdown(rng: random.Random) -> str:
    """A text built from the pieces Claude's answers are made of, in random order and size."""
    plain = ["alpha", "beta", "gamma", "**bold**", "`code`"]
    words = [*plain, "é\u0301", "👩\u200d💻", "🇫🇷", "x" * 70]
    parts: list[str] = []
    for _ in range(rng.randint(1, 40)):
        kind = rng.random()
        if kind < 0.35:
            sentence = " ".join(rng.choice(words) for _ in range(rng.randint(1, 30)))
            parts.append(sentence + rng.choice([".", "!", "?", "", ":"]) + rng.choice(" \n"))
        elif kind < 0.45:
            parts.append(rng.choice(["\n", "\n\n", "\n  \n", "\n\n\n"]))
        elif kind < 0.55:
            label = " ".join(rng.choice(plain[:3]) for _ in range(rng.randint(1, 4)))
            parts.append(f"[{label}](https://example.com/{rng.randint(0, 10**6)}) ")
        elif kind < 0.62:
            parts.append(f"- item {rng.randint(1, 99)}\n  - nested\n")
        else:
            marker = rng.choice(["```", "~~~", "````"])
            indent = " " * rng.randint(0, 3)
            lines = [
                rng.choice(["x = 1", "    y = [i for i in range(9)]", "", "```", "~~~", "z" * 90])
                for _ in range(rng.randint(0, 40))
            ]
            body = "".join(f"{line}\n" for line in lines if line.strip("`~") or len(line) < 3)
            closing = "" if rng.random() < 0.1 else f"{indent}{marker}\n"
            info = rng.choice(["", "python", "js title=x"])
            parts.append(f"\n{indent}{marker}{info}\n{body}{closing}")
    return "".join(parts)


def test_random_texts_keep_the_invariants() -> None:
    rng = random.Random(20240601)
    for _ in range(400):
        text = random_markdown(rng)
        limit = rng.choice([40, 61, 97, 150, 256, 400, 1000])
        assert_pieces(text, limit)
