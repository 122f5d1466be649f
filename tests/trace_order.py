"""The row order of trace files, for tests: read events in event order, check the writer's layout,
and make an evt.num-ordered copy of a trace (the layout of traces written before rows were
clustered by event type) to compare readers on both.

A trace's row groups hold increasing ranges of evt.num; inside each, the writer orders rows by
(evt.type, evt.num) (schemas.trace.CLUSTERED_ORDER). Storage order is therefore not event order:
a test that compares rows with sysdig's output, or lists them as they happened, reads them with
`read_in_event_order`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from schemas.elision import ELIDED, NEEDS, expand
from schemas.trace import CLUSTERED_ORDER, META_PREFIX, arrow_schema


def read_in_event_order(path: Path, columns: Sequence[str] | None = None) -> pa.Table:
    """The trace's rows (all columns, or `columns`) sorted by evt.num, as readers see them:
    elided values put back (schemas.elision), the bitmask column dropped."""
    present = set(pq.ParquetFile(path).schema_arrow.names)
    wanted = None if columns is None else [
        c for c in dict.fromkeys(n for col in [*columns, "evt.num"] for n in NEEDS.get(col, (col,)))
        if c in present]
    table = expand(pq.read_table(path, columns=wanted))
    table = table.take(pc.sort_indices(table.column("evt.num")))
    return table if columns is None else table.select(list(columns))


def assert_clustered(path: Path) -> None:
    """The writer's layout: the footer says CLUSTERED_ORDER, each row group is ordered by
    (evt.type, evt.num) with null types last, and row groups hold disjoint, increasing evt.num
    ranges with no number twice."""
    parquet = pq.ParquetFile(path)
    kv = parquet.metadata.metadata or {}
    assert kv[(META_PREFIX + "row_order").encode()].decode() == ",".join(CLUSTERED_ORDER)
    last = None
    for i in range(parquet.num_row_groups):
        group = parquet.read_row_group(i, columns=["evt.type", "evt.num"])
        types = group.column("evt.type").cast(pa.string()).to_pylist()
        nums = group.column("evt.num").to_pylist()
        keys = [(t is None, t or "", n) for t, n in zip(types, nums, strict=True)]
        assert keys == sorted(keys), f"row group {i} is not ordered by (evt.type, evt.num)"
        assert len(set(nums)) == len(nums), f"row group {i} repeats an evt.num"
        if nums:
            assert last is None or min(nums) > last, f"row group {i} overlaps the one before"
            last = max(nums)


def num_ordered_copy(src: Path, dst: Path, row_group_rows: int) -> Path:
    """The events of `src` as a trace of the earlier layout: rows in evt.num order, row groups
    of `row_group_rows`, no `row_order` key in the footer (so readers take it as evt.num order),
    no value elided."""
    table = read_in_event_order(src)
    kv = {k: v for k, v in (pq.ParquetFile(src).metadata.metadata or {}).items()
          if k not in ((META_PREFIX + "row_order").encode(), b"ARROW:schema")}
    earlier = pa.schema([f for f in arrow_schema() if f.name != ELIDED])  # nothing elided
    table = table.cast(earlier).replace_schema_metadata(kv)
    pq.write_table(table, dst, row_group_size=row_group_rows, compression="zstd")
    return dst
