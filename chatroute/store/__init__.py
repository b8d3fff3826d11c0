"""Persistence: SQLAlchemy 2 tables, the domain's mapping, the unit of work, inbox and outbox.

- ``tables``: every table (Alembic migrations in ``migrations/`` create them).
- ``db``: engines, migrations, sessions.
- ``view``: ``SqlTenantView``, the domain's ``TenantView`` on a session.
- ``inbox`` / ``outbox``: events in (idempotent by tenant and id), decisions out.
- ``tenants``: a tenant's row, added by the intake without waiting for its routing.
"""
