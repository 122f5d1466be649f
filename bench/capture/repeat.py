"""Run a command N times and time each run: for timing a workload under a capture that follows
this process's tree (`capture record --follow PID`).

With --wait first, it starts only when a line arrives on stdin (so the capture can start on its
pid first). Prints one JSON line on stdout: {"wall": [seconds...], "cpu": [seconds...]}, the CPU
time being that of the run's processes (user + system, reaped children).

Usage:
    python bench/capture/repeat.py [--wait] N COMMAND [ARG...]
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time


def cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str]) -> None:
    if argv[:1] == ["--wait"]:
        sys.stdin.readline()
        argv = argv[1:]
    runs, command = int(argv[0]), argv[1:]
    walls, cpus = [], []
    for _ in range(runs):
        cpu, started = cpu_of_children(), time.monotonic()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        walls.append(time.monotonic() - started)
        cpus.append(cpu_of_children() - cpu)
    print(json.dumps({"wall": walls, "cpu": cpus}))


if __name__ == "__main__":
    main(sys.argv[1:])
