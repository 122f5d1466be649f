"""`capture import`: real sysdig/Falco captures through real sysdig into real Parquet files."""

from __future__ import annotations

import base64
import gzip
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from trace_order import assert_clustered, read_in_event_order

from analyze.query import run_query
from analyze.trace_reader import trace_info
from capture.scap_import import (
    EmptyCaptureError,
    ImportProgress,
    ImportStats,
    ScapImportError,
    SysdigNotFoundError,
    _ancestor_list,
    import_scap,
    parse_ndjson,
    raw_schema,
    read_scap_header,
    sysdig_fields,
)
from schemas.trace import ANCESTOR_DEPTH, arrow_schema

SCAP = Path(__file__).resolve().parents[2] / "shared" / "anchors" / "scap"
pytestmark = [
    pytest.mark.skipif(not SCAP.is_dir(), reason="shared scap anchors not present"),
    pytest.mark.skipif(shutil.which("sysdig") is None, reason="sysdig not installed"),
]

# Event counts as sysdig 0.29 reads them (see the anchors' README.md).
EVENTS = {
    "falco__cat_write.scap": 85,
    "falco__connect_localhost.scap": 8,
    "falco__open-multiple-files.scap": 86,
    "falco__ping_sendto.scap": 20,
    "falco__syscall.scap": 12,
    "falco__psp_privileged.scap": 1,  # a single `container` event
    "falco__psp_run_as_user_65534_container.scap": 2,
    "falco__psp_write_tmp_test.scap": 2,
    "falco__psp_run_as_user_0_container.scap": 3796,
    "libs__sample.scap": 402,
    "libs__curl_google.scap": 1221,
    "libs__single_ipv6_conn.scap": 28,
    "libs__test_ipv6_client.scap": 68,
}


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ImportStats]:
    out = tmp_path_factory.mktemp("imported")
    return {name: import_scap(SCAP / name, out / f"{name}.parquet") for name in EVENTS}


def table_of(stats: ImportStats) -> pa.Table:
    """The trace's rows in event order (storage order clusters them by event type)."""
    return read_in_event_order(stats.output)


def rows_of(stats: ImportStats) -> list[dict[str, Any]]:
    """The rows as dicts; evt.time as int ns (Python datetimes cannot hold nanoseconds)."""
    table = table_of(stats)
    index = table.schema.get_field_index("evt.time")
    table = table.set_column(index, "evt.time", table.column(index).cast(pa.int64()))
    return table.to_pylist()


def sysdig_text(name: str, fields: str, flt: str = "") -> list[list[str]]:
    """sysdig's own plain-text rendering, to check the import against."""
    cmd = ["sysdig", "-r", str(SCAP / name), "-p", "*" + fields] + ([flt] if flt else [])
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return [line.split("\t") for line in out.splitlines() if line]


# ---- every capture ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EVENTS))
def test_event_counts_and_metadata(imported: dict[str, ImportStats], name: str) -> None:
    stats = imported[name]
    assert stats.events == EVENTS[name]
    table = table_of(stats)
    assert table.num_rows == EVENTS[name]
    assert pq.read_schema(stats.output).remove_metadata() == arrow_schema()  # as stored
    nums = table.column("evt.num").to_pylist()
    assert nums == sorted(set(nums))  # no duplicates
    assert_clustered(stats.output)  # rows by (evt.type, evt.num) in row groups of rising evt.num
    info = trace_info(stats.output)
    assert info.events == EVENTS[name] and info.dropped is None  # scap files do not record drops
    assert info.sources == ("import",) and info.source_files == (name,)
    times = table.column("evt.time").cast(pa.int64()).to_pylist()
    assert (info.capture_start_ns, info.capture_end_ns) == (min(times), max(times))
    assert (stats.output.stat().st_mode & 0o777) == 0o600


def test_falco_regression_count(imported: dict[str, ImportStats]) -> None:
    # Falco's own test expects 8 alerts for `evt.type=open and proc.name=cat` on this capture:
    # 4 opens, each an enter and an exit event, so both directions must be kept.
    result = run_query(imported["falco__cat_write.scap"].output,
                       """select "evt.dir", count(*) from events
                          where "evt.type" = 'open' and "proc.name" = 'cat'
                          group by 1 order by 1""")
    assert result.rows == (("<", 4), (">", 4))


def test_values_match_sysdig(imported: dict[str, ImportStats]) -> None:
    name = "falco__cat_write.scap"
    fields = "%evt.num\t%evt.type\t%proc.name\t%fd.name\t%evt.arg.flags\t%evt.rawres\t%user.name"
    expected = sysdig_text(name, fields)
    table = table_of(imported[name])
    cols = ["evt.num", "evt.type", "proc.name", "fd.name", "evt.arg.flags", "evt.rawres",
            "user.name"]
    got = [["<NA>" if v is None else str(v) for v in row]
           for row in zip(*(table.column(c).to_pylist() for c in cols), strict=True)]
    assert got == expected


def test_typed_values(imported: dict[str, ImportStats]) -> None:
    rows = rows_of(imported["falco__cat_write.scap"])
    failed = [r for r in rows if r["evt.res"] == "ENOENT"]
    assert failed and all(r["evt.rawres"] == -2 and r["evt.failed"] for r in failed)
    opens = [r for r in rows if r["evt.type"] == "open" and r["evt.dir"] == "<"]
    assert opens[0]["evt.arg.flags"] == "O_RDONLY|O_CLOEXEC" and opens[0]["evt.is_open_read"]
    assert all(r["user.loginuid"] == -1 for r in rows if r["proc.name"] == "cat")
    assert {r["evt.dir"] for r in rows} == {">", "<"}


def test_ancestors(imported: dict[str, ImportStats]) -> None:
    rows = rows_of(imported["libs__sample.scap"])
    with_chain = [r for r in rows if r["proc.aname"]]
    assert with_chain
    for r in with_chain:
        assert r["proc.aname"][0] == r["proc.name"]
        assert r["proc.apid"][0] == r["proc.pid"]
        assert len(r["proc.aname"]) == len(r["proc.apid"]) == len(r["proc.aexe"])
        if len(r["proc.apid"]) > 1:
            assert r["proc.apid"][1] == r["proc.ppid"] and r["proc.aname"][1] == r["proc.pname"]
            assert r["proc.pexe"] == r["proc.aexe"][1]
    assert max(len(r["proc.aname"]) for r in with_chain) > 2
    # sysdig's own rendering of a fixed index agrees with the list column
    expected = sysdig_text("libs__sample.scap", "%evt.num\t%proc.aname[2]")
    by_num = {r["evt.num"]: r["proc.aname"] for r in rows}
    for num, name in expected:
        chain = by_num[int(num)] or []
        assert (chain[2] if len(chain) > 2 else "<NA>") == name


def test_network_fields(imported: dict[str, ImportStats]) -> None:
    rows = rows_of(imported["falco__connect_localhost.scap"])
    connect = next(r for r in rows if r["evt.type"] == "connect" and r["evt.dir"] == "<")
    assert (connect["fd.sip"], connect["fd.sport"], connect["fd.l4proto"]) == ("127.0.0.1", 80,
                                                                              "tcp")
    assert connect["evt.res"] == "EINPROGRESS" and connect["fd.typechar"] == "4"
    v6 = rows_of(imported["libs__single_ipv6_conn.scap"])
    assert any(r["fd.sip"] == "2001:db8::3" and r["fd.sport"] == 1234 for r in v6)


def test_container_fields(imported: dict[str, ImportStats]) -> None:
    rows = rows_of(imported["falco__psp_privileged.scap"])
    assert rows[0]["container.id"] == "9dbcbd0c435f" and rows[0]["container.privileged"] is True
    result = run_query(imported["falco__psp_run_as_user_0_container.scap"].output,
                       """select distinct "container.image.repository" from events
                          where "container.id" != 'host' """)
    assert result.rows == (("nginx",),)


def sysdig_json(name: str, fields: str, *flags: str) -> list[dict[str, Any]]:
    cmd = ["sysdig", "-r", str(SCAP / name), *flags, "-j", "-p", "*" + fields]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return [json.loads(line) for line in out.splitlines()]


def test_buffers_exact_and_args_as_falco_prints_them(imported: dict[str, ImportStats]) -> None:
    name = "libs__curl_google.scap"
    rows = rows_of(imported[name])
    raw = sysdig_json(name, "%evt.buffer", "-b")  # base64: the exact bytes
    assert [r["evt.buffer"] for r in rows] == [
        None if j["evt.buffer"] is None else base64.b64decode(j["evt.buffer"]) for j in raw
    ]
    assert any(r["evt.buffer"] for r in rows)
    # evt.args is decoded back from -b's base64 to sysdig's (and Falco's) default rendering
    shown = sysdig_json(name, "%evt.args")
    assert [r["evt.args"] for r in rows] == [j["evt.args"] for j in shown]


# ---- options and progress ----------------------------------------------------------------------


def test_progress_and_gzip(tmp_path: Path) -> None:
    src = tmp_path / "sample.scap.gz"
    src.write_bytes(gzip.compress((SCAP / "libs__sample.scap").read_bytes()))
    seen: list[ImportProgress] = []
    stats = import_scap(src, tmp_path / "t.parquet", progress=seen.append, row_group_rows=100)
    assert stats.events == 402 and read_scap_header(src).gzip
    assert seen and seen[-1].events == 402 and seen[-1].bytes_total == src.stat().st_size
    assert [p.events for p in seen] == sorted(p.events for p in seen)
    groups = pq.ParquetFile(stats.output).metadata
    assert [groups.row_group(i).num_rows for i in range(groups.num_row_groups)] == [100] * 4 + [2]
    assert stats.events_per_second > 0 and stats.bytes_per_event > 0


def test_header() -> None:
    header = read_scap_header(SCAP / "libs__sample.scap")
    assert header.hostname == "ubuntu2204.localdomain" and not header.gzip
    assert header.num_cpus == 4


# ---- bad input: one clear error each, no file left behind --------------------------------------


def assert_clean_failure(err: pytest.ExceptionInfo[ScapImportError], dst: Path) -> None:
    message = str(err.value)
    assert "\n" not in message and "Traceback" not in message
    assert not dst.exists() and not dst.with_name(dst.name + ".tmp").exists()


def test_missing_sysdig(tmp_path: Path) -> None:
    dst = tmp_path / "t.parquet"
    with pytest.raises(SysdigNotFoundError, match="apt-get install sysdig") as err:
        import_scap(SCAP / "falco__cat_write.scap", dst, sysdig="sysdig-not-installed")
    assert_clean_failure(err, dst)


def test_unreadable_capture(tmp_path: Path) -> None:
    dst = tmp_path / "t.parquet"
    with pytest.raises(ScapImportError, match="sysdig could not read") as err:
        import_scap(SCAP / "libs__curl_google_comments.scap", dst)
    assert "Could not initialize reader" in str(err.value)
    assert_clean_failure(err, dst)


@pytest.mark.parametrize("name", ["falco__empty.scap", "falco__empty_v2.scap"])
def test_empty_capture(tmp_path: Path, name: str) -> None:
    dst = tmp_path / "t.parquet"
    with pytest.raises(EmptyCaptureError, match="holds no events") as err:
        import_scap(SCAP / name, dst)
    assert_clean_failure(err, dst)


def test_missing_and_foreign_files(tmp_path: Path) -> None:
    dst = tmp_path / "t.parquet"
    with pytest.raises(ScapImportError, match="does not exist") as err:
        import_scap(tmp_path / "nope.scap", dst)
    assert_clean_failure(err, dst)
    text = tmp_path / "notes.scap"
    text.write_text("hello\n")
    with pytest.raises(ScapImportError, match="not a sysdig/Falco capture") as err:
        import_scap(text, dst)
    assert_clean_failure(err, dst)


def test_truncated_capture(tmp_path: Path) -> None:
    data = (SCAP / "falco__psp_run_as_user_0_container.scap").read_bytes()
    src = tmp_path / "cut.scap"
    src.write_bytes(data[: int(len(data) * 0.8)])
    dst = tmp_path / "t.parquet"
    with pytest.raises(ScapImportError, match="truncated") as err:
        import_scap(src, dst)
    assert "--allow-truncated" in str(err.value)
    assert_clean_failure(err, dst)
    stats = import_scap(src, dst, allow_truncated=True)
    assert 0 < stats.events < 3796 and stats.meta.options["truncated"] is True


# ---- the parsing pieces ------------------------------------------------------------------------


def test_sysdig_fields_cover_every_printed_column() -> None:
    fields = sysdig_fields()
    assert fields[0] == "evt.num" and "evt.rawtime" in fields
    assert f"proc.aname[{ANCESTOR_DEPTH - 1}]" in fields
    assert raw_schema().names == fields


def test_parse_rejects_renamed_fields_and_fixes_utf8() -> None:
    schema = raw_schema()
    table = parse_ndjson(b'{"evt.num": 1, "proc.name": "a\xffb"}\n', schema)
    assert table.column("proc.name").to_pylist() == ["a\ufffdb"]
    with pytest.raises(ScapImportError, match="does not understand"):
        parse_ndjson(json.dumps({"evt.num": 1, "evt.arg.protocol": "x"}).encode() + b"\n", schema)


def test_ancestor_list_folding() -> None:
    cols: dict[str, list[str | None]] = {
        f"proc.aname[{i}]": [None] * 3 for i in range(ANCESTOR_DEPTH)
    }
    cols["proc.aname[0]"] = ["sh", None, "cat"]
    cols["proc.aname[1]"] = ["bash", None, None]
    folded = _ancestor_list(pa.table(cols, schema=pa.schema(
        [pa.field(k, pa.string()) for k in cols])), "proc.aname")
    assert folded.to_pylist() == [["sh", "bash"], None, ["cat"]]
