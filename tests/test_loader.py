"""The loader on small rule files of our own: YAML decoding, items, append/override, order."""

from __future__ import annotations

from pathlib import Path

import pytest

from analyze.ast import to_text
from analyze.errors import RuleError, RuleLoadError, RuleResolveError, RuleSyntaxError
from analyze.loader import ENGINE_VERSION, expand_paths, load_rules
from analyze.ruleset import LoadedRule, RuleSet, parse_priority
from analyze.yaml_source import YMap, YScalar, YSeq, decode_bool, decode_uint, read_documents

FIXTURES = Path(__file__).parent / "fixtures" / "rules"

RULE = """
- rule: r
  desc: a rule
  condition: evt.type=open
  output: out
  priority: INFO
"""


def load(tmp_path: Path, *texts: str, collect: bool = False) -> RuleSet:
    paths = []
    for i, text in enumerate(texts):
        path = tmp_path / f"{i}.yaml"
        path.write_text(text)
        paths.append(path)
    return load_rules(paths, collect_errors=collect)


def codes(ruleset: RuleSet) -> list[str]:
    return [w.code for w in ruleset.warnings]


def tree(rule: LoadedRule) -> str:
    assert rule.ast is not None, rule.name
    return to_text(rule.ast)


# ---- YAML as yaml-cpp reads it ------------------------------------------------------------------


def test_scalars_stay_text_and_tags_do_not_break_loading() -> None:
    ruleset = load_rules([FIXTURES / "yaml_quirks.yaml"])
    assert ruleset.lists["modes"].items == ("0755", "yes", "1.0", "~x", "quoted item", "on")
    rule = ruleset.rule("Quirky")
    assert rule.desc == "!= is a tag to PyYAML"
    assert rule.priority == "Informational" and rule.enabled is True
    assert rule.exceptions[0].comps == ("=", "in")
    assert rule.expanded_text.startswith(
        '(evt.type=open and proc.name in ( 0755, yes, 1.0, ~x, "quoted item", on ))')


def test_yaml_nodes_carry_positions() -> None:
    docs = read_documents("- rule: x\n  tags: [a, b]\n", "f.yaml")
    seq = docs[0]
    assert isinstance(seq, YSeq)
    item = seq.items[0]
    assert isinstance(item, YMap) and (item.line, item.col) == (1, 3)
    tags = item.get("tags")
    assert isinstance(tags, YSeq) and (tags.line, tags.col) == (2, 9)


@pytest.mark.parametrize(("text", "value"), [
    ("true", True), ("True", True), ("TRUE", True), ("yes", True), ("on", True), ("y", True),
    ("false", False), ("No", False), ("OFF", False), ("tRUE", None), ("1", None), ("", None),
])
def test_decode_bool_like_yaml_cpp(text: str, value: bool | None) -> None:
    assert decode_bool(YScalar(text, 1, 1)) is value


@pytest.mark.parametrize(("text", "value"), [
    ("2", 2), ("26", 26), ("0x1f", 31), ("010", 8), ("-1", None), ("1.5", None),
    ("4294967296", None), ("x", None),
])
def test_decode_uint_like_yaml_cpp(text: str, value: int | None) -> None:
    assert decode_uint(YScalar(text, 1, 1)) == value


def test_malformed_yaml_names_file_line_and_column(tmp_path: Path) -> None:
    with pytest.raises(RuleLoadError) as info:
        load(tmp_path, "- rule: a\n  desc: [unclosed\n")
    err = info.value
    assert err.code == "yaml-parse" and err.source is not None
    assert err.source.path.endswith("0.yaml") and err.source.line >= 2 and err.source.col > 0
    assert str(err).startswith(f"{err.source.path}:{err.source.line}:{err.source.col}")


@pytest.mark.parametrize(("text", "message"), [
    ("just text", "Rules content is not yaml"),
    ("a: b", "Rules content is not yaml array of objects"),
    ("- [a, b]", "Unexpected element type"),
    ("- rule: r\n  condition: [a]\n  desc: d\n  output: o\n  priority: INFO",
     "Value is not a scalar value"),
    ("- rule: r\n  condition: ''\n  desc: d\n  output: o\n  priority: INFO",
     "Value must be non-empty"),
    ("- list: l\n  items: a", "Value is not a sequence"),
    ("- list: l\n  items: [[a]]", "sequence value is not scalar"),
    ("- rule: r\n  condition: c\n  desc: d\n  output: o\n  priority: loud", "Invalid priority"),
    (RULE + "  enabled: maybe", "Can't decode YAML scalar value"),
    (RULE + "- rule: r\n  tags: [x]", "Item has no mapping for key 'enabled'"),
])
def test_invalid_items(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(RuleLoadError) as info:
        load(tmp_path, text)
    assert message in info.value.message


def test_unknown_keys_and_items_are_warnings(tmp_path: Path) -> None:
    ruleset = load(tmp_path, RULE + "  descr: typo\n- something: else\n")
    assert codes(ruleset) == ["unknown-key", "unknown-item"]
    assert ruleset.warnings[0].source is not None and ruleset.warnings[0].source.line == 7


@pytest.mark.parametrize(("written", "name"), [
    ("EMERGENCY", "Emergency"), ("alert", "Alert"), ("Critical", "Critical"), ("error", "Error"),
    ("WARNING", "Warning"), ("notice", "Notice"), ("INFO", "Informational"),
    ("informational", "Informational"), ("Debug", "Debug"), ("warn", None),
])
def test_priorities(written: str, name: str | None) -> None:
    assert parse_priority(written) == name


# ---- rules: define, append, override, enable ----------------------------------------------------


def test_rule_keys_are_kept(tmp_path: Path) -> None:
    text = RULE + """  enabled: false
  tags: [b, a, b]
  warn_evttypes: false
  skip-if-unknown-filter: true
  capture: true
  capture_duration: 5000
  output: "  padded  "
"""
    rule = load(tmp_path, text.replace("  output: out\n", "")).rule("r")
    assert (rule.enabled, rule.tags, rule.warn_evttypes, rule.skip_if_unknown_filter) == (
        False, ("a", "b"), False, True)
    assert (rule.capture, rule.capture_duration, rule.output) == (True, 5000, "padded")
    assert rule.source == "syscall" and rule.applicable and rule.not_applicable_reason == ""


def test_override_append_and_replace(tmp_path: Path) -> None:
    more = """
- rule: r
  condition: and proc.name=cat
  output: proc=%proc.name
  desc: more
  tags: [t]
  priority: WARNING
  enabled: false
  override:
    condition: append
    output: append
    desc: append
    tags: append
    priority: replace
    enabled: replace
"""
    ruleset = load(tmp_path, RULE, more)
    rule = ruleset.rule("r")
    assert rule.condition_text == "evt.type=open and proc.name=cat"
    assert (rule.output, rule.desc, rule.tags) == ("out proc=%proc.name", "a rule more", ("t",))
    assert (rule.priority, rule.enabled) == ("Warning", False)
    assert "deprecated-append" not in codes(ruleset)


def test_override_replace_condition_points_at_the_new_text(tmp_path: Path) -> None:
    more = "- rule: r\n  condition: evt.type = close\n  override:\n    condition: replace\n"
    rule = load(tmp_path, RULE, more).rule("r")
    assert rule.condition_text == "evt.type = close"
    assert rule.condition_origin.path.endswith("1.yaml")


@pytest.mark.parametrize(("more", "error"), [
    ("- rule: r\n  priority: ERROR\n  override:\n    priority: append",
     "Key 'priority' cannot be appended to, use 'replace' instead"),
    ("- rule: r\n  source: k8s_audit\n  override:\n    source: replace",
     "Key 'source' cannot be replaced"),
    ("- rule: r\n  desc: d\n  override:\n    desc: merge", "Invalid override operation"),
    ("- rule: r\n  desc: d\n  override:\n    desc: replace\n    condition: append",
     "An append override for 'condition' was specified but 'condition' is not defined"),
    ("- rule: r\n  desc: d\n  priority: ERROR\n  override:\n    desc: replace",
     "Unexpected key 'priority': no corresponding entry under 'override' is defined."),
    ("- rule: r\n  condition: and x\n  append: true\n  override:\n    condition: append",
     "Keys 'override' and 'append: true' cannot be used together"),
    ("- rule: nope\n  condition: and x\n  override:\n    condition: append",
     "no rule by that name already exists"),
    ("- rule: nope\n  condition: x\n  override:\n    condition: replace",
     "no rule by that name already exists"),
    ("- rule: nope\n  condition: and x\n  append: true", "no rule by that name already exists"),
    ("- rule: nope\n  enabled: false", "Rule has 'enabled' key but no rule by that name"),
    ("- rule: r\n  append: true", "Appended rule must have exceptions or condition property"),
    (RULE.replace("priority: INFO", "priority: INFO\n  source: k8s_audit"),
     "Rule has been re-defined with a different source"),
])
def test_override_errors(tmp_path: Path, more: str, error: str) -> None:
    with pytest.raises(RuleLoadError) as info:
        load(tmp_path, RULE, more)
    assert error in info.value.message
    assert info.value.source is not None and info.value.source.path.endswith("1.yaml")


def test_append_true_ignores_other_keys_like_falco(tmp_path: Path) -> None:
    more = "- rule: r\n  condition: and proc.name=cat\n  append: true\n  enabled: false\n"
    ruleset = load(tmp_path, RULE, more)
    assert ruleset.rule("r").enabled is True  # Falco ignores `enabled` next to `append: true`
    assert codes(ruleset) == ["deprecated-append", "ignored-key"]


def test_enabled_only_item_toggles(tmp_path: Path) -> None:
    ruleset = load(tmp_path, RULE, "- rule: r\n  enabled: false\n")
    assert ruleset.rule("r").enabled is False
    assert codes(ruleset) == ["deprecated-enabled"]


# ---- macros and lists ---------------------------------------------------------------------------


def test_macro_visibility(tmp_path: Path) -> None:
    uses_later = "- macro: a\n  condition: b\n- macro: b\n  condition: proc.name=cat\n" + (
        RULE.replace("evt.type=open", "evt.type=open and a"))
    with pytest.raises(RuleResolveError) as info:
        load(tmp_path, uses_later)
    assert info.value.message == "Undefined macro 'b' used in filter."
    assert info.value.source is not None and info.value.source.line == 2
    assert info.value.position is not None and info.value.position.col == 1
    # a rule sees every macro, even one defined after it
    later = RULE.replace("evt.type=open", "evt.type=open and m") + "- macro: m\n  condition: x.y=1"
    assert tree(load(tmp_path, later).rule("r")) == "(evt.type = open and x.y = 1)"


def test_appended_macro_sees_macros_defined_before_the_append(tmp_path: Path) -> None:
    text = """
- macro: a
  condition: proc.name=cat
- macro: b
  condition: proc.pname=sh
- macro: a
  condition: or b
  override:
    condition: append
""" + RULE.replace("evt.type=open", "evt.type=open and a")
    ruleset = load(tmp_path, text)
    rule = ruleset.rule("r")
    assert tree(rule) == "(evt.type = open and (proc.name = cat or proc.pname = sh))"
    assert rule.used_macros == ("a", "b")


def test_macro_loop(tmp_path: Path) -> None:
    text = "- macro: a\n  condition: proc.name=x\n- macro: b\n  condition: a\n" + (
        "- macro: a\n  condition: b\n  override:\n    condition: replace\n")
    with pytest.raises(RuleResolveError, match="reference loop in macro"):
        load(tmp_path, text + RULE.replace("evt.type=open", "a"))


def test_lists_in_lists_and_forward_references(tmp_path: Path) -> None:
    text = """
- list: inner
  items: [cat, "cat /dev/null"]
- list: outer
  items: [inner, ls]
- list: early
  items: [late]
- list: late
  items: [vi]
""" + RULE.replace("evt.type=open", "proc.name in (outer) or proc.name in (early)")
    ruleset = load(tmp_path, text)
    assert ruleset.lists["outer"].expanded_items == ("cat", "cat /dev/null", "ls")
    # `late` is defined after `early`, so the list keeps the name, and the textual substitution
    # of `late` (which comes later) then replaces it in the condition, as in Falco
    assert ruleset.lists["early"].expanded_items == ("late",)
    rule = ruleset.rule("r")
    assert rule.expanded_text == (
        'proc.name in ( cat, "cat /dev/null", ls ) or proc.name in ( vi )')
    assert set(rule.used_lists) == {"outer", "inner", "early", "late"}


def test_empty_list_drops_a_comma(tmp_path: Path) -> None:
    text = "- list: none\n  items: []\n" + RULE.replace(
        "evt.type=open", "proc.name in (none, cat) or proc.name in (ls, none)")
    rule = load(tmp_path, text).rule("r")
    assert rule.expanded_text == "proc.name in (   cat) or proc.name in (ls  )"
    assert tree(rule) == "(proc.name in (cat) or proc.name in (ls))"


def test_unused_and_name_warnings(tmp_path: Path) -> None:
    text = RULE + "- list: spare\n  items: [a]\n- macro: spare_macro\n  condition: x.y=1\n" + (
        "- macro: bad name\n  condition: x.y=2\n- list: 'bad,list'\n  items: [b]\n")
    assert sorted(codes(load(tmp_path, text))) == [
        "invalid-list-name", "invalid-macro-name", "unused-list", "unused-list", "unused-macro",
        "unused-macro"]


def test_list_and_macro_append_before_definition(tmp_path: Path) -> None:
    with pytest.raises(RuleLoadError, match="no list by that name already exists"):
        load(tmp_path, "- list: l\n  items: [a]\n  override:\n    items: append\n")
    with pytest.raises(RuleLoadError, match="no macro by that name already exists"):
        load(tmp_path, "- macro: m\n  condition: or a.b=1\n  append: true\n")
    # a replace before any definition is just a definition (Falco's unit tests)
    replace = "- macro: m\n  condition: a.b=1\n  override:\n    condition: replace\n"
    ruleset = load(tmp_path, replace)
    assert ruleset.macros["m"].condition_text == "a.b=1"


# ---- errors: positions, collecting, other sources -----------------------------------------------


def test_syntax_error_in_an_appended_condition_names_the_append(tmp_path: Path) -> None:
    more = "- rule: r\n  condition: and (proc.name=\n  override:\n    condition: append\n"
    with pytest.raises(RuleSyntaxError) as info:
        load(tmp_path, RULE, more)
    err = info.value
    assert err.source is not None and err.source.path.endswith("1.yaml")
    assert (err.source.line, err.source.item) == (2, "rule 'r'")
    assert err.text == "evt.type=open and (proc.name="


def test_collect_mode_reports_every_error_once(tmp_path: Path) -> None:
    text = RULE.replace("evt.type=open", "evt.type=open and missing") + (
        "- rule: other\n  desc: d\n  condition: (\n  output: o\n  priority: INFO\n"
        "- list: broken\n")
    ruleset = load(tmp_path, text, "- rule: r\n  enabled: true\n", collect=True)
    messages = [e.message for e in ruleset.errors]
    assert messages.count("Undefined macro 'missing' used in filter.") == 1  # compiled twice
    assert "Item has no mapping for key 'items'" in messages
    assert len(ruleset.errors) == 3
    assert [r.name for r in ruleset.rules] == ["r", "other"]
    assert all(r.ast is None for r in ruleset.rules)


def test_other_sources_load_as_not_applicable(tmp_path: Path) -> None:
    text = "- macro: k8s_only\n  condition: ka.verb=create\n" + RULE.replace(
        "evt.type=open", "k8s_only and not ka.user.name in (x)").replace(
        "priority: INFO", "priority: INFO\n  source: k8s_audit")
    ruleset = load(tmp_path, text)
    rule = ruleset.rule("r")
    assert (rule.applicable, rule.ast, rule.source) == (False, None, "k8s_audit")
    assert "k8s_audit" in rule.not_applicable_reason
    assert rule.used_macros == ("k8s_only",) and ruleset.macros["k8s_only"].used
    assert codes(ruleset) == ["unknown-source"]


def test_not_applicable_rules_never_fail(tmp_path: Path) -> None:
    text = RULE.replace("evt.type=open", "a b c (").replace(
        "priority: INFO", "priority: INFO\n  source: aws_cloudtrail")
    assert load(tmp_path, text).rule("r").ast is None


# ---- versions and files -------------------------------------------------------------------------


@pytest.mark.parametrize(("written", "recorded"), [
    ("2", "0.2.0"), ("26", "0.26.0"), ("0.26.0", "0.26.0"), (ENGINE_VERSION, ENGINE_VERSION),
])
def test_engine_version(tmp_path: Path, written: str, recorded: str) -> None:
    text = f"- required_engine_version: {written}\n- required_engine_version: 1\n"
    assert load(tmp_path, text).required_engine_version == recorded


@pytest.mark.parametrize(("written", "message"), [
    ("0.58.0", "Rules require engine version 0.58.0, but engine version is 0.57.0"),
    ("1.0.0", "Rules require engine version 1.0.0"),
    ("seven", "Unable to parse engine version 'seven'"),
])
def test_engine_version_errors(tmp_path: Path, written: str, message: str) -> None:
    with pytest.raises(RuleLoadError, match=message):
        load(tmp_path, f"- required_engine_version: {written}\n")


def test_plugin_requirements(tmp_path: Path) -> None:
    text = """
- required_plugin_versions:
    - name: container
      version: 0.4.0
    - name: k8saudit
      version: 0.7.0
      alternatives:
        - name: k8saudit-eks
          version: 0.2.0
"""
    ruleset = load(tmp_path, text)
    assert [(p.name, p.alternatives) for p in ruleset.required_plugin_versions] == [
        ("container", ()), ("k8saudit", (("k8saudit-eks", "0.2.0"),))]
    assert codes(ruleset) == ["plugin-required"]  # container metadata is built in
    with pytest.raises(RuleLoadError, match="Invalid required version 'latest'"):
        load(tmp_path, "- required_plugin_versions:\n    - name: x\n      version: latest\n")


def test_directory_loads_yaml_files_in_name_order() -> None:
    files = expand_paths([FIXTURES / "dir", FIXTURES / "yaml_quirks.yaml"])
    assert [Path(f).name for f in files] == ["02-first.yml", "10-second.yaml", "yaml_quirks.yaml"]
    ruleset = load_rules([FIXTURES / "dir"])
    assert [r.name for r in ruleset.rules] == ["second"]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(RuleError, match="Could not read rules file"):
        load_rules([tmp_path / "nope.yaml"])
    assert load_rules([], collect_errors=True).rules == ()
