"""Elided values (schemas.elision): stored once, put back identically by every reader.

Each reader is checked against the rows as they were given to the writer: `expand` (Arrow),
the replay engine's column loader, and the DuckDB view of `analyze query` (the same select list
serves the SQL engine and triage). Paths are chosen to break naive derivations: no '/', a
trailing '/', top-level entries, newlines, the template marks themselves, non-ASCII.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyze.engine_api import RunOptions
from analyze.query import run_query
from analyze.replay import _frames
from capture.trace_writer import TraceWriter
from schemas.elision import (
    BASE_MARK,
    ELIDED,
    ELIDED_COLUMNS,
    ELISIONS,
    PATH_MARK,
    Rows,
    elide,
    expand,
    sql_select,
)
from schemas.trace import COLUMNS, SCHEMA_VERSION, TraceMeta, arrow_schema

PATHS = [
    "/etc/passwd", "/usr/include/c++/12/bits/slice_array.h", "/x", "/", "relative",
    "/a/b/", "/a/b\nc/d", "/a\nb", "/tmp/\x01odd", "/tmp/\x02odd", "/é/ü.txt", "/a//b", "",
]


def _row(num: int, path: str | None, **fields: Any) -> dict[str, Any]:
    return {"evt.num": num, "evt.time": 1_700_000_000_000_000_000 + num, "evt.type": "openat",
            "evt.dir": "<", "fd.name": path, "fd.typechar": "f", **fields}


def _rows() -> list[dict[str, Any]]:
    rows, num = [], 0
    for path in PATHS:
        base = path.rsplit("/", 1)[-1]
        head = path.rsplit("/", 1)[0] or "/" if "/" in path else None
        num += 1  # every column its derivation: all elided
        rows.append(_row(num, path, **{
            "evt.arg.fd": f"<f>{path}", "fd.filename": base, "fd.directory": head,
            "evt.arg.name": path, "fd.nameraw": base,
            "evt.args": f"fd=3(<f>{path}) dirfd=-100(AT_FDCWD) name={base}({path}) flags=1 "}))
        num += 1  # none equal: nothing elided
        rows.append(_row(num, path, **{
            "evt.arg.fd": f"<4t>{path}", "fd.filename": base + "x", "fd.directory": "other",
            "evt.arg.name": path + "y", "fd.nameraw": "raw",
            "evt.args": f"fd=3 res={BASE_MARK}{path}"}))
        num += 1  # absolute nameraw, close-style args
        rows.append(_row(num, path, **{"fd.nameraw": path, "evt.args": f"res=0 fd=3(<f>{path}) ",
                                       "evt.type": "close"}))
    rows.append(_row(num + 1, None, **{"evt.args": "fd=-1(EBADF) ", "evt.type": "close"}))
    rows.append(_row(num + 2, "/p", **{"evt.args": f"name={PATH_MARK}/p "}))
    for n in range(num + 3, num + 7):  # a process's duration is evt.time - its start ...
        rows.append(_row(n, None, **{"proc.pid.ts": 1_699_999_999_000_000_000,
                                     "proc.duration": 1_000_000_000 + n}))
    rows.append(_row(num + 7, None, **{"proc.pid.ts": 5, "proc.duration": 7}))  # ... or not
    rows.append(_row(num + 8, None, **{"proc.duration": 9}))  # start unknown
    return rows


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    """Every column of the schema (absent ones null), as the writer gets them."""
    schema = arrow_schema()
    return pa.table({f.name: pa.array([r.get(f.name) for r in rows], f.type) for f in schema})


@pytest.fixture(scope="module")
def trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("elision") / "t.parquet"
    with TraceWriter(path, TraceMeta(source="live", hostname="h")) as writer:
        writer.write(_table(_rows()))
        writer.close(drops={})
    return path


def _given(column: str) -> list[Any]:
    return [r.get(column) for r in _rows()]


def _by_num(table: pa.Table) -> pa.Table:
    return table.sort_by("evt.num")


def test_the_writer_elides_what_derives_and_keeps_the_rest(trace: Path) -> None:
    stored = _by_num(pq.read_table(trace))
    bits = stored.column(ELIDED).to_pylist()
    # every path form but nameraw = the path itself (the row's start is unknown)
    assert bits[0] == sum(e.bit for e in ELISIONS if e.bit not in (16, 128))
    assert bits[1] is None
    assert bits[2] is not None and bits[2] & 16  # nameraw = the path itself
    for column in ELIDED_COLUMNS:
        if column != "evt.args":  # a template
            assert stored.column(column)[0].as_py() is None, column
    assert stored.column("evt.args")[0].as_py().count(PATH_MARK) == 2
    durations = stored.column("proc.duration").to_pylist()
    assert durations[-6:] == [None, None, None, None, 7, 9]
    assert [b & 128 for b in bits[-6:-2]] == [128] * 4
    assert pq.ParquetFile(trace).metadata.metadata[b"sysreplay.elided"].startswith(b"Where bit")
    assert SCHEMA_VERSION.startswith("2.")


@pytest.mark.parametrize("column", ELIDED_COLUMNS)
def test_expand_gives_back_every_value(trace: Path, column: str) -> None:
    back = _by_num(expand(pq.read_table(trace)))
    assert ELIDED not in back.column_names
    assert back.column(column).to_pylist() == _given(column)


@pytest.mark.parametrize("column", ELIDED_COLUMNS)
def test_the_replay_loader_gives_back_every_value(trace: Path, column: str) -> None:
    frames = list(_frames(trace, RunOptions(), frozenset({column})))
    assert len(frames) == 1
    got = frames[0].column(column)
    nums = frames[0].column("evt.num")
    order = pc.sort_indices(nums)
    if pa.types.is_dictionary(got.type):
        got = got.cast(pa.string())
    assert got.take(order).to_pylist() == _given(column)


@pytest.mark.parametrize("column", ELIDED_COLUMNS)
def test_the_sql_view_gives_back_every_value(trace: Path, column: str) -> None:
    result = run_query(trace, f'select "{column}" from events order by "evt.num"')
    assert [row[0] for row in result.rows] == _given(column)


def test_the_sql_view_hides_the_bitmask(trace: Path) -> None:
    result = run_query(trace, "describe events")
    assert [row[0] for row in result.rows] == [c.name for c in COLUMNS]


def test_sql_and_arrow_derivations_agree_on_awkward_paths() -> None:
    names = pa.array([*PATHS, None], pa.string())
    table = pa.table({"fd.name": names, "fd.typechar": pa.array(["f"] * len(names)),
                      "evt.time": pa.array(range(len(names)), pa.timestamp("ns")),
                      "proc.pid.ts": pa.array([-3] * (len(names) - 1) + [None], pa.int64()),
                      "evt.args": pa.array([f"{PATH_MARK}|{BASE_MARK}"] * len(names)),
                      ELIDED: pa.array([0xFFFF] * len(names), pa.uint16())})
    con = duckdb.connect()
    con.register("t", table)
    for elision in ELISIONS:
        sql = [r[0] for r in con.execute(f"select {elision.sql} from t").fetchall()]
        rows = Rows({c: table.column(c).combine_chunks()
                     for c in ("fd.name", "fd.typechar", "evt.time", "proc.pid.ts")})
        arrow = elision.derive(rows, table.column("evt.args").combine_chunks()).to_pylist()
        assert sql == arrow, elision


def test_a_table_without_the_bitmask_is_read_as_is() -> None:
    table = pa.table({"fd.name": ["/a"], "fd.filename": [None]})
    assert expand(table) is table
    assert elide(table) is table
    assert sql_select(frozenset(table.column_names)) == "*"


def test_rewriting_a_trace_keeps_what_was_elided(trace: Path, tmp_path: Path) -> None:
    again = tmp_path / "again.parquet"
    with TraceWriter(again, TraceMeta(source="live", hostname="h")) as writer:
        writer.write(pq.read_table(trace))
        writer.close(drops={})
    assert _by_num(pq.read_table(again)).equals(_by_num(pq.read_table(trace)))
    for column in ELIDED_COLUMNS:
        assert _by_num(expand(pq.read_table(again))).column(column).to_pylist() == \
            _given(column)


_TEXT = st.text(alphabet=st.sampled_from(["a", "b", "/", "\x01", "\x02", "(", " ", "é"]),
                max_size=12)


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(st.tuples(_TEXT, _TEXT, _TEXT), min_size=1, max_size=8))
def test_every_elided_value_round_trips_on_random_text(rows: list[tuple[str, str, str]]) -> None:
    """Whatever the path, its neighbours and the rendered args hold, the writer's elision is
    undone exactly by the Arrow reader and by DuckDB's."""
    paths = [p or None for p, _, _ in rows]
    table = _table([_row(i + 1, path, **{"evt.args": f"{a}{path or ''}{b}", "fd.filename": b,
                                         "fd.directory": a, "fd.nameraw": path,
                                         "evt.arg.name": b or path,
                                         "evt.arg.fd": f"<f>{path or ''}"})
                    for i, (path, (_, a, b)) in enumerate(zip(paths, rows, strict=True))])
    stored = elide(table)
    if any(paths):  # its path is in every row's evt.args
        assert stored.column(ELIDED).null_count < stored.num_rows
    back = expand(stored)
    con = duckdb.connect()
    con.register("t", stored)
    select = sql_select(frozenset(stored.column_names))
    sql = con.sql(f"select {select} from t").to_arrow_table()
    for column in ELIDED_COLUMNS:
        want = table.column(column).cast(pa.string()).to_pylist()
        assert back.column(column).cast(pa.string()).to_pylist() == want, column
        assert sql.column(column).cast(pa.string()).to_pylist() == want, column
