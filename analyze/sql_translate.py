"""Falco conditions to DuckDB SQL: one boolean expression per rule over the `events` view.

The generator follows sqlglot: `SqlGenerator.sql(node)` finds the method `<node_type>_sql` by name
(`BinaryCheck` -> `binary_check_sql`), so each AST node type has one short handler and a node type
without one fails loudly (`UnsupportedNodeError`, naming the node).

Three rules keep the SQL honest:
- Two-valued logic. libsinsp makes a check on a field it cannot extract false, whatever the
  operator, and `not` then makes it true; SQL's NULL would make both unknown. A check yields NULL
  exactly where libsinsp's is false, and AND/OR are monotone: an AND/OR of checks is true in
  SQL's three-valued logic exactly when it is true with every NULL read as false. So NULL may
  flow through AND/OR, and only where that stops holding is it made false: `not` negates
  `coalesce(<operand>, false)`, and `translate` coalesces the whole condition. (The engine, which
  keeps only true results, skips that last one.) One coalesce per `not` instead of one per check
  keeps the expressions DuckDB plans and evaluates for every event small.
- No rule text in the SQL. Rule files are untrusted: every value a rule writes becomes a numbered
  parameter (`$3::VARCHAR`, collected by `Params`), column names come only from the trace schema
  (`schemas.trace.COLUMN_BY_NAME`) through `quote_ident`, and function names, operators and the
  `MACROS` are fixed text. `sql_literal` is the one escaping function, used only to show the SQL
  to people (`inline_params`); what runs is always parameterised.
- One meaning with the replay engine: `analyze.semantics` converts literals and builds the glob,
  pmatch and regex patterns; the macros (`analyze.sql_macros`) mirror its b64, getopt and mount
  functions, and a field without a column is missing (every check on it is false).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum

from analyze import ast, semantics
from analyze.sql_macros import MACROS, re2_literal
from analyze.typecheck import ANCESTOR_FIELDS
from schemas import catalog
from schemas.catalog import FieldInfo
from schemas.trace import ANCESTOR_DEPTH, COLUMN_BY_NAME

__all__ = [
    "MACROS",
    "Params",
    "SqlGenerator",
    "SqlTranslateError",
    "Translation",
    "UnsupportedNodeError",
    "compact",
    "inline_params",
    "quote_ident",
    "sql_literal",
    "translate",
]


class SqlTranslateError(ValueError):
    """A condition the SQL translator cannot express; the message names the node or value."""


class UnsupportedNodeError(SqlTranslateError):
    """An AST node type without a `<node_type>_sql` handler."""


# ---- quoting and parameters --------------------------------------------------------------------


def quote_ident(column: str) -> str:
    """A trace column as a DuckDB identifier; only schema columns are accepted, never rule text."""
    if column not in COLUMN_BY_NAME:
        raise SqlTranslateError(f"'{column}' is not a trace column")
    return '"' + column.replace('"', '""') + '"'


# Runs of characters shown as themselves inside a displayed string literal; any other character
# (controls, NUL, DEL, C1 controls, line separators) is spelled chr(N).
_PLAIN = re.compile(r"[^\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def sql_literal(value: object) -> str:
    """`value` as a DuckDB literal that evaluates back to exactly `value` (for display only).

    Strings: single quotes doubled (DuckDB's '...' has no backslash escapes) and control
    characters as `chr(N)` pieces joined with `||`; bytes as `unhex('..')`; numbers, bools and
    None as SQL. Text that is not valid Unicode (lone surrogates) is refused.
    """
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if value == value and abs(value) != float("inf") else f"'{value}'"
    if isinstance(value, bytes):
        return f"unhex('{value.hex()}')"
    if isinstance(value, str):
        return _string_literal(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(sql_literal(v) for v in value) + "]"
    raise SqlTranslateError(f"no SQL literal for a {type(value).__name__} value")


def _string_literal(value: str) -> str:
    _check_text(value)
    pieces: list[str] = []
    pos = 0
    for m in _PLAIN.finditer(value):
        pieces.extend(f"chr({ord(c)})" for c in value[pos:m.start()])
        pieces.append("'" + m.group().replace("'", "''") + "'")
        pos = m.end()
    pieces.extend(f"chr({ord(c)})" for c in value[pos:])
    if not pieces:
        return "''"
    return pieces[0] if len(pieces) == 1 else "(" + " || ".join(pieces) + ")"


def _check_text(value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise SqlTranslateError(f"the value {value!r} is not valid Unicode text") from None


_INT64 = range(-(2**63), 2**63)


class Params:
    """The values of one statement, numbered `$1`, `$2`, ... in order of first use.

    Each placeholder carries an explicit cast, so DuckDB never infers a type from context and a
    value used in several places keeps one type. Equal values share one number.
    """

    def __init__(self) -> None:
        self.values: list[object] = []
        self._index: dict[tuple[type, object], int] = {}

    def add(self, value: object) -> str:
        key = (type(value), value)
        number = self._index.get(key)
        if number is None:
            sql_type = _sql_type(value)  # refuses what DuckDB could not take
            self.values.append(value)
            number = self._index[key] = len(self.values)
        else:
            sql_type = _sql_type(value)
        return f"${number}::{sql_type}"


def _sql_type(value: object) -> str:
    if isinstance(value, tuple):
        types = {_sql_type(v) for v in value}
        if len(types) > 1 or types - {"VARCHAR", "BIGINT"}:
            raise SqlTranslateError("only lists of strings or of integers can be bound")
        return f"{types.pop() if types else 'VARCHAR'}[]"
    if isinstance(value, bool):
        return "BOOLEAN"
    if isinstance(value, int):
        return "BIGINT" if value in _INT64 else "HUGEINT"
    if isinstance(value, float):
        return "DOUBLE"
    if isinstance(value, bytes):
        return "BLOB"
    if isinstance(value, str):
        _check_text(value)
        return "VARCHAR"
    raise SqlTranslateError(f"cannot bind a {type(value).__name__} value")


_PLACEHOLDER = re.compile(r"\$(\d+)(?=::)")


def inline_params(sql: str, params: Sequence[object]) -> str:
    """The SQL with each `$n` replaced by its value as an escaped literal: for reading only."""
    return _PLACEHOLDER.sub(lambda m: sql_literal(params[int(m.group(1)) - 1]), sql)


def compact(sql: str, params: Sequence[object]) -> Translation:
    """Renumber the placeholders `sql` uses, in order of appearance, and drop unused values
    (DuckDB refuses a statement given parameters it does not use; a check that turns out false,
    e.g. on a missing field, may have bound a value already)."""
    numbers: dict[int, int] = {}

    def renumber(m: re.Match[str]) -> str:
        old = int(m.group(1))
        new = numbers.setdefault(old, len(numbers) + 1)
        return f"${new}"

    text = _PLACEHOLDER.sub(renumber, sql)
    values: list[object] = [None] * len(numbers)
    for old, new in numbers.items():
        values[new - 1] = params[old - 1]
    return Translation(text, tuple(values))


@dataclass(frozen=True)
class Translation:
    """A condition as SQL text with its parameter values (`$n` is `params[n - 1]`)."""

    sql: str
    params: tuple[object, ...]

    def inline(self) -> str:
        return inline_params(self.sql, self.params)


# ---- operands ----------------------------------------------------------------------------------


class Shape(Enum):
    """How many values an operand yields per event, and how a check combines them."""

    ONE = "one"  # a single value (NULL: missing)
    ANCESTORS = "ancestors"  # bare proc.aname etc.: the list column; checks look at the parents
    EITHER = "either"  # fd.ip, fd.port, fd.net: client or server side (`parts`)
    LIST = "list"  # a libsinsp list (EPF_IS_LIST): `in` needs all values, `intersects` any


@dataclass(frozen=True)
class Operand:
    """An operand as SQL: a scalar, a list (ANCESTORS/LIST) or fixed `parts` (EITHER).

    `info` is the type of one value; `missing` marks a field the trace has no column for, which
    makes every check on it false.
    """

    sql: str
    info: FieldInfo
    shape: Shape = Shape.ONE
    parts: tuple[str, ...] = ()
    missing: bool = False

    def map(self, fn: Callable[[str], str], var: str) -> Operand:
        """Apply a scalar SQL function to each value, keeping the shape."""
        if self.missing:
            return self
        if self.shape is Shape.ONE:
            return replace(self, sql=fn(self.sql))
        if self.shape is Shape.EITHER:
            return replace(self, parts=tuple(fn(p) for p in self.parts))
        return replace(self, sql=f"list_transform({self.sql}, lambda {var}: {fn(var)})")


_EPOCH_NS = f"epoch_ns({quote_ident('evt.time')})"
# Times derived from evt.time as the replay engine derives them (evt.time as Falco prints it,
# HH:MM:SS.nnnnnnnnn, but in UTC: a trace does not record the capture's time zone).
_TIME_FIELDS = {
    "evt.time": f"strftime({quote_ident('evt.time')}, '%H:%M:%S.%n')",
    "evt.rawtime": _EPOCH_NS,
    "evt.rawtime.s": f"({_EPOCH_NS} // 1000000000)",
    "evt.rawtime.ns": f"({_EPOCH_NS} % 1000000000)",
}
_STRING_INFO = FieldInfo(
    name="<value>", type="PT_CHARBUF", arg="none", is_list=False, available=True,
    unavailable_reason="", description="a literal or transformed string", flags=frozenset(),
    deprecated=False,
)  # fmt: skip
_UINT64_INFO = replace(_STRING_INFO, name="len()", type="PT_UINT64")
_INDEX_RE = re.compile(r"\s*[+-]?[0-9]+\Z")


def _missing(info: FieldInfo) -> Operand:
    return Operand("NULL", replace(info, is_list=False), missing=True)


def _column(name: str) -> str:
    return quote_ident(name)


def _ancestor(name: str, arg: str | None, elem: FieldInfo) -> Operand:
    if name not in COLUMN_BY_NAME:
        return _missing(elem)  # proc.acmdline, proc.aenv: not in traces
    if arg is None:
        # The whole list (element 1 is the process); checks skip it (see `reduce`).
        return Operand(_column(name), elem, Shape.ANCESTORS)
    if not _INDEX_RE.match(arg):
        return _missing(elem)
    index = max(int(arg), 0)  # libsinsp walks no parent for a negative index
    if index >= ANCESTOR_DEPTH:
        return _missing(elem)
    return Operand(f"{_column(name)}[{index + 1}]", elem)  # Falco index 0 = SQL index 1


# ---- values ------------------------------------------------------------------------------------


def sql_value(ptype: str, text: str, op: str) -> object:
    """A literal as the parameter a check binds: semantics' conversion, with addresses and
    networks as the keys `sysreplay_ip_key` computes."""
    try:
        value = semantics.convert_literal(ptype, text, op)
    except semantics.LiteralError as err:
        raise SqlTranslateError(str(err)) from None
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return ip_key(value.network_address)[: 2 + value.prefixlen]
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return ip_key(value)
    return value


def ip_key(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """"4:" and 32 bits, or "6:" and 128 bits: what `sysreplay_ip_key` makes of the text."""
    return f"{addr.version}:" + format(int(addr), f"0{addr.max_prefixlen}b")


def getopt_sets(optstring: str) -> tuple[str, str]:
    """The option letters of `optstring` and those taking a value, asked of semantics.getopt
    itself (one probe per letter) so both engines read the optstring alike."""
    # The probe is "-<filler><letter>": the filler (never an option) keeps "--" from being read
    # as the end of options, and yields one "?" before the letter's own result.
    filler = next(chr(c) for c in range(1, 0x110000) if chr(c) not in optstring)
    valid, with_value = [], []
    for letter in dict.fromkeys(optstring):
        result = semantics.getopt(["-" + filler + letter], optstring)[1:]
        if result != ["?"]:
            valid.append(letter)
        if result == [""]:
            with_value.append(letter)
    return "".join(valid), "".join(with_value)


# ---- the generator -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Values:
    """The right side of a check: literal texts (converted per operator) or one SQL scalar."""

    texts: tuple[str, ...] = ()
    expr: str | None = None


_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")
_SQL_OPS = {"<": "<", "<=": "<=", ">": ">", ">=": ">=", "=": "=", "==": "=", "!=": "<>"}
_STRING_FUNCTIONS = {"contains": "contains", "startswith": "starts_with", "endswith": "ends_with"}
_LINE = 100  # and/or longer than this are shown one item per line
_OR_CHAIN_MAX = 4  # below DuckDB's IN-clause rewrite threshold (see SqlGenerator.member)
_EVTTYPE_OPS = frozenset({"=", "==", "!=", "in"})
_EVT_TYPE_FIELD = ast.Field("evt.type")
_IDENT = re.compile(r'"(?:[^"]|"")+"')
# Filter-only fd fields: a check on the client side or the server side (semantics.FD_PAIRS), or
# on one address (FD_NETS).
_PAIRS = semantics.FD_PAIRS
_NETS = semantics.FD_NETS


@dataclass
class SqlGenerator:
    """Turns resolved condition trees into DuckDB boolean expressions, binding values in `params`.

    One generator serves a whole statement, so every rule's values share its numbering.

    `relax` names columns not to read: a check on them becomes true (false under an odd number
    of `not`s), so the expression selects a superset of the events the condition matches. The
    engine uses it for a pre-pass that skips the costly list columns (see analyze.sql_engine).

    `event_types`, when set, are the only evt.type values of the events the expression will see
    (the engine evaluates a rule behind its evt.type guard): an `evt.type` check those values
    decide becomes a constant (see `decided_by_types`).

    Checks may yield NULL where libsinsp's are false; AND/OR pass it on, `not` and `translate`
    make it false (see the module docstring).
    """

    params: Params = field(default_factory=Params)
    relax: frozenset[str] = frozenset()
    event_types: frozenset[str] | None = None
    indent: int = 2  # how many levels deep the caller's text puts the condition (for `join`)
    _lambdas: int = 0
    _negated: bool = False
    _two_valued: set[str] = field(default_factory=set)
    _depth: int = 0

    def sql(self, node: ast.Node) -> str:
        """Dispatch to `<node_type>_sql`; a node type without a handler is an error."""
        name = _CAMEL.sub("_", type(node).__name__).lower() + "_sql"
        handler = getattr(self, name, None)
        if handler is None:
            raise UnsupportedNodeError(
                f"the SQL translator has no handler for {type(node).__name__} nodes "
                f"(expected a method {name})"
            )
        result: str = handler(node)
        return result

    def var(self) -> str:
        """A fresh lambda variable (nested lambdas must not shadow each other)."""
        self._lambdas += 1
        return f"v{self._lambdas}"

    # -- boolean structure --

    def and_sql(self, node: ast.And) -> str:
        return self.join("AND", node.items)

    def or_sql(self, node: ast.Or) -> str:
        return self.join("OR", node.items)

    def join(self, op: str, items: Sequence[ast.Node]) -> str:
        """`(a OP b ...)`, one item per line when long (`analyze sql` shows this text)."""
        self._depth += 1
        try:
            parts = [self.sql(i) for i in items]
        finally:
            self._depth -= 1
        flat = "(" + f" {op} ".join(parts) + ")"
        if len(flat) <= _LINE and "\n" not in flat:
            return flat
        pad = "\n" + "    " * (self._depth + self.indent + 1)
        return "(" + pad + (pad + op + " ").join(parts) + ")"

    def not_sql(self, node: ast.Not) -> str:
        self._negated = not self._negated
        try:
            inner = self.sql(node.item)
        finally:
            self._negated = not self._negated
        return self.never_null(
            f"(NOT {inner})" if self.two_valued(inner) else f"(NOT coalesce({inner}, false))")

    def never_null(self, sql: str) -> str:
        """`sql`, noted as a boolean this generator made never NULL."""
        self._two_valued.add(sql)
        return sql

    def two_valued(self, sql: str) -> bool:
        """Whether `sql`, made by this generator, is never NULL (a constant, a `not`, a list
        check), so that no coalesce is needed around it."""
        return sql in ("true", "false") or sql in self._two_valued

    def relaxed(self, node: ast.UnaryCheck | ast.BinaryCheck) -> str | None:
        """The constant standing for a check that reads a relaxed column, else None."""
        if self.relax and any(f.name in self.relax for f in ast.fields_of(node)):
            return "false" if self._negated else "true"
        return None

    def decided_by_types(self, node: ast.BinaryCheck) -> bool | None:
        """The value of `evt.type =|==|!=|in <literals>` for every event whose type is one of
        `event_types`, or None when those types do not decide it (or are not set)."""
        if (self.event_types is None or node.modifier is not None
                or node.op not in _EVTTYPE_OPS or node.left != _EVT_TYPE_FIELD
                or not isinstance(node.right, ast.Literal | ast.ValueList)):
            return None
        texts = (node.right,) if isinstance(node.right, ast.Literal) else node.right.values
        info = self.operand(node.left).info
        values = {sql_value(info.type, t.value, node.op) for t in texts}
        if self.event_types <= values:
            return node.op != "!="
        if self.event_types.isdisjoint(values):
            return node.op == "!="
        return None

    def macro_ref_sql(self, node: ast.MacroRef) -> str:
        raise SqlTranslateError(
            f"'{node.name}' is not a defined macro (conditions must be resolved before translation)"
        )

    # -- operands as SQL (`operand()` keeps their shape and type) --

    def field_sql(self, node: ast.Field) -> str:
        return self.operand(node).sql

    def transformer_sql(self, node: ast.Transformer) -> str:
        return self.operand(node).sql

    def transformer_list_sql(self, node: ast.TransformerList) -> str:
        return self.operand(node).sql

    def val_sql(self, node: ast.Val) -> str:
        return self.operand(node.field).sql

    def literal_sql(self, node: ast.Literal) -> str:
        return self.params.add(node.value)

    def value_list_sql(self, node: ast.ValueList) -> str:
        return "(" + ", ".join(self.params.add(v.value) for v in node.values) + ")"

    def operand(self, node: ast.Node) -> Operand:
        if isinstance(node, ast.Field):
            return self.field_operand(node)
        if isinstance(node, ast.Transformer):
            return self.transformer_operand(node)
        if isinstance(node, ast.Literal):
            return Operand(self.params.add(node.value), _STRING_INFO)
        if isinstance(node, ast.TransformerList):
            return self.transformer_list_operand(node)
        raise SqlTranslateError(f"{type(node).__name__} cannot be an operand")

    def transformer_list_operand(self, node: ast.TransformerList) -> Operand:
        """`(a, b, ...)` as a list of text: items without a column and null values left out."""
        items = [self.operand(i) for i in node.items]
        if any(i.shape is not Shape.ONE for i in items if not i.missing):
            raise SqlTranslateError(f"{ast.to_text(node)}: list items must be single values")
        present = [f"CAST({i.sql} AS VARCHAR)" for i in items if not i.missing]
        if not present:
            return _missing(_STRING_INFO)
        var = self.var()
        values = f"list_filter(list_value({', '.join(present)}), lambda {var}: {var} IS NOT NULL)"
        return Operand(values, _STRING_INFO, Shape.LIST)

    def field_operand(self, node: ast.Field) -> Operand:
        """Where a field's value lives: a column, an element of an ancestor list, or a value the
        engines derive (fd.ip, fd.net, proc.env[NAME], container.mount.dest[...])."""
        try:
            info = catalog.resolve(node.name, node.arg)
        except catalog.FieldError as err:
            raise SqlTranslateError(str(err)) from None
        elem = semantics.element_info(info)
        name, arg = node.name, node.arg
        if name in ANCESTOR_FIELDS:
            return _ancestor(name, arg, elem)
        if arg is None and name in _PAIRS:
            return Operand("", elem, Shape.EITHER, tuple(_column(c) for c in _PAIRS[name]))
        if arg is None and name in _NETS:
            return Operand(_column(_NETS[name]), elem)
        derived = self.derived_operand(node, info.name, elem)
        if derived is not None:
            return derived
        if arg is None and name in COLUMN_BY_NAME:
            return Operand(_column(name), elem)
        return _missing(elem)

    def derived_operand(self, node: ast.Field, base: str, elem: FieldInfo) -> Operand | None:
        """Fields computed from columns: keyed env/mount fields, raw times, evt.type.is."""
        name, arg = node.name, node.arg
        if name == "proc.env" and arg is not None:
            return self.env_operand(arg, elem)
        if name in semantics.MOUNT_FIELDS and arg is not None:
            return self.mount_operand(name, arg, elem)
        if base == "evt.type.is":
            wanted = self.params.add(name.removeprefix("evt.type.is."))
            return Operand(f"CAST({_column('evt.type')} = {wanted} AS UINTEGER)", elem)
        if name in _TIME_FIELDS:
            return Operand(_TIME_FIELDS[name], elem)
        return None

    def env_operand(self, key: str, elem: FieldInfo) -> Operand:
        """semantics.env_lookup: the first item `KEY=value` of the space-separated proc.env."""
        env = _column("proc.env")
        if " " in key:
            return Operand(f"CASE WHEN {env} IS NOT NULL THEN '' END", elem)  # never an item
        pattern = self.params.add("(?:^| )" + re2_literal(key) + "=([^ ]*)")
        return Operand(f"sysreplay_strip(regexp_extract({env}, {pattern}, 1))", elem)

    def mount_operand(self, name: str, arg: str, elem: FieldInfo) -> Operand:
        """semantics.mount_lookup: a mount by index, or the first whose source (destination,
        for container.mount.source) matches the glob `arg`."""
        part = semantics.MOUNT_FIELDS[name]
        items = f"sysreplay_mount_items({_column('container.mounts')})"
        if _INDEX_RE.match(arg):
            if int(arg) < 0:
                return _missing(elem) if part is not None else self._mount_none(elem)
            item = f"{items}[{int(arg) + 1}]"
        else:
            var = self.var()
            key = f"sysreplay_mount_part({var}, {1 if part == 0 else 0})"
            pattern = self.params.add(semantics.glob_regex(arg))
            item = f"list_filter({items}, lambda {var}: regexp_full_match({key}, {pattern}))[1]"
        if part is not None:
            return Operand(f"sysreplay_mount_part({item}, {part})", elem)
        none = self.params.add(semantics.MOUNT_NONE)
        whole = f"coalesce({item}, {none})"
        mounts = _column("container.mounts")
        return Operand(f"CASE WHEN {mounts} IS NOT NULL THEN {whole} END", elem)

    def _mount_none(self, elem: FieldInfo) -> Operand:
        none = self.params.add(semantics.MOUNT_NONE)
        return Operand(f"CASE WHEN {_column('container.mounts')} IS NOT NULL THEN {none} END", elem)

    def transformer_operand(self, node: ast.Transformer) -> Operand:
        if node.name == "getopt":
            return self.getopt_operand(node)
        args = [self.operand(a) for a in node.args]
        if any(a.missing for a in args):
            return _missing(_UINT64_INFO if node.name == "len" else _STRING_INFO)
        if node.name == "join":
            return Operand(f"array_to_string({args[1].sql}, {args[0].sql})", _STRING_INFO)
        if node.name == "concat":
            return Operand("(" + " || ".join(a.sql for a in args) + ")", _STRING_INFO)
        if node.name == "len":
            return _length(args[0])
        if node.name not in _SINGLE:
            raise SqlTranslateError(f"the transformer '{node.name}' is not supported in SQL")
        inner = args[0]
        return inner.map(lambda x: _SINGLE[node.name](x, inner.info), self.var())

    def getopt_operand(self, node: ast.Transformer) -> Operand:
        args, optstring = node.args
        if not isinstance(optstring, ast.Literal):
            raise SqlTranslateError("getopt() needs a literal optstring in SQL")
        values = self.operand(args)
        if values.missing:
            return _missing(_STRING_INFO)
        valid, with_value = getopt_sets(optstring.value)
        call = (f"sysreplay_getopt({values.sql}, {self.params.add(valid)}, "
                f"{self.params.add(with_value)})")
        return Operand(call, _STRING_INFO, Shape.LIST)

    # -- checks --

    def unary_check_sql(self, node: ast.UnaryCheck) -> str:
        relaxed = self.relaxed(node)
        if relaxed is not None:
            return relaxed
        left = self.operand(node.left)
        if left.missing:
            return "false"
        if left.shape is Shape.LIST and node.modifier is None:
            # libsinsp: an extracted list exists, even empty
            return self.never_null(f"({left.sql} IS NOT NULL)")
        return self.reduce(left, node.modifier, "exists", lambda x: f"({x} IS NOT NULL)")

    def binary_check_sql(self, node: ast.BinaryCheck) -> str:
        relaxed = self.relaxed(node)
        if relaxed is not None:
            return relaxed
        decided = self.decided_by_types(node)
        if decided is not None:
            return "true" if decided else "false"
        left = self.operand(node.left)
        right = self.right_values(node.right)
        if left.missing or right is None:
            return "false"
        op = node.op
        if left.shape is Shape.LIST and node.modifier is None and op == "in":
            return self.all_in(left, right)
        return self.reduce(left, node.modifier, op,
                           lambda x: self.compare(op, x, left.info, right))

    def right_values(self, node: ast.RightValue) -> _Values | None:
        """The right side; None when it is a field (or transformed field) that is missing."""
        if isinstance(node, ast.Literal):
            return _Values(texts=(node.value,))
        if isinstance(node, ast.ValueList):
            return _Values(texts=tuple(v.value for v in node.values))
        operand = self.operand(node.field if isinstance(node, ast.Val) else node)
        if operand.missing:
            return None
        if operand.shape is not Shape.ONE:
            raise SqlTranslateError(
                f"a right-hand side with several values ({ast.to_text(node)}) is not supported"
            )
        return _Values(expr=operand.sql)

    def reduce(self, left: Operand, modifier: str | None, op: str,
               check: Callable[[str], str]) -> str:
        """Combine the checks of each value into one two-valued result (see `Shape`)."""
        if left.shape is Shape.ONE:
            return check(left.sql)  # NULL where the value is missing: see the module docstring
        if left.shape is Shape.EITHER:
            either = _either(op, [check(p) for p in left.parts])
            return self.never_null(either) if op == "!=" else either
        # Falco's bare proc.aname: every ancestor from the parent up (SQL list index 2).
        values = f"{left.sql}[2:]" if left.shape is Shape.ANCESTORS else left.sql
        var = self.var()
        each = f"lambda {var}: {_leaf(check(var))}"
        if modifier in (None, "anyof"):
            sql = f"list_bool_or(list_transform({values}, {each}))"
        elif modifier == "allof":  # every value, and at least one (empty lists are false)
            sql = f"list_bool_and(list_transform({values}, {each}))"
        elif modifier == "oneof":
            sql = f"len(list_filter({values}, {each})) = 1"
        else:
            raise SqlTranslateError(f"unknown modifier '{modifier}'")
        return self.never_null(_leaf(sql))

    def all_in(self, left: Operand, right: _Values) -> str:
        """`in` on a libsinsp list: every value is in the set (an empty list is)."""
        var = self.var()
        each = self.compare("in", var, left.info, right)
        return self.never_null(f"({left.sql} IS NOT NULL AND coalesce(list_bool_and("
                               f"list_transform({left.sql}, lambda {var}: {_leaf(each)})), true))")

    # -- one value against the right side (may be NULL: the leaf coalesces) --

    def compare(self, op: str, x: str, info: FieldInfo, right: _Values) -> str:
        kind = "bytes" if op in ("bcontains", "bstartswith") else catalog.value_kind(info)
        if kind == "ip":
            return self.compare_ip(op, x, info, right)
        if kind == "ipnet":
            return self.compare_net(op, x, info, right)
        if kind == "bytes":
            return self.compare_bytes(op, x, info, right)
        if kind == "string":
            return self.compare_string(op, x, info, right)
        return self.compare_plain(op, x, info, right)

    def bind(self, info: FieldInfo, op: str, right: _Values) -> list[str]:
        """The right side as SQL: bound converted literals, or the right-hand field's SQL."""
        if right.expr is not None:
            return [right.expr]
        return [self.params.add(sql_value(info.type, t, op)) for t in right.texts]

    def compare_plain(self, op: str, x: str, info: FieldInfo, right: _Values) -> str:
        """Numbers, ports, bools and strings: equality, order and set membership."""
        if op in ("in", "intersects") and right.expr is None:
            return self.member(x, [sql_value(info.type, t, op) for t in right.texts])
        values = self.bind(info, op, right)
        if op in ("in", "intersects"):
            return f"({x} = {values[0]})"  # one right-hand value per event
        if op not in _SQL_OPS:
            raise SqlTranslateError(f"'{op}' cannot compare {info.name} values")
        return f"({x} {_SQL_OPS[op]} {values[0]})"

    def member(self, x: str, values: Sequence[object]) -> str:
        """`x` is one of `values`, evaluated only where the check is reached.

        DuckDB turns a filter's IN list (or constant list) of five or more values into a join
        computed for every row, before any AND/OR can skip it. So: a few values compared with a
        plain column are an OR of equalities; other string sets are one RE2 alternation (its
        cost grows with the value, not the set); other sets an OR of equalities.
        """
        distinct = list(dict.fromkeys(values))
        strings = all(isinstance(v, str) for v in distinct)
        if strings and (len(distinct) > _OR_CHAIN_MAX or not _IDENT.fullmatch(x)):
            pattern = "(?s)(?:" + "|".join(re2_literal(str(v)) for v in distinct) + ")"
            return f"regexp_full_match({x}, {self.params.add(pattern)})"
        equalities = [f"{x} = {self.params.add(v)}" for v in distinct]
        return "(" + " OR ".join(equalities) + ")" if equalities else "false"

    def compare_string(self, op: str, x: str, info: FieldInfo, right: _Values) -> str:
        if op in _STRING_FUNCTIONS:
            return f"{_STRING_FUNCTIONS[op]}({x}, {self.bind(info, op, right)[0]})"
        if op == "icontains":  # strcasestr: ASCII letters fold, nothing else
            if right.expr is not None:
                return f"contains({_ascii_lower(x)}, {_ascii_lower(right.expr)})"
            needle = self.params.add(_fold_text(right.texts[0]))
            return f"contains({_ascii_lower(x)}, {needle})"
        if op in ("glob", "iglob", "regex", "pmatch"):
            return self.compare_pattern(op, x, right)
        return self.compare_plain(op, x, info, right)

    def compare_pattern(self, op: str, x: str, right: _Values) -> str:
        """glob/iglob/regex/pmatch: a whole-value match of the pattern semantics builds."""
        if right.expr is not None:
            if op not in ("glob", "iglob"):
                raise SqlTranslateError(f"operator '{op}' doesn't support right-hand side fields")
            fold = _ascii_lower if op == "iglob" else (lambda s: s)
            return f"({fold(x)} GLOB {fold(right.expr)})"  # DuckDB's glob: rare, approximate
        if op == "pmatch":
            body = semantics.pmatch_regex(right.texts)
        elif op == "regex":
            body = semantics.regex_body(right.texts[0])
        else:
            body = semantics.glob_regex(right.texts[0], ignore_case=op == "iglob")
        return f"regexp_full_match({x}, {self.params.add(body)})"

    def compare_bytes(self, op: str, x: str, info: FieldInfo, right: _Values) -> str:
        """Byte buffers: equality on BLOBs, searches on their hex text (kept pair-aligned)."""
        if op in ("in", "intersects", "=", "==", "!="):
            return self.compare_plain(op, x, replace(info, type="PT_BYTEBUF"), right)
        if right.expr is not None:
            raise SqlTranslateError(f"operator '{op}' doesn't support right-hand side fields")
        needle = sql_value("PT_BYTEBUF", right.texts[0], op)
        assert isinstance(needle, bytes)
        hex_needle = needle.hex().upper()
        if op in ("contains", "bcontains"):
            pattern = self.params.add("^(?:[0-9A-F]{2})*?" + hex_needle)
            return f"regexp_matches(hex({x}), {pattern})"
        if op in ("startswith", "bstartswith"):
            return f"starts_with(hex({x}), {self.params.add(hex_needle)})"
        if op == "endswith":
            return f"ends_with(hex({x}), {self.params.add(hex_needle)})"
        raise SqlTranslateError(f"'{op}' cannot compare byte buffers")

    def compare_ip(self, op: str, x: str, info: FieldInfo, right: _Values) -> str:
        """Addresses compare by key (version and bits), not by their text."""
        if right.expr is not None:
            right = _Values(expr=f"sysreplay_ip_key({right.expr})")
        return self.compare_plain(op, f"sysreplay_ip_key({x})", info, right)

    def compare_net(self, op: str, x: str, info: FieldInfo, right: _Values) -> str:
        """An address against networks: its key starts with a network's key prefix."""
        if right.expr is not None:
            raise SqlTranslateError(f"operator '{op}' doesn't support right-hand side fields")
        prefixes = [str(sql_value(info.type, t, op)) for t in right.texts]
        # Prefixes are "4:"/"6:" and binary digits, safe to join into one alternation.
        regex = self.params.add("^(?:" + "|".join(prefixes) + ")")
        matches = f"regexp_matches(sysreplay_ip_key({x}), {regex})"
        return f"(NOT {matches})" if op == "!=" else matches


def _leaf(check: str) -> str:
    # Falco's missing-means-false: a check that yields NULL (missing field) is false.
    return f"coalesce({check}, false)"


def _either(op: str, checks: Sequence[str]) -> str:
    """semantics.pair_matches: any side that exists matches; for `!=`, every one that exists
    differs (a check is NULL exactly when its side does not exist)."""
    if op != "!=":
        return "(" + " OR ".join(checks) + ")"
    existing = f"list_filter([{', '.join(checks)}], lambda c: c IS NOT NULL)"
    return _leaf(f"list_bool_and({existing})")  # no side exists: NULL, so false


_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_LOWER = _UPPER.lower()


def _fold_text(text: str) -> str:
    return text.translate(str.maketrans(_UPPER, _LOWER))


def _ascii_lower(sql: str) -> str:
    # libsinsp folds case byte by byte with tolower() in the C locale: ASCII letters only.
    return f"translate({sql}, '{_UPPER}', '{_LOWER}')"


def _ascii_upper(sql: str) -> str:
    return f"translate({sql}, '{_LOWER}', '{_UPPER}')"


def _b64(x: str, info: FieldInfo) -> str:
    # semantics.b64_decode (then as_charbuf for strings); NULL when the value does not decode.
    if info.type == "PT_BYTEBUF":
        return f"sysreplay_b64_decode(try(decode({x})))"
    return f"sysreplay_charbuf(sysreplay_b64_decode({x}))"


_SINGLE: dict[str, Callable[[str, FieldInfo], str]] = {
    "tolower": lambda x, _: _ascii_lower(x),
    "toupper": lambda x, _: _ascii_upper(x),
    "basename": lambda x, _: f"string_split({x}, '/')[-1]",
    "b64": _b64,
}


def _length(inner: Operand) -> Operand:
    if inner.shape in (Shape.LIST, Shape.ANCESTORS):
        return Operand(f"len({inner.sql})", _UINT64_INFO)
    size = "octet_length" if inner.info.type == "PT_BYTEBUF" else "strlen"
    return Operand(f"{size}({inner.sql})", _UINT64_INFO)


def translate(tree: ast.Expr, params: Params | None = None) -> Translation:
    """One condition as a two-valued SQL boolean expression (values bound in `params`)."""
    generator = SqlGenerator(params if params is not None else Params())
    sql = generator.sql(tree)
    return compact(sql if generator.two_valued(sql) else _leaf(sql), generator.params.values)
