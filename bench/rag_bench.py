"""RAG benchmark (issue 5): what retrieval adds to a chat request at the gateway.

    python bench/rag_bench.py                                   # defaults, ~8-10 min on 2 cores
    python bench/rag_bench.py --chunks 2000 --queries 50 --chats 8
    python bench/rag_bench.py --json out/rag.json

Set-up: model service, retrieval service (embedded Qdrant) and one gateway (SQLite), as real
processes; one user; one collection filled through the gateway with N short synthetic chunks
(1-3 varied sentences each, one chunk per document) in batches of 100 documents.

Measured:
  1. retrieval at the gateway -- POST /v1/collections/{name}/search {query, top_k: 5}, one at a
     time: query embedding + vector search + result assembly, the path a RAG chat takes.
     p50/p95 (target p50 <= 30 ms). For reference the same queries straight to the retrieval
     service (gRPC Search with the query text), so the gateway's share is visible;
  2. RAG overhead on time-to-first-token -- pairs of streamed chats, one at a time: a RAG chat
     (`rag: {collections: [name], top_k: 5}`, max_tokens 16), then a plain chat whose prompt has
     the same number of tokens (read from the RAG chat's usage, fitted with the model's Tokenize
     and checked against the plain chat's usage). The plain prompt copies the RAG prompt's shape
     (the same fixed instructions, then distinct filler text, then the question) so both get the
     same prefix-cache help; cached prompt tokens are printed for both. The TTFT difference is
     the RAG overhead;
  3. the multi-turn prefix cache -- conversations of three stored RAG turns (`store: true`, the
     next turn sent with `conversation_id`), one at a time; turn 3's TTFT against a cold plain chat
     fitted to the same prompt size right after it (target p50 ratio <= 0.3): turn 3's prompt
     begins with exactly what turn 2 was sent with plus its answer, so only the new turn prefills.

Why these defaults: 10,000 chunks embed at several hundred per second on 2 cores (~1 minute of
ingest); 200 searches take seconds; 20 chat pairs of ~300-token prompts take 1-2 minutes; the
model service starts in 40-120 s. The load average is printed: other work skews the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import orjson
from harness import (
    MODEL_NAME,
    add_engine_options,
    apply_engine_options,
    install_cleanup,
    make_api_key,
    start_gateway,
    start_model_service,
    start_retrieval_service,
)
from report import console, machine, print_table, save_json, verdict
from stats import pct

from ragway.core.grpc_server import GRPC_OPTIONS
from ragway.gateway.generation.grounding import CLOSE, INSTRUCTIONS, OPEN
from ragway.v1 import model_pb2, model_pb2_grpc, retrieval_pb2, retrieval_pb2_grpc

COLLECTION = "bench"
NAMES = (
    "Amara Voss", "Tobias Lind", "Keiko Mori", "Rafael Ortiz", "Ingrid Holm", "Samir Haddad", "Lena Novak",
    "Owen Price", "Mei Chen", "Dario Conti", "Freya Dahl", "Kwame Mensah", "Nadia Petrov", "Hugo Laurent",
)  # fmt: skip
PLACES = (
    "Quorvin", "the Glass Sea", "Lake Ardel", "Port Elsen", "the Tarnel Hills", "Brightwater", "Old Maren",
    "the Copper Coast", "Saltmere", "Northgate", "the Vell Valley", "Harrowfield", "Calder Bay", "Dunmore",
)  # fmt: skip
THINGS = (
    "lighthouse", "bridge", "telescope", "water mill", "library", "observatory", "clock tower", "greenhouse",
    "railway", "harbour crane", "printing press", "wind turbine", "glass furnace", "seed bank", "ferry",
    "weather station", "orchard", "bakery", "textile loom", "radio mast", "canal lock", "salt works",
)  # fmt: skip
ADJECTIVES = (
    "ancient", "rebuilt", "solar-powered", "abandoned", "famous", "experimental", "wooden", "floating",
    "underground", "restored", "copper", "automated", "seasonal", "community-run", "coastal", "modest",
)  # fmt: skip
VERBS = ("built", "repaired", "designed", "funded", "documented", "modernised", "rescued", "mapped")
TOPICS = ("history", "engineering", "farming", "trade", "weather", "music", "cooking", "medicine", "shipping")
FACTS = (
    "It produces {n} units every winter.",
    "Visitors say it smells of {thing2} and rain.",
    "Its records mention a flood in {year}.",
    "The {thing2} nearby shares its power supply.",
    "Local schools study it as part of their {topic} lessons.",
    "A festival is held beside it every {month}.",
    "The original plans were lost in {year} and redrawn from memory.",
    "It was closed for {n} days after the storm of {year}.",
)
MONTHS = ("March", "June", "August", "October", "December")


def chunk_text(rng: np.random.Generator) -> tuple[str, dict[str, Any]]:
    """One to three sentences about who did what where; varied enough that search must rank."""
    name, place, thing = rng.choice(NAMES), rng.choice(PLACES), rng.choice(THINGS)
    year, topic = int(rng.integers(1850, 2024)), str(rng.choice(TOPICS))
    sentences = [f"{name} {rng.choice(VERBS)} the {rng.choice(ADJECTIVES)} {thing} of {place} in {year}."]
    for template in rng.choice(FACTS, int(rng.integers(0, 3)), replace=False):
        sentences.append(
            str(template).format(
                n=int(rng.integers(2, 900)),
                thing2=rng.choice(THINGS),
                year=int(rng.integers(1850, 2024)),
                topic=topic,
                month=rng.choice(MONTHS),
            )
        )
    return " ".join(sentences), {"topic": topic, "place": str(place), "year": year}


def question(rng: np.random.Generator) -> str:
    forms = (
        "Who {verb} the {thing} of {place}?",
        "What happened to the {thing} in {place} in {year}?",
        "When was the {adj} {thing} of {place} {verb}?",
        "Tell me about {name} and the {thing}.",
    )
    return str(rng.choice(forms)).format(
        verb=rng.choice(VERBS),
        thing=rng.choice(THINGS),
        place=rng.choice(PLACES),
        year=int(rng.integers(1850, 2024)),
        adj=rng.choice(ADJECTIVES),
        name=rng.choice(NAMES),
    )


def filler_words(rng: np.random.Generator, count: int) -> list[str]:
    return " ".join(chunk_text(rng)[0] for _ in range(count // 10 + 2)).split()[:count]


async def ingest(http: httpx.AsyncClient, chunks: int, batch: int) -> dict[str, Any]:
    rng = np.random.default_rng(7)
    created = await http.post("/v1/collections", json={"name": COLLECTION})
    if created.status_code != 201:
        raise RuntimeError(f"POST /v1/collections: {created.status_code} {created.text}")
    started = time.perf_counter()
    for first in range(0, chunks, batch):
        docs = []
        for i in range(first, min(first + batch, chunks)):
            text, metadata = chunk_text(rng)
            docs.append({"id": f"doc-{i:06d}", "text": text, "metadata": metadata})
        response = await http.post(f"/v1/collections/{COLLECTION}/documents", json={"documents": docs})
        if response.status_code not in (200, 201):
            raise RuntimeError(f"POST documents (batch at {first}): {response.status_code} {response.text}")
    wall = time.perf_counter() - started
    info = (await http.get(f"/v1/collections/{COLLECTION}")).json()
    console.print(f"  ingested {chunks} chunks in {wall:.1f} s ({chunks / wall:.0f}/s): {info}")
    return {"chunks": chunks, "seconds": wall, "chunks_per_s": chunks / wall, "collection": info}


async def search_part(
    http: httpx.AsyncClient, retrieval_addr: str, store_name: str, args: argparse.Namespace
) -> list[dict[str, Any]]:
    rng = np.random.default_rng(11)
    queries = [question(rng) for _ in range(args.queries + args.warmup)]
    gateway_ms: list[float] = []
    direct_ms: list[float] = []
    hits = direct_hits = 0
    async with grpc.aio.insecure_channel(retrieval_addr, options=GRPC_OPTIONS) as channel:
        stub = retrieval_pb2_grpc.RetrievalServiceStub(channel)
        # Alternate the two paths query by query, so both see the same machine load.
        for i, query in enumerate(queries):
            started = time.perf_counter()
            response = await http.post(
                f"/v1/collections/{COLLECTION}/search", json={"query": query, "top_k": 5}
            )
            elapsed = time.perf_counter() - started
            if response.status_code != 200:
                raise RuntimeError(f"POST search: {response.status_code} {response.text}")
            started = time.perf_counter()
            reply = await stub.Search(retrieval_pb2.SearchRequest(collection=store_name, text=query, top_k=5))
            direct = time.perf_counter() - started
            if i >= args.warmup:
                gateway_ms.append(elapsed * 1000)
                direct_ms.append(direct * 1000)
                hits += len(response.json()["data"])
                direct_hits += len(reply.hits)
    load = os.getloadavg()[0]
    return [
        {
            "path": "gateway POST /search",
            "queries": len(gateway_ms),
            "p50_ms": pct(gateway_ms, 50),
            "p95_ms": pct(gateway_ms, 95),
            "mean_hits": hits / max(1, len(gateway_ms)),
            "load1": load,
        },
        {
            "path": "retrieval gRPC Search",
            "queries": len(direct_ms),
            "p50_ms": pct(direct_ms, 50),
            "p95_ms": pct(direct_ms, 95),
            "mean_hits": direct_hits / max(1, len(direct_ms)),
            "load1": load,
        },
    ]


async def stream_chat(http: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    """One streamed chat: TTFT (first content chunk) and the usage it reports."""
    started = time.perf_counter()
    first: float | None = None
    usage: dict[str, Any] = {}
    citations = 0
    conversation_id = None
    async with http.stream("POST", "/v1/chat/completions", json=body) as response:
        if response.status_code != 200:
            raise RuntimeError(
                f"POST /v1/chat/completions: {response.status_code} {await response.aread()!r}"
            )
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = orjson.loads(line[6:])
            if "error" in chunk:
                raise RuntimeError(f"chat stream failed: {chunk}")
            choices = chunk.get("choices") or []
            if first is None and choices and not any("role" in c.get("delta", {}) for c in choices):
                first = time.perf_counter()
            if chunk.get("citations"):
                citations = len(chunk["citations"])
            conversation_id = chunk.get("conversation_id") or conversation_id
            if chunk.get("usage"):
                usage = chunk["usage"]
    if first is None:
        raise RuntimeError("the chat streamed no token")
    return {
        "ttft_ms": (first - started) * 1000,
        "prompt_tokens": usage.get("prompt_tokens", 0),
        "cached_tokens": (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0),
        "citations": citations,
        "conversation_id": conversation_id,
    }


async def fit_plain_message(
    stub: model_pb2_grpc.ModelServiceStub, query: str, target: int, rng: np.random.Generator
) -> tuple[str, int]:
    """A message shaped like a RAG turn (instructions, a block of distinct text, the question)
    whose chat prompt has `target` tokens, or as close as whole words allow."""
    words = filler_words(rng, 2000)

    def render(k: int) -> str:
        return f"{INSTRUCTIONS}\n\n{OPEN}\n{' '.join(words[:k])}\n{CLOSE}\n\nQuestion: {query}"

    async def count(text: str) -> int:
        chat = model_pb2.ChatInput(messages=[model_pb2.ChatMessage(role="user", content=text)])
        return int((await stub.Tokenize(model_pb2.TokenizeRequest(chat=chat))).count)

    k, best = target // 2, ("", 0)
    for _ in range(16):
        text = render(k)
        n = await count(text)
        if abs(n - target) < abs(best[1] - target):
            best = (text, n)
        if n == target:
            break
        step = (target - n) * 3 // 4 or (1 if n < target else -1)
        k = max(0, k + step)
    return best


async def ttft_part(
    http: httpx.AsyncClient, model_addr: str, args: argparse.Namespace
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rng = np.random.default_rng(23)
    pairs: list[dict[str, Any]] = []
    base = {"model": MODEL_NAME, "max_tokens": args.max_tokens, "temperature": 0.0, "stream": True}
    base["stream_options"] = {"include_usage": True}
    async with grpc.aio.insecure_channel(model_addr, options=GRPC_OPTIONS) as channel:
        stub = model_pb2_grpc.ModelServiceStub(channel)
        for i in range(args.chats + args.chat_warmup):
            query = question(rng)
            rag = await stream_chat(
                http,
                {
                    **base,
                    "messages": [{"role": "user", "content": query}],
                    "rag": {"collections": [COLLECTION], "top_k": args.top_k},
                },
            )
            message, fitted = await fit_plain_message(stub, query, rag["prompt_tokens"], rng)
            plain = await stream_chat(http, {**base, "messages": [{"role": "user", "content": message}]})
            if i < args.chat_warmup:
                continue
            pairs.append({"query": query, "rag": rag, "plain": plain, "fitted_tokens": fitted})
    rag_ttft = [p["rag"]["ttft_ms"] for p in pairs]
    plain_ttft = [p["plain"]["ttft_ms"] for p in pairs]
    diffs = [r - p for r, p in zip(rag_ttft, plain_ttft, strict=True)]

    def mean(key: str, side: str) -> float:
        return float(np.mean([p[side][key] for p in pairs])) if pairs else float("nan")

    summary = {
        "pairs": len(pairs),
        "rag_ttft_p50_ms": pct(rag_ttft, 50),
        "rag_ttft_p95_ms": pct(rag_ttft, 95),
        "plain_ttft_p50_ms": pct(plain_ttft, 50),
        "plain_ttft_p95_ms": pct(plain_ttft, 95),
        "overhead_p50_ms": pct(rag_ttft, 50) - pct(plain_ttft, 50),
        "paired_diff_p50_ms": pct(diffs, 50),
        "rag_prompt_tokens": mean("prompt_tokens", "rag"),
        "plain_prompt_tokens": mean("prompt_tokens", "plain"),
        "rag_cached_tokens": mean("cached_tokens", "rag"),
        "plain_cached_tokens": mean("cached_tokens", "plain"),
        "rag_citations": mean("citations", "rag"),
        "max_prompt_mismatch": max(
            (abs(p["rag"]["prompt_tokens"] - p["plain"]["prompt_tokens"]) for p in pairs), default=0
        ),
        "load1": os.getloadavg()[0],
    }
    return pairs, summary


async def multiturn_part(
    http: httpx.AsyncClient, model_addr: str, args: argparse.Namespace
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rng = np.random.default_rng(31)
    base = {"model": MODEL_NAME, "max_tokens": args.max_tokens, "temperature": 0.0, "stream": True}
    base |= {"stream_options": {"include_usage": True}, "store": True}
    base["rag"] = {"collections": [COLLECTION], "top_k": args.top_k}
    runs: list[dict[str, Any]] = []
    async with grpc.aio.insecure_channel(model_addr, options=GRPC_OPTIONS) as channel:
        stub = model_pb2_grpc.ModelServiceStub(channel)
        for i in range(args.conversations + 1):  # the first one warms up
            turns, conversation = [], {}
            for _ in range(3):
                body = {**base, "messages": [{"role": "user", "content": question(rng)}], **conversation}
                turns.append(await stream_chat(http, body))
                conversation = {"conversation_id": turns[-1]["conversation_id"]}
            third = turns[-1]
            message, _ = await fit_plain_message(stub, question(rng), third["prompt_tokens"], rng)
            cold = await stream_chat(http, {**base, "rag": None, "store": False,
                                            "messages": [{"role": "user", "content": message}]})  # fmt: skip
            if i:
                runs.append({"turns": turns, "cold": cold})
    turn3 = [r["turns"][2]["ttft_ms"] for r in runs]
    cold_ttft = [r["cold"]["ttft_ms"] for r in runs]
    summary = {
        "conversations": len(runs),
        "turn3_ttft_p50_ms": pct(turn3, 50),
        "cold_ttft_p50_ms": pct(cold_ttft, 50),
        "ratio_p50": pct(turn3, 50) / pct(cold_ttft, 50),
        "turn3_prompt_tokens": float(np.mean([r["turns"][2]["prompt_tokens"] for r in runs])),
        "turn3_cached_tokens": float(np.mean([r["turns"][2]["cached_tokens"] for r in runs])),
        "turn3_cached_share_of_turn2_prompt": float(
            np.mean([r["turns"][2]["cached_tokens"] / r["turns"][1]["prompt_tokens"] for r in runs])
        ),
        "cold_prompt_tokens": float(np.mean([r["cold"]["prompt_tokens"] for r in runs])),
        "cold_cached_tokens": float(np.mean([r["cold"]["cached_tokens"] for r in runs])),
        "load1": os.getloadavg()[0],
    }
    return runs, summary


async def main_async(args: argparse.Namespace) -> None:
    apply_engine_options(args)
    env = machine()
    results: dict[str, Any] = {"args": {k: v for k, v in vars(args).items() if k != "json"}, "machine": env}
    with tempfile.TemporaryDirectory(prefix="ragway-bench-rag-") as tmp:
        model = await asyncio.to_thread(start_model_service)
        retrieval = None
        gateway = None
        try:
            retrieval = await asyncio.to_thread(start_retrieval_service, Path(tmp) / "retrieval")
            gateway = await asyncio.to_thread(
                start_gateway, "gateway-rag", Path(tmp) / "gateway", model.address, retrieval.address
            )
            key = await asyncio.to_thread(make_api_key, gateway.address, gateway.extra["admin_key"])
            headers = {"Authorization": f"Bearer {key}"}
            async with httpx.AsyncClient(base_url=gateway.address, headers=headers, timeout=600) as http:
                user_id = (await http.get("/v1/me")).json()["id"]
                console.rule(f"ingest {args.chunks} chunks")
                results["ingest"] = await ingest(http, args.chunks, args.batch)
                console.rule("search")
                results["search"] = await search_part(
                    http, retrieval.address, f"{user_id}__{COLLECTION}", args
                )
                console.rule("RAG chat vs plain chat of the same prompt size")
                pairs, results["ttft"] = await ttft_part(http, model.address, args)
                results["pairs"] = pairs
                if args.conversations:
                    console.rule("multi-turn RAG conversation: turn 3 vs a cold prompt of its size")
                    results["conversations"], results["multiturn"] = await multiturn_part(
                        http, model.address, args
                    )
        finally:
            for service in (gateway, retrieval, model):
                if service is not None:
                    await asyncio.to_thread(service.stop)

    ingest_info = results["ingest"]
    print_table(
        "ingest through the gateway (context, not a verdict)",
        ["chunks", "seconds", "chunks/s", "vectors"],
        [[ingest_info["chunks"], ingest_info["seconds"], ingest_info["chunks_per_s"],
          ingest_info["collection"].get("vector_count")]],
    )  # fmt: skip
    search = results["search"]
    print_table(
        f"search, top_k 5, {args.chunks} chunks, one query at a time",
        ["path", "queries", "p50 ms", "p95 ms", "mean hits", "load1"],
        [list(row.values()) for row in search],
    )
    ttft = results["ttft"]
    print_table(
        f"streamed chat TTFT, max_tokens {args.max_tokens}, {ttft['pairs']} pairs, one at a time",
        ["chat", "TTFT p50 ms", "TTFT p95 ms", "prompt tok", "cached tok", "citations"],
        [
            ["RAG (top_k 5)", ttft["rag_ttft_p50_ms"], ttft["rag_ttft_p95_ms"], ttft["rag_prompt_tokens"],
             ttft["rag_cached_tokens"], ttft["rag_citations"]],
            ["plain, same prompt size", ttft["plain_ttft_p50_ms"], ttft["plain_ttft_p95_ms"],
             ttft["plain_prompt_tokens"], ttft["plain_cached_tokens"], 0],
        ],
    )  # fmt: skip
    gateway_p50, direct_p50 = search[0]["p50_ms"], search[1]["p50_ms"]
    multiturn = results.get("multiturn")
    if multiturn:
        print_table(
            f"multi-turn RAG, {multiturn['conversations']} conversations of 3 stored turns, one at a time",
            ["chat", "TTFT p50 ms", "prompt tok", "cached tok"],
            [
                ["turn 3", multiturn["turn3_ttft_p50_ms"], multiturn["turn3_prompt_tokens"],
                 multiturn["turn3_cached_tokens"]],
                ["cold, same prompt size", multiturn["cold_ttft_p50_ms"], multiturn["cold_prompt_tokens"],
                 multiturn["cold_cached_tokens"]],
            ],
        )  # fmt: skip
    print_table(
        "figures measured in this run",
        ["figure", "value", "target", ""],
        [
            ["search p50 at the gateway [ms]", gateway_p50, "<= 30 ms", verdict(gateway_p50, 30.0, False)],
            ["search p50 gateway / retrieval gRPC", gateway_p50 / direct_p50, "", ""],
            ["RAG TTFT overhead, p50(RAG) - p50(plain) [ms]", ttft["overhead_p50_ms"], "", ""],
            ["RAG TTFT overhead, p50 of paired differences [ms]", ttft["paired_diff_p50_ms"], "", ""],
            ["largest prompt-size mismatch in a pair [tokens]", ttft["max_prompt_mismatch"], "", ""],
            *(
                [
                    [
                        "turn-3 TTFT p50 / cold TTFT p50",
                        multiturn["ratio_p50"],
                        "<= 0.3",
                        verdict(multiturn["ratio_p50"], 0.3, False),
                    ],
                    [
                        "turn-3 cached tokens / turn-2 prompt tokens",
                        multiturn["turn3_cached_share_of_turn2_prompt"],
                        ">= 0.9",
                        verdict(multiturn["turn3_cached_share_of_turn2_prompt"], 0.9, True),
                    ],
                ]
                if multiturn
                else []
            ),
        ],
    )
    save_json(args.json, results)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chunks", type=int, default=10_000, help="chunks (documents) to ingest")
    parser.add_argument("--batch", type=int, default=100, help="documents per ingest request (max 100)")
    parser.add_argument("--queries", type=int, default=200, help="measured searches")
    parser.add_argument("--warmup", type=int, default=10, help="unmeasured searches first")
    parser.add_argument("--chats", type=int, default=20, help="measured RAG/plain chat pairs")
    parser.add_argument("--chat-warmup", type=int, default=2, help="unmeasured chat pairs first")
    parser.add_argument(
        "--conversations", type=int, default=6, help="measured 3-turn conversations (0 skips)"
    )
    parser.add_argument("--top-k", type=int, default=5, help="sources per RAG chat")
    parser.add_argument("--max-tokens", type=int, default=16, help="max_tokens of every chat")
    add_engine_options(parser)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    return parser.parse_args()


if __name__ == "__main__":
    install_cleanup()
    asyncio.run(main_async(parse_args()))
