"""Fixtures of the end-to-end tests: a RabbitMQ vhost of their own for each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import require_service
from tests.e2e.harness import Vhost


@pytest.fixture
def vhost() -> Iterator[Vhost]:
    require_service("RabbitMQ")
    v = Vhost()
    yield v
    v.delete()
