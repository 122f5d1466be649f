"""Rule exceptions: the condition text Falco builds from them, validation, append and override."""

from __future__ import annotations

from pathlib import Path

import pytest

from analyze.ast import to_text
from analyze.errors import RuleError, RuleLoadError, SourceRef
from analyze.exceptions import (
    FieldCheck,
    build_condition,
    paren_item,
    quote_item,
    validate_exception,
)
from analyze.loader import load_rules
from analyze.ruleset import Entry, RuleException, RuleSet

REPO = Path(__file__).resolve().parents[1]
EXCEPTIONS = REPO.parent / "shared" / "anchors" / "falco-rules" / "testing-rules" / "exceptions"
needs_anchors = pytest.mark.skipif(not EXCEPTIONS.is_dir(),
                                   reason="shared Falco anchors not present")

HERE = SourceRef("test.yaml", 1, 1, "exception 'e'")
BASE = "(evt.type=open and proc.name=cat)"


def exc(fields: Entry | None, values: tuple[Entry, ...] = (), comps: Entry | None = None,
        name: str = "e") -> RuleException:
    return RuleException(name, fields, comps, values, HERE)


@pytest.mark.parametrize(("value", "quoted"), [
    ("cat", "cat"),
    ("cat /dev/null", '"cat /dev/null"'),
    ('"cat /dev/null"', '"cat /dev/null"'),  # already quoted: left alone
    ("'cat /dev/null'", "'cat /dev/null'"),
    ("a\tb", "a\tb"),  # only a space makes Falco quote
    ('say "hi" now', '"say "hi" now"'),  # and it never escapes (Falco's own todo)
    ("", ""),
])
def test_quote_item(value: str, quoted: str) -> None:
    assert quote_item(value) == quoted


def test_paren_item() -> None:
    assert paren_item("my_list") == "(my_list)"
    assert paren_item("(my_list)") == "(my_list)"


def test_single_field_form() -> None:
    ex = validate_exception(exc("proc.cmdline", ("cat /dev/zero", "ls")), None)
    assert ex.comps == "in"  # the default for a single field
    assert build_condition("evt.type=open", [ex]) == (
        '(evt.type=open) and not (proc.cmdline in ("cat /dev/zero", ls))')


def test_tuple_form_with_list_values_and_list_refs() -> None:
    ex = validate_exception(exc(("proc.name", "proc.cmdline", "fd.name"),
                                (("cat", ("a b", "c"), "my_list"),), ("=", "in", "pmatch")), None)
    assert build_condition("c", [ex]) == (
        '(c) and not (( proc.name = cat and  proc.cmdline in ("a b", c) and  fd.name pmatch '
        "(my_list)))")


def test_default_comps_and_skipped_exceptions() -> None:
    no_values = validate_exception(exc(("proc.name", "fd.name")), None)
    assert no_values.comps == ("=", "=")
    two = validate_exception(exc(("proc.name",), (("a",), ("b",)), name="two"), None)
    assert build_condition("c", [no_values, two]) == (
        "(c) and not (( proc.name = a) or ( proc.name = b))")
    assert build_condition("c", [no_values]) == "(c)"


def test_empty_first_list_item_quirk() -> None:
    # Falco decides the separator by comparing with "(": an empty first item eats the comma.
    ex = validate_exception(exc(("proc.name",), ((("", "a", "b"),),), ("in",)), None)
    assert build_condition("c", [ex]) == "(c) and not (( proc.name in (a, b)))"


@pytest.mark.parametrize(("ex", "message"), [
    (exc(None), "must have fields property"),
    (exc(""), "must have fields property"),
    (exc(("a.b", "c.d"), comps=("=",)), "Fields and comps lists must have equal length"),
    (exc(("a.b",), comps="in"), "Fields and comps lists must have equal length"),
    (exc(("a.b",), comps=("nope",)), "'nope' is not a supported comparison operator"),
    (exc("a.b", comps=("in",)), "Fields and comps must both be strings"),
    (exc("a.b", comps="="), "comps must be one of (in, pmatch, intersects)"),
])
def test_validation_errors(ex: RuleException, message: str) -> None:
    with pytest.raises(RuleLoadError) as info:
        validate_exception(ex, None)
    assert message in info.value.message
    assert info.value.source == HERE


def test_build_errors() -> None:
    with pytest.raises(RuleLoadError, match="Fields and values lists must have equal length"):
        build_condition("c", [validate_exception(exc(("a.b", "c.d"), (("x",),)), None)])
    with pytest.raises(RuleLoadError, match="Expected values array to contain a list of strings"):
        build_condition("c", [validate_exception(exc("a.b", (("x",),)), None)])


def test_field_check() -> None:
    def known(name: str) -> bool:
        return name != "not.exist"

    validate_exception(exc(("proc.name",)), known)
    with pytest.raises(RuleLoadError, match=r"'not\.exist' is not a supported filter field"):
        validate_exception(exc(("proc.name", "not.exist")), known)


# ---- through the loader: Falco's exception test files ------------------------------------------

N = ' proc.name = not-cat'
GOLDEN = {
    "rule_exception_append_comp.yaml": f"{BASE} and not (( proc.name contains cat))",
    "rule_exception_append_multiple.yaml":
        f"{BASE} and not ((" + N + ") or ( proc.name = cat))",
    "rule_exception_append_one_value.yaml":
        f"{BASE} and not (( proc.name = cat) or ( proc.name = cat))",
    "rule_exception_append_second_item.yaml":
        f"{BASE} and not ((" + N + ")) and not (( proc.name = cat and  proc.cmdline = "
        '"cat /dev/null")) and not ((' + N + ' and  proc.cmdline = "cat /dev/null" and  '
        "proc.pname = bash))",
    "rule_exception_append_second_value.yaml":
        f"{BASE} and not ((" + N + " and  proc.cmdline = not-cat) or ( proc.name = cat and  "
        'proc.cmdline = "cat /dev/null"))',
    "rule_exception_comp.yaml": f"{BASE} and not (( proc.name contains cat))",
    "rule_exception_new_second_field_append.yaml":
        f'{BASE} and not (proc.cmdline in ("cat /dev/zero")) and not (proc.cmdline in '
        '("cat /dev/null"))',
    "rule_exception_new_single_field_append.yaml":
        f'{BASE} and not (proc.cmdline in ("cat /dev/null"))',
    "rule_exception_no_values.yaml": BASE,
    "rule_exception_one_value.yaml": f"{BASE} and not (( proc.name = cat))",
    "rule_exception_quoted.yaml":
        f"{BASE} and not ((" + N + " and  proc.cmdline = not-cat) or ( proc.name = cat and  "
        'proc.cmdline = "cat /dev/null"))',
    "rule_exception_single_field.yaml":
        f'{BASE} and not (proc.cmdline in ("cat /dev/zero", "cat /dev/null"))',
    "rule_exception_single_field_append.yaml":
        f'{BASE} and not (proc.cmdline in ("cat /dev/zero", "cat /dev/null"))',
    "rule_exception_values_list.yaml":
        f'{BASE} and not (( proc.name = cat and  proc.cmdline in ("cat /dev/zero", '
        '"cat /dev/null")))',
    "rule_exception_values_listref.yaml":
        f"{BASE} and not (( proc.name = cat and  proc.cmdline in (cat_cmdlines)))",
    "rule_exception_values_listref_noparens.yaml":
        f"{BASE} and not (( proc.name = cat and  proc.cmdline in (cat_cmdlines)))",
}
GOLDEN["rule_exception_second_item.yaml"] = GOLDEN["rule_exception_append_second_item.yaml"]
GOLDEN["rule_exception_second_value.yaml"] = GOLDEN["rule_exception_append_second_value.yaml"]
GOLDEN["rule_exception_third_item.yaml"] = (
    f"{BASE} and not ((" + N + ")) and not ((" + N + ' and  proc.cmdline = "cat /dev/null")) '
    'and not (( proc.name = cat and  proc.cmdline = "cat /dev/null" and  proc.pname = bash))')
GOLDEN["rule_exception_append_third_item.yaml"] = GOLDEN["rule_exception_third_item.yaml"]


@needs_anchors
def test_golden_covers_every_valid_exception_file() -> None:
    files = {p.name for p in EXCEPTIONS.glob("rule_exception_*.yaml")}
    assert set(GOLDEN) == files - {"rule_exception_new_no_field_append.yaml"}


@needs_anchors
@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_exception_condition(name: str) -> None:
    rule = load_rules([EXCEPTIONS / name]).rule("Open From Cat")
    assert rule.condition_text == GOLDEN[name]
    assert rule.ast is not None


@needs_anchors
def test_list_reference_in_exception_values_is_substituted() -> None:
    rule = load_rules([EXCEPTIONS / "rule_exception_values_listref.yaml"]).rule("Open From Cat")
    assert rule.expanded_text.endswith('proc.cmdline in ( "cat /dev/zero", "cat /dev/null" )))')
    assert rule.ast is not None
    assert to_text(rule.ast) == (
        "((evt.type = open and proc.name = cat) and not (proc.name = cat and proc.cmdline in "
        '("cat /dev/zero", "cat /dev/null")))')
    assert rule.used_lists == ("cat_cmdlines",)


# ---- append and override of exceptions ----------------------------------------------------------

RULE = """
- rule: r
  desc: d
  condition: evt.type=open
  output: o
  priority: INFO
  exceptions:
    - name: by_name
      fields: [proc.name]
      values: [[cat]]
"""


def load_text(tmp_path: Path, *texts: str, field_exists: FieldCheck | None = None) -> RuleSet:
    paths = []
    for i, text in enumerate(texts):
        path = tmp_path / f"{i}.yaml"
        path.write_text(text)
        paths.append(path)
    return load_rules(paths, field_exists=field_exists)


def rule_text(tmp_path: Path, *texts: str) -> str:
    return load_text(tmp_path, *texts).rule("r").condition_text


def test_override_append_adds_values_and_new_exceptions(tmp_path: Path) -> None:
    more = """
- rule: r
  exceptions:
    - name: by_name
      values: [[ls]]
    - name: by_parent
      fields: proc.pname
      values: [bash]
  override:
    exceptions: append
"""
    assert rule_text(tmp_path, RULE, more) == (
        "(evt.type=open) and not (( proc.name = cat) or ( proc.name = ls)) "
        "and not (proc.pname in (bash))")


def test_override_replace_swaps_exceptions(tmp_path: Path) -> None:
    swap = """
- rule: r
  exceptions:
    - name: other
      fields: [fd.name, proc.name]
      values: [[/tmp, vi]]
  override:
    exceptions: replace
"""
    assert rule_text(tmp_path, RULE, swap) == (
        "(evt.type=open) and not (( fd.name = /tmp and  proc.name = vi))")


@pytest.mark.parametrize(("extra", "message"), [
    ("fields: [proc.pname]\n      values: [[x]]", "Can not append exception fields"),
    ("comps: [=]\n      values: [[x]]", "Can not append exception comps"),
])
def test_appending_to_an_existing_exception_takes_only_values(tmp_path: Path, extra: str,
                                                              message: str) -> None:
    more = f"""
- rule: r
  append: true
  exceptions:
    - name: by_name
      {extra}
"""
    with pytest.raises(RuleError, match=message):
        load_text(tmp_path, RULE, more)


def test_a_new_appended_exception_needs_values(tmp_path: Path) -> None:
    more = """
- rule: r
  append: true
  exceptions:
    - name: fresh
      fields: [proc.pname]
"""
    with pytest.raises(RuleError, match="must have values property"):
        load_text(tmp_path, RULE, more)


def test_exception_fields_of_other_sources_are_not_checked(tmp_path: Path) -> None:
    text = RULE.replace("priority: INFO", "priority: INFO\n  source: aws_cloudtrail").replace(
        "[proc.name]", "[not.a.field]")
    ruleset = load_text(tmp_path, text, field_exists=lambda name: False)
    assert not ruleset.rule("r").applicable
    with pytest.raises(RuleError, match=r"'not\.a\.field' is not a supported filter field"):
        load_text(tmp_path, text.replace("source: aws_cloudtrail", "source: syscall"),
                  field_exists=lambda name: name != "not.a.field")


def test_duplicate_exception_names(tmp_path: Path) -> None:
    text = RULE + """    - name: by_name
      fields: [proc.pname]
"""
    with pytest.raises(RuleLoadError, match="Exceptions names in the same object must be unique"):
        load_text(tmp_path, text)
