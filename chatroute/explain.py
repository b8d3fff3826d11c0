"""``chatroute explain``: a conversation's decisions with why each went where it went, and the
readable form of an explanation that ``chatroute route`` shares."""

from __future__ import annotations

import json
from typing import Any

from chatroute.bootstrap import Runtime
from chatroute.store import reads

# What each decision type says, for people; {…} are its data's fields.
SAYS = {
    "conversation.assigned": "assigned to {respondent} in {group} ({cause})",
    "conversation.queued": "queued in {group} at position {position} ({cause})",
    "conversation.pending": "pending for {respondent} in {group} until {reassign_at}",
    "conversation.unrouted": "unrouted: {reason} ({code})",
    "conversation.snoozed": "snoozed by {respondent} until {until}",
    "conversation.woken": "woken ({cause})",
    "conversation.closed": "closed ({cause})",
    "respondent.paused": "{respondent} paused ({reason})",
    "visitor.notify": "visitor notified ({unread} unread)",
}


def decisions(rt: Runtime, tenant: str, conversation: str) -> list[dict[str, Any]]:
    """The conversation's decisions in the order they were made, each with its explanation
    where it has one."""
    _, bodies = reads.conversation_record(rt.engine, tenant, conversation)
    return [_entry(json.loads(body)) for body in bodies]


def _entry(decision: dict[str, Any]) -> dict[str, Any]:
    return {
        "at": decision["time"],
        "type": decision["type"],
        "cause": decision["causationid"],
        "data": decision["data"],
    }


def render(entries: list[dict[str, Any]]) -> str:
    """A timeline people read: one line per decision, its explanation below it."""
    lines: list[str] = []
    for entry in entries:
        data = entry["data"]
        said = SAYS.get(entry["type"], entry["type"]).format_map(_Blank(data))
        lines.append(f"{entry['at']}  {said}")
        if "explain" in data:
            lines += ["    " + line for line in describe(data["explain"])]
    return "\n".join(lines)


def render_route(answer: dict[str, Any]) -> str:
    """``chatroute route``'s answer for people: where it would go, then why."""
    if answer["respondent"] is not None:
        said = f"assigned to {answer['respondent']} in {answer['group']}"
    elif answer["position"] is not None:
        said = f"queued in {answer['group']} at position {answer['position']}"
    else:
        said = f"unrouted ({answer['code']})"
    return "\n".join([said, *("    " + line for line in describe(answer["explain"]))])


def describe(why: dict[str, Any]) -> list[str]:
    """An explanation as lines of text."""
    lines = []
    if why["rule"] is not None:
        target = "" if why["target"] is None else f", target {why['target']}"
        lines.append(f"rule {why['rule']}{target}")
    else:
        lines.append("not routed by a rule")
    for skip in why["skipped"]:
        lines.append(f"skipped {skip['group']}: {skip['why'].replace('_', ' ')}")
    shown = [_candidate(c) for c in why["candidates"]]
    if why["eligible"] is None:
        lines.append(f"no choice: {shown[0]}" if shown else "no choice")
        return lines
    lines.append(f"eligible: {why['eligible']}" + (f"; best: {', '.join(shown)}" if shown else ""))
    out = why["ineligible"]
    lines.append(
        f"ineligible: {out['excluded']} excluded, {out['unavailable']} unavailable, "
        f"{out['full']} full"
    )
    return lines


def _candidate(shown: dict[str, Any]) -> str:
    last = shown["last_assigned_at"] or "never"
    return f"{shown['respondent']} (load {shown['load']}/{shown['slots']}, last assigned {last})"


class _Blank(dict[str, Any]):
    """A decision's data where a field it lacks reads as ``-``."""

    def __missing__(self, key: str) -> str:
        return "-"
