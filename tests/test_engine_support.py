"""`analyze.engine_support`: which engine can run which rule, and fields no trace records.

The rules below use constructs that really divide the engines (no monkeypatching): getopt() with
an optstring read from a field (the replay engine runs it, the SQL translator wants a literal),
concat() of a list (the replay compiler refuses it, DuckDB refuses to bind it), and a lookbehind
pattern (RE2, which both engines use, has none). One test also makes the SQL translator refuse a
rule, as a future gap would, to check the mechanism independently of today's gaps.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from analyze import ast, sql_translate
from analyze.engine_api import CompiledRule
from analyze.engine_support import (
    MISSING_FIELD_WARNING,
    check_rules,
    evaluable_rules,
    fields_without_column,
    missing_field_warnings,
    runnable,
    sql_errors,
)
from analyze.parser import parse_condition
from analyze.resolve import load_rules

RULES = {
    "Plain": "proc.name = cat",
    "Getopt From Field": "getopt((proc.name, proc.pname), proc.name) intersects (x)",
    "Concat Of A List": "concat(proc.name, proc.aname) = x",
    "Lookbehind": 'proc.name regex "(?<=a)b"',
    "No Column": "not evt.arg[1] = x and syscall.type = open and proc.name = cat",
    "Needs DNS": "fd.sip.name = example.com",
}


def rule_file(directory: Path, rules: dict[str, str]) -> Path:
    path = directory / "rules.yaml"
    path.write_text("".join(
        f"- rule: {name}\n  desc: d\n  output: o\n  priority: WARNING\n"
        f"  condition: evt.type = open and {condition}\n"
        for name, condition in rules.items()))
    return path


@pytest.fixture
def rules(tmp_path: Path) -> list[CompiledRule]:
    return evaluable_rules(load_rules([rule_file(tmp_path, RULES)]))


def test_only_rules_an_engine_would_run_are_checked(rules: list[CompiledRule]) -> None:
    assert [r.rule.name for r in rules] == list(RULES)[:-1]  # not the one needing DNS


def test_each_engine_and_its_reason(rules: list[CompiledRule]) -> None:
    support = {s.rule: s for s in check_rules(rules).values()}
    assert support["Plain"].errors == ()
    getopt = support["Getopt From Field"]
    assert getopt.runs_on("replay") and not getopt.runs_on("sql")
    error = getopt.error("sql")
    assert error is not None
    assert error.why == "getopt() needs a literal optstring in SQL"
    assert error.message == ("the SQL engine cannot run rule 'Getopt From Field': "
                             "getopt() needs a literal optstring in SQL")
    concat = support["Concat Of A List"]
    assert not concat.runs_on("replay") and not concat.runs_on("sql")
    replay_error, sql_error = concat.error("replay"), concat.error("sql")
    assert replay_error is not None and sql_error is not None
    assert "concat() takes at least two single values" in replay_error.why
    assert sql_error.why.startswith("Binder Error")
    lookbehind = support["Lookbehind"]
    assert [e.engine for e in lookbehind.errors] == ["replay", "sql"]


def test_fields_without_a_column(rules: list[CompiledRule]) -> None:
    support = {s.rule: s for s in check_rules(rules).values()}
    assert support["No Column"].missing_fields == ("evt.arg[1]", "syscall.type")
    assert support["No Column"].errors == ()
    assert support["Plain"].missing_fields == ()
    (warning,) = missing_field_warnings(rules)
    assert warning.code == MISSING_FIELD_WARNING
    assert warning.message == ("rule 'No Column': traces do not record evt.arg[1], "
                               "syscall.type; checks on it are false")
    assert warning.source is not None and warning.source.item == "rule 'No Column'"


def test_fields_without_a_column_of_a_condition_replay_cannot_compile() -> None:
    tree = parse_condition("concat(proc.name, proc.aname) = x and proc.acmdline = y")
    assert fields_without_column(tree) == ("proc.acmdline",)


@pytest.mark.parametrize(("engine", "skipped"), [
    ("replay", ["Concat Of A List", "Lookbehind"]),
    ("sql", ["Getopt From Field", "Concat Of A List", "Lookbehind"]),
    ("predicates", []),  # an engine this module does not know is trusted
])
def test_runnable(rules: list[CompiledRule], engine: str, skipped: list[str]) -> None:
    kept, left_out = runnable(engine, rules)
    assert [s.rule for s in left_out] == skipped
    assert [r.rule.name for r in kept] == [r.rule.name for r in rules
                                           if r.rule.name not in skipped]
    assert all(f"engine cannot run rule '{s.rule}'" in s.reason for s in left_out)


def test_a_rule_the_translator_refuses_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    refuse = sql_translate.SqlGenerator.binary_check_sql

    def binary_check_sql(self: sql_translate.SqlGenerator, node: ast.BinaryCheck) -> str:
        if "refused" in ast.to_text(node):
            raise sql_translate.SqlTranslateError("no SQL for this check")
        return refuse(self, node)

    monkeypatch.setattr(sql_translate.SqlGenerator, "binary_check_sql", binary_check_sql)
    rules = evaluable_rules(load_rules([rule_file(tmp_path, {
        "Fine": "proc.name = cat", "Refused": "proc.name = refused"})]))
    errors = sql_errors(rules)
    assert [rules[i].rule.name for i in errors] == ["Refused"]
    assert errors[1].why == "no SQL for this check"
    kept, skipped = runnable("sql", rules)
    assert [r.rule.name for r in kept] == ["Fine"]
    assert [s.rule for s in skipped] == ["Refused"]


def test_upstream_and_shipped_rules_run_on_both_engines() -> None:
    anchors = Path(__file__).resolve().parents[2] / "shared" / "anchors" / "falco-rules" / "rules"
    paths = [Path(__file__).resolve().parents[1] / "rules"]
    if anchors.is_dir():
        paths.append(anchors / "falco_rules.yaml")
    rules = evaluable_rules(load_rules(paths))
    assert rules
    gaps = {s.rule: s.errors for s in check_rules(rules).values() if s.errors}
    assert gaps == {}


def test_warnings_are_the_replay_engines_own(rules: list[CompiledRule]) -> None:
    from analyze import replay

    assert replay.MISSING_FIELD_WARNING == MISSING_FIELD_WARNING
    runnable_rules, _ = runnable("replay", rules)
    plan = replay.ReplayEngine().compile(runnable_rules)
    assert list(plan.warnings) == missing_field_warnings(runnable_rules)
