"""The gRPC face of the retrieval service: ragway.v1.RetrievalService over `service.Retrieval`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

import grpc

from ragway.core.errors import InvalidArgument
from ragway.retrieval import convert
from ragway.retrieval.config import RetrievalSettings
from ragway.retrieval.embedder import Embedder
from ragway.retrieval.rerank import Reranker
from ragway.retrieval.service import Retrieval
from ragway.retrieval.stores.base import VectorStore
from ragway.v1 import retrieval_pb2 as pb
from ragway.v1 import retrieval_pb2_grpc

Context: TypeAlias = grpc.aio.ServicerContext


class RetrievalServicer(retrieval_pb2_grpc.RetrievalServiceServicer):
    def __init__(
        self,
        store: VectorStore,
        embedder: Embedder,
        settings: RetrievalSettings,
        reranker: Reranker | None = None,
        more_embedders: Sequence[Embedder] = (),
    ) -> None:
        self.retrieval = Retrieval(
            store, embedder, settings, reranker=reranker, more_embedders=more_embedders
        )

    async def CreateCollection(
        self, request: pb.CreateCollectionRequest, context: Context
    ) -> pb.CollectionInfo:
        info = await self.retrieval.create_collection(
            request.name,
            convert.distance_from_pb(request.distance),
            convert.index_from_pb(request.index),
            request.embedder,
        )
        return convert.collection_to_pb(info)

    async def ListCollections(
        self, request: pb.ListCollectionsRequest, context: Context
    ) -> pb.ListCollectionsResponse:
        infos = await self.retrieval.list_collections()
        return pb.ListCollectionsResponse(collections=[convert.collection_to_pb(i) for i in infos])

    async def DescribeCollection(
        self, request: pb.DescribeCollectionRequest, context: Context
    ) -> pb.CollectionInfo:
        return convert.collection_to_pb(await self.retrieval.describe_collection(request.name))

    async def DeleteCollection(
        self, request: pb.DeleteCollectionRequest, context: Context
    ) -> pb.DeleteCollectionResponse:
        return pb.DeleteCollectionResponse(
            deleted_vectors=await self.retrieval.delete_collection(request.name)
        )

    async def UpsertDocuments(
        self, request: pb.UpsertDocumentsRequest, context: Context
    ) -> pb.UpsertDocumentsResponse:
        docs = [convert.document_from_pb(d) for d in request.documents]
        counts = await self.retrieval.upsert(request.collection, docs, request.embedder)
        return pb.UpsertDocumentsResponse(
            documents=[pb.DocumentResult(id=doc_id, chunks=n) for doc_id, n in counts],
            chunks_written=sum(n for _, n in counts),
        )

    async def DeleteDocuments(
        self, request: pb.DeleteDocumentsRequest, context: Context
    ) -> pb.DeleteDocumentsResponse:
        removed = await self.retrieval.delete_documents(
            request.collection, list(request.ids), convert.filter_from_pb(request.filter)
        )
        return pb.DeleteDocumentsResponse(deleted_vectors=removed)

    async def GetDocument(self, request: pb.GetDocumentRequest, context: Context) -> pb.Document:
        return convert.document_to_pb(await self.retrieval.get_document(request.collection, request.id))

    async def ListDocuments(
        self, request: pb.ListDocumentsRequest, context: Context
    ) -> pb.ListDocumentsResponse:
        page, next_after = await self.retrieval.list_documents(
            request.collection, request.limit, request.after
        )
        return pb.ListDocumentsResponse(
            documents=[convert.summary_to_pb(s) for s in page], next_after=next_after
        )

    async def Search(self, request: pb.SearchRequest, context: Context) -> pb.SearchResponse:
        which = request.WhichOneof("query")
        if which is None:
            raise InvalidArgument("give a query text or a vector", field="query")
        query = request.text if which == "text" else list(request.vector.values)
        result = await self.retrieval.run_search(
            request.collection,
            query,
            request.top_k,
            convert.filter_from_pb(request.filter),
            request.score_threshold if request.HasField("score_threshold") else None,
            convert.search_options_from_pb(request),
            request.embedder,
        )
        return convert.search_result_to_pb(result)

    async def Embed(self, request: pb.EmbedRequest, context: Context) -> pb.EmbedResponse:
        return convert.embeddings_to_pb(await self.retrieval.embed(list(request.texts), request.model))

    async def DescribeService(self, request: pb.DescribeServiceRequest, context: Context) -> pb.ServiceInfo:
        return convert.service_info_to_pb(self.retrieval.describe_service())
