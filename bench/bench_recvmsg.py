"""Benchmark: what the capture's SCM_RIGHTS filter costs a recvmsg or recvmmsg that received
no fds.

The default preset records recvmsg only when it received fds (SCM_RIGHTS), and recvmmsg only
for its messages that did: every other call is dropped at sys_exit after one user read of its
msghdr (recvmmsg: of each message's, MMSG_MAX at most; bpf_program.c, scm_rights and
emit_mmsg_rights). That read is the price. bench/capture/recvmsg_load.c (compiled with `cc` at
start) makes N round trips on a socketpair (send one byte, receive it) with recvmsg, recvmmsg
(one message per call), or recvfrom (a syscall the capture does not select: the tracepoints'
cost alone), and prints the CPU nanoseconds per round trip (its own CPU time, where the kernel
side of the capture is paid). Each is timed --runs times alone and --runs times under a
`capture record` of the whole machine (default preset), in --rounds turns; medians are
compared. A filter's own cost per call is its syscall's slowdown minus recvfrom's.

Usage (root, from the repository root; under a minute, not part of the test suite):
    .venv/bin/python bench/bench_recvmsg.py [--calls 200000] [--runs 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_capture import capture_during  # noqa: E402

MODES = ("recvmsg", "recvmmsg", "recvfrom")


def times(binary: Path, calls: int, runs: int) -> dict[str, list[float]]:
    """The CPU ns per round trip of each mode, `runs` times, the modes interleaved."""
    got: dict[str, list[float]] = {m: [] for m in MODES}
    for _ in range(runs):
        for mode in MODES:
            out = subprocess.run([str(binary), str(calls), mode], check=True,
                                 capture_output=True, text=True).stdout
            got[mode].append(float(out))
    return got


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_recvmsg needs root (a live capture).")
    alone: dict[str, list[float]] = {m: [] for m in MODES}
    traced: dict[str, list[float]] = {m: [] for m in MODES}
    events = dropped = 0
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        binary = work / "recvmsg_load"
        subprocess.run(["cc", "-O2", "-o", str(binary),
                        str(ROOT / "bench/capture/recvmsg_load.c")], check=True)
        # Alone and captured in turn, so that a neighbour's load weighs on both alike.
        for round_ in range(args.rounds):
            for mode, values in times(binary, args.calls, args.runs).items():
                alone[mode] += values
            got, stats, _ = capture_during(lambda: times(binary, args.calls, args.runs),
                                           work / f"t{round_}.parquet")
            for mode, values in got.items():
                traced[mode] += values
            events, dropped = events + stats.events, dropped + stats.dropped
    print(f"{' '.join(sys.argv)}  ({platform.node()}, {platform.release()}, "
          f"load {os.getloadavg()[0]:.2f})")
    print(f"{args.calls} round trips x {args.runs} runs x {args.rounds} rounds; CPU ns per round "
          f"trip (median):")
    slower = {}
    for mode in MODES:
        a, c = statistics.median(alone[mode]), statistics.median(traced[mode])
        slower[mode] = c - a
        print(f"  {mode:9} alone {a:7.1f}  captured {c:7.1f}  (+{c - a:.1f})")
    for mode in ("recvmsg", "recvmmsg"):
        extra = slower[mode] - slower["recvfrom"]
        print(f"the {mode} filter (one msghdr read, no row): {extra:+.1f} ns per {mode} beyond "
              f"an unselected syscall")
    print(f"captures: {events} rows (the whole machine), {dropped} dropped")


if __name__ == "__main__":
    main()
