"""Benchmark: what copying envp at execve costs (proc.env for every exec).

Needs root and BPF. Loads the capture program twice, with the environment copy off
(`max_env=0`: the program as it was, plus the one-byte "complete" flag) and on (the defaults:
`env_max` 4096 bytes, `max_env` 64 entries), and for each:

- runs a shell that starts --execs short programs (`/bin/true`) with this process's environment
  (its size is printed: the cost grows with it, up to env_max);
- reports the mean REC_EXEC_ARGS record size (header and items, as the ring buffer carries it),
  the sys_enter probe's run time per exec from the kernel's BPF statistics
  (kernel.bpf_stats_enabled, switched on for the run and restored), and the instructions the
  verifier processed for sys_enter (`verified_insns`, kernel 5.16+).

The probe records the exec preset for the shell's tree only (follow), so the other processes of
the machine add little to the probe's run time (only its first test); the runs of both programs
alternate --repeat times and the median is shown, as a busy machine makes single runs noisy.

Usage (root, from the repository root; a few seconds):
    .venv/bin/python bench/bench_exec_record.py [--execs 500] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from capture.bpf_render import PRESETS, ProgramOptions  # noqa: E402
from capture.probe import (  # noqa: E402
    HEADER,
    REC_EXEC_ARGS,
    Probe,
    Record,
    decode,
    detect_features,
    tracefs_root,
)

STATS = Path("/proc/sys/kernel/bpf_stats_enabled")
ENTER = b"raw_tracepoint__sys_enter"


@dataclass(frozen=True)
class Run:
    label: str
    records: int
    mean_bytes: float
    max_bytes: int
    ns_per_exec: float
    verified_insns: int | None


def prog_stats(probe: Probe) -> dict[str, int]:
    """run_time_ns, run_cnt, verified_insns of the sys_enter program (its fdinfo)."""
    fd = probe._bpf.funcs[ENTER].fd
    out = {}
    for line in Path(f"/proc/self/fdinfo/{fd}").read_text().splitlines():
        key, _, value = line.partition(":")
        if value.strip().isdigit():
            out[key.strip()] = int(value)
    return out


def measure(label: str, execs: int, max_env: int = ProgramOptions.max_env) -> Run:
    shell = subprocess.Popen(["sh", "-c", f"read go; for i in $(seq {execs}); do /bin/true; done"],
                             stdin=subprocess.PIPE)
    assert shell.stdin is not None
    features = detect_features(tracefs_root() or Path("/"))
    options = ProgramOptions(syscalls=PRESETS["exec"], self_tgid=os.getpid(),
                             follow_tgids=(shell.pid,), has_group_dead=features.has_group_dead,
                             local_endpoints=False, max_env=max_env)
    sizes: list[int] = []
    with Probe(options) as probe:
        before = prog_stats(probe)
        shell.stdin.write(b"go\n")
        shell.stdin.close()
        while shell.poll() is None:
            sizes += [record_size(r) for r in read_records(probe) if r.kind == REC_EXEC_ARGS]
            time.sleep(0.01)
        time.sleep(0.1)
        sizes += [record_size(r) for r in read_records(probe) if r.kind == REC_EXEC_ARGS]
        after = prog_stats(probe)
    spent = after.get("run_time_ns", 0) - before.get("run_time_ns", 0)
    return Run(label, len(sizes), sum(sizes) / max(len(sizes), 1), max(sizes, default=0),
               spent / max(len(sizes), 1), after.get("verified_insns"))


def read_records(probe: Probe) -> list[Record]:
    """The records committed to the ring buffer since the last call."""
    assert probe.ring is not None
    records, used = decode(probe.ring.read())
    probe.ring.consume(used)
    return records


def record_size(record: Record) -> int:
    return HEADER.size + sum(len(i) for i in record.items)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--execs", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of each program, alternated; the median run is shown")
    args = parser.parse_args()
    env_bytes = sum(len(k) + len(v) + 2 for k, v in os.environ.items())
    stats_were = STATS.read_text().strip()
    STATS.write_text("1\n")
    off: list[Run] = []
    on: list[Run] = []
    try:
        for _ in range(args.repeat):
            off.append(measure("envp not copied (max_env=0)", args.execs, max_env=0))
            on.append(measure("envp copied (defaults)", args.execs))
    finally:
        STATS.write_text(stats_were + "\n")
    runs = [sorted(r, key=lambda run: run.ns_per_exec)[len(r) // 2] for r in (off, on)]
    table = Table(title=f"execve record: {args.execs} execs, environment of "
                        f"{len(os.environ)} entries / {env_bytes} bytes")
    for column in ("program", "records", "mean bytes", "max bytes", "sys_enter ns/exec",
                   "verified insns"):
        table.add_column(column, justify="left" if column == "program" else "right")
    for run in runs:
        table.add_row(run.label, str(run.records), f"{run.mean_bytes:.0f}", str(run.max_bytes),
                      f"{run.ns_per_exec:,.0f}", str(run.verified_insns or "?"))
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
