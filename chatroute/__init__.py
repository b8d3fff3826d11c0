"""chatroute: a chat routing engine behind existing live-chat frontends.

- ``chatroute.domain``: the pure core (routing choices, conversation lifecycle, contacts).
- ``chatroute.store``: SQLAlchemy tables, the unit of work, inbox and outbox.
- ``chatroute.settings``: the one place settings are read from the environment.
- ``chatroute.cli``: ``chatroute replay | stats | gateway | publish | worker | sweeper``.
"""
