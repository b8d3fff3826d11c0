"""The README's commands run as written after ``./dev demo`` (issue 13, item 11): ``chatroute``
is installed in ``.venv``, so a block that calls it by its bare name first puts ``.venv/bin``
on the PATH."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
ACTIVATES = re.compile(r"^(\.|source) \.venv/bin/activate\b")
BARE = re.compile(r"(?<![\w/.-])chatroute(?= )")  # the command, not .venv/bin/chatroute


def shell_blocks(text: str) -> list[list[str]]:
    blocks = re.findall(r"```(?:sh|bash|shell)\n(.*?)```", text, flags=re.S)
    return [[line.split("#")[0].strip() for line in block.splitlines()] for block in blocks]


def test_every_shell_block_finds_chatroute_where_dev_demo_put_it() -> None:
    blocks = shell_blocks(README.read_text())
    assert blocks, "the README has shell blocks"
    for lines in blocks:
        activated = False
        for line in lines:
            activated = activated or bool(ACTIVATES.match(line))
            assert activated or not BARE.search(line), f"bare chatroute before activation: {line}"
