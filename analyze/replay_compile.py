"""Compile a resolved condition into one vectorized evaluator: Arrow rows in, a boolean mask out.

Each rule's tree is compiled once. Evaluating it on a `View` (some rows of a batch) runs a few
pyarrow.compute kernels per node, never Python per row. Three ideas keep that cheap:
- String columns are Arrow dictionaries: a check runs on a batch column's *dictionary* (its
  distinct values) once per batch, then maps to rows with one `take`. Transformers (tolower,
  basename, proc.env[X], ...) likewise rewrite the dictionary, not the rows. Invariant: every
  DictionaryArray an operand yields has a dictionary that depends only on (batch, operand), so
  results computed on it may be cached per batch under the operand's text.
- `and`/`or` short-circuit like Falco's evaluation: once few rows are left undecided, the next
  item runs on those rows only (`View.narrow`), and identical subtrees (macros inlined into many
  rules) are evaluated once per view (`View.run` memoizes by canonical text).
- A field that cannot be extracted yields null, and every check fills nulls with False at the
  leaf, so `not`/`and`/`or` follow Falco's two-valued logic.

Multi-valued operands have a shape: ONE value per row; a LIST field (`fd.types`, getopt(),
`(a, b)` in a transformer); the ANCESTORS of the process (`proc.aname` bare: list column, element 0
is the process itself and is skipped); a PAIR of columns (filter-only `fd.ip`, `fd.port`, ...).
Operator meaning per value kind lives in `analyze.semantics`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from analyze import ast
from analyze import semantics as sem
from analyze.errors import RuleError
from schemas import catalog
from schemas.trace import ANCESTOR_COLUMNS, ANCESTOR_DEPTH, COLUMN_BY_NAME

if TYPE_CHECKING:
    from analyze.replay import View

Mask = Any  # a pa.BooleanArray without nulls, one entry per row of the view
Pred = Callable[[Any], Any]  # values -> nullable booleans (one per value)

ONE, LIST, ANCESTORS, PAIR = "one", "list", "ancestors", "pair"
# Arrow scalars made once: handing kernels Python values costs a conversion (and, in pyarrow,
# a failed optional import) on every call.
_FALSE, _TRUE = pa.scalar(False), pa.scalar(True)
_EMPTY = pa.scalar("", pa.string())
_ZERO = pa.array([0], pa.int64())
# Narrow to the undecided rows when at most this share of the view is left.
NARROW_SHARE = 0.25


# ---- compiled nodes and operands ---------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Node:
    """A compiled boolean expression; `key` is its canonical text (the memo key)."""

    key: str
    fn: Callable[[View], Mask]


@dataclass(frozen=True)
class Operand:
    """A compiled left side, `val()` field or transformer: how to get its values for a view."""

    key: str  # canonical text
    ptype: str  # libsinsp type of one value, after transformers
    shape: str  # ONE, LIST, ANCESTORS or PAIR
    extract: Callable[[View], Any] | None = None  # None: never extractable (see `missing`)
    parts: tuple[Operand, ...] = ()  # PAIR: the client and server sides
    missing: tuple[str, ...] = ()  # fields the trace does not record

    @property
    def absent(self) -> bool:
        return self.extract is None and not self.parts


@dataclass(frozen=True)
class CompiledCondition:
    """A rule's condition, ready to evaluate."""

    node: Node
    columns: frozenset[str]  # trace columns it may read
    missing_fields: tuple[str, ...]  # fields with no column: their checks are false

    def evaluate(self, view: View) -> Mask:
        return view.run(self.node)


def compile_condition(tree: ast.Expr, rule_name: str = "<condition>") -> CompiledCondition:
    """Compile a resolved condition; raises RuleError naming the rule for what cannot run."""
    compiler = _Compiler(rule_name)
    node = compiler.expr(tree)
    return CompiledCondition(node, frozenset(compiler.columns), tuple(dict.fromkeys(
        compiler.missing)))


def _false(view: View) -> Mask:
    return pa.repeat(_FALSE, view.length)


def _true(view: View) -> Mask:
    return pa.repeat(_TRUE, view.length)


FALSE = Node("\0false", _false)
TRUE = Node("\0true", _true)


# ---- boolean structure -------------------------------------------------------------------------


def _and(items: list[Node]) -> Node:
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


def _or(items: list[Node]) -> Node:
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


def _not(item: Node) -> Node:
    if item is TRUE or item is FALSE:
        return FALSE if item is TRUE else TRUE
    return Node("not " + item.key, lambda view: pc.invert(view.run(item)))


# ---- array helpers -----------------------------------------------------------------------------


def _fill(mask: Any) -> Mask:
    return mask if mask.null_count == 0 else pc.fill_null(mask, _FALSE)


def _plain(values: Any) -> Any:
    """Values without dictionary encoding (for row-by-row kernels)."""
    return values.dictionary_decode() if isinstance(values, pa.DictionaryArray) else values


def _valid(values: Any) -> Mask:
    """Which values exist (a derived dictionary may hold nulls, not only its indices)."""
    if isinstance(values, pa.DictionaryArray):
        return _fill(values.dictionary.is_valid().take(values.indices))
    return values.is_valid()


def _apply(view: View, values: Any, pred: Pred, key: str) -> Any:
    """`pred` over values; on a dictionary, once per batch (cached under `key`) then mapped."""
    if isinstance(values, pa.DictionaryArray):
        mask = view.frame.cached(("pred", key), lambda: pred(values.dictionary))
        return mask.take(values.indices)
    return pred(values)


def _derive(view: View, source: Any, key: str, fn: Callable[[Any], Any]) -> Any:
    """`fn` (values -> as many values) over a dictionary once per batch, else over the rows."""
    if isinstance(source, pa.DictionaryArray):
        dictionary = view.frame.cached(("dict", key), lambda: fn(source.dictionary))
        return pa.DictionaryArray.from_arrays(source.indices, dictionary, safe=False)
    return fn(source)


def _py_map(values: Any, fn: Callable[[Any], Any], out_type: Any) -> Any:
    """Python `fn` over distinct values only (used for per-value logic Arrow has no kernel for)."""
    if not isinstance(values, pa.DictionaryArray):
        values = pc.dictionary_encode(values)
    mapped = [None if v is None else fn(v) for v in values.dictionary.to_pylist()]
    return pa.array(mapped, out_type).take(values.indices)


def _list_parts(lst: Any) -> tuple[Any, Any]:
    """A list array's element values and offsets into them (starting at 0)."""
    offsets = lst.offsets
    first, last = offsets[0].as_py(), offsets[-1].as_py()
    values = lst.values.slice(first, last - first)
    return values, (pc.subtract(offsets, _int(first, offsets)) if first else offsets)


def _parents(offsets: Any) -> Any:
    """The row each list element belongs to."""
    values = pa.nulls(offsets[-1].as_py(), pa.int8())
    return pc.list_parent_indices(pa.ListArray.from_arrays(offsets, values))


def _reduce(lst: Any, element_mask: Any, offsets: Any, mode: str, skip_first: bool) -> Mask:
    """Per row: any / all / exactly one of the elements (from index 1 for ancestors) hold."""
    starts, ends = offsets.slice(0, len(offsets) - 1), offsets.slice(1)
    if skip_first:
        starts = pc.min_element_wise(pc.add(starts, _int(1, starts)), ends)
    sums = pc.cumulative_sum(element_mask.cast(pa.int64()))
    sums = pa.concat_arrays([_ZERO, sums])
    hits = pc.subtract(sums.take(ends), sums.take(starts))
    if mode == "anyof":
        result = pc.greater(hits, _int(0, hits))
    elif mode == "oneof":
        result = pc.equal(hits, _int(1, hits))
    else:  # allof: every element, and at least one
        sizes = pc.subtract(ends, starts)
        result = pc.and_(pc.equal(hits, sizes), pc.greater(sizes, _int(0, sizes)))
    return _fill(pc.and_(result, lst.is_valid()))


def _element(lst: Any, index: int) -> Any:
    """Element `index` of each list (null when the list is shorter)."""
    values, offsets = _list_parts(lst)
    starts, ends = offsets.slice(0, len(offsets) - 1), offsets.slice(1)
    pos = pc.add(starts, _int(index, starts))
    ok = _fill(pc.and_(pc.less(pos, ends), lst.is_valid()))
    return values.take(pc.if_else(ok, pos, pa.scalar(None, pos.type)))


def _rows_to_lists(arrays: Sequence[Any], n: int) -> Any:
    """One list per row from k same-length arrays, nulls left out."""
    k = len(arrays)
    flat = pa.concat_arrays([a.cast(pa.string()) for a in arrays])  # column-major
    j = pc.subtract(pc.cumulative_sum(pa.repeat(_int(1), n * k)), _int(1))
    source = pc.add(pc.multiply(pc.remainder(j, _int(k)), _int(n)), pc.divide(j, _int(k)))
    values = flat.take(source)
    lengths = pa.repeat(pa.scalar(0, pa.int32()), n)
    for a in arrays:
        lengths = pc.add(lengths, a.is_valid().cast(pa.int32()))
    offsets = pa.concat_arrays([pa.array([0], pa.int32()), pc.cumulative_sum(lengths)])
    return pa.ListArray.from_arrays(offsets, values.filter(values.is_valid()))


def _repeat(value: Any, view: View) -> Any:
    return pa.repeat(value, view.length)


def _int(value: int, like: Any = None) -> Any:
    """An integer scalar of `like`'s type (int64 by default)."""
    return pa.scalar(value, pa.int64() if like is None else like.type)


# ---- predicates: operator + constant values -> kernel over values -----------------------------

_CMP: dict[str, Callable[[Any, Any], Any]] = {
    "=": pc.equal, "==": pc.equal, "!=": pc.not_equal, "<": pc.less, "<=": pc.less_equal,
    ">": pc.greater, ">=": pc.greater_equal,
}
_SET_OPS = ("in", "intersects")


def _regex_pred(pattern: str) -> Pred:
    try:
        pc.match_substring_regex(pa.array([""]), pattern=pattern)
    except pa.ArrowInvalid as exc:
        raise ValueError(f"invalid regular expression: {exc}") from None
    return lambda a: pc.match_substring_regex(a, pattern=pattern)


def _string_pred(op: str, consts: list[Any]) -> Pred:
    lit = consts[0] if consts else ""
    if op in _CMP:
        scalar = pa.scalar(lit, pa.string())
        return lambda a: _CMP[op](a, scalar)
    if op in _SET_OPS:
        value_set = pa.array([c for c in consts if isinstance(c, str)], pa.string())
        return lambda a: pc.is_in(a, value_set=value_set)
    if op in ("bcontains", "bstartswith"):
        kernel = pc.match_substring if op == "bcontains" else pc.starts_with
        return lambda a: kernel(a.cast(pa.binary()), pattern=lit)
    simple = {"contains": pc.match_substring, "startswith": pc.starts_with,
              "endswith": pc.ends_with}
    if op in simple:
        return lambda a: simple[op](a, pattern=lit)
    bodies = {
        "icontains": lambda: sem.icontains_regex(lit),
        "glob": lambda: sem.glob_regex(lit),
        "iglob": lambda: sem.glob_regex(lit, ignore_case=True),
        "regex": lambda: sem.regex_body(lit),
        "pmatch": lambda: sem.pmatch_regex(consts),
    }
    if op in bodies:
        body = bodies[op]()
        return _regex_pred(body if op == "icontains" else sem.anchored(body))
    raise ValueError(f"operator '{op}' does not apply to strings")


def _number_pred(op: str, consts: list[Any]) -> Pred:
    if op in _SET_OPS:
        sets: dict[Any, Any] = {}  # per Arrow type of the values

        def member(a: Any) -> Any:
            if a.type not in sets:
                sets[a.type] = pa.array([c for c in consts if _fits(c, a.type)], a.type)
            return pc.is_in(a, value_set=sets[a.type])

        return member
    if op not in _CMP:
        raise ValueError(f"operator '{op}' does not apply to numbers")
    return lambda a: _compare_number(a, op, consts[0])


def _fits(value: Any, arrow_type: Any) -> bool:
    if not pa.types.is_integer(arrow_type):
        return True
    bits = arrow_type.bit_width
    if pa.types.is_signed_integer(arrow_type):
        return bool(-(1 << (bits - 1)) <= value < 1 << (bits - 1))
    return bool(0 <= value < 1 << bits)


def _compare_number(values: Any, op: str, lit: Any) -> Any:
    if isinstance(lit, float):  # PT_DOUBLE
        return _CMP[op](values.cast(pa.float64()), pa.scalar(lit))
    if _fits(lit, values.type):
        scalar = pa.scalar(lit, values.type) if pa.types.is_integer(values.type) else lit
        return _CMP[op](values, scalar)
    # The literal lies beyond what the column's type holds: the answer is the same for all.
    above = lit > 0
    always = {"=": False, "==": False, "!=": True, "<": above, "<=": above,
              ">": not above, ">=": not above}[op]
    return values.is_valid() if always else pa.repeat(_FALSE, len(values))


def _bool_pred(op: str, consts: list[Any]) -> Pred:
    if op in _SET_OPS:
        value_set = pa.array(consts, pa.bool_())
        return lambda a: pc.is_in(a, value_set=value_set)
    if op not in ("=", "==", "!="):
        raise ValueError(f"operator '{op}' does not apply to booleans")
    scalar = pa.scalar(consts[0], pa.bool_())
    return lambda a: _CMP[op](a, scalar)


def _ip_pred(op: str, consts: list[Any]) -> Pred:
    if op not in ("=", "==", "!=", *_SET_OPS):
        raise ValueError(f"operator '{op}' does not apply to IP addresses")
    wanted = set(consts) if op in _SET_OPS else {consts[0]}
    negate = op == "!="

    def test(text: str) -> bool | None:
        ip = sem.ip_of(text)
        return None if ip is None else (ip in wanted) != negate

    return lambda a: _py_map(a, test, pa.bool_())


def _net_pred(op: str, consts: list[Any]) -> Pred:
    if op not in ("=", "==", "!=", *_SET_OPS):
        raise ValueError(f"operator '{op}' does not apply to IP networks")
    nets = consts if op in _SET_OPS else consts[:1]
    negate = op == "!="

    def test(text: str) -> bool | None:
        ip = sem.ip_of(text)
        return None if ip is None else any(ip in net for net in nets) != negate

    return lambda a: _py_map(a, test, pa.bool_())


def _bytes_pred(op: str, consts: list[Any]) -> Pred:
    lit = consts[0] if consts else b""
    if op in ("=", "==", "!="):
        scalar = pa.scalar(lit, pa.binary())
        return lambda a: _CMP[op](a, scalar)
    if op in _SET_OPS:
        value_set = pa.array(consts, pa.binary())
        return lambda a: pc.is_in(a, value_set=value_set)
    kernels = {"contains": pc.match_substring, "bcontains": pc.match_substring,
               "startswith": pc.starts_with, "bstartswith": pc.starts_with,
               "endswith": pc.ends_with}
    if op not in kernels:
        raise ValueError(f"operator '{op}' does not apply to buffers")
    return lambda a: kernels[op](a, pattern=lit)


def _make_pred(kind: str, op: str, consts: list[Any]) -> Pred:
    if op == "exists":
        return lambda a: a.is_valid()
    makers = {"number": _number_pred, "reltime": _number_pred, "abstime": _number_pred,
              "port": _number_pred, "bool": _bool_pred, "ip": _ip_pred, "ipnet": _net_pred,
              "bytes": _bytes_pred}
    return makers.get(kind, _string_pred)(op, consts)


# ---- predicates between two operands (`val(...)`, transformers on the right) -------------------

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")

_PAIR_TESTS: dict[str, Callable[[Any, Any], bool]] = {
    "contains": lambda x, y: y in x,
    "bcontains": lambda x, y: y in x,
    "icontains": lambda x, y: y.translate(_ASCII_LOWER) in x.translate(_ASCII_LOWER),
    "startswith": lambda x, y: x.startswith(y),
    "bstartswith": lambda x, y: x.startswith(y),
    "endswith": lambda x, y: x.endswith(y),
    "glob": lambda x, y: sem.glob_match(y, x),
    "iglob": lambda x, y: sem.glob_match(y, x, ignore_case=True),
}


def _make_pred2(kind: str, op: str) -> Callable[[Any, Any], Any]:
    """A row-by-row comparison of two aligned arrays."""
    if op in _SET_OPS:
        op = "="  # one right-hand value per row: membership is equality
    if kind == "ip":
        if op not in ("=", "==", "!="):
            raise ValueError(f"operator '{op}' does not apply to IP addresses")
        return lambda a, b: _CMP[op](_canonical_ips(a), _canonical_ips(b))
    if op in _CMP:
        return lambda a, b: _CMP[op](a, b)
    if op in _PAIR_TESTS:
        test = _PAIR_TESTS[op]
        # No Arrow kernel takes a per-row pattern: Python over the rows (val() is rare).
        return lambda a, b: pa.array([
            None if x is None or y is None else test(x, y)
            for x, y in zip(a.to_pylist(), b.to_pylist(), strict=True)], pa.bool_())
    raise ValueError(f"operator '{op}' does not take a field on its right-hand side")


def _canonical_ips(values: Any) -> Any:
    def canon(text: str) -> str | None:
        ip = sem.ip_of(text)
        return None if ip is None else str(ip)

    return _py_map(values, canon, pa.string())


# ---- the compiler ------------------------------------------------------------------------------

_SINGLE_TRANSFORMERS = {
    "tolower": pc.ascii_lower,  # libsinsp uses the C locale's tolower: ASCII only
    "toupper": pc.ascii_upper,
    "basename": lambda a: pc.replace_substring_regex(a, pattern="(?s)^.*/", replacement=""),
}
_TIME_FIELDS = ("evt.rawtime", "evt.rawtime.s", "evt.rawtime.ns", "evt.time")
_NS = 1_000_000_000


@dataclass
class _Compiler:
    rule: str
    columns: set[str] = field(default_factory=set)
    missing: list[str] = field(default_factory=list)

    def error(self, why: str) -> RuleError:
        return RuleError(f"the replay engine cannot run rule '{self.rule}': {why}",
                         code="replay-unsupported")

    # -- boolean structure --

    def expr(self, node: ast.Node) -> Node:
        match node:
            case ast.And(items=items):
                return _and([self.expr(i) for i in items])
            case ast.Or(items=items):
                return _or([self.expr(i) for i in items])
            case ast.Not(item=item):
                return _not(self.expr(item))
            case ast.UnaryCheck():
                return self.exists(node)
            case ast.BinaryCheck():
                return self.binary(node)
            case ast.MacroRef(name=name):
                raise self.error(f"'{name}' is neither a field nor a defined macro")
        raise self.error(f"{type(node).__name__} is not a boolean expression")

    # -- checks --

    def exists(self, node: ast.UnaryCheck) -> Node:
        if node.op != "exists":
            raise self.error(f"unknown unary operator '{node.op}'")
        left = self.operand(node.left)
        if left.absent:
            return FALSE
        key = f"exists\0{left.key}"
        if left.shape == PAIR:
            a, b = left.parts
            return Node(ast.to_text(node), lambda v: pc.or_(
                _valid(a.extract(v)), _valid(b.extract(v))))  # type: ignore[misc]
        pred: Pred = lambda a: a.is_valid()  # noqa: E731
        return self.shaped(node, left, pred, key)

    def binary(self, node: ast.BinaryCheck) -> Node:
        if node.op not in ast.OPERATORS:
            raise self.error(f"unknown operator '{node.op}'")
        left = self.operand(node.left)
        right = node.right
        if isinstance(right, ast.Literal | ast.ValueList):
            if left.absent:
                return FALSE
            return self.constant_check(node, left)
        if isinstance(right, ast.Val | ast.Transformer):
            rhs = self.operand(right.field if isinstance(right, ast.Val) else right)
            if left.absent or rhs.absent:
                return FALSE
            return self.field_check(node, left, rhs)
        raise self.error(f"{type(right).__name__} cannot be a right-hand side")

    def constant_check(self, node: ast.BinaryCheck, left: Operand) -> Node:
        literals = node.right.values if isinstance(node.right, ast.ValueList) else (node.right,)
        kind = sem.value_kind(left.ptype)
        try:
            consts = [sem.convert_literal(left.ptype, lit.value, node.op)  # type: ignore[union-attr]
                      for lit in literals]
            pred = _make_pred(kind, node.op, consts)
        except ValueError as exc:
            raise self.error(f"{ast.to_text(node)}: {exc}") from None
        key = f"{left.key}\0{node.op}\0{ast.to_text(node.right)}"
        if left.shape == PAIR:
            return self.pair_check(node, left, pred, key)
        return self.shaped(node, left, pred, key)

    def shaped(self, node: ast.UnaryCheck | ast.BinaryCheck, left: Operand, pred: Pred,
               key: str) -> Node:
        """A check of one value per row, or of a list's elements reduced per row."""
        text = ast.to_text(node)
        extract = left.extract
        assert extract is not None
        if left.shape == ONE:
            if node.modifier is not None:
                raise self.error(f"modifier '{node.modifier}' needs a multi-valued field")
            return Node(text, lambda v: _fill(_apply(v, extract(v), pred, key)))
        mode = node.modifier or self.list_mode(node, left)
        skip_first = left.shape == ANCESTORS

        def fn(view: View) -> Mask:
            lst = extract(view)
            values, offsets = _list_parts(lst)
            mask = _fill(_apply(view, values, pred, key))
            return _reduce(lst, mask, offsets, mode, skip_first)

        return Node(text, fn)

    def list_mode(self, node: ast.UnaryCheck | ast.BinaryCheck, left: Operand) -> str:
        """How a multi-valued field without modifier is reduced: ancestors match when any does;
        a list field takes `in` as "every item is listed" and `intersects` as "some item is"."""
        if left.shape == ANCESTORS or node.op in ("exists", "intersects"):
            return "anyof"
        if node.op == "in":
            return "allof"
        raise self.error(f"'{node.op}' cannot compare the list {left.key}; use in, "
                         "intersects, exists or a modifier (anyof/allof/oneof)")

    def pair_check(self, node: ast.BinaryCheck, left: Operand, pred: Pred, key: str) -> Node:
        """Filter-only fd fields: either side matches; `!=` needs every existing side to differ."""
        a, b = left.parts
        negate = node.op == "!="

        def fn(view: View) -> Mask:
            masks, valids = [], []
            for part in (a, b):
                assert part.extract is not None
                values = part.extract(view)
                masks.append(_fill(_apply(view, values, pred, f"{key}\0{part.key}")))
                valids.append(_valid(values))
            if not negate:
                return pc.or_(masks[0], masks[1])
            each = [pc.or_(m, pc.invert(ok)) for m, ok in zip(masks, valids, strict=True)]
            return pc.and_(pc.and_(each[0], each[1]), pc.or_(valids[0], valids[1]))

        return Node(ast.to_text(node), fn)

    def field_check(self, node: ast.BinaryCheck, left: Operand, rhs: Operand) -> Node:
        """A comparison with a value the same event supplies (`val(f)` or a transformer)."""
        if PAIR in (left.shape, rhs.shape) or node.op in ("regex", "pmatch"):
            raise self.error(f"{ast.to_text(node)}: no right-hand side field allowed here")
        try:
            pred2 = _make_pred2(sem.value_kind(left.ptype), node.op)
        except ValueError as exc:
            raise self.error(f"{ast.to_text(node)}: {exc}") from None
        if rhs.shape != ONE:
            return self.membership_check(node, left, rhs)
        lx, rx = left.extract, rhs.extract
        assert lx is not None and rx is not None
        if left.shape == ONE:
            return Node(ast.to_text(node), lambda v: _fill(pred2(_plain(lx(v)), _plain(rx(v)))))
        mode = node.modifier or self.list_mode(node, left)

        def fn(view: View) -> Mask:
            lst = lx(view)
            values, offsets = _list_parts(lst)
            repeated = _plain(rx(view)).take(_parents(offsets))
            mask = _fill(pred2(_plain(values), repeated))
            return _reduce(lst, mask, offsets, mode, left.shape == ANCESTORS)

        return Node(ast.to_text(node), fn)

    def membership_check(self, node: ast.BinaryCheck, left: Operand, rhs: Operand) -> Node:
        """`x in val(list)` / `list in val(list)`: membership in the same row's right list."""
        if node.op not in _SET_OPS or left.shape == ANCESTORS:
            raise self.error(f"{ast.to_text(node)}: a list on the right needs in/intersects")
        lx, rx = left.extract, rhs.extract
        assert lx is not None and rx is not None
        mode = "allof" if left.shape == LIST and node.op == "in" else "anyof"

        def keyed(view: View, lst: Any) -> tuple[Any, Any]:
            values, offsets = _list_parts(lst)
            rows = _parents(offsets).cast(pa.string())
            keys = pc.binary_join_element_wise(rows, _plain(values).cast(pa.string()), "\0")
            return keys, offsets

        def fn(view: View) -> Mask:
            left_values = lx(view)
            if left.shape == ONE:
                left_values = pa.ListArray.from_arrays(
                    pa.array(range(view.length + 1), pa.int32()), _plain(left_values))
            left_keys, offsets = keyed(view, left_values)
            right_keys, _ = keyed(view, rx(view))
            mask = _fill(pc.is_in(left_keys, value_set=right_keys))
            return _reduce(left_values, mask, offsets, mode, False)

        return Node(ast.to_text(node), fn)

    # -- operands --

    def operand(self, node: ast.Node) -> Operand:
        match node:
            case ast.Field():
                return self.field(node)
            case ast.Transformer():
                return self.transformer(node)
            case ast.TransformerList():
                return self.transformer_list(node)
            case ast.Literal(value=value):
                return Operand(ast.to_text(node), "PT_CHARBUF", ONE,
                               lambda v: _repeat(pa.scalar(value, pa.string()), v))
        raise self.error(f"{type(node).__name__} cannot be an operand")

    def column(self, name: str, ptype: str, shape: str = ONE) -> Operand:
        self.columns.add(name)
        return Operand(name, ptype, shape, lambda v: v.column(name))

    def absent(self, node: ast.Field, ptype: str) -> Operand:
        self.missing.append(node.text)
        return Operand(node.text, ptype, ONE, missing=(node.text,))

    def field(self, node: ast.Field) -> Operand:
        try:
            info = catalog.resolve(node.name, node.arg)
        except catalog.FieldError as exc:
            raise self.error(str(exc)) from None
        name, arg = node.name, node.arg
        if name in sem.FD_PAIRS:
            parts = tuple(self.column(c, info.type) for c in sem.FD_PAIRS[name])
            return Operand(node.text, info.type, PAIR, parts=parts)
        if name in sem.FD_NETS:
            return self.column(sem.FD_NETS[name], info.type)
        if name in ANCESTOR_COLUMNS:
            return self.ancestor(node, info.type)
        derived = self.derived(node, info)
        if derived is not None:
            return derived
        if arg is None and name in COLUMN_BY_NAME:
            return self.column(name, info.type, LIST if info.is_list else ONE)
        return self.absent(node, info.type)

    def ancestor(self, node: ast.Field, ptype: str) -> Operand:
        listed = self.column(node.name, ptype, ANCESTORS)
        if node.arg is None:
            return listed
        index = max(int(node.arg), 0)  # libsinsp walks no parent for a negative index
        if index >= ANCESTOR_DEPTH:
            return self.absent(node, ptype)
        return Operand(node.text, ptype, ONE, lambda v: _element(v.column(node.name), index))

    def derived(self, node: ast.Field, info: catalog.FieldInfo) -> Operand | None:
        """Fields computed from other columns: keyed env/mount fields, raw times, evt.type.is."""
        name, arg, text = node.name, node.arg, node.text
        if name == "proc.env" and arg is not None:
            return self.rewrite(text, "proc.env", info.type,
                                lambda d: _py_map(d, lambda e: sem.env_lookup(e, arg),
                                                  pa.string()))
        if name in sem.MOUNT_FIELDS and arg is not None:
            return self.rewrite(text, "container.mounts", info.type,
                                lambda d: _py_map(d, lambda m: sem.mount_lookup(m, name, arg),
                                                  pa.string()))
        if info.name == "evt.type.is":
            wanted = name.removeprefix("evt.type.is.")
            return self.rewrite(text, "evt.type", info.type,
                                lambda d: pc.equal(d, pa.scalar(wanted)).cast(pa.uint32()))
        if name in _TIME_FIELDS:
            self.columns.add("evt.time")
            return Operand(text, info.type, ONE, lambda v: _time_field(name, v.column("evt.time")))
        return None

    def rewrite(self, key: str, source: str, ptype: str, fn: Callable[[Any], Any]) -> Operand:
        self.columns.add(source)
        return Operand(key, ptype, ONE, lambda v: _derive(v, v.column(source), key, fn))

    def transformer(self, node: ast.Transformer) -> Operand:
        key = ast.to_text(node)
        if node.name in ("tolower", "toupper", "basename", "b64", "len"):
            if len(node.args) != 1:
                raise self.error(f"{key}: '{node.name}' takes one argument")
            inner = self.operand(node.args[0])
            if inner.absent:
                return Operand(key, inner.ptype, ONE, missing=inner.missing)
            return self.single_transformer(node.name, key, inner)
        builders = {"join": self.join, "concat": self.concat, "getopt": self.getopt}
        if node.name not in builders:
            raise self.error(f"unknown transformer '{node.name}'")
        args = [self.operand(a) for a in node.args]
        absent = [a for a in args if a.absent]
        if absent:
            return Operand(key, "PT_CHARBUF", ONE, missing=absent[0].missing)
        return builders[node.name](key, args)

    def single_transformer(self, name: str, key: str, inner: Operand) -> Operand:
        extract = inner.extract
        assert extract is not None
        if name == "len":
            if inner.shape in (LIST, ANCESTORS):
                return Operand(key, "PT_UINT64", ONE, lambda v: pc.list_value_length(
                    extract(v)).cast(pa.int64()))
            return Operand(key, "PT_UINT64", ONE, lambda v: _derive(
                v, extract(v), key, lambda a: pc.binary_length(a).cast(pa.int64())))
        if inner.shape != ONE:
            raise self.error(f"{key}: '{name}' takes one value, not a list")
        fn = _b64_decoder(inner.ptype) if name == "b64" else _SINGLE_TRANSFORMERS[name]
        return Operand(key, inner.ptype, ONE, lambda v: _derive(v, extract(v), key, fn))

    def join(self, key: str, args: list[Operand]) -> Operand:
        if len(args) != 2 or args[0].shape != ONE or args[1].shape not in (LIST, ANCESTORS):
            raise self.error(f"{key}: join() takes a separator and a list")
        sep, lst = args[0].extract, args[1].extract
        assert sep is not None and lst is not None
        return Operand(key, "PT_CHARBUF", ONE, lambda v: pc.binary_join(
            lst(v).cast(pa.list_(pa.string())), _plain(sep(v)).cast(pa.string())))

    def concat(self, key: str, args: list[Operand]) -> Operand:
        if len(args) < 2 or any(a.shape != ONE for a in args):
            raise self.error(f"{key}: concat() takes at least two single values")
        parts = [a.extract for a in args]

        def fn(view: View) -> Any:
            pieces = [_plain(p(view)).cast(pa.string()) for p in parts]  # type: ignore[misc]
            return pc.binary_join_element_wise(*pieces, _EMPTY)

        return Operand(key, "PT_CHARBUF", ONE, fn)

    def getopt(self, key: str, args: list[Operand]) -> Operand:
        if len(args) != 2 or args[0].shape not in (LIST, ANCESTORS) or args[1].shape != ONE:
            raise self.error(f"{key}: getopt() takes an argument list and an optstring")
        lst, opts = args[0].extract, args[1].extract
        assert lst is not None and opts is not None

        def fn(view: View) -> Any:
            # Per-row Python: getopt's scan has no Arrow equivalent (and is rarely used).
            rows = lst(view).cast(pa.list_(pa.string())).to_pylist()
            optstrings = _plain(opts(view)).to_pylist()
            return pa.array([None if r is None or o is None else sem.getopt(r, o)
                             for r, o in zip(rows, optstrings, strict=True)],
                            pa.list_(pa.string()))

        return Operand(key, "PT_CHARBUF", LIST, fn)

    def transformer_list(self, node: ast.TransformerList) -> Operand:
        items = [self.operand(i) for i in node.items]
        present = [i.extract for i in items if not i.absent]  # missing items are left out
        if any(i.shape != ONE for i in items):
            raise self.error(f"{ast.to_text(node)}: list items must be single values")
        if not present:
            return Operand(ast.to_text(node), "PT_CHARBUF", LIST, missing=items[0].missing)
        return Operand(ast.to_text(node), "PT_CHARBUF", LIST, lambda v: _rows_to_lists(
            [_plain(p(v)) for p in present], v.length))  # type: ignore[misc]


def _b64_decoder(ptype: str) -> Callable[[Any], Any]:
    if ptype == "PT_BYTEBUF":
        return lambda a: _py_map(a, sem.b64_decode, pa.binary())

    def to_text(value: str) -> str | None:
        decoded = sem.b64_decode(value)
        return None if decoded is None else sem.as_charbuf(decoded)

    return lambda a: _py_map(a, to_text, pa.string())


def _time_field(name: str, times: Any) -> Any:
    if name == "evt.time":
        # Falco prints local time; we print UTC (a trace does not record the capture's zone).
        return pc.strftime(times, format="%H:%M:%S")
    ns, second = times.cast(pa.int64()), _int(_NS)
    if name == "evt.rawtime.s":
        return pc.divide(ns, second)
    if name == "evt.rawtime.ns":
        return pc.subtract(ns, pc.multiply(pc.divide(ns, second), second))
    return ns
