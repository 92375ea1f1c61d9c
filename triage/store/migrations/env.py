"""Alembic environment: runs on the connection ``triage.store.db.migrate`` passes in."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from triage.store.schema import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:  # the alembic command line: `alembic -x url=... upgrade head`
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise SystemExit("pass the database URL: alembic -x url=sqlite:///path upgrade head")
    with create_engine(url).begin() as conn:
        _run(conn)
