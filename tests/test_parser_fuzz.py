"""Property tests of the parser: it never crashes, and its canonical text reads back unchanged.

Examples are bounded and derandomized so the suite stays fast and repeatable; set
SYSREPLAY_FUZZ_EXAMPLES (e.g. 20000) to explore with fresh random examples instead.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from analyze import ast
from analyze.ast import (
    And,
    BinaryCheck,
    Field,
    Literal,
    MacroRef,
    Not,
    Or,
    Transformer,
    TransformerList,
    UnaryCheck,
    Val,
    ValueList,
    to_text,
)
from analyze.errors import RuleError, RuleSyntaxError
from analyze.parser import parse_condition

_FUZZ = int(os.environ.get("SYSREPLAY_FUZZ_EXAMPLES", "0"))


def bounded(examples: int) -> settings:
    return settings(
        max_examples=_FUZZ or examples,
        derandomize=not _FUZZ,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )


# ---- (1) arbitrary text never raises anything but RuleError -------------------------------------

# Pieces of the grammar, glued at random, reach far more parser states than uniform text.
_PIECES = [
    "proc.name", "fd.name", "evt.arg", "proc.env", "a", "b_1", "x.y.z", "not", "not ", "not(",
    "and", "or", " and ", " or ", "and(", "or(", " ", "  ", "\t", "\n", "\r", "\b", "\f", "\v",
    "(", ")", "[", "]", "[0]", "[HOME]", '"', "'", "\\", '\\"', "\\'", "\\\\", "\\n", "\\x", "\\ ",
    ",", ", ", "=", "==", "!=", "<", "<=", ">", ">=", " exists", "exists", " in ", "in", "in(",
    " intersects ", " pmatch ", " contains ", "contains", " glob ", " startswith ", " regex ",
    " anyof ", " allof ", "oneof ", "val(", "tolower(", "toupper(", "b64(", "basename(", "len(",
    "join(", "concat(", "getopt(", "0", "1", "-1", "+2.5", "1e+3", "0x1F", "0x", ".", "é", "漢",
    "\x00", '"a b"', "'c'", "()", "(a, b)", "bash", "/tmp/*",
]
_GRAMMARISH = st.lists(st.sampled_from(_PIECES), max_size=25).map("".join)
_ANY_TEXT = st.one_of(st.text(), st.text(alphabet=st.characters(codec="ascii")), _GRAMMARISH)


def _check_outcome(text: str) -> ast.Expr | None:
    try:
        tree = parse_condition(text)
    except RuleSyntaxError as err:
        assert err.message
        assert err.text == text
        assert err.position is not None
        assert 0 <= err.position.offset <= len(text)
        before = text[: err.position.offset]
        assert err.position.line == before.count("\n") + 1
        assert err.position.col == len(before) - (before.rfind("\n") + 1) + 1
        return None
    except RuleError as err:  # a RuleError, but the parser only raises syntax errors
        raise AssertionError(f"unexpected {type(err).__name__} for {text!r}") from None
    assert isinstance(tree, And | Or | Not | MacroRef | UnaryCheck | BinaryCheck)
    for node in tree.walk():
        assert 0 <= node.pos <= len(text)
    return tree


@bounded(1500)
@given(_ANY_TEXT)
@example("(" * 100_000)
@example('"\\')
@example("proc.name = '\\")
@example("proc.env[\\")
@example("a\r\nb")
def test_arbitrary_text_never_crashes(text: str) -> None:
    _check_outcome(text)


@bounded(1500)
@given(_GRAMMARISH)
@example('concat(a.b, "x") exists')
@example("not(not(a))")
def test_whatever_parses_round_trips(text: str) -> None:
    tree = _check_outcome(text)
    if tree is not None:
        canonical = to_text(tree)
        assert parse_condition(canonical) == tree
        assert to_text(parse_condition(canonical)) == canonical


# ---- (2) generated trees survive to_text -> parse_condition --------------------------------------

_NAME = st.from_regex(r"[a-zA-Z][a-zA-Z0-9_]{0,5}", fullmatch=True)
_FIELD_NAME = st.from_regex(r"[a-zA-Z][a-zA-Z0-9_]{0,4}(\.[a-zA-Z][a-zA-Z0-9_]{0,4}){1,2}",
                            fullmatch=True)
_NUMBER = st.one_of(
    st.from_regex(r"[+\-]?[0-9]{1,4}(\.[0-9]{0,3})?([eE][+\-][0-9]{1,2})?", fullmatch=True),
    st.from_regex(r"0[xX][0-9a-fA-F]{1,6}", fullmatch=True),
)
# Strings that stress quoting: quotes, backslashes, blanks, parentheses, brackets, commas, unicode.
_STRING = st.one_of(
    st.text(max_size=8),
    st.text(alphabet=st.sampled_from(list("ab \\\"'()[],=\t\n\b\f\r\v/é漢")), max_size=8),
)

_FIELDS = st.builds(Field, _FIELD_NAME, st.none() | _STRING)
_NUM_LITERALS = st.builds(Literal, _NUMBER)
_QUOTED_LITERALS = st.builds(Literal, _STRING, st.just(True))


def _transformers(depth: int) -> st.SearchStrategy[Transformer]:
    inner: st.SearchStrategy[Any] = _FIELDS
    if depth > 0:
        inner = _FIELDS | _transformers(depth - 1)
    item = inner | _NUM_LITERALS | _QUOTED_LITERALS
    lists = st.builds(TransformerList, st.lists(item, max_size=3).map(tuple))
    args = st.lists(item | lists, min_size=1, max_size=3).map(tuple)
    return st.builds(Transformer, st.sampled_from(ast.TRANSFORMERS), args)


_OPERANDS = _FIELDS | _transformers(2)
_MODIFIERS = st.none() | st.sampled_from(ast.MODIFIERS)
_ON_RIGHT = _transformers(1) | st.builds(Val, _FIELDS)


def _checks() -> st.SearchStrategy[ast.Expr]:
    def binary(ops: tuple[str, ...], values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return st.builds(BinaryCheck, _OPERANDS, st.sampled_from(ops), values | _ON_RIGHT,
                         _MODIFIERS)

    value_lists = st.builds(ValueList, st.lists(st.builds(Literal, _STRING), max_size=4).map(tuple))
    return st.one_of(
        st.builds(UnaryCheck, _OPERANDS, st.just("exists"), _MODIFIERS),
        binary(ast.NUMERIC_OPERATORS, _NUM_LITERALS),
        binary(ast.STRING_OPERATORS, st.builds(Literal, _STRING)),
        binary(ast.LIST_OPERATORS, value_lists),
    )


def _exprs(depth: int) -> st.SearchStrategy[ast.Expr]:
    """Trees nested at most `depth` and/or/not deep: well inside the parser's depth limit."""
    leaves = st.builds(MacroRef, _NAME) | _checks()
    if depth == 0:
        return leaves
    sub = _exprs(depth - 1)
    items = st.lists(sub, min_size=2, max_size=3).map(tuple)
    return st.one_of(leaves, st.builds(And, items), st.builds(Or, items), st.builds(Not, sub))


@bounded(600)
@given(_exprs(3))
@example(BinaryCheck(Transformer("concat", (Field("a.b"), Literal("x", quoted=True))), "=",
                     Literal("y")))
@example(Not(Not(MacroRef("a"))))
@example(And((MacroRef("not"), MacroRef("b"))))
@example(BinaryCheck(Field("a.b"), "=", Literal("\v")))
def test_generated_trees_round_trip(tree: ast.Expr) -> None:
    text = to_text(tree)
    assert parse_condition(text) == tree
    assert to_text(parse_condition(text)) == text


# ---- (3) every condition of the upstream Falco rule files ---------------------------------------

# The shared reference copy next to the checkout, as the Makefile finds it (../shared).
ANCHORS = Path(__file__).resolve().parents[2] / "shared" / "anchors" / "falco-rules"
RULE_FILES = [ANCHORS / "rules" / "falco_rules.yaml",
              ANCHORS / "rules-legacy" / "falco_rules-4.0.0.yaml"]


def _upstream_conditions() -> list[Any]:
    params = []
    for path in RULE_FILES:
        if not path.exists():
            continue
        for item in yaml.safe_load(path.read_text(encoding="utf-8")) or []:
            if isinstance(item, dict) and isinstance(item.get("condition"), str):
                kind = next((k for k in ("rule", "macro") if k in item), "item")
                name = f"{path.parent.name}/{kind}:{item[kind]}"
                params.append(pytest.param(item["condition"], id=name))
    return params


UPSTREAM = _upstream_conditions()


def test_upstream_rule_files_are_read() -> None:
    if not all(p.exists() for p in RULE_FILES):
        pytest.skip("upstream Falco rule files are not available")
    assert len(UPSTREAM) > 200


@pytest.mark.parametrize("condition", UPSTREAM)
def test_upstream_conditions_round_trip(condition: str) -> None:
    tree = parse_condition(condition)
    text = to_text(tree)
    assert parse_condition(text) == tree
    assert to_text(parse_condition(text)) == text
