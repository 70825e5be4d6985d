"""add host_away_since to lives

Revision ID: 4f2c9e7a1d60
Revises: 8b57097b98fd
Create Date: 2026-12-05 06:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "4f2c9e7a1d60"
down_revision: str | None = "8b57097b98fd"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable with no default, so existing rows read as "host present". Batch mode
    # lets SQLite add the column the same way as PostgreSQL.
    with op.batch_alter_table("lives", schema=None) as batch_op:
        batch_op.add_column(sa.Column("host_away_since", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("lives", schema=None) as batch_op:
        batch_op.drop_column("host_away_since")
