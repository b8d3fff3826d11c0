"""The module ``dramatiq`` loads in every worker process: broker first, then the actors."""

from workers import broker

broker.ensure(worker=True)

from workers import routing, stats  # noqa: E402, F401
