"""Benchmark: what `--container ID` in the kernel saves user space, on a busy machine.

Needs root, BPF, a cgroup v2 hierarchy and the cgroup:cgroup_mkdir tracepoint. The same workload
runs under two captures of one sandbox container (capture/container_sandbox.py), one with the
cgroup filter in the capture program (what `capture record --container ID` loads here) and one
without it (the user-space filter alone, as before):

- in the container: a shell that redirects a file into `read` --reads times (openat, fcntl,
  dup2, close... per read, no exec);
- on the host, meanwhile: bench/capture/load.py opening and closing /etc/hostname at --rate
  syscalls/s, and a shell starting --execs short programs (`cat /etc/hostname`).

Part 1 (the probe alone): the capture program is loaded and its ring buffer read and decoded
(probe.decode) as the workload runs, counting the records and bytes that reach user space, split
into those of the container's cgroups and the others (by kind: syscalls, the exec, chdir and
set*id calls every process still sends, fork/exit). Part 2 (`capture.record.record`, the whole
capture): events written, the records user space received for processes it then left out, and
the capture process's CPU time (user + system: reading, decoding, enriching, writing).

Each part alternates the two programs --repeat times and shows every run: a shared 2-core
machine makes single runs noisy.

Usage (root, from the repository root; about a minute):
    .venv/bin/python bench/bench_container_filter.py [--seconds 5] [--rate 20000]
        [--reads 20000] [--execs 200] [--repeat 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import capture.record as record_module  # noqa: E402
from capture.bpf_render import DEFAULT_SYSCALLS, PROC_STATE_SYSCALLS, SYSCALL_BY_NR  # noqa: E402
from capture.cgroup_filter import CgroupPlan, CgroupVerdicts, plan  # noqa: E402
from capture.cgroup_index import CgroupIndex  # noqa: E402
from capture.container_filter import ContainerSelection  # noqa: E402
from capture.container_runtime import ContainerRuntimes  # noqa: E402
from capture.container_sandbox import ContainerSandbox  # noqa: E402
from capture.probe import (  # noqa: E402
    REC_EXEC_ARGS,
    REC_EXIT,
    REC_FORK,
    REC_SYSCALL,
    Probe,
    decode,
    detect_features,
    tracefs_root,
)
from capture.record import RecordOptions, RecordStats, record  # noqa: E402

LOAD = ROOT / "bench" / "capture" / "load.py"


@contextmanager
def workload(box: ContainerSandbox, args: argparse.Namespace) -> Iterator[Callable[[], bool]]:
    """Start the container's reads and the host's load; yields "still running?"."""
    reads = (f"i=0; while [ $i -lt {args.reads} ]; do read x < /etc/hostname; i=$((i+1)); "
             "done")
    procs = [
        subprocess.Popen(box.command(["sh", "-c", reads]), stdin=subprocess.DEVNULL),
        subprocess.Popen([sys.executable, str(LOAD), str(args.rate), str(args.seconds)],
                         stdout=subprocess.DEVNULL),
        subprocess.Popen(["sh", "-c", f"for i in $(seq {args.execs}); do cat /etc/hostname; "
                                      "sleep 0.01; done"], stdout=subprocess.DEVNULL),
    ]
    try:
        yield lambda: any(p.poll() is None for p in procs)
    finally:
        for p in procs:
            p.wait(120)


def box_cgroups(box: ContainerSandbox) -> set[int]:
    return {os.stat(d).st_ino for d in box.cgroups}


def probe_run(box: ContainerSandbox, kernel: bool, args: argparse.Namespace) -> Counter[str]:
    """Records and bytes reaching user space, by where they come from."""
    tracefs = tracefs_root()
    assert tracefs is not None
    features = detect_features(tracefs)
    selection = ContainerSelection.parse((box.id,), ContainerRuntimes(()))
    cplan = plan(selection, features.cgroup_mkdir) if kernel else None
    options = RecordOptions(containers=(box.id,)).program(os.getpid(), features, cplan)
    assert options.cgroup_filter == kernel
    mine = box_cgroups(box)
    counts: Counter[str] = Counter()
    with Probe(options) as probe:
        if cplan is not None:
            CgroupVerdicts(probe.cgroup_map(), cplan, selection, CgroupIndex.detect()).seed()
        ring = probe.ring
        assert ring is not None
        with workload(box, args) as running:
            idle = 0
            while running() or idle < 3:
                chunk = ring.read()
                records, used = decode(chunk)
                ring.consume(used)
                idle = 0 if used or running() else idle + 1
                for r in records:
                    where = "container" if r.cgroup_id in mine else "elsewhere"
                    counts[f"{where} records"] += 1
                    counts[f"{where} {_kind(r.kind, r.nr)}"] += 1
                counts["bytes"] += used
                if not used:
                    time.sleep(0.01)
        counts["dropped"] = sum(probe.counters().values())
    return counts


def _kind(kind: int, nr: int) -> str:
    if kind in (REC_FORK, REC_EXIT):
        return "fork/exit"
    if kind == REC_EXEC_ARGS or (kind == REC_SYSCALL and SYSCALL_BY_NR[nr].name
                                 in PROC_STATE_SYSCALLS):
        return "exec/chdir/set*id"
    return "other syscalls" if kind == REC_SYSCALL else "other records"


def record_run(box: ContainerSandbox, kernel: bool, args: argparse.Namespace,
               out: Path) -> tuple[RecordStats, float]:
    """A whole capture of the workload; its stats and the capture's CPU seconds."""
    saved = record_module.cgroup_plan
    if not kernel:  # the user-space filter alone, as before
        record_module.cgroup_plan = lambda *a: CgroupPlan(False, "user space (benchmark)")
    stop, ready = threading.Event(), threading.Event()
    result: list[RecordStats] = []
    thread = threading.Thread(target=lambda: result.append(record(
        RecordOptions(containers=(box.id,), runtime_sockets=()), out, None, stop,
        ready=ready)))
    try:
        thread.start()
        ready.wait(120)
        cpu = resource.getrusage(resource.RUSAGE_SELF)
        with workload(box, args) as running:
            while running():
                time.sleep(0.05)
        time.sleep(0.5)
        stop.set()
        thread.join(120)
        after = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        record_module.cgroup_plan = saved
        out.unlink(missing_ok=True)
    return result[0], (after.ru_utime - cpu.ru_utime) + (after.ru_stime - cpu.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="the host load's duration")
    parser.add_argument("--rate", type=int, default=20000, help="host open/close syscalls/s")
    parser.add_argument("--reads", type=int, default=20000, help="the container's reads")
    parser.add_argument("--execs", type=int, default=200, help="host processes started")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    console = Console(width=150)
    console.print(f"$ {' '.join(sys.argv)}\n{platform.node()} {platform.release()}, "
                  f"{os.cpu_count()} CPUs, load average {os.getloadavg()}; preset default "
                  f"({len(DEFAULT_SYSCALLS)} syscalls)")
    rows = ["container records", "container other syscalls", "container exec/chdir/set*id",
            "container fork/exit", "elsewhere records", "elsewhere other syscalls",
            "elsewhere exec/chdir/set*id", "elsewhere fork/exit", "bytes", "dropped"]
    with ContainerSandbox("bench", "alpine:3.20") as box, \
            tempfile.TemporaryDirectory() as tmp:
        probes = [(kernel, probe_run(box, kernel, args)) for _ in range(args.repeat)
                  for kernel in (True, False)]
        table = Table(title="1. records reaching user space (the probe alone)")
        table.add_column("")
        for kernel, _ in probes:
            table.add_column("kernel filter" if kernel else "user space only", justify="right")
        for row in rows:
            table.add_row(row, *(f"{c[row]:,}" for _, c in probes))
        console.print(table)
        runs = [(kernel, *record_run(box, kernel, args, Path(tmp) / "t.parquet"))
                for _ in range(args.repeat) for kernel in (True, False)]
    table = Table(title="2. whole captures (capture.record.record)")
    table.add_column("")
    for kernel, _, _ in runs:
        table.add_column("kernel filter" if kernel else "user space only", justify="right")
    table.add_row("container_selection", *(s.container_filter or "" for _, s, _ in runs))
    table.add_row("events written", *(f"{s.events:,}" for _, s, _ in runs))
    table.add_row("ring-buffer bytes read", *(f"{s.ring_bytes:,}" for _, s, _ in runs))
    table.add_row("records left out by user space",
                  *(f"{sum(s.left_out.values()):,}" for _, s, _ in runs))
    table.add_row("dropped", *(f"{s.dropped:,}" for _, s, _ in runs))
    table.add_row("capture CPU seconds", *(f"{cpu:.2f}" for _, _, cpu in runs))
    console.print(table)
    console.print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
