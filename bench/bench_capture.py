"""Benchmark: live capture's sustained rate, the slowdown it causes, and bytes/event on disk.

Needs root and BPF. Every capture is `capture.record.record` with the options of a plain
`capture record` (default preset, 32 MiB ring buffer), in this process:

1. Sustained rate with zero drops: the open/close loop of bench/capture/load.py, paced at a rate
   for --step-seconds, under a capture of that process only (`--pid`: the rest of the machine
   does not add events to the count). The rate grows by --factor from --start until a step drops
   events or the capture falls behind: over the step it processes less than 95% of the load's
   rate (the 32 MiB ring buffer would absorb the excess for many seconds before dropping). The
   highest clean step's rate is the result. When the load itself cannot reach a rate, the search
   stops there and says so. Other busy processes take CPU from the capture and lower the
   result: run it on a quiet machine.
2. Slowdown: two syscall-heavy workloads timed alone (--runs before and --runs after) and under
   a capture of the whole machine (--runs), medians compared: an open/close loop of 400,000
   syscalls as fast as one process goes (faster than the capture keeps up with: it drops), and
   a shell starting 200 short processes (`sh -c 'cat /etc/hostname; ls /'`).
3. Bytes/event: the size of the trace each capture in 2 wrote, over its events.

Usage (root, from the repository root; takes one to two minutes, not part of the test suite):
    .venv/bin/python bench/bench_capture.py [--step-seconds 5] [--start 20000] [--factor 1.4]
        [--runs 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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
FLUSH_SECONDS = 0.5  # finer than the default 1 s: more rate samples per step
KEEP_UP = 0.95  # the capture must process this share of the load's rate
OPEN_CLOSE_SYSCALLS = 400_000
PROCESSES = ("for i in $(seq 200); do sh -c 'cat /etc/hostname >/dev/null; ls / >/dev/null'; "
             "done")


@dataclass(frozen=True)
class Step:
    target: int  # syscalls/s asked of the load
    achieved: float  # syscalls/s the load made
    captured: float  # events/s the capture processed during the load
    dropped: int
    drops: dict[str, int]  # by counter: the kernel's, and records enrichment could not use

    @property
    def load_reached(self) -> bool:
        return self.achieved >= KEEP_UP * self.target

    @property
    def clean(self) -> bool:
        return self.dropped == 0 and self.captured >= KEEP_UP * self.achieved


@dataclass(frozen=True)
class Slowdown:
    workload: str
    alone: float  # seconds, median
    captured: float  # seconds under capture, median
    stats: RecordStats

    @property
    def percent(self) -> float:
        return (self.captured / self.alone - 1) * 100


def capture_during(work: Callable[[], Any], out: Path, options: RecordOptions | None = None
                   ) -> tuple[Any, RecordStats, list[Any]]:
    """Record while `work()` runs in a thread (started once the probe runs); returns its
    result, the capture's stats and (time, events) at each flush."""
    stop, ready = threading.Event(), threading.Event()
    marks: list[tuple[float, int]] = []
    result: dict[str, Any] = {}

    def progress(p: RecordProgress) -> None:
        marks.append((time.monotonic(), p.events))
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


def load(*args: str) -> dict[str, float]:
    """Run bench/capture/load.py; its {"syscalls", "seconds"} plus when it ended."""
    done = subprocess.run([sys.executable, str(LOAD), *args], check=True, capture_output=True,
                          text=True)
    return {**json.loads(done.stdout), "ended": time.monotonic()}


def step(rate: int, seconds: float, out: Path) -> Step:
    """One paced load under a capture of its own pid (it waits for the capture to start)."""
    child = subprocess.Popen([sys.executable, str(LOAD), "--wait", str(rate), str(seconds)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def work() -> dict[str, float]:
        output, _ = child.communicate("go\n")
        return {**json.loads(output), "ended": time.monotonic()}

    try:
        ran, stats, marks = capture_during(work, out, RecordOptions(pids=(child.pid,)))
    finally:
        child.kill()
        child.wait()
    start, end = ran["ended"] - ran["seconds"], ran["ended"]
    captured = rate_between(marks, start + FLUSH_SECONDS, end)
    return Step(rate, ran["syscalls"] / ran["seconds"], captured, stats.dropped, stats.drops)


def rate_between(marks: list[tuple[float, int]], start: float, end: float) -> float:
    """Events/s between the first and the last flush inside [start, end] (0 if under two)."""
    inside = [(t, n) for t, n in marks if start <= t <= end]
    if len(inside) < 2:
        return 0.0
    (t0, n0), (t1, n1) = inside[0], inside[-1]
    return (n1 - n0) / (t1 - t0)


def sustained(args: argparse.Namespace, work: Path, console: Console) -> list[Step]:
    steps: list[Step] = []
    rate = args.start
    while True:
        found = step(int(rate), args.step_seconds, work / f"step-{int(rate)}.parquet")
        steps.append(found)
        console.print(f"  {found.target:>9,}/s asked: load {found.achieved:>9,.0f}/s, capture "
                      f"{found.captured:>9,.0f}/s, {found.dropped:,} dropped"
                      f"{_which(found.drops)}", highlight=False)
        if not (found.clean and found.load_reached):
            return steps
        rate *= args.factor


def _which(drops: dict[str, int]) -> str:
    counts = ", ".join(f"{name} {n:,}" for name, n in drops.items() if n)
    return f" ({counts})" if counts else ""


def timed(command: list[str]) -> float:
    started = time.monotonic()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - started


def workloads() -> dict[str, Callable[[], float]]:
    """Name -> a function running the workload once and returning its seconds."""
    return {
        f"open/close x{OPEN_CLOSE_SYSCALLS // 1000}k":
            lambda: load("--syscalls", str(OPEN_CLOSE_SYSCALLS))["seconds"],
        "200 processes": lambda: timed(["bash", "-c", PROCESSES]),
    }


def slowdowns(runs: int, work: Path) -> list[Slowdown]:
    found = []
    for i, (name, run) in enumerate(workloads().items()):
        def repeated(run: Callable[[], float] = run) -> list[float]:
            return [run() for _ in range(runs)]

        before = repeated()
        times, stats, _ = capture_during(repeated, work / f"workload-{i}.parquet")
        alone = statistics.median(before + repeated())  # runs before and after: less drift
        found.append(Slowdown(name, alone, statistics.median(times), stats))
    return found


def report(steps: list[Step], slow: list[Slowdown], console: Console) -> None:
    clean = [s for s in steps if s.clean and s.load_reached]
    last = steps[-1]
    best = f"{clean[-1].captured:,.0f} events/s" if clean else "none (the first step failed)"
    console.print(f"\nSustained with zero drops: [bold]{best}[/] (stopped: {_why(last)}).")
    table = Table("workload", "alone", "under capture", "slowdown", "events", "dropped",
                  "bytes/event", title="Workloads timed alone and under capture (median)")
    for s in slow:
        table.add_row(s.workload, f"{s.alone:.2f} s", f"{s.captured:.2f} s",
                      f"{s.percent:+.0f}%", f"{s.stats.events:,}", f"{s.stats.dropped:,}",
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
    args = parser.parse_args()
    refuse_unless_capture_can_run()
    console = Console()
    if not console.is_terminal:
        console = Console(width=110)  # the table on one line per row in a log
    console.print(f"Capture benchmark: {platform.node()}, {os.cpu_count()} CPUs, "
                  f"kernel {platform.release()}, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory(prefix="bench-capture-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        console.print(f"Sustained rate ({args.step_seconds:g} s steps of the open/close loop):")
        steps = sustained(args, work, console)
        slow = slowdowns(args.runs, work)
    report(steps, slow, console)
    console.print("Command: " + shlex.join([".venv/bin/python", "bench/bench_capture.py",
                                            *sys.argv[1:]]), highlight=False)


if __name__ == "__main__":
    main()
