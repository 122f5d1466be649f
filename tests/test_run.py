"""`analyze run` as a library: time parsing, engines, alerts in Falco's shapes, rule selection.

Runs go through `PredicateEngine` (hand-written SQL for the test rules) and through every real
engine in this build: the counts are what sysdig shows for these captures (fixtures_traces).
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest
from fixtures_traces import (
    PredicateEngine,
    imported_traces,
    use_engine,
    write_rules,
)

from analyze.alerts import (
    Alert,
    alert_json,
    alert_line,
    build_alerts,
    clock_time,
    field_text,
    field_value,
    rfc3339,
)
from analyze.engine_api import Match, RunOptions, selected_rules
from analyze.resolve import load_rules
from analyze.run import (
    EXIT_ALERTS,
    EXIT_NO_ALERTS,
    EngineUnavailableError,
    RunRequest,
    RunResult,
    load_engine,
    parse_duration,
    parse_time,
    pick_engine,
    run_analysis,
    write_atomic,
)
from analyze.run_render import engine_notes, render_report
from analyze.trace_reader import TraceInfo, open_trace, trace_info

ENGINES = ["predicates", "sql", "replay"]
JSON_KEYS = ["hostname", "output", "output_fields", "priority", "rule", "source", "tags", "time"]
RFC3339_NS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z")
LINE = re.compile(r"\d\d:\d\d:\d\d\.\d{9}: (Emergency|Alert|Critical|Error|Warning|Notice|"
                  r"Informational|Debug) .+")


@pytest.fixture(scope="session")
def traces(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return imported_traces(tmp_path_factory)


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    return write_rules(tmp_path)


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    return use_engine(request.param, monkeypatch)


def run(traces: dict[str, Path], rules: Path, trace: str = "falco__cat_write",
        since: str | None = None, until: str | None = None, **options: Any) -> RunResult:
    request = RunRequest((str(traces[trace]),), (str(rules),), "auto", RunOptions(**options),
                         since, until)
    return run_analysis(request)


def by_rule(result: RunResult) -> dict[str, int]:
    counts: dict[str, int] = {}
    for a in result.alerts:
        counts[a.rule] = counts.get(a.rule, 0) + 1
    return counts


# ---- runs (every engine) ----------------------------------------------------------------------


def test_first_matching_rule_per_event(traces: dict[str, Path], rules: Path, engine: str) -> None:
    result = run(traces, rules)
    # Falco's regression test: 8 opens by cat; the closes go to the next rule that matches.
    assert by_rule(result) == {"Cat Opened File": 8, "Cat Activity": 12}
    assert result.exit_code == EXIT_ALERTS
    assert result.events == 85
    assert [a.evt_num for a in result.alerts] == sorted(a.evt_num for a in result.alerts)


def test_all_matching_rules(traces: dict[str, Path], rules: Path, engine: str) -> None:
    result = run(traces, rules, rule_matching="all")
    assert by_rule(result) == {"Cat Opened File": 8, "Cat Activity": 20, "Close Noise": 12}


def test_min_priority_and_tags(traces: dict[str, Path], rules: Path, engine: str) -> None:
    result = run(traces, rules, min_priority="Warning")
    assert by_rule(result) == {"Cat Opened File": 8}
    skipped = {s.rule: s.reason for s in result.skipped}
    assert skipped["Cat Activity"] == "priority Notice is below Warning"
    assert skipped["Needs DNS"] == "needs fields a syscall trace cannot supply: fd.sip.name"
    assert "Disabled Rule" not in skipped  # disabled on purpose: not a finding

    assert by_rule(run(traces, rules, tags=("process",))) == {"Cat Activity": 20}
    assert by_rule(run(traces, rules, skip_tags=("test_cat",))) == {"Close Noise": 12}


def test_no_alerts(traces: dict[str, Path], rules: Path, engine: str) -> None:
    result = run(traces, rules, trace="falco__psp_run_as_user_0_container", tags=("test_cat",))
    assert result.alerts == ()
    assert result.exit_code == EXIT_NO_ALERTS
    assert result.events == 3796


def test_container_alert(traces: dict[str, Path], rules: Path, engine: str) -> None:
    (alert,) = run(traces, rules, trace="falco__psp_write_tmp_test").alerts
    assert alert.rule == "Write below tmp in container"
    assert alert.output == (
        "open below /tmp (file=/tmp/test container=hopeful_taussig image=nginx proc=bash)"
    )
    assert (alert.container_id, alert.container_name, alert.container_image) == (
        "697956520d89", "hopeful_taussig", "nginx")


def test_time_window(traces: dict[str, Path], rules: Path, engine: str) -> None:
    everything = run(traces, rules).alerts
    cut = everything[5].time_ns
    early = run(traces, rules, until=str(cut)).alerts
    late = run(traces, rules, since=str(cut + 1)).alerts
    assert early == everything[:6]
    assert late == everything[6:]
    start = trace_info(traces["falco__cat_write"]).capture_start_ns
    assert start is not None
    offset = run(traces, rules, until=f"+{cut - start}ns")
    assert offset.alerts == everything[:6]
    assert offset.window_end_ns == cut
    assert 0 < offset.events < 85


# ---- alerts in Falco's shapes -----------------------------------------------------------------


@pytest.fixture
def cat_alerts(traces: dict[str, Path], rules: Path) -> list[Alert]:
    trace = open_trace(traces["falco__cat_write"])
    compiled, _ = selected_rules(load_rules([rules]), RunOptions())
    matches = PredicateEngine().run(trace.paths, compiled, RunOptions())
    return build_alerts(trace, compiled, matches, "ubuntu")


def test_alert_json_shape(cat_alerts: list[Alert]) -> None:
    alert = next(a for a in cat_alerts if a.output_fields["fd.name"] == "/etc/ld.so.cache")
    out = alert_json(alert)
    assert list(out) == JSON_KEYS
    assert json.loads(json.dumps(out)) == out
    assert RFC3339_NS.fullmatch(out["time"])
    assert out["output"] == f"{clock_time(alert.time_ns)}: Warning {alert.output}"
    assert out["output_fields"] == {
        "evt.arg.flags": "O_RDONLY|O_CLOEXEC",
        "evt.failed": False,
        "evt.num": 141,
        "evt.time": 1470327477881785348,
        "fd.name": "/etc/ld.so.cache",
        "proc.aname[2]": "emacs",
        "proc.cmdline": "cat /dev/null",
        "user.uid": 4294967295,
    }
    assert out["hostname"] == "ubuntu"
    assert out["tags"] == ["filesystem", "test_cat"]
    assert (out["priority"], out["rule"], out["source"]) == ("Warning", "Cat Opened File",
                                                             "syscall")
    assert out["time"] == "2016-08-04T16:17:57.881785348Z"


def test_evt_num_always_in_output_fields(cat_alerts: list[Alert]) -> None:
    for alert in cat_alerts:
        fields = alert_json(alert)["output_fields"]
        assert fields["evt.num"] == alert.evt_num
        assert fields["evt.time"] == alert.time_ns
        assert list(fields) == sorted(fields)


def test_missing_values_are_null_and_na(cat_alerts: list[Alert]) -> None:
    enter = cat_alerts[0]  # the open's enter event: no fd yet
    assert enter.output_fields["fd.name"] is None
    assert "file=<NA> flags=<NA>" in enter.output


def test_alert_line(cat_alerts: list[Alert]) -> None:
    for alert in cat_alerts:
        assert LINE.fullmatch(alert_line(alert))
    assert alert_line(cat_alerts[2]) == (
        "16:17:57.881788861: Notice cat activity (type=close fd=3)"
    )


def test_container_info_is_expanded(traces: dict[str, Path], rules: Path) -> None:
    trace = open_trace(traces["falco__psp_write_tmp_test"])
    compiled, _ = selected_rules(load_rules([rules]), RunOptions())
    rule = next(r for r in compiled if r.rule.name == "Write below tmp in container")
    rule = dataclasses.replace(
        rule, rule=dataclasses.replace(rule.rule, output="tmp write %container.info")
    )
    (alert,) = build_alerts(trace, [rule], [Match(116, rule.index, rule.rule.name)], "h")
    assert alert.output == "tmp write container_id=697956520d89 container_name=hopeful_taussig"
    assert alert.output_fields["container.id"] == "697956520d89"


# ---- field values -----------------------------------------------------------------------------

ROW = {
    "evt.num": 7, "evt.time": 1704078720123456789, "proc.aname": ["sh", "bash", None, "sshd"],
    "proc.env": "HOME=/root LESSOPEN=| /usr/bin/lesspipe %s TERM=xterm",
    "evt.args": "fd=3(<f>/etc/passwd) size=832 ",
    "evt.buffer": b"ab\x00\ncd", "evt.failed": True, "proc.pid": 42,
}


@pytest.mark.parametrize(
    ("name", "arg", "value", "text"),
    [
        ("evt.time", None, 1704078720123456789, "03:12:00.123456789"),
        ("evt.rawtime", None, 1704078720123456789, "1704078720123456789"),
        ("evt.time.s", None, "03:12:00", "03:12:00"),
        ("evt.time.iso8601", None, "2024-01-01T03:12:00.123456789Z",
         "2024-01-01T03:12:00.123456789Z"),
        ("evt.datetime", None, "2024-01-01 03:12:00.123456789", "2024-01-01 03:12:00.123456789"),
        ("proc.aname", "1", "bash", "bash"),
        ("proc.aname", "2", None, None),
        ("proc.aname", "9", None, None),
        ("proc.aname", None, "bash,sshd", "bash,sshd"),
        ("proc.env", "LESSOPEN", "| /usr/bin/lesspipe %s", "| /usr/bin/lesspipe %s"),
        ("proc.env", "NOPE", None, None),
        ("evt.arg.size", None, "832", "832"),  # no column of its own: read from evt.args
        ("evt.arg.mode", None, None, None),  # a column, null in this row
        ("evt.buffer", None, "ab..cd", "ab..cd"),
        ("evt.failed", None, True, "true"),
        ("proc.pid", None, 42, "42"),
        ("fd.ip", None, None, None),  # a filter-only field: no value in outputs
    ],
)
def test_field_values(name: str, arg: str | None, value: object, text: str | None) -> None:
    got = field_value(name, arg, ROW)
    assert got == value
    assert type(got) is type(value)
    key = name if arg is None else f"{name}[{arg}]"
    assert field_text(key, got) == text


def test_time_formats() -> None:
    assert rfc3339(1704078720000000005) == "2024-01-01T03:12:00.000000005Z"
    assert clock_time(1704078720000000005) == "03:12:00.000000005"


# ---- times ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def info(traces: dict[str, Path]) -> TraceInfo:
    return trace_info(traces["falco__cat_write"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-01T03:12:00Z", 1704078720_000000000),
        ("2024-01-01T03:12:00.123456789Z", 1704078720_123456789),
        ("2024-01-01T03:12:00.5", 1704078720_500000000),  # no zone: UTC
        ("2024-01-01 03:12:00+01:00", 1704075120_000000000),
        ("2024-01-01T03:12Z", 1704078720_000000000),
        ("1704078720123456789", 1704078720123456789),
    ],
)
def test_parse_time(text: str, expected: int, info: TraceInfo) -> None:
    assert parse_time(text, info, "--since") == expected


def test_parse_relative_time(info: TraceInfo) -> None:
    start = 1470327477881730713
    assert parse_time("+0s", info, "--since") == start
    assert parse_time("+1m30s", info, "--since") == start + 90 * 10**9
    assert parse_duration("250ms", "--since") == 250_000_000
    assert parse_duration("1.5s", "--since") == 1_500_000_000
    assert parse_duration("2h", "--until") == 7200 * 10**9


@pytest.mark.parametrize("text", ["yesterday", "2024-13-01T00:00:00Z", "+30", "+5 m", "+-1s"])
def test_bad_times(text: str, info: TraceInfo) -> None:
    with pytest.raises(ValueError, match="--since"):
        parse_time(text, info, "--since")


def test_since_after_until(traces: dict[str, Path], rules: Path) -> None:
    with pytest.raises(ValueError, match="--since is after --until"):
        run(traces, rules, since="+2s", until="+1s")


# ---- engines ----------------------------------------------------------------------------------


def test_unknown_engine() -> None:
    with pytest.raises(EngineUnavailableError, match="Unknown engine 'fast'"):
        load_engine("fast")


def test_missing_engine_module(monkeypatch: pytest.MonkeyPatch) -> None:
    from analyze import run as run_module

    monkeypatch.setitem(run_module.ENGINE_MODULES, "sql", "analyze.no_such_engine")
    monkeypatch.setitem(run_module.ENGINE_MODULES, "replay", "analyze.no_such_replay")
    with pytest.raises(EngineUnavailableError, match=r"sql engine \(analyze.no_such_engine\)"):
        load_engine("sql")
    with pytest.raises(EngineUnavailableError, match="No engine is available"):
        pick_engine("auto")


def test_module_without_engine_class(monkeypatch: pytest.MonkeyPatch) -> None:
    from analyze import run as run_module

    monkeypatch.setitem(run_module.ENGINE_MODULES, "sql", "analyze.engine_api")
    with pytest.raises(EngineUnavailableError, match="defines no single engine class"):
        load_engine("sql")


def test_predicate_engine_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    use_engine("predicates", monkeypatch)
    assert pick_engine("auto").name == "predicates"


def test_skip_errors_only_when_asked() -> None:
    assert load_engine("replay").skip_errors is False  # type: ignore[attr-defined]
    assert load_engine("replay", skip_errors=True).skip_errors is True  # type: ignore[attr-defined]
    assert load_engine("sql", skip_errors=True).name == "sql"  # it has no such switch


# ---- rules an engine cannot run ---------------------------------------------------------------

ENGINE_GAP_RULES = """
- rule: Cat Opened File
  desc: d
  condition: evt.type = open and proc.name = cat
  output: cat opened %fd.name
  priority: WARNING
- rule: Getopt From Field
  desc: the SQL translator wants a literal optstring
  condition: >
    evt.type = open and proc.name = cat
    and getopt((proc.name, proc.pname), proc.name) intersects (x)
  output: o %proc.name
  priority: WARNING
- rule: Concat Of A List
  desc: neither engine runs it (concat of a list)
  condition: evt.type = open and concat(proc.name, proc.aname) = x
  output: o %proc.name
  priority: WARNING
- rule: No Column
  desc: evt.arg[1] has no trace column, so the check is false and its negation true
  condition: evt.type = open and proc.name = cat and not evt.arg[1] = x
  output: o %proc.name
  priority: WARNING
"""


@pytest.mark.parametrize(("name", "skipped"), [
    ("replay", ["Concat Of A List"]),
    ("sql", ["Getopt From Field", "Concat Of A List"]),
])
def test_a_rule_the_engine_cannot_run_is_skipped_with_the_reason(
    traces: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str,
    skipped: list[str],
) -> None:
    use_engine(name, monkeypatch)
    result = run(traces, write_rules(tmp_path, ENGINE_GAP_RULES), rule_matching="all")
    assert result.engine == name
    assert [s.rule for s in result.engine_skipped] == skipped
    engine_name = {"replay": "replay", "sql": "SQL"}[name]
    for s in result.engine_skipped:
        assert s.reason.startswith(f"the {engine_name} engine cannot run rule '{s.rule}': ")
    assert result.skipped == ()
    assert result.all_skipped == result.engine_skipped
    everything = ["Cat Opened File", "Getopt From Field", "Concat Of A List", "No Column"]
    assert list(result.rules_run) == [r for r in everything if r not in skipped]
    assert by_rule(result) == {"Cat Opened File": 8, "No Column": 8}
    (warning,) = result.engine_warnings
    assert (warning.code, warning.message) == (
        "field-not-in-trace",
        "rule 'No Column': traces do not record evt.arg[1]; checks on it are false")
    assert warning.source is not None and warning.source.line == 19
    assert engine_notes(result) == [
        *(f"Warning: rule {s.rule!r} skipped: {s.reason}" for s in result.engine_skipped),
        "Warning: rule 'No Column': traces do not record evt.arg[1]; checks on it are false "
        "[field-not-in-trace]",
    ]


def test_the_report_lists_rules_the_engine_skipped(
    traces: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from io import StringIO

    from rich.console import Console

    use_engine("sql", monkeypatch)
    result = run(traces, write_rules(tmp_path, ENGINE_GAP_RULES), min_priority="Warning")
    out = StringIO()
    Console(file=out, width=250, color_system=None).print(render_report(result))
    text = out.getvalue()
    assert "Rules:    2 run, 2 skipped" in text
    assert "Skipped rules (2)" in text
    assert "the SQL engine cannot run rule 'Getopt From Field': getopt() needs a literal " \
        "optstring in SQL" in text
    assert "Rule warnings (1)" in text
    assert "rule 'No Column': traces do not record evt.arg[1]" in text


def test_a_run_where_the_engine_can_run_no_rule(
    traces: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_engine("replay", monkeypatch)
    only = ENGINE_GAP_RULES[ENGINE_GAP_RULES.index("- rule: Concat"):
                            ENGINE_GAP_RULES.index("- rule: No Column")]
    result = run(traces, write_rules(tmp_path, only))
    assert result.rules_run == () and result.alerts == ()
    assert [s.rule for s in result.engine_skipped] == ["Concat Of A List"]
    assert result.exit_code == EXIT_NO_ALERTS


# ---- output files -----------------------------------------------------------------------------


def test_write_atomic(tmp_path: Path) -> None:
    target = tmp_path / "alerts.json"
    write_atomic(target, "one\n")
    assert target.read_text() == "one\n"
    write_atomic(target, "two\n")
    assert target.read_text() == "two\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alerts.json"]


def test_write_atomic_keeps_the_old_file_on_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "alerts.json"
    target.write_text("old\n")

    def fail(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("analyze.run.os.replace", fail)
    with pytest.raises(OSError, match="No space"):
        write_atomic(target, "new\n")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alerts.json"]


def test_rules_to_show_leaves_out_what_sql_cannot_run(tmp_path: Path) -> None:
    from analyze.run import rules_to_show

    rules_file = str(write_rules(tmp_path, ENGINE_GAP_RULES))
    rules, skipped = rules_to_show([rules_file])
    assert [r.rule.name for r in rules] == ["Cat Opened File", "No Column"]
    assert [s.rule for s in skipped] == ["Getopt From Field", "Concat Of A List"]
    with pytest.raises(ValueError, match="The rule 'Getopt From Field' does not run: the SQL "
                       "engine cannot run rule 'Getopt From Field': getopt"):
        rules_to_show([rules_file], ["Getopt From Field"])
