"""Benchmark: `analyze info`, `timeline` and `explain` on a 10M-event trace.

Reuses bench/bench_engines.py's trace (the shared k8s capture imported once and replicated to at
least --events rows, in --work). Each command runs through the CLI, as a user runs it (output
to /dev/null), in a fresh process, so that its peak memory is its own; it reports the time of
the command itself, the whole process's wall time (Python start and imports included) and peak
RSS (VmHWM). The pid and event are picked from the trace: the busiest pid (the heaviest
timeline) and an execve half-way through (a process with ancestors and activity around it).

Usage (from the repository root):
    .venv/bin/python bench/bench_triage.py [--events 10000000] [--work /tmp/sysreplay-bench]

Target (issue #5): each command within seconds on 10M events, memory bounded (DuckDB is capped
at analyze.triage_db.MEMORY_LIMIT; the gap scan streams one batch at a time).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]


def pick_targets(trace: Path) -> tuple[int, int, int]:
    """(busiest pid, an execve evt.num half-way, its pid) of the trace."""
    import duckdb

    con = duckdb.connect()
    files = [str(trace)]
    pid = con.execute('SELECT "proc.pid" FROM read_parquet($f) WHERE "proc.pid" IS NOT NULL '
                      "GROUP BY 1 ORDER BY count(*) DESC LIMIT 1", {"f": files}).fetchone()
    half = con.execute('SELECT (min("evt.num") + max("evt.num")) // 2 FROM read_parquet($f)',
                       {"f": files}).fetchone()
    assert pid is not None and half is not None
    evt = con.execute(
        'SELECT "evt.num", "proc.pid" FROM read_parquet($f) WHERE "evt.type" = \'execve\' '
        'AND "evt.dir" = \'<\' AND "evt.num" >= $half ORDER BY 1 LIMIT 1',
        {"f": files, "half": half[0]}).fetchone()
    assert evt is not None, "the trace holds no execve"
    return int(pid[0]), int(evt[0]), int(evt[1])


def run_child(args: list[str]) -> dict[str, float]:
    """In the child: run `analyze ARGS` with stdout to /dev/null; time and peak RSS."""
    from cli import analyze

    start = time.perf_counter()
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
        analyze.main(args, standalone_mode=False)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_mb": peak_rss_kb() / 1024}


def peak_rss_kb() -> int:
    """This process's peak RSS. VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over
    an exec from the forking parent, so a child would report the bench's own peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--work", type=Path, default=Path("/tmp/sysreplay-bench"))
    ap.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_child(args.child)))
        return
    from bench_engines import build_trace

    trace, events = build_trace(args.work, args.events)
    busy, evt, evt_pid = pick_targets(trace)
    t = str(trace)
    commands = [
        ["info", t],
        ["timeline", t, "--pid", str(busy)],
        ["timeline", t, "--pid", str(evt_pid), "--tree", "--since", "+5m", "--until", "+6m"],
        ["timeline", t, "--type", "execve,connect", "--limit", "1000"],
        ["explain", t, "--evt", str(evt)],
        ["explain", t, "--evt", str(evt), "--before", "5m", "--after", "5m"],
    ]
    print(f"trace: {trace} ({events:,} events, {trace.stat().st_size / 1e6:.0f} MB); "
          f"busiest pid {busy}, execve evt.num {evt} (pid {evt_pid})")
    print(f"{'command':<72}{'seconds':>9}{'process s':>11}{'peak MB':>9}")
    for command in commands:
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, __file__, "--child", *command, "--format", "json"],
                              capture_output=True, text=True, cwd=ROOT)
        wall = time.perf_counter() - start
        label = "analyze " + " ".join(c if c != t else "TRACE" for c in command)
        if proc.returncode != 0:
            print(f"{label:<72} failed: {proc.stderr.strip().splitlines()[-1:]}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"{label:<72}{r['seconds']:>9.2f}{wall:>11.2f}{r['peak_mb']:>9.0f}")


if __name__ == "__main__":
    main()
