"""Alembic environment: runs on the connection ``database.migrate`` hands in."""

from alembic import context

from perfintel.alerting.state.database import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
