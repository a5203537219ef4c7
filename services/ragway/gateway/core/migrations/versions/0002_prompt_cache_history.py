"""history keeps what the model saw, tool calls, and where a conversation's context starts

Revision ID: 0002
Revises: 0001

Turn N+1 must begin with exactly the tokens turn N was sent with, or vLLM's prefix cache misses:
a RAG turn went out wrapped with its sources, so `messages.prompt` keeps that text beside the bare
question in `content`. `conversations.context_start` is the first message still sent to the model
after trimming; it only moves in large steps, so the prefix stays stable for many turns.
Tool calls of assistant turns and the call a tool turn answers are kept as data, so a conversation
with tools replays exactly; `request_metadata` is the client's `metadata` of a stored exchange.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("prompt", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("tool_calls", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("tool_call_id", sa.String(length=256), nullable=True))
        batch_op.add_column(sa.Column("request_metadata", sa.JSON(), nullable=True))
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("context_start", sa.BigInteger(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.drop_column("context_start")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        for column in ("request_metadata", "tool_call_id", "tool_calls", "prompt"):
            batch_op.drop_column(column)
