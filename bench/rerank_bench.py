"""The LLM reranker's latency on the real engine: one Score call for N passages of ~500 characters
(all prompts in one engine batch) against the same N passages scored one pair at a time, and the
same batch again for a second query (the passages' KV blocks then come from the prefix cache).

    python bench/rerank_bench.py                 # starts a model service (real vLLM engine)
    python bench/rerank_bench.py --model-addr 127.0.0.1:50051

Every round scores fresh passages (random words), so only the round that is meant to reuse the
prefix cache does. Prints p50/p95 per mode and the ratios measured in this run.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time

import grpc
from harness import add_engine_options, apply_engine_options, install_cleanup, start_model_service

from ragway.model.scoring import INSTRUCTION, QUESTION_CUE
from ragway.v1 import model_pb2 as pb
from ragway.v1 import model_pb2_grpc

WORDS = (
    "the engine schedules requests in batches and each request holds blocks of the key value cache "
    "while its prompt is processed a passage describes how to configure the service with settings "
    "files environment variables and command line flags errors are reported with a status code"
).split()
QUERIES = ["How do I configure the service with environment variables?", "What status code reports an error?"]


def passage(rng: random.Random, chars: int = 500) -> str:
    words: list[str] = []
    while sum(len(w) + 1 for w in words) < chars:
        words.append(rng.choice(WORDS))
    return " ".join(words)[:chars]


async def drain(stub: model_pb2_grpc.ModelServiceStub, text: str) -> None:
    """One greedy token of `text`, read to the end of the stream."""
    request = pb.GenerateRequest(text=text, sampling=pb.SamplingParams(max_tokens=1, temperature=0))
    async for _ in stub.Generate(request):
        pass


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p * (len(ordered) - 1)))]


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model-addr", default=None, help="a running model service; default: start one")
    parser.add_argument("--sizes", default="10,20", help="passages per call")
    parser.add_argument("--rounds", type=int, default=7, help="batched calls per size")
    parser.add_argument("--single-rounds", type=int, default=3, help="one-at-a-time rounds per size")
    parser.add_argument("--passage-chars", type=int, default=500, help="characters of each passage")
    parser.add_argument(
        "--passage-tokens", type=int, default=0, help="max_passage_tokens; 0: the service's default (128)"
    )
    add_engine_options(parser)
    args = parser.parse_args()
    apply_engine_options(args)
    install_cleanup()
    address = args.model_addr or start_model_service().address
    rng = random.Random(26)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = model_pb2_grpc.ModelServiceStub(channel)
        await stub.Score(pb.ScoreRequest(query="warm up", passages=[passage(rng)] * 2))
        print(f"{'N':>3} {'mode':<44} {'p50 ms':>8} {'p95 ms':>8} {'tokens':>7}")
        for n in (int(s) for s in args.sizes.split(",")):
            modes: dict[str, list[float]] = {
                "same prompts, Generate 1 token, no logprobs": [],
                "batched (one call)": [],
                "batched, passages cached": [],
                "one pair at a time": [],
            }
            tokens = cached = 0
            for _ in range(args.rounds):
                texts = [passage(rng, args.passage_chars) for _ in range(n)]
                started = time.perf_counter()
                reply = await stub.Score(
                    pb.ScoreRequest(query=QUERIES[0], passages=texts, max_passage_tokens=args.passage_tokens)
                )
                modes["batched (one call)"].append(time.perf_counter() - started)
                tokens = reply.usage.prompt_tokens
                started = time.perf_counter()
                again = await stub.Score(
                    pb.ScoreRequest(query=QUERIES[1], passages=texts, max_passage_tokens=args.passage_tokens)
                )
                modes["batched, passages cached"].append(time.perf_counter() - started)
                cached = again.usage.cached_prompt_tokens
            for _ in range(args.single_rounds):
                # The same prompts' prefill without prompt logprobs: what the logprobs cost.
                texts = [passage(rng, args.passage_chars) for _ in range(n)]
                prompts = [f"{INSTRUCTION}{t}{QUESTION_CUE} {QUERIES[0]}" for t in texts]
                started = time.perf_counter()
                await asyncio.gather(*(drain(stub, p) for p in prompts))
                modes["same prompts, Generate 1 token, no logprobs"].append(time.perf_counter() - started)
            for _ in range(args.single_rounds):
                texts = [passage(rng, args.passage_chars) for _ in range(n)]
                started = time.perf_counter()
                for text in texts:
                    await stub.Score(
                        pb.ScoreRequest(
                            query=QUERIES[0], passages=[text], max_passage_tokens=args.passage_tokens
                        )
                    )
                modes["one pair at a time"].append(time.perf_counter() - started)
            for mode, values in modes.items():
                p50, p95 = pct(values, 0.5) * 1000, pct(values, 0.95) * 1000
                print(f"{n:>3} {mode:<44} {p50:>8.0f} {p95:>8.0f} {tokens:>7}")
            batched = statistics.median(modes["batched (one call)"])
            single = statistics.median(modes["one pair at a time"])
            reused = statistics.median(modes["batched, passages cached"])
            print(
                f"{n:>3} ratios: one-at-a-time / batched = {single / batched:.2f}x, "
                f"batched / batched-cached = {batched / reused:.2f}x "
                f"({cached} of {tokens} prompt tokens from the prefix cache)"
            )


if __name__ == "__main__":
    asyncio.run(main())
