"""The AST of Falco conditions: frozen dataclasses shared by every consumer.

One parser produces these nodes; the resolver (macros, fields, types), the event-type indexer, the
replay evaluator and the SQL translator all walk the same tree. Source offsets are kept on nodes
but left out of equality (`compare=False`), so trees compare by meaning while errors can still
point at the text.

Node kinds (the complete set, `NODE_TYPES` below; a test makes every back end handle each one):
- boolean: And, Or, Not, MacroRef (an identifier, i.e. a macro use, before resolution)
- checks:  UnaryCheck (`exists`), BinaryCheck (every binary operator)
- operands: Field (`proc.aname[2]`), Transformer (`tolower(...)`, nested), Val (`val(field)`)
- values:  Literal (a string or number as written), ValueList (`(a, b)`), TransformerList
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from typing import Any

# Operators, grouped as libsinsp groups them; `OPERATORS` is the complete set.
UNARY_OPERATORS = ("exists",)
NUMERIC_OPERATORS = ("<=", "<", ">=", ">")
STRING_OPERATORS = (
    "==", "=", "!=", "glob", "iglob", "contains", "icontains", "bcontains",
    "startswith", "bstartswith", "endswith", "regex",
)
LIST_OPERATORS = ("intersects", "in", "pmatch")
OPERATORS = UNARY_OPERATORS + NUMERIC_OPERATORS + STRING_OPERATORS + LIST_OPERATORS

# Set modifiers (our extension, written before the operator: `proc.aname anyof startswith sh`):
# how a multi-valued left side is reduced. Without one, a multi-valued field matches when any of
# its values does, as libsinsp does.
MODIFIERS = ("anyof", "allof", "oneof")

TRANSFORMERS = ("tolower", "toupper", "b64", "basename", "len", "join", "concat", "getopt")


@dataclass(frozen=True)
class Node:
    """Base of every node; `pos` is the 0-based offset in the parsed text (not compared)."""

    pos: int = field(default=-1, compare=False, repr=False, kw_only=True)

    def children(self) -> Iterator[Node]:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Node):
                yield value
            elif isinstance(value, tuple):
                yield from (v for v in value if isinstance(v, Node))

    def walk(self) -> Iterator[Node]:
        """Every node of the tree, depth first, this one included (iterative: trees can be deep)."""
        stack: list[Node] = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(list(node.children())))


# ---- boolean structure -------------------------------------------------------------------------


@dataclass(frozen=True)
class And(Node):
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class Or(Node):
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class Not(Node):
    item: Expr


@dataclass(frozen=True)
class MacroRef(Node):
    """A bare identifier in boolean position: a macro use (or an error, if none is defined)."""

    name: str


# ---- operands and values -----------------------------------------------------------------------


@dataclass(frozen=True)
class Field(Node):
    """A field, with its optional argument as written inside `[...]` (already unescaped)."""

    name: str
    arg: str | None = None

    @property
    def text(self) -> str:
        return self.name if self.arg is None else f"{self.name}[{self.arg}]"


@dataclass(frozen=True)
class Literal(Node):
    """A value as written: libsinsp keeps values as text and converts them per field type."""

    value: str
    quoted: bool = field(default=False, compare=False)


@dataclass(frozen=True)
class ValueList(Node):
    """The right side of a list operator: `(a, "b c", 3)`."""

    values: tuple[Literal, ...]


@dataclass(frozen=True)
class TransformerList(Node):
    """A parenthesised list of arguments inside a transformer, e.g. `join(",", (a.b, c.d))`."""

    items: tuple[TransformerArg, ...]


@dataclass(frozen=True)
class Transformer(Node):
    """`name(arg, ...)`: tolower/toupper/b64/basename/len take one field or transformer."""

    name: str
    args: tuple[TransformerArg, ...]


@dataclass(frozen=True)
class Val(Node):
    """`val(field)` on the right side: compare against another field of the same event."""

    field: Field


# ---- checks ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UnaryCheck(Node):
    left: Operand
    op: str  # "exists"
    modifier: str | None = None


@dataclass(frozen=True)
class BinaryCheck(Node):
    left: Operand
    op: str
    right: RightValue
    modifier: str | None = None


Operand = Field | Transformer
TransformerArg = Field | Transformer | Literal | TransformerList
RightValue = Literal | ValueList | Transformer | Val
Expr = And | Or | Not | MacroRef | UnaryCheck | BinaryCheck

NODE_TYPES: tuple[type[Node], ...] = (
    And, Or, Not, MacroRef, UnaryCheck, BinaryCheck,
    Field, Transformer, Val, Literal, ValueList, TransformerList,
)


# ---- rendering ---------------------------------------------------------------------------------

_NEEDS_QUOTES = set(" \t\n\r\b\f\"'(),=[]\\")


def quote(value: str) -> str:
    """Render a value so the parser reads it back unchanged (libsinsp's escape_str rules)."""
    if value and not any(c in _NEEDS_QUOTES or c.isspace() for c in value):
        return value
    escaped = (
        value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        .replace("\r", "\\r").replace("\t", "\\t").replace("\b", "\\b").replace("\f", "\\f")
    )
    if escaped.endswith("\\"):
        # libsinsp never closes a quote that follows a backslash; "\ " also decodes to "\".
        escaped = escaped[:-2] + "\\ "
    return f'"{escaped}"'


def to_text(node: Node) -> str:
    """Canonical condition text: fully parenthesised and/or, so structure is explicit.

    Used for `analyze parse`, for golden tests of the compiled condition after
    append/override/exceptions, and in messages.
    """
    match node:
        case And(items=items):
            return "(" + " and ".join(to_text(i) for i in items) + ")"
        case Or(items=items):
            return "(" + " or ".join(to_text(i) for i in items) + ")"
        case Not(item=item):
            # `not not x` would read back as x (the parser folds repeated nots): keep the nesting.
            inner = to_text(item)
            return f"not ({inner})" if isinstance(item, Not) else f"not {inner}"
        case MacroRef(name=name):
            return f"({name})" if name in ("not", "and", "or") else name
        case Field():
            return node.name if node.arg is None else f"{node.name}[{quote(node.arg)}]"
        case Literal(value=value):
            return quote(value)
        case ValueList(values=values):
            return "(" + ", ".join(quote(v.value) for v in values) + ")"
        case TransformerList(items=items):
            return "(" + ", ".join(_arg_text(i) for i in items) + ")"
        case Transformer(name=name, args=args):
            return f"{name}(" + ", ".join(_arg_text(a) for a in args) + ")"
        case Val(field=f):
            return f"val({to_text(f)})"
        case UnaryCheck(left=left, op=op, modifier=mod):
            return " ".join(x for x in (to_text(left), mod, op) if x)
        case BinaryCheck(left=left, op=op, right=right, modifier=mod):
            return " ".join(x for x in (to_text(left), mod, op, to_text(right)) if x)
    raise TypeError(f"to_text: unknown node {type(node).__name__}")


_NUMBER = re.compile(r"0[xX][0-9a-fA-F]+|[+\-]?[0-9]+\.?[0-9]*(?:[eE][+\-][0-9]+)?")


def _arg_text(node: Node) -> str:
    """Transformer arguments take numbers bare but strings only quoted (a bare word is a field)."""
    if isinstance(node, Literal):
        if not node.quoted and _NUMBER.fullmatch(node.value):
            return node.value
        return _force_quote(node.value)
    return to_text(node)


def _force_quote(value: str) -> str:
    text = quote(value)
    return text if text.startswith('"') else f'"{text}"'


def to_dict(node: Node) -> dict[str, Any]:
    """A JSON-ready form of the tree for `analyze parse --format json`."""
    out: dict[str, Any] = {"type": type(node).__name__}
    for f in fields(node):
        if f.name == "pos":
            continue
        value = getattr(node, f.name)
        if isinstance(value, Node):
            out[f.name] = to_dict(value)
        elif isinstance(value, tuple):
            out[f.name] = [to_dict(v) if isinstance(v, Node) else v for v in value]
        else:
            out[f.name] = value
    return out


def fields_of(node: Node) -> list[Field]:
    """Every field the tree reads (left sides, transformer arguments, `val()`)."""
    return [n for n in node.walk() if isinstance(n, Field)]
