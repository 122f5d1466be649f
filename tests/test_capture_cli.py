"""`capture record`, `capture doctor` and `capture recover` through click's CliRunner.

Most tests need no root: option parsing, `--print-bpf`, the refusal when capture cannot run
(the doctor's result or the uid is faked), the doctor's output shapes, and recovering a spool
written here. The live tests record a scripted workload and use `require_bpf` (skipped without
root and BPF locally, failing in CI).
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result
from trace_order import assert_clustered, read_in_event_order

import cli
from capture import doctor
from capture.bpf_render import PRESETS
from capture.doctor import FAILED, OK, SKIPPED, Check, DoctorReport
from capture.probe import Features
from capture.record import RecordOptions, RecordProgress, RecordStats, Segment, _Loop
from schemas.trace import SOURCE_LIVE, TraceMeta, arrow_schema

DOCTOR_CHECKS = ["architecture", "root", "bpf syscall", "ring buffer", "tracefs", "tracepoints",
                 "optional tracepoints", "bcc", "kernel headers", "compile"]


def run(*args: str) -> Result:
    return CliRunner().invoke(cli.capture, list(args))


# ---- options ----------------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["record", "doctor", "recover"])
def test_help_shows_an_example(command: str) -> None:
    result = run(command, "--help")
    assert result.exit_code == 0 and "Example:" in result.output
    assert f"capture {command}" in result.output


def test_preset_choices_are_the_programs_presets() -> None:
    assert tuple(PRESETS) == cli.PRESET_CHOICES


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30.0), ("10m", 600.0), ("1h30m", 5400.0), ("250ms", 0.25), ("45", 45.0),
    ("1.5", 1.5), ("2d", 172800.0), (" 5S ", 5.0),
])
def test_durations(text: str, seconds: float) -> None:
    assert cli.Duration().convert(text, None, None) == seconds


@pytest.mark.parametrize(("text", "size"), [
    ("256MB", 256 << 20), ("256M", 256 << 20), ("1.5G", 3 << 29), ("512KiB", 512 << 10),
    ("4096", 4096), ("1 gb", 1 << 30), ("2T", 2 << 40),
])
def test_sizes(text: str, size: int) -> None:
    assert cli.ByteSize().convert(text, None, None) == size


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--duration", "soon", "'soon' is not a duration; write e.g. 30s, 10m, 1h30m or 45."),
    ("--duration", "0s", "'0s': the duration must be more than zero."),
    ("--rotate-size", "lots", "'lots' is not a size; write e.g. 256MB, 1G or 1048576."),
    ("--rotate-seconds", "1x", "'1x' is not a duration"),
    ("--syscalls", ",", "name at least one syscall"),
    ("--pid", "0", "0 is not in the range x>=1"),
])
def test_bad_option_values_are_usage_errors(option: str, value: str, message: str) -> None:
    result = run("record", "-o", "t.parquet", option, value)
    assert result.exit_code == 2 and message in result.output


def test_preset_and_syscalls_exclude_each_other() -> None:
    result = run("record", "-o", "t.parquet", "--preset", "exec", "--syscalls", "execve")
    assert result.exit_code == 2
    assert "Give --preset or --syscalls, not both." in result.output


def test_output_directory_needs_rotation(tmp_path: Path) -> None:
    result = run("record", "-o", str(tmp_path))
    assert result.exit_code == 2
    assert f"{tmp_path} is a directory: name a file, or rotate" in result.output


def test_unknown_syscall_is_one_message(tmp_path: Path) -> None:
    result = run("record", "-o", str(tmp_path / "t.parquet"), "--syscalls", "execve,nosuch")
    assert result.exit_code == 1
    assert result.output.startswith("Error: Cannot record nosuch: capture knows ")
    assert not (tmp_path / "t.parquet").exists()


def test_a_syscall_list_with_fds_records_the_fd_calls_unwritten(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor.os, "geteuid", lambda: 1000)
    result = run("record", "-o", "t.parquet", "--print-bpf", "--syscalls", "openat")
    assert result.exit_code == 0, result.output
    assert "/* close */" in result.output and "/* clone */" in result.output


@pytest.mark.parametrize(("size", "pages"), [(None, 8192), ("1MB", 256), ("256MB", 65536),
                                             ("1G", 262144)])
def test_buffer_size_sets_the_ring_buffer(monkeypatch: pytest.MonkeyPatch, size: str | None,
                                          pages: int) -> None:
    monkeypatch.setattr(doctor.os, "geteuid", lambda: 1000)
    given = ["--buffer-size", size] if size else []
    result = run("record", "-o", "t.parquet", "--print-bpf", *given)
    assert result.exit_code == 0, result.output
    assert f"BPF_RINGBUF_OUTPUT(events, {pages});" in result.output


@pytest.mark.parametrize("size", ["3MB", "512KB", "2G", "nonsense"])
def test_a_buffer_size_not_a_power_of_two_in_range_is_refused(tmp_path: Path, size: str) -> None:
    result = run("record", "-o", str(tmp_path / "t.parquet"), "--buffer-size", size)
    assert result.exit_code == 2
    assert "--buffer-size" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "t.parquet").exists()


def test_print_bpf_renders_the_filters_without_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor.os, "geteuid", lambda: 1000)
    result = run("record", "-o", "t.parquet", "--print-bpf", "--syscalls", "execve",
                 "--pid", "42", "--exclude-comm", "sshd")
    assert result.exit_code == 0, result.output
    assert "RAW_TRACEPOINT_PROBE(sys_enter)" in result.output
    # execve is fd-free: the process state set comes along, the fd calls do not.
    assert "case 59: /* execve */" in result.output and "/* setuid */" in result.output
    assert "/* close */" not in result.output
    assert "switch (tgid) { case 42: break; default: return 0; }" in result.output
    sshd = "(comm[0] ^ 115) | (comm[1] ^ 115) | (comm[2] ^ 104) | (comm[3] ^ 100) | (comm[4] ^ 0)"
    assert f"    if ((({sshd}) == 0))\n        return 0;" in result.output


def test_summary_and_progress_lines() -> None:
    one = RecordStats((Path("t.parquet"),), 12_345, 0, {}, 10.04, 98_760, "duration")
    assert cli._record_summary(one) == (
        "Recorded 12,345 events (0 dropped) in 10.0 s: 8.0 bytes/event, 0.1 MB in t.parquet.")
    segments = RecordStats((Path("d/segment-00001.parquet"), Path("d/segment-00002.parquet")),
                           10, 2, {"ringbuf_full": 2}, 3.0, 2_000_000, "signal")
    assert cli._record_summary(segments) == (
        "Recorded 10 events (2 dropped) in 3.0 s, stopped by a signal: 200000.0 bytes/event, "
        "2.0 MB in 2 segments in d.")
    progress = RecordProgress(elapsed=75.2, events=1_234_567, events_per_second=98_765.4,
                              dropped=0, bytes_written=12_300_000, segments=1)
    assert cli._progress_line(progress, 600.0) == (
        "recording 0:01:15 (0:08:44 left)  1,234,567 events  98,765/s  0 dropped  "
        "12.3 MB written")
    assert cli._progress_line(progress, None).startswith("recording 0:01:15  1,234,567 events")


def test_progress_lines_with_segments_converting() -> None:
    recording = RecordProgress(elapsed=75.2, events=1_234_567, events_per_second=98_765.4,
                               dropped=0, bytes_written=12_300_000, segments=3, converting=2)
    assert cli._progress_line(recording, None) == (
        "recording 0:01:15  1,234,567 events  98,765/s  0 dropped  12.3 MB written, "
        "2 converting")
    ended = replace(recording, events_per_second=0.0, dropped=5, capturing=False)
    assert cli._progress_line(ended, 600.0) == (
        "converting 2 segments  1,234,567 events  5 dropped  12.3 MB written")
    assert cli._progress_line(replace(ended, converting=1), None).startswith(
        "converting 1 segment  ")


# ---- refusing to start ------------------------------------------------------------------------

def test_refusal_names_each_failure_and_its_fix(monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    report = DoctorReport((
        Check("architecture", OK, "x86_64"),
        Check("root", FAILED, "running as uid 1000", "Run the capture as root."),
        Check("tracefs", SKIPPED, "not checked: needs root"),
        Check("kernel headers", FAILED, "/lib/modules/6.1/build does not exist",
              "apt-get install linux-headers-6.1"),
    ))
    monkeypatch.setattr(doctor, "run_checks", lambda **kw: report)
    result = run("record", "-o", str(tmp_path / "t.parquet"))
    assert result.exit_code == 1
    assert result.output == (
        "Error: capture cannot run on this machine:\n"
        "  root: running as uid 1000\n"
        "    fix: Run the capture as root.\n"
        "  kernel headers: /lib/modules/6.1/build does not exist\n"
        "    fix: apt-get install linux-headers-6.1\n"
        "Run `capture doctor` for every check.\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_refusal_when_not_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(doctor.os, "geteuid", lambda: 1000)
    result = run("record", "-o", str(tmp_path / "t.parquet"), "--duration", "1s")
    assert result.exit_code == 1 and result.exception is not None  # SystemExit, no traceback
    assert isinstance(result.exception, SystemExit)
    assert result.output.startswith("Error: capture cannot run on this machine:\n")
    assert "  root: running as uid 1000\n    fix: Run the capture as root" in result.output
    assert list(tmp_path.iterdir()) == []


# ---- doctor -----------------------------------------------------------------------------------

def test_doctor_json_shape() -> None:
    result = run("doctor", "--format", "json")
    data = json.loads(result.output)
    assert set(data) == {"ok", "checks"} and isinstance(data["ok"], bool)
    assert [c["name"] for c in data["checks"]] == DOCTOR_CHECKS
    for check in data["checks"]:
        assert set(check) == {"name", "status", "detail", "fix"}
        assert check["status"] in ("ok", "failed", "skipped", "warning")
    assert result.exit_code == (0 if data["ok"] else 1)


def test_doctor_table_and_exit_status(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[dict[str, Any]] = []

    def fake(**kw: Any) -> DoctorReport:
        asked.append(kw)
        return DoctorReport((Check("tracefs", FAILED, "tracefs is not mounted", "mount it"),))

    monkeypatch.setattr(doctor, "run_checks", fake)
    result = run("doctor", "--fix")
    assert asked == [{"mount_tracefs": True}]
    assert result.exit_code == 1
    assert result.output == ("[FAIL] tracefs: tracefs is not mounted\n       fix: mount it\n"
                             "capture cannot run here until the failures above are fixed.\n")


# ---- recover ----------------------------------------------------------------------------------

def batch(nums: list[int], types: list[str], dictionary: list[str]) -> pa.Table:
    """Rows with `evt.type` from its own dictionary, as each flush of a capture builds it."""
    schema = arrow_schema()
    indices = pa.array([dictionary.index(t) for t in types], pa.int32())
    columns = {
        "evt.num": pa.array(nums, pa.int64()),
        "evt.time": pa.array([1_700_000_000_000_000_000 + n for n in nums], pa.timestamp("ns")),
        "evt.type": pa.DictionaryArray.from_arrays(indices, pa.array(dictionary)),
        "evt.dir": pa.array(["<"] * len(nums), schema.field("evt.dir").type),
    }
    return pa.Table.from_arrays(
        [columns.get(f.name, pa.nulls(len(nums), f.type)) for f in schema], schema=schema)


def killed_capture_spool(path: Path) -> Path:
    segment = Segment(path, TraceMeta(source=SOURCE_LIVE, hostname="h"))
    segment.write(batch([1, 2], ["openat", "close"], ["openat", "close", "unused"]))
    segment.write(batch([3, 4], ["execve", "close"], ["close", "execve"]))
    segment._file.close()  # no end of stream: the capture was killed
    return segment.spool


def test_recover_writes_the_trace_next_to_the_spool(tmp_path: Path) -> None:
    spool = killed_capture_spool(tmp_path / "t.parquet")
    result = run("recover", str(spool))
    assert result.exit_code == 0, result.output
    assert result.output == f"Recovered 4 events into {tmp_path / 't.parquet'} (drops unknown).\n"
    assert not spool.exists()
    in_order = read_in_event_order(tmp_path / "t.parquet", ["evt.type"]).column(0)
    assert in_order.to_pylist() == ["openat", "close", "execve", "close"]
    assert_clustered(tmp_path / "t.parquet")
    # one dictionary for the row group, holding exactly the values used
    types = pq.read_table(tmp_path / "t.parquet", columns=["evt.type"]).column(0)
    assert sorted(types.chunk(0).dictionary.to_pylist()) == ["close", "execve", "openat"]


def test_recover_to_another_file_with_compact_encodings(tmp_path: Path) -> None:
    spool = killed_capture_spool(tmp_path / "t.parquet")
    result = run("recover", str(spool), "-o", str(tmp_path / "r.parquet"))
    assert result.exit_code == 0, result.output
    assert encodings(tmp_path / "r.parquet")["evt.num"] == ("RLE", "DELTA_BINARY_PACKED")
    meta = TraceMeta.from_kv(pq.ParquetFile(tmp_path / "r.parquet").metadata.metadata)
    assert meta.events == 4 and meta.dropped is None and meta.options["recovered"] is True


def test_a_failed_spool_write_ends_the_capture_with_its_error() -> None:
    # Spool writes run in their own thread; their failure must still stop the capture.
    class FullDisk:
        def write(self, batch: object) -> None:
            raise OSError(28, "No space left on device")

    loop = _Loop(None, None, None, RecordOptions(), None, threading.Event())  # type: ignore
    try:
        loop._spool(FullDisk(), None)  # type: ignore[arg-type]
        with pytest.raises(OSError, match="No space left"):
            loop.wait_writes()
        loop._spool(FullDisk(), None)  # type: ignore[arg-type]
        assert loop.writes[0].exception(timeout=30) is not None  # it failed meanwhile
        with pytest.raises(OSError, match="No space left"):
            loop._spool(FullDisk(), None)  # type: ignore[arg-type]  # the next flush sees it
    finally:
        loop.spooler.shutdown(wait=True)


def test_recover_refuses_what_is_not_a_spool(tmp_path: Path) -> None:
    other = tmp_path / "t.parquet"
    other.write_bytes(b"")
    result = run("recover", str(other))
    assert result.exit_code == 1
    assert result.output == f"Error: {other} is not a capture spool (its name ends in .spool).\n"
    assert run("recover", str(tmp_path / "none.spool")).exit_code == 2


def encodings(path: Path) -> dict[str, tuple[str, ...]]:
    md = pq.ParquetFile(path).metadata.row_group(0)
    return {md.column(i).path_in_schema: md.column(i).encodings for i in range(md.num_columns)}


# ---- live -------------------------------------------------------------------------------------

@contextmanager
def workload(*argv: str) -> Iterator[None]:
    """Run `argv` every 50 ms in a thread while the block runs (the capture starts in it)."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
            time.sleep(0.05)

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(10)


@pytest.mark.usefixtures("require_bpf")
def test_record_writes_a_readable_trace(tmp_path: Path) -> None:
    out = tmp_path / "t.parquet"
    with workload("cat", "/etc/hostname"):
        result = run("record", "-o", str(out), "--duration", "2s", "--comm", "cat")
    assert result.exit_code == 0, result.output
    summary = result.output.splitlines()[-1]
    assert summary.startswith("Recorded ") and summary.endswith(f"in {out}.")
    assert " (0 dropped) in " in summary and " bytes/event, " in summary
    info = json.loads(run("info", str(out), "--format", "json").output)
    assert info["events"] == int(summary.split()[1].replace(",", "")) > 0
    assert info["dropped"] == 0 and info["sources"] == ["live"]
    assert info["options"]["comms"] == ["cat"]
    rows = pq.read_table(out, columns=["proc.name", "fd.name"]).to_pylist()
    assert {r["proc.name"] for r in rows} == {"cat"}
    assert {"proc.name": "cat", "fd.name": "/etc/hostname"} in rows
    assert encodings(out)["evt.time"] == ("RLE", "DELTA_BINARY_PACKED")


@pytest.mark.usefixtures("require_bpf")
def test_record_excludes_commands_and_rotates(tmp_path: Path) -> None:
    out = tmp_path / "segments"
    with workload("cat", "/etc/hostname"), workload("head", "-c1", "/etc/hostname"):
        result = run("record", "-o", str(out), "--duration", "2.5s", "--rotate-seconds", "1",
                     "--exclude-comm", "cat")
    assert result.exit_code == 0, result.output
    assert f" segments in {out}." in result.output
    segments = sorted(out.glob("segment-*.parquet"))
    assert len(segments) >= 2 and not list(out.glob("*.spool"))
    rows = pa.concat_tables(pq.read_table(s, columns=["proc.name", "evt.type"])
                            for s in segments).to_pylist()
    names = {r["proc.name"] for r in rows}
    assert "head" in names
    # only the execve that turned a child into cat: its later syscalls are filtered out
    assert {r["evt.type"] for r in rows if r["proc.name"] == "cat"} <= {"execve"}



def test_doctor_warns_when_container_filtering_cannot_run_in_the_kernel(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(doctor, "tracefs_root", lambda: tmp_path)
    monkeypatch.setattr(doctor, "detect_features",
                        lambda root: Features(True, True, cgroup_mkdir=False))
    found = doctor.check_optional_tracepoints()
    assert found.status == doctor.WARNING and "--container filters in user space" in found.detail
    monkeypatch.setattr(doctor, "detect_features",
                        lambda root: Features(True, True, cgroup_mkdir=True))
    assert doctor.check_optional_tracepoints().status == doctor.OK
