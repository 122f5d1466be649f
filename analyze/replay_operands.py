"""Operands of the replay engine: fields and transformers compiled to value extractors.

An `Operand` says how to get a field's or transformer's values for a `View`, with the libsinsp
type of one value and the operand's shape: ONE value per row; a LIST field (`fd.types`, getopt(),
`(a, b)` in a transformer); the ANCESTORS of the process (`proc.aname` bare: list column, element 0
is the process itself and is skipped); a PAIR of columns (filter-only `fd.ip`, `fd.port`, ...).
A field the trace does not record is `absent`: checks on it compile to false, and the field is
listed in `missing` so the engine can warn about it.

`OperandCompiler` builds them and records the columns a condition reads; the condition compiler
(`analyze.replay_compile`) extends it with the checks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from analyze import ast
from analyze import semantics as sem
from analyze.errors import RuleError
from analyze.replay_arrays import (
    EMPTY_STRING,
    derive,
    element,
    plain,
    py_map,
    repeat,
    rows_to_lists,
)
from analyze.replay_kernels import SINGLE_TRANSFORMERS, TIME_FIELDS, b64_decoder, time_field
from schemas import catalog
from schemas.trace import ANCESTOR_COLUMNS, ANCESTOR_DEPTH, COLUMN_BY_NAME

if TYPE_CHECKING:
    from analyze.replay import View

ONE, LIST, ANCESTORS, PAIR = "one", "list", "ancestors", "pair"


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


@dataclass
class OperandCompiler:
    """Compiles the operands of one rule's condition, collecting the columns they read and the
    fields the trace does not record."""

    rule: str
    columns: set[str] = field(default_factory=set)
    missing: list[str] = field(default_factory=list)

    def error(self, why: str) -> RuleError:
        return RuleError(f"the replay engine cannot run rule '{self.rule}': {why}",
                         code="replay-unsupported")

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
                               lambda v: repeat(pa.scalar(value, pa.string()), v))
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
        return Operand(node.text, ptype, ONE, lambda v: element(v.column(node.name), index))

    def derived(self, node: ast.Field, info: catalog.FieldInfo) -> Operand | None:
        """Fields computed from other columns: keyed env/mount fields, raw times, evt.type.is."""
        name, arg, text = node.name, node.arg, node.text
        if name == "proc.env" and arg is not None:
            return self.rewrite(text, "proc.env", info.type,
                                lambda d: py_map(d, lambda e: sem.env_lookup(e, arg),
                                                  pa.string()))
        if name in sem.MOUNT_FIELDS and arg is not None:
            return self.rewrite(text, "container.mounts", info.type,
                                lambda d: py_map(d, lambda m: sem.mount_lookup(m, name, arg),
                                                  pa.string()))
        if info.name == "evt.type.is":
            wanted = name.removeprefix("evt.type.is.")
            return self.rewrite(text, "evt.type", info.type,
                                lambda d: pc.equal(d, pa.scalar(wanted)).cast(pa.uint32()))
        if name in TIME_FIELDS:
            self.columns.add("evt.time")
            return Operand(text, info.type, ONE, lambda v: time_field(name, v.column("evt.time")))
        return None

    def rewrite(self, key: str, source: str, ptype: str, fn: Callable[[Any], Any]) -> Operand:
        self.columns.add(source)
        return Operand(key, ptype, ONE, lambda v: derive(v, v.column(source), key, fn))

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
            return Operand(key, "PT_UINT64", ONE, lambda v: derive(
                v, extract(v), key, lambda a: pc.binary_length(a).cast(pa.int64())))
        if inner.shape != ONE:
            raise self.error(f"{key}: '{name}' takes one value, not a list")
        fn = b64_decoder(inner.ptype) if name == "b64" else SINGLE_TRANSFORMERS[name]
        return Operand(key, inner.ptype, ONE, lambda v: derive(v, extract(v), key, fn))

    def join(self, key: str, args: list[Operand]) -> Operand:
        if len(args) != 2 or args[0].shape != ONE or args[1].shape not in (LIST, ANCESTORS):
            raise self.error(f"{key}: join() takes a separator and a list")
        sep, lst = args[0].extract, args[1].extract
        assert sep is not None and lst is not None
        return Operand(key, "PT_CHARBUF", ONE, lambda v: pc.binary_join(
            lst(v).cast(pa.list_(pa.string())), plain(sep(v)).cast(pa.string())))

    def concat(self, key: str, args: list[Operand]) -> Operand:
        if len(args) < 2 or any(a.shape != ONE for a in args):
            raise self.error(f"{key}: concat() takes at least two single values")
        parts = [a.extract for a in args]

        def fn(view: View) -> Any:
            pieces = [plain(p(view)).cast(pa.string()) for p in parts]  # type: ignore[misc]
            return pc.binary_join_element_wise(*pieces, EMPTY_STRING)

        return Operand(key, "PT_CHARBUF", ONE, fn)

    def getopt(self, key: str, args: list[Operand]) -> Operand:
        if len(args) != 2 or args[0].shape not in (LIST, ANCESTORS) or args[1].shape != ONE:
            raise self.error(f"{key}: getopt() takes an argument list and an optstring")
        lst, opts = args[0].extract, args[1].extract
        assert lst is not None and opts is not None

        def fn(view: View) -> Any:
            # Per-row Python: getopt's scan has no Arrow equivalent (and is rarely used).
            rows = lst(view).cast(pa.list_(pa.string())).to_pylist()
            optstrings = plain(opts(view)).to_pylist()
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
        return Operand(ast.to_text(node), "PT_CHARBUF", LIST, lambda v: rows_to_lists(
            [plain(p(v)) for p in present], v.length))  # type: ignore[misc]
