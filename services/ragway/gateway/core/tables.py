"""SQL tables of the gateway (SQLAlchemy 2). Alembic migrations in migrations/ create them.

Money is stored as integer micro-credits (1 credit = 1,000,000) so sums are exact on every database.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from sqlalchemy import JSON, BigInteger, Float, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

MICRO = 1_000_000


def now() -> int:
    return int(time.time())


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=lambda: new_id("user"))
    name: Mapped[str] = mapped_column(String(200), unique=True)
    role: Mapped[str] = mapped_column(String(16), default="user")  # "admin" | "user"
    credits: Mapped[int] = mapped_column(BigInteger, default=0)  # micro-credits, never below 0
    created_at: Mapped[int] = mapped_column(BigInteger, default=now)
    disabled_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)

    keys: Mapped[list[ApiKey]] = relationship(back_populates="user", cascade="all, delete-orphan")


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=lambda: new_id("key"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    lookup: Mapped[str] = mapped_column(String(32), unique=True)  # public part, indexed
    hash: Mapped[str] = mapped_column(String(64))  # sha256 of the whole key
    last4: Mapped[str] = mapped_column(String(4))
    created_at: Mapped[int] = mapped_column(BigInteger, default=now)
    expires_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    rpm_limit: Mapped[int | None] = mapped_column(Integer, nullable=True)
    tpm_limit: Mapped[int | None] = mapped_column(Integer, nullable=True)
    budget: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # micro-credits per period
    budget_period: Mapped[str] = mapped_column(String(8), default="month")  # "day" | "month"
    period_start: Mapped[int] = mapped_column(BigInteger, default=0)
    period_spend: Mapped[int] = mapped_column(BigInteger, default=0)  # includes open reservations

    user: Mapped[User] = relationship(back_populates="keys")


class Conversation(Base):
    __tablename__ = "conversations"
    __table_args__ = (Index("ix_conversations_user_updated", "user_id", "updated_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=lambda: new_id("conv"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(200), default="")
    model: Mapped[str] = mapped_column(String(200), default="")
    # Sub-second times: conversations are listed by last activity, and many start in one second.
    created_at: Mapped[float] = mapped_column(Float, default=time.time)
    updated_at: Mapped[float] = mapped_column(Float, default=time.time)
    # The first message (by seq) still sent to the model; earlier ones were trimmed to fit.
    context_start: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_conversation", "conversation_id", "seq"),
        Index("ix_messages_request_id", "request_id"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=lambda: new_id("msg"))
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(BigInteger)  # order within the conversation
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    # What the model was sent for this turn when it differs from `content` (a question wrapped with
    # its sources); the next turns send it again so their prompt extends this one token for token.
    prompt: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Assistant turns: the calls made, [{"id", "name", "arguments"}]; tool turns: the call answered.
    tool_calls: Mapped[list[dict[str, str]] | None] = mapped_column(JSON, nullable=True)
    tool_call_id: Mapped[str | None] = mapped_column(String(256), nullable=True)
    request_metadata: Mapped[dict[str, str] | None] = mapped_column(JSON, nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="ok")  # ok | aborted | failed
    finish_reason: Mapped[str | None] = mapped_column(String(16), nullable=True)
    citations: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    usage: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    request_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Assistant turns made by the Responses API: the response object's own fields (instructions,
    # tools, text format, sampling settings) that the rows above do not hold, so it can be rebuilt.
    response: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[int] = mapped_column(BigInteger, default=now)


class UsageRecord(Base):
    """Exactly one per metered request, written when it ends however it ends."""

    __tablename__ = "usage_records"
    __table_args__ = (Index("ix_usage_user_created", "user_id", "created_at"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    request_id: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    key_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    model: Mapped[str] = mapped_column(String(200))
    endpoint: Mapped[str] = mapped_column(String(64))
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cached_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost: Mapped[int] = mapped_column(BigInteger, default=0)  # micro-credits
    status: Mapped[str] = mapped_column(String(16))  # ok | aborted | failed
    finish_reason: Mapped[str | None] = mapped_column(String(16), nullable=True)
    latency_ms: Mapped[int] = mapped_column(Integer, default=0)
    ttft_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    conversation_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[int] = mapped_column(BigInteger, default=now)


class LedgerEntry(Base):
    """Every change of a user's credits: top-ups (+), reservations (-) and settlements (+refund)."""

    __tablename__ = "credit_ledger"
    __table_args__ = (Index("ix_ledger_user", "user_id", "created_at"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    amount: Mapped[int] = mapped_column(BigInteger)  # micro-credits, signed
    kind: Mapped[str] = mapped_column(String(16))  # topup | reserve | settle
    request_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True, unique=True)
    balance_after: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # A reservation's key, model and endpoint: what settling it needs if its gateway died.
    key_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    model: Mapped[str | None] = mapped_column(String(200), nullable=True)
    endpoint: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[int] = mapped_column(BigInteger, default=now)


class Collection(Base):
    """A user's RAG collection — the same row is an OpenAI vector store (`/v1/vector_stores`
    shows it by `id`, `/v1/collections` by `name`); the retrieval service stores it as `store_name`."""

    __tablename__ = "collections"
    __table_args__ = (Index("ux_collections_owner_name", "user_id", "name", unique=True),)

    # New rows are `vs_...` (OpenAI's vector store ids); rows made before vector stores keep `col_...`.
    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=lambda: new_id("vs"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    store_name: Mapped[str] = mapped_column(String(128), unique=True)
    shared: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[int] = mapped_column(BigInteger, default=now)
    # The vector store's own fields: OpenAI's free-text `name` (the `name` above is a route key),
    # `metadata`, expiry, and the static chunking every file gets unless it names its own.
    title: Mapped[str | None] = mapped_column(String(256), nullable=True)
    meta: Mapped[dict[str, str] | None] = mapped_column("metadata", JSON, nullable=True)
    expires_after: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    expires_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    last_active_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    chunk_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    overlap_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)


class IngestedFile(Base):
    """A document of a collection — a vector store file when `file_id` is set (then `document_id`
    is the file id). Content hashes mean re-ingesting an unchanged file writes nothing; `status`
    is the durable ingestion state the background worker picks `in_progress` rows from."""

    __tablename__ = "documents"
    __table_args__ = (
        Index("ux_documents_collection_doc", "collection_id", "document_id", unique=True),
        Index("ix_documents_status", "status", "created_at"),
        Index("ix_documents_file", "file_id"),
        Index("ix_documents_batch", "batch_id"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    collection_id: Mapped[str] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"))
    document_id: Mapped[str] = mapped_column(String(256))
    filename: Mapped[str | None] = mapped_column(String(512), nullable=True)
    sha256: Mapped[str] = mapped_column(String(64))
    chunks: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[int] = mapped_column(BigInteger, default=now)
    updated_at: Mapped[int] = mapped_column(BigInteger, default=now)
    # Vector store files: in_progress | completed | failed | cancelled (documents written
    # through /v1/collections are completed when their call returns).
    status: Mapped[str] = mapped_column(String(16), default="completed", server_default="completed")
    file_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    batch_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    attributes: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # {"type": "static", "static": {"max_chunk_size_tokens", "chunk_overlap_tokens"}} as applied.
    chunking: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    last_error: Mapped[dict[str, str] | None] = mapped_column(JSON, nullable=True)
    usage_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # Who asked for the ingestion: its embedding tokens are billed to this user and key.
    user_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    key_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The ingestion worker writing this row and until when (epoch seconds): while the lease holds no
    # other gateway replica's worker claims the row; a dead worker's lease runs out and another does.
    lease_owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    lease_until: Mapped[float | None] = mapped_column(Float, nullable=True)


class StoredFile(Base):
    """An uploaded file (`/v1/files`); its bytes live in the FileStorage under `id`."""

    __tablename__ = "files"
    __table_args__ = (Index("ix_files_user_created", "user_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=lambda: f"file-{uuid.uuid4().hex}")
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    filename: Mapped[str] = mapped_column(String(512))
    purpose: Mapped[str] = mapped_column(String(32))
    bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[int] = mapped_column(BigInteger, default=now)
    # Sub-second creation time: the order of a listing and its `after` cursor.
    seq: Mapped[float] = mapped_column(Float, default=time.time)


class FileBlob(Base):
    """The bytes of an uploaded file, where the file storage is the database (`RAGWAY_FILE_STORE`):
    written in the transaction that writes the file's row, removed with it."""

    __tablename__ = "file_blobs"

    file_id: Mapped[str] = mapped_column(ForeignKey("files.id", ondelete="CASCADE"), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class FileBatch(Base):
    """A vector store file batch; its files are the `documents` rows with this `batch_id`."""

    __tablename__ = "file_batches"
    __table_args__ = (Index("ix_file_batches_collection", "collection_id"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=lambda: new_id("vsfb"))
    collection_id: Mapped[str] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"))
    # in_progress until no file of it is; "cancelled" once cancelled (files left in_progress stop).
    cancelled: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[int] = mapped_column(BigInteger, default=now)
