"""The metadata payload-index rule both Qdrant stores share (qdrant_common), and the server
store applying it (issue 14 item 6): the server gets the indexes the embedded engine gets.

No Qdrant server runs here, and qdrant-client's local mode ignores payload indexes, so the
server store's requests are recorded on a real local client (a spy, not a fake: every call
still goes through)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from qdrant_client import AsyncQdrantClient, models

from ragway.retrieval.stores.base import ChunkPoint, CollectionSpec
from ragway.retrieval.stores.qdrant_common import IndexKind, replaces, wanted_indexes
from ragway.retrieval.stores.qdrant_server import QdrantServerStore


def chunk(metadata: dict[str, Any]) -> ChunkPoint:
    return ChunkPoint("d", 0, 1, "t", metadata, np.ones(4, dtype=np.float32))


def test_each_metadata_value_gets_the_index_it_needs() -> None:
    wanted = wanted_indexes(
        [
            chunk({"team": "red", "year": 2020, "public": True, "tags": ["a", "b"], "nested": {"x": 1}}),
            chunk({"year": 2020.5, "score": [1, 2.5], "mixed": ["a", 1]}),
        ]
    )
    assert wanted == {
        "team": IndexKind.KEYWORD,
        "year": IndexKind.FLOAT,  # a Float index holds integers too; an Integer one drops floats
        "public": IndexKind.BOOL,
        "tags": IndexKind.KEYWORD,
        "score": IndexKind.FLOAT,
    }
    assert replaces(None, IndexKind.KEYWORD)
    assert replaces(IndexKind.INTEGER, IndexKind.FLOAT)
    assert not replaces(IndexKind.FLOAT, IndexKind.INTEGER)
    assert not replaces(IndexKind.KEYWORD, IndexKind.INTEGER)


class RecordingClient(AsyncQdrantClient):
    """A real local client that remembers the payload-index requests it forwards."""

    def __init__(self, path: str) -> None:
        super().__init__(path=path)
        self.created: list[tuple[str, Any]] = []
        self.deleted: list[str] = []

    async def create_payload_index(
        self, collection_name: str, field_name: str, field_schema: Any = None, **kw: Any
    ) -> Any:  # type: ignore[override]
        self.created.append((field_name, field_schema))
        return await super().create_payload_index(collection_name, field_name, field_schema, **kw)

    async def delete_payload_index(self, collection_name: str, field_name: str, **kw: Any) -> Any:  # type: ignore[override]
        self.deleted.append(field_name)
        return await super().delete_payload_index(collection_name, field_name, **kw)


async def test_server_store_indexes_metadata_like_the_embedded_one(tmp_path: Path) -> None:
    client = RecordingClient(str(tmp_path / "q"))
    store = QdrantServerStore(client=client)
    try:
        await store.create_collection(CollectionSpec("c", 4))
        client.created.clear()
        await store.write("c", [chunk({"team": "red", "year": 2020, "public": True})])
        assert sorted(client.created) == [
            ("metadata.public", models.PayloadSchemaType.BOOL),
            ("metadata.team", models.PayloadSchemaType.KEYWORD),
            ("metadata.year", models.PayloadSchemaType.INTEGER),
        ]
        client.created.clear()
        await store.write("c", [chunk({"team": "blue", "year": 2021})])
        assert client.created == []  # already indexed: nothing to do
        await store.write("c", [chunk({"year": 2021.5})])
        assert client.deleted == ["metadata.year"]
        assert client.created == [("metadata.year", models.PayloadSchemaType.FLOAT)]
    finally:
        await store.close()
