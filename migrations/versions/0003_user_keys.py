"""user keys: SSH public keys that identify users (issue 5)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.db.types

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('user_keys',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_name', sa.String(length=60), nullable=False),
    sa.Column('key_type', sa.String(length=60), nullable=False),
    sa.Column('key_data', sa.Text(), nullable=False),
    sa.Column('comment', sa.String(length=200), nullable=False),
    sa.Column('fingerprint', sa.String(length=60), nullable=False),
    sa.Column('added_at', app.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_name'], ['users.name'], name=op.f('fk_user_keys_user_name_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_user_keys')),
    sa.UniqueConstraint('fingerprint', name=op.f('uq_user_keys_fingerprint'))
    )
    with op.batch_alter_table('user_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_user_keys_user_name'), ['user_name'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('user_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_user_keys_user_name'))

    op.drop_table('user_keys')
