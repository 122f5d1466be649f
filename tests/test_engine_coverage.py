"""Both engines handle every AST node type, operator, transformer and modifier.

Each construct has a condition exercising it, run by both engines over a small hand-made trace
whose rows were chosen for it (nulls, an event without thread info, a process without ancestors,
upper-case names, byte buffers). Both engines must run it, agree, and, where the meaning is
Falco's and unambiguous, select the events listed here. The list is checked against
`analyze.ast`, so a construct added to the language without a case here fails this test.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import engines_fixture as ef
import pyarrow as pa
import pytest

from analyze import ast
from analyze.engine_api import CompiledRule
from analyze.parser import parse_condition
from capture.trace_writer import TraceWriter
from schemas.trace import SOURCE_LIVE, TraceMeta

# One row per event; absent keys are null. Row 4 is an event sysdig knows no thread for.
ROWS: list[dict[str, Any]] = [
    {"evt.num": 1, "evt.type": "open", "evt.dir": "<", "evt.res": "SUCCESS", "evt.rawres": 3,
     "evt.failed": False, "evt.buffer": b"GET / HTTP/1.1", "proc.name": "bash",
     "proc.pname": "sshd", "proc.aname": ["bash", "sshd", "systemd"], "proc.apid": [100, 50, 1],
     "proc.exepath": "/bin/bash", "proc.cmdline": "bash -c ls", "proc.args": "-c ls",
     "fd.name": "/etc/passwd", "fd.directory": "/etc", "fd.filename": "passwd",
     "fd.typechar": "f", "fd.type": "file", "user.name": "root", "user.uid": 0,
     "container.id": "host"},
    {"evt.num": 2, "evt.type": "connect", "evt.dir": "<", "evt.res": "ECONNREFUSED",
     "evt.rawres": -111, "evt.failed": True, "evt.buffer": b"\x00\x01HTTP",
     "proc.name": "curl", "proc.pname": "bash", "proc.aname": ["curl", "bash", "sshd", "systemd"],
     "proc.apid": [200, 100, 50, 1], "proc.exepath": "/usr/bin/curl",
     "proc.cmdline": "curl -s http://x", "proc.args": "-s http://x",
     "fd.name": "10.0.0.1:40000->8.8.8.8:53", "fd.typechar": "4", "fd.type": "ipv4",
     "fd.l4proto": "udp", "fd.cip": "10.0.0.1", "fd.sip": "8.8.8.8", "fd.cport": 40000,
     "fd.sport": 53, "fd.lip": "10.0.0.1", "fd.rip": "8.8.8.8", "fd.lport": 40000,
     "fd.rport": 53, "user.name": "alice", "user.uid": 1000, "container.id": "abc123",
     "container.name": "web"},
    {"evt.num": 3, "evt.type": "execve", "evt.dir": ">", "proc.name": "Nginx",
     "proc.aname": ["Nginx"], "proc.apid": [300], "proc.exepath": "/usr/sbin/nginx",
     "proc.cmdline": "nginx -g daemon", "proc.args": "-g daemon", "user.name": "www-data",
     "user.uid": 33, "container.id": "abc123", "container.name": "web"},
    {"evt.num": 4, "evt.type": "read", "evt.dir": "<", "evt.res": "SUCCESS", "evt.rawres": 10,
     "evt.failed": False},
    {"evt.num": 5, "evt.type": "openat", "evt.dir": "<", "evt.res": "ENOENT", "evt.rawres": -2,
     "evt.failed": True, "proc.name": "sh", "proc.pname": "sh",
     "proc.aname": ["sh", "sh", "bash", "sshd"], "proc.apid": [400, 399, 100, 50],
     "proc.exepath": "/bin/sh", "proc.cmdline": "sh aGVsbG8=", "proc.args": "aGVsbG8=",
     "fd.name": "/tmp/x y", "fd.directory": "/tmp", "fd.filename": "x y", "fd.typechar": "f",
     "fd.type": "file", "user.name": "root", "user.uid": 0, "container.id": "host"},
]
EVENTS = frozenset(r["evt.num"] for r in ROWS)
MACROS = {"is_shell": "proc.name in (bash, sh)"}


def s(*nums: int) -> frozenset[int]:
    return frozenset(nums)


# construct -> (condition, the events it selects; None: only the two engines are compared,
# for our own extensions whose edge cases Falco does not define).
CASES: dict[str, tuple[str, frozenset[int] | None]] = {
    # operators
    "op:=": ("proc.name = bash", s(1)),
    "op:==": ("proc.name == curl", s(2)),
    "op:!=": ("proc.name != bash", s(2, 3, 5)),  # no proc.name on event 4: false
    "op:<": ("evt.rawres < 0", s(2, 5)),
    "op:<=": ("user.uid <= 33", s(1, 3, 5)),
    "op:>": ("fd.sport > 50", s(2)),
    "op:>=": ("evt.rawres >= 3", s(1, 4)),
    "op:glob": ('fd.name glob "/etc/*"', s(1)),
    "op:iglob": ("proc.name iglob NGINX", s(3)),
    "op:contains": ('proc.cmdline contains "-c"', s(1)),
    "op:icontains": ("proc.name icontains nginx", s(3)),
    "op:bcontains": ("evt.buffer bcontains 48545450", s(1, 2)),
    "op:startswith": ("fd.name startswith /tmp", s(5)),
    "op:bstartswith": ("evt.buffer bstartswith 474554", s(1)),
    "op:endswith": ("proc.exepath endswith /curl", s(2)),
    "op:regex": ('proc.name regex "[a-z]+"', s(1, 2, 5)),  # anchored: Nginx does not match
    "op:exists": ("proc.pname exists", s(1, 2, 5)),
    "op:in": ("proc.name in (bash, sh)", s(1, 5)),
    "op:intersects": ("proc.aname intersects (sshd)", s(1, 2, 5)),
    "op:pmatch": ("fd.name pmatch (/etc, /var)", s(1)),
    # transformers
    "transformer:tolower": ("tolower(proc.name) = nginx", s(3)),
    "transformer:toupper": ("toupper(proc.name) = BASH", s(1)),
    "transformer:b64": ("b64(proc.args) = hello", s(5)),  # b64 decodes
    "transformer:basename": ("basename(proc.exepath) = nginx", s(3)),
    "transformer:len": ("len(proc.name) = 2", s(5)),
    "transformer:join": ('join(",", (proc.name, proc.pname)) = "curl,bash"', s(2)),
    "transformer:concat": ('concat(proc.name, "@", user.name) = "sh@root"', s(5)),
    "transformer:getopt": ('getopt(("-c", proc.name), "c:") exists', None),
    # modifiers (our extension); anyof is what a bare multi-valued field means
    "modifier:anyof": ("proc.aname anyof = bash", s(2, 5)),
    "modifier:allof": ("proc.aname allof startswith s", None),
    "modifier:oneof": ("proc.aname oneof = sh", None),
    # node types (MacroRef: a macro the loader inlines; engines never see the reference)
    "node:And": ("proc.name = bash and evt.dir = <", s(1)),
    "node:Or": ("proc.name = bash or proc.name = sh", s(1, 5)),
    "node:Not": ("not proc.name = bash", s(2, 3, 4, 5)),  # not(false) on event 4: true
    "node:MacroRef": ("is_shell and evt.failed = true", s(5)),
    "node:UnaryCheck": ("fd.sip exists", s(2)),
    "node:BinaryCheck": ("fd.sip = 8.8.8.8", s(2)),
    "node:Field": ("proc.aname[2] = sshd", s(2)),
    "node:Literal": ('fd.filename = "x y"', s(5)),
    "node:ValueList": ("fd.sport in (22, 53)", s(2)),
    "node:Transformer": ("toupper(proc.exepath) = /BIN/SH", s(5)),
    "node:TransformerList": ('join("/", (proc.name, "x")) = "sh/x"', s(5)),
    "node:Val": ("proc.name = val(proc.pname)", s(5)),
}


def test_every_construct_has_a_case() -> None:
    wanted = ({f"op:{o}" for o in ast.OPERATORS} | {f"transformer:{t}" for t in ast.TRANSFORMERS}
              | {f"modifier:{m}" for m in ast.MODIFIERS}
              | {f"node:{n.__name__}" for n in ast.NODE_TYPES})
    assert set(CASES) == wanted


@pytest.mark.parametrize("construct", sorted(CASES))
def test_case_uses_its_construct(construct: str) -> None:
    tree = parse_condition(CASES[construct][0])
    found: set[str] = set()
    for node in tree.walk():
        found.add(f"node:{type(node).__name__}")
        if isinstance(node, ast.UnaryCheck | ast.BinaryCheck):
            found.add(f"op:{node.op}")
            if node.modifier:
                found.add(f"modifier:{node.modifier}")
        if isinstance(node, ast.Transformer):
            found.add(f"transformer:{node.name}")
    assert construct in found


@functools.cache
def compiled() -> dict[str, CompiledRule]:
    rules = ef.compile_conditions({k: cond for k, (cond, _) in CASES.items()}, MACROS)
    return {r.rule.name: r for r in rules}


def test_macros_are_inlined_before_the_engines() -> None:
    rule = compiled()["node:MacroRef"]
    assert rule.rule.ast is not None
    assert not any(isinstance(n, ast.MacroRef) for n in rule.rule.ast.walk())


@pytest.fixture(scope="module")
def trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("coverage") / "coverage.parquet"
    columns = sorted({k for row in ROWS for k in row})
    table = pa.table({c: [row.get(c) for row in ROWS] for c in columns})
    times = pa.array([1_700_000_000_000_000_000 + r["evt.num"] for r in ROWS], pa.int64())
    table = table.append_column("evt.time", times.cast(pa.timestamp("ns")))
    with TraceWriter(path, TraceMeta(source=SOURCE_LIVE)) as writer:
        writer.write(table)
        writer.close()
    return path


@functools.cache
def selections(engine: str, trace: Path) -> dict[str, ef.Selection]:
    return ef.run_rules(ef.engine(engine), trace, list(compiled().values()))


@pytest.mark.parametrize("engine", ef.ENGINES)
@pytest.mark.parametrize("construct", sorted(CASES))
def test_engine_handles(construct: str, engine: str, trace: Path) -> None:
    got = selections(engine, trace)[construct]
    assert not isinstance(got, str), f"{engine} cannot run {CASES[construct][0]!r}: {got}"
    expected = CASES[construct][1]
    if expected is not None:
        assert got == expected, CASES[construct][0]
    assert got <= EVENTS


@pytest.mark.parametrize("construct", sorted(CASES))
def test_engines_agree(construct: str, trace: Path) -> None:
    replay, sql = (selections(e, trace)[construct] for e in ef.ENGINES)
    assert replay == sql, ef.describe_difference("replay", replay, "sql", sql)
