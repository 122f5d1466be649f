"""`analyze validate` end to end: upstream rule files, shipped rules, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from analyze import load_rules
from analyze.errors import RuleError
from cli import analyze

ANCHORS = Path(__file__).resolve().parents[2] / "shared" / "anchors" / "falco-rules"
STABLE = ANCHORS / "rules" / "falco_rules.yaml"
LEGACY = ANCHORS / "rules-legacy" / "falco_rules-4.0.0.yaml"
TESTING = ANCHORS / "testing-rules"
SHIPPED = Path(__file__).resolve().parents[1] / "rules"


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(analyze, list(args), env={"COLUMNS": "250"})
    return result.exit_code, result.output


@pytest.mark.parametrize("path", [STABLE, LEGACY, SHIPPED], ids=["stable", "legacy", "shipped"])
def test_rule_files_validate_clean_with_fields_reported(path: Path) -> None:
    code, out = run("validate", "-r", str(path), "--format", "json")
    assert code == 0, out
    report = json.loads(out)
    assert report["successful"] and report["counts"]["errors"] == 0
    assert report["counts"]["rules"] > 0
    for rule in report["rules"]:
        if rule["applicable"]:
            assert rule["fields"], f"no field set for {rule['name']}"
            assert rule["evttypes"], f"no event types for {rule['name']}"


def test_upstream_stable_counts() -> None:
    _, out = run("validate", "-r", str(STABLE), "--format", "json")
    counts = json.loads(out)["counts"]
    assert (counts["rules"], counts["macros"], counts["lists"]) == (25, 87, 49)


def test_shipped_rules_load_next_to_upstream_without_collisions() -> None:
    ours = load_rules([SHIPPED])
    both = load_rules([SHIPPED, STABLE])
    assert len(both.rules) == len(ours.rules) + 25
    for rule in ours.rules:
        assert both.rule(rule.name).condition_text == rule.condition_text


def test_table_report_summarises() -> None:
    code, out = run("validate", "-r", str(SHIPPED), "-r", str(STABLE))
    assert code == 0
    assert "Result:   OK" in out
    assert "Not evaluable here: 1" in out  # Contact K8S API Server needs fd.sip.name (DNS)


def invalid_testing_files() -> list[Path]:
    # invalid_base_*.yaml are valid alone: they are the base the other invalid_* files break.
    # invalid_list_loop.yaml loads in Falco too: one-level list expansion leaves a literal.
    falco = [
        p for p in (TESTING / "falco").glob("invalid_*.yaml")
        if "_base_" not in p.name and p.name != "invalid_list_loop.yaml"
    ]
    return sorted(falco) + sorted(
        p for p in (TESTING / "exceptions").glob("*.yaml")
        if p.name.startswith(("item_", "append_item"))
    )


@pytest.mark.parametrize("path", invalid_testing_files(), ids=lambda p: p.name)
def test_invalid_files_fail_cleanly(path: Path) -> None:
    code, out = run("validate", "-r", str(path), "--summary")
    assert code == 1, out
    assert "Traceback" not in out
    assert path.name in out.replace("\n", "")  # the error names the file


def test_invalid_files_fail_cleanly_as_json() -> None:
    path = TESTING / "falco" / "invalid_macro_loop.yaml"
    code, out = run("validate", "-r", str(path), "--format", "json")
    assert code == 1
    error = json.loads(out)["errors"][0]
    location = error["context"]["locations"][0]
    assert location["position"]["name"].endswith("invalid_macro_loop.yaml")
    assert location["position"]["line"] >= 1


def test_error_points_into_the_condition(tmp_path: Path) -> None:
    rules = tmp_path / "r.yaml"
    rules.write_text(
        "- rule: typo\n  desc: d\n  output: o\n  priority: INFO\n"
        "  condition: evt.type = open and proc.nme = cat\n"
    )
    code, out = run("validate", "-r", str(rules), "--summary")
    assert code == 1
    assert "proc.nme" in out and "did you mean 'proc.name'" in out
    assert "^~~~~~~~" in out


def test_output_with_unknown_field_is_an_error() -> None:
    path = TESTING / "falco" / "invalid_rule_output.yaml"
    with pytest.raises(RuleError, match="invalid formatting token not_a_real_field"):
        load_rules([path])


def test_missing_file_is_one_message(tmp_path: Path) -> None:
    code, out = run("validate", "-r", str(tmp_path / "nope.yaml"), "--summary")
    assert code == 1
    assert "nope.yaml" in out and "Traceback" not in out


@pytest.mark.parametrize(
    "content",
    ["- rule: [unclosed\n", "just a string\n", "- 42\n", "\x00\x01binary", "- rule: x\n  bad: [\n"],
)
def test_garbage_never_tracebacks(tmp_path: Path, content: str) -> None:
    rules = tmp_path / "bad.yaml"
    rules.write_text(content)
    code, out = run("validate", "-r", str(rules), "--summary")
    assert code == 1, out
    assert "Traceback" not in out and "bad.yaml" in out


# ---- engine support ---------------------------------------------------------------------------

ENGINE_GAPS = (
    "- rule: Getopt From Field\n  desc: d\n  output: o\n  priority: INFO\n"
    "  condition: evt.type = open and getopt((proc.name, proc.pname), proc.name) intersects (x)\n"
    "- rule: Concat Of A List\n  desc: d\n  output: o\n  priority: INFO\n"
    "  condition: evt.type = open and concat(proc.name, proc.aname) = x\n"
    "- rule: No Column\n  desc: d\n  output: o\n  priority: INFO\n"
    "  condition: evt.type = open and not evt.arg[1] = x and proc.acmdline = y\n"
    "- rule: Plain\n  desc: d\n  output: o\n  priority: INFO\n"
    "  condition: evt.type = open and proc.name = cat\n"
    "- rule: Needs DNS\n  desc: d\n  output: o\n  priority: INFO\n"
    "  condition: evt.type = connect and fd.sip.name = example.com\n"
)


def test_engine_support_as_json(tmp_path: Path) -> None:
    rules = tmp_path / "r.yaml"
    rules.write_text(ENGINE_GAPS)
    code, out = run("validate", "-r", str(rules), "--format", "json")
    assert code == 0, out  # a rule one engine cannot run is reported, not an error
    report = json.loads(out)
    engines = {r["name"]: r["engines"] for r in report["rules"]}
    assert engines["Getopt From Field"] == {
        "replay": True, "sql": False, "sql_error": "getopt() needs a literal optstring in SQL"}
    concat = engines["Concat Of A List"]
    assert (concat["replay"], concat["sql"]) == (False, False)
    assert "concat() takes at least two single values" in concat["replay_error"]
    assert engines["Plain"] == engines["No Column"] == {"replay": True, "sql": True}
    assert engines["Needs DNS"] is None  # not evaluable: no engine is asked
    missing = {r["name"]: r["missing_fields"] for r in report["rules"]}
    assert missing["No Column"] == ["evt.arg[1]", "proc.acmdline"]
    assert report["counts"]["engine_unsupported"] == {"replay": 1, "sql": 2}
    assert report["counts"]["fields_not_in_trace"] == 1
    (warning,) = [w for w in report["warnings"] if w["code"] == "field-not-in-trace"]
    assert warning["message"] == (
        "rule 'No Column': traces do not record evt.arg[1], proc.acmdline; checks on it are false")
    assert warning["context"]["locations"][0]["item_name"] == "No Column"


def test_engine_support_in_the_table(tmp_path: Path) -> None:
    rules = tmp_path / "r.yaml"
    rules.write_text(ENGINE_GAPS)
    code, out = run("validate", "-r", str(rules))
    assert code == 0, out
    assert ("Engines:  replay cannot run 1, sql cannot run 2 rule(s) (see Engine support); "
            "1 rule(s) read fields traces do not record") in out
    lines = [line.strip() for line in out.splitlines()]
    section = "\n".join(lines[lines.index("Engine support"):lines.index("Rules")])
    assert "Getopt From Field" in section and "Concat Of A List" in section
    assert "Plain" not in section and "No Column" not in section
    assert "cannot run: getopt() needs a literal optstring in SQL" in section
    assert "field-not-in-trace" in out
    rows = {line.split("│")[1].strip(): line.split("│")[-2].strip()
            for line in out.splitlines() if line.count("│") == 6}
    assert rows["Getopt From Field"] == "replay engine only"
    assert rows["Concat Of A List"] == "no engine can run it"
    assert rows["Plain"] == rows["No Column"] == "ok"


@pytest.mark.parametrize("path", [STABLE, LEGACY, SHIPPED], ids=["stable", "legacy", "shipped"])
def test_rule_files_run_on_both_engines(path: Path) -> None:
    _, out = run("validate", "-r", str(path), "--format", "json")
    report = json.loads(out)
    assert report["counts"]["engine_unsupported"] == {"replay": 0, "sql": 0}
    evaluable = [r for r in report["rules"] if r["evaluable"]]
    assert evaluable and all(r["engines"]["replay"] and r["engines"]["sql"] for r in evaluable)
