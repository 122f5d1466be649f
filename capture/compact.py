"""The compact form of a batch of rows: what the capture spools, expanded into trace rows later.

A flush of a busy capture holds many events of few process views and few distinct shapes
(capture/rows.py). The trace repeats a process's 50 columns (ancestor lists included) on every
one of its rows; building that repetition costs more per event than decoding and enriching it. So
the capture loop spools each flush as one record batch of one row:

- `first_num`: the `evt.num` of its first event (the others follow one by one);
- `events`: per event, `evt.time` and its kind, an index in `kinds`;
- `kinds`: `evt.cpu` and the indexes of a process view and a shape in the two lists below;
- `procs`: the process columns of each process view (`PROC_COLUMNS`) and its start time;
- `shapes`: the event, parameter and fd columns of each shape (`SHAPE_COLUMNS`).

`expand` turns such a batch into trace rows (schemas/trace.py) with `take`, where the Parquet
file is written: in the worker process that converts a finished segment (convert_worker.py),
beside the capture loop; `expand_slices` does it a row group at a time, so that memory stays
bounded. A batch is self-contained, so a spool cut short by a crash still expands batch by batch
(`capture recover`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from schemas.trace import COLUMN_BY_NAME, arrow_schema

ARG_COLUMNS = tuple(c.name for c in COLUMN_BY_NAME.values() if c.name.startswith("evt.arg."))
PROC_COLUMNS = (
    "proc.pid", "proc.ppid", "proc.vpid", "proc.pvpid", "proc.sid", "proc.sname", "proc.vpgid",
    "proc.is_vpgid_leader", "proc.loginshellid", "proc.name", "proc.exe", "proc.exepath",
    "proc.args", "proc.cmdline", "proc.cwd", "proc.tty", "proc.pname", "proc.pcmdline",
    "proc.pexe", "proc.pexepath", "proc.aname", "proc.apid", "proc.aexe", "proc.aexepath",
    "proc.is_exe_from_memfd", "proc.exe_ino.ctime", "proc.exe_ino.mtime",
    "proc.exe_ino.ctime_duration_proc_start", "thread.tid", "thread.vtid", "thread.ismain",
    "user.uid", "user.name", "user.loginuid", "user.loginname", "group.gid", "group.name",
    "proc.env", "container.id", "container.type", "container.name", "container.image",
    "container.image.id", "container.image.repository", "container.image.tag",
    "container.image.digest", "container.privileged", "container.mounts", "k8s.ns.name",
    "k8s.pod.name", "_start_ns",
)
START_NS = PROC_COLUMNS[-1]  # not a trace column: proc.duration is computed from it
FD_COLUMNS = (
    "fd.type", "fd.typechar", "fd.name", "fd.directory", "fd.filename", "fd.nameraw",
    "fd.sockfamily", "fd.l4proto", "fd.is_server", "fd.connected", "fd.cip", "fd.sip",
    "fd.lip", "fd.rip", "fd.cport", "fd.sport", "fd.lport", "fd.rport",
)
SHAPE_COLUMNS = (
    "evt.type", "evt.category", "evt.dir", "evt.rawres", "evt.res", "evt.failed",
    "evt.is_open_read", "evt.is_open_write", "evt.is_open_exec", "fd.num", "fd.name_changed",
    "evt.args", *ARG_COLUMNS, *FD_COLUMNS,
)
KIND_KEY, PROC_KEY, SHAPE_KEY = "_kind", "_proc", "_shape"


def _fields(names: tuple[str, ...]) -> list[pa.Field]:
    trace = arrow_schema()
    return [pa.field(n, trace.field(n).type if n in trace.names else pa.int64()) for n in names]


EVENT_TYPE = pa.struct([*_fields(("evt.time",)), pa.field(KIND_KEY, pa.int32())])
KIND_TYPE = pa.struct([*_fields(("evt.cpu",)), pa.field(PROC_KEY, pa.int32()),
                       pa.field(SHAPE_KEY, pa.int32())])
PROC_TYPE = pa.struct(_fields(PROC_COLUMNS))
SHAPE_TYPE = pa.struct(_fields(SHAPE_COLUMNS))
SCHEMA = pa.schema([pa.field("first_num", pa.int64()),
                    pa.field("events", pa.list_(EVENT_TYPE)),
                    pa.field("kinds", pa.list_(KIND_TYPE)),
                    pa.field("procs", pa.list_(PROC_TYPE)),
                    pa.field("shapes", pa.list_(SHAPE_TYPE))])


def is_compact(schema: pa.Schema) -> bool:
    """Whether batches of `schema` are compact ones (else they are trace rows)."""
    return schema.names == SCHEMA.names


def pack(first_num: int, events: dict[str, pa.Array], kinds: dict[str, pa.Array],
         procs: dict[str, pa.Array], shapes: dict[str, pa.Array]) -> pa.RecordBatch:
    """One compact batch from its tables' columns (by name; a missing one is null)."""
    lists = [_one_list(events, EVENT_TYPE), _one_list(kinds, KIND_TYPE),
             _one_list(procs, PROC_TYPE), _one_list(shapes, SHAPE_TYPE)]
    return pa.RecordBatch.from_arrays([pa.array([first_num], pa.int64()), *lists],
                                      schema=SCHEMA)


def _one_list(columns: dict[str, pa.Array], typ: pa.StructType) -> pa.ListArray:
    n = len(next(iter(columns.values()))) if columns else 0
    fields = [typ.field(i) for i in range(typ.num_fields)]
    arrays = [columns.get(f.name, pa.nulls(n, f.type)) for f in fields]
    rows = pa.StructArray.from_arrays(arrays, fields=fields)
    return pa.ListArray.from_arrays(pa.array([0, n], pa.int32()), rows)


def expand(batch: pa.RecordBatch) -> pa.Table:
    """The trace rows of a compact batch."""
    return Expander(batch).rows(0, None)


def expand_slices(batch: pa.RecordBatch, rows: int) -> Iterator[pa.Table]:
    """The trace rows of a compact batch, `rows` at a time: a flush of a busy capture holds a
    million events, whose trace rows at once took over a gigabyte of memory."""
    expander = Expander(batch)
    for start in range(0, expander.events.num_rows, rows):
        yield expander.rows(start, start + rows)


class Expander:
    """Trace rows from the tables of one compact batch (see the module docstring)."""

    def __init__(self, batch: pa.RecordBatch) -> None:
        self.events, self.kinds, procs, shapes = (_rows(batch.column(i)) for i in range(1, 5))
        self.first = batch.column(0)[0].as_py()
        self.procs, self.shapes = _Spread(procs), _Spread(shapes)

    def rows(self, start: int, stop: int | None) -> pa.Table:
        """The trace rows of events `start` to `stop` (None: the last)."""
        schema = arrow_schema()
        events = self.events.slice(start, None if stop is None else stop - start)
        n = events.num_rows
        ones = pc.fill_null(pa.nulls(n, pa.int64()), 1)
        times = events.column("evt.time")
        arrays: dict[str, Any] = {
            "evt.num": pc.add(pc.cumulative_sum(ones), self.first + start - 1),
            "evt.time": times}
        kinds = self.kinds.take(events.column(KIND_KEY))
        arrays["evt.cpu"] = kinds.column("evt.cpu")
        arrays.update(self.shapes.taken(kinds.column(SHAPE_KEY)))
        arrays.update(self.procs.taken(kinds.column(PROC_KEY)))
        start_ns = arrays.pop(START_NS, None)
        if start_ns is not None:  # else null, as the process's start is unknown
            arrays["proc.duration"] = pc.subtract(times.cast(pa.int64()), start_ns)
            arrays["proc.pid.ts"] = start_ns
        columns = [arrays.get(f.name, pa.nulls(n, f.type)) for f in schema]
        return pa.Table.from_arrays(columns, schema=schema)


def _rows(column: pa.Array) -> pa.RecordBatch:
    return pa.RecordBatch.from_struct_array(column.flatten())


class _Spread:
    """The columns of a small table (process views or shapes), spread over the rows that name
    its rows with `take`.

    A column null in every row of the table stays out: the trace fills it with nulls. A list
    column (the ancestors, up to 16 values a row) is not taken as lists but rebuilt: the
    elements of every row's list are picked from the column's values by one `take`, with
    positions and offsets built once for the ancestor columns (one value per ancestor each).
    Measured on a spool of a close() loop, 7 ancestors a row: the four columns took 0.69
    us/event as lists, 0.29 so (of 2.2 for the whole conversion)."""

    def __init__(self, table: pa.RecordBatch) -> None:
        self.plain = table.select([f.name for f in table.schema if not _as_lists(table, f)
                                   and table.column(f.name).null_count < table.num_rows])
        self.lists = {f.name: table.column(f.name) for f in table.schema
                      if _as_lists(table, f)}

    def taken(self, keys: pa.Array) -> dict[str, pa.Array]:
        taken = self.plain.take(keys)
        out = {name: taken.column(name) for name in taken.schema.names}
        built: list[tuple[pa.Array, pa.ListArray]] = []  # the lists' offsets -> positions
        for name, lists in self.lists.items():
            offsets = lists.offsets
            rows = next((r for o, r in built if o.equals(offsets)), None)
            if rows is None:
                # Per row, the positions of its list's elements among the values.
                positions = pa.ListArray.from_arrays(offsets, _counting(len(lists.values)))
                rows = positions.take(keys)
                built.append((offsets, rows))
            out[name] = pa.ListArray.from_arrays(rows.offsets, lists.values.take(rows.values),
                                                 type=lists.type)
        return out


def _as_lists(table: pa.RecordBatch, fld: pa.Field) -> bool:
    """Whether a column is rebuilt as lists (without null lists: `from_arrays` over offsets
    cannot say which are null)."""
    return pa.types.is_list(fld.type) and table.column(fld.name).null_count == 0


def _counting(n: int) -> pa.Array:
    """0, 1, ..., n - 1 (int32: list offsets)."""
    ones = pc.fill_null(pa.nulls(n, pa.int32()), 1)
    return pc.subtract(pc.cumulative_sum(ones), 1)
