"""DuckDB over a trace for the triage commands (`analyze info`, `timeline`, `explain`).

The triage queries are ours, fixed text; every value in them (file paths, pids, times, event
types, names from the user) is a bound named parameter, never pasted in. The trace is read with
`trace_events($files)` in each query (a table macro over `read_parquet`), so no view needs the
paths spelled out as SQL.

Large traces stay cheap because DuckDB reads only the columns a query names and skips the row
groups whose statistics exclude its filters: `evt.num` is sorted (each file is written in
`evt.num` order), and `evt.time` nearly so, so a filter on either reads a few row groups.
Filters on time are written as `"evt.time" >= make_timestamp_ns($lo)`: a function of the column
(`epoch_ns("evt.time")`) would hide the column from that pruning.

Memory is capped (`MEMORY_LIMIT`) and so are threads: the triage queries are aggregates over few
groups or top-N lists, which stay small whatever the trace size.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import duckdb

from analyze.trace_reader import Trace
from schemas.trace import TraceError

# Measured on the 10M-event bench trace (bench/bench_triage.py): every triage query fits well
# under this; it stops a pathological trace (millions of distinct paths) from taking the machine.
MEMORY_LIMIT = "512MB"
MAX_THREADS = 4
# A table macro over the files, made per connection (TriageDB) with the trace's select list:
# elided values put back (schemas.elision).
EVENTS = "trace_events($files)"
TIME_NS = 'epoch_ns("evt.time")'
_PARAM = re.compile(r"\$([A-Za-z_]\w*)")


class TriageError(TraceError):
    """A triage request that cannot be answered: an unknown event, a bad alert, a failed query."""


def quote(column: str) -> str:
    """A trace column as an SQL identifier (column names are ours, from schemas.trace)."""
    return '"' + column.replace('"', '""') + '"'


def select_list(columns: Sequence[str]) -> str:
    """`"a", "b", epoch_ns("evt.time") AS "evt.time"`: evt.time comes back as int ns."""
    return ", ".join(
        f"{TIME_NS} AS {quote(c)}" if c == "evt.time" else quote(c) for c in columns
    )


class TriageDB:
    """One DuckDB connection over one trace; use as a context manager."""

    def __init__(self, trace: Trace) -> None:
        self.trace = trace
        self.files = [str(p.resolve()) for p in trace.paths]
        self.con = duckdb.connect(":memory:", config={
            "memory_limit": MEMORY_LIMIT,
            "threads": str(max(1, min(MAX_THREADS, os.cpu_count() or 1))),
            "preserve_insertion_order": "false",  # every query that needs an order says so
            "autoinstall_known_extensions": "false",
            "autoload_known_extensions": "false",
        })
        self.con.execute("SET enable_progress_bar = false")  # a session option, not global
        self.con.execute(
            "CREATE TEMP MACRO trace_events(files) AS TABLE "
            f"SELECT {trace.select_list} FROM read_parquet(files, union_by_name = true)"
        )

    def __enter__(self) -> TriageDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.con.close()

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run `sql` (reading the trace through `EVENTS`) with named parameters; rows as dicts."""
        given = {"files": self.files, **(params or {})}
        # DuckDB refuses parameters a statement does not use: bind only those it names.
        bound = {name: given[name] for name in dict.fromkeys(_PARAM.findall(sql))}
        try:
            cursor = self.con.execute(sql, bound)
            names = [d[0] for d in cursor.description or ()]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        except duckdb.Error as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise TriageError(
                f"Could not read the trace {', '.join(self.files)}: {first}"
            ) from None

    def one(self, sql: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        found = self.rows(sql, params)
        return found[0] if found else {}
