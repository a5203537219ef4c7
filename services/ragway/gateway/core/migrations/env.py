"""Alembic environment: runs migrations over a synchronous connection (see db.migrate)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool, text

from ragway.gateway.core.tables import Base

config = context.config
url = str(config.attributes["url"])
engine = create_engine(url, poolclass=pool.NullPool)

with engine.connect() as connection:
    if connection.dialect.name == "postgresql":
        # Two gateways starting together must not both create the tables.
        connection.execute(text("SELECT pg_advisory_lock(724119)"))
        connection.commit()
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_unlock(724119)"))
        connection.commit()
