"""The trace format: schema vs the Falco field catalog, metadata, the writer and the reader."""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analyze.trace_reader import (
    TraceFormatError,
    open_trace,
    read_trace_file,
    resolve_paths,
    trace_info,
)
from capture.trace_writer import TraceWriteError, TraceWriter
from schemas.elision import ELIDED, ELIDED_TYPE
from schemas.trace import (
    ANCESTOR_COLUMNS,
    CLUSTERED_ORDER,
    COLUMN_BY_NAME,
    COLUMNS,
    DERIVED,
    FROM_SYSDIG,
    LIVE_ONLY,
    NUM_ORDER,
    SCHEMA_VERSION,
    SOURCE_LIVE,
    TraceMeta,
    arrow_schema,
    column_for_field,
    version_compatible,
)

ANCHORS = Path(__file__).resolve().parents[2] / "shared" / "anchors" / "falco-rules"
needs_anchors = pytest.mark.skipif(not ANCHORS.is_dir(), reason="shared Falco anchors not present")

# Fields the upstream rules use that deliberately have no column, and why.
NOT_COLUMNS = {
    # filter-only: derived by the engines from the c/s/l/r ip and port columns
    "fd.ip": "filter-only", "fd.port": "filter-only", "fd.net": "filter-only",
    "fd.cnet": "filter-only", "fd.snet": "filter-only", "fd.rnet": "filter-only",
    # reverse DNS of an address: not something a syscall trace holds
    "fd.cip.name": "dns", "fd.sip.name": "dns", "fd.lip.name": "dns", "fd.rip.name": "dns",
    # keyed look-up into container.mounts
    "container.mount.dest": "keyed",
}
PLUGIN_TYPES = {"string": "PT_CHARBUF", "bool": "PT_BOOL", "abstime": "PT_ABSTIME"}


def small_batch(nums: list[int], **extra: list[object]) -> pa.Table:
    data: dict[str, list[Any]] = {
        "evt.num": nums,
        "evt.time": [1_000 + n for n in nums],
        "evt.type": ["openat"] * len(nums),
        "evt.dir": ["<"] * len(nums),
        **extra,
    }
    schema = arrow_schema()
    return pa.table({k: pa.array(v, schema.field(k).type) for k, v in data.items()})


def write_trace(path: Path, batches: list[pa.Table], rows: int = 1024,
                drops: dict[str, int] | None = None) -> TraceMeta:
    with TraceWriter(path, TraceMeta(source=SOURCE_LIVE, hostname="h1", kernel="6.1.0"),
                     row_group_rows=rows) as writer:
        for batch in batches:
            writer.write(batch)
        return writer.close(drops=drops)


# ---- the schema ------------------------------------------------------------------------------


def test_columns_unique_and_typed() -> None:
    names = [c.name for c in COLUMNS]
    assert len(names) == len(set(names)) == len(arrow_schema()) - 1
    assert arrow_schema().names == [*names, ELIDED]  # the Falco fields, then the bitmask
    assert arrow_schema().field(ELIDED).type == ELIDED_TYPE
    assert all(c.falco_type.startswith("PT_") for c in COLUMNS)
    assert all(c.origin in (FROM_SYSDIG, DERIVED, LIVE_ONLY) for c in COLUMNS)
    assert COLUMN_BY_NAME["evt.time"].arrow == pa.timestamp("ns")
    assert COLUMN_BY_NAME["proc.name"].arrow == pa.dictionary(pa.int32(), pa.string())
    for name in ANCESTOR_COLUMNS:
        assert pa.types.is_list(COLUMN_BY_NAME[name].arrow), name
        assert COLUMN_BY_NAME[name].sysdig_field is None  # printed per index, folded on import
    assert COLUMN_BY_NAME["evt.time"].sysdig_field == "evt.rawtime"
    assert COLUMN_BY_NAME["proc.pexe"].sysdig_field is None  # sysdig 0.29 lacks it: derived


def test_column_for_field() -> None:
    assert column_for_field("proc.aname[2]") is COLUMN_BY_NAME["proc.aname"]
    assert column_for_field("evt.arg.flags") is COLUMN_BY_NAME["evt.arg.flags"]
    assert column_for_field("fd.ip") is None


@needs_anchors
def test_types_match_the_falco_catalog() -> None:
    with (ANCHORS / "field-catalog.tsv").open() as f:
        rows = csv.reader((line for line in f if not line.startswith("#")), delimiter="\t")
        catalog = {r[0]: PLUGIN_TYPES.get(r[1], r[1]) for r in rows if len(r) > 1}
    for col in COLUMNS:
        name = "evt.arg" if col.name.startswith("evt.arg.") else col.name
        assert name in catalog, col.name
        assert col.falco_type == catalog[name], col.name


@needs_anchors
def test_every_field_the_rules_use_has_a_column() -> None:
    used = set(re.findall(r"^  ([a-z0-9_.]+)\s", (ANCHORS / "fields-used.txt").read_text(), re.M))
    assert len(used) > 80
    missing = sorted(f for f in used if f not in COLUMN_BY_NAME and f not in NOT_COLUMNS)
    # proc.env is a column, k8s.* are columns; nothing the rules use may be forgotten.
    assert missing == []


# ---- metadata ----------------------------------------------------------------------------------


def test_meta_round_trip() -> None:
    meta = TraceMeta(source="import", source_file="a.scap", hostname="h", kernel="k",
                     options={"x": [1, 2]}, events=5, dropped=3, drops={"ring": 3},
                     capture_start_ns=10, capture_end_ns=20)
    kv = meta.to_kv()
    assert all(k.startswith("sysreplay.") and isinstance(v, str) for k, v in kv.items())
    assert TraceMeta.from_kv({k.encode(): v.encode() for k, v in kv.items()}) == meta
    unknown = TraceMeta(source="import")
    assert TraceMeta.from_kv(unknown.to_kv()).dropped is None
    with pytest.raises(KeyError):
        TraceMeta.from_kv({b"other": b"x"})


def test_version_compatibility() -> None:
    major = SCHEMA_VERSION.split(".")[0]
    assert version_compatible(f"{major}.99")
    assert not version_compatible(f"{int(major) + 1}.0")


# ---- the writer ----------------------------------------------------------------------------------


def test_writer_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    meta = write_trace(path, [small_batch([1, 2, 3]), small_batch([5, 4])], rows=3,
                       drops={"ring": 2, "perf": 1})
    assert (path.stat().st_mode & 0o777) == 0o600
    assert not (tmp_path / "t.parquet.tmp").exists()
    assert meta.events == 5 and meta.dropped == 3
    assert (meta.capture_start_ns, meta.capture_end_ns) == (1_001, 1_005)
    table = pq.read_table(path)
    assert table.column("evt.num").to_pylist() == [1, 2, 3, 4, 5]  # each row group sorted
    assert table.schema.names == arrow_schema().names
    assert table.column("proc.name").null_count == 5  # absent columns are null
    parquet = pq.ParquetFile(path)
    assert parquet.metadata.num_row_groups == 2
    assert parquet.metadata.row_group(0).column(0).compression == "ZSTD"
    names = arrow_schema().names
    assert [c.column_index for c in parquet.metadata.row_group(0).sorting_columns] == [
        names.index("evt.type"), names.index("evt.num")]  # CLUSTERED_ORDER, as the footer says
    assert read_trace_file(path).meta.row_order == CLUSTERED_ORDER


def test_writer_clusters_each_row_group_by_event_type(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    types = ["read", "openat", None, "close", "openat", "read", "close", "close"]
    # Two batches, each with its own dictionary; the second holds "close" twice.
    first = small_batch([1, 2, 3, 4, 5])
    first = first.set_column(2, "evt.type", pa.array(types[:5]).dictionary_encode())
    second = small_batch([6, 7, 8])
    second = second.set_column(2, "evt.type", pa.DictionaryArray.from_arrays(
        pa.array([0, 1, 2], pa.int32()), pa.array(["read", "close", "close"])))
    meta = write_trace(path, [first, second], rows=4)
    assert meta.row_order == CLUSTERED_ORDER == ("evt.type", "evt.num")
    parquet = pq.ParquetFile(path)
    groups = [parquet.read_row_group(i, columns=["evt.num", "evt.type"]).to_pylist()
              for i in range(parquet.num_row_groups)]
    assert [[(r["evt.type"], r["evt.num"]) for r in g] for g in groups] == [
        [("close", 4), ("openat", 2), ("read", 1), (None, 3)],  # a null type sorts last
        [("close", 7), ("close", 8), ("openat", 5), ("read", 6)],
    ]
    assert read_trace_file(path).meta.row_order == CLUSTERED_ORDER


def test_a_trace_without_row_order_is_in_event_number_order(tmp_path: Path) -> None:
    kv = {k: v for k, v in TraceMeta(source="live").to_kv().items() if not k.endswith("order")}
    assert len(kv) == len(TraceMeta(source="live").to_kv()) - 1
    assert TraceMeta.from_kv(kv).row_order == NUM_ORDER == ("evt.num",)
    pq.write_table(small_batch([1, 2]).replace_schema_metadata(kv), tmp_path / "old.parquet")
    info = trace_info(tmp_path / "old.parquet")
    assert info.row_orders == ("evt.num",) and info.to_dict()["row_orders"] == ["evt.num"]


def test_writer_rejects_out_of_order_and_unknown_columns(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    with pytest.raises(TraceWriteError, match=r"evt\.num order"):
        write_trace(path, [small_batch([5, 6]), small_batch([1])], rows=2)
    with pytest.raises(TraceWriteError, match="not in the trace schema"):
        write_trace(path, [small_batch([1]).append_column("bogus", pa.array([1]))])
    assert not path.exists() and not (tmp_path / "t.parquet.tmp").exists()


def test_writer_abort_keeps_the_previous_file(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    write_trace(path, [small_batch([1])])
    before = path.read_bytes()
    with pytest.raises(RuntimeError), TraceWriter(path, TraceMeta(source="live")) as writer:
        writer.write(small_batch([1, 2]))
        raise RuntimeError("capture interrupted")
    assert path.read_bytes() == before
    assert not (tmp_path / "t.parquet.tmp").exists()


def test_empty_trace_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    write_trace(path, [])
    info = trace_info(path)
    assert info.events == 0 and info.capture_start_ns is None


# ---- the reader --------------------------------------------------------------------------------


def test_info_from_footer(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    write_trace(path, [small_batch([1, 2])], drops={"ring": 4})
    info = trace_info(path)
    assert (info.events, info.dropped, info.drops) == (2, 4, {"ring": 4})
    assert info.hostnames == ("h1",) and info.kernels == ("6.1.0",)
    assert info.to_dict()["events"] == 2 and info.to_dict()["files"] == [str(path)]


def test_segments_by_directory_and_glob(tmp_path: Path) -> None:
    seg = tmp_path / "segs"
    seg.mkdir()
    write_trace(seg / "trace-0001.parquet", [small_batch([1, 2])], drops={"ring": 1})
    write_trace(seg / "trace-0002.parquet", [small_batch([3])], drops={"ring": 2})
    (seg / "notes.txt").write_text("not a segment")
    by_dir = trace_info(seg)
    assert by_dir.events == 3 and by_dir.dropped == 3 and len(by_dir.paths) == 2
    assert by_dir.capture_start_ns == 1_001 and by_dir.capture_end_ns == 1_003
    assert resolve_paths(str(seg / "trace-*.parquet")) == list(by_dir.paths)
    assert open_trace([seg / "trace-0002.parquet", seg]).paths[0].name == "trace-0002.parquet"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: None, "does not exist"),
        (lambda p: p.write_bytes(b"PAR1 this is not parquet at all"), "not a readable Parquet"),
        (lambda p: pq.write_table(pa.table({"a": [1]}), p), "not a sysreplay trace"),
    ],
    ids=["missing", "corrupt", "foreign"],
)
def test_bad_files_name_the_file(tmp_path: Path, make: Callable[[Path], object],
                                 message: str) -> None:
    path = tmp_path / "bad.parquet"
    make(path)
    with pytest.raises(TraceFormatError, match=message) as err:
        read_trace_file(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_truncated_trace(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    write_trace(path, [small_batch([1, 2, 3])])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(TraceFormatError, match="corrupt, truncated"):
        read_trace_file(path)


def test_newer_major_version_and_missing_columns(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    future = TraceMeta(source="live", schema_version="99.0").to_kv()
    pq.write_table(small_batch([1]).replace_schema_metadata(future), path)
    with pytest.raises(TraceFormatError, match=r"schema version 99\.0"):
        read_trace_file(path)
    pq.write_table(pa.table({"x": [1]}).replace_schema_metadata(TraceMeta("live").to_kv()), path)
    with pytest.raises(TraceFormatError, match="lacks the event columns"):
        read_trace_file(path)


def test_empty_directory_and_unmatched_glob(tmp_path: Path) -> None:
    with pytest.raises(TraceFormatError, match="no trace segments"):
        open_trace(tmp_path)
    with pytest.raises(TraceFormatError, match="No trace files match"):
        open_trace(str(tmp_path / "*.parquet"))
    os.mkfifo(tmp_path / "fifo.parquet")
    with pytest.raises(TraceFormatError, match="not a regular file"):
        read_trace_file(tmp_path / "fifo.parquet")
