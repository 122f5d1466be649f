"""Benchmark: live capture's sustained rate, the slowdown it causes, and bytes/event on disk.

Needs root and BPF. Every capture is `capture.record.record` with the options of a plain
`capture record` (default preset, 32 MiB ring buffer), in this process:

1. Sustained rate with zero drops: a paced syscall load (--load: `c-close`, the default, is
   close(-1) in a C loop, bench/capture/load.c compiled with `cc` at start: the cheapest syscall
   the default preset records, so the capture, not the load, is what gives; `c-open` opens and
   closes /etc/hostname in C; `python` is that same loop in bench/capture/load.py, which tops out
   near 550k syscalls/s on this machine), paced at a rate for --step-seconds, under a capture of
   that process only (`--pid`: the rest of the machine
   does not add events to the count). The rate grows by --factor from --start until a step drops
   events or the capture falls behind: over the step it processes less than 95% of the load's
   rate (the 32 MiB ring buffer would absorb the excess for many seconds before dropping). The
   highest clean step's rate is the result. When the load itself cannot reach a rate, the search
   stops there and says so. Each step also shows the capture's CPU time per event (the threads
   of its process, while the load ran: what bounds its rate on a free core; not the segment
   conversions, in a worker process of their own) and the CPU the machine's other processes
   took meanwhile, in cores: this 2-core machine is often shared, and a busy neighbour lowers
   the result. With --rotate-seconds S (or --rotate-size BYTES), the capture rotates segments
   as `capture record --rotate-seconds S` does: finished segments are converted into Parquet
   (by the worker) while the capture goes on; each step also shows how long the capture's end
   waited for those conversions after the load stopped.
2. Slowdown: two syscall-heavy workloads timed alone (--runs before and --runs after) and under
   a capture (--runs) that follows their process tree (`--follow`; --whole-machine: a capture
   of everything, whose events then include the neighbours'), medians compared, in wall time and
   in the CPU time of the workload's processes (where the kernel side of the capture is paid):
   an open/close loop of 400,000 syscalls as fast as one Python process goes, the same loop in C
   (2,000,000 syscalls), close(-1) in C (4,000,000 syscalls: nothing but the cost per recorded
   syscall), a shell starting 200 short processes (`sh -c 'cat /etc/hostname; ls /'`), a
   tree copy through tar (`tar -cf - /usr/include | cat >/dev/null`: an open, reads and a
   close per file, as backups do; and the same over /usr/share, ~47k files, long enough to time
   well) and a build (load.c compiled 10 times by cc: processes,
   headers opened, temporary files). bench/capture/repeat.py runs and times them.
   The floor: the same workloads timed (--runs) with two EMPTY BPF programs on the same raw
   tracepoints (raw_syscalls sys_enter/sys_exit): what tracing every syscall costs before a
   capture does anything, i.e. what no tracepoint-based capture can go below.
3. Bytes/event: the size of the trace each capture in 2 wrote, over its events.
4. Side by side with sysdig: Debian's sysdig 0.29.3 cannot capture live here (no scap kernel
   module for this kernel, and its eBPF probe is neither shipped nor buildable), so there is no
   sysdig capture of the same behaviour. For scale only, the shared k8s capture
   (/work/shared/anchors/scap, recorded by sysdig on another machine: a Kubernetes control plane,
   I/O buffers included, enter and exit events counted apart) gives sysdig's own bytes per event
   and, imported (`capture import`), this project's bytes per row of the same events.

With --rules FILE, every capture is a `capture record --rules FILE` one: the syscalls those
rules need are rows, those that only keep the tables right (close...) are applied but not
written; the rates count both (syscalls processed), bytes/event is per row.

The command line, the machine and its load average before and after are printed with the
figures.

Usage (root, from the repository root; takes two to three minutes, not part of the test suite):
    .venv/bin/python bench/bench_capture.py [--step-seconds 5] [--start 20000] [--factor 1.4]
        [--runs 3] [--keep DIR] [--whole-machine] [--rules FILE]... [--scap FILE | --no-scap]
        [--load c-close|c-open|python] [--no-floor] [--only rate|slowdown] [--workload WORDS]...
        [--rotate-seconds S | --rotate-size BYTES]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from capture.doctor import FAILED, run_checks  # noqa: E402
from capture.record import RecordOptions, RecordProgress, RecordStats, record  # noqa: E402

LOAD = ROOT / "bench" / "capture" / "load.py"
LOAD_C = ROOT / "bench" / "capture" / "load.c"
REPEAT = ROOT / "bench" / "capture" / "repeat.py"
SCAP = Path("/work/shared/anchors/scap/bencer_k8s__capture.scap")
FLUSH_SECONDS = 0.5  # finer than the default 1 s: more rate samples per step
KEEP_UP = 0.95  # the capture must process this share of the load's rate
OPEN_CLOSE_SYSCALLS = 400_000
C_OPEN_CLOSE_SYSCALLS = 2_000_000
C_CLOSE_SYSCALLS = 4_000_000
TAR = "tar -cf - /usr/include 2>/dev/null | cat >/dev/null"
# The same over a larger tree (~47k files here, ~1.3 s): long enough to time without the noise
# of a 0.15 s run.
TAR_LARGE = "tar -cf - /usr/share 2>/dev/null | cat >/dev/null"
COMPILES = 10
FLOOR_PROGRAM = """
RAW_TRACEPOINT_PROBE(sys_enter) { return 0; }
RAW_TRACEPOINT_PROBE(sys_exit) { return 0; }
"""
PROCESSES = ("for i in $(seq 200); do sh -c 'cat /etc/hostname >/dev/null; ls / >/dev/null'; "
             "done")
SYSDIG_LIVE = ("sysdig 0.29.3 cannot capture live on this kernel (no scap kernel module; its "
               "eBPF probe is neither shipped nor buildable): no sysdig capture of the same "
               "workloads to set beside these.")


# ---- CPU accounting -------------------------------------------------------------------------

@dataclass(frozen=True)
class Cpu:
    """CPU seconds so far: the whole machine's busy time, and this process's and its reaped
    children's own."""

    at: float
    machine: float
    own: float
    children: float

    @staticmethod
    def now() -> Cpu:
        with open("/proc/stat") as stat:
            ticks = [int(x) for x in stat.readline().split()[1:9]]
        busy = sum(ticks) - ticks[3] - ticks[4]  # all but idle and iowait
        me = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return Cpu(time.monotonic(), busy / os.sysconf("SC_CLK_TCK"), me.ru_utime + me.ru_stime,
                   kids.ru_utime + kids.ru_stime)

    def others_since(self, before: Cpu) -> float:
        """Cores the machine's other processes used on average since `before`."""
        ours = (self.own - before.own) + (self.children - before.children)
        return max(0.0, (self.machine - before.machine) - ours) / max(self.at - before.at, 1e-9)


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# ---- 1. sustained rate ----------------------------------------------------------------------

@dataclass(frozen=True)
class Step:
    target: int  # syscalls/s asked of the load
    achieved: float  # syscalls/s the load made
    captured: float  # events/s the capture processed during the load
    dropped: int
    drops: dict[str, int]  # by counter: the kernel's, and records enrichment could not use
    cpu_per_event: float  # the capture's CPU seconds per event during the load
    others: float  # cores the machine's other processes used during the step
    tail: float = 0.0  # seconds the capture's end took after the load stopped (conversions)

    @property
    def load_reached(self) -> bool:
        return self.achieved >= KEEP_UP * self.target

    @property
    def clean(self) -> bool:
        return self.dropped == 0 and self.captured >= KEEP_UP * self.achieved


@dataclass(frozen=True)
class Mark:
    """The capture's state at one flush."""

    at: float
    events: int
    cpu: float  # this process's CPU seconds


def capture_during(work: Callable[[], Any], out: Path, options: RecordOptions | None = None
                   ) -> tuple[Any, RecordStats, list[Mark]]:
    """Record while `work()` runs in a thread (started once the probe runs); returns its
    result, the capture's stats and a Mark at each flush."""
    stop, ready = threading.Event(), threading.Event()
    marks: list[Mark] = []
    result: dict[str, Any] = {}

    def progress(p: RecordProgress) -> None:
        me = resource.getrusage(resource.RUSAGE_SELF)
        marks.append(Mark(time.monotonic(), p.events + p.table_only, me.ru_utime + me.ru_stime))
        ready.set()

    def run() -> None:
        ready.wait()
        try:
            if not stop.is_set():
                result["value"] = work()
            time.sleep(2 * FLUSH_SECONDS)  # the last events reach the ring buffer
        finally:
            stop.set()

    thread = threading.Thread(target=run)
    thread.start()
    try:
        options = options or RecordOptions()
        stats = record(replace(options, flush_seconds=FLUSH_SECONDS), out, progress, stop)
    finally:
        stop.set()
        ready.set()
        thread.join()
    return result.get("value"), stats, marks


def compile_load(work: Path) -> Path:
    """bench/capture/load.c built into `work` (cc from Debian's gcc)."""
    binary = work / "load"
    subprocess.run(["cc", "-O2", "-Wall", "-o", str(binary), str(LOAD_C)], check=True)
    return binary


def load_command(load: str, binary: Path | None) -> list[str]:
    """The command of a --load choice, before its arguments."""
    if load == "python":
        return [sys.executable, str(LOAD)]
    assert binary is not None
    return [str(binary), load.removeprefix("c-")]


def step(rate: int, seconds: float, out: Path, rules: tuple[str, ...], load: list[str],
         rotation: RecordOptions) -> Step:
    """One paced load under a capture of its own pid (it waits for the capture to start);
    `rotation` holds the rotation options."""
    before = Cpu.now()
    child = subprocess.Popen([*load, "--wait", str(rate), str(seconds)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def work() -> dict[str, float]:
        output, _ = child.communicate("go\n")
        return {**json.loads(output), "ended": time.monotonic()}

    try:
        ran, stats, marks = capture_during(work, out, replace(rotation, pids=(child.pid,),
                                                              rules=rules))
    finally:
        child.kill()
        child.wait()
    # The capture stops 2 flushes after the load (capture_during), then converts what is left.
    tail = time.monotonic() - ran["ended"] - 2 * FLUSH_SECONDS
    others = Cpu.now().others_since(before)
    start, end = ran["ended"] - ran["seconds"], ran["ended"]
    inside = [m for m in marks if start + FLUSH_SECONDS <= m.at <= end]
    captured = cpu = 0.0
    if len(inside) >= 2:
        first, last = inside[0], inside[-1]
        captured = (last.events - first.events) / (last.at - first.at)
        cpu = (last.cpu - first.cpu) / max(last.events - first.events, 1)
    return Step(rate, ran["syscalls"] / ran["seconds"], captured, stats.dropped, stats.drops,
                cpu, others, tail)


def sustained(args: argparse.Namespace, work: Path, load: list[str], console: Console
              ) -> list[Step]:
    steps: list[Step] = []
    rate = args.start
    rotation = RecordOptions(rotate_seconds=args.rotate_seconds, rotate_bytes=args.rotate_size)
    while True:
        found = step(int(rate), args.step_seconds, work / f"step-{int(rate)}.parquet",
                     tuple(args.rules), load, rotation)
        tail = f"; end waited {found.tail:.1f} s" if rotation.rotating else ""
        steps.append(found)
        console.print(f"  {found.target:>9,}/s asked: load {found.achieved:>9,.0f}/s, capture "
                      f"{found.captured:>9,.0f}/s, {found.dropped:,} dropped"
                      f"{_which(found.drops)}; capture CPU {found.cpu_per_event * 1e6:.2f} "
                      f"us/event; others used {found.others:.2f} cores{tail}", highlight=False)
        if not (found.clean and found.load_reached):
            return steps
        rate *= args.factor


def _which(drops: dict[str, int]) -> str:
    counts = ", ".join(f"{name} {n:,}" for name, n in drops.items() if n)
    return f" ({counts})" if counts else ""


# ---- 2. slowdown ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Timing:
    wall: float  # seconds
    cpu: float  # CPU seconds of the workload's processes


@dataclass(frozen=True)
class Slowdown:
    workload: str
    alone: Timing  # medians
    captured: Timing
    stats: RecordStats
    floor: Timing | None  # under empty programs on the same tracepoints

    @property
    def floor_percent(self) -> float | None:
        return None if self.floor is None else (self.floor.wall / self.alone.wall - 1) * 100

    @property
    def wall_percent(self) -> float:
        return (self.captured.wall / self.alone.wall - 1) * 100

    @property
    def cpu_percent(self) -> float:
        return (self.captured.cpu / self.alone.cpu - 1) * 100


def repeated(runs: int, command: list[str], wait: bool = False
             ) -> tuple[subprocess.Popen[str], Callable[[], list[Timing]]]:
    """bench/capture/repeat.py running `command` `runs` times, and the function that starts
    it (with `wait`, once a line is sent) and returns its timings."""
    child = subprocess.Popen([sys.executable, str(REPEAT), *(["--wait"] if wait else []),
                              str(runs), *command],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def finish() -> list[Timing]:
        output, _ = child.communicate("go\n" if wait else None)
        found = json.loads(output)
        return [Timing(w, c) for w, c in zip(found["wall"], found["cpu"], strict=True)]

    return child, finish


def workloads(binary: Path) -> dict[str, list[str]]:
    """Name -> the command of a workload."""
    return {
        f"open/close x{OPEN_CLOSE_SYSCALLS // 1000}k (Python)":
            [sys.executable, str(LOAD), "--syscalls", str(OPEN_CLOSE_SYSCALLS)],
        f"open/close x{C_OPEN_CLOSE_SYSCALLS // 1_000_000}M (C)":
            [str(binary), "open", "--syscalls", str(C_OPEN_CLOSE_SYSCALLS)],
        f"close(-1) x{C_CLOSE_SYSCALLS // 1_000_000}M (C)":
            [str(binary), "close", "--syscalls", str(C_CLOSE_SYSCALLS)],
        "200 processes": ["bash", "-c", PROCESSES],
        "tar of /usr/include": ["bash", "-c", TAR],
        "tar of /usr/share": ["bash", "-c", TAR_LARGE],
        f"cc x{COMPILES}": ["bash", "-c", f"for i in $(seq {COMPILES}); do cc -O2 -c "
                            f"{shlex.quote(str(LOAD_C))} -o /dev/null; done"],
    }


def median(timings: list[Timing]) -> Timing:
    return Timing(statistics.median(t.wall for t in timings),
                  statistics.median(t.cpu for t in timings))


def floor_timings(runs: int, commands: list[list[str]]) -> list[Timing]:
    """Each command's median timing under two empty programs on the capture's tracepoints."""
    from bcc import BPF  # Debian's python3-bpfcc

    program = BPF(text=FLOOR_PROGRAM)
    try:
        return [median(repeated(runs, command)[1]()) for command in commands]
    finally:
        program.cleanup()


def slowdowns(runs: int, work: Path, whole_machine: bool, rules: tuple[str, ...],
              binary: Path, floor: bool, only: list[str]) -> list[Slowdown]:
    found = []
    named = {name: command for name, command in workloads(binary).items()
             if not only or any(word in name for word in only)}
    floors: list[Timing | None] = list(floor_timings(runs, list(named.values()))) if floor \
        else [None] * len(named)
    for i, (name, command) in enumerate(named.items()):
        before = repeated(runs, command)[1]()
        child, finish = repeated(runs, command, wait=True)
        options = RecordOptions(rules=rules, follow_pids=() if whole_machine else (child.pid,))
        try:
            times, stats, _ = capture_during(finish, work / f"workload-{i}.parquet", options)
        finally:
            child.kill()
            child.wait()
        alone = median(before + repeated(runs, command)[1]())  # before and after: less drift
        found.append(Slowdown(name, alone, median(times), stats, floors[i]))
    return found


# ---- 4. sysdig's format, for scale ----------------------------------------------------------

@dataclass(frozen=True)
class ScapScale:
    scap: Path
    events: int
    scap_bytes: int
    trace_bytes: int


def scap_scale(scap: Path, work: Path) -> ScapScale:
    from capture.scap_import import import_scap

    stats = import_scap(scap, work / "imported.parquet")
    return ScapScale(scap, stats.events, scap.stat().st_size, stats.output_bytes)


# ---- report ---------------------------------------------------------------------------------

def report(steps: list[Step], slow: list[Slowdown], scale: ScapScale | None,
           console: Console) -> None:
    if steps:
        rate_report(steps, console)
    if slow:
        slowdown_report(slow, console)
    console.print(SYSDIG_LIVE)
    if scale is not None:
        console.print(
            f"For scale, not the same behaviour: {scale.scap.name} (sysdig, another machine, a "
            f"Kubernetes control plane, I/O buffers included) holds {scale.events:,} events in "
            f"{scale.scap_bytes:,} bytes = {scale.scap_bytes / scale.events:.1f} bytes/event "
            f"(gzip; enter and exit are two events); imported into a trace, "
            f"{scale.trace_bytes / scale.events:.1f} bytes/row.", highlight=False)


def rate_report(steps: list[Step], console: Console) -> None:
    clean = [s for s in steps if s.clean and s.load_reached]
    last = steps[-1]
    best = (f"{clean[-1].captured:,.0f} events/s" if clean
            else "none measured (the first step failed)")
    console.print(f"\nSustained with zero drops: [bold]{best}[/] (stopped: {_why(last)}).")
    if clean and clean[-1].cpu_per_event:
        cpu = clean[-1].cpu_per_event
        console.print(f"The capture's CPU time there: {cpu * 1e6:.2f} us/event, so at most "
                      f"~{1 / cpu:,.0f} events/s on a core of its own (the load and the "
                      "machine's other processes need the rest).", highlight=False)


def slowdown_report(slow: list[Slowdown], console: Console) -> None:
    table = Table("workload", "alone", "under capture", "slowdown", "floor", "CPU alone",
                  "CPU captured", "CPU slowdown", "events", "dropped", "bytes/event",
                  title="Workloads timed alone and under capture (median); floor: the "
                        "slowdown under empty programs on the same tracepoints")
    for s in slow:
        floor = "" if s.floor_percent is None else f"{s.floor_percent:+.0f}%"
        table.add_row(s.workload, f"{s.alone.wall:.2f} s", f"{s.captured.wall:.2f} s",
                      f"{s.wall_percent:+.0f}%", floor, f"{s.alone.cpu:.2f} s",
                      f"{s.captured.cpu:.2f} s", f"{s.cpu_percent:+.0f}%",
                      f"{s.stats.events:,}", f"{s.stats.dropped:,}",
                      f"{s.stats.bytes_per_event:.1f}")
    console.print(table)


def _why(last: Step) -> str:
    if not last.load_reached:
        return "the load generator could not go faster"
    kept_pace = last.captured >= KEEP_UP * last.achieved
    if last.dropped and kept_pace:
        # Seen on Linux 6.18: a few reservations fail while the reader is far from full.
        return (f"the next step ({last.target:,}/s) dropped {last.dropped:,} while the capture "
                "kept pace")
    return f"the next step ({last.target:,}/s) " + ("dropped events" if last.dropped
                                                    else "fell behind")


def refuse_unless_capture_can_run() -> None:
    failed = [c for c in run_checks(compile_program=False).checks if c.status == FAILED]
    if failed:
        sys.exit("capture cannot run here: " +
                 "; ".join(f"{c.name}: {c.detail} ({c.fix})" for c in failed))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--step-seconds", type=float, default=5.0)
    parser.add_argument("--start", type=int, default=20_000, help="first rate, syscalls/s")
    parser.add_argument("--factor", type=float, default=1.4, help="rate growth per step")
    parser.add_argument("--runs", type=int, default=3, help="runs of each timed workload")
    parser.add_argument("--keep", type=Path, help="keep the traces in this directory")
    parser.add_argument("--whole-machine", action="store_true",
                        help="capture the whole machine while timing the workloads (default: "
                             "their process trees, as --follow)")
    parser.add_argument("--rules", action="append", default=[], metavar="FILE",
                        help="capture as `capture record --rules FILE` (repeatable)")
    parser.add_argument("--scap", type=Path, default=SCAP,
                        help="the sysdig capture imported for scale (section 4)")
    parser.add_argument("--no-scap", action="store_true", help="leave out section 4")
    parser.add_argument("--load", choices=("c-close", "c-open", "python"), default="c-close",
                        help="the paced load of section 1")
    parser.add_argument("--no-floor", action="store_true",
                        help="do not time the workloads under empty programs")
    parser.add_argument("--rotate-seconds", type=float,
                        help="section 1: rotate segments every S seconds")
    parser.add_argument("--rotate-size", type=int, help="section 1: rotate at BYTES")
    parser.add_argument("--only", choices=("rate", "slowdown"),
                        help="run only section 1 (rate) or 2-3 (slowdown)")
    parser.add_argument("--workload", action="append", default=[], metavar="WORDS",
                        help="sections 2-3: only the workloads whose name contains WORDS "
                             "(repeatable)")
    args = parser.parse_args()
    refuse_unless_capture_can_run()
    console = Console()
    if not console.is_terminal:
        console = Console(width=140)  # the table on one line per row in a log
    command = shlex.join([".venv/bin/python", "bench/bench_capture.py", *sys.argv[1:]])
    console.print(f"Capture benchmark: {platform.node()}, {os.cpu_count()} CPUs, "
                  f"kernel {platform.release()}, Python {platform.python_version()}")
    console.print(f"Command: {command}\nLoad average before: {load_average()}",
                  highlight=False)
    with tempfile.TemporaryDirectory(prefix="bench-capture-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        binary = compile_load(work)
        steps: list[Step] = []
        if args.only != "slowdown":
            console.print(f"Sustained rate ({args.step_seconds:g} s steps of the {args.load} "
                          "load):")
            steps = sustained(args, work, load_command(args.load, binary), console)
        slow: list[Slowdown] = []
        if args.only != "rate":
            slow = slowdowns(args.runs, work, args.whole_machine, tuple(args.rules), binary,
                             not args.no_floor, args.workload)
        use_scap = not args.no_scap and args.scap.exists()
        scale = scap_scale(args.scap, work) if use_scap else None
    report(steps, slow, scale, console)
    console.print(f"Load average after: {load_average()}", highlight=False)


if __name__ == "__main__":
    main()
