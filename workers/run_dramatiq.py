"""dramatiq's command line with the engine's JSON logs, as ``chatroute worker`` runs it:
``python -m workers.run_dramatiq workers.main --processes N ...``.

dramatiq gives its main process and its worker processes plain-text logging unless the root
logger has a handler already. Configured here first, that handler stays, and the worker
processes, forked from this one, start with it (``workers.main`` then logs them to the pipe
dramatiq collects their output through).
"""

from __future__ import annotations

import dramatiq.cli

from chatroute import logs
from chatroute.settings import Settings


def main() -> int:
    logs.configure(Settings.from_env().log_level)
    return logs.lifetime("worker_dramatiq", dramatiq.cli.main)


if __name__ == "__main__":
    raise SystemExit(main())
