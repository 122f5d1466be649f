"""Falco's own loader test files, each with the outcome Falco gives it, and the upstream rules.

`testing-rules/` holds the rule files of falcosecurity/testing (INDEX.tsv maps each to its Go
test). Many are loaded after another file in those tests (an append needs its base rule), so each
case lists the files loaded before it. The expected error is a fragment of Falco's own message.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from analyze.ast import MacroRef, to_text
from analyze.errors import RuleError, RuleLoadError, RuleResolveError, RuleSyntaxError
from analyze.loader import load_rules

REPO = Path(__file__).resolve().parents[1]
ANCHORS = REPO.parent / "shared" / "anchors" / "falco-rules"
TESTING = ANCHORS / "testing-rules"
FIXTURES = Path(__file__).parent / "fixtures" / "rules"
needs_anchors = pytest.mark.skipif(not ANCHORS.is_dir(), reason="shared Falco anchors not present")

SINGLE = ("falco/single_rule.yaml",)
K8S = ("k8saudit/engine_v4_k8s_audit_rules.yaml",)

# file -> (files loaded first, expected error fragment or None for "loads")
CASES: dict[str, tuple[tuple[str, ...], str | None]] = {
    "exceptions/append_item_fields_values_len_mismatch.yaml":
        ((), "Fields and values lists must have equal length"),
    "exceptions/append_item_no_name.yaml": ((), "Item has no mapping for key 'name'"),
    "exceptions/append_item_not_in_rule.yaml":
        ((), "Rule exception must have fields property with a list of fields"),
    "exceptions/item_comps_fields_len_mismatch.yaml":
        ((), "Fields and comps lists must have equal length"),
    "exceptions/item_fields_values_len_mismatch.yaml":
        ((), "Fields and values lists must have equal length"),
    "exceptions/item_no_fields.yaml": ((), "Item has no mapping for key 'fields'"),
    "exceptions/item_no_name.yaml": ((), "Item has no mapping for key 'name'"),
    "exceptions/item_unknown_comp.yaml": ((), "'no-comp' is not a supported comparison operator"),
    "exceptions/item_unknown_fields.yaml": ((), "'not.exist' is not a supported filter field"),
    "exceptions/rule_exception_append_comp.yaml": ((), None),
    "exceptions/rule_exception_append_multiple.yaml": ((), None),
    "exceptions/rule_exception_append_one_value.yaml": ((), None),
    "exceptions/rule_exception_append_second_item.yaml": ((), None),
    "exceptions/rule_exception_append_second_value.yaml": ((), None),
    "exceptions/rule_exception_append_third_item.yaml": ((), None),
    "exceptions/rule_exception_comp.yaml": ((), None),
    "exceptions/rule_exception_new_no_field_append.yaml":
        ((), "Rule exception must have fields property with a list of fields"),
    "exceptions/rule_exception_new_second_field_append.yaml": ((), None),
    "exceptions/rule_exception_new_single_field_append.yaml": ((), None),
    "exceptions/rule_exception_no_values.yaml": ((), None),
    "exceptions/rule_exception_one_value.yaml": ((), None),
    "exceptions/rule_exception_quoted.yaml": ((), None),
    "exceptions/rule_exception_second_item.yaml": ((), None),
    "exceptions/rule_exception_second_value.yaml": ((), None),
    "exceptions/rule_exception_single_field.yaml": ((), None),
    "exceptions/rule_exception_single_field_append.yaml": ((), None),
    "exceptions/rule_exception_third_item.yaml": ((), None),
    "exceptions/rule_exception_values_list.yaml": ((), None),
    "exceptions/rule_exception_values_listref.yaml": ((), None),
    "exceptions/rule_exception_values_listref_noparens.yaml": ((), None),
    "falco/000-single_rule.yaml": ((), None),
    "falco/001-double_rule.yaml": (("falco/000-single_rule.yaml",), None),
    "falco/append_single_rule.yaml": (SINGLE, None),
    "falco/append_unknown_source.yaml": ((), None),
    "falco/catchall_order.yaml": ((), None),
    "falco/cloudtrail_create_instances.yaml": ((), None),
    "falco/cloudtrail_create_instances_exceptions.yaml": ((), None),
    "falco/cloudtrail_incompat_plugin_version.yaml": ((), None),
    "falco/detect_connect_using_in.yaml": ((), None),
    "falco/disabled_rule_using_enabled_flag_only.yaml": ((), None),
    "falco/double_rule.yaml": (SINGLE, None),
    "falco/empty_rules.yaml": ((), None),
    "falco/enabled_rule_using_enabled_flag_only.yaml": ((), None),
    "falco/endswith.yaml": ((), None),
    "falco/engine_version_mismatch.yaml":
        ((), "Rules require engine version 0.9999999.0, but engine version is 0.57.0"),
    "falco/falco_rules_warnings.yaml": ((), None),
    "falco/invalid_append_macro.yaml":
        (("falco/invalid_base_macro.yaml",), "unexpected token after 'execve'"),
    "falco/invalid_append_macro_multiple_docs.yaml": ((), "unexpected token after 'execve'"),
    "falco/invalid_append_rule.yaml":
        (("falco/invalid_base_rule.yaml",), "unexpected token after 'open'"),
    "falco/invalid_append_rule_multiple_docs.yaml": ((), "unexpected token after 'open'"),
    "falco/invalid_append_rule_without_condition.yaml":
        ((), "Appended rule must have exceptions or condition property"),
    "falco/invalid_array_item_not_object.yaml": ((), "Unexpected element type"),
    "falco/invalid_base_macro.yaml": ((), None),
    "falco/invalid_base_rule.yaml": ((), None),
    "falco/invalid_condition_not_rule.yaml": ((), "Mapping for key 'condition' is empty"),
    "falco/invalid_engine_version_not_number.yaml":
        ((), "Unable to parse engine version 'not-a-number'"),
    # Falco expands lists one level deep, so this "loop" leaves a literal value, no error; we
    # load it too and warn (see test_list_loop_is_a_warning).
    "falco/invalid_list_loop.yaml": ((), None),
    "falco/invalid_list_without_items.yaml": ((), "Item has no mapping for key 'items'"),
    "falco/invalid_macro_comple_error.yaml": ((), "Undefined macro 'gak' used in filter."),
    "falco/invalid_macro_loop.yaml": ((), "reference loop in macro 'macro_b'"),
    "falco/invalid_macro_without_condition.yaml": ((), "Item has no mapping for key 'condition'"),
    "falco/invalid_missing_list_name.yaml": ((), "Mapping for key 'list' is empty"),
    "falco/invalid_missing_macro_name.yaml": ((), "Mapping for key 'macro' is empty"),
    "falco/invalid_missing_rule_name.yaml": ((), "Mapping for key 'rule' is empty"),
    "falco/invalid_not_array.yaml": ((), "Rules content is not yaml array of objects"),
    "falco/invalid_not_yaml.yaml": ((), "Rules content is not yaml"),
    "falco/invalid_overwrite_macro.yaml":
        (("falco/invalid_base_macro.yaml",), "Undefined macro 'foo' used in filter."),
    "falco/invalid_overwrite_macro_multiple_docs.yaml":
        ((), "Undefined macro 'foo' used in filter."),
    "falco/invalid_overwrite_rule.yaml":
        (("falco/invalid_base_rule.yaml",), "Undefined macro 'bar' used in filter."),
    "falco/invalid_overwrite_rule_multiple_docs.yaml":
        ((), "Undefined macro 'bar' used in filter."),
    # Falco: "invalid formatting token not_a_real_field" - output formats are not the loader's
    # to check (see test_invalid_rule_output_is_left_to_the_output_check).
    "falco/invalid_rule_output.yaml": ((), None),
    "falco/invalid_rule_without_output.yaml": ((), "Item has no mapping for key 'output'"),
    "falco/invalid_yaml_parse_error.yaml": ((), "YAML parse error: mapping values are not allowed"),
    "falco/list_append.yaml": ((), None),
    "falco/list_append_false.yaml": ((), None),
    "falco/list_order.yaml": ((), None),
    "falco/list_sub_bare.yaml": ((), None),
    "falco/list_sub_end.yaml": ((), None),
    "falco/list_sub_front.yaml": ((), None),
    "falco/list_sub_mid.yaml": ((), None),
    "falco/list_sub_whitespace.yaml": ((), None),
    "falco/list_substring.yaml": ((), None),
    "falco/macro_append.yaml": ((), None),
    "falco/macro_append_false.yaml": ((), None),
    "falco/macro_order.yaml": ((), None),
    "falco/multiple_docs.yaml": ((), None),
    "falco/null_output_field.yaml": ((), None),
    "falco/override_list.yaml": (SINGLE, None),
    "falco/override_macro.yaml": (SINGLE, None),
    "falco/override_nested_list.yaml": (SINGLE, None),
    "falco/override_rule.yaml": (SINGLE, None),
    "falco/rule-list-with-plugin-json.yaml": (SINGLE, None),
    "falco/rule_append.yaml": ((), None),
    "falco/rule_append_false.yaml": ((), None),
    "falco/rule_names_with_regex_chars.yaml": ((), None),
    "falco/rule_names_with_spaces.yaml": ((), None),
    "falco/rule_order.yaml": ((), None),
    "falco/shadowing_rules.yaml": ((), None),
    "falco/single_rule.yaml": ((), None),
    "falco/single_rule_enabled_flag.yaml": ((), None),
    "falco/single_rule_with_tags.yaml": ((), None),
    # Unknown fields (proc.nobody) are the field checker's to report, after loading.
    "falco/skip_unknown_error.yaml": ((), None),
    "falco/skip_unknown_evt.yaml": ((), None),
    "falco/skip_unknown_prefix.yaml": ((), None),
    "falco/skip_unknown_unspec.yaml": ((), None),
    "falco/syscalls.yaml": ((), None),
    "falco/tagged_rules.yaml": ((), None),
    "k8saudit/K8SAuditEngineV4AllowNginxContainer__allow_nginx_container.yaml": (K8S, None),
    "k8saudit/K8SAuditEngineV4AllowOnlyApacheContainer__allow_only_apache_container.yaml":
        (K8S, None),
    "k8saudit/allow_namespace_foo.yaml": (K8S, None),
    "k8saudit/allow_nginx_container.yaml": (K8S, None),
    "k8saudit/allow_only_apache_container.yaml": (K8S, None),
    "k8saudit/allow_user_some-user.yaml": (K8S, None),
    "k8saudit/disallow_kactivity.yaml": (K8S, None),
    "k8saudit/engine_v4_k8s_audit_rules.yaml": ((), None),
    "k8saudit/single_rule_with_json_pointer.yaml": ((), None),
    "k8saudit/trust_nginx_container.yaml": (("fixture:k8s_audit_base_lists.yaml",), None),
    "legacy/falco_rules.yaml": ((), None),
}


def _path(name: str) -> Path:
    if name.startswith("fixture:"):
        return FIXTURES / name.removeprefix("fixture:")
    return TESTING / name


@needs_anchors
def test_every_indexed_file_has_a_case() -> None:
    with (TESTING / "INDEX.tsv").open() as f:
        indexed = {row["file"] for row in csv.DictReader(f, delimiter="\t")}
    assert indexed == set(CASES)


@needs_anchors
@pytest.mark.parametrize("name", sorted(CASES))
def test_testing_rules_file(name: str) -> None:
    before, expected = CASES[name]
    paths = [_path(p) for p in (*before, name)]
    if expected is None:
        ruleset = load_rules(paths)
        assert ruleset.files == tuple(str(p) for p in paths)
        return
    with pytest.raises(RuleError) as info:
        load_rules(paths)
    err = info.value
    assert expected in err.message
    assert err.source is not None and err.source.path.endswith(".yaml")
    # every error names a place: a file line, or a position in the condition text
    assert err.source.line > 0 or err.position is not None


@needs_anchors
@pytest.mark.parametrize("name", sorted(n for n, (_, e) in CASES.items() if e is not None))
def test_collect_mode_reports_the_same_error(name: str) -> None:
    before, expected = CASES[name]
    ruleset = load_rules([_path(p) for p in (*before, name)], collect_errors=True)
    assert ruleset.errors, "collect mode must report the error instead of raising"
    assert any(expected is not None and expected in e.message for e in ruleset.errors)


@needs_anchors
def test_error_kinds_and_positions() -> None:
    with pytest.raises(RuleLoadError) as parse:
        load_rules([TESTING / "falco/invalid_yaml_parse_error.yaml"])
    assert parse.value.source is not None
    assert (parse.value.source.line, parse.value.source.col) == (1, 11)  # as yaml-cpp reports
    assert parse.value.code == "yaml-parse"

    with pytest.raises(RuleSyntaxError) as syntax:
        load_rules([TESTING / "falco/invalid_base_macro.yaml",
                    TESTING / "falco/invalid_append_macro.yaml"])
    err = syntax.value
    # the error names the appended piece (second file), not the base macro
    assert err.source is not None
    assert err.source.path.endswith("invalid_append_macro.yaml")
    assert err.source.item == "macro 'some_macro'"
    assert err.text == "evt.type=execve foo" and err.position is not None
    assert err.position.col == 17
    assert err.snippet().splitlines()[1] == " " * 16 + "^"

    with pytest.raises(RuleResolveError) as undefined:
        load_rules([TESTING / "falco/invalid_base_rule.yaml",
                    TESTING / "falco/invalid_overwrite_rule.yaml"])
    assert undefined.value.code == "undefined-macro"
    assert undefined.value.source is not None and undefined.value.source.line == 3


@needs_anchors
def test_files_compile_in_order_like_falco() -> None:
    # Falco compiles after every file: a rule using a macro from a later file fails.
    with pytest.raises(RuleResolveError, match="Undefined macro 'is_cat'"):
        load_rules([TESTING / "falco/001-double_rule.yaml", TESTING / "falco/000-single_rule.yaml"])
    ruleset = load_rules([TESTING / "falco/000-single_rule.yaml",
                          TESTING / "falco/001-double_rule.yaml"])
    assert [r.name for r in ruleset.rules] == ["open_from_cat", "exec_from_cat", "access_from_cat"]


@needs_anchors
def test_invalid_rule_output_is_left_to_the_output_check() -> None:
    rule = load_rules([TESTING / "falco/invalid_rule_output.yaml"]).rule("rule_with_invalid_output")
    assert rule.output == "An open was seen %not_a_real_field"


@needs_anchors
def test_list_loop_is_a_warning() -> None:
    ruleset = load_rules([TESTING / "falco/invalid_list_loop.yaml"])
    assert {w.message.split("'")[1] for w in ruleset.warnings if w.code == "list-loop"} == {
        "list_a", "list_b"}
    assert ruleset.macros["macro_a"].expanded_text == "evt.type in ( list_a )"
    rule = ruleset.rule("sample rule")
    assert rule.ast is not None and to_text(rule.ast) == "evt.type in (list_a)"


# ---- golden compiled conditions -----------------------------------------------------------------

# (files, rule, condition_text, expanded_text, to_text(ast))
GOLDEN = [
    (("falco/rule_append.yaml",), "my_rule",
     "(evt.type=open and fd.name=not-a-real-file) or (evt.type=open and fd.name=/dev/null)",
     None,
     "((evt.type = open and fd.name = not-a-real-file) or "
     "(evt.type = open and fd.name = /dev/null))"),
    (("falco/rule_append_false.yaml",), "my_rule",
     "evt.type=open and fd.name=/dev/null and fd.name=not-a-real-file", None,
     "(evt.type = open and fd.name = /dev/null and fd.name = not-a-real-file)"),
    ((*SINGLE, "falco/append_single_rule.yaml"), "open_from_cat",
     "evt.type=open and is_cat and fd.name=/tmp", None,
     "(evt.type = open and proc.name in (cat) and fd.name = /tmp)"),
    ((*SINGLE, "falco/override_rule.yaml"), "open_from_cat",
     "evt.type=open and proc.name=not-cat", None, "(evt.type = open and proc.name = not-cat)"),
    ((*SINGLE, "falco/override_list.yaml"), "open_from_cat", "evt.type=open and is_cat", None,
     "(evt.type = open and proc.name in (not-cat))"),
    ((*SINGLE, "falco/override_macro.yaml"), "open_from_cat", "evt.type=open and is_cat", None,
     "(evt.type = open and proc.name in (not-cat))"),
    ((*SINGLE, "falco/override_nested_list.yaml"), "open_from_cat", "evt.type=open and is_cat",
     None, "(evt.type = open and proc.name in (not-cat))"),
    (("falco/macro_append.yaml",), "Open From Cat", "evt.type=open and my_macro", None,
     "(evt.type = open and (proc.name = not-cat or proc.name = cat))"),
    (("falco/macro_append_false.yaml",), "Open From Cat", "evt.type=open and my_macro", None,
     "(evt.type = open and proc.name = not-cat)"),
    (("falco/macro_order.yaml",), "open_from_cat", "evt.type=open and is_cat", None,
     "(evt.type = open and proc.name in (cat))"),
    (("falco/list_append.yaml",), "Open From Cat", "evt.type=open and proc.name in (my_list)",
     "evt.type=open and proc.name in ( not-cat, cat )",
     "(evt.type = open and proc.name in (not-cat, cat))"),
    (("falco/list_append_false.yaml",), "Open From Cat",
     "evt.type=open and proc.name in (my_list)", "evt.type=open and proc.name in ( not-cat )",
     "(evt.type = open and proc.name in (not-cat))"),
    (("falco/list_order.yaml",), "open_from_cat", "evt.type=open and is_cat", None,
     "(evt.type = open and proc.name in (cat))"),
    (("falco/list_sub_bare.yaml",), "open_from_cat", "evt.type=open and is_cat", None,
     "(evt.type = open and proc.name = cat)"),
    (("falco/list_sub_end.yaml",), "open_from_cat", "evt.type=open and is_cat", None,
     "(evt.type = open and proc.name in (ls, cat))"),
    (("falco/list_sub_front.yaml",), "open_from_cat", "evt.type=open and is_cat", None,
     "(evt.type = open and proc.name in (cat, ps))"),
    (("falco/list_sub_mid.yaml",), "open_from_cat", "evt.type=open and is_cat", None,
     "(evt.type = open and proc.name in (ls, cat, ps))"),
    (("falco/list_sub_whitespace.yaml",), "open_from_cat", "evt.type=open and is_cat", None,
     "(evt.type = open and (proc.name = cat or proc.name = nopey))"),
    # a list name inside a longer word is not substituted: `file_my_list` stays a value
    (("falco/list_substring.yaml",), "my_rule", "evt.type=open and fd.name in (file_my_list)",
     "evt.type=open and fd.name in (file_my_list)",
     "(evt.type = open and fd.name in (file_my_list))"),
]


@needs_anchors
@pytest.mark.parametrize(("files", "rule", "text", "expanded", "tree"), GOLDEN,
                         ids=[g[0][-1] for g in GOLDEN])
def test_golden_condition(files: tuple[str, ...], rule: str, text: str, expanded: str | None,
                          tree: str) -> None:
    loaded = load_rules([TESTING / f for f in files]).rule(rule)
    assert loaded.condition_text == text
    assert loaded.expanded_text == (expanded if expanded is not None else text)
    assert loaded.ast is not None
    assert to_text(loaded.ast) == tree


# (file, macro, expanded text): list substitution is textual, blanks and all
MACRO_GOLDEN = [
    ("falco/list_sub_bare.yaml", "is_cat", "proc.name= cat "),
    ("falco/list_sub_end.yaml", "is_cat", "proc.name in (ls, cat )"),
    ("falco/list_sub_front.yaml", "is_cat", "proc.name in ( cat , ps)"),
    ("falco/list_sub_mid.yaml", "is_cat", "proc.name in (ls, cat , ps)"),
    ("falco/list_sub_whitespace.yaml", "is_cat", "proc.name= cat or proc.name=nopey"),
    ("falco/single_rule.yaml", "is_cat", "proc.name in ( cat )"),
]


@needs_anchors
@pytest.mark.parametrize(("file", "macro", "expanded"), MACRO_GOLDEN,
                         ids=[g[0] for g in MACRO_GOLDEN])
def test_golden_macro_text(file: str, macro: str, expanded: str) -> None:
    assert load_rules([TESTING / file]).macros[macro].expanded_text == expanded


@needs_anchors
def test_override_nested_list_replaces_the_inner_list() -> None:
    ruleset = load_rules([TESTING / "falco/single_rule.yaml",
                          TESTING / "falco/override_nested_list.yaml"])
    outer = ruleset.lists["cat_capable_binaries"]
    assert outer.items == ("cat_binaries",) and outer.expanded_items == ("not-cat",)
    assert outer.referenced_lists == ("cat_binaries",)
    assert ruleset.rule("open_from_cat").used_lists == ("cat_capable_binaries", "cat_binaries")


@needs_anchors
def test_enabled_flag_items() -> None:
    off = load_rules([TESTING / "falco/disabled_rule_using_enabled_flag_only.yaml"])
    on = load_rules([TESTING / "falco/enabled_rule_using_enabled_flag_only.yaml"])
    assert off.rule("open_from_cat").enabled is False
    assert on.rule("open_from_cat").enabled is True
    assert any(w.code == "deprecated-enabled" for w in on.warnings)


@needs_anchors
def test_rule_redefinition_keeps_its_place() -> None:
    ruleset = load_rules([TESTING / "falco/rule_order.yaml"])
    assert [r.name for r in ruleset.rules] == ["open_from_cat"]
    assert ruleset.rules[0].condition_text == "evt.type=open and is_cat"


@needs_anchors
def test_other_sources_are_not_applicable() -> None:
    ruleset = load_rules([TESTING / "k8saudit/engine_v4_k8s_audit_rules.yaml"])
    assert ruleset.rules and all(not r.applicable and r.ast is None for r in ruleset.rules)
    assert all("k8s_audit" in r.not_applicable_reason for r in ruleset.rules)
    assert not any(w.code in ("unused-macro", "unused-list") for w in ruleset.warnings)
    cloud = load_rules([TESTING / "falco/cloudtrail_incompat_plugin_version.yaml"])
    assert [p.name for p in cloud.required_plugin_versions] == ["cloudtrail"]
    assert any(w.code == "plugin-required" for w in cloud.warnings)


@needs_anchors
def test_trusted_k8s_images_are_appended() -> None:
    ruleset = load_rules([FIXTURES / "k8s_audit_base_lists.yaml",
                          TESTING / "k8saudit/trust_nginx_container.yaml"])
    assert ruleset.lists["k8s_audit_privileged_images"].items == ("falcosecurity/falco", "nginx")


# ---- the upstream rule sets ---------------------------------------------------------------------


@needs_anchors
@pytest.mark.parametrize(("path", "rules", "macros", "lists"), [
    ("rules/falco_rules.yaml", 25, 87, 49),
    ("rules-legacy/falco_rules-4.0.0.yaml", 25, 86, 49),
    ("testing-rules/legacy/falco_rules.yaml", 80, 297, 117),
])
def test_upstream_rules_load_cleanly(path: str, rules: int, macros: int, lists: int) -> None:
    ruleset = load_rules([ANCHORS / path], collect_errors=True)
    assert ruleset.errors == ()
    assert ruleset.warnings == ()
    assert (len(ruleset.rules), len(ruleset.macros), len(ruleset.lists)) == (rules, macros, lists)
    for rule in ruleset.rules:
        assert rule.applicable and rule.ast is not None, rule.name
        assert not any(isinstance(n, MacroRef) for n in rule.ast.walk()), rule.name
    assert all(m.used for m in ruleset.macros.values())


@needs_anchors
def test_upstream_stable_rules_metadata() -> None:
    ruleset = load_rules([ANCHORS / "rules/falco_rules.yaml"])
    assert ruleset.required_engine_version == "0.57.0"
    assert [(p.name, p.version) for p in ruleset.required_plugin_versions] == [("container",
                                                                               "0.4.0")]
    rule = ruleset.rule("Terminal shell in container")
    assert rule.priority == "Notice"
    assert rule.tags == tuple(sorted(rule.tags))
    assert "spawned_process" in rule.used_macros and "shell_binaries" in rule.used_lists
    assert rule.origin.path.endswith("falco_rules.yaml") and rule.origin.line > 0
    assert rule.condition_origin.line > rule.origin.line
