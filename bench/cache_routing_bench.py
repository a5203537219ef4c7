"""Cache-aware routing vs least-busy (issue 24): prefix-cache hit rate, TTFT and replica load.

    python bench/cache_routing_bench.py                              # 8 simulated replicas, ~3 min
    flock /tmp/ragway-engine.lock python bench/cache_routing_bench.py --engine vllm --replicas 2 \\
        --users 8 --turns 4 4 --max-tokens 24                         # 2 real vLLM engines, slow

The workload is a multi-turn chat with RAG: several users, 4-6 turns each, each conversation
opening on one of a few shared source documents, and some later turns adding another document to
the newest user message (as ragway's RAG does), the history growing turn by turn. Each user sends
its turns one after another; the users run at once.

Three arms over the same replicas, alternating, two rounds: gateway with RAGWAY_ROUTING=cache,
gateway with RAGWAY_ROUTING=least_busy, and "single" — one replica serving the whole workload (the
hit rate routing is measured against: a single replica sees every prefix). Each arm's prompts carry
a nonce in their system prompt, so no arm reuses another's cached blocks. Users arrive at random
over one answer's time and read each answer for a while (`--arrival`, `--think`), each with an API
key of its own (`--keys`): with `--arrival 0 --think 0` they move in lockstep, and every turn is a
burst of 48 requests at one instant, whose median waits for the gateway to admit half the burst
(its per-request work: ~5 ms of CPU each on this machine), whatever the routing.

Figures: prefix-cache hit rate (cached prompt tokens / prompt tokens, from the engines' own
counters: usage.prompt_tokens_details.cached_tokens as the engine reported it, and for vLLM its
prefix-cache counters), TTFT p50/p99 at the client and p50/mean at the engines (from their TTFT
histograms: what routing changes, without this machine's gateway and client overhead), max/mean
requests per replica. Answers are 200 tokens by default, as chat answers run: the history a
conversation's next turn repeats is what least-busy routing throws away. Targets: cache-aware hit rate
>= 0.9x single's, TTFT p50 <= 0.5x least-busy's, max/mean load <= 1.3.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import random
import re
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import yaml
from harness import (
    MODEL_NAME,
    Endpoint,
    drop_postgres_database,
    fresh_postgres_database,
    install_cleanup,
    make_api_key,
    start_gateway,
    start_model_service,
)
from report import console, machine, print_table, save_json, verdict

from tests.utils.processes import free_port

# GPU-class timing for the simulated engine: an 8B model on one H100 prefills ~10k tokens/s and
# decodes a step in ~20 ms; a cached prefix costs only the step.
SIM_ENV = {
    "RAGWAY_MODEL_ENGINE": "sim",
    "RAGWAY_MODEL_SIM_TTFT_BASE_MS": "15",
    "RAGWAY_MODEL_SIM_PREFILL_MS_PER_1K_TOKENS": "100",
    "RAGWAY_MODEL_SIM_ITL_MS": "20",
    "RAGWAY_MODEL_SIM_CACHE_BLOCKS": "65536",
}
VLLM_ENV = {"RAGWAY_MODEL_ENFORCE_EAGER": "true", "RAGWAY_MODEL_MAX_MODEL_LEN": "4096"}
WORDS = "replica request cache token engine latency state client server window budget record leader".split()
TOPICS = [
    "leases",
    "consistent hashing",
    "prefix caches",
    "token buckets",
    "write-ahead logs",
    "health checks",
    "backpressure",
    "idempotency keys",
    "vector indexes",
    "quorum reads",
]


def document(index: int, words: int) -> str:
    """A shared source document: distinct, deterministic, about `words` words."""
    rng = random.Random(index)
    topic = TOPICS[index % len(TOPICS)]
    vocab = [*topic.split(), *WORDS]
    body = " ".join(rng.choice(vocab) for _ in range(words))
    return f"[Document {index}: {topic}]\n{body}"


@dataclass
class Turn:
    """One user message: its question, the document it adds (None: a plain follow-up), and the
    seconds the user waits before sending it (arriving, or reading the last answer)."""

    question: str
    document: int | None
    pause: float = 0.0


def workload(
    users: int,
    turns: tuple[int, int],
    documents: int,
    arrival: float = 0.0,
    think: float = 0.0,
    seed: int = 7,
) -> list[list[Turn]]:
    """Each user's turns: users arrive spread evenly at random over `arrival` seconds and think for
    exponentially distributed times of mean `think` between an answer and their next question.
    Zeros make every user send turn N at once: the answers all take the same time, so the users then
    move in lockstep, and every turn is a burst of `users` requests at the same instant."""
    rng = random.Random(seed)
    plans = []
    for user in range(users):
        count = rng.randint(*turns)
        plan = [
            Turn(
                f"User {user}: what does the document say about {TOPICS[user % len(TOPICS)]}?",
                rng.randrange(documents),
                rng.uniform(0, arrival),
            )
        ]
        for t in range(1, count):
            adds = rng.random() < 0.3
            plan.append(
                Turn(
                    f"Follow-up {t}: and why does that matter?",
                    rng.randrange(documents) if adds else None,
                    rng.expovariate(1 / think) if think else 0.0,
                )
            )
        plans.append(plan)
    return plans


@dataclass
class Arm:
    name: str
    ttfts: list[float] = field(default_factory=list)
    prompt_tokens: int = 0
    cached_tokens: int = 0
    errors: int = 0
    served: list[float] = field(default_factory=list)  # requests per replica
    engine_ttft_s: float = 0.0  # summed over requests, at the model services
    engine_requests: float = 0.0
    engine_buckets: dict[float, float] = field(default_factory=dict)  # TTFT histogram at the engines

    @property
    def hit_rate(self) -> float:
        return self.cached_tokens / self.prompt_tokens if self.prompt_tokens else float("nan")

    def ttft(self, q: float) -> float:
        return float(np.percentile(self.ttfts, q)) * 1000 if self.ttfts else float("nan")

    @property
    def engine_ttft_ms(self) -> float:
        return self.engine_ttft_s / self.engine_requests * 1000 if self.engine_requests else float("nan")

    @property
    def load_ratio(self) -> float:
        busy = self.served
        return max(busy) / (sum(busy) / len(busy)) if busy and sum(busy) else float("nan")


def sample(metrics_url: str, name: str) -> float:
    text = httpx.get(metrics_url, timeout=10).text
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def served(metrics_url: str) -> float:
    """Requests a replica finished."""
    return sample(metrics_url, "ragway_model_e2e_latency_seconds_count")


def ttft_buckets(urls: list[str]) -> dict[float, float]:
    """The model services' TTFT histogram, summed: requests at or under each bucket's bound."""
    counts: dict[float, float] = {}
    for url in urls:
        text = httpx.get(url, timeout=10).text
        for le, count in re.findall(
            r'^ragway_model_ttft_seconds_bucket\{le="([^"]+)"\} (\S+)$', text, re.MULTILINE
        ):
            counts[float(le)] = counts.get(float(le), 0.0) + float(count)
    return counts


def quantile(buckets: dict[float, float], q: float) -> float:
    """A quantile from histogram buckets, interpolated within its bucket (Prometheus'
    histogram_quantile), in ms."""
    bounds = sorted(buckets)
    total = buckets[bounds[-1]] if bounds else 0.0
    if not total:
        return float("nan")
    rank, lower, below = q * total, 0.0, 0.0
    for bound in bounds:
        if buckets[bound] >= rank:
            if bound == float("inf"):
                return lower * 1000
            inside = buckets[bound] - below
            return (lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)) * 1000
        lower, below = bound, buckets[bound]
    return float("nan")


def engine_ttft(urls: list[str]) -> tuple[float, float]:
    """Seconds to first token at the model services (arrival to first token, queueing and prefill
    included), summed, and how many requests: this machine's gateway and client overhead left out."""
    return (
        sum(sample(u, "ragway_model_ttft_seconds_sum") for u in urls),
        sum(sample(u, "ragway_model_ttft_seconds_count") for u in urls),
    )


async def converse(
    http: httpx.AsyncClient,
    key: str,
    arm: Arm,
    plan: list[Turn],
    docs: list[str],
    nonce: str,
    max_tokens: int,
) -> None:
    messages: list[dict[str, str]] = [
        {"role": "system", "content": f"You answer questions about the given documents. Run {nonce}."}
    ]
    for turn in plan:
        await asyncio.sleep(turn.pause)
        content = (
            turn.question if turn.document is None else f"Sources:\n{docs[turn.document]}\n\n{turn.question}"
        )
        messages.append({"role": "user", "content": content})
        body = {
            "model": MODEL_NAME,
            "messages": messages,
            "max_tokens": max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
            "temperature": 0,
        }
        start, first, answer = time.monotonic(), None, []
        try:
            headers = {"Authorization": f"Bearer {key}"}
            async with http.stream("POST", "/v1/chat/completions", json=body, headers=headers) as response:
                if response.status_code != 200:
                    arm.errors += 1
                    await response.aread()
                    return
                async for line in response.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    chunk = json.loads(line[6:])
                    if chunk.get("usage"):
                        arm.prompt_tokens += chunk["usage"]["prompt_tokens"]
                        arm.cached_tokens += chunk["usage"]["prompt_tokens_details"]["cached_tokens"]
                    for choice in chunk.get("choices", []):
                        text = choice.get("delta", {}).get("content")
                        if text:
                            first = first or time.monotonic()
                            answer.append(text)
        except httpx.HTTPError:
            arm.errors += 1
            return
        if first is not None:
            arm.ttfts.append(first - start)
        messages.append({"role": "assistant", "content": "".join(answer)})


async def drive(
    url: str, keys: list[str], arm: Arm, plans: list[list[Turn]], docs: list[str], max_tokens: int
) -> None:
    """Every user's conversation at once, user i calling with keys[i % len(keys)]."""
    nonce = uuid.uuid4().hex[:12]
    async with httpx.AsyncClient(base_url=url, timeout=600) as http:
        await asyncio.gather(
            *(
                converse(http, keys[i % len(keys)], arm, plan, docs, nonce, max_tokens)
                for i, plan in enumerate(plans)
            )
        )


def table(path: Path, addresses: list[str]) -> Path:
    path.write_text(yaml.safe_dump({"models": [{"name": MODEL_NAME, "replicas": addresses}]}))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--engine", choices=["sim", "vllm"], default="sim")
    parser.add_argument("--replicas", type=int, default=8)
    parser.add_argument("--users", type=int, default=48)
    parser.add_argument("--turns", type=int, nargs=2, default=(4, 6), metavar=("MIN", "MAX"))
    parser.add_argument("--documents", type=int, default=6)
    parser.add_argument("--doc-words", type=int, default=500)
    parser.add_argument("--max-tokens", type=int, default=200)
    parser.add_argument(
        "--arrival",
        type=float,
        default=4.0,
        help="seconds over which the users arrive, at random (0: all at once)",
    )
    parser.add_argument(
        "--think",
        type=float,
        default=2.0,
        help="mean seconds a user reads an answer before the next question (0: none; with --arrival 0, "
        "every turn is a burst of --users requests at one instant)",
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--keys",
        type=int,
        default=0,
        help="API keys the users call with, each of its own user (0: one per user, as tenants call; "
        "1: every user behind one key, whose credit row every request then holds and settles in turn)",
    )
    parser.add_argument(
        "--database",
        choices=["postgresql", "sqlite"],
        default="sqlite",
        help="the gateways' database: the embedded SQLite, or PostgreSQL as gateways with replicas "
        "share it (a database of each gateway's own on the local server)",
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    install_cleanup()
    env = SIM_ENV if args.engine == "sim" else VLLM_ENV
    console.print(
        f"[bold]cache routing[/] engine={args.engine} replicas={args.replicas} users={args.users} "
        f"load={machine()['load_at_start']}"
    )

    models: list[Endpoint] = []
    metrics_urls: list[str] = []
    for i in range(args.replicas + 1):  # the last one is "single"'s
        metrics_port = str(free_port())
        models.append(
            start_model_service(
                env={**env, "RAGWAY_MODEL_METRICS_PORT": metrics_port},
                name=f"routing-model-{i}",
                max_num_seqs=256,
            )
        )
        metrics_urls.append(f"http://127.0.0.1:{metrics_port}/metrics")
    pool, single = models[:-1], models[-1]
    work = Path(tempfile.mkdtemp(prefix="ragway-cache-routing-"))
    nowhere = f"127.0.0.1:{free_port()}"
    pool_table = table(work / "pool.yaml", [m.address for m in pool])
    single_table = table(work / "single.yaml", [single.address])
    arm_env = {
        "cache": {"RAGWAY_MODELS_FILE": str(pool_table), "RAGWAY_ROUTING": "cache"},
        "least_busy": {"RAGWAY_MODELS_FILE": str(pool_table), "RAGWAY_ROUTING": "least_busy"},
        "single": {"RAGWAY_MODELS_FILE": str(single_table)},
    }
    databases = {name: f"ragway_cache_routing_{name}" for name in arm_env}
    if args.database == "postgresql":
        atexit.register(lambda: [drop_postgres_database(db) for db in databases.values()])
    gateways = {
        name: start_gateway(
            f"gw-{name}",
            work / name,
            "",
            nowhere,
            database_url=fresh_postgres_database(databases[name]) if args.database == "postgresql" else None,
            env=env,
        )
        for name, env in arm_env.items()
    }
    keys = {
        name: [make_api_key(gw.address, gw.extra["admin_key"]) for _ in range(args.keys or args.users)]
        for name, gw in gateways.items()
    }
    plans = workload(args.users, tuple(args.turns), args.documents, args.arrival, args.think)  # type: ignore[arg-type]
    docs = [document(i, args.doc_words) for i in range(args.documents)]
    arms = {name: Arm(name) for name in gateways}
    for round_no in range(args.rounds):
        order = list(gateways) if round_no % 2 == 0 else list(reversed(gateways))
        for name in order:
            urls = metrics_urls[-1:] if name == "single" else metrics_urls[:-1]
            before, ttft_before, buckets_before = (
                [served(u) for u in urls],
                engine_ttft(urls),
                ttft_buckets(urls),
            )
            asyncio.run(drive(gateways[name].address, keys[name], arms[name], plans, docs, args.max_tokens))
            after, ttft_after, buckets_after = (
                [served(u) for u in urls],
                engine_ttft(urls),
                ttft_buckets(urls),
            )
            for bound, count in buckets_after.items():
                arms[name].engine_buckets[bound] = (
                    arms[name].engine_buckets.get(bound, 0.0) + count - buckets_before.get(bound, 0.0)
                )
            arms[name].engine_ttft_s += ttft_after[0] - ttft_before[0]
            arms[name].engine_requests += ttft_after[1] - ttft_before[1]
            counts = [a - b for a, b in zip(after, before, strict=True)]
            arms[name].served = [
                x + y for x, y in zip(arms[name].served or [0.0] * len(counts), counts, strict=True)
            ]
            console.print(f"round {round_no + 1} {name}: hit rate {arms[name].hit_rate:.3f}")

    cache, least, one = arms["cache"], arms["least_busy"], arms["single"]
    rows = [
        [
            a.name,
            len(a.ttfts),
            a.errors,
            a.hit_rate,
            a.ttft(50),
            a.ttft(99),
            quantile(a.engine_buckets, 0.5),
            a.engine_ttft_ms,
            a.load_ratio if a.name != "single" else float("nan"),
        ]
        for a in (cache, least, one)
    ]
    print_table(
        "Routing over the replicas",
        [
            "arm",
            "requests",
            "errors",
            "hit rate",
            "TTFT p50 ms",
            "TTFT p99 ms",
            "engine TTFT p50 ms",
            "engine TTFT mean ms",
            "max/mean load",
        ],
        rows,
    )
    hit_vs_single = cache.hit_rate / one.hit_rate
    ttft_vs_least = cache.ttft(50) / least.ttft(50)
    print_table(
        "Ratios (same run)",
        ["figure", "value", "target", "verdict"],
        [
            [
                "hit rate, cache-aware / single replica",
                hit_vs_single,
                ">= 0.9",
                verdict(hit_vs_single, 0.9, True),
            ],
            ["hit rate, cache-aware / least-busy", cache.hit_rate / least.hit_rate, "-", "-"],
            [
                "engine TTFT p50, cache-aware / least-busy",
                quantile(cache.engine_buckets, 0.5) / quantile(least.engine_buckets, 0.5),
                "-",
                "-",
            ],
            [
                "TTFT p50, cache-aware / least-busy",
                ttft_vs_least,
                "<= 0.5",
                verdict(ttft_vs_least, 0.5, False),
            ],
            [
                "engine TTFT mean, cache-aware / least-busy",
                cache.engine_ttft_ms / least.engine_ttft_ms,
                "-",
                "-",
            ],
            ["max/mean load, cache-aware", cache.load_ratio, "<= 1.3", verdict(cache.load_ratio, 1.3, False)],
        ],
    )
    save_json(
        args.json,
        {
            "machine": machine(),
            "engine": args.engine,
            "args": vars(args) | {"json": None},
            "arms": {
                a.name: {
                    "hit_rate": a.hit_rate,
                    "ttft_p50_ms": a.ttft(50),
                    "ttft_p99_ms": a.ttft(99),
                    "engine_ttft_mean_ms": a.engine_ttft_ms,
                    "load_ratio": a.load_ratio,
                    "errors": a.errors,
                    "requests": len(a.ttfts),
                }
                for a in arms.values()
            },
        },
    )


if __name__ == "__main__":
    main()
