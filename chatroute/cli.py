"""The ``chatroute`` command: its parser and one function per command. Thin: parse arguments,
build the runtime, call the services."""

from __future__ import annotations

import argparse
import functools
import json
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from chatroute import bootstrap, logs
from chatroute.errors import Rejected, SettingsError
from chatroute.health import ROLES
from chatroute.intake import MAX_ID, TENANT
from chatroute.settings import DEPLOYED_COMMANDS, Settings

NEEDS_BROKER = frozenset({"gateway", "worker", "sweeper", "publish"})
# The long-running processes of a deployment: they stop cleanly on SIGTERM or SIGINT.
SERVICES = frozenset({"gateway", "worker", "sweeper"})
# Each process of a deployment logs its start and its stop, with the command as its role.
PROCESSES = SERVICES | {"migrate"}
DESCRIPTION = (
    "chatroute routes the conversations of live-chat frontends: they publish what happens as "
    "CloudEvents to RabbitMQ, chatroute applies the distribution rules, runs the timers and "
    "publishes its decisions back. replay, stats, report and history work on a local SQLite "
    "file by default; the processes of a deployment read CHATROUTE_DATABASE_URL and "
    "CHATROUTE_AMQP_URL (or their _FILE forms)."
)


Command = Callable[[argparse.Namespace, Settings], int]


def main(argv: Sequence[str] | None = None, processes: Mapping[str, Command] | None = None) -> int:
    """Run the command ``argv`` names. The long-running processes (``SERVICES``) are
    ``processes``' to run: ``workers.cli``, the console script, hands them in, as only the
    workers' side may import the workers."""
    parser = _parser()
    args = parser.parse_args(argv)
    command = args.run or (processes or {}).get(args.command)
    if command is None:
        print(f"chatroute {args.command}: run it with the chatroute command (workers.cli)",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        settings = _settings(args)
    except SettingsError as error:
        print(f"chatroute: {error}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level)
    if args.command in SERVICES:
        # From the very start: a stop asked for while the process starts up is a clean one too.
        args.stop = _stop_on_signals()
    run = functools.partial(command, args, settings)
    return logs.lifetime(args.command, run) if args.command in PROCESSES else int(run())


def _settings(args: argparse.Namespace) -> Settings:
    settings = Settings.from_env()
    if getattr(args, "db", None):
        settings = settings.with_database(args.db)
    if getattr(args, "amqp", None):
        settings = settings.with_(amqp_url=args.amqp)
    if args.command in NEEDS_BROKER:
        require_amqp(settings, args.command)
    if args.command in DEPLOYED_COMMANDS:
        settings.require_database(args.command)
    return settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chatroute",
        description=DESCRIPTION,
        epilog="chatroute COMMAND --help tells a command's options.",
    )
    sub = parser.add_subparsers(required=True, metavar="COMMAND", dest="command")

    replay = sub.add_parser("replay", help="run events through the engine on a virtual clock")
    replay.add_argument("events", type=Path, help="a JSON-lines file of events")
    replay.add_argument("--db", help="database URL (default $CHATROUTE_DATABASE_URL)")
    replay.add_argument("--until", type=_time, help="fire timers due by this time at the end")
    replay.add_argument(
        "--stamped",
        action="store_true",
        help='lines are {"body": ..., "received_at": ...}: messages as a pipeline received them',
    )
    replay.set_defaults(run=_replay)

    whatif = sub.add_parser(
        "whatif", help="compare a day replayed as recorded and with config changes"
    )
    whatif.add_argument("events", type=Path, help="a JSON-lines file of events (the day)")
    whatif.add_argument(
        "--change",
        type=Path,
        required=True,
        help="a JSON-lines file of configuration events (rule.*, group.updated, "
        "respondent.updated, respondent.status, tenant.updated), each applied to its tenant "
        "before the tenant's first event and held all day",
    )
    whatif.add_argument("--until", type=_time, help="fire timers due by this time at the end")
    whatif.add_argument("--json", action="store_true", help="the contract's JSON, not a table")
    whatif.add_argument("--keep", type=Path, help="keep the two runs' SQLite databases here")
    whatif.add_argument(
        "--html", type=Path, help="also write DIR/index.html: the comparison with its charts"
    )
    whatif.set_defaults(run=_whatif)

    stats = sub.add_parser("stats", help="statistics per respondent, group or day")
    stats.add_argument("--db")
    stats.add_argument("--tenant")
    stats.add_argument("--since", type=_time, help="contacts and conversations started from")
    stats.add_argument("--until", type=_time, help="... and before this time")
    stats.add_argument("--by", choices=["respondent", "group", "day"], default="respondent")
    stats.add_argument("--json", action="store_true", help="one JSON array instead of a table")
    stats.set_defaults(run=_stats)

    report = sub.add_parser("report", help="a self-contained HTML page of a tenant's statistics")
    report.add_argument("--db")
    report.add_argument("--tenant", required=True)
    report.add_argument("--since", type=_time)
    report.add_argument("--until", type=_time)
    report.add_argument("--out", type=Path, required=True, help="directory for index.html")
    report.set_defaults(run=_report)

    queues = sub.add_parser("queues", help="each group now: waiting, longest wait, free slots")
    queues.add_argument("--db")
    queues.add_argument("--tenant", required=True)
    queues.add_argument(
        "--at", type=_time, help="the time to judge hours and waits at (default now; give it "
        "for a replayed database)",
    )  # fmt: skip
    queues.add_argument("--json", action="store_true", help="one JSON array instead of a table")
    queues.set_defaults(run=_queues)

    explain = sub.add_parser("explain", help="a conversation's decisions and why each was made")
    explain.add_argument("--db")
    explain.add_argument("--tenant", required=True)
    explain.add_argument("--conversation", required=True)
    explain.add_argument("--json", action="store_true", help="JSON instead of a timeline")
    explain.set_defaults(run=_explain)

    route = sub.add_parser("route", help="who would get a new conversation now (changes nothing)")
    route.add_argument("--db")
    route.add_argument("--tenant", required=True)
    route.add_argument(
        "--attr", action="append", default=[], type=_attribute, metavar="KEY=VALUE",
        help="an attribute of the conversation (repeat it)",
    )  # fmt: skip
    route.add_argument("--visitor", help="the visitor (for sticky routing; default: a new one)")
    route.add_argument("--priority", type=int, default=0)
    route.add_argument("--at", type=_time, help="the time to route at (default now)")
    route.add_argument("--json", action="store_true", help="JSON instead of text")
    route.set_defaults(run=_route)

    history = sub.add_parser("history", help="one conversation's timeline, as JSON")
    history.add_argument("--db")
    history.add_argument("--tenant", required=True)
    history.add_argument("--conversation", required=True)
    history.set_defaults(run=_history)

    prune = sub.add_parser(
        "prune", help="delete applied events and sent decisions older than N days"
    )
    prune.add_argument("--db")
    prune.add_argument("--older-than-days", type=float, required=True, dest="days")
    prune.set_defaults(run=_prune)

    access = sub.add_parser("access", help="which RabbitMQ users may publish for which tenants")
    _access_actions(access)

    gateway = sub.add_parser("gateway", help="consume chat.events and relay decisions")
    gateway.add_argument("--db")
    _amqp_option(gateway)
    gateway.set_defaults(run=None)  # a process of a deployment: workers.cli runs it

    publish = sub.add_parser("publish", help="publish a JSON-lines file of events")
    publish.add_argument("events", type=Path, help="a JSON-lines file of events")
    _amqp_option(publish)
    publish.set_defaults(run=_publish)

    worker = sub.add_parser("worker", help="run routing and stats workers, restarted if they die")
    worker.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    worker.add_argument("--threads", type=int, default=4)
    worker.add_argument(
        "--queues", nargs="+", help="only these queues (chatroute.routing, chatroute.stats)"
    )
    worker.set_defaults(run=None)  # a process of a deployment: workers.cli runs it

    sweeper = sub.add_parser("sweeper", help="nudge tenants with due timers or waiting events")
    sweeper.add_argument("--db")
    _amqp_option(sweeper)
    sweeper.set_defaults(run=None)  # a process of a deployment: workers.cli runs it

    health = sub.add_parser("health", help="exit 0 when a kind of process is ready (or --live)")
    health.add_argument("--role", choices=ROLES, default="worker")
    health.add_argument(
        "--live", action="store_true", help="only whether the database and broker answer"
    )
    health.set_defaults(run=_health)

    migrate = sub.add_parser("migrate", help="create or upgrade the database schema")
    migrate.add_argument("--db")
    migrate.set_defaults(run=_migrate)
    return parser


def _access_actions(parser: argparse.ArgumentParser) -> None:
    database = argparse.ArgumentParser(add_help=False)
    database.add_argument("--db")
    actions = parser.add_subparsers(required=True, metavar="ACTION", dest="action")
    listing = actions.add_parser("list", parents=[database], help="every publisher's tenants")
    listing.add_argument("--json", action="store_true")
    allow = actions.add_parser("allow", parents=[database], help="let a user publish for tenants")
    revoke = actions.add_parser("revoke", parents=[database], help="take that back")
    for action, tenants_required in ((allow, True), (revoke, False)):
        action.add_argument("--user", required=True, type=_publisher, help="a RabbitMQ user")
        action.add_argument(
            "--tenant", action="append", dest="tenants", type=_tenant, required=tenants_required,
            help="a tenant (repeat for several)" + ("" if tenants_required else "; none: all"),
        )  # fmt: skip
    parser.set_defaults(run=_access)


def _amqp_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--amqp",
        help="AMQP URL (default: $CHATROUTE_AMQP_URL, or the file $CHATROUTE_AMQP_URL_FILE "
        "names; prefer those: other local users can read a command line)",
    )


def _time(value: str) -> datetime:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{value!r} has no time zone (use ...Z)")
    return moment


def _attribute(value: str) -> tuple[str, str]:
    key, equals, attribute = value.partition("=")
    if not equals or not key:
        raise argparse.ArgumentTypeError(f"{value!r} is not KEY=VALUE")
    return key, attribute


def _replay(args: argparse.Namespace, settings: Settings) -> int:
    from chatroute.tools.replay import InvalidStamp, read_stamped, replay

    if not args.events.exists():
        print(f"chatroute replay: no such file: {args.events}", file=sys.stderr)
        return 2
    with args.events.open("rb") as lines:
        progress = sys.stderr if sys.stderr.isatty() else None
        try:
            source = read_stamped(lines) if args.stamped else lines
            replay(settings, source, sys.stdout, until=args.until, progress=progress)
        except InvalidStamp as error:
            print(f"chatroute replay: {error}", file=sys.stderr)
            return 2
    return 0


def _whatif(args: argparse.Namespace, settings: Settings) -> int:
    from chatroute.tools.whatif import InvalidChange, read_change, render, whatif
    from chatroute.tools.whatif_page import write_page

    for path in (args.events, args.change):
        if not path.exists():
            print(f"chatroute whatif: no such file: {path}", file=sys.stderr)
            return 2
    try:
        with args.change.open("rb") as lines:
            change = read_change(lines)
    except InvalidChange as error:
        print(f"chatroute whatif: {args.change}: {error}", file=sys.stderr)
        return 2
    with _folder(args.keep) as folder:
        compared = whatif(args.events, change, folder, args.until)
    for tenant in compared.change.unapplied:
        print(f"chatroute whatif: no event of tenant {tenant}: its change was not applied",
              file=sys.stderr)  # fmt: skip
    if args.html is not None:
        made = write_page(compared, args.events, args.change, args.html)
        print(f"chatroute whatif: wrote {made}", file=sys.stderr)
    print(json.dumps(compared.as_json(), indent=2) if args.json else render(compared))
    return 0


@contextmanager
def _folder(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="chatroute-whatif-") as folder:
        yield Path(folder)


def _stats(args: argparse.Namespace, settings: Settings) -> int:
    from chatroute.stats import Window, render_table, rows

    rt = bootstrap.build(settings, migrate=True)
    found = rows(rt, args.by, Window(args.tenant, args.since, args.until))
    print(json.dumps(found, indent=2) if args.json else render_table(found, args.by))
    return 0


def _report(args: argparse.Namespace, settings: Settings) -> int:
    from chatroute.report import write_report
    from chatroute.stats import Window

    rt = bootstrap.build(settings, migrate=True)
    page = write_report(rt, Window(args.tenant, args.since, args.until), args.out)
    print(f"report written to {page}", file=sys.stderr)
    return 0


def _queues(args: argparse.Namespace, settings: Settings) -> int:
    from chatroute.queues import render_table, row
    from chatroute.store.reads import group_states

    rt = bootstrap.build(settings, migrate=True, orm=False)
    at = args.at or rt.clock.now()
    rows = [row(state, at) for state in group_states(rt.engine, args.tenant)]
    print(json.dumps(rows, indent=2) if args.json else render_table(rows))
    return 0


def _explain(args: argparse.Namespace, settings: Settings) -> int:
    from chatroute.explain import decisions, render

    what = "decision about conversation"
    document = _conversation(args, settings, ("explain", what, "decisions"), decisions)
    if document is None:
        return 1
    print(json.dumps(document, indent=2) if args.json else render(document["decisions"]))
    return 0


def _route(args: argparse.Namespace, settings: Settings) -> int:
    from chatroute.explain import render_route
    from chatroute.route import route

    rt = bootstrap.build(settings, migrate=True)
    at = args.at or rt.clock.now()
    try:
        answer = route(
            rt, args.tenant, dict(args.attr), at, visitor=args.visitor, priority=args.priority
        )
    except Rejected as error:
        print(f"chatroute route: {error}", file=sys.stderr)
        return 2
    if answer is None:
        print(f"chatroute route: no tenant {args.tenant!r}", file=sys.stderr)
        return 1
    print(json.dumps(answer, indent=2) if args.json else render_route(answer))
    return 0


def _history(args: argparse.Namespace, settings: Settings) -> int:
    from chatroute.history import timeline

    document = _conversation(args, settings, ("history", "conversation", "timeline"), timeline)
    if document is None:
        return 1
    print(json.dumps(document, indent=2))
    return 0


def _conversation(
    args: argparse.Namespace,
    settings: Settings,
    named: tuple[str, str, str],
    read: Callable[[bootstrap.Runtime, str, str], list[dict[str, Any]]],
) -> dict[str, Any] | None:
    """One conversation's record for ``chatroute history`` and ``explain`` (``named``: the
    command, what it says is missing, the document's key for the entries), or None (said on
    stderr) when there is nothing about it."""
    command, what, key = named
    rt = bootstrap.build(settings, migrate=True)
    entries = read(rt, args.tenant, args.conversation)
    if not entries:
        print(
            f"chatroute {command}: no {what} {args.conversation!r} in tenant {args.tenant!r}",
            file=sys.stderr,
        )
        return None
    return {"tenant": args.tenant, "conversation": args.conversation, key: entries}


def _prune(args: argparse.Namespace, settings: Settings) -> int:
    from chatroute.store.retention import prune

    if args.days < 1:
        raise SystemExit("chatroute prune: keep at least a day (redeliveries must still be seen)")
    rt = bootstrap.build(settings, migrate=True)
    pruned = prune(rt.engine, rt.clock.now() - timedelta(days=args.days))
    print(json.dumps({"inbox_rows": pruned.inbox, "outbox_rows": pruned.outbox}))
    return 0


def require_amqp(settings: Settings, command: str) -> str:
    if not settings.amqp_url:
        raise SettingsError(
            f"chatroute {command}: set --amqp, CHATROUTE_AMQP_URL or CHATROUTE_AMQP_URL_FILE"
        )
    return settings.amqp_url


def _publish(args: argparse.Namespace, settings: Settings) -> int:
    from chatroute.publish import publish_file

    count = publish_file(args.events, require_amqp(settings, "publish"), settings.queue_type)
    print(f"published {count} events to chat.events", file=sys.stderr)
    return 0


def _health(args: argparse.Namespace, settings: Settings) -> int:
    from chatroute.health import check

    report = check(settings, args.role)
    print(json.dumps({"role": args.role, **report}))
    return 0 if report["live" if args.live else "ready"] else 1


def _access(args: argparse.Namespace, settings: Settings) -> int:
    """Exit status 1 when ``revoke`` found nothing to take back."""
    from chatroute.store import publishers

    engine = bootstrap.build(settings, migrate=True).engine
    try:
        if args.action == "allow":
            added = publishers.allow(engine, args.user, args.tenants)
            print(f"{args.user}: {added} tenant(s) added")
        elif args.action == "revoke":
            removed = publishers.revoke(engine, args.user, args.tenants)
            print(f"{args.user}: {removed} tenant(s) removed")
            return 0 if removed else 1
        else:
            _print_publishers(publishers.listing(engine), args.json)
    finally:
        engine.dispose()
    return 0


def _print_publishers(pairs: list[tuple[str, str]], as_json: bool) -> None:
    if as_json:
        print(json.dumps([{"publisher": p, "tenant": t} for p, t in pairs]))
        return
    if not pairs:
        print("no publisher is mapped: every event is taken, whoever publishes it")
    for publisher, tenant in pairs:
        print(f"{publisher}\t{tenant}")


def _publisher(value: str) -> str:
    if not 0 < len(value) <= MAX_ID:
        raise argparse.ArgumentTypeError(f"a user name of 1 to {MAX_ID} characters, not {value!r}")
    return value


def _tenant(value: str) -> str:
    if not TENANT.fullmatch(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a tenant name")
    return value


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    bootstrap.build(settings, migrate=True)
    logs.get("chatroute.migrate").info("database_at_newest_migration")
    return 0


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    return stop


if __name__ == "__main__":
    raise SystemExit(main())
