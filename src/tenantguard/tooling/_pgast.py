"""Walking pglast parse trees: shared by the audit, the probe and the linter."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pglast import ast

__all__ = ["walk"]


def walk(node: Any) -> Iterator[ast.Node]:
    """Every node at or below *node* (a node, or a list/tuple of them), depth first."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, ast.Node):
            yield item
            stack.extend(getattr(item, name) for name in item)
        elif isinstance(item, tuple | list):
            stack.extend(item)
