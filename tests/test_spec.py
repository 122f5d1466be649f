"""`analyze test`: spec format errors, verdicts on both engines, reports, JUnit, `--update`.

The traces are small Parquet files written with the capture's TraceWriter; the rules and specs
are written per test. Everything runs both real engines: the replay evaluator and DuckDB. One
rule really divides them (getopt() with an optstring read from a field: the replay engine runs
it, the SQL translator refuses it), which is how a rule an engine skips is tested; a
disagreement on events, which no real rule shows today, is built from result values.
"""

from __future__ import annotations

import json
import re
import shutil
import xml.etree.ElementTree as ET
from io import StringIO
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result
from event_traces import write_events
from rich.console import Console

import cli
from analyze.alerts import Alert
from analyze.error_render import format_error
from analyze.spec_check import check_test
from analyze.spec_format import RuleExpectation, SpecError, SpecTest, parse_spec
from analyze.spec_render import render_report
from analyze.spec_run import CaseRun, EngineResult
from analyze.spec_suite import EXIT_FAILED, run_suite
from analyze.spec_update import UpdateRefused, flow_list, new_expectations

T0 = 1_700_000_000_000_000_000
EVENTS = {
    1: {"evt.type": "open", "proc.name": "cat", "fd.name": "/etc/shadow"},
    2: {"evt.type": "open", "proc.name": "ls", "fd.name": "/tmp/x"},
    3: {"evt.type": "close", "proc.name": "cat"},
    4: {"evt.type": "open", "proc.name": "cat", "fd.name": "/etc/passwd"},
    5: {"evt.type": "execve", "proc.name": "bash"},
}
RULES = """\
- rule: Cat Open
  desc: d
  condition: evt.type = open and proc.name = cat
  output: cat opened %fd.name
  priority: WARNING
- rule: Any Open
  desc: d
  condition: evt.type = open
  output: open of %fd.name by %proc.name
  priority: NOTICE
- rule: Close
  desc: d
  condition: evt.type = close
  output: close by %proc.name
  priority: INFO
- rule: Never
  desc: d
  condition: evt.type = open and proc.name = nosuch
  output: never
  priority: DEBUG
"""
# The replay engine runs getopt() on a field's value; the SQL translator wants a literal.
SPLIT_RULE = """\
- rule: Getopt From Field
  desc: d
  condition: evt.type = open and getopt((proc.name, proc.pname), proc.name) intersects (x)
  output: o
  priority: INFO
"""

PASSING = """\
# Regression tests for rules.yaml.
rules: [rules.yaml]
tests:
  - name: cat reads   # the cat scenario
    trace: trace.parquet
    expect:
      Cat Open: {count: 2, evt_nums: [1, 4], priority: warning, output_contains: cat opened}
      Any Open:
        evt_nums: [1, 2, 4]
      Close: {count: 1}
    must_not_fire: [Never]
  - name: only close matters
    traces: [trace.parquet]
    others: ignore
    expect:
      Close: {count: 1, output_contains: [close by cat]}
"""


def write_trace(path: Path, events: dict[int, dict[str, str]]) -> Path:
    return write_events(path, events, T0, {"evt.dir": "<"})


@pytest.fixture(scope="module")
def trace_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_trace(tmp_path_factory.mktemp("spec") / "trace.parquet", EVENTS)


@pytest.fixture
def work(tmp_path: Path, trace_file: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory holding trace.parquet and rules.yaml, made the cwd (paths stay relative)."""
    shutil.copy(trace_file, tmp_path / "trace.parquet")
    (tmp_path / "rules.yaml").write_text(RULES)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SYSREPLAY_DEBUG", raising=False)
    return tmp_path


def analyze_test(*args: str) -> Result:
    return CliRunner().invoke(cli.analyze, ["test", *args])


def spec_error(text: str, path: str = "s.yaml") -> str:
    with pytest.raises(SpecError) as info:
        parse_spec(text, path)
    return str(info.value)


# ---- the format ---------------------------------------------------------------------------------

BASE = "rules: [rules.yaml]\ntests:\n  - name: t\n    trace: trace.parquet\n"


@pytest.mark.parametrize(("text", "message"), [
    (BASE + "    expcet: {Close: {count: 1}}\n",
     "s.yaml:5:5 (test 't'): Unknown key 'expcet' in a test (known: name, trace, traces, "
     "expect, must_not_fire, others); did you mean 'expect'?"),
    ("rule: [rules.yaml]\n",
     "s.yaml:1:1: Unknown key 'rule' in the spec (known: rules, options, others, tests); "
     "did you mean 'rules'?"),
    ("rules: [rules.yaml]\n", "s.yaml:1:1: the spec has no 'tests' key."),
    (BASE + "    traces: [trace.parquet]\n",
     "s.yaml:3:5 (test 't'): A test needs exactly one of 'trace' (one trace) or 'traces' "
     "(the segments of one capture)."),
    (BASE + "    expect:\n      Close: {count: 2, evt_nums: [3]}\n",
     "s.yaml:6:22 (test 't'): 'count' is 2 but 'evt_nums' lists 1 events."),
    (BASE + "    expect:\n      Close: {evt_nums: [3, 3]}\n",
     "s.yaml:6:29 (test 't'): The event number 3 is listed twice."),
    (BASE + "    expect:\n      Close: {count: many}\n",
     "s.yaml:6:22 (test 't'): 'count' must be a non-negative decimal integer."),
    (BASE + "    expect:\n      Close: {}\n",
     "s.yaml:6:14 (test 't'): the expectation of 'Close' needs 'count' or 'evt_nums' "
     "(or both)."),
    (BASE + "    expect:\n      Close: {count: 1, priority: loud}\n",
     "s.yaml:6:35 (test 't'): 'priority' is 'loud', not a priority; use one of Emergency, "
     "Alert, Critical, Error, Warning, Notice, Informational, Debug."),
    (BASE + "    expect:\n      Close: {count: 1}\n    must_not_fire: [Close]\n",
     "s.yaml:7:21 (test 't'): The rule 'Close' is listed twice (in 'expect' or "
     "'must_not_fire')."),
    (BASE + "    others: some\n",
     "s.yaml:5:13 (test 't'): 'others' is 'some'; use none (no unlisted rule may fire) or "
     "ignore (unlisted rules are not checked)."),
    (BASE + "  - name: t\n    trace: trace.parquet\n",
     "s.yaml:5:5 (test 't'): Two tests are named 't': test names must be unique within a "
     "spec."),
    (BASE.replace("trace.parquet", "missing.parquet"),
     "s.yaml:4:12 (test 't'): The trace 'missing.parquet' does not exist (paths are relative "
     "to the spec file's directory)."),
    ("options: {rule_matching: some}\n" + BASE,
     "s.yaml:1:26 (options): 'rule_matching' is 'some'; use all or first."),
    (BASE + "    expect: [Close]\n",
     "s.yaml:5:13 (test 't'): 'expect' must map rule names to expectations, e.g. "
     "`My Rule: {count: 1}`."),
    ("rules: [rules.yaml\n", "s.yaml:2:1: YAML parse error: expected ',' or ']', but got "
     "'<stream end>'"),
], ids=["unknown-key", "top-level-typo", "no-tests", "trace-and-traces", "count-vs-nums",
        "duplicate-num", "count-not-int", "empty-expectation", "bad-priority",
        "expected-and-silent", "bad-others", "duplicate-test", "missing-trace",
        "bad-rule-matching", "expect-not-mapping", "yaml-syntax"])
def test_format_errors_name_file_line_and_column(work: Path, text: str, message: str) -> None:
    assert spec_error(text) == message


def test_format_error_on_the_command_line_underlines_the_key(work: Path) -> None:
    Path("s.yaml").write_text(BASE + "    expcet: {Close: {count: 1}}\n")
    result = analyze_test("s.yaml")
    assert result.exit_code == 1
    assert result.output == (
        "Error: s.yaml:5:5 (test 't'): Unknown key 'expcet' in a test (known: name, trace, "
        "traces, expect, must_not_fire, others); did you mean 'expect'?\n"
        "        expcet: {Close: {count: 1}}\n"
        "        ^~~~~~~\n"
    )


def test_a_rule_name_that_is_no_rule_is_an_error(work: Path) -> None:
    Path("s.yaml").write_text(BASE + "    must_not_fire: [Clsoe]\n")
    result = analyze_test("s.yaml")
    assert result.exit_code == 1
    assert result.output.startswith(
        "Error: s.yaml:5:21 (test 't'): No rule named 'Clsoe' in rules.yaml; did you mean "
        "'Close'?\n")


def test_a_bad_rule_file_is_reported_as_a_rule_error(work: Path) -> None:
    Path("rules.yaml").write_text("- rule: R\n  desc: d\n  condition: proc.nme = x\n"
                                  "  output: o\n  priority: INFO\n")
    Path("s.yaml").write_text(BASE)
    result = analyze_test("s.yaml")
    assert result.exit_code == 1
    assert result.output.startswith("Error: rules.yaml:3")
    assert "proc.nme" in result.output


def test_paths_are_relative_to_the_spec(work: Path) -> None:
    Path("specs").mkdir()
    Path("specs/s.yaml").write_text(PASSING.replace("rules.yaml", "../rules.yaml")
                                    .replace("trace.parquet", "../trace.parquet"))
    spec = parse_spec(Path("specs/s.yaml").read_text(), "specs/s.yaml")
    assert spec.rule_paths() == ("rules.yaml",)
    assert spec.trace_paths(spec.tests[1]) == ("trace.parquet",)
    assert spec.options.rule_matching == "all"
    assert spec.tests[0].expect[0] == RuleExpectation(
        "Cat Open", count=2, evt_nums=(1, 4), priority="Warning",
        output_contains=("cat opened",))
    assert spec.tests[0].must_not_fire == ("Never",)
    assert [t.others for t in spec.tests] == ["none", "ignore"]
    assert analyze_test("specs").exit_code == 0  # a directory: its *.yaml files


# ---- verdicts -----------------------------------------------------------------------------------


def test_a_passing_spec_on_both_engines(work: Path) -> None:
    Path("s.yaml").write_text(PASSING)
    result = analyze_test("s.yaml", "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["passed"] is True
    assert report["summary"] == {"specs": 1, "tests": 2, "tests_failed": 0, "rule_checks": 5,
                                 "rule_checks_failed": 0}
    (spec,) = report["specs"]
    assert spec["engines"] == ["replay", "sql"]
    cat = spec["tests"][0]["rules"][0]
    assert cat["engines"]["replay"] == cat["engines"]["sql"] == {
        "ran": True, "count": 2, "evt_nums": [1, 4], "tp": 2, "fp": 0, "fn": 0}
    ignored = [(r["rule"], r["kind"]) for r in spec["tests"][1]["rules"]]
    assert ignored == [("Close", "expected"), ("Any Open", "ignored"), ("Cat Open", "ignored")]


FAILING = """\
rules: [rules.yaml]
tests:
  - name: wrong
    trace: trace.parquet
    expect:
      Cat Open: {evt_nums: [1, 2], priority: ERROR, output_contains: /etc/shadow}
      Any Open: {count: 2}
    must_not_fire: [Close]
"""


def test_false_positives_negatives_and_mismatches(work: Path) -> None:
    Path("s.yaml").write_text(FAILING)
    result = analyze_test("s.yaml", "--format", "json")
    assert result.exit_code == EXIT_FAILED
    rules = {r["rule"]: r for r in json.loads(result.output)["specs"][0]["tests"][0]["rules"]}
    assert list(rules) == ["Cat Open", "Any Open", "Close"]
    cat = rules["Cat Open"]
    assert cat["engines"]["sql"] == {"ran": True, "count": 2, "evt_nums": [1, 4],
                                     "tp": 1, "fp": 1, "fn": 1}
    assert cat["problems"] == [
        "missing (false negatives): evt.num 2",
        "unexpected (false positives): evt.num 4",
        'output lacks "/etc/shadow": evt.num 4',
        "priority: expected Error, the rule has Warning",
    ]
    assert rules["Any Open"]["problems"] == ["count: expected 2, got 3"]
    assert rules["Any Open"]["engines"]["replay"]["fp"] == 1
    assert rules["Close"]["problems"] == ["fired 1 time(s) but must not fire: evt.num 3"]


def test_the_table_and_the_diffs(work: Path) -> None:
    Path("s.yaml").write_text(FAILING)
    result = analyze_test("s.yaml")
    assert result.exit_code == EXIT_FAILED
    out = result.output
    assert "FAIL s.yaml > wrong > Cat Open\n" in out
    assert (
        "    --- expected\n"
        "    +++ replay, sql\n"
        "    @@ -1,4 +1,4 @@\n"
        "     evt.num: 1\n"
        "    -evt.num: 2\n"
        "    -priority: Error\n"
        '    -output contains: "/etc/shadow"\n'
        "    +evt.num: 4\n"
        "    +priority: Warning\n"
        '    +output of evt.num 4: "cat opened /etc/passwd"\n'
    ) in out
    assert out.rstrip().endswith(
        "FAILED: 1 spec(s), 1 test(s) (1 failed), 3 rule check(s) (3 failed); "
        "engines: replay, sql")


def test_others_none_catches_an_unlisted_rule(work: Path) -> None:
    Path("s.yaml").write_text(BASE + "    expect:\n      Close: {count: 1}\n")
    report = json.loads(analyze_test("s.yaml", "--format", "json").output)
    rows = report["specs"][0]["tests"][0]["rules"]
    assert [(r["rule"], r["kind"], r["passed"]) for r in rows] == [
        ("Close", "expected", True), ("Any Open", "other", False), ("Cat Open", "other", False)]
    assert rows[2]["problems"] == [
        "fired 2 time(s) but is not expected (others: none): evt.num 1, 4"]
    assert report["specs"][0]["tests"][0]["silent_rules"] == 1  # Never


def test_a_rule_one_engine_cannot_run_fails(work: Path) -> None:
    Path("rules.yaml").write_text(RULES + SPLIT_RULE)
    Path("s.yaml").write_text(PASSING)
    result = analyze_test("s.yaml", "--format", "json")
    assert result.exit_code == EXIT_FAILED
    test = json.loads(result.output)["specs"][0]["tests"][0]
    (row,) = [r for r in test["rules"] if r["rule"] == "Getopt From Field"]
    assert row["kind"] == "other"
    assert row["engines"]["replay"]["ran"] is True
    assert row["engines"]["sql"]["ran"] is False
    assert row["problems"] == [
        "not run by the sql engine: the SQL engine cannot run rule 'Getopt From Field': "
        "getopt() needs a literal optstring in SQL"]
    # One engine alone has nothing to disagree with, and runs the rule.
    assert analyze_test("s.yaml", "--engine", "replay").exit_code == 0


def test_a_named_rule_that_does_not_run_fails(work: Path) -> None:
    Path("s.yaml").write_text(
        "options: {min_priority: notice}\n" + BASE + "    must_not_fire: [Never]\n"
        "    others: ignore\n")
    report = json.loads(analyze_test("s.yaml", "--format", "json").output)
    (row,) = report["specs"][0]["tests"][0]["rules"][:1]
    assert row["problems"] == ["not run: priority Debug is below Notice"]


def alert(evt_num: int, rule: str = "R") -> Alert:
    return Alert(evt_num, T0 + evt_num, rule, "Warning", "syscall", (), "h", f"out {evt_num}",
                 {}, None, None, None, None)


def disagreeing_run() -> CaseRun:
    test = SpecTest("t", ("trace.parquet",), (RuleExpectation("R", count=2),))
    return CaseRun(test, (
        EngineResult("replay", {"R": (alert(1), alert(2))}, {}),
        EngineResult("sql", {"R": (alert(1), alert(3))}, {}),
    ), ("R",), {}, {"R": "Warning"})


def test_engines_disagreeing_on_events_fail_and_block_update() -> None:
    check = check_test(disagreeing_run())
    (row,) = check.rules
    assert row.problems == ("engines disagree: replay fired 2 time(s), sql 2; only replay: "
                            "[2], only sql: [3]",)
    with pytest.raises(UpdateRefused, match="the engines disagree on rule 'R'"):
        new_expectations(disagreeing_run())


def test_report_of_a_disagreement() -> None:
    from analyze.spec_check import SpecCheck

    out = StringIO()
    spec = SpecCheck("s.yaml", ("replay", "sql"), (check_test(disagreeing_run()),))
    Console(file=out, width=100, color_system=None).print(render_report([spec]))
    assert (
        "    --- replay\n"
        "    +++ sql\n"
        "    @@ -1,2 +1,2 @@\n"
        "     evt.num: 1\n"
        "    -evt.num: 2\n"
        "    +evt.num: 3\n"
    ) in out.getvalue()


# ---- determinism and JUnit ----------------------------------------------------------------------


def test_outputs_are_byte_identical_across_places_and_runs(
    work: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    Path("s.yaml").write_text(FAILING + PASSING.split("tests:\n", 1)[1])
    outputs = []
    for place in (work, tmp_path_factory.mktemp("elsewhere")):
        if place != work:
            shutil.copytree(work, place, dirs_exist_ok=True)
        monkeypatch.chdir(place)
        for _ in range(2):
            table = analyze_test("s.yaml", "--junit", "out.xml").output
            json_out = analyze_test("s.yaml", "--format", "json").output
            outputs.append((table, json_out, Path("out.xml").read_bytes()))
    assert all(o == outputs[0] for o in outputs)
    assert str(work) not in "".join(outputs[0][:2]) + outputs[0][2].decode()


def test_junit_is_well_formed(work: Path) -> None:
    Path("s.yaml").write_text(FAILING + PASSING.split("tests:\n", 1)[1])
    assert analyze_test("s.yaml", "--junit", "junit.xml").exit_code == EXIT_FAILED
    root = ET.parse("junit.xml").getroot()
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures")) == ("8", "3")
    (suite,) = root
    assert suite.get("name") == "s.yaml"
    cases = [(c.get("classname"), c.get("name"), c.find("failure") is not None)
             for c in suite.iter("testcase")]
    assert cases[:3] == [("wrong", "Cat Open", True), ("wrong", "Any Open", True),
                         ("wrong", "Close", True)]
    assert ("only close matters", "Close", False) in cases
    failure = suite.find("testcase/failure")
    assert failure is not None and failure.text is not None
    assert failure.text.startswith("- missing (false negatives): evt.num 2\n")
    assert "+++ replay, sql" in failure.text
    for element in root.iter():
        assert not {"time", "timestamp", "hostname"} & set(element.attrib)


def test_junit_to_a_missing_directory_fails_before_running(work: Path) -> None:
    Path("s.yaml").write_text(PASSING)
    result = analyze_test("s.yaml", "--junit", "nodir/j.xml")
    assert result.exit_code == 1
    assert "the directory nodir does not exist" in result.output


# ---- --update -----------------------------------------------------------------------------------

STALE = """\
# Golden expectations, kept up to date with --update.
rules: [rules.yaml]
tests:
  - name: cat reads   # a comment on the test
    trace: trace.parquet
    expect:
      # the main rule
      Cat Open: {count: 1, evt_nums: [1], priority: warning}   # stays: warning
      Any Open:
        count: 5     # only a count: stays only a count
    must_not_fire: [Close, Never]   # Close fires now
  - name: flow style
    trace: trace.parquet
    expect: {Never: {count: 1}}
  - {name: flow test, trace: trace.parquet, others: ignore}
  - name: empty expect
    trace: trace.parquet
    expect:
    # the end
"""

UPDATED = """\
# Golden expectations, kept up to date with --update.
rules: [rules.yaml]
tests:
  - name: cat reads   # a comment on the test
    trace: trace.parquet
    expect:
      # the main rule
      Cat Open: {count: 2, evt_nums: [1, 4], priority: warning}   # stays: warning
      Any Open:
        count: 3     # only a count: stays only a count
      Close: {count: 1, evt_nums: [3]}
    must_not_fire: [Never]   # Close fires now
  - name: flow style
    trace: trace.parquet
    expect: {Never: {count: 0}, Any Open: {count: 3, evt_nums: [1, 2, 4]}, \
Cat Open: {count: 2, evt_nums: [1, 4]}, Close: {count: 1, evt_nums: [3]}}
  - {name: flow test, trace: trace.parquet, others: ignore, expect: \
{Any Open: {count: 3, evt_nums: [1, 2, 4]}, Cat Open: {count: 2, evt_nums: [1, 4]}, \
Close: {count: 1, evt_nums: [3]}}}
  - name: empty expect
    trace: trace.parquet
    expect:
      Any Open: {count: 3, evt_nums: [1, 2, 4]}
      Cat Open: {count: 2, evt_nums: [1, 4]}
      Close: {count: 1, evt_nums: [3]}
    # the end
"""


def test_update_round_trip_keeps_comments(work: Path) -> None:
    Path("s.yaml").write_text(STALE)
    assert analyze_test("s.yaml").exit_code == EXIT_FAILED
    result = analyze_test("s.yaml", "--update")
    assert result.exit_code == 0, result.output
    assert "Updated s.yaml: cat reads, flow style, flow test, empty expect." in result.output
    assert Path("s.yaml").read_text() == UPDATED
    again = analyze_test("s.yaml", "--update")
    assert again.exit_code == 0
    assert "Nothing to update: every expectation matches." in again.output
    assert Path("s.yaml").read_text() == UPDATED


def test_update_adds_expect_to_a_test_without_one(work: Path) -> None:
    Path("s.yaml").write_text(BASE + "    others: ignore  # all rules\n")
    assert analyze_test("s.yaml", "--update").exit_code == 0
    assert Path("s.yaml").read_text() == BASE + (
        "    others: ignore  # all rules\n"
        "    expect:\n"
        "      Any Open: {count: 3, evt_nums: [1, 2, 4]}\n"
        "      Cat Open: {count: 2, evt_nums: [1, 4]}\n"
        "      Close: {count: 1, evt_nums: [3]}\n")


def test_update_refuses_when_an_engine_cannot_run_a_rule_that_fired(work: Path) -> None:
    # getopt on proc.name "x" with optstring "x": the replay engine fires, SQL cannot run it.
    write_trace(work / "trace.parquet", {1: {"evt.type": "open", "proc.name": "-x"}})
    Path("rules.yaml").write_text(RULES + SPLIT_RULE)
    Path("s.yaml").write_text(BASE)
    assert analyze_test("s.yaml", "--engine", "replay", "--format", "json").exit_code == 3
    fired = run_suite(["s.yaml"], ("replay",)).specs[0].tests[0].rules
    if "Getopt From Field" not in [r.rule for r in fired]:
        pytest.skip("getopt() did not fire on this input; the refusal is tested on values")
    before = Path("s.yaml").read_text()
    result = analyze_test("s.yaml", "--update")
    assert result.exit_code == 1
    assert "the engines disagree on rule 'Getopt From Field'" in result.output
    assert Path("s.yaml").read_text() == before


def test_long_evt_num_lists_wrap_and_read_back() -> None:
    nums = [str(n) for n in range(1000, 1060)]
    text = flow_list(nums, indent=10, column=16)
    assert max(len(line) for line in text.splitlines()) <= 100
    assert yaml.safe_load("k:\n      x: " + text + "\n") == {"k": {"x": [int(n) for n in nums]}}


def test_exit_codes(work: Path) -> None:
    Path("good.yaml").write_text(PASSING)
    Path("bad.yaml").write_text(FAILING)
    assert analyze_test("good.yaml").exit_code == 0
    assert analyze_test("good.yaml", "bad.yaml").exit_code == EXIT_FAILED == 3
    assert analyze_test("missing.yaml").exit_code == 1
    assert analyze_test("good.yaml", "--engine", "duck").exit_code == 2
    Path("empty").mkdir()
    result = analyze_test("empty")
    assert result.exit_code == 1
    assert "the directory holds no *.yaml spec file" in result.output


def test_spec_errors_render_like_rule_errors(work: Path) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec("rules: [rules.yaml]\ntests: []\n", "s.yaml")
    assert format_error(info.value) == (
        "s.yaml:2:8 (spec): 'tests' must be a non-empty list of test cases.\n"
        "    tests: []\n"
        "           ^~")


def test_a_spec_under_which_no_rule_runs_is_an_error(work: Path) -> None:
    Path("s.yaml").write_text("options: {tags: [nosuchtag]}\n" + BASE)
    result = analyze_test("s.yaml")
    assert result.exit_code == 1
    assert result.output.startswith(
        "Error: s.yaml:2:9 (spec): No rule of rules.yaml runs: every one is disabled, filtered "
        "out by the options, or needs fields a trace cannot supply.\n")


def test_update_quotes_rule_names_that_need_it(work: Path) -> None:
    odd = '- rule: "Odd: name, [x] #1"\n  desc: d\n  condition: evt.type = close\n' \
          "  output: o\n  priority: INFO\n"
    Path("rules.yaml").write_text(RULES + odd)
    Path("s.yaml").write_text(BASE + "    expect: {Close: {count: 1}}\n")
    assert analyze_test("s.yaml", "--update").exit_code == 0
    assert Path("s.yaml").read_text().endswith(
        "    expect: {Close: {count: 1}, Any Open: {count: 3, evt_nums: [1, 2, 4]}, "
        "Cat Open: {count: 2, evt_nums: [1, 4]}, 'Odd: name, [x] #1': {count: 1, "
        "evt_nums: [3]}}\n")
    assert analyze_test("s.yaml").exit_code == 0


def test_the_readme_example_is_a_valid_spec() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    match = re.search(r"## Rule regression tests\n.*?```yaml\n(.*?)```", readme, re.DOTALL)
    assert match, "README.md has no spec example under 'Rule regression tests'"
    rules_tests = Path(__file__).resolve().parent.parent / "rules" / "tests"
    spec = parse_spec(match.group(1), str(rules_tests / "example.spec.yaml"))
    assert spec.tests[0].expect[0].rule == "Sensitive File Read"
