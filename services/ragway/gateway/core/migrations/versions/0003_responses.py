"""the Responses API keeps its own fields of an exchange beside the assistant message

Revision ID: 0003
Revises: 0002

A response id is the request id of the exchange (`messages.request_id`), so `GET /v1/responses/{id}`
and `previous_response_id` find the exchange by that column: it gets an index. The fields of the
response object that the history does not already hold (instructions, the tools offered, the text
format, sampling settings, previous_response_id) live in `messages.response` on the assistant
message, so a stored response is rebuilt from the one conversation table the chat API and the UI
also read — not from a second store.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("response", sa.JSON(), nullable=True))
        batch_op.create_index("ix_messages_request_id", ["request_id"])


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index("ix_messages_request_id")
        batch_op.drop_column("response")
