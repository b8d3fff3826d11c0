"""One base exception for the engine; domain rejections are not retried."""


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
