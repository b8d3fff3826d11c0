"""A RabbitMQ URL may name a cluster's nodes, separated by ``;``: each connection tries them in
a random order (so a deployment's connections spread over the nodes) until one answers."""

from __future__ import annotations

import pytest

from chatroute.amqp import node_urls
from chatroute.errors import SettingsError

NODES = [f"amqp://chatroute:secret@mq-{n}:5672/chatroute" for n in (1, 2, 3)]


def test_one_url_is_one_node() -> None:
    assert node_urls(NODES[0]) == [NODES[0]]


def test_several_are_each_tried_in_an_order_that_varies() -> None:
    orders = {tuple(node_urls(" ; ".join(NODES) + ";")) for _ in range(200)}
    assert all(sorted(order) == sorted(NODES) for order in orders)
    assert {order[0] for order in orders} == set(NODES)


def test_none_is_an_error() -> None:
    with pytest.raises(SettingsError, match="no RabbitMQ URL"):
        node_urls(" ; ")
