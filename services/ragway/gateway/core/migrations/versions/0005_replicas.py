"""what several gateway replicas share: ingestion leases and file bytes in SQL

Revision ID: 0005
Revises: 0004

Every gateway replica runs an ingestion worker, so a `documents` row in progress is claimed with a
lease (`lease_owner`, `lease_until`): claimed by one worker at a time, and taken over by another
when the lease runs out because its worker died. Uploaded file bytes may live in SQL
(`file_blobs`, one row per file, removed with it), where every replica reads them and they outlive
any pod. A reservation's ledger entry names its key, model and endpoint, so a reservation whose
gateway died before settling it can be settled by another (billing.release_orphans).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("documents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lease_owner", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("lease_until", sa.Float(), nullable=True))
    with op.batch_alter_table("credit_ledger", schema=None) as batch_op:
        batch_op.add_column(sa.Column("key_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("model", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("endpoint", sa.String(length=64), nullable=True))
    op.create_table(
        "file_blobs",
        sa.Column(
            "file_id",
            sa.String(length=64),
            sa.ForeignKey("files.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("data", sa.LargeBinary(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("file_blobs")
    with op.batch_alter_table("credit_ledger", schema=None) as batch_op:
        for column in ("endpoint", "model", "key_id"):
            batch_op.drop_column(column)
    with op.batch_alter_table("documents", schema=None) as batch_op:
        batch_op.drop_column("lease_until")
        batch_op.drop_column("lease_owner")
