"""The SQL engine end to end: semantics on a hand-made trace, event-type indexing, rule_matching,
the time window, the two-pass plan, the lock-down, `sql_for_rules`, and real captures."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

import duckdb
import engines_fixture as ef
import pytest
from event_traces import write_events

from analyze import semantics, sql_engine
from analyze.engine_api import CompiledRule, RunOptions, selected_rules
from analyze.resolve import load_rules
from analyze.sql_engine import SqlEngine, SqlEngineError, build_query, sql_for_rules
from analyze.trace_reader import open_trace

T0 = 1_700_000_000_000_000_000
HOSTILE = "x'); COPY (SELECT 1) TO '/tmp/sysreplay-sql-engine-pwn' --"
PWN = Path("/tmp/sysreplay-sql-engine-pwn")

# evt.num -> the event's fields (evt.time is T0 + evt.num)
EVENTS: dict[int, dict[str, object]] = {
    1: {"evt.type": "openat", "evt.dir": "<", "proc.name": "cat", "proc.pname": "bash",
        "proc.aname": ["cat", "bash", "sshd", "systemd"], "proc.apid": [100, 50, 10, 1],
        "proc.aexe": ["/bin/cat", "/bin/bash"], "proc.exepath": "/usr/bin/cat",
        "fd.name": "/etc/passwd", "fd.typechar": "f", "proc.env": "HOME=/root PATH=/bin",
        "container.id": "host", "user.uid": 0, "user.name": "root",
        "proc.cmdline": "cat /etc/passwd", "evt.is_open_read": True, "evt.failed": False},
    2: {"evt.type": "execve", "evt.dir": "<", "proc.name": "bash", "proc.pname": "sshd",
        "proc.aname": ["bash", "sshd", "systemd"], "proc.apid": [200, 100, 1],
        "container.id": "abc123", "proc.args": "-c ls", "user.uid": 1000,
        "container.mounts": "/src:/dst:rw:true:rprivate,/var/lib:/data::false:private",
        "evt.buffer": b"\x12\x34"},
    3: {"evt.type": "connect", "evt.dir": "<", "proc.name": "curl", "proc.aname": ["curl"],
        "fd.cip": "10.0.0.5", "fd.sip": "8.8.8.8", "fd.cport": 40000, "fd.sport": 53,
        "evt.buffer": b"GET / HTTP/1.1", "container.id": "host"},
    4: {"evt.type": "accept", "evt.dir": "<", "proc.name": "nginx", "proc.pname": "nginx",
        "proc.aname": ["nginx", "nginx"], "proc.aexe": ["/usr/sbin/nginx", None, "/sbin/init"],
        "fd.sip": "::1", "fd.sport": 80},
    5: {"evt.type": "sigreturn", "evt.dir": ">", "proc.name": "cat", "proc.cmdline": HOSTILE},
    6: {"evt.type": "switch", "evt.dir": ">"},
}
ALL_EVENTS = set(EVENTS)

# name -> (condition, the events it selects)
CASES: dict[str, tuple[str, set[int]]] = {
    # missing means false; `not` makes it true
    "eq": ("proc.name = cat", {1, 5}),
    "ne-skips-missing": ("proc.name != cat", {2, 3, 4}),
    "not-eq-takes-missing": ("not proc.name = cat", {2, 3, 4, 6}),
    "exists": ("proc.name exists", {1, 2, 3, 4, 5}),
    "not-exists": ("not proc.name exists", {6}),
    "double-not": ("not not proc.name = cat", {1, 5}),
    # a missing value is false inside and/or, and `not` of it is true
    "not-or-missing": ("not (proc.name = cat or fd.name = /etc/passwd)", {2, 3, 4, 6}),
    "not-and-missing": ("not (proc.name = cat and fd.typechar = f)", {2, 3, 4, 5, 6}),
    "not-ne-missing": ("not fd.snet != 8.0.0.0/8", {1, 2, 3, 5, 6}),
    "lt": ("user.uid < 1000", {1}),
    "ge": ("user.uid >= 0", {1, 2}),
    "bool": ("evt.failed = false", {1}),
    "in-few": ("proc.name in (cat, curl)", {1, 3, 5}),
    "in-many": ("proc.name in (cat, curl, a, b, c, d)", {1, 3, 5}),
    "intersects": ("proc.name intersects (nginx)", {4}),
    # string operators
    "contains": ("fd.name contains passwd", {1}),
    "icontains": ("proc.cmdline icontains PASSWD", {1}),
    "startswith": ("fd.name startswith /etc/", {1}),
    "endswith": ("fd.name endswith wd", {1}),
    "glob": ('fd.name glob "/etc/p*"', {1}),
    "glob-crosses-slash": ('fd.name glob "*passwd"', {1}),
    "iglob": ('proc.name iglob "C?T"', {1, 5}),
    "regex-anchored": ('proc.name regex "c.t"', {1, 5}),
    "regex-not-partial": ('proc.name regex "a"', set()),
    "pmatch": ("fd.name pmatch (/etc, /usr)", {1}),
    "pmatch-whole-component": ("fd.name pmatch (/et)", set()),
    "hostile-value-is-a-string": (f'proc.cmdline = "{HOSTILE}"', {5}),
    # byte buffers
    "bcontains": ("evt.buffer bcontains 48545450", {3}),
    "bcontains-aligned": ("evt.buffer bcontains 23", set()),
    "bcontains-byte": ("evt.buffer bcontains 34", {2}),
    "bstartswith": ("evt.buffer bstartswith 474554", {3}),
    "buffer-contains-text": ('evt.buffer contains "/ H"', {3}),
    # ancestors: bare = any from the parent up; [N]: element N (0 = the process)
    "aname-bare": ("proc.aname = sshd", {1, 2}),
    "aname-bare-skips-self": ("proc.aname = curl", set()),
    "aname-index-0": ("proc.aname[0] = cat", {1}),
    "aname-index-2": ("proc.aname[2] = sshd", {1}),
    "aname-ne-any": ("proc.aname != sshd", {1, 2, 4}),
    "aname-not": ("not proc.aname = sshd", {3, 4, 5, 6}),
    "aname-exists": ("proc.aname exists", {1, 2, 4}),
    "apid": ("proc.apid = 1", {1, 2}),
    "allof": ("proc.aname allof startswith s", {2}),
    "oneof": ("proc.aname oneof in (bash, nginx)", {1, 4}),
    "anyof": ("proc.aname anyof = nginx", {4}),
    "aexe-allof-exists": ("proc.aexe allof exists", {1}),
    "aexe-anyof-exists": ("proc.aexe anyof exists", {1, 4}),
    # filter-only fd fields: client or server side; `!=` when every existing side differs
    "fd-ip": ("fd.ip = 8.8.8.8", {3}),
    "fd-ip-ne": ("fd.ip != 8.8.8.8", {4}),
    "fd-net": ("fd.net = 10.0.0.0/8", {3}),
    "fd-port": ("fd.port = 53", {3}),
    "fd-port-ne": ("fd.port != 80", {3}),
    "fd-sip-v6-long": ('fd.sip = "0:0:0:0:0:0:0:1"', {4}),
    "fd-snet-ne-other-family": ("fd.snet != 8.0.0.0/8", {4}),
    "fd-snet-v6": ('fd.snet in ("::1/128", 10.0.0.0/8)', {4}),
    # transformers, right-hand fields, keyed and derived fields
    "toupper": ("toupper(proc.name) = CAT", {1, 5}),
    "basename": ("basename(proc.exepath) = cat", {1}),
    "len": ("len(proc.name) = 4", {2, 3}),
    "concat": ('concat(proc.name, "@", user.name) = "cat@root"', {1}),
    "join": ('join(":", (proc.name, proc.pname)) = "cat:bash"', {1}),
    "getopt": ('getopt(("-w", proc.name), "w") intersects (w)', ALL_EVENTS),
    "val": ("proc.name = val(proc.pname)", {4}),
    "transformer-right": ("proc.pname = tolower(proc.name)", {4}),
    "env": ("proc.env[HOME] = /root", {1}),
    "env-unset-is-empty": ('proc.env[NOPE] = ""', {1}),
    "mount-dest": ("container.mount.dest[/src] = /dst", {2}),
    "mount-source": ("container.mount.source[/data] = /var/lib", {2}),
    "mount-none": ("container.mount[5] = none", {2}),
    "evt-type-is": ("evt.type.is.openat = 1", {1}),
    "rawtime": (f"evt.rawtime > {T0 + 4}", {5, 6}),
    "rawtime-ns": ("evt.rawtime.ns = 3", {3}),
    "evt-time-text": ('evt.time = "22:13:20.000000002"', {2}),
    "not-in-trace": ("proc.acmdline = x", set()),
    # Falco's evt.type index: rules see only the types they can match
    "all-types": ("proc.name = cat or evt.num = 6", {1, 5, 6}),
    "restricted-types-skip-unknown": ("evt.type != openat and proc.name = cat", set()),
    "no-type-never-fires": ("evt.type = open and evt.type = close", set()),
    # evt.type checks inside the condition, seen behind the rule's evt.type guard
    "type-check-partly-decided": ("evt.type in (openat, execve) and "
                                  "(evt.type = openat or proc.name = bash)", {1, 2}),
    "type-check-decided-under-not": ("evt.type = openat and not evt.type in (execve)", {1}),
}


def write_trace(path: Path, events: Mapping[int, Mapping[str, object]]) -> Path:
    return write_events(path, events, T0)


@pytest.fixture(scope="module")
def trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_trace(tmp_path_factory.mktemp("sql") / "t.parquet", EVENTS)


@pytest.fixture(scope="module")
def rules() -> list[CompiledRule]:
    return ef.compile_conditions({name: cond for name, (cond, _) in CASES.items()})


@pytest.fixture(scope="module")
def selected(trace: Path, rules: list[CompiledRule]) -> dict[str, set[int]]:
    found: dict[str, set[int]] = {r.rule.name: set() for r in rules}
    for match in SqlEngine().run([trace], rules, ef.ALL):
        found[match.rule_name].add(match.evt_num)
    return found


@pytest.mark.parametrize("name", CASES)
def test_semantics(name: str, selected: dict[str, set[int]]) -> None:
    assert selected[name] == CASES[name][1], CASES[name][0]


def test_b64_follows_semantics(trace: Path) -> None:
    rules = ef.compile_conditions({"b64": "b64(proc.name) exists"})
    got = {m.evt_num for m in SqlEngine().run([trace], rules, ef.ALL)}
    names = {n: e.get("proc.name") for n, e in EVENTS.items()}
    assert got == {n for n, name in names.items()
                   if isinstance(name, str) and semantics.b64_decode(name) is not None}


def test_the_second_pass_scans_when_candidates_are_many(
        trace: Path, rules: list[CompiledRule], selected: dict[str, set[int]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sql_engine, "CANDIDATE_LOOKUP_MAX", 0)
    found: dict[str, set[int]] = {r.rule.name: set() for r in rules}
    for match in SqlEngine().run([trace], rules, ef.ALL):
        found[match.rule_name].add(match.evt_num)
    assert found == selected


def test_build_query_looks_up_events(trace: Path) -> None:
    rules = ef.compile_conditions({"any": "evt.num > 0", "ancestor": "proc.aname = sshd"})
    con = sql_engine._connect(open_trace(trace))
    try:
        for events, want in (([1, 3, 4], [1, 3, 4]), ([], []), (None, [1, 2, 3, 4, 5, 6])):
            query = build_query(rules, ef.ALL, events=events)
            matches, candidates = sql_engine._matches(con, query)
            assert sorted(set(matches.evt_nums.to_pylist())) == want
            assert candidates.to_pylist() == []
        relaxed = build_query(rules, ef.ALL, relax=sql_engine.DEFERRED)
        assert [r.rule.name for i, r in enumerate(relaxed.rules) if i in relaxed.relaxed] == \
            ["ancestor"]
        matches, candidates = sql_engine._matches(con, relaxed)
        names = {r.index: r.rule.name for r in rules}
        assert {names[i] for i in matches.rule_indexes.to_pylist()} == {"any"}
        assert candidates.to_pylist() == [1, 2, 3, 4, 5, 6]
    finally:
        con.close()


def test_rule_matching(trace: Path) -> None:
    rules = ef.compile_conditions({"a": "proc.name = cat", "b": "evt.type = openat",
                                   "c": "proc.aname = bash"})
    every = SqlEngine().run([trace], rules, ef.ALL)
    assert [(m.evt_num, m.rule_name) for m in every] == [(1, "a"), (1, "b"), (1, "c"), (5, "a")]
    first = SqlEngine().run([trace], rules, RunOptions(rule_matching="first"))
    assert [(m.evt_num, m.rule_name) for m in first] == [(1, "a"), (5, "a")]
    assert [m.rule_index for m in first] == [rules[0].index] * 2


def test_time_window(trace: Path) -> None:
    rules = ef.compile_conditions({"any": "evt.num > 0"})
    window = RunOptions(rule_matching="all", since_ns=T0 + 2, until_ns=T0 + 4)
    assert [m.evt_num for m in SqlEngine().run([trace], rules, window)] == [2, 3, 4]
    assert SqlEngine().run([trace], rules, RunOptions(since_ns=T0 + 7)) == []


def test_no_rules_no_work(tmp_path: Path) -> None:
    assert SqlEngine().run([tmp_path / "absent.parquet"], [], ef.ALL) == []


def test_invalid_regex_names_the_rule(trace: Path) -> None:
    rules = ef.compile_conditions({"fine": "proc.name = cat", "broken": 'proc.name regex "("'})
    with pytest.raises(SqlEngineError, match=r"cannot run rule 'broken'.*missing"):
        SqlEngine().run([trace], rules, ef.ALL)


# ---- security ----------------------------------------------------------------------------------


@pytest.mark.parametrize("statement", [
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_text('/etc/hostname')",
    f"COPY (SELECT 1) TO '{PWN}'",
    f"ATTACH '{PWN}.db'",
    "INSTALL httpfs",
    "SET enable_external_access = true",
    "SET allowed_paths = ['/etc/passwd']",
])
def test_the_engine_connection_reaches_only_the_trace(trace: Path, tmp_path: Path,
                                                       statement: str) -> None:
    other = write_trace(tmp_path / "other.parquet", {1: {"evt.type": "open", "evt.dir": "<"}})
    con = sql_engine._connect(open_trace(trace))
    try:
        assert con.execute("SELECT count(*) FROM events").fetchone() == (len(EVENTS),)
        with pytest.raises(duckdb.Error):
            con.execute(statement)
        with pytest.raises(duckdb.Error, match="disabled by configuration"):
            con.execute(f"SELECT count(*) FROM '{other}'")
    finally:
        con.close()
    assert not PWN.exists() and not Path(f"{PWN}.db").exists()


def test_rule_values_cannot_reach_files(trace: Path) -> None:
    """Injection attempts are compared as plain strings and write nothing."""
    conditions = {
        "quote": f'proc.name = "{HOSTILE}"',
        "list": f'proc.name in ("{HOSTILE}", "\'; ATTACH \'/tmp/x.db\'; --")',
        "glob": f'proc.cmdline glob "{HOSTILE}"',
        "key": f'proc.env["{HOSTILE}"] exists',
        "regex": "proc.name regex \"'||(SELECT content FROM read_text('/etc/passwd'))||'\"",
    }
    rules = ef.compile_conditions(conditions)
    found = {(m.rule_name, m.evt_num) for m in SqlEngine().run([trace], rules, ef.ALL)}
    assert found == {("glob", 5), ("key", 1)}  # the glob matches the hostile text itself
    assert not PWN.exists() and not Path("/tmp/x.db").exists()


# ---- the SQL shown to people -------------------------------------------------------------------


def test_sql_for_rules_runs_and_agrees(trace: Path, rules: list[CompiledRule],
                                       selected: dict[str, set[int]]) -> None:
    """The displayed SQL (values inlined by the escaping function) computes the same matches."""
    text = sql_for_rules(rules)
    assert "$1" not in text and "CREATE OR REPLACE TEMP MACRO sysreplay_ip_key" in text
    assert "-- r0: " in text
    con = duckdb.connect()
    try:
        con.execute(f"CREATE VIEW events AS SELECT * FROM read_parquet('{trace}')")
        *statements, query = [s for s in text.split(";\n") if s.strip()]
        for statement in statements:
            con.execute(statement)
        found: dict[str, set[int]] = {r.rule.name: set() for r in rules}
        runnable = build_query(rules, ef.ALL).rules
        for evt_num, position in con.execute(query).fetchall():  # one row per match
            found[runnable[position].rule.name].add(evt_num)
    finally:
        con.close()
    assert found == selected


def test_rule_names_stay_in_comments(trace: Path) -> None:
    rules = ef.compile_conditions({"x\nDROP TABLE events; --": "proc.name = cat"})
    text = sql_for_rules(rules)
    assert '-- r0: "x\\nDROP TABLE events; --"' in text
    assert len(SqlEngine().run([trace], rules, ef.ALL)) == 2


# ---- real captures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def captures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    names = ("falco__cat_write.scap", "falco__psp_run_as_user_0_container.scap")
    return ef.imported_traces(ef.trace_cache_dir(tmp_path_factory), names)


def test_falco_cat_write_regression(captures: dict[str, Path]) -> None:
    """Falco's own regression test expects 8 alerts (4 opens, enter and exit)."""
    rules = ef.compile_conditions({"cat": "evt.type=open and proc.name=cat"})
    matches = SqlEngine().run([captures["falco__cat_write.scap"]], rules, RunOptions())
    assert len(matches) == 8


@pytest.mark.parametrize("rule_file", [
    ef.SHARED / "falco-rules" / "rules" / "falco_rules.yaml",
    ef.REPO / "rules" / "sysreplay_rules.yaml",
])
def test_rule_files_run_on_captures(rule_file: Path, captures: dict[str, Path]) -> None:
    if not rule_file.exists():
        pytest.skip(f"{rule_file} not present")
    ruleset = load_rules([rule_file])
    ruleset = dataclasses.replace(
        ruleset, rules=tuple(dataclasses.replace(r, enabled=True) for r in ruleset.rules))
    rules, _ = selected_rules(ruleset, ef.ALL)
    assert rules
    for path in captures.values():
        matches = SqlEngine().run([path], rules, ef.ALL)
        assert matches == sorted(matches)
        assert {m.rule_index for m in matches} <= {r.index for r in rules}
