"""What the store keeps of a rejected body: at most 64 KiB of it, with the whole body's size
and SHA-256. A 2 MB message costs 64 KiB in the inbox and in ``chat.events.rejected``, and
what was cut can still be told apart (and matched against the sender's copy) by its digest."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

# The event size limit: a body that could be a valid event is always kept whole.
KEPT_BYTES = 65536
_CONTINUATION = 0b1100_0000, 0b1000_0000  # mask and value of a UTF-8 continuation byte


@dataclass(frozen=True)
class KeptBody:
    head: bytes  # the whole body, or its first KEPT_BYTES at most
    size: int  # of the whole body, in bytes
    sha256: str  # of the whole body, hex

    @property
    def truncated(self) -> bool:
        return len(self.head) < self.size


def keep(body: bytes) -> KeptBody:
    return KeptBody(_head(body), len(body), hashlib.sha256(body).hexdigest())


def _head(body: bytes) -> bytes:
    """``body``, or its first ``KEPT_BYTES`` ending before a character (the inbox keeps text:
    a UTF-8 character cut in two would become U+FFFD, three bytes)."""
    if len(body) <= KEPT_BYTES:
        return body
    end = KEPT_BYTES
    mask, continuation = _CONTINUATION
    while end > KEPT_BYTES - 3 and body[end] & mask == continuation:
        end -= 1
    return body[:end]
