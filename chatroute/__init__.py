"""chatroute: a chat routing engine behind existing live-chat frontends.

- ``chatroute.domain``: the pure core (routing choices, conversation lifecycle, contacts).
- ``chatroute.store``: the only room with transactions and tables: units of work, the view,
  inbox and outbox, figures and the read-only queries.
- ``chatroute.settings``: the one place settings are read from the environment.
- ``chatroute.cli``: the ``chatroute`` command's parser and its tools (replay, stats, report,
  history, publish, ...); ``workers.cli`` adds the processes (gateway, worker, sweeper).
- ``chatroute.tools``: ``chatroute replay``.
"""
