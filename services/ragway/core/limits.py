"""Validation limits that the gateway and the retrieval service must agree on, in one place.

The gateway checks them to answer a 400 naming the field before any RPC; the retrieval service
checks them again because it also serves other callers. Two copies would drift.
"""

from __future__ import annotations

import re

# A user's collection name at the gateway. The store-side name adds the owner's id.
COLLECTION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
# A collection name inside the retrieval service (owner id + "__" + user's name).
STORE_COLLECTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
# Metadata keys a filter may name: identifiers, so every store can index them.
METADATA_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
# Metadata filters (retrieval.proto's Filter, OpenAI's compound filters): nesting depth, clauses.
MAX_FILTER_DEPTH = 8
MAX_FILTER_CONDITIONS = 64
# Clauses of one retrieval.proto Filter: the gateway spells an `in` over mixed types as one
# equality per value, so a filter within the gateway's limit can have more clauses than that.
MAX_FILTER_CLAUSES = 1024
MAX_DOCUMENT_ID = 256
MAX_TOP_K = 100
MAX_EMBED_TEXTS = 2048
# Search tuning (retrieval.proto's HybridOptions, RankingOptions, SearchParams) and index params.
MAX_FUSION_WEIGHT = 100.0
MAX_PREFETCH = 500
MAX_RERANK_CANDIDATES = 100
MAX_EF = 4096
MAX_NPROBE = 65_536
MAX_HNSW_M = 128
MAX_HNSW_EF_CONSTRUCT = 4096
MAX_IVF_NLIST = 65_536
