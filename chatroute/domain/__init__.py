"""The pure domain core: no dramatiq, SQLAlchemy, pydantic, pika or structlog imports.

- ``model``: entities and value objects (Respondent, Conversation, Contact, ...).
- ``commands``: one dataclass per inbound event type, fields as in the wire contract.
- ``ports``: the ``TenantView`` protocol the lifecycle reads and changes state through.
- ``routing``: rule matching, respondent choice, serving a freed slot.
- ``lifecycle``: ``handle(view, command, now)`` and ``fire(view, timer, now)``.
- ``contacts``: contact outcomes for the statistics.
- ``memory``: an in-memory ``TenantView`` for tests and property checks.
"""
