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

The parts, one module each:
- `analyze.replay_boolean`: nodes and the short-circuit and/or/not;
- `analyze.replay_operands`: fields and transformers as value extractors, with their shape (one
  value, a list, the ancestors, a pair of columns);
- `analyze.replay_kernels`: what each operator and transformer does to values, per value kind
  (operator meaning itself lives in `analyze.semantics`);
- `analyze.replay_arrays`: Arrow helpers over dictionaries, lists and masks;
- here: the checks (a shaped left side, an operator, constants or a field on the right) and
  `compile_condition`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from analyze import ast
from analyze import semantics as sem
from analyze.replay_arrays import (
    Mask,
    Pred,
    apply,
    fill,
    list_parts,
    parents,
    plain,
    reduce_lists,
    valid,
)
from analyze.replay_boolean import FALSE, Node, and_node, not_node, or_node
from analyze.replay_kernels import SET_OPS, make_pair_pred, make_pred
from analyze.replay_operands import ANCESTORS, LIST, ONE, PAIR, Operand, OperandCompiler

if TYPE_CHECKING:
    from analyze.replay import View

__all__ = ["CompiledCondition", "Node", "compile_condition"]


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


class _Compiler(OperandCompiler):
    """The checks of a condition, on top of its operands."""

    # -- boolean structure --

    def expr(self, node: ast.Node) -> Node:
        match node:
            case ast.And(items=items):
                return and_node([self.expr(i) for i in items])
            case ast.Or(items=items):
                return or_node([self.expr(i) for i in items])
            case ast.Not(item=item):
                return not_node(self.expr(item))
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
                valid(a.extract(v)), valid(b.extract(v))))  # type: ignore[misc]
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
            pred = make_pred(kind, node.op, consts)
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
            return Node(text, lambda v: fill(apply(v, extract(v), pred, key)))
        mode = node.modifier or self.list_mode(node, left)
        skip_first = left.shape == ANCESTORS

        def fn(view: View) -> Mask:
            lst = extract(view)
            values, offsets = list_parts(lst)
            mask = fill(apply(view, values, pred, key))
            return reduce_lists(lst, mask, offsets, mode, skip_first)

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
                masks.append(fill(apply(view, values, pred, f"{key}\0{part.key}")))
                valids.append(valid(values))
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
            pred2 = make_pair_pred(sem.value_kind(left.ptype), node.op)
        except ValueError as exc:
            raise self.error(f"{ast.to_text(node)}: {exc}") from None
        if rhs.shape != ONE:
            return self.membership_check(node, left, rhs)
        lx, rx = left.extract, rhs.extract
        assert lx is not None and rx is not None
        if left.shape == ONE:
            return Node(ast.to_text(node), lambda v: fill(pred2(plain(lx(v)), plain(rx(v)))))
        mode = node.modifier or self.list_mode(node, left)

        def fn(view: View) -> Mask:
            lst = lx(view)
            values, offsets = list_parts(lst)
            repeated = plain(rx(view)).take(parents(offsets))
            mask = fill(pred2(plain(values), repeated))
            return reduce_lists(lst, mask, offsets, mode, left.shape == ANCESTORS)

        return Node(ast.to_text(node), fn)

    def membership_check(self, node: ast.BinaryCheck, left: Operand, rhs: Operand) -> Node:
        """`x in val(list)` / `list in val(list)`: membership in the same row's right list."""
        if node.op not in SET_OPS or left.shape == ANCESTORS:
            raise self.error(f"{ast.to_text(node)}: a list on the right needs in/intersects")
        lx, rx = left.extract, rhs.extract
        assert lx is not None and rx is not None
        mode = "allof" if left.shape == LIST and node.op == "in" else "anyof"

        def keyed(view: View, lst: Any) -> tuple[Any, Any]:
            values, offsets = list_parts(lst)
            rows = parents(offsets).cast(pa.string())
            keys = pc.binary_join_element_wise(rows, plain(values).cast(pa.string()), "\0")
            return keys, offsets

        def fn(view: View) -> Mask:
            left_values = lx(view)
            if left.shape == ONE:
                left_values = pa.ListArray.from_arrays(
                    pa.array(range(view.length + 1), pa.int32()), plain(left_values))
            left_keys, offsets = keyed(view, left_values)
            right_keys, _ = keyed(view, rx(view))
            mask = fill(pc.is_in(left_keys, value_set=right_keys))
            return reduce_lists(left_values, mask, offsets, mode, False)

        return Node(ast.to_text(node), fn)
