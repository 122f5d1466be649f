"""`analyze query`: the DuckDB `events` view, its lock-down, and the output formats."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from analyze.query import QueryError, QueryResult, connect, format_result, run_query
from analyze.trace_reader import TraceFormatError, open_trace
from capture.trace_writer import TraceWriter
from schemas.trace import COLUMNS, TraceMeta, arrow_schema


def write(path: Path, rows: list[dict[str, object]]) -> Path:
    schema = arrow_schema()
    columns = {name: [r.get(name) for r in rows] for name in {k for r in rows for k in r}}
    table = pa.table({k: pa.array(v, schema.field(k).type) for k, v in columns.items()})
    with TraceWriter(path, TraceMeta(source="live", hostname="h")) as writer:
        writer.write(table)
        writer.close(drops={})
    return path


def event(num: int, etype: str, name: str, **more: object) -> dict[str, object]:
    return {"evt.num": num, "evt.time": 1_700_000_000_000_000_000 + num, "evt.type": etype,
            "evt.dir": "<", "proc.name": name, **more}


@pytest.fixture
def trace(tmp_path: Path) -> Path:
    return write(tmp_path / "t.parquet", [
        event(1, "openat", "cat", **{"fd.name": "/etc/passwd", "proc.aname": ["cat", "bash"]}),
        event(2, "openat", "cat", **{"fd.name": "/etc/shadow", "proc.aname": ["cat", "bash"]}),
        event(3, "execve", "sh", **{"proc.cmdline": "sh -c 'echo [bold]x[/bold]'",
                                    "evt.buffer": b"\x00hi"}),
    ])


def test_view_columns_are_falco_field_names(trace: Path) -> None:
    result = run_query(trace, "describe events")
    assert [row[0] for row in result.rows] == [c.name for c in COLUMNS]  # no sysreplay.elided
    types = dict((row[0], row[1]) for row in result.rows)
    assert types["evt.time"] == "TIMESTAMP_NS" and types["proc.aname"] == "VARCHAR[]"
    assert types["user.uid"] == "UINTEGER" and types["fd.sport"] == "USMALLINT"


def test_query_by_falco_names(trace: Path) -> None:
    result = run_query(trace, """select "proc.name", count(*) as n from events
                                 where "evt.type" = 'openat' group by 1""")
    assert result == QueryResult(("proc.name", "n"), ("VARCHAR", "BIGINT"), (("cat", 2),))
    # lists are 1-based in SQL: [2] is the parent, Falco's proc.aname[1]
    parents = run_query(trace, 'select distinct "proc.aname"[2] from events where "evt.num" < 3')
    assert parents.rows == (("bash",),)


def test_segments(tmp_path: Path) -> None:
    seg = tmp_path / "segs"
    seg.mkdir()
    write(seg / "a.parquet", [event(1, "openat", "cat")])
    write(seg / "b.parquet", [event(2, "openat", "cat"), event(3, "read", "cat")])
    assert run_query(seg, "select count(*) from events").rows == ((3,),)
    assert run_query(str(seg / "*.parquet"), "select max(\"evt.num\") from events").rows == ((3,),)


@pytest.mark.parametrize(
    "sql",
    [
        "select * from read_csv('/etc/passwd')",
        "select * from read_text('/etc/hostname')",
        "copy (select 1) to '/tmp/sysreplay-query-escape.csv'",
        "attach '/tmp/sysreplay-query-escape.db'",
        "install httpfs",
        "set enable_external_access = true",
        "set allowed_paths = ['/etc/passwd']",
    ],
)
def test_locked_down(trace: Path, sql: str) -> None:
    with pytest.raises(QueryError, match="The query failed"):
        run_query(trace, sql)
    assert not Path("/tmp/sysreplay-query-escape.csv").exists()


def test_only_the_trace_files_are_reachable(trace: Path, tmp_path: Path) -> None:
    other = write(tmp_path / "other.parquet", [event(9, "openat", "x")])
    con = connect(open_trace(trace))
    try:
        assert con.execute("select count(*) from events").fetchall() == [(3,)]
        assert con.execute(f"select count(*) from '{trace}'").fetchall() == [(3,)]
        with pytest.raises(duckdb.Error, match="disabled by configuration"):
            con.execute(f"select count(*) from '{other}'")
    finally:
        con.close()


def test_errors(trace: Path, tmp_path: Path) -> None:
    with pytest.raises(QueryError, match="syntax error"):
        run_query(trace, "selec 1")
    with pytest.raises(QueryError, match=r"proc\.nam"):
        run_query(trace, 'select "proc.nam" from events')
    with pytest.raises(TraceFormatError, match="does not exist"):
        run_query(tmp_path / "missing.parquet", "select 1")
    foreign = tmp_path / "foreign.parquet"
    pa.parquet.write_table(pa.table({"a": [1]}), foreign)
    with pytest.raises(TraceFormatError, match="not a sysreplay trace"):
        run_query(foreign, "select 1")


SQL = """select "evt.num", "proc.name", "fd.name", "evt.buffer", "proc.aname", "evt.time"
         from events order by 1"""


def test_format_csv(trace: Path) -> None:
    text = format_result(run_query(trace, SQL), "csv")
    assert text.splitlines() == [
        "evt.num,proc.name,fd.name,evt.buffer,proc.aname,evt.time",
        '1,cat,/etc/passwd,,"[""cat"", ""bash""]",2023-11-14T22:13:20',
        '2,cat,/etc/shadow,,"[""cat"", ""bash""]",2023-11-14T22:13:20',
        "3,sh,,\\x00hi,,2023-11-14T22:13:20",
    ]


def test_format_json(trace: Path) -> None:
    rows = json.loads(format_result(run_query(trace, SQL), "json"))
    assert rows[0] == {"evt.num": 1, "proc.name": "cat", "fd.name": "/etc/passwd",
                       "evt.buffer": None, "proc.aname": ["cat", "bash"],
                       "evt.time": "2023-11-14T22:13:20"}
    assert rows[2]["evt.buffer"] == "AGhp"  # base64 of b"\x00hi"


def test_format_table_escapes_markup(trace: Path) -> None:
    result = run_query(trace, 'select "evt.num", "proc.cmdline" from events where "evt.num" = 3')
    text = format_result(result, "table", width=60)
    assert "sh -c 'echo [bold]x[/bold]'" in text
    assert text.rstrip().endswith("1 row")
    with pytest.raises(ValueError, match="Unknown output format"):
        format_result(result, "xml")
