"""The pure domain core: no dramatiq, SQLAlchemy, pydantic, pika or structlog imports.

- ``model``: entities and value objects (Respondent, Conversation, Contact, ...).
- ``commands``: one dataclass per inbound event type, fields as in the wire contract.
- ``ports``: the ``TenantView`` protocol the lifecycle reads and changes state through.
- ``routing``: rule matching, respondent choice, serving a freed slot.
- ``policy``: routing by rule (contract v2): targets, hours and queue caps, sticky, overflow.
- ``hours``: a group's business hours in its IANA timezone.
- ``lifecycle``: ``handle(view, command, now)`` and ``fire(view, timer, now)``.
- ``contacts``: contact outcomes for the statistics.
- ``memory``: an in-memory ``TenantView`` for tests and property checks.
"""
