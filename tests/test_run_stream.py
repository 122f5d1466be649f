"""`analyze run` in bounded memory: a run keeps its matches (`MatchedAlerts`), builds alerts a
chunk at a time, and counts them for the reports with DuckDB.

Each check compares the streamed way with the materialised one (every alert built into a tuple,
counted in Python: what `analyze run` did before) on the recorded scenario traces, with the
shipped rules and Falco's, plus two noisy rules so that events carry several alerts
(`rule_matching: all`) and chunks of a few alerts split them.
"""

from __future__ import annotations

import dataclasses
import json
import random
from io import StringIO
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from rich.console import Console

import cli
from analyze import alerts as alerts_module
from analyze import run as run_module
from analyze.alert_stats import alert_stats
from analyze.alerts import AlertBuildError, alert_chunks, alert_json, alert_line, build_alerts
from analyze.engine_api import (
    CompiledRule,
    Match,
    MatchTable,
    RunOptions,
    apply_rule_matching,
    selected_rules,
)
from analyze.matched_alerts import MatchedAlerts
from analyze.report_html import render_html
from analyze.report_svg import stack_by_priority
from analyze.resolve import load_rules
from analyze.run import RunRequest, RunResult, load_engine, run_analysis
from analyze.run_render import render_report
from analyze.trace_reader import open_trace

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "tests" / "fixtures" / "scenarios"
UPSTREAM = ROOT.parent / "shared" / "anchors" / "falco-rules" / "rules" / "falco_rules.yaml"
# Many alerts per trace, several per event, and outputs reading every kind of field.
NOISY = """\
- rule: Every event
  desc: fires on every event
  condition: evt.num > 0
  output: >
    %evt.type by %proc.name (cmdline=%proc.cmdline parent=%proc.aname[1] ancestors=%proc.aname
    file=%fd.name user=%user.name %container.info image=%container.image
    at=%evt.time.iso8601 home=%proc.env[HOME])
  priority: DEBUG
  tags: [noisy]

- rule: Opens
  desc: every open
  condition: evt.type in (open, openat, openat2)
  output: open %fd.name flags=%evt.arg.flags by %proc.name
  priority: NOTICE
  tags: [noisy, filesystem]
"""
TRACES = ("netcat-reverse-shell", "read-sensitive-file", "shell-in-container")
ALL = RunOptions(rule_matching="all")


def rule_paths(directory: Path) -> tuple[str, ...]:
    noisy = directory / "noisy.yaml"
    noisy.write_text(NOISY)
    paths = [str(noisy), str(ROOT / "rules" / "sysreplay_rules.yaml")]
    return (*paths, str(UPSTREAM)) if UPSTREAM.exists() else tuple(paths)


@pytest.fixture(scope="module")
def rules_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("rules")


@pytest.fixture(scope="module", params=TRACES)
def result(request: pytest.FixtureRequest, rules_dir: Path) -> RunResult:
    trace = str(SCENARIOS / f"{request.param}.parquet")
    return run_analysis(RunRequest((trace,), rule_paths(rules_dir), "auto", ALL))


def matched(result: RunResult) -> MatchedAlerts:
    assert isinstance(result.alerts, MatchedAlerts)
    return result.alerts


def materialised(result: RunResult) -> RunResult:
    """The same result with every alert built, as `analyze run` kept them before."""
    return dataclasses.replace(result, alerts=tuple(result.alerts))


# ---- alerts -----------------------------------------------------------------------------------


def test_chunks_of_any_size_build_the_same_alerts(result: RunResult) -> None:
    alerts = matched(result)
    whole = alerts.between(0, len(alerts))
    assert len(whole) == len(alerts) > 10
    assert len({a.evt_num for a in whole}) < len(whole)  # events with several alerts
    assert [(a.evt_num, a.rule) for a in whole] == sorted(
        ((a.evt_num, a.rule) for a in whole), key=lambda p: (p[0], _rule_order(alerts)[p[1]]))
    for size in (3, 64):
        chunked = MatchedAlerts(alerts.trace, alerts.rules, alerts.matches, alerts.hostname,
                                chunk=size)
        chunks = list(chunked.chunks())
        assert all(len(c) <= size for c in chunks)
        assert [a for c in chunks for a in c] == whole
    assert build_alerts(alerts.trace, alerts.rules, alerts.matches, alerts.hostname) == whole


def _rule_order(alerts: MatchedAlerts) -> dict[str, int]:
    return {r.rule.name: r.index for r in alerts.rules}


def test_indexing_and_slicing_build_only_what_they_return(result: RunResult) -> None:
    alerts = matched(result)
    whole = tuple(alerts)
    middle = len(whole) // 2
    assert alerts[0] == whole[0] and alerts[-1] == whole[-1] and alerts[middle] == whole[middle]
    assert alerts[3:40] == whole[3:40]
    assert alerts[::9] == whole[::9]
    assert alerts[-5:] == whole[-5:]
    assert alerts[40:3] == ()
    assert alerts == whole and whole == alerts and alerts != whole[1:]
    with pytest.raises(IndexError):
        alerts[len(alerts)]


def test_an_empty_run_is_an_empty_sequence(tmp_path: Path) -> None:
    trace = str(SCENARIOS / "benign.parquet")
    empty = run_analysis(RunRequest((trace,), (str(ROOT / "rules" / "sysreplay_rules.yaml"),)))
    assert empty.alert_count == 0 and empty.alerts == () and list(empty.alerts) == []
    assert empty.stats() == alert_stats((), empty.window_start_ns, empty.window_end_ns)


# ---- counts and reports -----------------------------------------------------------------------


@pytest.mark.parametrize("slices", [12, 60, 1])
def test_duckdb_counts_equal_the_counts_over_built_alerts(result: RunResult, slices: int) -> None:
    built = tuple(result.alerts)
    for start, end in ((result.window_start_ns, result.window_end_ns), (None, None)):
        stats = alert_stats(result.alerts, start, end, slices)
        assert stats == alert_stats(built, start, end, slices)
        assert stack_by_priority(result.alerts, stats) == stack_by_priority(built, stats)
    assert result.stats(slices).by_rule[0].count > 0


def test_reports_equal_the_materialised_ones(result: RunResult) -> None:
    whole = materialised(result)
    for limit in (0, 5, 10_000):
        assert _text(render_report(result, max_alerts=limit)) == _text(
            render_report(whole, max_alerts=limit))
        assert render_html(result, max_alerts=limit) == render_html(whole, max_alerts=limit)


def _text(renderable: object) -> str:
    out = StringIO()
    Console(file=out, width=120, color_system=None).print(renderable)
    return out.getvalue()


def test_reports_build_only_the_alerts_they_list(result: RunResult,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[int] = []
    real = alerts_module.make_alert

    def counting(*args: object, **kwargs: object) -> object:
        built.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(alerts_module, "make_alert", counting)
    _text(render_report(result, max_alerts=3))
    render_html(result, max_alerts=4)
    assert len(built) == 7 < result.alert_count


# ---- the CLI's output -------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_streamed_output_is_the_materialised_output(
    fmt: str, rules_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trace = str(SCENARIOS / "netcat-reverse-shell.parquet")
    paths = rule_paths(rules_dir)
    whole = tuple(run_analysis(RunRequest((trace,), paths, "auto", ALL)).alerts)
    if fmt == "json":
        expected = "".join(json.dumps(alert_json(a), ensure_ascii=False, separators=(",", ":"))
                           + "\n" for a in whole)
    else:
        expected = "".join(alert_line(a) + "\n" for a in whole)
    # Small chunks and writes: the output crosses many of both.
    monkeypatch.setattr("analyze.matched_alerts.ALERT_CHUNK", 30)
    monkeypatch.setattr(cli, "WRITE_LINES", 7)
    args = ["run", trace, *(a for p in paths for a in ("-r", p)), "--rule-matching", "all",
            "--format", fmt]
    printed = invoke(*args)
    assert printed.exit_code == 3, printed.output
    assert printed.stdout == expected
    out = tmp_path / f"alerts.{fmt}"
    written = invoke(*args, "-o", str(out))
    assert written.exit_code == 3, written.output
    assert out.read_text(encoding="utf-8") == expected
    assert f"Wrote {len(whole):,} alert(s)" in written.stderr


def test_output_file_keeps_its_old_content_when_a_chunk_fails(
    rules_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "alerts.json"
    out.write_text("old\n")
    real = alerts_module.make_alert
    built: list[int] = []

    def failing(*args: object, **kwargs: object) -> object:
        built.append(1)
        if len(built) > 12:  # after two chunks were written to the temporary file
            raise AlertBuildError("the trace changed while it was read")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr("analyze.matched_alerts.ALERT_CHUNK", 5)
    monkeypatch.setattr(cli, "WRITE_LINES", 2)
    monkeypatch.setattr(alerts_module, "make_alert", failing)
    trace = str(SCENARIOS / "netcat-reverse-shell.parquet")
    result = invoke("run", trace, "-r", rule_paths(rules_dir)[0], "--format", "json",
                     "-o", str(out))
    assert result.exit_code == 1
    assert "the trace changed while it was read" in result.stderr
    assert out.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alerts.json"]


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli.analyze, list(args))


# ---- matches the trace does not hold ------------------------------------------------------------


def test_a_match_the_trace_lacks_fails_before_any_output(rules_dir: Path) -> None:
    trace = open_trace(SCENARIOS / "write-below-etc.parquet")
    rules, _ = selected_rules(load_rules([rule_paths(rules_dir)[0]]), ALL)
    found = load_engine("sql").run(trace.paths, rules, ALL)
    assert found
    alerts = MatchedAlerts(trace, rules, MatchTable.of(
        [*found, Match(10**12, found[0].rule_index, found[0].rule_name)]), "h")
    with pytest.raises(AlertBuildError, match="matched event 1000000000000, which the trace"):
        alerts.check()
    with pytest.raises(AlertBuildError, match="which the trace does not hold"):
        list(alerts)


def test_segments_repeating_event_numbers_fail(rules_dir: Path, tmp_path: Path) -> None:
    original = SCENARIOS / "write-below-etc.parquet"
    copy = tmp_path / "copy.parquet"
    copy.write_bytes(original.read_bytes())
    trace = open_trace([original, copy])
    rules, _ = selected_rules(load_rules([rule_paths(rules_dir)[0]]), ALL)
    matches = load_engine("sql").run(trace.paths, rules, ALL)
    alerts = MatchedAlerts(trace, rules, MatchTable.of(matches), "h")
    with pytest.raises(AlertBuildError, match="repeat event numbers"):
        alerts.check()


# ---- compact matches --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["first", "all"])
def test_match_table_ordering_is_apply_rule_matching(mode: str) -> None:
    rng = random.Random(7)
    matches = [Match(rng.randrange(50), rng.randrange(6), "r") for _ in range(300)]
    matches = list({(m.evt_num, m.rule_index): m for m in matches}.values())
    rng.shuffle(matches)
    expected = apply_rule_matching(matches, mode)  # type: ignore[arg-type]
    got = MatchTable.of(matches).ordered(mode)  # type: ignore[arg-type]
    assert list(got.pairs()) == [(m.evt_num, m.rule_index) for m in expected]
    assert list(MatchTable.of([]).ordered(mode).pairs()) == []  # type: ignore[arg-type]


class TableOnly:
    """An engine giving its matches as a MatchTable (engine_api.TableEngine): `run` must not
    be called."""

    name = "table"

    def __init__(self) -> None:
        self.inner = load_engine("sql")

    def run(self, trace: object, rules: object, options: object) -> list[Match]:
        raise AssertionError("run_analysis should have called run_table")

    def run_table(self, trace: list[str], rules: list[CompiledRule],
                  options: RunOptions) -> MatchTable:
        return MatchTable.of(self.inner.run(trace, rules, options)).ordered(
            options.rule_matching)


def test_an_engine_giving_a_match_table_is_used(rules_dir: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    trace = str(SCENARIOS / "read-sensitive-file.parquet")
    request = RunRequest((trace,), rule_paths(rules_dir), "sql", ALL)
    expected = tuple(run_analysis(request).alerts)
    monkeypatch.setattr(run_module, "pick_engine", lambda *a, **k: TableOnly())
    got = run_analysis(request)
    assert got.alerts == expected and got.alert_count == len(expected) > 0


def test_chunks_hold_at_most_their_size(result: RunResult) -> None:
    alerts = matched(result)
    sizes = [len(c) for c in alert_chunks(alerts.trace, alerts.rules, alerts.matches,
                                          alerts.hostname, size=10)]
    assert sizes[:-1] == [10] * (len(sizes) - 1) and 0 < sizes[-1] <= 10
