"""A syscall load for the capture benchmarks: open and close /etc/hostname in a loop.

Two syscalls per iteration, both in the default preset. Either paced to RATE syscalls/s for
SECONDS (RATE 0: as fast as possible), or a fixed amount of work as fast as possible (--syscalls
N, for timing a workload with and without capture). With --wait first, it starts only when a line
arrives on stdin (so a capture can be started on its pid). Prints one JSON line on stdout:
{"syscalls": N, "seconds": T}.

Usage:
    python bench/capture/load.py [--wait] RATE SECONDS
    python bench/capture/load.py [--wait] --syscalls 400000
"""

from __future__ import annotations

import json
import os
import sys
import time

PATH = "/etc/hostname"
CHUNK = 500  # iterations between clock reads: pacing costs little and stays within ~1 ms


def paced(rate: float, seconds: float) -> int:
    """Syscalls made at `rate`/s (0: flat out) for `seconds`."""
    start = time.monotonic()
    end, pairs = start + seconds, 0
    while time.monotonic() < end:
        for _ in range(CHUNK):
            os.close(os.open(PATH, os.O_RDONLY))
        pairs += CHUNK
        if rate:
            ahead = pairs * 2 / rate - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)
    return pairs * 2


def fixed(syscalls: int) -> int:
    for _ in range(syscalls // 2):
        os.close(os.open(PATH, os.O_RDONLY))
    return syscalls // 2 * 2


def main(argv: list[str]) -> None:
    if argv[:1] == ["--wait"]:
        sys.stdin.readline()
        argv = argv[1:]
    started = time.monotonic()
    if argv[:1] == ["--syscalls"]:
        made = fixed(int(argv[1]))
    else:
        made = paced(float(argv[0]), float(argv[1]))
    print(json.dumps({"syscalls": made, "seconds": time.monotonic() - started}))


if __name__ == "__main__":
    main(sys.argv[1:])
