"""``docs/contract.md`` keeps in step with the code: every event and decision type of the
schemas has its section there (events under "Events", decisions under "Decisions": a type
such as ``conversation.closed`` is both), naming each of its fields and each value of its
enumerated fields, and each section's JSON example is one the code takes; every command for
frontend developers is there with its options; the README points to the document."""

from __future__ import annotations

import argparse
import json
import re
import typing
from pathlib import Path

import pytest

from chatroute import cli
from chatroute.amqp import DECISIONS_EXCHANGE, EVENTS_EXCHANGE, REJECTED_QUEUE
from schemas import decisions, events

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "contract.md"
HEADING = re.compile(r"^#### `([a-z_.]+)`$", re.MULTILINE)
JSON_BLOCK = re.compile(r"```json\n(.*?)```", re.DOTALL)


def part(title: str | None) -> str:
    """The text of the ``## title`` part of the doc, up to the next ``## `` (None: all)."""
    text = DOC.read_text()
    if title is None:
        return text
    start = text.index(f"\n## {title}\n") + len(f"\n## {title}\n")
    following = re.search(r"^## ", text[start:], re.MULTILINE)
    return text[start : start + following.start()] if following else text[start:]


def sections(title: str | None = None) -> dict[str, str]:
    """The text under each ``#### `type` `` heading of a part, up to the next heading."""
    text = part(title)
    found = {}
    for match in HEADING.finditer(text):
        assert match.group(1) not in found, f"two sections for {match.group(1)} in one part"
        rest = text[match.end() :]
        following = re.search(r"^#{1,4} ", rest, re.MULTILINE)
        found[match.group(1)] = rest[: following.start()] if following else rest
    return found


def literal_strings(annotation: object) -> set[str]:
    """The string values of the ``Literal`` types in ``annotation`` (through unions)."""
    if typing.get_origin(annotation) is typing.Literal:
        return {value for value in typing.get_args(annotation) if isinstance(value, str)}
    found: set[str] = set()
    for argument in typing.get_args(annotation):
        found |= literal_strings(argument)
    return found


def example(section: str) -> dict[str, object]:
    blocks = JSON_BLOCK.findall(section)
    assert len(blocks) == 1, "one JSON example per type"
    document = json.loads(blocks[0])
    assert isinstance(document, dict)
    return document


@pytest.mark.parametrize("type_", sorted(events.DATA_MODELS))
def test_every_event_type_has_a_section_with_its_fields_and_a_valid_example(type_: str) -> None:
    section = sections("Events").get(type_)
    assert section is not None, f"docs/contract.md has no section for the event {type_}"
    for name in events.DATA_MODELS[type_].model_fields:
        assert f"`{name}`" in section, f"{type_}: field {name} is not described"
    parsed = events.parse_event(json.dumps(example(section)))
    assert parsed.type == type_


@pytest.mark.parametrize("type_", sorted(decisions.DATA_MODELS))
def test_every_decision_type_has_a_section_with_its_fields_and_a_true_example(
    type_: str,
) -> None:
    section = sections("Decisions").get(type_)
    assert section is not None, f"docs/contract.md has no section for the decision {type_}"
    for name in decisions.DATA_MODELS[type_].model_fields:
        assert f"`{name}`" in section, f"{type_}: field {name} is not described"
    document = example(section)
    envelope = decisions.Decision.model_validate(document)
    assert envelope.type == type_
    decisions.DATA_MODELS[type_].model_validate(envelope.data)
    # its id is what the engine would give it: derived from the tenant and the cause
    ids = {decisions.decision_id(envelope.tenant, envelope.causationid, i) for i in range(5)}
    assert envelope.id in ids


def test_the_doc_has_no_section_for_a_type_the_code_lacks() -> None:
    assert set(sections("Events")) == set(events.DATA_MODELS)
    assert set(sections("Decisions")) == set(decisions.DATA_MODELS)
    headings = HEADING.findall(DOC.read_text())
    assert len(headings) == len(events.DATA_MODELS) + len(decisions.DATA_MODELS)


@pytest.mark.parametrize(
    ("title", "models"), [("Events", events.DATA_MODELS), ("Decisions", decisions.DATA_MODELS)]
)
def test_every_enumerated_value_is_named_in_its_section(
    title: str, models: dict[str, type]
) -> None:
    """A cause, code or reason a frontend may receive or send is documented where its type
    is (the v2 causes ``overflow`` and ``no_answer``, the unrouted codes, ``idle``, ...)."""
    found = sections(title)
    for type_, model in models.items():
        for name, field in model.model_fields.items():
            for value in literal_strings(field.annotation):
                named = f"`{value}`" in found[type_] or f'`"{value}"`' in found[type_]
                assert named, f"{type_}.{name}: value {value} not named"


def test_every_command_for_frontend_developers_is_there_with_its_options() -> None:
    """The commands that run the engine are the README's; every other command the parser has
    (v2's ``explain``, ``route``, ``queues``, ``whatif`` among them) is described under
    "Command line", naming each of its options. Nothing of v2 is left "coming"."""
    running = {"migrate", "gateway", "worker", "sweeper", "health", "prune"}
    commands = part("Command line")
    subparsers = next(
        action
        for action in cli._parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    )
    tools = {name: p for name, p in subparsers.choices.items() if name not in running}
    assert {"explain", "route", "queues", "whatif"} <= set(tools)
    for name, parser in tools.items():
        assert f"`chatroute {name} " in commands, name
        for action in parser._actions:
            for option in action.option_strings:
                if option.startswith("--") and option != "--help":
                    assert option in commands, f"chatroute {name} {option}"
    assert "Coming in v2" not in DOC.read_text()


def test_the_doc_names_the_amqp_topology_and_the_compatibility_rules() -> None:
    text = DOC.read_text()
    for name in (EVENTS_EXCHANGE, DECISIONS_EXCHANGE, REJECTED_QUEUE, "<tenant>.#"):
        assert f"`{name}`" in text
    for title in ("## Compatibility", "## Time", "### Explanations", "### Binary mode"):
        assert title in text


def test_the_readme_links_the_contract_and_nothing_points_outside_the_repository() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "docs/contract.md" in readme
    for path in (ROOT / "README.md", ROOT / "docs" / "semantics.md", DOC):
        assert "../shared" not in path.read_text(), path


def test_every_link_within_the_doc_leads_to_a_heading() -> None:
    text = DOC.read_text()
    headings = re.findall(r"^#{1,4} (.+)$", text, re.MULTILINE)
    slugs = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in headings}
    links = set(re.findall(r"\]\(#([^)]+)\)", text))
    assert links and links <= slugs, links - slugs
