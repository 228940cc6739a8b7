"""Alembic environment: always run programmatically by :mod:`fetal_viewer.core.store.engine`.

The caller passes an open connection in ``config.attributes["connection"]``; there is no
``alembic.ini``. ``render_as_batch`` lets SQLite alter tables (copy-and-move).
"""

from __future__ import annotations

from alembic import context

from fetal_viewer.core.store.models import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - only the store runs migrations
    raise RuntimeError("run migrations through fetal_viewer.core.store.open_store")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
