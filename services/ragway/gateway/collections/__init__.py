"""`/v1/collections`: ragway's own RAG collections API — collections, their documents, search."""
