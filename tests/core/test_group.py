"""Member names of the dvsd group."""

from __future__ import annotations

import pytest

from dvsd.transport.group import node_of


@pytest.mark.parametrize(
    ("name", "node"),
    [
        ("#node.0#localhost", 0),
        ("#node.17#dmnone", 17),
        ("#node.65534#h", 65534),
        ("#node.65535#h", None),  # the wire's "all nodes"
        ("#node.007#h", None),  # not how dvsd names itself
        ("#node.#h", None),
        ("#nodes.1#h", None),
        ("#probeA#localhost", None),
        ("node.1", None),
    ],
)
def test_node_of(name, node):
    assert node_of(name) == node
