"""Expanding compact batches into trace rows (capture/compact.py): the lists rebuilt from their
values, the columns left null, and the batch cut into row-group slices give the rows that taking
every column of the process views and shapes gives (the first way, kept here as the reference).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from compact_batches import compact_batch

from capture import compact
from schemas.trace import arrow_schema


def reference(batch: pa.RecordBatch) -> pa.Table:
    """The rows by `take` of whole process views and shapes."""
    events, kinds, procs, shapes = (
        pa.RecordBatch.from_struct_array(batch.column(i).flatten()) for i in range(1, 5))
    n, first = events.num_rows, batch.column(0)[0].as_py()
    times = events.column("evt.time")
    arrays: dict[str, Any] = {"evt.num": pa.array(range(first, first + n), pa.int64()),
                              "evt.time": times}
    rows = kinds.take(events.column(compact.KIND_KEY))
    arrays["evt.cpu"] = rows.column("evt.cpu")
    for table, key in ((shapes, compact.SHAPE_KEY), (procs, compact.PROC_KEY)):
        taken = table.take(rows.column(key))
        arrays.update({name: taken.column(name) for name in taken.schema.names})
    start = arrays.pop(compact.START_NS)
    arrays["proc.duration"] = pc.subtract(times.cast(pa.int64()), start)
    arrays["proc.pid.ts"] = start
    schema = arrow_schema()
    return pa.Table.from_arrays([arrays.get(f.name, pa.nulls(n, f.type)) for f in schema],
                                schema=schema)


def same(got: pa.Table, want: pa.Table) -> None:
    assert got.schema == want.schema
    for name in want.column_names:
        assert got.column(name).equals(want.column(name)), name


@pytest.mark.parametrize("seed", range(3))
def test_expand_gives_the_rows_of_whole_takes(seed: int) -> None:
    batch = compact_batch(41, 500, seed)
    rows = compact.expand(batch)
    same(rows, reference(batch))
    assert rows.column("proc.aname").null_count > 0  # null lists stayed null
    assert [] in rows.column("proc.aname").to_pylist()  # and empty ones empty


@pytest.mark.parametrize("size", [1, 7, 128, 500, 1000])
def test_slices_give_the_same_rows(size: int) -> None:
    batch = compact_batch(1, 500, 1)
    slices = list(compact.expand_slices(batch, size))
    assert [s.num_rows for s in slices[:-1]] == [size] * (len(slices) - 1)
    same(pa.concat_tables(slices), compact.expand(batch))


def test_a_batch_without_events_expands_to_no_rows() -> None:
    batch = compact_batch(5, 0, 0)
    assert compact.expand(batch).num_rows == 0
    assert list(compact.expand_slices(batch, 10)) == []


def test_lists_of_a_sliced_batch() -> None:
    # Process views whose list columns are slices of larger arrays (offsets not from 0).
    batch = compact_batch(1, 300, 2)
    procs = batch.column(3).flatten()
    reversed_ = procs.take(pa.array(range(len(procs) - 1, -1, -1)))
    doubled = pa.concat_arrays([reversed_, procs]).slice(len(procs))
    column = pa.ListArray.from_arrays(pa.array([0, len(procs)], pa.int32()), doubled)
    sliced = batch.set_column(3, compact.SCHEMA.field(3), column)
    lists = pa.RecordBatch.from_struct_array(sliced.column(3).flatten()).column("proc.aexe")
    assert lists.offsets[0].as_py() > 0
    same(compact.expand(sliced), reference(batch))
