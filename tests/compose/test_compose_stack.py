"""The production compose stack, run for real (issue 23): nginx in front of 2 gateways, 2 model
replicas (real vLLM), the retrieval service, PostgreSQL and Redis in containers built here, and
one fault at a time under steady mixed load (tests/compose/load.py), each reported as requests
sent / succeeded / failed with a clean error / any other failure / records lost. Then the
retrieval service is switched to a real Milvus server (PyPI milvus 2.3.5 in its own container).

The table is printed and written to test-results/compose-faults.md. Run with `make compose-test`."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from tests.compose.load import MixedLoad, Tally, records_lost
from tests.compose.stack import ROOT, Stack
from tests.conftest import MODEL_NAME
from tests.reliability.streams import StreamResult, stream_chat
from tests.utils.factories import Account, make_account

pytestmark = [pytest.mark.compose, pytest.mark.timeout(3600)]
RESULTS = ROOT / "test-results" / "compose-faults.md"
STEADY_S = 4.0  # load before and after each fault
FAULT_S = 8.0  # load while the fault lasts
ROWS: list[dict[str, Any]] = []
NOTES: list[str] = []
CODE_WORD = "periwinkle-42"


async def to_thread(function: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(function, *args)


@pytest.fixture(scope="module")
def account(stack: Stack) -> Account:
    # An RPM limit so every request goes through the limiter (and Redis): the Redis fault is real.
    return make_account(stack.url, stack.admin_key, credits=1000.0, rpm_limit=100000)


@pytest.fixture
async def http(stack: Stack, account: Account) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=stack.url, headers=account.headers, timeout=httpx.Timeout(180, connect=10)
    ) as client:
        yield client


@pytest.fixture(scope="module")
def vector_store(stack: Stack, account: Account) -> tuple[str, str]:
    """A vector store holding the code word, for the RAG requests of the load."""
    with account.http() as http:
        store = http.post("/v1/vector_stores", json={"name": f"kb-{uuid.uuid4().hex[:6]}"}).json()
        upload = http.post(
            "/v1/files",
            files={"file": ("facts.txt", f"The ragway test code word is {CODE_WORD}.".encode())},
            data={"purpose": "assistants"},
        )
        assert upload.status_code == 200, upload.text
        added = http.post(f"/v1/vector_stores/{store['id']}/files", json={"file_id": upload.json()["id"]})
        assert added.status_code == 200, added.text
        deadline = time.monotonic() + 180
        while (
            http.get(f"/v1/vector_stores/{store['id']}/files/{upload.json()['id']}").json()["status"]
            != "completed"
        ):
            assert time.monotonic() < deadline, "the seed file was not ingested"
            time.sleep(1)
    return store["id"], store["name"]


# RAGWAY_ORPHAN_RESERVATION_SECONDS, two sweeps of a minute, and some slack.
ORPHANS_SETTLED_S = 240 + 2 * 60 + 30


def money(stack: Stack, user_id: str) -> tuple[int, int, int]:
    """(balance, what the ledger took: reservations net of settlements, what usage records billed)."""
    [[balance]] = stack.sql(f"SELECT credits FROM users WHERE id = '{user_id}'")
    [[movements]] = stack.sql(
        f"SELECT COALESCE(SUM(amount), 0) FROM credit_ledger WHERE user_id = '{user_id}' AND kind <> 'topup'"
    )
    [[billed]] = stack.sql(f"SELECT COALESCE(SUM(cost), 0) FROM usage_records WHERE user_id = '{user_id}'")
    return int(balance), -int(movements), int(billed)


def money_consistent(stack: Stack, user_id: str, before: tuple[int, int, int]) -> list[str]:
    """Over the phase, the ledger took exactly what the usage records billed, and the balance moved
    by exactly that; a reservation without its settlement is named. A killed gateway's
    reservations are settled by the other one once they are orphans (GATEWAY_SETTINGS), so the
    books get that long to add up."""
    deadline = time.monotonic() + ORPHANS_SETTLED_S
    while True:
        balance, took, billed = money(stack, user_id)
        consistent = (took - before[1], balance - before[0]) == (billed - before[2], -(billed - before[2]))
        if consistent or time.monotonic() > deadline:
            break
        time.sleep(10)
    problems = []
    if not consistent:
        unsettled = stack.sql(
            "SELECT r.request_id, -r.amount FROM credit_ledger r WHERE r.kind = 'reserve' "
            f"AND r.user_id = '{user_id}' AND NOT EXISTS (SELECT 1 FROM credit_ledger s "
            "WHERE s.kind = 'settle' AND s.request_id = r.request_id)"
        )
        problems.append(
            f"ledger took {took - before[1]}, usage records billed {billed - before[2]}, balance moved "
            f"{balance - before[0]}; reservations never settled: {unsettled}"
        )
    return problems


async def run_fault(
    name: str,
    stack: Stack,
    http: httpx.AsyncClient,
    account: Account,
    vector_store: tuple[str, str],
    fault: Callable[[Tally], Awaitable[None]],
    streams: bool = True,
) -> Tally:
    """Mixed load; the fault (which checks what it must while it lasts, and heals); more load;
    then every record that succeeded is looked for. Appends the row."""
    [[records_before]] = stack.sql(f"SELECT COUNT(*) FROM usage_records WHERE user_id = '{account.user_id}'")
    money_before = money(stack, account.user_id)
    load = MixedLoad(http, vector_store, streams=streams)
    load.start()
    await asyncio.sleep(STEADY_S)
    await fault(load.tally)
    await asyncio.sleep(STEADY_S)
    tally = await load.finish()
    missing = await records_lost(http, tally)
    [[records_after]] = stack.sql(f"SELECT COUNT(*) FROM usage_records WHERE user_id = '{account.user_id}'")
    metered = int(records_after) - int(records_before)
    if metered < tally.completed_calls:
        missing.append(f"{tally.completed_calls} chat calls answered, {metered} usage records")
    missing += money_consistent(stack, account.user_id, money_before)
    tally.lost = len(missing)
    ROWS.append(tally.row(name))
    NOTES.append(
        f"{name}: statuses {dict(sorted(tally.statuses.items()))}, 503s with Retry-After {tally.retry_after}"
    )
    NOTES.extend(f"{name}: LOST {what}" for what in missing)
    NOTES.extend(f"{name}: OTHER FAILURE {what}" for what in tally.failures)
    assert tally.other == 0, f"{name}: {tally.failures[:10]}"
    assert not missing, f"{name}: {missing[:10]}"
    return tally


async def probe_chat(http: httpx.AsyncClient, tally: Tally, rag: str | None = None) -> httpx.Response:
    body: dict[str, Any] = {
        "model": MODEL_NAME,
        "messages": [{"role": "user", "content": "Say hi."}],
        "max_tokens": 4,
    }
    if rag:
        body["rag"] = {"collections": [rag]}
    response = await http.post("/v1/chat/completions", json=body)
    if tally.count(response.status_code, response.text, response.headers.get("retry-after"), "probe"):
        tally.completed_calls += 1
    return response


# ---- 1. a model replica killed under 16 streams ---------------------------------------------
async def test_model_replica_killed_under_16_streams(stack, http, account, vector_store) -> None:
    async def fault(tally: Tally) -> None:
        results = [StreamResult() for _ in range(16)]
        tasks = [
            asyncio.create_task(
                stream_chat(
                    http,
                    f"Write a long story about the lighthouse keeper number {i}.",
                    160,
                    r,
                    store=True,
                    stream_options={"include_usage": True},
                )
            )
            for i, r in enumerate(results)
        ]
        await asyncio.wait_for(asyncio.gather(*(r.first_token.wait() for r in results)), 300)
        await to_thread(stack.docker, "kill", stack.container("model"))
        # Not yet streaming when the replica died: they go to the other one.
        fresh = await asyncio.gather(*(probe_chat(http, tally) for _ in range(8)))
        assert [r.status_code for r in fresh] == [200] * 8, [r.text for r in fresh if r.status_code != 200]
        await asyncio.wait_for(asyncio.gather(*tasks), 300)
        done = [r for r in results if r.done]
        cut = [r for r in results if not r.done]
        for r in results:
            tally.stream(r, "16 streams")
        for r in cut:
            assert r.error_event is not None and "model" in r.error_event["message"], r.events[-2:]
        # The usage each finished stream reported is what was metered for it.
        for r in done:
            usage = next(e["usage"] for e in reversed(r.events) if isinstance(e, dict) and e.get("usage"))
            [[prompt, completion]] = stack.sql(
                "SELECT prompt_tokens, completion_tokens FROM usage_records "
                f"WHERE conversation_id = '{r.conversation_id}'"
            )
            assert (int(prompt), int(completion)) == (usage["prompt_tokens"], usage["completion_tokens"])
        NOTES.append(
            f"model kill: {len(done)} of 16 streams on the other replica finished, {len(cut)} ended "
            f"with an SSE error event; 8 requests sent after the kill all answered 200"
        )
        await to_thread(stack.docker, "start", stack.container("model"))
        back = await to_thread(stack.wait_healthy, ["model"], 600)
        NOTES.append(f"model kill: the restarted replica was healthy again after {back:.0f} s")

    await run_fault("docker kill one model replica (16 streams)", stack, http, account, vector_store, fault)


# ---- 2. a gateway killed ---------------------------------------------------------------------
async def test_gateway_killed(stack, http, account, vector_store) -> None:
    async def fault(tally: Tally) -> None:
        await to_thread(stack.docker, "kill", stack.container("gateway-2"))
        await asyncio.sleep(FAULT_S)  # the load goes on through the other gateway
        await to_thread(stack.docker, "start", stack.container("gateway-2"))
        await to_thread(stack.wait_healthy, ["gateway-2"], 180)

    # No streams in flight in this phase: a SIGKILLed process cannot end its open streams (nginx
    # can only answer for requests that had no response yet); draining with SIGTERM is test_drain's.
    await run_fault("docker kill one gateway", stack, http, account, vector_store, fault, streams=False)


# ---- 3. PostgreSQL restarted -------------------------------------------------------------------
async def test_postgres_restarted(stack, http, account, vector_store) -> None:
    async def fault(tally: Tally) -> None:
        await to_thread(stack.docker, "stop", stack.container("postgres"))
        try:
            down = await probe_chat(http, tally)
            assert down.status_code == 503 and down.headers.get("retry-after"), (down.status_code, down.text)
            assert "database" in down.json()["error"]["message"]
            await asyncio.sleep(FAULT_S / 2)
        finally:
            await to_thread(stack.docker, "start", stack.container("postgres"))
        await to_thread(stack.wait_healthy, ["postgres"], 120)

    await run_fault("restart PostgreSQL", stack, http, account, vector_store, fault)


# ---- 4. Redis stopped: the rate limiter fails closed ----------------------------------------------
async def test_redis_stopped(stack, http, account, vector_store) -> None:
    unlimited = make_account(stack.url, stack.admin_key, credits=10.0)

    async def fault(tally: Tally) -> None:
        await to_thread(stack.docker, "stop", stack.container("redis"))
        down = await probe_chat(http, tally)
        assert down.status_code == 503 and "Redis" in down.json()["error"]["message"], down.text
        async with httpx.AsyncClient(base_url=stack.url, headers=unlimited.headers, timeout=120) as other:
            assert (await probe_chat(other, tally)).status_code == 200, "a key without limits needs no Redis"
        await asyncio.sleep(FAULT_S / 2)
        await to_thread(stack.docker, "start", stack.container("redis"))
        await to_thread(stack.wait_healthy, ["redis"], 60)
        for _ in range(30):
            if (await probe_chat(http, tally)).status_code == 200:
                break
            await asyncio.sleep(1)

    await run_fault("stop Redis (limiter fails closed)", stack, http, account, vector_store, fault)


# ---- 5. the retrieval service cut off the network -------------------------------------------------
async def test_retrieval_disconnected(stack, http, account, vector_store) -> None:
    container = stack.container("retrieval")
    started = {s: stack.started_at(s) for s in ("retrieval", "gateway", "gateway-2")}

    async def fault(tally: Tally) -> None:
        await to_thread(stack.docker, "network", "disconnect", stack.network(), container)
        try:  # reconnected whatever the checks find, so the next fault starts from a whole stack
            rag = await probe_chat(http, tally, rag=vector_store[0])
            assert rag.status_code == 503 and "retrieval" in rag.json()["error"]["message"], rag.text
            assert (await probe_chat(http, tally)).status_code == 200, "plain chat needs no retrieval"
            await asyncio.sleep(FAULT_S / 2)
        finally:
            await to_thread(
                stack.docker, "network", "connect", "--alias", "retrieval", stack.network(), container
            )
        healed = time.monotonic()
        while (await probe_chat(http, tally, rag=vector_store[0])).status_code != 200:
            assert time.monotonic() - healed < 120, "RAG did not come back after reconnecting"
            await asyncio.sleep(1)
        NOTES.append(f"retrieval reconnect: RAG answered again {time.monotonic() - healed:.1f} s later")

    await run_fault("network-disconnect retrieval", stack, http, account, vector_store, fault)
    assert {s: stack.started_at(s) for s in started} == started, "healed without restarting anything"


# ---- 6. a model container restarted by Docker's restart policy -------------------------------------
async def test_model_restarted_by_restart_policy_rejoins(stack, http, account, vector_store) -> None:
    gateways = {s: stack.started_at(s) for s in ("gateway", "gateway-2")}
    container = stack.container("model-2")
    restarts = int(stack.docker("inspect", "-f", "{{.RestartCount}}", container))

    async def fault(tally: Tally) -> None:
        # A crash, not `docker kill` (which Docker treats as a manual stop and never restarts).
        pid = stack.docker("inspect", "-f", "{{.State.Pid}}", container).strip()
        os.kill(int(pid), 9)
        deadline = time.monotonic() + 60
        while int(stack.docker("inspect", "-f", "{{.RestartCount}}", container)) == restarts:
            assert time.monotonic() < deadline, "Docker did not restart the model container"
            await asyncio.sleep(1)
        back = await to_thread(stack.wait_healthy, ["model-2"], 600)
        # With the first replica stopped, only the restarted one can answer.
        await to_thread(stack.docker, "stop", stack.container("model"))
        answers = [await probe_chat(http, tally) for _ in range(3)]
        assert [a.status_code for a in answers] == [200] * 3, [a.text for a in answers]
        await to_thread(stack.docker, "start", stack.container("model"))
        await to_thread(stack.wait_healthy, ["model"], 600)
        NOTES.append(
            f"restart policy: model-2 restarted by Docker, healthy {back:.0f} s later, served "
            "alone while model was stopped"
        )

    await run_fault("model crash -> restart policy", stack, http, account, vector_store, fault)
    assert {s: stack.started_at(s) for s in gateways} == gateways, "no gateway restarted"


# ---- Milvus as a real server --------------------------------------------------------------------
async def test_retrieval_on_a_milvus_server(stack, http) -> None:
    stack.compose("--profile", "milvus", "up", "-d", "--no-build", "milvus")
    stack.wait_healthy(["milvus"], 300)
    stack.compose("up", "-d", "--no-build", "--no-deps", "retrieval", RAGWAY_RETRIEVAL_BACKEND="milvus")
    stack.wait_healthy(["retrieval"], 300)
    env = stack.docker(
        "inspect", "-f", "{{range .Config.Env}}{{println .}}{{end}}", stack.container("retrieval")
    )
    assert "RAGWAY_RETRIEVAL_BACKEND=milvus" in env.split()
    # The recreated container has a new address: the gateways' channels find it on reconnecting.
    deadline = time.monotonic() + 120
    while (created := await http.post("/v1/vector_stores", json={"name": "on-milvus"})).status_code != 200:
        assert time.monotonic() < deadline, created.text
        await asyncio.sleep(2)
    store = created.json()
    upload = await http.post(
        "/v1/files",
        files={"file": ("m.txt", f"Milvus keeps the word {CODE_WORD}.".encode())},
        data={"purpose": "assistants"},
    )
    added = await http.post(f"/v1/vector_stores/{store['id']}/files", json={"file_id": upload.json()["id"]})
    assert added.status_code == 200, added.text
    tally = Tally(files=[(store["id"], upload.json()["id"])])
    assert await records_lost(http, tally) == []
    hits = (
        await http.post(
            f"/v1/vector_stores/{store['id']}/search", json={"query": "which word does Milvus keep"}
        )
    ).json()
    assert CODE_WORD in str(hits), hits
    rag = await probe_chat(http, Tally(), rag=store["id"])
    assert rag.status_code == 200, rag.text
    version = stack.docker(
        "exec",
        stack.container("retrieval"),
        "python",
        "-c",
        "from pymilvus import MilvusClient; print(MilvusClient('http://milvus:19530').get_server_version())",
    )
    NOTES.append(f"Milvus server {version.strip()}: a file ingested, searched and used by RAG chat")


def test_zz_report() -> None:
    """The fault table, printed and written for the closing note (runs last in this module)."""
    columns = ["fault", "sent", "succeeded", "clean error", "other failure", "records lost"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row[c]) for c in columns) + " |" for row in ROWS]
    text = "\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in NOTES) + "\n"
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(text)
    print("\n" + text)
    assert len(ROWS) == 6, f"only {len(ROWS)} of 6 faults ran"
