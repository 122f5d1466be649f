"""The boolean structure of a compiled condition: nodes, and/or/not with Falco's short-circuit.

A `Node` is a compiled boolean expression: a function from a `View` (some rows of a batch) to a
mask, keyed by its canonical text so that `View.run` evaluates identical subtrees (macros inlined
into many rules) once per view. `and`/`or` stop like Falco's evaluation does: once few rows are
left undecided, the next item runs on those rows only (`View.narrow`), and the narrowed view is
shared by every rule whose `and`/`or` starts with the same items.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from analyze.replay_arrays import FALSE_SCALAR, TRUE_SCALAR, Mask

if TYPE_CHECKING:
    from analyze.replay import View

# Narrow to the undecided rows when at most this share of the view is left.
NARROW_SHARE = 0.25


@dataclass(frozen=True, eq=False)
class Node:
    """A compiled boolean expression; `key` is its canonical text (the memo key)."""

    key: str
    fn: Callable[[View], Mask]


def _false(view: View) -> Mask:
    return pa.repeat(FALSE_SCALAR, view.length)


def _true(view: View) -> Mask:
    return pa.repeat(TRUE_SCALAR, view.length)


FALSE = Node("\0false", _false)
TRUE = Node("\0true", _true)


def and_node(items: list[Node]) -> Node:
    """All items hold; a constant item folds away."""
    if any(i is FALSE for i in items):
        return FALSE
    items = [i for i in items if i is not TRUE]
    if not items:
        return TRUE
    if len(items) == 1:
        return items[0]
    # Rows left after the first k items: shared by every rule whose `and` starts the same way.
    prefixes = [("and", *(i.key for i in items[:k + 1])) for k in range(len(items))]

    def fn(view: View) -> Mask:
        mask = view.run(items[0])
        for k in range(1, len(items)):
            hits = mask.true_count
            if hits == 0:
                break
            if hits == view.length:
                mask = view.run(items[k])
            elif hits <= view.length * NARROW_SHARE:
                sub = view.narrow(prefixes[k - 1], mask).run(items[k])
                mask = pc.replace_with_mask(mask, mask, sub)
            else:
                mask = pc.and_(mask, view.run(items[k]))
        return mask

    return Node("(" + " and ".join(i.key for i in items) + ")", fn)


def or_node(items: list[Node]) -> Node:
    """Some item holds; a constant item folds away."""
    if any(i is TRUE for i in items):
        return TRUE
    items = [i for i in items if i is not FALSE]
    if not items:
        return FALSE
    if len(items) == 1:
        return items[0]
    prefixes = [("or", *(i.key for i in items[:k + 1])) for k in range(len(items))]

    def fn(view: View) -> Mask:
        mask = view.run(items[0])
        for k in range(1, len(items)):
            open_rows = view.length - mask.true_count
            if open_rows == 0:
                break
            if open_rows == view.length:
                mask = view.run(items[k])
            elif open_rows <= view.length * NARROW_SHARE:
                undecided = pc.invert(mask)
                sub = view.narrow(prefixes[k - 1], undecided).run(items[k])
                mask = pc.replace_with_mask(mask, undecided, sub)
            else:
                mask = pc.or_(mask, view.run(items[k]))
        return mask

    return Node("(" + " or ".join(i.key for i in items) + ")", fn)


def not_node(item: Node) -> Node:
    if item is TRUE or item is FALSE:
        return FALSE if item is TRUE else TRUE
    return Node("not " + item.key, lambda view: pc.invert(view.run(item)))
