"""The wire contract (../shared/CONTRACT.md) as pydantic v2 models.

- ``events``: inbound CloudEvents, ``parse_event`` (precise rejection reasons), ``to_command``.
- ``decisions``: outbound decisions and ``make_decision`` (deterministic ids).
- ``export``: JSON Schema files in ``schemas/json/`` (``python -m schemas.export``).
"""
