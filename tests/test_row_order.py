"""Every reader gives the same answers on a trace whose row groups are clustered by event type (the
writer's layout) as on the same events in evt.num order (the layout of traces written before).

Each scenario trace (recorded live, tests/fixtures/scenarios/) is written twice with row groups of
64 rows, so that a trace has several row groups and each row group several type clusters: once
through the TraceWriter (rows by evt.type, evt.num) and once as an evt.num-ordered copy without
the `row_order` key. Both copies have the same file name in two directories; outputs are compared
with the directory names taken out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from trace_order import assert_clustered, num_ordered_copy, read_in_event_order

import cli
from analyze.engine_api import RunOptions, selected_rules
from analyze.query import run_query
from analyze.replay import ReplayEngine
from analyze.resolve import load_rules
from analyze.sql_engine import SqlEngine
from analyze.trace_reader import open_trace, read_trace_file
from analyze.triage_explain import explain
from analyze.triage_gaps import scan_gaps
from analyze.triage_info import summarize_trace
from analyze.triage_render import explain_json, info_json, timeline_json
from analyze.triage_timeline import TimelineRequest, timeline
from capture.trace_writer import TraceWriter
from schemas.trace import CLUSTERED_ORDER, NUM_ORDER, SOURCE_LIVE, TraceMeta, arrow_schema

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "tests" / "fixtures" / "scenarios"
STABLE = ROOT.parent / "shared" / "anchors" / "falco-rules" / "rules" / "falco_rules.yaml"
ROWS = 64  # per row group
# Scenarios with several processes, containers, many event types and alerts.
NAMES = ("benign", "shell-in-container", "netcat-reverse-shell", "k8s-api-from-container",
         "unexpected-process-in-image", "search-private-keys")
LAYOUTS = ("clustered", "numorder")
RUN_NAMES = NAMES[1:4]  # the engines and `analyze run` (a second or so per run with DuckDB)


@pytest.fixture(scope="module")
def copies(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Path]]:
    """layout -> scenario name -> trace: the clustered copy and the evt.num-ordered one."""
    base = tmp_path_factory.mktemp("row-order")
    out: dict[str, dict[str, Path]] = {layout: {} for layout in LAYOUTS}
    for name in NAMES:
        src = SCENARIOS / f"{name}.parquet"
        clustered = base / "clustered" / src.name
        clustered.parent.mkdir(exist_ok=True)
        with TraceWriter(clustered, read_trace_file(src).meta, row_group_rows=ROWS) as writer:
            writer.write(pq.read_table(src))
            writer.close()
        numorder = base / "numorder" / src.name
        numorder.parent.mkdir(exist_ok=True)
        out["clustered"][name] = clustered
        out["numorder"][name] = num_ordered_copy(clustered, numorder, ROWS)
    return out


def same(copies: dict[str, dict[str, Path]], name: str, answer: Callable[[Path], Any]) -> Any:
    """`answer` on both copies of scenario `name`, with the copies' directories taken out of it;
    asserts that they are equal and returns it."""
    got = []
    for layout in LAYOUTS:
        path = copies[layout][name]
        text = json.dumps(answer(path), sort_keys=True, default=str)
        got.append(text.replace(str(path.parent), "<dir>"))
    assert got[0] == got[1]
    return json.loads(got[0])


# ---- the two copies ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_the_copies_hold_the_same_events_in_two_orders(copies: dict[str, dict[str, Path]],
                                                       name: str) -> None:
    clustered, numorder = copies["clustered"][name], copies["numorder"][name]
    assert_clustered(clustered)
    assert read_trace_file(clustered).meta.row_order == CLUSTERED_ORDER
    assert read_trace_file(numorder).meta.row_order == NUM_ORDER  # no key: the old layout
    stored = [pq.read_table(p, columns=["evt.num"]).column(0).to_pylist()
              for p in (clustered, numorder)]
    assert stored[0] != stored[1] and stored[1] == sorted(stored[0])  # really reordered
    assert read_in_event_order(clustered).equals(read_in_event_order(numorder))
    assert pq.ParquetFile(clustered).num_row_groups > 1


# ---- gaps, info, timeline, explain -------------------------------------------------------------


def write_rows(path: Path, rows: list[dict[str, Any]], source: str = SOURCE_LIVE) -> Path:
    schema = arrow_schema()
    names = list(dict.fromkeys(k for r in rows for k in r))
    table = pa.table({k: pa.array([r.get(k) for r in rows], schema.field(k).type) for k in names})
    with TraceWriter(path, TraceMeta(source=source), row_group_rows=4) as writer:
        writer.write(table)
        writer.close()
    return path


def test_gap_scan_sorts_a_clustered_row_group_by_number(tmp_path: Path) -> None:
    s = 10**9
    types = ["openat", "close", "read"]
    # Row groups of 4: [1 2 3 6] [7 7 8 20] [21 22]: 2 missing after 3, 7 twice (a repeat, as a
    # splice leaves), 11 missing after 8 with 10 s of silence before 20.
    nums = [1, 2, 3, 6, 7, 7, 8, 20, 21, 22]
    times = [0, 1, 2, 3, 4, 4, 5, 15, 16, 17]
    rows = [{"evt.num": n, "evt.time": t * s, "evt.type": types[i % 3], "evt.dir": "<"}
            for i, (n, t) in enumerate(zip(nums, times, strict=True))]
    for layout in LAYOUTS:
        (tmp_path / layout).mkdir()
    clustered = write_rows(tmp_path / "clustered" / "t.parquet", rows)
    assert pq.read_table(clustered, columns=["evt.num"]).column(0).to_pylist()[:4] == [
        2, 1, 6, 3]  # close, openat, openat, read
    numorder = num_ordered_copy(clustered, tmp_path / "numorder" / "t.parquet", 4)
    reports = [scan_gaps(open_trace(p)) for p in (clustered, numorder)]
    for g in reports:
        assert (g.num_gaps, g.missing_nums, g.disorders, g.time_gaps) == (2, 2 + 11, 1, 1)
        assert [(x.after, x.before) for x in g.num_gap_list] == [(3, 6), (8, 20)]
        assert [(x.previous, x.num) for x in g.disorder_list] == [(7, 7)]
        assert [(x.after_num, x.before_num) for x in g.time_gap_list] == [(8, 20)]
        assert [(x.first_num, x.last_num, x.rows) for x in g.segments] == [(1, 22, 10)]


def test_gap_scan_still_sees_a_step_back_in_an_evt_num_ordered_file(tmp_path: Path) -> None:
    """Traces of the old layout are read as stored: a number going back is a splice there."""
    table = pa.table({"evt.num": pa.array([1, 2, 5, 3, 4], pa.int64()),
                      "evt.time": pa.array([0, 1, 2, 3, 4], pa.timestamp("ns")),
                      "evt.type": pa.array(["openat"] * 5), "evt.dir": pa.array(["<"] * 5)})
    meta = {k.encode(): v.encode() for k, v in TraceMeta(source=SOURCE_LIVE).to_kv().items()
            if not k.endswith("row_order")}
    pq.write_table(table.replace_schema_metadata(meta), tmp_path / "spliced.parquet")
    g = scan_gaps(open_trace(tmp_path / "spliced.parquet"))
    assert [(x.previous, x.num) for x in g.disorder_list] == [(5, 3)]


@pytest.mark.parametrize("name", NAMES)
def test_info_is_the_same(copies: dict[str, dict[str, Path]], name: str) -> None:
    def info(path: Path) -> dict[str, Any]:
        found = info_json(summarize_trace(path, gap_ns=10**8))
        for segment in found["segments"]:
            segment.pop("size_bytes")  # the two layouts encode differently
        return found

    assert same(copies, name, info)["events"] > 0


@pytest.mark.parametrize("name", ["shell-in-container", "netcat-reverse-shell", "benign"])
def test_timeline_is_the_same(copies: dict[str, dict[str, Path]], name: str) -> None:
    everything = same(copies, name, lambda p: timeline_json(timeline(p, TimelineRequest(
        limit=10_000))))
    events = everything["events"]
    assert [e["evt.num"] for e in events] == sorted(e["evt.num"] for e in events)
    pid = events[len(events) // 2]["proc.pid"]
    middle = events[len(events) // 3]["evt.num"]
    requests = [
        TimelineRequest(limit=7), TimelineRequest(from_num=middle, limit=9),
        TimelineRequest(pids=(pid,), tree=True, limit=50),
        TimelineRequest(types=("openat", "execve", "connect"), limit=50),
        TimelineRequest(since="+0.2s", until="+1s", limit=50),
    ]
    for request in requests:
        same(copies, name, partial(timeline_of, request))


def timeline_of(request: TimelineRequest, path: Path) -> dict[str, Any]:
    return timeline_json(timeline(path, request))


@pytest.mark.parametrize("name", ["shell-in-container", "netcat-reverse-shell"])
def test_explain_is_the_same(copies: dict[str, dict[str, Path]], name: str) -> None:
    execs = read_in_event_order(copies["clustered"][name], ["evt.num", "evt.type"]).to_pylist()
    nums = [r["evt.num"] for r in execs if r["evt.type"] in ("execve", "connect")][:4]
    assert nums
    for num in nums:
        same(copies, name, partial(explained, num))


def explained(num: int, path: Path) -> dict[str, Any]:
    return explain_json(explain(path, evt_num=num))


# ---- the engines, `analyze run`, `analyze query`, `analyze test` ------------------------------


def rule_paths() -> list[Path]:
    return [STABLE, ROOT / "rules"] if STABLE.exists() else [ROOT / "rules"]


@pytest.mark.parametrize("matching", ["first", "all"])
def test_engines_find_the_same_matches(copies: dict[str, dict[str, Path]], matching: str) -> None:
    options = RunOptions(rule_matching="all" if matching == "all" else "first")
    rules, _ = selected_rules(load_rules(rule_paths()), options)
    found = 0
    for name in RUN_NAMES:
        first = copies["clustered"][name]
        start = read_trace_file(first).meta.capture_start_ns or 0
        for opts in (options, replace(options, since_ns=start + 2 * 10**8,
                                      until_ns=start + 10**9)):
            results = [engine.run_table([str(copies[layout][name])], rules, opts).arrow()
                       for engine in (ReplayEngine(skip_errors=True), SqlEngine())
                       for layout in LAYOUTS]  # as `analyze run` picks them
            assert all(r.equals(results[0]) for r in results), name
            found += results[0].num_rows
    assert found > 0


@pytest.mark.parametrize("fmt", ["json", "text"])
@pytest.mark.parametrize("engine", ["sql", "replay"])
def test_run_output_is_byte_identical(copies: dict[str, dict[str, Path]], fmt: str,
                                      engine: str) -> None:
    alerts = 0
    for name in RUN_NAMES:
        for window in ([], ["--since", "+0.1s", "--until", "+2s"]):
            outputs = []
            for layout in LAYOUTS:
                args = ["run", str(copies[layout][name]), "--engine", engine, "--format", fmt,
                        "--rule-matching", "all", *window]
                for path in rule_paths():
                    args += ["-r", str(path)]
                result = CliRunner().invoke(cli.analyze, args)
                assert result.exit_code in (0, 3), result.output
                outputs.append(result.stdout)
            assert outputs[0] == outputs[1], name
            alerts += len(outputs[0].splitlines())
    assert alerts > 0


def test_query_answers_are_the_same(copies: dict[str, dict[str, Path]]) -> None:
    name = "shell-in-container"
    ordered = same(copies, name, lambda p: run_query(
        p, 'select "evt.num", "evt.type", "proc.name", "fd.name" from events '
           'order by "evt.num"').rows)
    assert [r[0] for r in ordered] == sorted(r[0] for r in ordered)
    same(copies, name, lambda p: run_query(
        p, 'select "evt.type", count(*), min("evt.num"), max("evt.num") from events '
           "group by 1 order by 1").rows)
    # Without ORDER BY, storage order: the same rows, not in the same order.
    stored = [run_query(copies[layout][name], 'select "evt.num" from events').rows
              for layout in LAYOUTS]
    assert stored[0] != stored[1] and sorted(stored[0]) == sorted(stored[1])


def test_shipped_rule_specs_pass_on_clustered_copies(tmp_path: Path) -> None:
    """The shipped specs pin every alert's evt.num on the 25 scenarios (recorded in evt.num
    order): the same specs pass, on both engines, on clustered copies of those traces."""
    clustered = tmp_path / "scenarios"
    clustered.mkdir()
    for src in sorted(SCENARIOS.glob("*.parquet")):
        with TraceWriter(clustered / src.name, read_trace_file(src).meta,
                         row_group_rows=ROWS) as writer:
            writer.write(pq.read_table(src))
            writer.close()
    spec = (ROOT / "rules" / "tests" / "sysreplay_rules.spec.yaml").read_text()
    spec = spec.replace("../sysreplay_rules.yaml", str(ROOT / "rules" / "sysreplay_rules.yaml"))
    spec, n = re.subn(r"\.\./\.\./tests/fixtures/scenarios/", f"{clustered}/", spec)
    assert n >= 25
    (tmp_path / "clustered.spec.yaml").write_text(spec)
    result = CliRunner().invoke(cli.analyze, ["test", str(tmp_path / "clustered.spec.yaml")])
    assert result.exit_code == 0, result.output
    assert result.output.rstrip().splitlines()[-1].startswith("PASSED: ")
