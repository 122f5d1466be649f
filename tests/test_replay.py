"""The replay engine: operator semantics on small Arrow tables, and whole rule sets on captures.

Unit tests build trace rows with the trace schema and evaluate one condition, through the whole
frame and through a reordered subset of it (the two must agree: evaluators see subsets after
event-type indexing and short-circuiting). The capture tests replay the upstream stable rules and
our own over imported sysdig captures and compare every match with a row-at-a-time reference
evaluator written from libsinsp's semantics.
"""

from __future__ import annotations

import ipaddress
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from analyze import ast
from analyze import semantics as sem
from analyze.engine_api import CompiledRule, Match, RunOptions, selected_rules
from analyze.errors import RuleError
from analyze.evttypes import matches_all
from analyze.parser import parse_condition
from analyze.replay import Frame, ReplayEngine, View
from analyze.replay_compile import CompiledCondition, compile_condition
from analyze.resolve import load_rules
from analyze.trace_reader import TraceFormatError
from capture.trace_writer import TraceWriter
from schemas import catalog
from schemas.elision import expand
from schemas.trace import ANCESTOR_COLUMNS, SOURCE_IMPORT, TraceMeta, arrow_schema

SCHEMA = arrow_schema()
ROOT = Path(__file__).resolve().parents[1]
ANCHORS = ROOT.parent / "shared" / "anchors"
UPSTREAM_RULES = ANCHORS / "falco-rules" / "rules" / "falco_rules.yaml"
SCAP = ANCHORS / "scap"


def table(*rows: dict[str, Any]) -> pa.Table:
    """Trace rows (columns by Falco field name, the rest null)."""
    return pa.table({f.name: pa.array([r.get(f.name) for r in rows], f.type) for f in SCHEMA},
                    schema=SCHEMA)


def frame_of(tbl: pa.Table) -> Frame:
    return Frame(tbl.num_rows, lambda name: tbl.column(name) if name in tbl.column_names else None)


def run(condition: str, *rows: dict[str, Any]) -> list[bool]:
    """Evaluate `condition` on the rows; also checks a reordered subset view agrees."""
    compiled = compile_condition(parse_condition(condition), "test")
    tbl = table(*rows)
    full = compiled.evaluate(View(frame_of(tbl))).to_pylist()
    order = list(reversed(range(tbl.num_rows)))
    subset = compiled.evaluate(View(frame_of(tbl), pa.array(order, pa.int64()))).to_pylist()
    assert subset == [full[i] for i in order], "a subset view disagrees with the whole frame"
    return full


def proc(name: str | None, **fields: Any) -> dict[str, Any]:
    return {"evt.type": "execve", "proc.name": name, **fields}


# ---- null handling and boolean logic -----------------------------------------------------------


def test_missing_values_make_checks_false_and_not_true() -> None:
    rows = [proc("cat"), proc(None)]
    assert run("proc.name = cat", *rows) == [True, False]
    assert run("proc.name != cat", *rows) == [False, False]
    assert run("not proc.name = cat", *rows) == [False, True]
    assert run("not proc.name != cat", *rows) == [True, True]
    assert run("proc.name exists", *rows) == [True, False]
    assert run("not proc.name exists", *rows) == [False, True]
    assert run("proc.name = cat or not proc.name exists", *rows) == [True, True]
    assert run("not (proc.name = cat and proc.pname = x)", *rows) == [True, True]


def test_and_or_short_circuit_agree_with_full_evaluation() -> None:
    rows = [proc(f"p{i}", **{"proc.pid": i}) for i in range(40)]
    got = run("proc.pid < 3 and proc.name in (p1, p2, p30)", *rows)
    assert [i for i, hit in enumerate(got) if hit] == [1, 2]
    got = run("proc.pid > 2 or proc.name = p0 or proc.name = p1", *rows)
    assert [i for i, hit in enumerate(got) if not hit] == [2]
    got = run("(proc.pid < 10 and proc.pid > 1) and not (proc.pid in (3, 4) or proc.pid = 9)",
              *rows)
    assert [i for i, hit in enumerate(got) if hit] == [2, 5, 6, 7, 8]


# ---- strings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("condition", "expected"), [
    ("fd.name = /etc/passwd", [True, False, False, False]),
    ("fd.name == /etc/passwd", [True, False, False, False]),
    ("fd.name != /etc/passwd", [False, True, True, False]),
    ("fd.name contains ssh", [False, True, False, False]),
    ("fd.name icontains SSH", [False, True, True, False]),
    ("fd.name startswith /etc/", [True, False, False, False]),
    ("fd.name endswith .pub", [False, True, False, False]),
    ("fd.name glob '/home/*/.ssh/*'", [False, True, False, False]),
    ("fd.name glob '/home/*'", [False, True, True, False]),
    ("fd.name iglob '/HOME/*/.SSH/*'", [False, True, True, False]),
    ("fd.name regex '/home/[a-z]+/[.]ssh/.*'", [False, True, False, False]),
    ("fd.name regex 'home'", [False, False, False, False]),  # RE2 anchored at both ends
    ("fd.name in (/etc/passwd, /tmp/x)", [True, False, False, False]),
    ("fd.name intersects (/etc/passwd, /tmp/x)", [True, False, False, False]),
    ("fd.name pmatch (/home/bob, /etc)", [True, True, False, False]),
    ("fd.name pmatch (/home/*/.SSH)", [False, False, True, False]),
    ("fd.name bcontains 2e737368", [False, True, False, False]),  # ".ssh"
    ("fd.name bstartswith 2f6574", [True, False, False, False]),  # "/et"
])
def test_string_operators(condition: str, expected: list[bool]) -> None:
    rows = [{"fd.name": n} for n in
            ("/etc/passwd", "/home/bob/.ssh/id.pub", "/home/ann/.SSH/ID.PUB", None)]
    assert run(condition, *rows) == expected


def test_evt_type_compares_names() -> None:
    rows = [{"evt.type": t} for t in ("open", "openat", "execve")]
    assert run("evt.type = open", *rows) == [True, False, False]
    assert run("evt.type in (open, openat)", *rows) == [True, True, False]
    assert run("evt.type != open", *rows) == [False, True, True]


# ---- numbers, bools, buffers -------------------------------------------------------------------


def test_numbers_convert_the_literal_to_the_field_type() -> None:
    rows = [{"user.uid": u} for u in (0, 1000, 4294967295, None)]
    assert run("user.uid = 0", *rows) == [True, False, False, False]
    assert run("user.uid = -1", *rows) == [False, False, True, False]  # PT_UINT32 wraps
    assert run("user.uid > 500", *rows) == [False, True, True, False]
    assert run("user.uid in (0, 1000, 4294968296)", *rows) == [True, True, False, False]
    assert run("user.uid = 4294968296", *rows) == [False, True, False, False]  # wraps to 1000
    rows = [{"evt.num": n} for n in (1, 2**62)]
    # PT_UINT64 is stored as int64: a literal beyond it compares as larger than every value.
    assert run("evt.num < 18446744073709551615", *rows) == [True, True]
    assert run("evt.num = 18446744073709551615", *rows) == [False, False]
    assert run("evt.num != 18446744073709551615", *rows) == [True, True]
    assert run("evt.num >= 18446744073709551615", *rows) == [False, False]
    rows = [{"fd.num": n} for n in (-1, 0, 7)]
    assert run("fd.num >= 0", *rows) == [False, True, True]
    assert run("fd.num <= -1", *rows) == [True, False, False]


def test_bools() -> None:
    rows = [{"evt.is_open_write": v} for v in (True, False, None)]
    assert run("evt.is_open_write = true", *rows) == [True, False, False]
    assert run("evt.is_open_write != true", *rows) == [False, True, False]
    assert run("evt.is_open_write in (false)", *rows) == [False, True, False]


def test_buffers() -> None:
    rows = [{"evt.buffer": b} for b in (b"\x7fELF\x02", b"GET / HTTP/1.1\r\n", None)]
    assert run("evt.buffer bstartswith 7f454c46", *rows) == [True, False, False]
    assert run("evt.buffer bcontains 0d0a", *rows) == [False, True, False]
    assert run("evt.buffer contains HTTP", *rows) == [False, True, False]
    assert run("evt.buffer startswith GET", *rows) == [False, True, False]
    assert run("len(evt.buffer) > 10", *rows) == [False, True, False]


def test_time_fields() -> None:
    rows = [{"evt.time": 1_500_000_000_123_456_789}]
    assert run("evt.rawtime = 1500000000123456789", *rows) == [True]
    assert run("evt.rawtime.s = 1500000000", *rows) == [True]
    assert run("evt.rawtime.ns = 123456789", *rows) == [True]
    assert run("evt.time = '02:40:00.123456789'", *rows) == [True]  # UTC


# ---- IPs, networks, ports ----------------------------------------------------------------------

SOCKETS: list[dict[str, Any]] = [
    {"fd.cip": "10.0.0.5", "fd.sip": "192.168.1.1", "fd.lip": "10.0.0.5",
     "fd.rip": "192.168.1.1", "fd.cport": 40000, "fd.sport": 443},
    {"fd.cip": "2001:db8::4", "fd.sip": "2001:db8::3", "fd.cport": 54405, "fd.sport": 1234},
    {"fd.sip": "0.0.0.0", "fd.sport": 22},  # a listening (server) socket: no client side
    {"fd.name": "/etc/passwd"},
]


@pytest.mark.parametrize(("condition", "expected"), [
    ("fd.sip = 192.168.1.1", [True, False, False, False]),
    ("fd.sip = '2001:0db8::3'", [False, True, False, False]),  # compared as addresses
    ("fd.sip != 192.168.1.1", [False, True, True, False]),
    ("fd.sip in (192.168.1.1, 2001:db8::3)", [True, True, False, False]),
    ("fd.ip = 10.0.0.5", [True, False, False, False]),
    ("fd.ip = 192.168.1.1", [True, False, False, False]),
    ("fd.ip != 10.0.0.5", [False, True, True, False]),  # every side must differ
    ("fd.ip != 0.0.0.0", [True, True, False, False]),
    ("fd.ip in (2001:db8::4)", [False, True, False, False]),
    ("fd.ip exists", [True, True, True, False]),
    ("fd.net = 10.0.0.0/8", [True, False, False, False]),
    ("fd.net in (192.168.0.0/16, 2001:db8::/32)", [True, True, False, False]),
    ("fd.net != 10.0.0.0/8", [False, True, True, False]),
    ("fd.snet = 192.168.0.0/16", [True, False, False, False]),
    ("fd.cnet = 192.168.0.0/16", [False, False, False, False]),
    ("fd.snet != 192.168.0.0/16", [False, True, True, False]),
    ("fd.lnet in (10.0.0.0/8)", [True, False, False, False]),
    ("fd.rnet = 10.0.0.0/8", [False, False, False, False]),
    ("fd.sport = 443", [True, False, False, False]),
    ("fd.sport = https", [True, False, False, False]),  # a service name
    ("fd.port = 40000", [True, False, False, False]),
    ("fd.port = 22", [False, False, True, False]),
    ("fd.port != 22", [True, True, False, False]),
    ("fd.port > 50000", [False, True, False, False]),
    ("fd.port in (1234, 9)", [False, True, False, False]),
    ("fd.proto = ssh", [False, False, True, False]),
    ("fd.cport < 50000", [True, False, False, False]),
])
def test_ips_networks_ports(condition: str, expected: list[bool]) -> None:
    assert run(condition, *SOCKETS) == expected


# ---- ancestors, lists, modifiers ---------------------------------------------------------------

TREES = [
    proc("sh", **{"proc.aname": ["sh", "bash", "sshd", "systemd"],
                  "proc.apid": [30, 20, 10, 1]}),
    proc("bash", **{"proc.aname": ["bash", "sh"], "proc.apid": [40, 30]}),
    proc("init", **{"proc.aname": ["init"], "proc.apid": [1]}),
    proc("x", **{"proc.aname": None}),
]


@pytest.mark.parametrize(("condition", "expected"), [
    ("proc.aname = sh", [False, True, False, False]),  # index 0 (the process) is not an ancestor
    ("proc.aname = bash", [True, False, False, False]),
    ("proc.aname in (sshd, nope)", [True, False, False, False]),
    ("proc.aname != sh", [True, False, False, False]),  # any ancestor differs
    ("proc.aname startswith s", [True, True, False, False]),
    ("proc.aname exists", [True, True, False, False]),  # has a parent
    ("proc.aname[0] = sh", [True, False, False, False]),
    ("proc.aname[1] = bash", [True, False, False, False]),
    ("proc.aname[3] = systemd", [True, False, False, False]),
    ("proc.aname[4] exists", [False, False, False, False]),
    ("proc.aname[2] != sshd", [False, False, False, False]),
    ("proc.apid = 1", [True, False, False, False]),
    ("proc.apid[1] = 30", [False, True, False, False]),
    ("proc.aname anyof startswith s", [True, True, False, False]),
    ("proc.aname allof contains s", [True, True, False, False]),
    ("proc.aname allof startswith s", [False, True, False, False]),
    ("proc.aname oneof startswith s", [False, True, False, False]),
    ("proc.aname oneof = sshd", [True, False, False, False]),
    ("proc.aname allof exists", [True, True, False, False]),
])
def test_ancestors(condition: str, expected: list[bool]) -> None:
    assert run(condition, *TREES) == expected


def test_ancestor_entries_may_be_unknown() -> None:
    rows = [proc("a", **{"proc.aexe": ["/bin/a", None, "/sbin/init"]})]
    assert run("proc.aexe = /sbin/init", *rows) == [True]
    assert run("proc.aexe allof startswith /", *rows) == [False]  # one cannot be extracted
    assert run("proc.aexe[1] exists", *rows) == [False]


# ---- transformers and val() --------------------------------------------------------------------


@pytest.mark.parametrize(("condition", "expected"), [
    ("tolower(proc.name) = bash", [True, True, False]),
    ("toupper(proc.name) = BASH", [True, True, False]),
    ("basename(proc.exe) = bash", [True, False, False]),
    ("basename(proc.exe) = ''", [False, True, False]),
    ("len(proc.name) = 4", [True, True, False]),
    ("len(proc.name) > 4", [False, False, False]),
    ("b64(proc.cmdline) = 'echo hi'", [True, False, False]),
    ("b64(proc.cmdline) exists", [True, False, False]),  # not base64: cannot be extracted
    ("tolower(basename(proc.exe)) startswith ba", [True, False, False]),
    ("concat(proc.name, '-', proc.pname) = 'BASH-sshd'", [True, False, False]),
    ("concat(proc.name, proc.pname) exists", [True, False, False]),  # a part is missing
    ("join(',', (proc.name, proc.pname)) = 'BASH,sshd'", [True, False, False]),
    ("join(',', (proc.name, proc.pname)) = bash", [False, True, False]),  # missing left out
    ("len((proc.name, proc.pname, proc.exe)) = 3", [True, False, False]),
    ("getopt((proc.pname, proc.name), 'ab:') intersects (b)", [False, False, False]),
    ("proc.name = val(proc.pname)", [False, False, False]),
    ("tolower(proc.name) = val(proc.pname)", [False, False, False]),
    ("proc.pname = tolower(proc.name)", [False, False, False]),
    ("proc.exe endswith val(proc.name)", [False, False, False]),
    ("proc.exe icontains val(proc.name)", [True, False, False]),
    ("proc.name in val(proc.args)", [False, True, False]),
])
def test_transformers_and_val(condition: str, expected: list[bool]) -> None:
    rows = [
        proc("BASH", **{"proc.exe": "/bin/bash", "proc.pname": "sshd",
                        "proc.cmdline": "ZWNobyBoaQ=="}),
        proc("bash", **{"proc.exe": "/bin/", "proc.cmdline": "not base64!",
                        "proc.args": "bash"}),
        proc(None),
    ]
    assert run(condition, *rows) == expected


def test_getopt_and_val_lists() -> None:
    rows = [{"proc.name": "-n", "proc.pname": "-tnat", "proc.args": "-L"}]
    assert run("getopt((proc.name, proc.pname, proc.args), 'nt:L') intersects (nat)",
               *rows) == [True]
    assert run("getopt((proc.name, proc.pname), 'nt:') in (n, t, nat)", *rows) == [True]
    assert run("getopt((proc.name, proc.pname), 'nt:') in (n, t)", *rows) == [False]
    assert run("proc.pname = val(proc.pname)", *rows) == [True]
    assert run("proc.aname = val(proc.name)", {"proc.aname": ["x", "-n"],
                                               "proc.name": "-n"}) == [True]


# ---- keyed and unrecorded fields ---------------------------------------------------------------


def test_keyed_fields() -> None:
    rows = [{"proc.env": "HOME=/root TERM=xterm", "evt.type": "open",
             "container.mounts": "/h:/etc:ro:false:rprivate,/var/lib/x:/data::true:rprivate"},
            {"evt.type": "execve"}]
    assert run("proc.env[HOME] = /root", *rows) == [True, False]
    assert run("proc.env[NOPE] = ''", *rows) == [True, False]  # libsinsp yields "" if unset
    assert run("proc.env contains 'TERM='", *rows) == [True, False]
    assert run("container.mount.dest[/var/lib/*] = /data", *rows) == [True, False]
    assert run("container.mount.source[/etc] = /h", *rows) == [True, False]
    assert run("container.mount[2] = none", *rows) == [True, False]
    assert run("container.mount.mode[9] exists", *rows) == [False, False]
    assert run("evt.type.is.open = 1", *rows) == [True, False]


def test_fields_without_column_cannot_be_extracted() -> None:
    compiled = compile_condition(parse_condition(
        "evt.arg.nosuch = x or not proc.acmdline contains y or fd.types intersects (file)"))
    assert compiled.missing_fields == ("evt.arg.nosuch", "proc.acmdline", "fd.types")
    rows = table({"evt.type": "open"})
    assert compiled.evaluate(View(frame_of(rows))).to_pylist() == [True]  # only the `not` holds


# ---- every node, operator and transformer compiles ---------------------------------------------

OPERATOR_EXAMPLES = {
    "exists": "proc.name exists", "<=": "proc.pid <= 1", "<": "proc.pid < 1",
    ">=": "proc.pid >= 1", ">": "proc.pid > 1", "==": "proc.name == a", "=": "proc.name = a",
    "!=": "proc.name != a", "glob": "proc.name glob a*", "iglob": "proc.name iglob A*",
    "contains": "proc.name contains a", "icontains": "proc.name icontains A",
    "bcontains": "evt.buffer bcontains 61", "startswith": "proc.name startswith a",
    "bstartswith": "evt.buffer bstartswith 61", "endswith": "proc.name endswith a",
    "regex": "proc.name regex 'a.*'", "intersects": "proc.name intersects (a)",
    "in": "proc.name in (a, b)", "pmatch": "fd.name pmatch (/a)",
}


def test_every_operator_node_and_transformer_is_handled() -> None:
    assert set(OPERATOR_EXAMPLES) == set(ast.OPERATORS)
    everything = " or ".join(f"({c})" for c in OPERATOR_EXAMPLES.values())
    everything += (" or not (proc.name = val(proc.pname)"
                   " and tolower(proc.name) = toupper(proc.pname))"
                   " or join(',', (proc.name, 'x')) = a or concat(proc.name, 'b') = ab"
                   " or getopt((proc.name, proc.pname), 'n') intersects (n)"
                   " or len(basename(b64(proc.name))) > 1 or proc.aname allof = a")
    tree = parse_condition(everything)
    seen = {type(n) for n in tree.walk()}
    assert seen == set(ast.NODE_TYPES) - {ast.MacroRef}
    assert {n.name for n in tree.walk() if isinstance(n, ast.Transformer)} == set(
        ast.TRANSFORMERS)
    assert run(everything, {"proc.name": "ab", "evt.buffer": b"ab"}) == [True]
    with pytest.raises(RuleError, match=r"replay engine cannot run rule 'r'.*'nosuch'"):
        compile_condition(parse_condition("proc.name = a and nosuch"), "r")


def test_bad_values_fail_at_compile_time_naming_the_rule() -> None:
    with pytest.raises(RuleError, match=r"rule 'r'.*invalid regular expression"):
        compile_condition(parse_condition("proc.name regex '(('"), "r")
    with pytest.raises(RuleError, match=r"rule 'r'.*not a valid number"):
        compile_condition(parse_condition("proc.pid = abc"), "r")


# ---- the engine on trace files -----------------------------------------------------------------


def write_trace(path: Path, rows: list[dict[str, Any]], row_group_rows: int = 3) -> Path:
    """A trace file of `rows`, numbered and timed 1, 2, 3, ... in small row groups."""
    for i, row in enumerate(rows, 1):
        row.setdefault("evt.num", i)
        row.setdefault("evt.time", i * 1000)
        row.setdefault("evt.dir", "<")
    with TraceWriter(path, TraceMeta(source=SOURCE_IMPORT), row_group_rows) as writer:
        writer.write(table(*rows))
        writer.close()
    return path


RULES = """
- rule: cat opens
  desc: d
  condition: evt.type = open and proc.name = cat
  output: o
  priority: WARNING
- rule: anything by cat
  desc: d
  condition: proc.name = cat
  output: o
  priority: NOTICE
- rule: not an open
  desc: d
  condition: evt.type != open and proc.name exists
  output: o
  priority: INFO
- rule: argument we do not record
  desc: d
  condition: evt.type = execve and evt.arg.nosuch = x
  output: o
  priority: INFO
"""


@pytest.fixture
def engine_case(tmp_path: Path) -> tuple[Path, list[CompiledRule]]:
    (tmp_path / "r.yaml").write_text(RULES)
    rules, _ = selected_rules(load_rules([tmp_path / "r.yaml"]), RunOptions())
    rows = [{"evt.type": t, "proc.name": n} for t, n in [
        ("open", "cat"), ("read", "cat"), ("open", "ls"), ("execve", "cat"), ("open", "cat"),
        ("close", None), ("open", "cat")]]
    return write_trace(tmp_path / "t.parquet", rows), rules


def numbers(matches: list[Match]) -> list[tuple[int, str]]:
    return [(m.evt_num, m.rule_name) for m in matches]


def test_rule_matching_all_and_first(engine_case: tuple[Path, list[CompiledRule]]) -> None:
    trace, rules = engine_case
    every = ReplayEngine().run([trace], rules, RunOptions(rule_matching="all"))
    expected_all = [(1, "cat opens"), (1, "anything by cat"), (2, "anything by cat"),
                    (2, "not an open"), (4, "anything by cat"), (4, "not an open"),
                    (5, "cat opens"), (5, "anything by cat"), (7, "cat opens"),
                    (7, "anything by cat")]
    assert numbers(every) == expected_all
    first = ReplayEngine().run([trace], rules, RunOptions())
    assert numbers(first) == [(1, "cat opens"), (2, "anything by cat"), (4, "anything by cat"),
                              (5, "cat opens"), (7, "cat opens")]


def test_time_window(engine_case: tuple[Path, list[CompiledRule]]) -> None:
    trace, rules = engine_case
    window = RunOptions(rule_matching="all", since_ns=2000, until_ns=5000)
    got = ReplayEngine().run([trace], rules, window)
    assert {m.evt_num for m in got} == {2, 4, 5}
    assert ReplayEngine().run([trace], rules, RunOptions(since_ns=10**9)) == []


def test_unrecorded_fields_warn_once_per_rule(
        engine_case: tuple[Path, list[CompiledRule]]) -> None:
    trace, rules = engine_case
    engine = ReplayEngine()
    engine.run([trace], rules, RunOptions())
    assert [w.message for w in engine.warnings] == [
        "rule 'argument we do not record': traces do not record evt.arg.nosuch; "
        "checks on it are false"]


def test_rules_see_only_their_event_types(engine_case: tuple[Path, list[CompiledRule]],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    trace, rules = engine_case
    seen: dict[str, set[str]] = {}
    evaluate = CompiledCondition.evaluate

    def spy(self: CompiledCondition, view: View) -> Any:
        seen.setdefault(self.node.key, set()).update(view.column("evt.type").to_pylist())
        return evaluate(self, view)

    monkeypatch.setattr(CompiledCondition, "evaluate", spy)
    ReplayEngine().run([trace], rules, RunOptions(rule_matching="all"))
    assert seen["(evt.type = open and proc.name = cat)"] == {"open"}
    assert seen["proc.name = cat"] == {"open", "read", "execve", "close"}
    assert "open" not in seen["(evt.type != open and proc.name exists)"]


def test_unrunnable_rules_are_reported(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(RULES.replace("proc.name = cat\n  output: o\n  priority: "
                                                   "NOTICE", "proc.name regex '(('\n  output: o"
                                                   "\n  priority: NOTICE"))
    rules, _ = selected_rules(load_rules([tmp_path / "r.yaml"]), RunOptions())
    with pytest.raises(RuleError, match="anything by cat"):
        ReplayEngine().compile(rules)
    plan = ReplayEngine().compile(rules, skip_errors=True)
    assert [s.rule for s in plan.skipped] == ["anything by cat"]
    assert len(plan.rules) == 3
    engine = ReplayEngine(skip_errors=True)
    trace = write_trace(tmp_path / "t.parquet", [{"evt.type": "open", "proc.name": "cat"}])
    assert numbers(engine.run([trace], rules, RunOptions())) == [(1, "cat opens")]
    assert [s.rule for s in engine.skipped] == ["anything by cat"]


def test_a_damaged_row_group_is_a_trace_error(engine_case: tuple[Path, list[CompiledRule]]
                                              ) -> None:
    trace, rules = engine_case
    data = bytearray(trace.read_bytes())
    data[30:60] = bytes(b ^ 0x5A for b in data[30:60])  # inside the first column's pages
    trace.write_bytes(bytes(data))
    with pytest.raises(TraceFormatError, match="row group 0 cannot be read"):
        ReplayEngine().run([trace], rules, RunOptions())


# ---- whole rule sets on captures, against a row-at-a-time reference ---------------------------


def reference(node: ast.Node, row: dict[str, Any]) -> bool:
    """libsinsp's evaluation, one event at a time (the subset of the language rules use)."""
    if isinstance(node, ast.And):
        return all(reference(i, row) for i in node.items)
    if isinstance(node, ast.Or):
        return any(reference(i, row) for i in node.items)
    if isinstance(node, ast.Not):
        return not reference(node.item, row)
    assert isinstance(node, ast.UnaryCheck | ast.BinaryCheck)
    assert isinstance(node.left, ast.Field) and node.modifier is None
    shape, values = ref_values(node.left, row)
    if isinstance(node, ast.UnaryCheck):
        return any(v is not None for v in values)
    assert isinstance(node.right, ast.Literal | ast.ValueList)
    literals = node.right.values if isinstance(node.right, ast.ValueList) else (node.right,)
    info = catalog.resolve(node.left.name, node.left.arg)
    consts = [sem.convert_literal(info.type, lit.value, node.op) for lit in literals]
    results = [None if v is None else ref_compare(v, node.op, consts) for v in values]
    if shape == "pair":
        return sem.pair_matches(node.op, results)
    return any(r for r in results)


def ref_values(field: ast.Field, row: dict[str, Any]) -> tuple[str, list[Any]]:
    if field.name in sem.FD_PAIRS:
        return "pair", [row[c] for c in sem.FD_PAIRS[field.name]]
    if field.name in sem.FD_NETS:
        return "one", [row[sem.FD_NETS[field.name]]]
    if field.name in ANCESTOR_COLUMNS:
        chain = row[field.name] or []
        if field.arg is None:
            return "ancestors", chain[1:]
        index = int(field.arg)
        return "one", [chain[index] if index < len(chain) else None]
    return "one", [row.get(field.name)]


def ref_compare(value: Any, op: str, consts: list[Any]) -> bool:
    if not consts:
        return False  # `in ()`
    lit = consts[0]
    if isinstance(lit, ipaddress.IPv4Network | ipaddress.IPv6Network):
        ip = sem.ip_of(value)
        return ip is not None and any(ip in net for net in consts) != (op == "!=")
    if isinstance(lit, ipaddress.IPv4Address | ipaddress.IPv6Address):
        ip = sem.ip_of(value)
        return ip is not None and (ip in consts) != (op == "!=")
    tests = {
        "=": lambda: value == lit, "==": lambda: value == lit, "!=": lambda: value != lit,
        "<": lambda: value < lit, "<=": lambda: value <= lit, ">": lambda: value > lit,
        ">=": lambda: value >= lit, "in": lambda: value in consts,
        "intersects": lambda: value in consts, "contains": lambda: lit in value,
        "icontains": lambda: lit.lower() in value.lower(),
        "startswith": lambda: value.startswith(lit), "endswith": lambda: value.endswith(lit),
        "glob": lambda: sem.glob_match(lit, value), "pmatch": lambda: sem.pmatch(value, consts),
    }
    return bool(tests[op]())


CAPTURES = ("falco__cat_write", "libs__sample", "libs__curl_google",
            "falco__psp_run_as_user_0_container", "libs__single_ipv6_conn")


@pytest.fixture(scope="module")
def captures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if not SCAP.is_dir() or shutil.which("sysdig") is None:
        pytest.skip("needs the shared scap anchors and sysdig")
    from capture.scap_import import import_scap

    out = tmp_path_factory.mktemp("captures")
    return {name: import_scap(SCAP / f"{name}.scap", out / f"{name}.parquet",
                              row_group_rows=512).output for name in CAPTURES}


@pytest.fixture(scope="module")
def shipped_rules() -> list[CompiledRule]:
    if not UPSTREAM_RULES.is_file():
        pytest.skip("needs the shared upstream Falco rules")
    rules, _ = selected_rules(load_rules([UPSTREAM_RULES, ROOT / "rules"]),
                              RunOptions(rule_matching="all"))
    return rules


def trace_rows(path: Path) -> Iterator[dict[str, Any]]:
    import pyarrow.parquet as pq

    table = expand(pq.read_table(path))  # the values as every reader sees them
    table = table.set_column(table.schema.get_field_index("evt.time"), "evt.time",
                             table.column("evt.time").cast(pa.int64()))
    yield from table.to_pylist()


def test_cat_write_opens_as_falco_counts_them(captures: dict[str, Path], tmp_path: Path) -> None:
    """Falco's own test expects 8 alerts: 4 opens by cat, enter and exit events."""
    (tmp_path / "r.yaml").write_text(RULES)
    rules, _ = selected_rules(load_rules([tmp_path / "r.yaml"]), RunOptions())
    got = ReplayEngine().run([captures["falco__cat_write"]], rules[:1],
                             RunOptions(rule_matching="all"))
    assert len(got) == 8


# Rules that match often on the captures, so that whole-rule agreement means something.
BROAD_RULES = """
- list: shells
  items: [bash, sh, dash]
- macro: opens
  condition: evt.type in (open, openat, openat2)
- rule: etc read
  desc: d
  output: o
  priority: INFO
  condition: opens and fd.name startswith /etc and not fd.name in (/etc/ld.so.cache)
- rule: shell ancestors
  desc: d
  output: o
  priority: INFO
  condition: evt.type = execve and evt.dir = < and proc.aname in (shells)
- rule: parent index
  desc: d
  output: o
  priority: INFO
  condition: proc.aname[1] = bash or proc.aname[2] glob 's*'
- rule: networks
  desc: d
  output: o
  priority: INFO
  condition: >
    evt.type in (connect, accept, sendto, recvfrom, socket) and (fd.net = 10.0.0.0/8
    or fd.snet in (2600::/16, 127.0.0.0/8) or fd.port in (53, 443) or fd.ip != 127.0.0.1)
- rule: libraries
  desc: d
  output: o
  priority: INFO
  condition: fd.name pmatch (/lib, /usr/lib) and fd.typechar = f
- rule: failures
  desc: d
  output: o
  priority: INFO
  condition: evt.res != SUCCESS and evt.rawres < 0
- rule: no fd
  desc: d
  output: o
  priority: INFO
  condition: proc.name icontains CURL and not fd.name exists
- rule: root in a container
  desc: d
  output: o
  priority: INFO
  condition: container.id != host and container.id exists and user.uid = 0
- rule: read-only libraries
  desc: d
  output: o
  priority: INFO
  condition: evt.arg.flags contains O_RDONLY and fd.directory contains lib
"""


@pytest.fixture(scope="module")
def broad_rules(tmp_path_factory: pytest.TempPathFactory) -> list[CompiledRule]:
    path = tmp_path_factory.mktemp("rules") / "broad.yaml"
    path.write_text(BROAD_RULES)
    rules, _ = selected_rules(load_rules([path]), RunOptions())
    return rules


@pytest.mark.parametrize("name", CAPTURES)
@pytest.mark.parametrize("rule_set", ["shipped_rules", "broad_rules"])
def test_rules_agree_with_the_reference(name: str, rule_set: str, captures: dict[str, Path],
                                        request: pytest.FixtureRequest) -> None:
    rules: list[CompiledRule] = request.getfixturevalue(rule_set)
    got = ReplayEngine().run([captures[name]], rules, RunOptions(rule_matching="all"))
    expected = []
    for row in trace_rows(captures[name]):
        for rule in rules:
            seen = matches_all(rule.evttypes) or row["evt.type"] in rule.evttypes
            assert rule.rule.ast is not None
            if seen and reference(rule.rule.ast, row):
                expected.append(Match(row["evt.num"], rule.index, rule.rule.name))
    assert numbers(got) == numbers(sorted(expected))
    if rule_set == "broad_rules" and name in ("libs__curl_google",
                                              "falco__psp_run_as_user_0_container"):
        assert len({m.rule_name for m in got}) >= 4, "the broad rules should match here"


def test_every_check_of_the_shipped_rules_agrees_with_the_reference(
        captures: dict[str, Path], shipped_rules: list[CompiledRule]) -> None:
    """Each distinct check and or/not subtree, on every event of two captures."""
    import pyarrow.parquet as pq

    checks: dict[str, ast.Node] = {}
    for rule in shipped_rules:
        assert rule.rule.ast is not None
        for node in rule.rule.ast.walk():
            if isinstance(node, ast.UnaryCheck | ast.BinaryCheck | ast.Not | ast.Or):
                checks.setdefault(ast.to_text(node), node)
    for name in ("libs__curl_google", "falco__psp_run_as_user_0_container"):
        rows = list(trace_rows(captures[name]))
        view = View(frame_of(pq.read_table(captures[name])))
        for text, node in checks.items():
            got = compile_condition(node, text).evaluate(view).to_pylist()  # type: ignore[arg-type]
            assert got == reference_per_row(node, rows), text


def reference_per_row(node: ast.Node, rows: list[dict[str, Any]]) -> list[bool]:
    """`reference` on each row, computed once per distinct value of the columns it reads."""
    columns = sorted({c for f in ast.fields_of(node) for c in sem.FD_PAIRS.get(
        f.name, (sem.FD_NETS.get(f.name, f.name),))})
    memo: dict[str, bool] = {}
    out = []
    for row in rows:
        key = repr([row.get(c) for c in columns])
        if key not in memo:
            memo[key] = reference(node, row)
        out.append(memo[key])
    return out
