"""The context window: a thread far beyond the window still gets an answer, cut where intended."""

from __future__ import annotations

import base64
import io
import itertools

from PIL import Image

from fakes.claude import FakeClaude, Script
from fakes.harness import CHANNEL, conversation
from fakes.slack import FakeSlack
from slackbot.claude import Claude
from slackbot.context_window import (
    IMAGE_TOKENS_MAX,
    PDF_PAGE_TOKENS,
    TRIM_TO,
    Trim,
    Window,
    document_tokens,
    estimate_turn_tokens,
    fit,
    image_tokens,
    window_for,
)
from slackbot.history import OMITTED_MARKER, build_messages
from slackbot.messages import CONTEXT_TRIMMED, MAX_TOKENS_NOTE
from slackbot.model_lookup import ModelLimits
from slackbot.store import StoredDocument, StoredImage, Turn
from tests.started import DEFAULT_MODEL, sonnet_5, started


def png(width: int, height: int) -> StoredImage:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "white").save(buffer, "PNG")
    return StoredImage("image/png", base64.b64encode(buffer.getvalue()).decode(), "x.png")


def user(
    n: int,
    text: str = "",
    *,
    images: tuple[StoredImage, ...] = (),
    documents: tuple[StoredDocument, ...] = (),
    tokens=100,
) -> Turn:
    return Turn(
        id=n, role="user", ts=str(n), text=text or f"q{n}", user_name="Alice", images=images,
        documents=documents, tokens=tokens,
    )  # fmt: skip


def text_doc(name: str, chars: int) -> StoredDocument:
    return StoredDocument("text", "text/plain", "x" * chars, name, chars, None, chars)


def pdf_doc(name: str, pages: int, size: int = 1000) -> StoredDocument:
    return StoredDocument("pdf", "application/pdf", "A" * size, name, size, pages, 0)


def bot(n: int, tokens: int = 100) -> Turn:
    return Turn(id=n, role="assistant", ts=str(n), text=f"a{n}", tokens=tokens)


def thread(pairs: int) -> list[Turn]:
    """user 1, bot 2, user 3, ... ending with a user turn; 100 tokens each."""
    turns: list[Turn] = []
    for i in range(pairs):
        turns += [user(2 * i + 1), bot(2 * i + 2)]
    return [*turns, user(2 * pairs + 1)]


def texts(turns: list[Turn]) -> list[str]:
    return [t.text for t in turns]


# -- estimating -------------------------------------------------------------------------------


def test_image_tokens_follow_the_api_formula() -> None:
    assert image_tokens(png(200, 150)) == 8 + 40  # 200 × 150 / 750
    assert image_tokens(png(1568, 1568)) == 8 + IMAGE_TOKENS_MAX  # the API downscales it
    assert image_tokens(StoredImage("image/png", "not base64!", "x")) == IMAGE_TOKENS_MAX


def test_turn_estimate_covers_name_text_and_images() -> None:
    turn = Turn(id=1, role="user", ts="1", text="x" * 350, user_name="Alice")
    assert 100 <= estimate_turn_tokens(turn) <= 120
    with_image = Turn(
        id=1, role="user", ts="1", text="x" * 350, user_name="Alice", images=(png(300, 250),)
    )
    assert estimate_turn_tokens(with_image) == estimate_turn_tokens(turn) + 8 + 100


def test_document_estimates() -> None:
    assert document_tokens(text_doc("a.txt", 3500)) == 8 + 1002  # (3500 + 5) / 3.5
    pdf = StoredDocument("pdf", "application/pdf", "A" * 4000, "r.pdf", 3000, 4, 7000)
    assert document_tokens(pdf) == 8 + 2002 + 4 * PDF_PAGE_TOKENS
    turn = Turn(id=1, role="user", ts="1", text="x" * 350, user_name="Alice")
    with_docs = Turn(id=1, role="user", ts="1", text="x" * 350, user_name="Alice", documents=(pdf,))
    assert estimate_turn_tokens(with_docs) == estimate_turn_tokens(turn) + document_tokens(pdf)


def test_page_limit_of_a_request_follows_the_model() -> None:
    claude = Claude(client=None, model=DEFAULT_MODEL, max_tokens=1000, system="s")  # type: ignore[arg-type]
    small = window_for(claude, ModelLimits(model="m", max_input_tokens=200_000), None)
    large = window_for(claude, ModelLimits(model="m", max_input_tokens=1_000_000), None)
    assert (small.max_pages, large.max_pages) == (100, 600)


# -- fitting ----------------------------------------------------------------------------------


def test_a_thread_that_fits_is_sent_whole() -> None:
    turns = thread(5)
    fitted = fit(turns, Window(tokens=10_000))
    assert fitted.turns == turns and not fitted.omitted and fitted.trim == Trim()


def test_oldest_turns_are_dropped_but_the_first_message_stays() -> None:
    turns = thread(50)  # 101 turns × 100 tokens
    budget = Window(tokens=3000, fixed_tokens=50)
    fitted = fit(turns, budget)
    kept = texts(fitted.turns)
    assert kept[0] == "q1" and kept[1] == OMITTED_MARKER
    assert kept[-1] == "q101"
    # the newest turns are the ones kept, contiguous up to the end
    assert kept[2:] == texts(turns[-(len(kept) - 2) :])
    assert fitted.tokens(1.0) <= TRIM_TO * budget.tokens  # a big slice went at once
    assert fitted.tokens(1.0) > TRIM_TO * budget.tokens - 300
    assert fitted.trim.kept_from_id == fitted.turns[2].id and fitted.omitted


def test_the_cut_is_stable_as_the_thread_grows() -> None:
    turns = thread(50)
    budget = Window(tokens=3000)
    first = fit(turns, budget)
    grown = [*turns, bot(102), user(103), bot(104), user(105)]
    second = fit(grown, budget, first.trim)
    assert second.trim == first.trim
    assert second.turns[: len(first.turns)] == first.turns  # the same prefix: cache hits
    # once the window fills again, the cut moves forward by a large slice, not one turn
    third = fit([*grown, *(t for i in range(106, 130) for t in (bot(i),))], budget, first.trim)
    assert third.trim.kept_from_id is not None
    assert third.trim.kept_from_id > first.trim.kept_from_id  # type: ignore[operator]
    assert third.tokens(1.0) <= TRIM_TO * budget.tokens


def test_messages_still_alternate_and_end_with_the_user_after_a_cut() -> None:
    fitted = fit(thread(50), Window(tokens=3000))
    messages = build_messages(fitted.turns)
    roles = [m["role"] for m in messages]
    assert roles[0] == "user" and roles[-1] == "user"
    assert all(a != b for a, b in itertools.pairwise(roles))
    assert messages[0]["content"][1] == {"type": "text", "text": OMITTED_MARKER}


def test_old_images_go_before_old_text() -> None:
    picture = png(1000, 1000)
    turns = [
        user(1, images=(picture,), tokens=1500),
        bot(2),
        user(3, images=(picture, picture), tokens=3000),
        bot(4),
        user(5, images=(picture,), tokens=1500),
    ]
    fitted = fit(turns, Window(tokens=4000))
    assert texts(fitted.turns) == ["q1", "a2", "q3", "a4", "q5"]  # no text dropped
    assert [len(t.images) for t in fitted.turns] == [0, 0, 0, 0, 1]  # the latest keeps its own
    assert "2 image(s) shared here were omitted" in fitted.turns[2].notes[-1]
    # images of turns before a4 are left out: enough to fit, so no text had to go
    assert fitted.trim == Trim(kept_from_id=None, images_from_id=4)


def test_image_count_and_request_size_limits() -> None:
    picture = png(20, 20)
    turns = [user(i, images=(picture,) * 10) for i in range(1, 16)]  # 150 images
    fitted = fit(turns, Window(tokens=1_000_000))
    assert fitted.images <= 100 and sum(len(t.images) for t in fitted.turns) == fitted.images
    assert len(fitted.turns[-1].images) == 10
    heavy = StoredImage("image/png", "A" * 4_000_000, "big.png")
    big = [user(i, images=(heavy, heavy)) for i in range(1, 8)]  # 56 MB of base64
    fitted = fit(big, Window(tokens=1_000_000))
    assert fitted.size <= 30 * 1024 * 1024 and len(fitted.turns[-1].images) == 2


def test_a_message_with_more_images_than_a_request_takes_keeps_the_newest() -> None:
    pictures = tuple(StoredImage("image/png", png(20, 20).data, f"p{n}.png") for n in range(120))
    fitted = fit([user(1, "look at all of these", images=pictures)], Window(tokens=1_000_000))
    [turn] = fitted.turns
    assert [image.name for image in turn.images] == [f"p{n}.png" for n in range(20, 120)]
    assert "20 image(s) shared here were omitted" in " ".join(turn.notes)
    assert turn.text == "look at all of these"  # the text was not what had to go


def test_old_documents_go_before_old_text_with_a_note() -> None:
    turns = [
        user(1, documents=(text_doc("a.log", 7000),), tokens=2000),
        bot(2),
        user(3, images=(png(20, 20),), documents=(text_doc("b.csv", 7000),), tokens=2100),
        bot(4),
        user(5, documents=(text_doc("c.md", 7000),), tokens=2000),
    ]
    fitted = fit(turns, Window(tokens=4000))
    assert texts(fitted.turns) == ["q1", "a2", "q3", "a4", "q5"]  # no text dropped
    assert [len(t.documents) for t in fitted.turns] == [0, 0, 0, 0, 1]
    assert [t.documents[0].name for t in fitted.turns if t.documents] == ["c.md"]
    assert fitted.turns[0].notes == (
        "1 file(s) shared here were omitted to fit the context window",
    )
    assert fitted.turns[2].notes == (
        "1 image(s) shared here were omitted to fit the context window",
        "1 file(s) shared here were omitted to fit the context window",
    )
    assert fitted.trim == Trim(kept_from_id=None, images_from_id=4)  # the one cut, for both
    rendered = build_messages(fitted.turns)
    assert [[b["type"] for b in m["content"]] for m in rendered] == [
        ["text"],
        ["text"],
        ["text"],
        ["text"],
        ["document", "text"],
    ]


def test_pdf_pages_of_a_request_are_limited() -> None:
    turns = [user(i, documents=(pdf_doc(f"p{i}.pdf", 40),), tokens=100) for i in range(1, 6)]
    fitted = fit(turns, Window(tokens=1_000_000, max_pages=100))
    assert fitted.pages <= 100
    assert [t.documents[0].name for t in fitted.turns if t.documents] == ["p5.pdf"]
    assert fitted.pages == 40 == sum(d.pages or 0 for t in fitted.turns for d in t.documents)


def test_a_message_whose_documents_exceed_the_request_keeps_the_newest_that_fit() -> None:
    big = tuple(text_doc(f"part{n}.txt", 12 * 1024 * 1024) for n in range(3))  # 36 MB
    [turn] = fit(
        [user(1, "read all three", documents=big, tokens=None)], Window(tokens=10**8)
    ).turns
    assert [d.name for d in turn.documents] == ["part1.txt", "part2.txt"]
    assert turn.notes == ("1 file(s) shared here were omitted to fit the context window",)
    assert turn.text == "read all three"
    long = tuple(pdf_doc(f"book{n}.pdf", 60) for n in range(3))
    [turn] = fit([user(1, documents=long, tokens=None)], Window(tokens=10**8, max_pages=100)).turns
    assert [d.name for d in turn.documents] == ["book2.pdf"]
    # and by tokens: a 200k-token window takes one of three ~150k-token texts
    texts_ = tuple(text_doc(f"t{n}.txt", 500_000) for n in range(3))
    [turn] = fit([user(1, "sum up", documents=texts_, tokens=None)], Window(tokens=200_000)).turns
    assert [d.name for d in turn.documents] == ["t2.txt"] and turn.text == "sum up"


def test_a_single_message_bigger_than_the_window_is_shortened() -> None:
    turns = [user(1, "x" * 20_000, tokens=None), bot(2), user(3, "y" * 20_000, tokens=None)]
    fitted = fit(turns, Window(tokens=2000))
    assert fitted.tokens(1.0) <= 2000 and fitted.omitted
    assert fitted.turns[0].text.startswith("xxx") and fitted.turns[-1].text.startswith("yyy")


# -- end to end ---------------------------------------------------------------------------------


async def test_thread_far_beyond_the_window_still_gets_an_answer(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    claude.models[DEFAULT_MODEL] = sonnet_5(max_input_tokens=4000)
    async with started(slack, claude, db_path) as harness:
        root = slack.add_user_message(CHANNEL, "U1", "The task: remember the word banana.")
        for i in range(80):  # ~12,000 tokens of thread: three times the window
            slack.add_user_message(
                CHANNEL, "U2", f"message {i:02d} " + "lorem ipsum " * 50, thread_ts=root["ts"]
            )
        claude.default = Script(text="Banana.")
        await harness.mention("what was the word?", thread_ts=root["ts"])
        await harness.settled()
        await harness.mention("and once more?", thread_ts=root["ts"])
        await harness.settled()
        replies = harness.texts(CHANNEL, root["ts"])

    assert len(claude.requests) == 2
    for request in claude.requests:
        assert claude.estimate_tokens(request) + request["max_tokens"] <= 4000
    blocks = [b["text"] for b in conversation(claude.requests[0])[0]["content"]]
    assert blocks[0] == "Alice: The task: remember the word banana."  # the first message stays
    assert blocks[1] == OMITTED_MARKER
    assert blocks[2].startswith("Bob: message ") and "message 00" not in blocks[2]  # oldest gone
    assert blocks[-2].startswith("Bob: message 79") and blocks[-1] == "Alice: what was the word?"
    # told once, in the first trimmed reply only
    assert replies[0].startswith("Banana.") and CONTEXT_TRIMMED in replies[0]
    assert replies[1] == "Banana."
    # the cut stayed put, so the second mention read the first one's prompt from the cache
    first_prompt = claude.estimate_tokens(claude.requests[0]) - claude.usages[0].input_tokens
    assert claude.usages[1].cache_read_input_tokens == first_prompt  # all but its context


async def test_count_tokens_is_asked_only_near_the_limit(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    claude.models[DEFAULT_MODEL] = sonnet_5(max_input_tokens=4000)
    async with started(slack, claude, db_path) as harness:
        conversations = harness.bot.conversations
        budget = window_for(conversations.claude, conversations.model_limits, None).tokens
        first = await harness.mention("short question")
        await harness.settled()
        for i in range(20):  # the thread grows towards the window, then past it
            slack.add_user_message(CHANNEL, "U2", f"{i} " + "word " * 40, thread_ts=first["ts"])
            await harness.mention(f"and now ({i})?", thread_ts=first["ts"])
            await harness.settled()
    assert claude.count_requests, "the API was never asked to count"
    assert len(claude.count_requests) < len(claude.requests) // 2
    for counted in claude.count_requests:
        assert claude.estimate_tokens(counted) > 0.75 * budget  # only near the limit
    for request in claude.requests:
        assert claude.estimate_tokens(request) <= budget


async def test_continue_after_a_reply_cut_off_at_max_tokens(
    slack: FakeSlack, claude: FakeClaude, db_path: str
) -> None:
    claude.models[DEFAULT_MODEL] = sonnet_5()
    async with started(slack, claude, db_path, claude_max_tokens=10) as harness:
        claude.default = Script(text="one two three four five six seven eight nine ten eleven")
        first = await harness.mention("count to eleven")
        await harness.settled()
        claude.default = Script(text="nine ten eleven.")
        await harness.mention("continue", thread_ts=first["ts"])
        await harness.settled()
        replies = harness.texts(CHANNEL, first["ts"])

    assert MAX_TOKENS_NOTE in replies[0]
    cut_off = "one two three four five six seven eight nine ten"[: 10 * 4]
    assert replies[0].startswith(cut_off.strip())
    messages = conversation(claude.requests[-1])
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[1]["content"][0]["text"] == cut_off.strip()  # the truncated turn, as sent
    assert messages[2]["content"][-1]["text"] == "Alice: continue"
    assert replies[1] == "nine ten eleven."
