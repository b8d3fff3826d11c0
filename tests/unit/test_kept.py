"""What the store keeps of a rejected body: at most 64 KiB, cut before a character."""

from __future__ import annotations

import hashlib

import pytest

from chatroute.store.kept import KEPT_BYTES, keep


def test_a_body_of_at_most_64_kib_is_kept_whole() -> None:
    body = b"x" * KEPT_BYTES
    kept = keep(body)
    assert (kept.head, kept.size, kept.truncated) == (body, KEPT_BYTES, False)
    assert kept.sha256 == hashlib.sha256(body).hexdigest()


@pytest.mark.parametrize("character", ["é", "€", "😀"])
@pytest.mark.parametrize("offset", [0, 1, 2, 3])
def test_a_bigger_body_keeps_its_first_64_kib_without_cutting_a_character(
    character: str, offset: int
) -> None:
    # Given a UTF-8 body whose character at the 64 KiB mark may be cut in two
    body = b"x" * (KEPT_BYTES - offset) + character.encode() * 10
    # When it is kept
    kept = keep(body)
    # Then the head is whole characters only, as much as fits in 64 KiB
    assert kept.truncated and kept.size == len(body)
    assert kept.head.decode("utf-8").startswith("x" * (KEPT_BYTES - offset))
    assert KEPT_BYTES - len(character.encode()) < len(kept.head) <= KEPT_BYTES
    assert kept.sha256 == hashlib.sha256(body).hexdigest()
