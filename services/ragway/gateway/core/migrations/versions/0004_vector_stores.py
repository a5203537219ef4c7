"""files, vector stores and file batches over the collection and document tables

Revision ID: 0004
Revises: 0003

A vector store is a collection row: OpenAI's fields (free-text name, metadata, expiry, static
chunking) become columns of `collections`. A vector store file is a `documents` row whose
`file_id` is set; its ingestion state (`status`, `last_error`, `attempts`) is durable, so a
restarted gateway resumes every `in_progress` row. Uploaded files get a `files` table (bytes live
in the file storage, not in SQL) and batches a `file_batches` table.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

COLLECTION_COLUMNS = (
    ("title", sa.String(length=256)),
    ("metadata", sa.JSON()),
    ("expires_after", sa.JSON()),
    ("expires_at", sa.BigInteger()),
    ("last_active_at", sa.BigInteger()),
    ("chunk_tokens", sa.Integer()),
    ("overlap_tokens", sa.Integer()),
)


def upgrade() -> None:
    with op.batch_alter_table("collections", schema=None) as batch_op:
        for name, type_ in COLLECTION_COLUMNS:
            batch_op.add_column(sa.Column(name, type_, nullable=True))
    with op.batch_alter_table("documents", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("status", sa.String(length=16), nullable=False, server_default="completed")
        )
        batch_op.add_column(sa.Column("file_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("batch_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("attributes", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("chunking", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("last_error", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("usage_bytes", sa.BigInteger(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("user_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("key_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
        batch_op.create_index("ix_documents_status", ["status", "created_at"])
        batch_op.create_index("ix_documents_file", ["file_id"])
        batch_op.create_index("ix_documents_batch", ["batch_id"])
    op.create_table(
        "files",
        sa.Column("id", sa.String(length=64), primary_key=True),
        sa.Column(
            "user_id", sa.String(length=64), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("filename", sa.String(length=512), nullable=False),
        sa.Column("purpose", sa.String(length=32), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.Float(), nullable=False),
    )
    op.create_index("ix_files_user_created", "files", ["user_id", "created_at"])
    op.create_table(
        "file_batches",
        sa.Column("id", sa.String(length=64), primary_key=True),
        sa.Column(
            "collection_id",
            sa.String(length=64),
            sa.ForeignKey("collections.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("cancelled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_file_batches_collection", "file_batches", ["collection_id"])


def downgrade() -> None:
    op.drop_index("ix_file_batches_collection", table_name="file_batches")
    op.drop_table("file_batches")
    op.drop_index("ix_files_user_created", table_name="files")
    op.drop_table("files")
    with op.batch_alter_table("documents", schema=None) as batch_op:
        for index in ("ix_documents_batch", "ix_documents_file", "ix_documents_status"):
            batch_op.drop_index(index)
        for column in (
            "attempts",
            "key_id",
            "user_id",
            "usage_bytes",
            "last_error",
            "chunking",
            "attributes",
            "batch_id",
            "file_id",
            "status",
        ):
            batch_op.drop_column(column)
    with op.batch_alter_table("collections", schema=None) as batch_op:
        for name, _ in reversed(COLLECTION_COLUMNS):
            batch_op.drop_column(name)
