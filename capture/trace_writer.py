"""Write a trace file: Arrow batches in, one finished Parquet file out, or nothing at all.

Used by `capture import` now and by live capture later. The writer
- buffers batches into row groups of `row_group_rows` (sized so a reader can stream a trace one
  row group at a time, and so memory stays bounded while writing);
- cuts the events, in `evt.num` order, into row groups holding disjoint, increasing ranges of
  `evt.num` (batches are sorted; batches must not overlap, which the producer guarantees: sysdig
  and the live poller both emit in event order);
- orders the rows inside each row group by (`evt.type`, `evt.num`) (`CLUSTERED_ORDER`, recorded
  as the footer's `row_order`): rules look at a few event types, and readers decoding a vector
  of rows at a time then decode the vectors holding those types only, not nearly all of them;
- writes to `<dst>.tmp` with mode 0600 (traces hold command lines, environments and I/O data) and
  renames it over `dst` only when `close()` succeeds: a reader never sees a half-written trace;
- puts the footer metadata (`TraceMeta`: counts, time range, drops) in place at `close()`, when the
  counts are known;
- chooses each column's encoding (`column_encodings`): DELTA_BINARY_PACKED for the monotonic or
  nearly-unique integers (event number, time, process age), whose dictionaries would hold a value
  per row, and dictionary encoding for everything else, with one compact dictionary per column
  and row group (`_compact_dictionaries`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from schemas.elision import DESCRIPTION as ELISION_DESCRIPTION
from schemas.elision import elide
from schemas.trace import (
    CLUSTERED_ORDER,
    META_PREFIX,
    SORT_COLUMN,
    TraceError,
    TraceMeta,
    arrow_schema,
)

# Rows per row group. Each row group costs a reader a fixed price per column it reads (footer
# entry, dictionary page, page headers); with rows clustered by event type, a larger group also
# makes each type's run longer. The bench's SQL engine run (bench/bench_engines.py, 10M events,
# 43 columns read) took 0.99 s of CPU with 64k rows, 0.70 s with 128k, 0.62 s with 256k. But
# the writer holds a row group of rows, and the replay engine two of the columns it reads: 128k
# rows of a live mixed capture are ~130 MB, and 256k would double the writer's peak again.
DEFAULT_ROW_GROUP_ROWS = 128 * 1024
COMPRESSION = "zstd"
# zstd's own default level: most of the ratio of the higher levels at a fraction of the cost.
COMPRESSION_LEVEL = 3
# Integer columns that are (nearly) sorted or unique per event: a dictionary would hold one entry
# per row, while the deltas between rows are small. Measured on a live mixed capture (15.4 ->
# 7.4 bytes/event with the dictionary fix below) and the imported k8s scap (29.3 -> 18.4).
# Process ids, fds and return values repeat: they stay with the dictionary (delta made them larger).
# With rows clustered by event type, evt.num and evt.time still rise within each type's run and
# jump back between runs; delta stays the smallest (bytes/event, delta/plain/dictionary/byte
# stream split, evt.num: 0.53/1.31/3.28/0.81 on the bench's k8s trace, 0.14/1.16/3.05/0.43 on a
# live mixed capture; evt.time: 2.62/2.72/4.68/2.60 and 2.37/2.63/4.58/2.53).
DELTA_COLUMNS = ("evt.num", "evt.time", "proc.duration")
DELTA_ENCODING = "DELTA_BINARY_PACKED"
# Values the Parquet writer encodes per call (Arrow's default: 1024), between its page-size
# checks: the per-call overhead over 108 columns cost 7-12% of a live segment's conversion.
# Same rows, files within a few hundred bytes (the imported k8s scap: 1% smaller); a page may
# outgrow the 1 MB target by one call's values, unnoticed by readers of whole row groups.
WRITE_BATCH_ROWS = 16 * 1024


class TraceWriteError(TraceError):
    """The trace file could not be written (disk full, permissions, bad batch from a producer)."""


class TraceWriter:
    """Stream event batches into a Parquet trace; use as a context manager.

    Leaving the `with` block without calling `close(...)`, or with an exception, removes the
    temporary file and leaves any existing `dst` untouched.
    """

    def __init__(self, dst: Path | str, meta: TraceMeta,
                 row_group_rows: int = DEFAULT_ROW_GROUP_ROWS) -> None:
        self.dst = Path(dst)
        self.tmp = self.dst.with_name(self.dst.name + ".tmp")
        self.meta = meta
        self.row_group_rows = row_group_rows
        self.schema = arrow_schema()
        self.events = 0
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._last_num: int | None = None
        self._time_range: tuple[int, int] | None = None
        self._file: IO[bytes] | None = None
        self._writer: pq.ParquetWriter | None = None
        self.closed = False

    @property
    def rows(self) -> int:
        """Events accepted so far (written or still buffered)."""
        return self.events + self._pending_rows

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if not self.closed:
            self.abort()

    def write(self, batch: pa.Table | pa.RecordBatch) -> None:
        """Add events (columns by name; missing columns become null, extra ones are an error)."""
        table = _conform(batch, self.schema)
        if table.num_rows == 0:
            return
        self._pending.append(table)
        self._pending_rows += table.num_rows
        if self._pending_rows >= self.row_group_rows:
            self._flush()

    def close(self, drops: dict[str, int] | None = None, dropped: int | None = None,
              options: dict[str, Any] | None = None) -> TraceMeta:
        """Finish the file: last row group, footer metadata, fsync, rename. Returns the metadata.

        `drops` are the capture's drop counters (their sum is `dropped` unless given); with neither,
        `dropped` stays as the initial metadata says (None = unknown, as for imports). `options`
        replaces the capture options when given (e.g. to record how the capture ended).
        """
        self._flush(final=True)
        if self._writer is None:
            self._open()  # an empty trace is still a valid file
        if drops is not None and dropped is None:
            dropped = sum(drops.values())
        start, end = self._time_range or (None, None)
        meta = dataclasses.replace(
            self.meta, events=self.events, capture_start_ns=start, capture_end_ns=end,
            drops=drops if drops is not None else self.meta.drops,
            dropped=dropped if dropped is not None else self.meta.dropped,
            options=options if options is not None else self.meta.options,
            row_order=CLUSTERED_ORDER,
        )
        assert self._writer is not None and self._file is not None
        try:
            self._writer.add_key_value_metadata(
                {**meta.to_kv(), META_PREFIX + "elided": ELISION_DESCRIPTION})
            self._writer.close()
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self.tmp, self.dst)
        except OSError as exc:
            self.abort()
            raise TraceWriteError(f"Could not finish the trace {self.dst}: {exc}.") from exc
        self.closed = True
        self.meta = meta
        return meta

    def abort(self) -> None:
        """Drop everything written so far (the temporary file); `dst` is not touched."""
        self.closed = True
        for closer in (self._writer, self._file):
            if closer is not None:
                with contextlib.suppress(Exception):
                    closer.close()
        with contextlib.suppress(FileNotFoundError):
            self.tmp.unlink()

    # ---- internals ---------------------------------------------------------------------------

    def _open(self) -> None:
        try:
            fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.fchmod(fd, 0o600)  # a stale .tmp from a crashed run keeps its old mode otherwise
        except OSError as exc:
            raise TraceWriteError(
                f"Cannot create the trace file {self.tmp}: {exc.strerror}."
            ) from exc
        self._file = os.fdopen(fd, "wb")
        dictionary, encodings = column_encodings(self.schema)
        self._writer = pq.ParquetWriter(
            self._file, self.schema, compression=COMPRESSION,
            compression_level=COMPRESSION_LEVEL, use_dictionary=dictionary,
            column_encoding=encodings, write_statistics=True,
            sorting_columns=[pq.SortingColumn(self.schema.get_field_index(name))
                             for name in CLUSTERED_ORDER],
            write_batch_size=WRITE_BATCH_ROWS,
        )

    def _flush(self, final: bool = False) -> None:
        """Write the pending rows as full row groups; at the end, the remainder too."""
        if not self._pending:
            return
        table = self._sorted(pa.concat_tables(self._pending))
        keep = 0 if final else table.num_rows % self.row_group_rows
        done = table.num_rows - keep
        # The rest is compacted so that its dictionaries do not carry every value seen so far.
        self._pending = [_compact_dictionaries(table.slice(done))] if keep else []
        self._pending_rows = keep
        if done == 0:
            return
        nums, times = table.column(SORT_COLUMN).slice(0, done), table.column("evt.time")
        groups = [table.slice(start, min(self.row_group_rows, done - start))
                  for start in range(0, done, self.row_group_rows)]
        del table  # each group's rows are then released as it is written (_write_group)
        if self._writer is None:
            self._open()
        while groups:
            self._write_group(groups.pop(0))
        self.events += done
        self._last_num = nums[-1].as_py()
        self._track_time(times.slice(0, done))

    def _write_group(self, group: pa.Table) -> None:
        """Write one row group, its rows clustered by event type (`_cluster_order`).

        The caller hands over its only reference to the rows: each column is dropped as soon as
        its clustered copy exists, so clustering costs about a column of memory, not a row
        group."""
        schema = group.schema
        # Before compaction: the dictionaries then drop the values no row stores any more.
        columns = _compact_dictionaries(elide(group)).columns
        del group
        order = _cluster_order(columns[schema.get_field_index("evt.type")])
        if order is not None:
            for i in range(len(columns)):
                columns[i] = _take(columns[i], order)
        table = pa.Table.from_arrays(columns, schema=schema)
        del columns
        assert self._writer is not None
        try:
            self._writer.write_table(table, row_group_size=self.row_group_rows)
        except OSError as exc:
            raise TraceWriteError(f"Could not write the trace {self.tmp}: {exc}.") from exc

    def _sorted(self, table: pa.Table) -> pa.Table:
        nums = table.column(SORT_COLUMN)
        if nums.null_count:
            raise TraceWriteError(f"Every event needs {SORT_COLUMN}; a batch has nulls.")
        if not _is_sorted(nums):
            table = table.sort_by(SORT_COLUMN)
            nums = table.column(SORT_COLUMN)
        first = nums[0].as_py()
        if self._last_num is not None and first <= self._last_num:
            raise TraceWriteError(
                f"Events must arrive in {SORT_COLUMN} order: got {first} after {self._last_num}."
            )
        return table

    def _track_time(self, times: pa.ChunkedArray) -> None:
        bounds = pc.min_max(times)
        lo, hi = bounds["min"].value, bounds["max"].value
        if lo is None or hi is None:
            return
        if self._time_range is not None:
            lo, hi = min(lo, self._time_range[0]), max(hi, self._time_range[1])
        self._time_range = (lo, hi)


def column_encodings(schema: pa.Schema) -> tuple[list[str], dict[str, str]]:
    """The Parquet columns to dictionary-encode, and the explicit encodings of the others.

    Parquet names a list column's values `<name>.list.element`; the writer wants those paths."""
    dictionary = [
        f"{f.name}.list.element" if pa.types.is_list(f.type) else f.name
        for f in schema if f.name not in DELTA_COLUMNS
    ]
    return dictionary, {name: DELTA_ENCODING for name in DELTA_COLUMNS if name in schema.names}


def _compact_dictionaries(table: pa.Table) -> pa.Table:
    """Each dictionary column as one chunk whose dictionary holds exactly the values used.

    Why: producers build a dictionary per batch, and Arrow's Parquet writer, given a column chunk
    whose dictionary changes between batches, falls back to PLAIN encoding for the rest of it
    (the imported k8s capture grew by a third). It also writes the Arrow dictionary as it is,
    unused values included, so a slice of a larger batch must not keep the whole dictionary."""
    columns = []
    for column in table.columns:
        if pa.types.is_dictionary(column.type) and column.num_chunks:
            column = _compact(column.combine_chunks())
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=table.schema)


def _compact(array: pa.DictionaryArray) -> pa.DictionaryArray:
    used = pc.unique(array.indices).drop_null()
    if len(used) == len(array.dictionary):
        return array
    indices = pc.index_in(array.indices, value_set=used).cast(array.type.index_type)
    return pa.DictionaryArray.from_arrays(indices, array.dictionary.take(used))


def _cluster_order(types: pa.ChunkedArray) -> pa.Array | None:
    """The row order of a row group (in evt.num order) sorted by (evt.type, evt.num); None when
    it is already (one type, say).

    Arrow does not sort dictionary arrays: each row's key is the rank of its type name in the
    dictionary (equal names, equal ranks, so a dictionary holding a name twice still groups it),
    and a stable sort on that key keeps evt.num order within a type."""
    array = types.combine_chunks()
    ranks = pc.rank(array.dictionary, sort_keys="ascending", tiebreaker="dense")
    keys = ranks.take(array.indices)  # a null type has a null key: sorted last
    if not keys.null_count and pc.all(pc.greater_equal(keys[1:], keys[:-1])).as_py() is not False:
        return None
    return pc.sort_indices(keys)  # stable: evt.num order within a type


def _take(column: pa.ChunkedArray, order: pa.Array) -> pa.ChunkedArray | pa.Array:
    if column.null_count == len(column):  # absent field (imports lack the live-only ones)
        return column
    return pc.take(column, order, boundscheck=False)


def _is_sorted(nums: pa.ChunkedArray) -> bool:
    if len(nums) < 2:
        return True
    flat = nums.combine_chunks()
    return bool(pc.all(pc.greater(flat[1:], flat[:-1])).as_py())


def _conform(batch: pa.Table | pa.RecordBatch, schema: pa.Schema) -> pa.Table:
    """Order, fill (nulls) and cast the batch's columns to the trace schema."""
    table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
    if table.schema.equals(schema):
        return table  # the importer's batches already conform: skip the per-column checks
    extra = set(table.column_names) - set(schema.names)
    if extra:
        raise TraceWriteError(f"Columns not in the trace schema: {', '.join(sorted(extra))}.")
    columns = []
    for fld in schema:
        if fld.name in table.column_names:
            col = table.column(fld.name)
            columns.append(col if col.type == fld.type else col.cast(fld.type))
        else:
            columns.append(pa.nulls(table.num_rows, fld.type))
    return pa.Table.from_arrays(columns, schema=schema)
