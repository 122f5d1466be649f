"""What the tests against real container runtimes share: a busybox image's root file system,
waiting for a daemon's socket, stopping it, and the check of a live capture's container rows."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import unavailable
from test_container_runtime import record_live
from trace_order import read_in_event_order

BUSYBOX = Path("/bin/busybox")  # Debian's busybox-static
START_SECONDS = 30.0
# A command that keeps opening a file inside the container, for the capture to see.
READ_LOOP = ["/bin/sh", "-c", "while true; do cat /etc/hostname; sleep 0.2; done"]
CONTAINER_COLUMNS = ["container.id", "container.type", "container.name", "container.image",
                     "container.image.repository", "container.image.tag", "container.image.id"]


def runtime_binary(name: str, package: str, *also: str) -> str:
    """The path of the runtime program `name` (root needed; `also`: other programs its test
    runs); unavailable (a failure in CI) when missing."""
    if os.geteuid() != 0:
        unavailable(f"needs root ({name})")
    binary = shutil.which(name)
    if binary is None or not all(shutil.which(other) for other in also):
        unavailable(f"{' and '.join((name, *also))}: not installed ({package}; "
                    "scripts/setup.sh installs it)")
    assert binary is not None
    return binary


def busybox_rootfs_tar() -> bytes:
    """busybox with sh, sleep and cat as links: a whole image's file system, as a tar."""
    if not BUSYBOX.exists():
        unavailable(f"{BUSYBOX} is missing (Debian's busybox-static; scripts/setup.sh)")
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        tar.add(BUSYBOX, arcname="bin/busybox")
        for tool in ("sh", "sleep", "cat"):
            link = tarfile.TarInfo(f"bin/{tool}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
    return out.getvalue()


def wait_for(proc: subprocess.Popen[bytes], answers: Callable[[], bool], log: Path) -> None:
    """Until `answers()`; fails the test with the daemon's log if it exits or takes too long."""
    deadline = time.monotonic() + START_SECONDS
    while not answers():
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"the daemon did not answer: {log.read_text()[-2000:]}")
        time.sleep(0.2)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def live_container_rows(out: Path, socket: Path, name: str,
                        columns: tuple[str, ...] = ()) -> list[tuple[Any, ...]]:
    """A live capture of 1.5 s selecting container `name`, its runtime asked on `socket`: each
    row's CONTAINER_COLUMNS and `columns` values, after checking that the container's
    `cat /etc/hostname` calls are there."""
    record_live(out, socket, [["sleep", "1.5"]], containers=(name,))
    wanted = [*CONTAINER_COLUMNS, *columns]
    rows = read_in_event_order(out, ["evt.type", "proc.name", "fd.name", *wanted]).to_pylist()
    opens = [r for r in rows if r["evt.type"] == "openat" and r["fd.name"] == "/etc/hostname"]
    assert opens and {r["proc.name"] for r in opens} == {"cat"}
    return [tuple(r[c] for c in wanted) for r in rows]
