"""Benchmark: the cost of converting a segment's spool into its Parquet trace, per event.

`record.spool_to_trace` (compact.expand, then TraceWriter) on a copy of SPOOL, --repeat times in
this process, printing the CPU time (user + system) and wall time per event of the best run and
the process's peak RSS; then once in the conversion worker (capture/convert_worker.py) as a
capture runs it, with the worker's CPU time. The CPU time is the figure to compare: the wall
time grows with whatever else the machine runs. The two traces must be equal.

Without SPOOL, --record SECONDS first records one (root, BPF, gcc): a capture of the C load
(bench/capture/load.c close: close(-1) as fast as it goes), killed with SIGKILL once the
load has ended and a flush has passed, leaves its spool as a crash would (`capture recover`
converts the same).

Usage (from the repository root):
    .venv/bin/python bench/capture/convert.py SPOOL [--repeat 3] [--row-group-rows N]
    .venv/bin/python bench/capture/convert.py --record 4 [--keep DIR] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from capture.record import _spool_meta, spool_to_trace  # noqa: E402
from capture.trace_writer import DEFAULT_ROW_GROUP_ROWS  # noqa: E402

LOAD_C = Path(__file__).with_name("load.c")
CAPTURE = """
import sys
sys.path.insert(0, {root!r})
from capture.record import RecordOptions, record
record(RecordOptions(comms=("load",)), {out!r})
"""


def record_spool(seconds: float, work: Path) -> Path:
    """The spool a capture of `seconds` of the C load leaves when killed."""
    load, out = work / "load", work / "recorded.parquet"
    subprocess.run(["gcc", "-O2", "-o", str(load), str(LOAD_C)], check=True)
    spool = out.with_name(out.name + ".spool")
    child = subprocess.Popen([sys.executable, "-c", CAPTURE.format(root=str(ROOT), out=str(out))])
    try:
        deadline = time.monotonic() + 60
        while not spool.exists():
            if child.poll() is not None or time.monotonic() > deadline:
                sys.exit("the capture did not start")
            time.sleep(0.1)
        time.sleep(1.5)  # the probe is attached a moment after the spool is created
        made = subprocess.run([str(load), "close", "0", str(seconds)], check=True,
                              capture_output=True, text=True).stdout.strip()
        print(f"load: {made}")
        time.sleep(2.5)  # the capture drains the ring buffer and flushes
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    return spool


def cpu() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    return me.ru_utime + me.ru_stime


def cpu_of(pid: int) -> float:
    """A process's CPU seconds so far (utime + stime, /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def in_process(spool: Path, work: Path, rows: int, repeat: int) -> tuple[int, float, float]:
    """(events, best CPU seconds, its wall seconds)."""
    best: tuple[int, float, float] | None = None
    for i in range(repeat):
        copy = work / f"here-{i}.parquet.spool"
        shutil.copy(spool, copy)
        c, w = cpu(), time.perf_counter()
        meta = spool_to_trace(copy, copy.with_suffix(""), _spool_meta(copy), {}, rows)
        run = (meta.events, cpu() - c, time.perf_counter() - w)
        best = run if best is None or run[1] < best[1] else best
    assert best is not None
    return best


def in_worker(spool: Path, work: Path, rows: int) -> tuple[float, float] | None:
    """(the worker's CPU seconds, wall seconds), None where there is no worker."""
    try:
        from capture.convert_worker import Converter, Job
    except ImportError:
        return None
    copy = work / "there.parquet.spool"
    shutil.copy(spool, copy)
    converter = Converter()
    converter.start()
    try:
        pid = converter._worker.pid  # type: ignore[union-attr]
        time.sleep(1.0)  # its start (imports) is not the conversion's cost
        c, w = cpu_of(pid), time.perf_counter()
        converter.convert(Job(copy, copy.with_suffix(""), _spool_meta(copy), {}, rows))
        wall, used = time.perf_counter() - w, cpu_of(pid) - c
    finally:
        converter.close()
    assert pq.read_table(copy.with_suffix("")).equals(pq.read_table(work / "here-0.parquet"))
    return used, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spool", type=Path, nargs="?")
    parser.add_argument("--record", type=float, metavar="SECONDS",
                        help="record a spool of the C load first (root)")
    parser.add_argument("--keep", type=Path, help="keep the recorded spool in this directory")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--row-group-rows", type=int, default=DEFAULT_ROW_GROUP_ROWS)
    args = parser.parse_args()
    if (args.spool is None) == (args.record is None):
        parser.error("give SPOOL or --record SECONDS")
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print(f"Command: {' '.join(sys.argv)}\nLoad average before: {load}")
    with tempfile.TemporaryDirectory(prefix="bench-convert-") as tmp:
        work = Path(tmp)
        spool = args.spool or record_spool(args.record, args.keep or work)
        print(f"{spool}: {spool.stat().st_size:,} bytes")
        events, c, w = in_process(spool, work, args.row_group_rows, args.repeat)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"in process, best of {args.repeat}: {events:,} events, CPU {c / events * 1e6:.2f} "
              f"us/event (wall {w / events * 1e6:.2f}); peak RSS {rss:,.0f} MB")
        worker = in_worker(spool, work, args.row_group_rows)
        if worker is not None:
            print(f"in the worker, once: CPU {worker[0] / events * 1e6:.2f} us/event "
                  f"(wall {worker[1] / events * 1e6:.2f}); same trace")
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print(f"Load average after: {load}")


if __name__ == "__main__":
    main()
