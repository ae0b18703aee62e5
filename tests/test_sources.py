"""Citations → numbered links after the passage and one Sources list."""

from __future__ import annotations

from slackbot.sources import Sources


def web(url: str, title: str = "A page") -> dict[str, str]:
    return {"type": "web_search_result_location", "url": url, "title": title, "cited_text": "x"}


def test_the_same_url_keeps_its_number_and_is_listed_once() -> None:
    sources = Sources()
    assert sources.markers([web("https://a.example/1", "First")]) == " [1](https://a.example/1)"
    assert sources.markers([web("https://b.example/", "Second"), web("https://a.example/1")]) == (
        " [2](https://b.example/) [1](https://a.example/1)"
    )
    assert sources.markers([web("https://b.example/"), web("https://b.example/")]) == (
        " [2](https://b.example/)"
    )
    assert sources.footer() == (
        "**Sources**\n1. [First](https://a.example/1)\n2. [Second](https://b.example/)"
    )


def test_no_web_source_no_list() -> None:
    sources = Sources()
    assert sources.footer() == ""
    pdf = {"type": "page_location", "document_title": "plan.pdf", "start_page_number": 3}
    assert sources.markers([pdf]) == " _(plan.pdf, p. 3)_"
    text = {"type": "char_location", "document_title": "notes.csv", "start_char_index": 0}
    assert sources.markers([text]) == " _(notes.csv)_"
    assert sources.footer() == ""


def test_titles_and_urls_cannot_break_the_markdown() -> None:
    sources = Sources()
    sources.markers([web("https://w.example/a_(b)", "Odd [title]\nhere")])
    assert sources.footer() == "**Sources**\n1. [Odd (title) here](https://w.example/a_%28b%29)"
