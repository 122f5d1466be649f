"""Helpers for tests that run a capture: in a thread of the test, or in a child process."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from capture.record import RecordOptions, RecordStats, record


def record_while(options: RecordOptions, out: Path, workload: Callable[[], object]
                 ) -> RecordStats:
    """Record into `out` in a thread while `workload()` runs, started once the probe is attached
    (and a --container filter seeded); the capture's error, if any, is raised here."""
    stop, ready = threading.Event(), threading.Event()
    results: list[RecordStats] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(record(options, out, None, stop, ready=ready))
        except BaseException as exc:
            errors.append(exc)
            ready.set()

    thread = threading.Thread(target=run)
    thread.start()
    assert ready.wait(60), "the capture did not start"
    try:
        if not errors:
            workload()
            time.sleep(0.3)  # the last events reach the ring buffer
    finally:
        stop.set()
        thread.join(60)
    if errors:
        raise errors[0]
    return results[0]


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
