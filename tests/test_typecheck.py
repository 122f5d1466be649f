"""Field and type checks of conditions: what libsinsp's filter compiler would reject."""

from __future__ import annotations

from pathlib import Path

import pytest

from analyze import ast
from analyze.errors import RuleResolveError
from analyze.loader import load_rules
from analyze.parser import parse_condition
from analyze.typecheck import (
    SKIPPABLE_CODES,
    UnknownFieldError,
    apply_skip_if_unknown,
    check_condition,
    check_rule_condition,
    fields_needing_unavailable_data,
    first_error,
    is_multi_valued,
)
from schemas import catalog

ANCHORS = Path(__file__).resolve().parents[2] / "shared" / "anchors" / "falco-rules"
needs_anchors = pytest.mark.skipif(not ANCHORS.is_dir(), reason="shared Falco anchors not present")


def errors(condition: str) -> list[RuleResolveError]:
    return check_condition(parse_condition(condition), condition)


def messages(condition: str) -> list[str]:
    return [e.message for e in errors(condition)]


def only(condition: str) -> RuleResolveError:
    found = errors(condition)
    assert len(found) == 1, [e.message for e in found]
    return found[0]


# ---- fields ------------------------------------------------------------------------------------


def test_unknown_field_falco_message_position_and_hint() -> None:
    err = only("evt.type = open and\n  proc.nme = bash")
    assert isinstance(err, UnknownFieldError)
    assert err.code == "unknown-field"
    assert err.falco_message == "filter_check called with nonexistent field proc.nme"
    assert err.message == (
        "filter_check called with nonexistent field proc.nme (did you mean 'proc.name'?)")
    assert err.suggestion == "proc.name"
    assert err.position is not None
    assert (err.position.line, err.position.col, err.position.offset) == (2, 3, 22)


def test_unknown_field_without_close_name_has_no_hint() -> None:
    err = only("proc.nobody = cat")
    assert err.message == "filter_check called with nonexistent field proc.nobody"


def test_unknown_field_message_keeps_the_argument() -> None:
    assert only("proc.nobody[2] = cat").message.startswith(
        "filter_check called with nonexistent field proc.nobody[2]")


@pytest.mark.parametrize(
    "condition",
    [
        "proc.aname[2] = bash",
        "proc.aname = bash",
        "evt.arg.flags contains O_RDONLY",
        "evt.arg[0] = x",
        "proc.env[HOME] = /root",
        "proc.apid[1] = 10",
        "evt.rawarg.res < 0",
        "thread.cgroup.cpuacct = /",
        "fd.types[0] intersects (file)",
    ],
)
def test_field_arguments_accepted(condition: str) -> None:
    assert messages(condition) == []


@pytest.mark.parametrize(
    ("condition", "fragment"),
    [
        ("proc.aname[x] = bash", "needs a numeric index"),
        ("evt.arg = x", "requires an argument"),
        ("proc.name[1] = x", "does not take an argument"),
    ],
)
def test_field_arguments_rejected(condition: str, fragment: str) -> None:
    err = only(condition)
    assert err.code == "field-argument"
    assert fragment in err.message


def test_fields_inside_transformers_and_val_are_checked() -> None:
    assert [e.code for e in errors("tolower(proc.nme) = x")] == ["unknown-field"]
    err = only("proc.name = val(proc.pnme)")
    assert err.code == "unknown-field"
    assert err.position is not None and err.position.col == 17


# ---- operators and values ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ("proc.pid contains 1", "'contains' operator not supported for numeric filters"),
        ("evt.is_open_read startswith t", "'startswith' operator not supported for bool filters"),
        ("fd.types startswith x", "'startswith' operator not supported list filters"),
        ("fd.sip glob 10.*", "'glob' operator not supported for ip address and network filters"),
    ],
)
def test_operator_not_allowed(condition: str, message: str) -> None:
    err = only(condition)
    assert (err.code, err.message) == ("operator", message)
    assert err.position is not None and err.position.col == 1


@pytest.mark.parametrize(
    "condition",
    [
        "proc.name > 3",  # libsinsp compares strings with strcmp: allowed
        "proc.pid > 3",
        "fd.snet = 10.0.0.0/8",
        "fd.sip = 10.0.0.1",
        "fd.sip in (10.0.0.1, ::1)",
        "fd.sport = 80",
        "evt.is_open_read = true",
        "evt.buffer bcontains 6162",
        "fd.types intersects (ipv4, file)",
        "evt.type in (open, openat, openat2)",
    ],
)
def test_valid_checks(condition: str) -> None:
    assert messages(condition) == []


@pytest.mark.parametrize(
    ("condition", "message", "col"),
    [
        ("fd.sip = 10.0.0.0/8", "unrecognized IPv4 address 10.0.0.0/8", 10),
        ("fd.snet = 10.0.0.1", "unrecognized IP network 10.0.0.1", 11),
        ("proc.pid = abc", "abc is not a valid number", 12),
        ("proc.pid in (1, x)", "x is not a valid number", 17),
        ("evt.is_open_read = yes", "filter error: unrecognized boolean value yes", 20),
        ("evt.buffer bcontains 6", "bcontains requires a string of hex digit pairs, not '6'", 22),
    ],
)
def test_value_not_convertible(condition: str, message: str, col: int) -> None:
    err = only(condition)
    assert (err.code, err.message) == ("value", message)
    assert err.position is not None and err.position.col == col


def test_unknown_event_type_is_its_own_code() -> None:
    err = only("evt.type = some_invalid_event")
    assert (err.code, err.message) == ("unknown-evttype", "unknown event type some_invalid_event")
    assert err.code in SKIPPABLE_CODES


# ---- transformers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "condition",
    [
        "tolower(proc.name) = bash",
        "toupper(tolower(proc.name)) = BASH",
        "basename(fd.name) = passwd",
        "b64(evt.buffer) contains abc",
        "len(proc.name) > 3",
        "len(fd.types) >= 2",
        "len(evt.buffer) = 0",
        'join(",", fd.types) = "file,ipv4"',
        'concat(proc.name, "-", user.name) = "bash-root"',
        'getopt(fd.types, "ab") intersects (x)',
        "proc.name = tolower(proc.pname)",
    ],
)
def test_transformers_accepted(condition: str) -> None:
    assert messages(condition) == []


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ("tolower(proc.pid) = 1",
         "can't add field transformer: type 'PT_INT64' is not supported by 'tolower' transformer "
         "applied on field 'proc.pid'"),
        ("basename(proc.pid) = 1", "is not supported by 'basename' transformer"),
        ("b64(proc.pid) = x", "type 'PT_INT64' is not supported by 'b64'"),
        ("len(proc.pid) > 1", "is not supported by 'len'"),
        ("tolower(fd.types) = x", None),  # a list of strings: allowed, stays a list
        ("tolower(proc.aname) = bash", "field 'proc.aname' does not support transformers"),
        ("tolower(proc.name, proc.pname) = x", "transformer 'tolower' takes exactly one"),
        ('join(",") = x', "join() requires exactly 2 arguments: separator and list"),
        ('join(",", proc.name) = x', "join() second argument must be a list"),
        ('join(fd.types, fd.types) = x', "join() first argument (separator) must be a single"),
        ("concat(proc.name) = x", "concat() requires at least 2 arguments"),
        ("concat(proc.name, proc.pid) = x", "concat() arguments must be strings"),
        ('getopt(proc.name, "ab") = x', "getopt() first argument must be a list"),
    ],
)
def test_transformers_rejected(condition: str, message: str | None) -> None:
    found = errors(condition)
    if message is None:
        assert found and found[0].code == "operator"  # `=` on a list, not the transformer
        return
    assert len(found) == 1
    assert found[0].code == "transformer"
    assert message in found[0].message


def test_len_yields_a_number() -> None:
    assert only("len(proc.name) contains x").message == (
        "'contains' operator not supported for numeric filters")
    assert only("len(proc.name) = abc").message == "abc is not a valid number"


# ---- right-hand fields -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ("proc.name = val(proc.pid)",
         "field 'proc.name' has type 'CHARBUF' while the right-hand side field 'proc.pid' has "
         "incompatible type 'INT64'"),
        # The right side's type is the one after its transformers.
        ("proc.pid = len(proc.name)",
         "field 'proc.pid' has type 'INT64' while the right-hand side field 'proc.name' has "
         "incompatible type 'UINT64'"),
        ("proc.name pmatch val(proc.pname)", "operator 'pmatch' doesn't support right-hand side"),
        ("proc.name regex val(proc.pname)", "operator 'regex' doesn't support right-hand side"),
        ("fd.snet = val(fd.cnet)", "field type 'IPNET' doesn't support right-hand side fields"),
        ("proc.aname = val(proc.name)", "field 'proc.aname' doesn't support right-hand side"),
        ("fd.name = val(fd.cip.name)", "field 'fd.cip.name' can't be used as a right-hand side"),
    ],
)
def test_rhs_fields_rejected(condition: str, message: str) -> None:
    err = only(condition)
    assert err.code == "rhs-field"
    assert message in err.message


def test_rhs_fields_accepted() -> None:
    assert messages("proc.name = val(proc.pname)") == []
    assert messages("proc.pid != val(proc.ppid)") == []
    assert messages("len(proc.name) > val(proc.pid)") != []  # UINT64 vs INT64: not the same


# ---- modifiers ---------------------------------------------------------------------------------


def test_modifiers_on_multi_valued_fields() -> None:
    assert messages("proc.aname anyof startswith sh") == []
    assert messages("fd.types allof = file") == []
    assert messages("fd.types oneof in (file, ipv4)") == []
    # One element at a time: string operators apply.
    assert messages("fd.types anyof startswith ip") == []


def test_modifier_on_single_value_field() -> None:
    err = only("proc.name anyof = bash")
    assert err.code == "modifier"
    assert "'proc.name' has one value" in err.message
    assert only("proc.aname[1] anyof = bash").code == "modifier"  # one ancestor: one value


def test_is_multi_valued() -> None:
    aname = catalog.lookup("proc.aname")
    assert aname is not None
    assert is_multi_valued(aname, None) and not is_multi_valued(aname, "2")


# ---- evt.type checks the event code search rejects ---------------------------------------------


def test_evttype_search_errors_follow_compile_errors() -> None:
    err = only("tolower(evt.type) = open")
    assert err.code == "evttype-search"
    assert only("evt.type = val(proc.name)").code == "evttype-search"
    # libsinsp searches event codes only once the filter compiled: the first error wins.
    assert [e.code for e in errors("proc.nme = x and tolower(evt.type) = open")] == [
        "unknown-field"]


# ---- positions and deduplication ---------------------------------------------------------------


def _inline(tree: ast.Expr, macros: dict[str, str]) -> ast.Expr:
    """Replace MacroRefs by the macro's own parsed tree (offsets into the macro text)."""
    if isinstance(tree, ast.MacroRef) and tree.name in macros:
        return parse_condition(macros[tree.name])
    if isinstance(tree, ast.And | ast.Or):
        return type(tree)(tuple(_inline(i, macros) for i in tree.items), pos=tree.pos)
    if isinstance(tree, ast.Not):
        return ast.Not(_inline(tree.item, macros), pos=tree.pos)
    return tree


def test_nodes_from_macros_get_no_wrong_position() -> None:
    text = "evt.type = open and my_macro"
    tree = _inline(parse_condition(text), {"my_macro": "proc.nobody = cat"})
    err = check_condition(tree, text)[0]
    assert err.code == "unknown-field"
    assert err.position is None  # offset 0 of the macro text is `evt.type` in the rule text


def test_same_error_twice_from_one_macro_is_reported_once() -> None:
    text = "m or (evt.type = open and m)"
    tree = _inline(parse_condition(text), {"m": "proc.nobody = cat"})
    assert len(check_condition(tree, text)) == 1


def test_distinct_places_are_distinct_errors() -> None:
    assert len(errors("proc.nobody = a or proc.nobody = b")) == 2


def test_first_error() -> None:
    tree = parse_condition("proc.pid contains 1 or proc.nobody = 2")
    err = first_error(tree, "proc.pid contains 1 or proc.nobody = 2")
    assert err is not None and err.code == "operator"
    assert first_error(parse_condition("proc.pid = 1"), "proc.pid = 1") is None


# ---- unavailable data --------------------------------------------------------------------------


def test_fields_needing_unavailable_data() -> None:
    tree = parse_condition(
        "k8s.pod.uid = default and fd.sip.name = x and proc.name = cat and k8s.pod.uid != y")
    assert [f.name for f in fields_needing_unavailable_data(tree)] == ["k8s.pod.uid", "fd.sip.name"]
    assert all(not f.available and f.unavailable_reason for f in
               fields_needing_unavailable_data(tree))
    assert fields_needing_unavailable_data(parse_condition("proc.nobody = x")) == []


# ---- skip-if-unknown-filter --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "falco_message"),
    [
        ("evt.type = open and proc.nobody = cat",
         "filter_check called with nonexistent field proc.nobody"),
        ("evt.type = some_invalid_event", "unknown event type some_invalid_event"),
    ],
)
def test_skip_if_unknown_filter(condition: str, falco_message: str) -> None:
    tree = parse_condition(condition)
    kept = check_rule_condition(tree, condition, skip_if_unknown_filter=False)
    assert not kept.skipped and len(kept.errors) == 1
    skipped = check_rule_condition(tree, condition, skip_if_unknown_filter=True)
    assert skipped.skipped and skipped.errors == ()
    assert skipped.warning is not None
    assert (skipped.warning.code, skipped.warning.message) == ("unknown-filter", falco_message)


def test_skip_only_when_falco_would_stop_at_the_unknown_field() -> None:
    found = errors("proc.pid contains 1 and proc.nobody = 2")
    verdict = apply_skip_if_unknown(found, skip_if_unknown_filter=True)
    assert not verdict.skipped and [e.code for e in verdict.errors] == ["operator", "unknown-field"]


def test_no_errors_no_skip() -> None:
    verdict = apply_skip_if_unknown([], skip_if_unknown_filter=True)
    assert verdict.errors == () and not verdict.skipped


# ---- upstream rules ----------------------------------------------------------------------------


@needs_anchors
@pytest.mark.parametrize(
    "path", ["rules/falco_rules.yaml", "rules-legacy/falco_rules-4.0.0.yaml"])
def test_upstream_rules_typecheck(path: str) -> None:
    ruleset = load_rules([ANCHORS / path])
    for rule in ruleset.rules:
        assert rule.ast is not None
        assert check_condition(rule.ast, rule.expanded_text) == [], rule.name
