"""Parser tests: golden files in tests/fixtures/parser/*.txt, plus what a fixture line cannot hold.

A golden line is `input ;; expected to_text` or `input ;; error message ;; line:col`. Lines that
start with '#' and blank lines are skipped. Characters a line cannot hold are written as control
pictures: ␤ \\n, ␉ \\t, ␈ \\b, ␍ \\r, ␌ \\f, ␋ \\v, and ␠ for a space at either end.
Backslashes and quotes are literal: `"a\\nb"` in a fixture is the condition text `"a\\nb"`.
"""

from __future__ import annotations

import ast as pyast
import contextlib
import re
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from analyze import ast, parser
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
from analyze.parser import LOADER_MAX_DEPTH, MAX_DEPTH, parse_condition, unescape

FIXTURES = Path(__file__).parent / "fixtures" / "parser"
PICTURES = {
    "␤": "\n", "␉": "\t", "␈": "\b", "␍": "\r", "␌": "\f", "␋": "\v", "␠": " ",
}


def decode(text: str) -> str:
    return "".join(PICTURES.get(c, c) for c in text)


@dataclass(frozen=True)
class Golden:
    where: str  # "file.txt:line", the test id
    text: str  # the condition, decoded
    expected: str  # to_text for a valid case, the message for an error case
    position: tuple[int, int] | None  # (line, col) for an error case

    @property
    def is_error(self) -> bool:
        return self.position is not None


def load_goldens() -> list[Golden]:
    cases = []
    for path in sorted(FIXTURES.glob("*.txt")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip() or line.startswith("#"):
                continue
            where = f"{path.name}:{number}"
            parts = line.split(" ;; ")
            if line != line.strip() or len(parts) not in (2, 3):
                raise ValueError(f"{where}: malformed golden line (use ␠ for edge spaces)")
            if len(parts) == 2:
                cases.append(Golden(where, decode(parts[0]), decode(parts[1]), None))
            else:
                line_no, col = (int(x) for x in parts[2].split(":"))
                cases.append(Golden(where, decode(parts[0]), parts[1], (line_no, col)))
    return cases


GOLDENS = load_goldens()
VALID = [g for g in GOLDENS if not g.is_error]
ERRORS = [g for g in GOLDENS if g.is_error]


def ids(cases: list[Golden]) -> list[str]:
    return [c.where for c in cases]


def syntax_error(text: object) -> RuleSyntaxError:
    with pytest.raises(RuleSyntaxError) as info:
        parse_condition(text)  # type: ignore[arg-type]
    return info.value


# ---- golden files --------------------------------------------------------------------------------


@pytest.mark.parametrize("case", VALID, ids=ids(VALID))
def test_golden_valid(case: Golden) -> None:
    assert to_text(parse_condition(case.text)) == case.expected


@pytest.mark.parametrize("case", VALID, ids=ids(VALID))
def test_golden_round_trip(case: Golden) -> None:
    """The canonical text parses back to the same tree, and is its own canonical text."""
    tree = parse_condition(case.text)
    text = to_text(tree)
    assert parse_condition(text) == tree
    assert to_text(parse_condition(text)) == text


@pytest.mark.parametrize("case", ERRORS, ids=ids(ERRORS))
def test_golden_error(case: Golden) -> None:
    err = syntax_error(case.text)
    assert err.message == case.expected
    assert err.position is not None
    assert (err.position.line, err.position.col) == case.position
    assert err.text == case.text
    assert err.code == "syntax"
    line, col = case.position
    assert str(err) == f"{case.expected} (condition line {line}, column {col})"


def test_golden_files_are_well_formed() -> None:
    assert len(VALID) > 200 and len(ERRORS) > 100
    assert len({(g.text, g.expected) for g in GOLDENS}) == len(GOLDENS), "duplicate golden lines"


# ---- coverage of the language by the golden files -----------------------------------------------


def _valid_nodes() -> list[ast.Node]:
    """Nodes of every valid golden (a golden that fails to parse fails on its own, not here)."""
    nodes: list[ast.Node] = []
    for case in VALID:
        with contextlib.suppress(RuleSyntaxError):
            nodes.extend(parse_condition(case.text).walk())
    return nodes


def test_goldens_cover_every_operator_and_modifier() -> None:
    nodes = _valid_nodes()
    ops = {n.op for n in nodes if isinstance(n, UnaryCheck | BinaryCheck)}
    modifiers = {n.modifier for n in nodes if isinstance(n, UnaryCheck | BinaryCheck)}
    assert ops == set(ast.OPERATORS)
    assert modifiers == {None, *ast.MODIFIERS}


def test_goldens_cover_every_transformer_on_both_sides() -> None:
    checks = [n for n in _valid_nodes() if isinstance(n, UnaryCheck | BinaryCheck)]
    left = {n.left.name for n in checks if isinstance(n.left, Transformer)}
    right = {n.right.name for n in checks
             if isinstance(n, BinaryCheck) and isinstance(n.right, Transformer)}
    assert left == right == set(ast.TRANSFORMERS)
    # a transformer and val() after a numeric, a string and a list operator
    groups = (ast.NUMERIC_OPERATORS, ast.STRING_OPERATORS, ast.LIST_OPERATORS)
    kinds = {(next(i for i, g in enumerate(groups) if n.op in g), type(n.right))
             for n in checks
             if isinstance(n, BinaryCheck) and isinstance(n.right, Transformer | Val)}
    assert kinds == {(i, kind) for i in range(3) for kind in (Transformer, Val)}


def test_goldens_cover_every_node_type() -> None:
    assert {type(n) for n in _valid_nodes()} == set(ast.NODE_TYPES)


def _error_templates() -> list[re.Pattern[str]]:
    """Every message parser.py can raise, as a regex (f-string holes become `.*`)."""
    tree = pyast.parse(Path(parser.__file__).read_text(encoding="utf-8"))
    templates = []
    for node in pyast.walk(tree):
        if not (isinstance(node, pyast.Call) and node.args):
            continue
        func = node.func
        name = func.attr if isinstance(func, pyast.Attribute) else getattr(func, "id", "")
        if name not in ("error", "ValueError", "RuleSyntaxError"):
            continue
        arg = node.args[0]
        if isinstance(arg, pyast.Constant) and isinstance(arg.value, str):
            templates.append(re.compile(re.escape(arg.value)))
        elif isinstance(arg, pyast.JoinedStr):
            pieces = [re.escape(str(v.value)) if isinstance(v, pyast.Constant) else ".*"
                      for v in arg.values]
            templates.append(re.compile("".join(pieces)))
    return templates


# Messages checked by the explicit tests below rather than by golden lines.
EXPLICIT_MESSAGES = ["filter input string is empty", "a condition must be a string, not int"]


def test_goldens_cover_every_error_message() -> None:
    templates = _error_templates()
    assert len(templates) >= 20
    seen = [g.expected for g in ERRORS] + EXPLICIT_MESSAGES
    missing = [t.pattern for t in templates if not any(t.fullmatch(m) for m in seen)]
    assert missing == []


# ---- what a golden line cannot hold -------------------------------------------------------------


def test_empty_input() -> None:
    err = syntax_error("")
    assert err.message == "filter input string is empty"
    assert err.position is not None
    assert (err.position.offset, err.position.line, err.position.col) == (0, 1, 1)


@pytest.mark.parametrize(
    ("value", "type_name"),
    [(None, "NoneType"), (42, "int"), (b"proc.name exists", "bytes"), (["a"], "list")],
)
def test_non_string_input(value: object, type_name: str) -> None:
    err = syntax_error(value)
    assert err.message == f"a condition must be a string, not {type_name}"
    assert err.position is None and err.text is None
    assert isinstance(err, RuleError)


def test_error_snippet_points_at_the_offending_text() -> None:
    err = syntax_error("a and\n  proc.name bash or b")
    assert err.position is not None
    assert (err.position.offset, err.position.line, err.position.col) == (18, 2, 13)
    assert err.snippet() == "  proc.name bash or b\n            ^"


# ---- the depth limit -----------------------------------------------------------------------------


def test_max_depth_matches_libsinsp_default() -> None:
    assert MAX_DEPTH == 100


@pytest.mark.parametrize(
    "text",
    [
        "(" * 100_000,
        "(" * 100_000 + "a" + ")" * 100_000,
        "not(" * 100_000,
        "not (" * 100_000,
        "a and (" * 100_000,
        "a or(" * 100_000,
        "tolower(" * 100_000,
        "proc.name = " + "tolower(" * 100_000,
        "proc.name in " + "basename(" * 100_000,
        "join(" * 100_000,
    ],
    ids=["parens", "balanced", "not(", "not (", "and (", "or(", "left transformer",
         "right transformer", "list transformer", "join("],
)
def test_deep_nesting_is_an_error_not_a_crash(text: str) -> None:
    start = time.perf_counter()
    err = syntax_error(text)
    assert err.message == f"exceeded max depth limit of {MAX_DEPTH}"
    assert time.perf_counter() - start < 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("not " * 100_001 + "a", Not(MacroRef("a"))),
        ("not " * 100_000 + "a", MacroRef("a")),
        (" and ".join(["a"] * 50_000), And((MacroRef("a"),) * 50_000)),
        ("proc.name in (" + ", ".join(["x"] * 50_000) + ")",
         BinaryCheck(Field("proc.name"), "in", ValueList((Literal("x"),) * 50_000))),
        ('proc.name = "' + "\\\\" * 50_000 + '\\ "',
         BinaryCheck(Field("proc.name"), "=", Literal("\\" * 50_001))),
        ("concat(" + ", ".join(["proc.name"] * 10_000) + ") exists",
         UnaryCheck(Transformer("concat", (Field("proc.name"),) * 10_000), "exists")),
    ],
    ids=["odd nots", "even nots", "flat and", "long list", "long string", "many args"],
)
def test_long_flat_input_parses(text: str, expected: ast.Expr) -> None:
    start = time.perf_counter()
    assert parse_condition(text) == expected
    assert time.perf_counter() - start < 5


@pytest.mark.parametrize(
    "text",
    ["a" * 8_000, "x.y = z or " + "a" * 8_000 + ".", "tolower(" + "a" * 8_000],
    ids=["macro", "after or", "transformer arg"],
)
def test_long_words_parse_in_linear_time(text: str) -> None:
    """libsinsp's RE2 is linear; a backtracking field-name regex must not make this quadratic."""
    start = time.perf_counter()
    with contextlib.suppress(RuleSyntaxError):
        parse_condition(text)
    assert time.perf_counter() - start < 0.25


def _nest(depth: int, inner: str) -> str:
    return "(" * depth + inner + ")" * depth


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        (_nest(19, "a"), True),
        (_nest(20, "a"), False),
        (_nest(18, "a.b exists"), True),
        (_nest(19, "a.b exists"), False),
        ("tolower(" * 47 + "a.b" + ")" * 47 + " exists", True),
        ("tolower(" * 48 + "a.b" + ")" * 48 + " exists", False),
        ("not(" * 23 + "a" + ")" * 23, True),
        ("not(" * 24 + "a" + ")" * 24, False),
    ],
)
def test_depth_limit_boundary(text: str, ok: bool) -> None:
    if ok:
        parse_condition(text)
    else:
        assert syntax_error(text).message == "exceeded max depth limit of 100"


def test_loader_depth_limit_matches_falco() -> None:
    """Falco's rule loader parses rule conditions with set_max_depth(1000)."""
    assert LOADER_MAX_DEPTH == 1000
    assert parse_condition(_nest(198, "a.b exists"), max_depth=LOADER_MAX_DEPTH) == UnaryCheck(
        Field("a.b"), "exists")
    assert parse_condition(_nest(199, "a"), max_depth=LOADER_MAX_DEPTH) == MacroRef("a")
    for text in (_nest(199, "a.b exists"), _nest(200, "a"), "(" * 100_000, "not(" * 100_000):
        with pytest.raises(RuleSyntaxError) as info:
            parse_condition(text, max_depth=LOADER_MAX_DEPTH)
        assert info.value.message == "exceeded max depth limit of 1000"
    assert syntax_error(_nest(100, "a")).message == "exceeded max depth limit of 100"


# ---- trees, not just text ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a or b and c", Or((MacroRef("a"), And((MacroRef("b"), MacroRef("c")))))),
        ("not a and b", And((Not(MacroRef("a")), MacroRef("b")))),
        ("not (a and b)", Not(And((MacroRef("a"), MacroRef("b"))))),
        ("not(not(a))", Not(Not(MacroRef("a")))),
        ("not", MacroRef("not")),
        ("(not) and b", And((MacroRef("not"), MacroRef("b")))),
        ("and", MacroRef("and")),
        ("or", MacroRef("or")),
        ("and or or", Or((MacroRef("and"), MacroRef("or")))),
        ("a or and", Or((MacroRef("a"), MacroRef("and")))),
        ("a and or", And((MacroRef("a"), MacroRef("or")))),
        ("and and and", And((MacroRef("and"), MacroRef("and")))),
        ("a and (b and c)", And((MacroRef("a"), And((MacroRef("b"), MacroRef("c")))))),
        ("proc.aname[2] = bash", BinaryCheck(Field("proc.aname", "2"), "=", Literal("bash"))),
        ('proc.env["MY VAR"] exists', UnaryCheck(Field("proc.env", "MY VAR"), "exists")),
        ("proc.pid > 0x1F", BinaryCheck(Field("proc.pid"), ">", Literal("0x1F"))),
        ("proc.pid > -1.5e+3", BinaryCheck(Field("proc.pid"), ">", Literal("-1.5e+3"))),
        ("proc.name in ()", BinaryCheck(Field("proc.name"), "in", ValueList(()))),
        ("proc.name in shells",
         BinaryCheck(Field("proc.name"), "in", ValueList((Literal("shells"),)))),
        ("proc.name = val(proc.pname)",
         BinaryCheck(Field("proc.name"), "=", Val(Field("proc.pname")))),
        ("proc.aname anyof startswith sh",
         BinaryCheck(Field("proc.aname"), "startswith", Literal("sh"), "anyof")),
        ("proc.aname allof exists", UnaryCheck(Field("proc.aname"), "exists", "allof")),
        ('join(",", (proc.name, 1)) = x',
         BinaryCheck(Transformer("join", (Literal(","), TransformerList(
             (Field("proc.name"), Literal("1"))))), "=", Literal("x"))),
        ("tolower(basename(proc.exepath)) = bash",
         BinaryCheck(Transformer("tolower", (Transformer("basename", (Field("proc.exepath"),)),)),
                     "=", Literal("bash"))),
    ],
)
def test_tree(text: str, expected: ast.Expr) -> None:
    assert parse_condition(text) == expected


def test_quoted_flag_records_how_a_literal_was_written() -> None:
    tree = parse_condition('proc.name in (a, "b", \'c\') and concat(proc.name, "x", 1) = y')
    literals = [n for n in tree.walk() if isinstance(n, Literal)]
    assert [(n.value, n.quoted) for n in literals] == [
        ("a", False), ("b", True), ("c", True), ("x", True), ("1", False), ("y", False),
    ]


@pytest.mark.parametrize(
    ("quoted", "value"),
    [
        (r'"\b\f\n\r\t\\\/\""', '\b\f\n\r\t\\/"'),
        (r"'\b\f\n\r\t\\\/\''", "\b\f\n\r\t\\/'"),
        (r'"a\ b"', "a\\b"),
        (r'"\ "', "\\"),
        (r'"a\\\"b"', 'a\\"b'),
        ('"a\\\\"b"', 'a\\"b'),  # the quote after \\ does not close (libsinsp quirk)
        ('""', ""),
        ("''", ""),
        ("'\"'", '"'),
        ('"\'"', "'"),
        ('"\t\n"', "\t\n"),
    ],
)
def test_escapes_decode_exactly(quoted: str, value: str) -> None:
    tree = parse_condition(f"proc.name = {quoted}")
    assert isinstance(tree, BinaryCheck)
    assert tree.right == Literal(value)
    assert isinstance(tree.right, Literal) and tree.right.value == value


@pytest.mark.parametrize(
    ("token", "result"),
    [
        (r'"\\\/\ "', "\\/\\"),
        (r'"\x"', "unsupported string escape sequence: \\x"),
        (r'"\a"', "unsupported string escape sequence: \\a"),
        (r'"\""', '"'),
        (r'"\'"', "invalid \\' escape in \"-quoted string"),
        (r"'\"'", "invalid \\\" escape in '-quoted string"),
        (r"'\''", "'"),
    ],
)
def test_unescape(token: str, result: str) -> None:
    if result.startswith(("unsupported", "invalid")):
        with pytest.raises(ValueError, match=f"^{re.escape(result)}$"):
            unescape(token)
    else:
        assert unescape(token) == result


def test_node_positions_point_into_the_text() -> None:
    text = ' a and\n  not proc.env["X"] = val(proc.pname) or tolower(fd.name) in (x, "y")'
    tree = parse_condition(text)
    at = {(type(n).__name__, text[n.pos:n.pos + 12]) for n in tree.walk()}
    assert at == {
        ("Or", ' a and\n  not'),
        ("And", 'a and\n  not '),
        ("MacroRef", 'a and\n  not '),
        ("Not", 'not proc.env'),
        ("BinaryCheck", 'proc.env["X"'),
        ("Field", 'proc.env["X"'),
        ("Val", 'val(proc.pna'),
        ("Field", 'proc.pname) '),
        ("BinaryCheck", 'tolower(fd.n'),
        ("Transformer", 'tolower(fd.n'),
        ("Field", 'fd.name) in '),
        ("ValueList", '(x, "y")'),
        ("Literal", 'x, "y")'),
        ("Literal", '"y")'),
    }


# ---- known bugs: the canonical text must read back as the same tree ----------------------------


@pytest.mark.parametrize(
    "text",
    [
        'concat(proc.name, "x") = y',  # a quoted string argument came back bare: not an argument
        'concat("proc.name") exists',  # ... or came back as a field
        'join(",", (proc.name, "x")) exists',
        "not(not(a))",  # `not not a` reads back as `a`
        "(not) and b",  # a macro named `not` followed by a blank reads back as a negation
        'proc.name = "a\vb"',  # \v ends a bare string but does not make quote() quote
        'proc.name in ("a\vb")',
        'proc.env["a\vb"] exists',
    ],
)
def test_round_trip_regressions(text: str) -> None:
    tree = parse_condition(text)
    assert parse_condition(to_text(tree)) == tree
