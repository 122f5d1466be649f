#!/usr/bin/env bash
# Smoke-test BPF on this machine: compile, load and attach a raw_syscalls tracepoint program with
# BCC from the project venv, and see it count this process's own syscalls. Needs root.
# Exit 0 when it works; otherwise print why and exit 1.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${SYSREPLAY_VENV:-$ROOT/.venv}

exec "$VENV/bin/python" - <<'PY'
import os
import sys
import time

try:
    from bcc import BPF
except ImportError as exc:
    sys.exit(f"check-bpf: cannot import bcc ({exc}); run scripts/setup.sh")

PROGRAM = """
BPF_HASH(counts, u32, u64);
TRACEPOINT_PROBE(raw_syscalls, sys_enter) {
    if ((bpf_get_current_pid_tgid() >> 32) != TARGET_PID)
        return 0;
    u32 id = args->id;
    counts.increment(id);
    return 0;
}
"""

start = time.monotonic()
try:
    # Debian's cloud headers are built with IBT; clang warns about its attributes, harmlessly.
    bpf = BPF(text=PROGRAM.replace("TARGET_PID", str(os.getpid())),
              cflags=["-Wno-ignored-attributes"])
except Exception as exc:  # BCC raises bare Exception for compile and load failures
    sys.exit(f"check-bpf: BPF program failed to compile or load: {exc}")
for _ in range(3):
    os.getppid()
seen = sum(v.value for v in bpf["counts"].values())
bpf.cleanup()
if not seen:
    sys.exit("check-bpf: tracepoint attached but saw no syscalls")
print(f"check-bpf: ok (raw_syscalls:sys_enter compiled and attached in "
      f"{time.monotonic() - start:.1f}s, saw {seen} syscalls)")
PY
