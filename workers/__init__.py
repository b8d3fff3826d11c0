"""dramatiq actors and the long-running processes around them. Thin: parse, load, decide,
store, publish; the decisions are ``chatroute.domain``'s and the steps ``chatroute.intake``'s
and ``chatroute.apply``'s.

- ``broker``: the one place the global dramatiq broker is chosen (RabbitMQ or in-process).
- ``routing``: ``apply_tenant``, applies a tenant's events in arrival order.
- ``stats``: ``fold_tenant``, keeps a tenant's statistics figures up to date.
- ``timers``: the sweeper that nudges tenants with due timers, events left waiting or
  conversations not counted yet.
- ``gateway``: AMQP in (validate, record, nudge, ack).
- ``relay``: the outbox relay out (loop, lock, publisher), a thread of the gateway process.
- ``cli``: the ``chatroute`` console script: ``chatroute.cli`` plus the processes.
- ``main``: what ``dramatiq`` loads in worker processes.
"""
