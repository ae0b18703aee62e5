"""Real documents made in the test: PDFs written by hand (and read back by pypdf), Office files
made with the libraries the bot reads them with, and the malformed ones people send."""

from __future__ import annotations

import datetime
import io
import struct
import zipfile
import zlib

import docx
import openpyxl
import pptx
from pypdf import PdfReader, PdfWriter

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
PPTX = "application/vnd.openxmlformats-officedocument.presentationml.presentation"


def pdf(pages: int = 1, text: str = "Hello from page") -> bytes:
    """A minimal valid PDF: `pages` Letter pages, each saying `text` and its number."""
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(pages))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {pages} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for i in range(pages):
        content = f"BT /F1 24 Tf 72 700 Td ({text} {i + 1}) Tj ET".encode()
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792]"
            b" /Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % (5 + 2 * i)
        )
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content))
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    data = bytes(out)
    assert len(PdfReader(io.BytesIO(data), strict=True).pages) == pages  # valid, not repaired
    return data


def encrypted_pdf() -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf(2))))
    writer.encrypt("secret", algorithm="RC4-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def corrupt_pdf() -> bytes:
    return b"%PDF-1.7\n" + bytes(range(256)) * 40


def word(paragraphs: int = 0) -> bytes:
    document = docx.Document()
    document.add_heading("Quarterly report", 0)
    document.add_heading("Revenue", 1)
    document.add_paragraph("Revenue grew 12% in Q3, led by the EU.")
    document.add_paragraph("Hire two engineers", style="List Bullet")
    table = document.add_table(rows=2, cols=2)
    for (row, column), text in {
        (0, 0): "Region",
        (0, 1): "Sales",
        (1, 0): "EU",
        (1, 1): "42 | 43",
    }.items():
        table.cell(row, column).text = text
    for index in range(paragraphs):
        document.add_paragraph(f"Paragraph {index}: " + "lorem ipsum dolor sit amet " * 8)
    return _saved(document)


def spreadsheet(rows: int = 0) -> bytes:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = "Sales"
    sheet.append(["Region", "Sales", "Closed"])
    sheet.append(["EU", 42.0, datetime.date(2026, 1, 2)])
    sheet.append(["US", 3.5, None])
    sheet["D2"] = "=B2*2"  # a formula: no cached value in a file openpyxl wrote
    for index in range(rows):
        sheet.append([f"row {index}", index, "some text in a cell " * 3])
    workbook.create_sheet("Notes").append(["Prices exclude VAT"])
    return _saved(workbook)


def slides() -> bytes:
    presentation = pptx.Presentation()
    slide = presentation.slides.add_slide(presentation.slide_layouts[1])
    assert slide.shapes.title is not None
    slide.shapes.title.text = "Roadmap"
    slide.placeholders[1].text = "Ship documents\nThen spreadsheets"
    slide.notes_slide.notes_text_frame.text = "Mention the deadline"
    table_slide = presentation.slides.add_slide(presentation.slide_layouts[5])
    assert table_slide.shapes.title is not None
    table_slide.shapes.title.text = "Budget"
    table = table_slide.shapes.add_table(2, 2, 0, 0, 3_000_000, 1_000_000).table
    table.cell(0, 0).text, table.cell(0, 1).text = "Team", "EUR"
    table.cell(1, 0).text, table.cell(1, 1).text = "Bots", "1000"
    return _saved(presentation)


def zip_bomb_docx(expands_to: int = 2 * 1024**3) -> bytes:
    """A real .docx of about 2 MB whose document.xml inflates to `expands_to` bytes of empty
    paragraphs (up to 4 GB): the bot must see that in the central directory, and never inflate
    it. Deflate blocks that follow a full flush don't depend on what came before, so one
    compressed megabyte is repeated rather than two gigabytes compressed."""
    chunk = b"<w:p/>" * (1024 * 1024 // 6)
    repeats = expands_to // len(chunk)
    entries = []
    with zipfile.ZipFile(io.BytesIO(word())) as template:
        for name in template.namelist():
            raw = template.read(name)
            if name != "word/document.xml":
                entries.append((name, _deflated(raw), zlib.crc32(raw), len(raw)))
                continue
            # The real document, its body holding gigabytes of empty paragraphs.
            head, _, tail = raw.partition(b"<w:body>")
            head += b"<w:body>"
            compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
            start = compressor.compress(head) + compressor.flush(zlib.Z_FULL_FLUSH)
            block = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
            end = compressor.compress(tail) + compressor.flush()
            crc = zlib.crc32(head)
            for _ in range(repeats):
                crc = zlib.crc32(chunk, crc)
            crc = zlib.crc32(tail, crc)
            size = len(head) + len(chunk) * repeats + len(tail)
            entries.append((name, start + block * repeats + end, crc, size))
    return _zip(entries)


def _deflated(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


def _zip(entries: list[tuple[str, bytes, int, int]]) -> bytes:
    """A zip of deflated entries (name, deflated bytes, CRC-32, inflated size), written by hand
    so an entry's bytes can be made up rather than compressed."""
    out = bytearray()
    directory = bytearray()
    for name, data, crc, size in entries:
        encoded = name.encode()
        offset = len(out)
        fields = struct.pack("<HHHHHIII", 20, 0, 8, 0, 0x21, crc, len(data), size)
        out += b"PK\x03\x04" + fields + struct.pack("<HH", len(encoded), 0) + encoded + data
        directory += (
            b"PK\x01\x02"
            + struct.pack("<H", 20)
            + fields
            + struct.pack("<HHHHHII", len(encoded), 0, 0, 0, 0, 0, offset)
            + encoded
        )
    end = struct.pack(
        "<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(directory), len(out), 0
    )
    return bytes(out + directory + end)


def corrupt_zip() -> bytes:
    """What a truncated download or a renamed file looks like: a zip header, then nothing."""
    return word()[:300]


def _saved(
    document: docx.document.Document | openpyxl.Workbook | pptx.presentation.Presentation,
) -> bytes:
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()
