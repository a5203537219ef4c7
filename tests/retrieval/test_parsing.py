"""Parsing uploads into sections: the real parsers (BeautifulSoup, pypdf) on real documents."""

from __future__ import annotations

import pytest

from ragway.core.errors import InvalidArgument
from ragway.retrieval.parsing import Section, parse
from tests.retrieval.pdf import make_pdf


def test_plain_text_is_one_section() -> None:
    assert parse("Hello world.\n\nSecond paragraph.", "text/plain") == [
        Section("", "Hello world.\n\nSecond paragraph.")
    ]


def test_markdown_headings_travel_with_their_text() -> None:
    md = (
        "Intro line.\n# Guide\nAbout the guide.\n## Install\nRun pip.\n"
        "```\n# not a heading\n```\n## Use\nCall it.\n"
    )
    assert parse(md, "text/markdown; charset=utf-8") == [
        Section("", "Intro line."),
        Section("Guide", "About the guide."),
        Section("Guide > Install", "Run pip.\n```\n# not a heading\n```"),
        Section("Guide > Use", "Call it."),
    ]


def test_html_keeps_visible_text_and_headings_only() -> None:
    html = """<html><head><title>T</title><style>p {color: red}</style></head><body>
    <script>var secret = 1;</script><h1>Cats</h1><p>Cats <b>purr</b> softly.</p>
    <h2>Food</h2><div>They eat fish.</div><noscript>enable js</noscript></body></html>"""
    sections = parse(html.encode(), "text/html")
    assert sections == [Section("Cats", "Cats purr softly."), Section("Cats > Food", "They eat fish.")]


def test_pdf_text_is_extracted_from_every_page() -> None:
    sections = parse(make_pdf(["First page about owls.", "Second page about bats."]), "application/pdf")
    assert "First page about owls." in sections[0].text
    assert "Second page about bats." in sections[0].text


def test_pdf_is_recognised_without_a_content_type() -> None:
    assert "owls" in parse(make_pdf(["owls"]), "")[0].text


@pytest.mark.parametrize(
    ("content", "content_type", "message"),
    [
        ("  \n\t ", "text/plain", "no text"),
        (b"<html><script>x()</script></html>", "text/html", "no text"),
        (b"\x89PNG\r\n", "image/png", "unsupported content type"),
        (b"\xff\xfe\xfa", "text/plain", "not valid utf-8"),
        (b"%PDF-1.4 garbage", "application/pdf", "not a readable PDF"),
        ("%PDF as text", "application/pdf", "must be sent as bytes"),
    ],
)
def test_unusable_documents_are_invalid_arguments(
    content: str | bytes, content_type: str, message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse(content, content_type)
