"""Turn an uploaded document into text sections: plain text, Markdown, HTML and PDF.

A section is a run of text under one heading path ("Guide > Install"). The chunker prefixes every
chunk with its heading path, so a chunk cut from the middle of a Markdown or HTML section still
says what it is about — which is what makes it findable by a question about that heading.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable
from dataclasses import dataclass

from bs4 import BeautifulSoup, NavigableString
from pypdf import PdfReader
from pypdf.errors import PdfReadError

from ragway.core.errors import InvalidArgument

PLAIN, MARKDOWN, HTML, PDF = "text/plain", "text/markdown", "text/html", "application/pdf"
_ALIASES = {"text/x-markdown": MARKDOWN, "application/xhtml+xml": HTML}
SUPPORTED = (PLAIN, MARKDOWN, HTML, PDF)

_ATX = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING_TAGS = ("h1", "h2", "h3", "h4", "h5", "h6")
_BLOCK_TAGS = (
    "p", "div", "li", "br", "tr", "section", "article", "pre", "blockquote", "table", "ul", "ol", "dd", "dt",
    *_HEADING_TAGS,
)  # fmt: skip
_INVISIBLE_TAGS = ("script", "style", "noscript", "template", "head", "svg")
# Marks a heading line in HTML's extracted text; a control character cannot occur in visible text.
_HTML_HEADING = "\x00"


@dataclass(frozen=True)
class Section:
    heading: str
    text: str


def normalize_content_type(content_type: str, data: bytes | None) -> str:
    """The bare MIME type; without one, bytes starting with %PDF- are a PDF and the rest plain text."""
    bare = content_type.split(";", 1)[0].strip().lower()
    if not bare:
        return PDF if data is not None and data.startswith(b"%PDF-") else PLAIN
    bare = _ALIASES.get(bare, bare)
    if bare not in SUPPORTED:
        raise InvalidArgument(
            f"unsupported content type {content_type!r}; use one of {', '.join(SUPPORTED)}",
            field="content_type",
        )
    return bare


def _charset(content_type: str) -> str:
    match = re.search(r"charset=([\w.-]+)", content_type, re.IGNORECASE)
    return match.group(1) if match else "utf-8"


def _decode(data: bytes, content_type: str) -> str:
    try:
        return data.decode(_charset(content_type))
    except (UnicodeDecodeError, LookupError) as exc:
        raise InvalidArgument(
            f"document bytes are not valid {_charset(content_type)} text: {exc}", field="data"
        ) from exc


def parse(content: str | bytes, content_type: str) -> list[Section]:
    """Sections of visible text, in document order; INVALID_ARGUMENT when there is none."""
    data = content if isinstance(content, bytes) else None
    kind = normalize_content_type(content_type, data)
    if kind == PDF:
        if data is None:
            raise InvalidArgument("a PDF must be sent as bytes (data), not text", field="data")
        sections = [Section("", _pdf_text(data))]
    else:
        text = content if isinstance(content, str) else _decode(content, content_type)
        if kind == MARKDOWN:
            sections = list(_markdown_sections(text))
        elif kind == HTML:
            sections = list(_html_sections(text))
        else:
            sections = [Section("", text)]
    sections = [s for s in sections if s.text.strip()]
    if not sections:
        raise InvalidArgument("the document has no text", field="text" if data is None else "data")
    return sections


def _sections(lines: Iterable[tuple[int, str] | str]) -> Iterable[Section]:
    """Group lines into sections; a (level, title) item opens a heading of that level."""
    path: list[tuple[int, str]] = []
    body: list[str] = []

    def flush() -> Section:
        return Section(" > ".join(title for _, title in path), "\n".join(body).strip())

    for line in lines:
        if isinstance(line, tuple):
            yield flush()
            body = []
            level, title = line
            path = [(lv, t) for lv, t in path if lv < level] + [(level, title)]
        else:
            body.append(line)
    yield flush()


def _markdown_sections(text: str) -> Iterable[Section]:
    def lines() -> Iterable[tuple[int, str] | str]:
        fenced = False
        for line in text.splitlines():
            if _FENCE.match(line):
                fenced = not fenced
            heading = None if fenced else _ATX.match(line)
            yield (len(heading.group(1)), heading.group(2)) if heading else line

    return _sections(lines())


def _html_sections(html: str) -> Iterable[Section]:
    soup = BeautifulSoup(html, "html.parser")
    for tag in soup.find_all(_INVISIBLE_TAGS):
        tag.decompose()
    for tag in soup.find_all(_HEADING_TAGS):
        title = " ".join(tag.get_text(" ").split())
        tag.replace_with(NavigableString(f"\n{_HTML_HEADING}{tag.name[1]}{title}\n"))
    for tag in soup.find_all(_BLOCK_TAGS):
        tag.append(NavigableString("\n"))

    def lines() -> Iterable[tuple[int, str] | str]:
        blank = False
        for raw in soup.get_text().splitlines():
            if raw.startswith(_HTML_HEADING):
                yield int(raw[1]), raw[2:]
                continue
            line = " ".join(raw.split())
            if line or not blank:
                yield line
            blank = not line

    return _sections(lines())


def _pdf_text(data: bytes) -> str:
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise InvalidArgument("the PDF is encrypted", field="data")
        return "\n\n".join(page.extract_text() or "" for page in reader.pages)
    except (PdfReadError, ValueError, KeyError) as exc:
        raise InvalidArgument(f"not a readable PDF: {exc}", field="data") from exc
