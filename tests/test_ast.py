"""AST tests: node set, equality, traversal, to_text / quote and to_dict."""

from __future__ import annotations

import dataclasses
import inspect
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from analyze import ast
from analyze.ast import (
    And,
    BinaryCheck,
    Field,
    Literal,
    MacroRef,
    Node,
    Not,
    Or,
    Transformer,
    TransformerList,
    UnaryCheck,
    Val,
    ValueList,
    fields_of,
    quote,
    to_dict,
    to_text,
)
from analyze.parser import parse_condition

# One instance of every node type, rendered: the whole surface of to_text.
SAMPLES: list[tuple[Node, str]] = [
    (And((MacroRef("a"), MacroRef("b"))), "(a and b)"),
    (Or((MacroRef("a"), MacroRef("b"), MacroRef("c"))), "(a or b or c)"),
    (Not(MacroRef("a")), "not a"),
    (Not(And((MacroRef("a"), MacroRef("b")))), "not (a and b)"),
    (MacroRef("spawned_process"), "spawned_process"),
    (UnaryCheck(Field("proc.name"), "exists"), "proc.name exists"),
    (UnaryCheck(Field("proc.aname"), "exists", "anyof"), "proc.aname anyof exists"),
    (BinaryCheck(Field("proc.name"), "=", Literal("bash")), "proc.name = bash"),
    (BinaryCheck(Field("proc.aname", "2"), "startswith", Literal("a b"), "allof"),
     'proc.aname[2] allof startswith "a b"'),
    (Field("proc.env", "MY VAR"), 'proc.env["MY VAR"]'),
    (Field("proc.env", "HOME"), "proc.env[HOME]"),
    (Literal("x"), "x"),
    (Literal("0x1F"), "0x1F"),
    (ValueList((Literal("a"), Literal("b c"), Literal(""))), '(a, "b c", "")'),
    (ValueList(()), "()"),
    (TransformerList((Field("proc.name"), Literal("1"))), "(proc.name, 1)"),
    (Transformer("tolower", (Field("proc.name"),)), "tolower(proc.name)"),
    (Transformer("join", (Literal(",", quoted=True), TransformerList((Field("a.b"),)))),
     'join(",", (a.b))'),
    (Val(Field("proc.pname")), "val(proc.pname)"),
]


def test_node_types_are_complete() -> None:
    defined = {obj for _, obj in inspect.getmembers(ast, inspect.isclass)
               if issubclass(obj, Node) and obj is not Node}
    assert set(ast.NODE_TYPES) == defined
    assert {type(node) for node, _ in SAMPLES} == defined


def test_operator_groups() -> None:
    groups = (ast.UNARY_OPERATORS, ast.NUMERIC_OPERATORS, ast.STRING_OPERATORS,
              ast.LIST_OPERATORS)
    assert sum(groups, ()) == ast.OPERATORS
    assert len(set(ast.OPERATORS)) == len(ast.OPERATORS) == 20
    assert ast.MODIFIERS == ("anyof", "allof", "oneof")
    assert len(set(ast.TRANSFORMERS)) == len(ast.TRANSFORMERS) == 8


@pytest.mark.parametrize(("node", "text"), SAMPLES, ids=[t for _, t in SAMPLES])
def test_to_text(node: Node, text: str) -> None:
    assert to_text(node) == text


def test_to_text_rejects_an_unknown_node() -> None:
    @dataclasses.dataclass(frozen=True)
    class Stray(Node):
        pass

    with pytest.raises(TypeError, match=r"^to_text: unknown node Stray$"):
        to_text(Stray())


def test_equality_ignores_position_and_quoting() -> None:
    assert Literal("a", quoted=True, pos=3) == Literal("a", pos=9)
    assert MacroRef("a", pos=1) == MacroRef("a")
    assert hash(MacroRef("a", pos=1)) == hash(MacroRef("a"))
    assert Literal("a") != Literal("b")
    assert Field("a.b") != Field("a.b", "")
    assert BinaryCheck(Field("a.b"), "=", Literal("x")) != BinaryCheck(
        Field("a.b"), "=", Literal("x"), "anyof")
    items = (MacroRef("a"), MacroRef("b"))
    conjunction: Node = And(items)
    disjunction: Node = Or(items)
    assert conjunction != disjunction
    assert "pos" not in repr(MacroRef("a", pos=5))


def test_nodes_are_frozen() -> None:
    node = MacroRef("a")
    with pytest.raises(dataclasses.FrozenInstanceError):
        node.name = "b"  # type: ignore[misc]


def test_field_text() -> None:
    assert Field("proc.name").text == "proc.name"
    assert Field("proc.aname", "2").text == "proc.aname[2]"


def test_children_and_walk_are_depth_first_in_order() -> None:
    tree = parse_condition("a and (not b.c in (x, y) or tolower(d.e) = val(f.g))")
    names = [type(n).__name__ for n in tree.walk()]
    assert names == [
        "And", "MacroRef", "Or", "Not", "BinaryCheck", "Field", "ValueList", "Literal",
        "Literal", "BinaryCheck", "Transformer", "Field", "Val", "Field",
    ]
    assert [type(c).__name__ for c in tree.children()] == ["MacroRef", "Or"]
    assert list(MacroRef("a").children()) == []


def test_walk_is_iterative() -> None:
    tree: ast.Expr = MacroRef("a")
    for _ in range(50_000):
        tree = Not(tree)
    assert sum(1 for _ in tree.walk()) == 50_001


def test_fields_of() -> None:
    tree = parse_condition(
        'proc.name = val(proc.pname) and join(",", (fd.name, tolower(proc.env[HOME]))) exists')
    assert [f.text for f in fields_of(tree)] == [
        "proc.name", "proc.pname", "fd.name", "proc.env[HOME]"]
    assert fields_of(MacroRef("a")) == []


def test_to_dict() -> None:
    tree = parse_condition('not proc.aname[2] anyof in (a, "b c") or tolower(fd.name) exists')
    assert to_dict(tree) == {
        "type": "Or",
        "items": [
            {"type": "Not", "item": {
                "type": "BinaryCheck",
                "left": {"type": "Field", "name": "proc.aname", "arg": "2"},
                "op": "in",
                "right": {"type": "ValueList", "values": [
                    {"type": "Literal", "value": "a", "quoted": False},
                    {"type": "Literal", "value": "b c", "quoted": True},
                ]},
                "modifier": "anyof",
            }},
            {"type": "UnaryCheck",
             "left": {"type": "Transformer", "name": "tolower", "args": [
                 {"type": "Field", "name": "fd.name", "arg": None}]},
             "op": "exists",
             "modifier": None},
        ],
    }


@pytest.mark.parametrize(("node", "_text"), SAMPLES, ids=[t for _, t in SAMPLES])
def test_to_dict_is_json_and_complete(node: Node, _text: str) -> None:
    data = to_dict(node)
    assert json.loads(json.dumps(data)) == data
    assert data["type"] == type(node).__name__
    names = {f.name for f in dataclasses.fields(node)} - {"pos"}
    assert set(data) == names | {"type"}


# ---- quote: what to_text writes must read back as the same value --------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("bash", "bash"),
        ("/usr/bin/*", "/usr/bin/*"),
        ("é", "é"),
        ("", '""'),
        ("a b", '"a b"'),
        ("a,b", '"a,b"'),
        ("a=b", '"a=b"'),
        ("(a)", '"(a)"'),
        ("a[0]", '"a[0]"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("it's", '"it\'s"'),
        ("a\\b", '"a\\\\b"'),
        ("C:\\", '"C:\\ "'),  # a quote right after a backslash would not close the string
        ("\\\\", '"\\\\\\ "'),
        ("\n\r\t\b\f", '"\\n\\r\\t\\b\\f"'),
    ],
)
def test_quote(value: str, text: str) -> None:
    assert quote(value) == text


def _read_back(template: str, value: str) -> Any:
    tree = parse_condition(template.format(quote(value)))
    if isinstance(tree, UnaryCheck):
        assert isinstance(tree.left, Field)
        return tree.left.arg
    assert isinstance(tree, BinaryCheck)
    if isinstance(tree.right, ValueList):
        return tree.right.values[0].value
    assert isinstance(tree.right, Literal)
    return tree.right.value


_QUOTING = st.one_of(
    st.text(max_size=12),
    st.text(alphabet=st.sampled_from(list("a \\\"'()[],=\t\n\r\b\f\v/")), max_size=12),
)


@settings(max_examples=400, derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(_QUOTING)
@example("\v")
@example("a\vb")
def test_quote_reads_back_everywhere(value: str) -> None:
    assert _read_back("proc.name = {}", value) == value
    assert _read_back("proc.name in ({}, x)", value) == value
    assert _read_back("proc.env[{}] exists", value) == value
