"""Document converters on real files: text (encodings, binary, the cap), PDFs (pages,
encryption, corruption), Office documents (Markdown, zip bombs), and the child processes that
convert them (time and memory caps, no secrets)."""

from __future__ import annotations

import asyncio
import base64
import codecs
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from slackbot import office, pdfs, text_files
from slackbot.converter_process import ConverterProcesses
from slackbot.documents import cut_at_line, size_text
from slackbot.errors import FileRefused, NotConvertible
from tests import documents

ROOT = Path(__file__).resolve().parent.parent
KB = 1024


@pytest.fixture
def processes() -> ConverterProcesses:
    return ConverterProcesses()


def problem_of(exc: pytest.ExceptionInfo[NotConvertible]) -> tuple[str, dict[str, object]]:
    return exc.value.problem, exc.value.details


# -- text ---------------------------------------------------------------------------------------


def test_utf8_csv_is_read_as_it_is() -> None:
    data = b"region,sales\r\nEU,42\r\nUS,3.5\r\n"
    block, note = text_files.read(data, "sales.csv", max_bytes=512 * KB)
    assert block.to_claude() == {
        "type": "document",
        "source": {
            "type": "text",
            "media_type": "text/plain",
            "data": "region,sales\nEU,42\nUS,3.5\n",
        },
        "title": "sales.csv",
        "citations": {"enabled": True},
    }
    assert note is None and block.size == len(data)


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-be", "utf-8-sig", "utf-32"])
def test_text_with_a_byte_order_mark_is_decoded(codec: str) -> None:
    text = "Größe: 5 µm — naïve café 東京\nline two\n"
    data = text.encode(codec)
    if codec == "utf-16-be":
        data = codecs.BOM_UTF16_BE + data
    assert b"\x00" in data or codec == "utf-8-sig"
    block, _ = text_files.read(data, "notes.txt", max_bytes=512 * KB)
    assert block.data == text


@pytest.mark.parametrize(
    ("text", "codec"),
    [
        # Excel on Windows writes Windows-1252: charset-normalizer alone reads it as Baltic
        ("Le café était très animé ce soir-là, à côté de l'église. Où étiez-vous ?\n", "cp1252"),
        ("Größe;Preis\nÄpfel;1,20 €\nÜbermorgen fährt der Zug ab.\n", "cp1252"),
        ("Price list – updated “today” — costs £5 and €7…\n", "cp1252"),
        ("Zażółć gęślą jaźń. Wczoraj poszliśmy do kina.\nImię;Miasto\nŁukasz;Łódź\n", "cp1250"),
        ("Cena: 3,50 zł za kilogram jabłek.\n", "cp1250"),
        ("Jak se máte? Čeština je krásná, řekl učitel.\n", "cp1250"),
        ("Dobrý den, tohle je zkušební soubor s češtinou.\n", "cp1250"),
        ("Günaydın, nasılsınız? Bu bir deneme dosyasıdır. Şişli, İstanbul.\n", "cp1254"),
        ("Привет, как дела? Это тестовый файл с русским текстом.\nИмя;Город\n", "cp1251"),
        ("東京の天気は晴れです。明日は雨が降るでしょう。会議は午後三時からです。\n", "shift_jis"),
        ("今天天气很好，我们去公园散步吧。会议将在下午三点开始，请准时参加。\n", "gbk"),
    ],
)
def test_a_legacy_encoding_is_detected(text: str, codec: str) -> None:
    block, _ = text_files.read(text.encode(codec), "notes.txt", max_bytes=512 * KB)
    assert block.data == text


@pytest.mark.parametrize(
    "data",
    [
        b"\x7fELF\x02\x01\x01\x00" + bytes(200),  # an executable: NUL bytes, no BOM
        bytes(range(256)) * 8,  # every byte value
        os.urandom(4096).replace(b"\x00", b"\x01"),  # undecodable noise without a NUL
    ],
)
def test_binary_named_txt_gets_a_note_never_garbage(data: bytes) -> None:
    with pytest.raises(FileRefused) as refused:
        text_files.read(data, "notes.txt", max_bytes=512 * KB)
    assert refused.value.text == (
        "I couldn't read notes.txt: it doesn't look like text (it holds binary data)."
    )


def test_long_log_is_cut_at_a_line_with_a_note() -> None:
    lines = [
        f"2026-11-02T10:{i // 60:02d}:{i % 60:02d} INFO request {i} served in 3 ms\n"
        for i in range(45_000)
    ]
    data = "".join(lines).encode()
    assert size_text(len(data)) == "2.3 MB"
    block, note = text_files.read(data, "notes.log", max_bytes=512 * KB)
    assert note == "notes.log is 2.3 MB: I read the first 512 KB."
    assert len(block.data.encode()) <= 512 * KB
    assert block.data.endswith(" ms\n") and block.data.startswith(lines[0])
    assert block.data.count("\n") == len(block.data.splitlines())  # whole lines only
    assert block.size == len(data) and block.text_chars == len(block.data)


def test_the_cap_holds_for_the_text_claude_reads() -> None:
    """UTF-16 CJK takes 2 bytes a character and 3 in UTF-8: the cut is on what is sent."""
    data = ("東京の天気は晴れです。\n" * 3000).encode("utf-16")
    block, note = text_files.read(data, "tokyo.txt", max_bytes=64 * KB)
    assert len(block.data.encode()) <= 64 * KB and block.data.endswith("。\n")
    assert note is not None and "I read the first 64 KB" in note


def test_empty_text_gets_a_note() -> None:
    with pytest.raises(FileRefused, match=r"^empty.txt is empty\.$"):
        text_files.read(b" \n\n", "empty.txt", max_bytes=512 * KB)


def test_sniffing_tells_text_from_binary() -> None:
    assert text_files.looks_like_text(b"key: value\nlist:\n  - a\n")
    assert text_files.looks_like_text("café\n".encode("utf-16"))
    assert not text_files.looks_like_text(documents.pdf() + bytes(100))
    assert not text_files.looks_like_text(bytes(1000))
    assert not text_files.looks_like_text(b"")


def test_cut_at_line() -> None:
    assert cut_at_line("short\n", 100) == ("short\n", False)
    assert cut_at_line("a" * 50 + "\n" + "b" * 50, 80) == ("a" * 50 + "\n", True)
    # one very long line: cut mid-line rather than keep almost nothing
    assert cut_at_line("x\n" + "y" * 200, 100) == ("x\n" + "y" * 98, True)
    assert cut_at_line("é" * 100, 101) == ("é" * 50, True)  # never half a character


# -- PDF ----------------------------------------------------------------------------------------


def test_page_limit_follows_the_window() -> None:
    assert pdfs.page_limit(200_000) == 100
    assert pdfs.page_limit(1_000_000) == 600


async def test_pdf_becomes_a_citable_base64_document(processes: ConverterProcesses) -> None:
    data = documents.pdf(3, text="Revenue grew twelve percent on page")
    block = await pdfs.read(data, "report.pdf", max_pages=100, processes=processes)
    assert block.to_claude() == {
        "type": "document",
        "source": {
            "type": "base64",
            "media_type": "application/pdf",
            "data": base64.b64encode(data).decode(),
        },
        "title": "report.pdf",
        "citations": {"enabled": True},
    }
    assert block.pages == 3
    assert block.text_chars == 3 * len("Revenue grew twelve percent on page 1")


async def test_encrypted_pdf_is_refused(processes: ConverterProcesses) -> None:
    with pytest.raises(NotConvertible) as refused:
        await pdfs.read(documents.encrypted_pdf(), "secret.pdf", max_pages=100, processes=processes)
    assert problem_of(refused) == ("pdf_encrypted", {})


async def test_pdf_over_the_page_limit_is_refused(processes: ConverterProcesses) -> None:
    data = documents.pdf(101)
    with pytest.raises(NotConvertible) as refused:
        await pdfs.read(data, "long.pdf", max_pages=100, processes=processes)
    assert problem_of(refused) == ("pdf_too_many_pages", {"pages": 101, "limit": 100})
    block = await pdfs.read(data, "long.pdf", max_pages=600, processes=processes)
    assert block.pages == 101


@pytest.mark.parametrize("data", [documents.corrupt_pdf(), b"not a pdf at all", b"%PDF-1.4\n"])
async def test_corrupt_pdf_is_refused(processes: ConverterProcesses, data: bytes) -> None:
    with pytest.raises(NotConvertible) as refused:
        await pdfs.read(data, "broken.pdf", max_pages=100, processes=processes)
    assert problem_of(refused) == ("pdf_invalid", {})


async def test_pdf_too_big_for_a_request_is_refused_without_a_child(
    processes: ConverterProcesses,
) -> None:
    data = documents.pdf(1) + bytes(pdfs.MAX_PDF_BYTES)
    started = time.monotonic()
    with pytest.raises(NotConvertible) as refused:
        await pdfs.read(data, "scan.pdf", max_pages=100, processes=processes)
    assert problem_of(refused) == ("pdf_too_big", {"size": "21 MB", "limit": "21 MB"})
    assert time.monotonic() - started < 0.1


# -- Office -------------------------------------------------------------------------------------


async def test_docx_becomes_markdown(processes: ConverterProcesses) -> None:
    block, cut = await office.read(
        documents.word(), "report.docx", max_text_bytes=512 * KB, processes=processes
    )
    assert block.data == (
        "# Quarterly report\n\n"
        "## Revenue\n\n"
        "Revenue grew 12% in Q3, led by the EU.\n\n"
        "- Hire two engineers\n\n"
        "| Region | Sales |\n"
        "| --- | --- |\n"
        "| EU | 42 \\| 43 |\n"
    )
    assert not cut
    assert (
        block.to_claude()["source"]["type"] == "text"
        and block.to_claude()["title"] == "report.docx"
    )


async def test_xlsx_becomes_a_table_per_sheet(processes: ConverterProcesses) -> None:
    block, cut = await office.read(
        documents.spreadsheet(), "sales.xlsx", max_text_bytes=512 * KB, processes=processes
    )
    assert block.data == (
        "## Sales\n\n"
        "| Region | Sales | Closed |\n"
        "| --- | --- | --- |\n"
        "| EU | 42 | 2026-01-02 |\n"
        "| US | 3.5 |  |\n\n"
        "## Notes\n\n"
        "| Prices exclude VAT |\n"
        "| --- |\n"
    )
    assert not cut


async def test_pptx_becomes_slides_with_notes_and_tables(processes: ConverterProcesses) -> None:
    block, _ = await office.read(
        documents.slides(), "deck.pptx", max_text_bytes=512 * KB, processes=processes
    )
    assert block.data == (
        "## Slide 1: Roadmap\n\n"
        "Ship documents\nThen spreadsheets\n\n"
        "Notes: Mention the deadline\n\n"
        "## Slide 2: Budget\n\n"
        "| Team | EUR |\n"
        "| --- | --- |\n"
        "| Bots | 1000 |\n"
    )


async def test_long_office_document_is_cut_at_the_cap(processes: ConverterProcesses) -> None:
    for data, name in [
        (documents.word(paragraphs=2000), "long.docx"),
        (documents.spreadsheet(rows=5000), "long.xlsx"),
    ]:
        block, cut = await office.read(data, name, max_text_bytes=32 * KB, processes=processes)
        assert cut, name
        assert 16 * KB < len(block.data.encode()) <= 32 * KB, name
        assert block.data.endswith("\n"), name


async def test_corrupt_zip_named_docx_is_refused(processes: ConverterProcesses) -> None:
    for data in (documents.corrupt_zip(), b"PK\x03\x04" + bytes(100), b"plain text, not a zip"):
        with pytest.raises(NotConvertible) as refused:
            await office.read(data, "report.docx", max_text_bytes=512 * KB, processes=processes)
        assert problem_of(refused) == ("office_invalid", {})


async def test_old_or_encrypted_office_file_is_refused(processes: ConverterProcesses) -> None:
    ole = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(4000)
    with pytest.raises(NotConvertible) as refused:
        await office.read(ole, "budget.xlsx", max_text_bytes=512 * KB, processes=processes)
    assert problem_of(refused) == ("office_encrypted", {})


async def test_zip_bomb_is_refused_from_its_directory(processes: ConverterProcesses) -> None:
    bomb = documents.zip_bomb_docx()  # ~3 MB that inflate to 2 GB
    started = time.monotonic()
    with pytest.raises(NotConvertible) as refused:
        await office.read(bomb, "bomb.docx", max_text_bytes=512 * KB, processes=processes)
    assert problem_of(refused) == ("office_too_big", {"limit": "50 MB"})
    assert time.monotonic() - started < 1.0
    # within the size cap but inflating 1000:1: refused too, in the child as well
    small = documents.zip_bomb_docx(8 * 1024 * 1024)
    with pytest.raises(NotConvertible) as refused:
        office.convert(small, max_text_bytes=512 * KB)
    assert refused.value.problem == "office_too_big"


def test_office_files_are_sniffed_by_their_main_part() -> None:
    assert office.sniff(documents.word()) == "docx"
    assert office.sniff(documents.spreadsheet()) == "xlsx"
    assert office.sniff(documents.slides()) == "pptx"
    assert office.sniff(documents.corrupt_zip()) is None
    assert office.sniff(documents.pdf()) is None


async def test_document_without_text_gets_a_note(processes: ConverterProcesses) -> None:
    import docx

    buffer = io.BytesIO()
    docx.Document().save(buffer)
    with pytest.raises(NotConvertible) as refused:
        await office.read(
            buffer.getvalue(), "blank.docx", max_text_bytes=512 * KB, processes=processes
        )
    assert problem_of(refused) == ("office_no_text", {})


# -- child processes ----------------------------------------------------------------------------


async def test_a_conversion_that_spins_is_killed_and_the_loop_runs_on() -> None:
    processes = ConverterProcesses(timeout=1.0)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    started = time.monotonic()
    try:
        with pytest.raises(NotConvertible) as refused:
            await processes.run("tests.converter_tasks:spin", b"", {"seconds": 30})
    finally:
        ticker.cancel()
    elapsed = time.monotonic() - started
    assert problem_of(refused) == ("conversion_timed_out", {"seconds": "1"})
    assert 1.0 <= elapsed < 3.0
    assert ticks > 50  # the event loop kept serving meanwhile


async def test_a_conversion_that_grabs_memory_fails_alone() -> None:
    processes = ConverterProcesses(max_memory=256 * 1024 * 1024)
    with pytest.raises(NotConvertible) as refused:
        await processes.run("tests.converter_tasks:allocate", b"", {"megabytes": 1024})
    assert refused.value.problem == "conversion_failed"
    assert await processes.run("tests.converter_tasks:allocate", b"", {"megabytes": 16}) == 16


async def test_the_child_sees_no_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-secret")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-secret")
    names = await ConverterProcesses().run("tests.converter_tasks:environment", b"", {})
    assert names == ["LC_ALL", "PYTHONPATH"]


async def test_bytes_and_params_reach_the_child() -> None:
    data = os.urandom(3 * 1024 * 1024)
    results = await asyncio.gather(
        *(ConverterProcesses().run("tests.converter_tasks:echo", data, {"n": n}) for n in range(3))
    )
    assert results == [{"size": len(data), "params": {"n": n}} for n in range(3)]


async def test_children_run_at_most_so_many_at_once() -> None:
    processes = ConverterProcesses(max_concurrent=1)
    started = time.monotonic()
    await asyncio.gather(
        *(processes.run("tests.converter_tasks:spin", b"", {"seconds": 0.4}) for _ in range(2))
    )
    assert time.monotonic() - started >= 0.8  # one after the other


def test_the_bot_does_not_import_the_parsers() -> None:
    """They cost ~20 MB and run only in the converter's child process."""
    code = (
        "import sys, slackbot.server, slackbot.attachments\n"
        "print(sorted(m for m in ('pypdf', 'docx', 'openpyxl', 'pptx', 'lxml', "
        "'charset_normalizer') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"
