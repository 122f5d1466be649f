"""Field and type checks of a resolved condition: what libsinsp's filter compiler rejects.

Falco compiles every rule condition (macros inlined, lists substituted) into a libsinsp filter and
refuses the rule when that fails. This module finds the same problems on our AST:
- unknown fields ("filter_check called with nonexistent field proc.nme", as Falco words it; we add
  the closest known name) and bad field arguments (`proc.aname[x]`, `evt.arg` with none);
- operators the field type does not admit and literals that do not convert to it (the rules are
  the catalog's, mirroring libsinsp's flt_is_comparable and string_to_rawval);
- transformers: the field types each accepts and yields (sinsp_filter_transformer_*.cpp), fields
  that take none (EPF_NO_TRANSFORMER), and the argument shapes of join/concat/getopt;
- right-hand fields (`val(f)`, a transformer on the right): sinsp_filter_check::add_filter_value's
  rules, ending with "both sides must have the same type and list-ness";
- set modifiers (anyof/allof/oneof, our extension) only on multi-valued fields;
- the `evt.type` checks libsinsp's event code search throws on (analyze.evttypes).

Errors come in tree order (Falco stops at the first; we collect all, deduplicated). A node's `pos`
is trusted only where the text at that offset really spells the node: nodes inlined from a macro
carry offsets into the macro's own text, and get no position rather than a wrong one.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, replace

from analyze import ast
from analyze.errors import Position, RuleResolveError, RuleWarning, SourceRef
from analyze.evttypes import evttype_errors
from schemas import catalog
from schemas.catalog import FieldInfo

# Error codes Falco's skip-if-unknown-filter forgives (rule_loader_compiler.cpp,
# err_is_unknown_type_or_field: "nonexistent field", "unknown event type").
UNKNOWN_FIELD = "unknown-field"
UNKNOWN_EVTTYPE = "unknown-evttype"
SKIPPABLE_CODES = frozenset({UNKNOWN_FIELD, UNKNOWN_EVTTYPE})

# Ancestor fields without an index compare against every ancestor (libsinsp's custom compare):
# the multi-valued fields that are not EPF_IS_LIST lists.
ANCESTOR_FIELDS = frozenset(
    {"proc.aname", "proc.aexe", "proc.aexepath", "proc.acmdline", "proc.apid", "proc.aenv"}
)

_STRINGS = frozenset({"PT_CHARBUF", "PT_FSPATH", "PT_FSRELPATH"})
# Input types each single-value transformer accepts; len yields PT_UINT64, the others keep the type.
_TRANSFORMER_INPUTS = {
    "tolower": _STRINGS,
    "toupper": _STRINGS,
    "basename": _STRINGS,
    "b64": frozenset({"PT_CHARBUF", "PT_BYTEBUF"}),
    "len": _STRINGS | {"PT_BYTEBUF"},
}
_NET_TYPES = frozenset({"PT_IPNET", "PT_IPV4NET", "PT_IPV6NET"})


class UnknownFieldError(RuleResolveError):
    """A field no catalog has; `falco_message` is Falco's exact wording, without our hint."""

    def __init__(
        self,
        field: str,
        suggestion: str | None,
        *,
        text: str | None = None,
        position: Position | None = None,
        source: SourceRef | None = None,
    ) -> None:
        self.field = field
        self.suggestion = suggestion
        self.falco_message = f"filter_check called with nonexistent field {field}"
        hint = f" (did you mean '{suggestion}'?)" if suggestion else ""
        super().__init__(self.falco_message + hint, source=source, text=text, position=position,
                         code=UNKNOWN_FIELD)


def check_condition(tree: ast.Expr, text: str) -> list[RuleResolveError]:
    """Every problem libsinsp's filter compiler (then its event code search) finds, in tree order.

    `text` is the condition the tree was parsed from (after list substitution): positions point
    into it.
    """
    checker = _Checker(text)
    for node in tree.walk():
        if isinstance(node, ast.UnaryCheck | ast.BinaryCheck):
            checker.check(node)
    errors = checker.errors
    if not errors:
        # libsinsp searches event codes only once the filter compiled.
        errors = evttype_errors(tree, text)
    return errors


def first_error(tree: ast.Expr, text: str) -> RuleResolveError | None:
    """The error Falco reports (it stops at the first), or None."""
    errors = check_condition(tree, text)
    return errors[0] if errors else None


def fields_needing_unavailable_data(tree: ast.Expr) -> list[FieldInfo]:
    """Known fields the tree reads that a syscall trace cannot supply (k8s.*, DNS names, ...)."""
    found: dict[str, FieldInfo] = {}
    for node in ast.fields_of(tree):
        info = catalog.lookup(node.name, node.arg)
        if info is not None and not info.available:
            found.setdefault(info.name, info)
    return list(found.values())


def is_multi_valued(info: FieldInfo, arg: str | None) -> bool:
    """Whether the field yields several values per event: a list, or all ancestors."""
    return info.is_list or (info.name in ANCESTOR_FIELDS and arg is None)


# ---- skip-if-unknown-filter --------------------------------------------------------------------


@dataclass(frozen=True)
class RuleCheck:
    """The verdict on one rule's condition: report `errors`, or skip it with `warning`."""

    errors: tuple[RuleResolveError, ...]
    warning: RuleWarning | None  # Falco's LOAD_UNKNOWN_FILTER when the rule is skipped

    @property
    def skipped(self) -> bool:
        return self.warning is not None


def apply_skip_if_unknown(
    errors: Sequence[RuleResolveError],
    skip_if_unknown_filter: bool,
    source: SourceRef | None = None,
) -> RuleCheck:
    """Falco's `skip-if-unknown-filter: true`: when the error Falco would stop at is an unknown
    field or event type, the rule is dropped with a warning instead of failing the load."""
    if skip_if_unknown_filter and errors and errors[0].code in SKIPPABLE_CODES:
        first = errors[0]
        message = first.falco_message if isinstance(first, UnknownFieldError) else first.message
        return RuleCheck((), RuleWarning("unknown-filter", message, source))
    return RuleCheck(tuple(errors), None)


def check_rule_condition(
    tree: ast.Expr, text: str, *, skip_if_unknown_filter: bool, source: SourceRef | None = None
) -> RuleCheck:
    """`check_condition` followed by `apply_skip_if_unknown`: what the loader needs per rule."""
    return apply_skip_if_unknown(check_condition(tree, text), skip_if_unknown_filter, source)


# ---- the checker -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Operand:
    """An operand's type after its transformers; `info.name` is the field libsinsp names."""

    info: FieldInfo
    arg: str | None = None  # the field's own argument (decides multi-valuedness)
    transformed: bool = False


_RAW_STRING = FieldInfo(
    name="<literal>", type="PT_CHARBUF", arg="none", is_list=False, available=True,
    unavailable_reason="", description="a literal string (libsinsp's rawstring check)",
    flags=frozenset(), deprecated=False,
)  # fmt: skip


class _Checker:
    def __init__(self, text: str) -> None:
        self.text = text
        self.errors: list[RuleResolveError] = []
        self._seen: set[tuple[str, int]] = set()

    # -- reporting --

    def error(self, message: str, node: ast.Node, code: str) -> None:
        self.add(RuleResolveError(message, text=self.text, position=self.position(node),
                                  code=code))

    def add(self, err: RuleResolveError) -> None:
        key = (err.message, err.position.offset if err.position else -1)
        if key not in self._seen:
            self._seen.add(key)
            self.errors.append(err)

    def position(self, node: ast.Node) -> Position | None:
        """Where the node stands in the text, if its offset really points at it."""
        if not 0 <= node.pos < len(self.text):
            return None
        if isinstance(node, ast.Literal) and node.quoted:
            ok = self.text[node.pos] in "\"'"
        else:
            ok = self.text.startswith(_spelling(node), node.pos)
        return Position.at(self.text, node.pos) if ok else None

    # -- checks --

    def check(self, node: ast.UnaryCheck | ast.BinaryCheck) -> None:
        left = self.operand(node.left)
        right = None
        if isinstance(node, ast.BinaryCheck) and isinstance(node.right, ast.Val | ast.Transformer):
            right = self.operand(node.right.field if isinstance(node.right, ast.Val)
                                 else node.right)
        if left is None:
            return
        elem = self.modifier(node, left)
        if elem is None:
            return
        problem = catalog.check_operator(elem, node.op)
        if problem is not None:
            self.error(problem, node, "operator")
        elif isinstance(node, ast.BinaryCheck):
            self.right_side(node, elem, left.transformed, right)

    def modifier(self, node: ast.UnaryCheck | ast.BinaryCheck, left: _Operand) -> FieldInfo | None:
        """The type the operator applies to: one element when a set modifier reduces a list."""
        if node.modifier is None:
            return left.info
        if not is_multi_valued(left.info, left.arg):
            self.error(f"modifier '{node.modifier}' needs a multi-valued field (a list, or an "
                       f"ancestor field without index); '{ast.to_text(node.left)}' has one value",
                       node, "modifier")
            return None
        return replace(left.info, is_list=False)

    def right_side(self, node: ast.BinaryCheck, elem: FieldInfo, transformed: bool,
                   right: _Operand | None) -> None:
        if isinstance(node.right, ast.Literal):
            self.literal(elem, node.op, node.right, transformed)
        elif isinstance(node.right, ast.ValueList):
            for value in node.right.values:
                self.literal(elem, node.op, value, transformed)
        elif right is not None:
            problem = _rhs_problem(node.op, elem, right.info)
            if problem is not None:
                self.error(problem, node.right, "rhs-field")

    def literal(self, info: FieldInfo, op: str, value: ast.Literal, transformed: bool) -> None:
        # A list field's values are single elements of its type.
        element = replace(info, is_list=False)
        if transformed and element.name == "evt.type":
            element = replace(element, name="<transformed evt.type>")  # no longer event names
        problem = catalog.check_value(element, value.value, op)
        if problem is not None:
            code = UNKNOWN_EVTTYPE if problem.startswith("unknown event type") else "value"
            self.error(problem, value, code)

    # -- operands --

    def operand(self, node: ast.Node) -> _Operand | None:
        if isinstance(node, ast.Field):
            info = self.field(node)
            return None if info is None else _Operand(info, node.arg)
        if isinstance(node, ast.Transformer):
            return self.transformer(node)
        if isinstance(node, ast.Literal):
            return _Operand(_RAW_STRING)
        if isinstance(node, ast.TransformerList):
            return self.transformer_list(node)
        raise TypeError(f"typecheck: unexpected operand {type(node).__name__}")

    def field(self, node: ast.Field) -> FieldInfo | None:
        try:
            return catalog.resolve(node.name, node.arg)
        except catalog.FieldError as err:
            if str(err).startswith("unknown field"):
                self.add(UnknownFieldError(node.text, _closest(node.name), text=self.text,
                                           position=self.position(node)))
            else:
                self.error(str(err), node, "field-argument")
            return None

    def transformer(self, node: ast.Transformer) -> _Operand | None:
        if node.name in _TRANSFORMER_INPUTS:
            return self.single_value_transformer(node)
        args = [self.operand(a) for a in node.args]
        if any(a is None for a in args):
            return None
        problem = _multi_value_problem(node.name, [a.info for a in args if a is not None])
        if problem is not None:
            self.error(problem, node, "transformer")
            return None
        result = replace(_RAW_STRING, name=ast.to_text(node), is_list=node.name == "getopt")
        return _Operand(result, transformed=True)

    def single_value_transformer(self, node: ast.Transformer) -> _Operand | None:
        if len(node.args) != 1 or isinstance(node.args[0], ast.TransformerList):
            self.error(f"transformer '{node.name}' takes exactly one field or transformer",
                       node, "transformer")
            return None
        inner = self.operand(node.args[0])
        if inner is None:
            return None
        info = inner.info
        if "EPF_NO_TRANSFORMER" in info.flags:
            self.error(f"field '{info.name}' does not support transformers", node, "transformer")
            return None
        if info.type not in _TRANSFORMER_INPUTS[node.name] and not (
            node.name == "len" and info.is_list
        ):
            on = "list field" if info.is_list else "field"
            self.error(f"can't add field transformer: type '{info.type}' is not supported by "
                       f"'{node.name}' transformer applied on {on} '{info.name}'",
                       node, "transformer")
            return None
        if node.name == "len":
            # len counts a list's items or a string's characters: one number either way.
            info = replace(info, type="PT_UINT64", is_list=False)
        return _Operand(info, inner.arg, transformed=True)

    def transformer_list(self, node: ast.TransformerList) -> _Operand | None:
        items = [self.operand(i) for i in node.items]
        if any(i is None for i in items):
            return None
        for item, typed in zip(node.items, items, strict=True):
            if typed is not None and typed.info.is_list:
                self.error("a transformer argument list holds single values, not lists",
                           item, "transformer")
                return None
        return _Operand(replace(_RAW_STRING, name=ast.to_text(node), is_list=True))


# ---- rules without state -----------------------------------------------------------------------


def _multi_value_problem(name: str, args: list[FieldInfo]) -> str | None:
    """join/concat/getopt argument shapes (sinsp_filtercheck_multivalue_transformer.cpp)."""
    if name == "join":
        if len(args) != 2:
            return "join() requires exactly 2 arguments: separator and list"
        if args[0].is_list:
            return "join() first argument (separator) must be a single value, not a list"
        if not args[1].is_list:
            return "join() second argument must be a list"
    elif name == "concat":
        if len(args) < 2:
            return "concat() requires at least 2 arguments"
        if any(a.type != "PT_CHARBUF" or a.is_list for a in args):
            return "concat() arguments must be strings"
    elif name == "getopt":
        if len(args) != 2:
            return "getopt() requires exactly 2 arguments: args list and optstring"
        if not args[0].is_list:
            return "getopt() first argument must be a list"
        if args[1].is_list:
            return "getopt() second argument (optstring) must be a single value"
        if args[0].type != "PT_CHARBUF" or args[1].type != "PT_CHARBUF":
            return "getopt() arguments must be strings"
    else:
        return f"unknown transformer '{name}'"
    return None


def _rhs_problem(op: str, left: FieldInfo, right: FieldInfo) -> str | None:
    """sinsp_filter_check::add_filter_value(rhs_chk) and check_rhs_field_type_consistency."""
    if op in ("pmatch", "regex"):
        return f"operator '{op}' doesn't support right-hand side fields"
    if left.type in _NET_TYPES:
        return "field type 'IPNET' doesn't support right-hand side fields"
    if "EPF_NO_RHS" in left.flags:
        return f"field '{left.name}' doesn't support right-hand side fields"
    if "EPF_NO_RHS" in right.flags:
        return f"field '{right.name}' can't be used as a right-hand side field"
    if left.type != right.type or left.is_list != right.is_list:
        return (f"field '{left.name}' has type '{_type_name(left)}' while the right-hand side "
                f"field '{right.name}' has incompatible type '{_type_name(right)}'")
    return None


def _type_name(info: FieldInfo) -> str:
    name = info.type.removeprefix("PT_")
    return f"{name} (list)" if info.is_list else name


def _closest(name: str) -> str | None:
    names = [f.name for f in catalog.all_fields()]
    found = difflib.get_close_matches(name, names, n=1, cutoff=0.75)
    return found[0] if found else None


def _spelling(node: ast.Node) -> str:
    """What the text holds at the node's offset: the start of its written form."""
    match node:
        case ast.Field(name=name) | ast.Transformer(name=name):
            return name
        case ast.Val():
            return "val("
        case ast.ValueList() | ast.TransformerList():
            return "("
        case ast.Literal(value=value):
            return value
        case ast.UnaryCheck(left=left) | ast.BinaryCheck(left=left):
            return _spelling(left)
    return ""
