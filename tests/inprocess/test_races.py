"""Concurrent writes to one row, on the real gateway over real SQLite and real PostgreSQL: retried
top-ups that arrive together, and exchanges appended to one conversation at once. The model is the
stated fake of tests/utils/fakes.py (the races are the gateway's own, in its SQL); each request runs
on the app's event loop from its own thread, as concurrent clients' requests do.

A race is forced, not hoped for: the test holds the contended row locked (PostgreSQL: FOR UPDATE;
SQLite: the database's one write lock) while the requests arrive, so every one of them has read
what it reads before any of them may write, then lets them all go at once.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import httpx
from sqlalchemy import create_engine, make_url, text

from tests.inprocess.conftest import ADMIN_KEY, InProcess
from tests.utils.db import rows
from tests.utils.fakes import FAKE_MODEL

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
CONCURRENT = 12


def _database_url(inprocess: InProcess) -> str:
    url: str = inprocess.client.app.state.settings.sqlalchemy_url()  # type: ignore[attr-defined]
    return url.replace("sqlite+aiosqlite", "sqlite")


@contextmanager
def _locked(database_url: str, table: str, row_id: str) -> Iterator[None]:
    """Hold `table`'s row `row_id` locked until the block ends."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            if make_url(database_url).get_backend_name() == "sqlite":
                conn.execute(text(f"UPDATE {table} SET id = id WHERE id = :id"), {"id": row_id})
            else:
                conn.execute(text(f"SELECT id FROM {table} WHERE id = :id FOR UPDATE"), {"id": row_id})
            yield
            conn.rollback()
    finally:
        engine.dispose()


def _waiting_on_locks(database_url: str, at_least: int) -> None:
    """Until `at_least` of the gateway's statements wait on a lock (PostgreSQL shows them in
    pg_stat_activity; SQLite's busy waits show nowhere, so they get a second to arrive)."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        time.sleep(1)
        return
    sql = "SELECT count(*) FROM pg_stat_activity WHERE datname = :db AND wait_event_type = 'Lock'"
    deadline = time.monotonic() + 30
    while rows(database_url, sql, db=url.database)[0][0] < at_least and time.monotonic() < deadline:
        time.sleep(0.05)


def _at_once_against_a_locked_row(
    database_url: str, table: str, row_id: str, calls: list[Callable[[], httpx.Response]]
) -> list[httpx.Response]:
    with ThreadPoolExecutor(len(calls)) as pool, _locked(database_url, table, row_id):
        futures = [pool.submit(call) for call in calls]
        _waiting_on_locks(database_url, len(calls))
    return [f.result() for f in futures]


def test_concurrent_top_ups_with_one_idempotency_key_credit_once_and_all_return_the_first(
    inprocess_any_db: InProcess,
) -> None:
    client = inprocess_any_db.client
    user = client.post(
        "/v1/admin/users", json={"name": f"u{uuid.uuid4().hex[:8]}", "credits": 1}, headers=ADMIN
    )
    url = f"/v1/admin/users/{user.json()['id']}/credits"
    headers = {**ADMIN, "Idempotency-Key": uuid.uuid4().hex}
    replies = _at_once_against_a_locked_row(
        _database_url(inprocess_any_db),
        "users",
        user.json()["id"],
        [lambda: client.post(url, json={"amount": 2.5}, headers=headers)] * CONCURRENT,
    )
    assert [r.status_code for r in replies] == [200] * CONCURRENT, [
        r.text for r in replies if r.status_code != 200
    ]
    assert len({r.text for r in replies}) == 1, "every retry returns the first result unchanged"
    assert replies[0].json()["balance"] == 3.5
    assert client.get(f"/v1/admin/users/{user.json()['id']}", headers=ADMIN).json()["credits"] == 3.5


def test_concurrent_exchanges_on_one_conversation_get_distinct_ordered_messages(
    inprocess_any_db: InProcess,
) -> None:
    headers = inprocess_any_db.account()
    client = inprocess_any_db.client
    first = client.post(
        "/v1/chat/completions",
        json={
            "model": FAKE_MODEL,
            "messages": [{"role": "user", "content": "q0"}],
            "max_tokens": 2,
            "store": True,
        },
        headers=headers,
    )
    conversation = first.json()["conversation_id"]

    def ask(n: int) -> Callable[[], httpx.Response]:
        body = {
            "model": FAKE_MODEL,
            "messages": [{"role": "user", "content": f"q{n}"}],
            # An answer cut at max_tokens costs all it reserved, so settling refunds nothing and
            # takes no lock on the user's balance before the history is written.
            "max_tokens": 2,
            "store": True,
            "conversation_id": conversation,
        }
        return lambda: client.post("/v1/chat/completions", json=body, headers=headers)

    replies = _at_once_against_a_locked_row(
        _database_url(inprocess_any_db),
        "conversations",
        conversation,
        [ask(n) for n in range(1, CONCURRENT + 1)],
    )
    assert [r.status_code for r in replies] == [200] * CONCURRENT, [
        r.text for r in replies if r.status_code != 200
    ]
    seqs = [
        seq
        for (seq,) in rows(
            _database_url(inprocess_any_db),
            "SELECT seq FROM messages WHERE conversation_id = :c ORDER BY seq",
            c=conversation,
        )
    ]
    assert seqs == list(range(1, 2 * (CONCURRENT + 1) + 1)), "one place in the conversation per message"
    messages = client.get(f"/v1/conversations/{conversation}", headers=headers).json()["messages"]
    questions = [m["content"] for m in messages if m["role"] == "user"]
    assert sorted(questions) == sorted(f"q{n}" for n in range(CONCURRENT + 1))
    # Each question is followed by its own answer: no two exchanges interleave.
    assert [m["role"] for m in messages] == ["user", "assistant"] * (CONCURRENT + 1)
