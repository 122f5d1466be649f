"""Falco's `evt.type` indexing: which event types can a condition match?

Falco files every syscall rule under the event types its condition can match and evaluates it only
for those events; it also warns about rules that match (nearly) every type. The set comes from
libsinsp's `ppm_event_codes()` (filter/ppm_codes.cpp), which this module follows step by step:

- `evt.type = X`, `evt.type == X`, `evt.type in (X, ...)`: the types named (unknown names: none);
  `evt.type != X`: every type but X. Only these four operators count: `evt.type startswith open`,
  `evt.type intersects (...)`, `evt.type pmatch (...)` match every type.
- any other check (`proc.name = cat`, a macro reference left unresolved) matches every type, and
  stays "every type" under negation: negation never affects checks unrelated to evt.type.
- `evt.type exists` matches every type; `not evt.type exists` none.
- `and` intersects, `or` unites. `not` is pushed down to the leaves with De Morgan's laws (so
  `not (evt.type = open and proc.name = cat)` still matches open), and a leaf under an odd number
  of `not`s is inverted against the set of all types.
- `evt.type` compared with a field (`val(...)`, a transformer on the right) or wrapped in a
  transformer on the left of one of the four operators (or of `exists`) is an error.

Libsinsp computes over event codes; a syscall without a dedicated event (e.g. `mlock`) only has the
generic event `syscall`, shared by all of them. We compute over names in two spaces, as Falco does
(it runs the same visitor over syscall codes to name the types it lists):
- `evttypes()`: names, each syscall on its own: what Falco lists for a rule (`falco -L`) and what
  rule-evttypes.tsv records.
- `event_codes()`: Falco's own index, where every generic syscall is the one event `syscall`, so
  `evt.type = mlock and evt.type != munlock` matches nothing. Use it to decide which events a rule
  is evaluated on, and for the performance warning.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache

from analyze import ast
from analyze.errors import Position, RuleResolveError, RuleWarning, SourceRef
from schemas import catalog

# Falco's threshold (rule_loader_compiler.cpp): more than this many event codes, or none, warns.
MAX_EVENT_CODES = 100
TOO_MANY_MESSAGE = (
    "Rule matches too many evt.type values. This has a significant performance penalty."
)
GENERIC_EVENT = "syscall"  # the name of PPME_GENERIC_E/X

_EVTTYPE_OPERATORS = frozenset({"=", "==", "!=", "in"})
_SINGLE_VALUE_TRANSFORMERS = frozenset({"tolower", "toupper", "b64", "basename", "len"})
_RHS_FIELD_ERROR = (
    "right-hand field comparisons on `evt.type` checks are not supported by event code search"
)
_TRANSFORMER_ERROR = "event code search does not support `evt.type` checks with transformers"


@dataclass(frozen=True)
class _Space:
    """A universe of atoms and how `evt.type` values map into it (libsinsp's names_to_codes)."""

    universe: frozenset[str]
    atoms: Callable[[Iterable[str]], frozenset[str]]


def evttypes(tree: ast.Expr, universe: Iterable[str] | None = None) -> frozenset[str]:
    """The event type names the condition can match, each syscall by its own name.

    `universe` defaults to every evt.type value of the catalog; the generic event `syscall`
    itself is never listed (Falco lists the syscalls instead). Raises RuleResolveError where
    libsinsp's event code search throws (see the module docstring).
    """
    if universe is None:
        space = _name_space()
    else:
        names = frozenset(universe)
        space = _Space(names, lambda values: frozenset(values) & names)
    return _visit(tree, False, space) - {GENERIC_EVENT}


def event_codes(tree: ast.Expr) -> frozenset[str]:
    """Falco's index for the rule: dedicated event names, plus `syscall` for the generic event."""
    return _visit(tree, False, _code_space())


def matches_all(types: Iterable[str]) -> bool:
    """True when `types` (from `evttypes`) is every event type: no evt.type restriction at all."""
    return frozenset(types) >= _name_space().universe - {GENERIC_EVENT}


def code_count(types: Iterable[str]) -> int:
    """How many libsinsp event codes the names stand for: one per direction (enter/exit) of a
    dedicated event; all generic syscalls together share the two codes of `syscall`."""
    total, generic = 0, False
    for name in frozenset(types):
        info = catalog.event_type_info(name)
        if info is None:
            continue
        if _is_generic(info) or name == GENERIC_EVENT:
            generic = True
        else:
            total += len(info.directions)
    return total + (2 if generic else 0)


def too_many_evttypes_warning(
    rule_name: str,
    types: Iterable[str],
    *,
    warn_evttypes: bool = True,
    source: SourceRef | None = None,
) -> RuleWarning | None:
    """Falco's LOAD_NO_EVTTYPE warning, when due: the rule matches no event type or more than
    MAX_EVENT_CODES event codes, and `warn_evttypes` is not false.

    `types` is `event_codes(tree)` (exact) or `evttypes(tree)` (the same answer except for
    conditions that tell two generic syscalls apart).
    """
    if not warn_evttypes:
        return None
    count = code_count(types)
    if count and count <= MAX_EVENT_CODES:
        return None
    return RuleWarning(
        "too-many-evttypes",
        TOO_MANY_MESSAGE,
        source,
        extra={"rule": rule_name, "event_codes": str(count)},
    )


def evttype_errors(tree: ast.Expr, text: str) -> list[RuleResolveError]:
    """The checks libsinsp's event code search rejects, with their position in `text`."""
    errors = []
    for node in tree.walk():
        message = _leaf_error(node) if isinstance(node, ast.UnaryCheck | ast.BinaryCheck) else None
        if message is not None:
            at = node.pos if 0 <= node.pos <= len(text) else None
            where = Position.at(text, at) if at is not None else None
            errors.append(RuleResolveError(message, text=text, position=where,
                                           code="evttype-search"))
    return errors


# ---- the visitor -------------------------------------------------------------------------------


def _visit(node: ast.Expr, negated: bool, space: _Space) -> frozenset[str]:
    match node:
        case ast.And(items=items):
            # De Morgan: under negation an `and` unites its (negated) children.
            return _combine(items, negated, space, intersect=not negated)
        case ast.Or(items=items):
            return _combine(items, negated, space, intersect=negated)
        case ast.Not(item=item):
            return _visit(item, not negated, space)
        case ast.BinaryCheck() | ast.UnaryCheck():
            return _leaf(node, negated, space)
        case ast.MacroRef():
            return space.universe  # an unresolved macro is neutral, like any non-evt.type check
    raise TypeError(f"evttypes: unknown node {type(node).__name__}")


def _combine(
    items: tuple[ast.Expr, ...], negated: bool, space: _Space, *, intersect: bool
) -> frozenset[str]:
    result = space.universe if intersect else frozenset()
    for item in items:
        found = _visit(item, negated, space)
        result = result & found if intersect else result | found
    return result


def _leaf(node: ast.BinaryCheck | ast.UnaryCheck, negated: bool, space: _Space) -> frozenset[str]:
    message = _leaf_error(node)
    if message is not None:
        raise RuleResolveError(message, code="evttype-search")
    if not _is_evttype_field(node.left):
        return space.universe
    if isinstance(node, ast.UnaryCheck):
        # `evt.type exists` holds for every event; libsinsp inverts it under negation.
        return frozenset() if negated else space.universe
    if node.op not in _EVTTYPE_OPERATORS:
        return space.universe
    types = space.atoms(_values(node.right))
    if negated:
        types = space.universe - types
    if node.op == "!=":
        # Inverting again is what libsinsp does: `not evt.type != X` is back to X.
        types = space.universe - types
    return types


def _leaf_error(node: ast.BinaryCheck | ast.UnaryCheck) -> str | None:
    """Why libsinsp's event code search throws on this check, or None."""
    if isinstance(node, ast.BinaryCheck) and node.op not in _EVTTYPE_OPERATORS:
        return None  # the left side is not even looked at
    if _wraps_evttype(node.left):
        return _TRANSFORMER_ERROR
    rhs = node.right if isinstance(node, ast.BinaryCheck) else None
    if isinstance(rhs, ast.Val | ast.Transformer) and _is_evttype_field(node.left):
        return _RHS_FIELD_ERROR
    return None


def _is_evttype_field(node: ast.Node) -> bool:
    return isinstance(node, ast.Field) and node.name == "evt.type" and node.arg is None


def _wraps_evttype(node: ast.Node) -> bool:
    """A (possibly nested) single-value transformer applied to `evt.type`."""
    while isinstance(node, ast.Transformer) and node.name in _SINGLE_VALUE_TRANSFORMERS:
        if len(node.args) != 1:
            return False
        node = node.args[0]
        if _is_evttype_field(node):
            return True
    return False


def _values(right: ast.RightValue) -> tuple[str, ...]:
    if isinstance(right, ast.Literal):
        return (right.value,)
    if isinstance(right, ast.ValueList):
        return tuple(v.value for v in right.values)
    raise RuleResolveError(_RHS_FIELD_ERROR, code="evttype-search")  # guarded by _leaf_error


# ---- the two spaces ----------------------------------------------------------------------------


def _is_generic(info: catalog.EventTypeInfo) -> bool:
    """A syscall without a dedicated event: libsinsp sees it as the generic event."""
    return info.kind == "syscall" and info.category == ""


@cache
def _name_space() -> _Space:
    names = frozenset(catalog.event_types())
    return _Space(names, lambda values: frozenset(values) & names)


@cache
def _code_space() -> _Space:
    atoms: dict[str, str] = {}
    for name in catalog.event_types():
        info = catalog.event_type_info(name)
        if info is not None:
            atoms[name] = GENERIC_EVENT if _is_generic(info) else name
    universe = frozenset(atoms.values())
    return _Space(universe, lambda values: frozenset(atoms[v] for v in values if v in atoms))
