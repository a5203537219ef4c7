"""PostgreSQL restarting or failing over reaches callers as 503 with Retry-After (retry in a moment),
never as a 500, and the gateway answers again as soon as the database does. The fault is stated:
the gateway's sessions are pointed at a port where nothing listens, so the driver's own connection
error goes through the gateway's one error table. tests/compose restarts a real PostgreSQL."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from tests.inprocess.conftest import InProcess


def test_an_unreachable_database_is_a_503_with_retry_after_not_a_500(inprocess: InProcess) -> None:
    headers = inprocess.account()
    state = inprocess.client.app.state  # type: ignore[attr-defined]
    working = state.sessions
    state.sessions = async_sessionmaker(
        create_async_engine("postgresql+psycopg://ragway:x@127.0.0.1:9/ragway")
    )
    try:
        for method, path in (("GET", "/v1/models"), ("GET", "/v1/conversations")):
            down = inprocess.client.request(method, path, headers=headers)
            assert down.status_code == 503, (path, down.text)
            assert int(down.headers["retry-after"]) >= 1
            error = down.json()["error"]
            assert error["code"] == "database_unavailable" and "database" in error["message"]
    finally:
        state.sessions = working
    assert inprocess.client.get("/v1/models", headers=headers).status_code == 200, "back when the database is"


def test_a_database_error_that_is_not_an_outage_stays_a_500() -> None:
    """Only "cannot reach the database" is a 503: a failed constraint or bad SQL is a bug."""
    from sqlalchemy.exc import IntegrityError, OperationalError

    from ragway.gateway.core.errors import database_unavailable, http_error

    outage = database_unavailable(OperationalError("SELECT 1", {}, ConnectionRefusedError()))
    assert outage is not None and http_error(outage).status == 503
    assert database_unavailable(IntegrityError("INSERT", {}, ValueError("duplicate key"))) is None
    assert database_unavailable(ValueError("not a database error")) is None
