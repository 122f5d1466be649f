"""Small traces written from a few hand-made events, for tests of the engines and `analyze test`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pyarrow as pa

from capture.trace_writer import TraceWriter
from schemas.trace import TraceMeta, arrow_schema


def write_events(path: Path, events: Mapping[int, Mapping[str, object]], t0: int,
                 common: Mapping[str, object] | None = None) -> Path:
    """A live-looking trace of `events` ({evt.num: {field: value}}), event n at time t0 + n;
    `common` fields go into every row (an event's own fields win)."""
    schema = arrow_schema()
    rows = [{"evt.num": n, "evt.time": t0 + n, **(common or {}), **fields}
            for n, fields in events.items()]
    names = dict.fromkeys(k for row in rows for k in row)
    table = pa.table({k: pa.array([r.get(k) for r in rows], schema.field(k).type) for k in names})
    with TraceWriter(path, TraceMeta(source="live", hostname="h")) as writer:
        writer.write(table)
        writer.close(drops={})
    return path
