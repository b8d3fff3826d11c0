"""Alembic environment: runs on the connection ``chatroute.store.db.migrate`` hands over."""

from alembic import context
from sqlalchemy import create_engine

from chatroute.store.tables import metadata

connection = context.config.attributes.get("connection")


def _run(conn) -> None:  # type: ignore[no-untyped-def]
    context.configure(connection=conn, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    _run(connection)
else:
    url = context.config.get_main_option("sqlalchemy.url") or "sqlite:///chatroute.db"
    with create_engine(url).connect() as conn:
        _run(conn)
