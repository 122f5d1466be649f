"""`analyze query`: SQL over a trace, through a DuckDB view named `events`.

The view's columns are the trace columns, i.e. Falco field names, so they need double quotes:

    select "proc.name", count(*) from events where "evt.type" = 'openat' group by 1

Ancestor lists are 1-based in SQL: `"proc.aname"[1]` is the process itself, `"proc.aname"[2]` its
parent (Falco's `proc.aname[1]`). `"evt.time"` is a TIMESTAMP_NS in UTC.

Rows come in storage order unless the query says `ORDER BY`: row groups by increasing evt.num,
but inside each one the writer clusters rows by event type (schemas.trace.CLUSTERED_ORDER), so
`select * from events limit 10` is not the first ten events; add `order by "evt.num"` for event
order. The view does not sort for you: every query (counts, the engines' scans) would pay for it.

The SQL comes from the user but the data is sensitive, so DuckDB is locked down once the view
exists: only the trace's own files stay readable (`allowed_paths`), every other file system,
network and extension access is off (`enable_external_access=false`), and the configuration is
frozen (`lock_configuration`) so the query cannot turn any of it back on.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from analyze.trace_reader import Trace, open_trace
from schemas.trace import TraceError

VIEW = "events"
FORMATS = ("table", "csv", "json")


class QueryError(TraceError):
    """The SQL failed (syntax, unknown column, forbidden access); DuckDB's reason is included."""


@dataclass(frozen=True)
class QueryResult:
    """Rows of a query with their column names and DuckDB type names."""

    columns: tuple[str, ...]
    types: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]


MEMORY_LIMIT_MB = 512


def connect(trace: Trace) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the `events` view over `trace`, locked down to its files."""
    files = [str(p.resolve()) for p in trace.paths]
    con = duckdb.connect(":memory:")
    try:
        # Footers read once, when the view is made, serve every query (~20 ms a query on the
        # bench's 10M-event trace).
        con.execute("SET parquet_metadata_cache = true")
        # union_by_name: segments written by an older minor schema version may lack columns.
        con.execute(
            f"CREATE VIEW {VIEW} AS SELECT {trace.select_list} FROM read_parquet("
            f"{_sql_list(files)}, union_by_name = true)"
        )
        con.execute(f"SET allowed_paths = {_sql_list(files)}")
        con.execute("SET autoinstall_known_extensions = false")
        con.execute("SET autoload_known_extensions = false")
        con.execute("SET enable_progress_bar = false")  # our CLI draws its own output
        # Bounded memory whatever the trace or the number of matches: past this DuckDB spills
        # or streams (its default is 80% of RAM, which a noisy rule on a large trace reached).
        con.execute(f"SET memory_limit = '{MEMORY_LIMIT_MB}MB'")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    except duckdb.Error as exc:
        con.close()
        raise QueryError(f"Could not prepare the trace for SQL ({_first(exc)}).") from None
    return con


def run_query(paths: str | Path | Sequence[str | Path], sql: str) -> QueryResult:
    """Run `sql` against the trace at `paths` (file, directory, glob or a list of them)."""
    trace = open_trace(paths)
    con = connect(trace)
    try:
        cursor = con.execute(sql)
        if cursor.description is None:  # a statement without a result (e.g. SET)
            return QueryResult((), (), ())
        columns = tuple(d[0] for d in cursor.description)
        types = tuple(str(d[1]) for d in cursor.description)
        return QueryResult(columns, types, tuple(cursor.fetchall()))
    except duckdb.Error as exc:
        raise QueryError(f"The query failed: {str(exc).strip()}") from None
    finally:
        con.close()


def format_result(result: QueryResult, fmt: str = "table", width: int | None = None) -> str:
    """Render a result as a text table, CSV or JSON (a list of objects keyed by column)."""
    if fmt == "csv":
        return format_csv(result)
    if fmt == "json":
        return format_json(result)
    if fmt == "table":
        return format_table(result, width)
    raise ValueError(f"Unknown output format {fmt!r}; choose one of {', '.join(FORMATS)}.")


def format_csv(result: QueryResult) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(result.columns)
    for row in result.rows:
        writer.writerow(["" if v is None else _text(v) for v in row])
    return out.getvalue()


def format_json(result: QueryResult) -> str:
    objects = [dict(zip(result.columns, map(_jsonable, row), strict=True)) for row in result.rows]
    return json.dumps(objects, indent=2, ensure_ascii=False) + "\n"


def result_table(result: QueryResult) -> Table:
    """A rich Table of the result (values escaped: traced strings may contain markup)."""
    table = Table(*[escape(c) for c in result.columns], show_lines=False)
    for row in result.rows:
        table.add_row(*["" if v is None else escape(_text(v)) for v in row])
    return table


def format_table(result: QueryResult, width: int | None = None) -> str:
    console = Console(file=io.StringIO(), width=width or 200, color_system=None,
                      force_terminal=False)
    console.print(result_table(result))
    rows = len(result.rows)
    console.print(f"{rows} row{'' if rows == 1 else 's'}")
    out = console.file
    assert isinstance(out, io.StringIO)
    return out.getvalue()


def _text(value: Any) -> str:
    """One cell of a text table or CSV."""
    if isinstance(value, bytes):  # I/O buffers: printable ASCII as is, other bytes as \xNN
        return "".join(_BYTE_TEXT[b] for b in value)
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(_jsonable(value), ensure_ascii=False)
    return str(value)


_BYTE_TEXT = [chr(b) if 32 <= b < 127 and b != 92 else f"\\x{b:02x}" for b in range(256)]


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")  # exact bytes, as sysdig -b prints them
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return _text(value)


def _sql_list(items: Sequence[str]) -> str:
    return "[" + ", ".join("'" + s.replace("'", "''") + "'" for s in items) + "]"


def _first(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
