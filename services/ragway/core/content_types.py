"""The document types ragway parses, by file suffix: what the gateway accepts in uploads and what
`ragway ingest` picks up from a folder, so the two never disagree."""

CONTENT_TYPES = {
    ".txt": "text/plain",
    ".text": "text/plain",
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".html": "text/html",
    ".htm": "text/html",
    ".pdf": "application/pdf",
}
