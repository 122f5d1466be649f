"""Helpers for tests that run a capture in a child process."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path


def wait_until_spooling(child: subprocess.Popen[str], out: Path, timeout: float) -> None:
    """Return once the capture writing `out` has flushed a first batch to its spool.

    The schema is written first; a flush (every second) adds the events. On an idle machine
    nothing else may make the syscalls the default preset records, so make some while waiting.
    On failure the child is killed: never leave a capture running behind a failed test.
    """
    spool = out.with_name(out.name + ".spool")
    deadline = time.monotonic() + timeout
    try:
        while not spool.exists() or spool.stat().st_size < 1000:
            assert child.poll() is None, child.communicate()
            assert time.monotonic() < deadline, "the capture did not start"
            subprocess.run(["cat", "/etc/hostname"], check=True, stdout=subprocess.DEVNULL)
            time.sleep(0.05)
    except AssertionError:
        child.kill()
        child.communicate()
        raise
