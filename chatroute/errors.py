"""One base exception for the engine; domain rejections are not retried."""

import re

# Quoted values as repr() writes them (escapes included), and the first unpaired quote or
# parenthesis: whatever follows may be a value from the event.
_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
_UNPAIRED = re.compile(r"['\"(].*")
# The keys of ``attributes`` are the frontend's own names: a field path stops before them.
_ATTRIBUTE_KEY = re.compile(r"(\battributes)\..*")
_LIST_INDEX = re.compile(r"\.\d+\b")  # data.groups.3 -> data.groups
_NUMBER = re.compile(r"(?<![\w-])\d+\b")  # sizes and counts, not the 8 of UTF-8


class ChatrouteError(Exception):
    """Base of every error the engine raises on purpose."""


class Rejected(ChatrouteError):
    """An event the domain refuses: it is published as ``event.rejected`` with ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnknownConversation(Rejected):
    """The event names a conversation not started yet: retried for a while, then rejected."""

    def __init__(self, conversation: str) -> None:
        super().__init__(f"unknown conversation {conversation!r}")
        self.conversation = conversation


class InvalidEvent(ChatrouteError):
    """A body that is not a valid event of the contract; ``reason`` says which field and why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SettingsError(ChatrouteError):
    """A setting missing, contradictory or unreadable: the process cannot start."""


def reason_kind(reason: str) -> str:
    """A rejection reason without its particulars: no value, id or number from the event, so
    it may be logged and used as a metric label. ``unknown conversation 'c9'`` ->
    ``unknown conversation``; ``data.score: Input should be ...`` -> ``data.score``."""
    head = _UNPAIRED.sub("", _QUOTED.sub("", reason)).split(":", 1)[0]
    head = _ATTRIBUTE_KEY.sub(r"\1", _LIST_INDEX.sub("", head))
    return re.sub(r"\s+", " ", _NUMBER.sub("", head)).strip()[:60]
