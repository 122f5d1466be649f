"""`capture record` as a user runs it (the CLI in a child process), stopped by Ctrl-C, and its
refusal to overwrite the spool of a capture that did not finish. Needs root and BPF
(`require_bpf`: skipped on a developer machine, failing in CI).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from live_capture import wait_until_spooling

from analyze.trace_reader import open_trace

pytestmark = pytest.mark.usefixtures("require_bpf")
ROOT = Path(__file__).resolve().parent.parent
# `capture ...` as the installed entry point runs it, from whatever directory the venv is in
CAPTURE = [sys.executable, "-c",
           f"import sys; sys.path.insert(0, {str(ROOT)!r}); import cli; "
           "cli.capture(prog_name='capture')"]


def start_capture(out: Path) -> subprocess.Popen[str]:
    """`capture record -o OUT` in a child process, once it has flushed a first batch."""
    child = subprocess.Popen([*CAPTURE, "record", "-o", str(out)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    wait_until_spooling(child, out, timeout=60)
    return child


def test_ctrl_c_ends_the_capture_with_a_complete_trace(tmp_path: Path) -> None:
    out = tmp_path / "ctrl-c.parquet"
    child = start_capture(out)
    subprocess.run(["cat", "/etc/os-release"], check=True, stdout=subprocess.DEVNULL)
    time.sleep(0.3)
    child.send_signal(signal.SIGINT)
    stdout, stderr = child.communicate(timeout=60)
    assert child.returncode == 0, stderr
    assert "stopped by a signal" in stdout and str(out) in stdout
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    assert not out.with_name(out.name + ".spool").exists()
    info = open_trace(out).info()
    assert info.events > 0 and info.dropped == 0
    names = pq.read_table(out, columns=["fd.name"]).column("fd.name").to_pylist()
    assert "/etc/os-release" in names  # opened a moment before the signal


def test_ctrl_c_at_the_terminal_leaves_the_conversions_running(tmp_path: Path) -> None:
    # A terminal's Ctrl-C signals the whole foreground process group: the conversion worker
    # (its own group) must go on converting the segments the capture then waits for.
    out = tmp_path / "segments"
    child = subprocess.Popen([*CAPTURE, "record", "-o", str(out), "--rotate-seconds", "0.3"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    wait_until_spooling(child, out / "segment-00001.parquet", timeout=60)
    third = (out / "segment-00003.parquet", out / "segment-00003.parquet.spool")
    deadline = time.monotonic() + 30
    while not any(p.exists() for p in third):  # 2 rotations (each flush, every second)
        subprocess.run(["cat", "/etc/os-release"], check=True, stdout=subprocess.DEVNULL)
        time.sleep(0.05)
        if time.monotonic() > deadline or child.poll() is not None:
            os.killpg(child.pid, signal.SIGKILL)
            pytest.fail(f"no third segment: {child.communicate()}")
    os.killpg(child.pid, signal.SIGINT)
    stdout, stderr = child.communicate(timeout=60)
    assert child.returncode == 0, stderr
    assert "stopped by a signal" in stdout and "Traceback" not in stderr
    segments = sorted(out.glob("segment-*.parquet"))
    assert len(segments) >= 3 and not list(out.glob("*.spool")) and not list(out.glob("*.tmp"))
    info = open_trace(out).info()
    assert info.events > 0 and info.dropped == 0


def test_record_refuses_to_start_over_an_unfinished_spool(tmp_path: Path) -> None:
    out = tmp_path / "left.parquet"
    spool = out.with_name(out.name + ".spool")
    spool.write_bytes(b"ARROW1 what a killed capture left")
    before = spool.stat()
    done = subprocess.run([*CAPTURE, "record", "-o", str(out), "--duration", "5"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert f"capture recover {spool}" in done.stderr
    assert "Traceback" not in done.stderr
    assert spool.read_bytes() == b"ARROW1 what a killed capture left"
    after = spool.stat()
    assert (after.st_mtime_ns, after.st_size) == (before.st_mtime_ns, before.st_size)
    assert not out.exists()
