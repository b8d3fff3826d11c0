"""structlog JSON lines on stderr, one format for the engine's lines and for those of the
libraries that log through the standard library (dramatiq, alembic, pika); context (tenant,
conversation, event id, actor) is bound. Each process logs its start and stop, with its role.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import TextIO

import structlog
from structlog.stdlib import ProcessorFormatter
from structlog.typing import Processor

# The standard library logger under which the engine's loggers (``get``) write.
ENGINE_LOGGER = "chatroute"
# On every line, the engine's and the libraries' alike.
_STAMPS: list[Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.processors.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def configure(level: str = "INFO") -> None:
    """Route structlog and the standard library's logging to JSON lines on stderr.

    The engine logs at ``level``; libraries only from WARNING up, so a start is quiet:
    alembic logs its plugins at INFO when imported, dramatiq its booting and stopping.
    """
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    logging.basicConfig(
        handlers=[_json_handler(sys.stderr)], level=max(numeric, logging.WARNING), force=True
    )
    logging.getLogger(ENGINE_LOGGER).setLevel(numeric)
    # pika reports each failed connection attempt as an error; the engine logs one structured
    # warning of its own when it reconnects.
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    logging.captureWarnings(True)  # Python's warnings, too, become JSON lines
    structlog.configure(
        processors=[*_STAMPS, ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )


def _json_handler(stream: TextIO) -> logging.Handler:
    """One handler for every line, so lines written from several threads never interleave."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        ProcessorFormatter(
            foreign_pre_chain=[*_STAMPS, structlog.stdlib.add_logger_name],
            processors=[
                ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    return handler


def get(name: str) -> structlog.stdlib.BoundLogger:
    """The logger of ``name``, a dotted name under ``chatroute``."""
    return structlog.get_logger(name)  # type: ignore[no-any-return]


_process_log = get(f"{ENGINE_LOGGER}.process")


def process_started(role: str, **fields: object) -> None:
    _process_log.info("process_started", role=role, pid=os.getpid(), **fields)


def process_stopped(role: str, **fields: object) -> None:
    _process_log.info("process_stopped", role=role, pid=os.getpid(), **fields)


def lifetime(role: str, run: Callable[[], int]) -> int:
    """Run a process's work between its start and stop lines; its exit status. An exception
    is logged as an error and ends it with status 1 (a bare traceback would not be JSON)."""
    process_started(role)
    try:
        status = run()
    except Exception:
        _process_log.exception("process_failed", role=role)
        status = 1
    process_stopped(role, exit_status=status)
    return status
