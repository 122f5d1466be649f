"""The commands around `analyze run`, end to end through click: `analyze run`, `analyze query`,
`capture import` and `capture info`, on real imported captures.

Exit statuses of `analyze run`: 0 no alerts, 3 alerts, 1 user error, 2 bad option.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result
from fixtures_traces import SCAP, imported_traces, require_captures, use_engine, write_rules

import cli
from analyze import run as run_module

ENGINES = ["predicates", "sql", "replay"]
JSON_KEYS = ["hostname", "output", "output_fields", "priority", "rule", "source", "tags", "time"]
LINE = re.compile(r"\d\d:\d\d:\d\d\.\d{9}: (Warning|Notice|Error|Debug) .+")


@pytest.fixture(scope="session")
def traces(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return imported_traces(tmp_path_factory)


@pytest.fixture
def cat(traces: dict[str, Path]) -> str:
    return str(traces["falco__cat_write"])


@pytest.fixture
def rules(tmp_path: Path) -> str:
    return str(write_rules(tmp_path))


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    return use_engine(request.param, monkeypatch)


@pytest.fixture
def predicates(monkeypatch: pytest.MonkeyPatch) -> str:
    return use_engine("predicates", monkeypatch)


@pytest.fixture(autouse=True)
def no_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SYSREPLAY_DEBUG", raising=False)


def analyze(*args: str) -> Result:
    return CliRunner().invoke(cli.analyze, list(args))


def capture(*args: str) -> Result:
    return CliRunner().invoke(cli.capture, list(args))


def assert_one_error(result: Result, *fragments: str) -> None:
    """Exit 1, one `Error:` message on stderr holding every fragment, no traceback."""
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert result.stderr.startswith("Error: ")
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


# ---- analyze run ------------------------------------------------------------------------------


def test_run_json(cat: str, rules: str, engine: str) -> None:
    result = analyze("run", cat, "-r", rules, "--format", "json")
    assert result.exit_code == run_module.EXIT_ALERTS == 3
    lines = result.stdout.splitlines()
    alerts = [json.loads(line) for line in lines]
    assert len(alerts) == 20
    assert all(line.startswith('{"hostname":"ubuntu","output":"16:17:57.') for line in lines)
    for alert in alerts:
        assert list(alert) == JSON_KEYS
        assert "evt.num" in alert["output_fields"]
        assert "evt.time" in alert["output_fields"]
        assert re.fullmatch(r"2016-08-04T16:17:57\.\d{9}Z", alert["time"])
        assert LINE.fullmatch(alert["output"])
        assert alert["source"] == "syscall"
        assert alert["hostname"] == "ubuntu"
        assert alert["tags"] == sorted(alert["tags"])
    assert {a["rule"] for a in alerts} == {"Cat Opened File", "Cat Activity"}


def test_run_json_line_is_falcos(traces: dict[str, Path], rules: str, engine: str) -> None:
    trace = str(traces["falco__psp_write_tmp_test"])
    result = analyze("run", trace, "-r", rules, "--format", "json")
    assert result.stdout == (
        '{"hostname":"ubuntu","output":"22:13:50.575387852: Error open below /tmp '
        '(file=/tmp/test container=hopeful_taussig image=nginx proc=bash)","output_fields":'
        '{"container.image":"nginx","container.name":"hopeful_taussig","evt.num":116,'
        '"evt.time":1562710430575387852,"fd.name":"/tmp/test","proc.name":"bash"},'
        '"priority":"Error","rule":"Write below tmp in container","source":"syscall",'
        '"tags":["container","filesystem"],"time":"2019-07-09T22:13:50.575387852Z"}\n'
    )


def test_run_text(cat: str, rules: str, engine: str) -> None:
    result = analyze("run", cat, "-r", rules, "--format", "text", "--rule-matching", "all")
    assert result.exit_code == 3
    lines = result.stdout.splitlines()
    assert len(lines) == 40
    assert all(LINE.fullmatch(line) for line in lines)
    assert sum(" Debug close by cat" in line for line in lines) == 12


def test_run_table(cat: str, rules: str, engine: str) -> None:
    result = analyze("run", cat, "-r", rules, "--max-alerts", "3")
    assert result.exit_code == 3
    for section in ("analyze run", "Alerts by rule", "Top processes", "Top containers",
                    "Timeline from", "Alerts (first 3 of 20)", "… 17 more alerts",
                    "Skipped rules (1)", "fd.sip.name"):
        assert section in result.stdout


def test_run_without_alerts_exits_0(traces: dict[str, Path], rules: str, engine: str) -> None:
    trace = str(traces["falco__psp_run_as_user_0_container"])
    result = analyze("run", trace, "-r", rules, "--format", "json")
    assert result.exit_code == 0
    assert result.stdout == ""


def test_run_filters(cat: str, rules: str, engine: str) -> None:
    def count(*args: str) -> int:
        result = analyze("run", cat, "-r", rules, "--format", "json", *args)
        assert result.exit_code in (0, 3), result.output
        return len(result.stdout.splitlines())

    assert count("--min-priority", "warning") == 8
    assert count("--min-priority", "info") == 20
    assert count("-t", "process") == 20
    assert count("-t", "process", "-t", "filesystem") == 20  # first match per event
    assert count("-T", "test_cat") == 12
    assert count("-T", "test_cat", "-T", "noisy") == 0
    assert count("--since", "+10m") == 0


def test_no_rule_runs_is_said(cat: str, rules: str, predicates: str) -> None:
    result = analyze("run", cat, "-r", rules, "--format", "json", "-t", "nothing")
    assert result.exit_code == 0
    assert "no rule ran" in result.stderr


def test_output_file(cat: str, rules: str, predicates: str, tmp_path: Path) -> None:
    out = tmp_path / "alerts.json"
    result = analyze("run", cat, "-r", rules, "--format", "json", "-o", str(out))
    assert result.exit_code == 3
    assert result.stdout == ""
    assert result.stderr == f"Wrote 20 alert(s) to {out}.\n"
    assert len(out.read_text().splitlines()) == 20
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alerts.json", "rules.yaml"]


def test_output_file_table_is_plain_text(cat: str, rules: str, predicates: str,
                                         tmp_path: Path) -> None:
    out = tmp_path / "report.txt"
    assert analyze("run", cat, "-r", rules, "-o", str(out)).exit_code == 3
    text = out.read_text()
    assert "Alerts by rule" in text
    assert "\x1b[" not in text


def test_output_file_untouched_on_error(cat: str, predicates: str, tmp_path: Path) -> None:
    out = tmp_path / "alerts.json"
    out.write_text("previous run\n")
    bad = write_rules(tmp_path, "- rule: Broken\n  condition: proc.name =\n  output: x\n"
                      "  priority: WARNING\n  desc: d\n", "bad.yaml")
    result = analyze("run", cat, "-r", str(bad), "--format", "json", "-o", str(out))
    assert_one_error(result, "bad.yaml")
    assert out.read_text() == "previous run\n"
    fresh = tmp_path / "fresh.json"
    assert analyze("run", cat, "-r", str(bad), "-o", str(fresh)).exit_code == 1
    assert not fresh.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alerts.json", "bad.yaml"]


def test_output_file_in_a_missing_directory(cat: str, rules: str, predicates: str,
                                            tmp_path: Path) -> None:
    out = tmp_path / "no" / "alerts.json"
    assert_one_error(analyze("run", cat, "-r", rules, "-o", str(out)),
                     f"Cannot write {out}: the directory {out.parent} does not exist.")


def test_run_missing_trace(rules: str, predicates: str, tmp_path: Path) -> None:
    missing = tmp_path / "nope.parquet"
    assert_one_error(analyze("run", str(missing), "-r", rules), f"{missing} does not exist")


def test_run_foreign_parquet(rules: str, predicates: str, tmp_path: Path) -> None:
    foreign = tmp_path / "other.parquet"
    pq.write_table(pa.table({"a": [1, 2]}), foreign)
    assert_one_error(analyze("run", str(foreign), "-r", rules), "not a sysreplay trace")


def test_run_not_parquet(rules: str, predicates: str, tmp_path: Path) -> None:
    junk = tmp_path / "junk.parquet"
    junk.write_text("hello")
    assert_one_error(analyze("run", str(junk), "-r", rules), "not a readable Parquet file")


def test_run_malformed_rules(cat: str, predicates: str, tmp_path: Path) -> None:
    bad = write_rules(tmp_path, "- rule: [unclosed\n", "bad.yaml")
    assert_one_error(analyze("run", cat, "-r", str(bad)), "bad.yaml")
    unknown = write_rules(tmp_path, "- rule: R\n  desc: d\n  condition: proc.nme = x\n"
                          "  output: o\n  priority: WARNING\n", "unknown.yaml")
    assert_one_error(analyze("run", cat, "-r", str(unknown)), "proc.nme", "^")


def test_run_missing_rules_file(cat: str, predicates: str, tmp_path: Path) -> None:
    result = analyze("run", cat, "-r", str(tmp_path / "none.yaml"))
    assert_one_error(result, "none.yaml")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "yesterday"], "--since 'yesterday' is not a time"),
        (["--until", "+5 minutes"], "--until +5 minutes: not a duration"),
        (["--since", "+2s", "--until", "+1s"], "--since is after --until"),
    ],
)
def test_run_bad_times(cat: str, rules: str, predicates: str, args: list[str],
                       message: str) -> None:
    assert_one_error(analyze("run", cat, "-r", rules, *args), message)


def test_run_bad_priority_is_a_usage_error(cat: str, rules: str) -> None:
    result = analyze("run", cat, "-r", rules, "--min-priority", "loud")
    assert result.exit_code == 2
    assert "'loud' is not a priority" in result.stderr


def test_run_unavailable_engine(cat: str, rules: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(run_module.ENGINE_MODULES, "replay", "analyze.no_such_module")
    assert_one_error(analyze("run", cat, "-r", rules, "--engine", "replay"),
                     "replay engine (analyze.no_such_module) is not part of this build")


def test_engine_choices_match_the_library() -> None:
    assert cli.ENGINE_CHOICES == run_module.ENGINE_CHOICES


# ---- analyze query ----------------------------------------------------------------------------


def test_query_csv(cat: str) -> None:
    sql = """select "evt.type", count(*) as n from events where "proc.name" = 'cat'
             and "evt.type" in ('open', 'close') group by 1 order by 1"""
    result = analyze("query", cat, sql, "--format", "csv")
    assert result.exit_code == 0
    assert result.stdout == "evt.type,n\nclose,12\nopen,8\n"


def test_query_json_and_table(cat: str) -> None:
    sql = 'select "evt.num" from events order by 1 limit 2'
    assert json.loads(analyze("query", cat, sql, "--format", "json").stdout) == [
        {"evt.num": 131}, {"evt.num": 132},
    ]
    table = analyze("query", cat, sql).stdout
    assert "evt.num" in table and "2 rows" in table


def test_query_errors(cat: str, tmp_path: Path) -> None:
    assert_one_error(analyze("query", cat, "select nope from events"), "The query failed")
    assert_one_error(analyze("query", str(tmp_path / "x.parquet"), "select 1"), "does not exist")


# ---- analyze sql ------------------------------------------------------------------------------


def test_sql_prints_the_engines_query(rules: str) -> None:
    result = analyze("sql", "-r", rules)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("-- not run: Needs DNS: needs fields a syscall trace cannot supply: "
                          "fd.sip.name\n\n")
    for name in ("Cat Opened File", "Cat Activity", "Write below tmp in container",
                 "Close Noise"):
        assert f'"{name}"' in out
    assert "Disabled Rule" not in out


def test_sql_for_one_rule_runs_in_duckdb(rules: str, cat: str) -> None:
    out = analyze("sql", "-r", rules, "--rule", "Cat Opened File").stdout
    assert '"Cat Activity"' not in out
    assert "-- not run" not in out
    # The printed SQL is the engine's: run over the trace, it selects the 8 opens by cat.
    import duckdb

    from analyze.query import connect
    from analyze.trace_reader import open_trace

    con: duckdb.DuckDBPyConnection = connect(open_trace(cat))
    try:
        statements = [s for s in out.split(";\n") if s.strip()]
        for statement in statements[:-1]:
            con.execute(statement)
        assert len(con.execute(statements[-1]).fetchall()) == 8
    finally:
        con.close()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("Needs DNS", "The rule 'Needs DNS' does not run: needs fields a syscall trace cannot"),
        ("Disabled Rule", "The rule 'Disabled Rule' does not run: it is disabled."),
        ("Nope", "No rule named 'Nope' in "),
    ],
)
def test_sql_rule_that_does_not_run(rules: str, name: str, message: str) -> None:
    assert_one_error(analyze("sql", "-r", rules, "--rule", name), message)


def test_sql_malformed_rules(tmp_path: Path) -> None:
    bad = write_rules(tmp_path, "- macro: m\n  condition: (\n", "bad.yaml")
    assert_one_error(analyze("sql", "-r", str(bad)), "bad.yaml")


# ---- capture import / info --------------------------------------------------------------------


def test_capture_import(tmp_path: Path) -> None:
    require_captures()
    out = tmp_path / "t.parquet"
    result = capture("import", str(SCAP / "falco__syscall.scap"), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert re.fullmatch(
        rf"Imported 12 events from .*falco__syscall\.scap into {re.escape(str(out))} in "
        r"[\d.]+ s \([\d,]+ events/s, [\d.]+ bytes/event\)\.\n",
        result.stdout,
    )
    assert pq.ParquetFile(out).metadata.num_rows == 12


def test_capture_import_errors(tmp_path: Path) -> None:
    require_captures()
    text = tmp_path / "notes.scap"
    text.write_text("not a capture")
    out = tmp_path / "t.parquet"
    assert_one_error(capture("import", str(text), "-o", str(out)), "notes.scap")
    assert not out.exists()
    assert_one_error(capture("import", str(tmp_path / "none.scap"), "-o", str(out)),
                     "none.scap")
    empty = capture("import", str(SCAP / "falco__empty.scap"), "-o", str(out))
    assert_one_error(empty, "falco__empty.scap")
    assert not out.exists()


def test_capture_info(cat: str) -> None:
    result = capture("info", cat)
    assert result.exit_code == 0
    for expected in ("events", "85", "dropped", "unknown", "ubuntu", "2016-08-04T16:17:57"):
        assert expected in result.stdout
    data = json.loads(capture("info", cat, "--format", "json").stdout)
    assert (data["events"], data["dropped"], data["hostnames"]) == (85, None, ["ubuntu"])


def test_capture_info_errors(tmp_path: Path) -> None:
    foreign = tmp_path / "other.parquet"
    pq.write_table(pa.table({"a": [1]}), foreign)
    assert_one_error(capture("info", str(foreign)), "not a sysreplay trace")
    assert_one_error(capture("info", str(tmp_path / "*.nothing")), "No trace files match")


# ---- help -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("group", "command"),
    [("analyze", "run"), ("analyze", "query"), ("analyze", "sql"), ("capture", "import"),
     ("capture", "info")],
)
def test_help_has_an_example(group: str, command: str) -> None:
    result = (analyze if group == "analyze" else capture)(command, "--help")
    assert result.exit_code == 0
    assert "Example:" in result.stdout
    assert f"{group} {command} " in result.stdout.split("Example:", 1)[1]


def test_run_help_documents_exit_statuses() -> None:
    text = " ".join(analyze("run", "--help").stdout.split())
    assert "Exit status: 0 when no rule matched, 3 when there are alerts, 1 on any error" in text
