"""Read the gateway's database directly, to check what the API cannot show (ledger, usage rows)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import create_engine, text


def fresh_postgres(database: str) -> str:
    """An empty PostgreSQL database `database` at 127.0.0.1:5432 (dropped first if it exists)."""
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {database}")
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{database}"


def rows(database_url: str, sql: str, **params: Any) -> list[Any]:
    engine = create_engine(database_url)
    try:
        with engine.begin() as conn:
            return list(conn.execute(text(sql), params))
    finally:
        engine.dispose()


def money(database_url: str, user_id: str) -> dict[str, int]:
    """Balance, ledger movements (excluding top-ups) and billed usage of one user, in micro-credits."""
    balance = rows(database_url, "SELECT credits FROM users WHERE id = :u", u=user_id)[0][0]
    spent = rows(
        database_url,
        "SELECT COALESCE(SUM(amount), 0) FROM credit_ledger WHERE user_id = :u AND kind <> 'topup'",
        u=user_id,
    )[0][0]
    topups = rows(
        database_url,
        "SELECT COALESCE(SUM(amount), 0) FROM credit_ledger WHERE user_id = :u AND kind = 'topup'",
        u=user_id,
    )[0][0]
    billed = rows(
        database_url, "SELECT COALESCE(SUM(cost), 0) FROM usage_records WHERE user_id = :u", u=user_id
    )[0][0]
    records = rows(database_url, "SELECT COUNT(*) FROM usage_records WHERE user_id = :u", u=user_id)[0][0]
    return {"balance": balance, "ledger": spent, "topups": topups, "billed": billed, "records": records}
