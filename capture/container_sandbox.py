"""A container as the kernel sees it, made without a container engine (none needs to run).

What Falco's container fields start from is the kernel's view of a process: its cgroup path
(`/proc/PID/cgroup`, where libsinsp and `capture.proc_table.container_of` find the id) and its
namespaces. `ContainerSandbox` makes exactly that:

- a random 64-hex container id, and cgroups named the way Docker names them: on cgroup v2
  `/sys/fs/cgroup/system.slice/docker-<id>.scope` (Docker's systemd driver) when systemd's
  slice exists, else `/sys/fs/cgroup/docker/<id>` (its cgroupfs driver); on cgroup v1
  `/sys/fs/cgroup/pids/docker/<id>`, and on the v1+v2 hybrid `/sys/fs/cgroup/unified/docker/<id>`
  too, so that the cgroup v2 id every capture record carries names the container as well
  (capture/cgroup_index.py: a short-lived command is gone before /proc can be read). A pids
  limit keeps a runaway command from forking without bound;
- each command runs under util-linux `unshare` in new pid, mount (with its own /proc), uts and
  ipc namespaces (and net, when asked), started by a small shim named `containerd-shim`, which
  joins the cgroups and runs the command as its child: inside the container the command's parent
  is the shim, as under Docker, so rules that look at a container's entry lineage (Falco's
  `container_entrypoint` macro) see what they would see there;
- `close()` kills whatever is left in the container and removes its cgroups.

The shim joins the cgroups only after `unshare` has made the namespaces, so the namespace and
mount syscalls that set the sandbox up happen outside the container, where Docker's own runtime
makes them too, and do not look like a container escaping.

Name and image come from a runtime, not the kernel: the scenario runner serves the sandbox's
`name` and `image` from a stand-in Docker Engine API (capture/scenario_runner.py).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from schemas.trace import TraceError

CGROUP_ROOT = Path("/sys/fs/cgroup")
UNSHARE = "unshare"  # util-linux
SHIM_NAME = "containerd-shim"
PIDS_MAX = 512
KILL_WAIT_SECONDS = 5.0

# Joins the cgroups named before `--` (writing 0 to cgroup.procs moves the writer itself), then
# runs the command as a child and exits with its status. Not `exec`: the shim stays the parent,
# as Docker's does.
SHIM = """#!/bin/sh
# sysreplay container sandbox: join the container's cgroups, then run the command as a child.
while [ "$1" != "--" ]; do
    echo 0 > "$1/cgroup.procs" || exit 125
    shift
done
shift
"$@"
status=$?
exit $status
"""


class SandboxError(TraceError):
    """The sandbox cannot be made here (no cgroup hierarchy, not root, no unshare)."""


def new_container_id() -> str:
    return secrets.token_hex(32)


def docker_cgroup_dirs(container_id: str, root: Path = CGROUP_ROOT) -> tuple[Path, ...]:
    """Where Docker would put the container's cgroups on this machine's cgroup layout."""
    if (root / "cgroup.controllers").exists():  # cgroup v2 only
        if (root / "system.slice").is_dir():
            return (root / "system.slice" / f"docker-{container_id}.scope",)
        return (root / "docker" / container_id,)
    if (root / "pids" / "cgroup.procs").exists():  # v1, or the v1+v2 hybrid
        v1 = root / "pids" / "docker" / container_id
        if (root / "unified" / "cgroup.controllers").exists():
            return v1, root / "unified" / "docker" / container_id
        return (v1,)
    raise SandboxError(
        f"No cgroup hierarchy to put a container in: {root} holds neither cgroup v2 "
        "(cgroup.controllers) nor the v1 pids controller (pids/cgroup.procs)."
    )


class ContainerSandbox:
    """One sandbox container; a context manager (the cgroup exists inside the `with`)."""

    def __init__(self, name: str, image: str, *, net: bool = False, privileged: bool = False,
                 cgroup_root: Path = CGROUP_ROOT, container_id: str | None = None) -> None:
        self.id = container_id or new_container_id()
        self.name = name
        self.image = image
        self.net = net
        self.privileged = privileged  # what the runtime says; commands run as root either way
        self.cgroups = docker_cgroup_dirs(self.id, cgroup_root)
        self._made: list[Path] = []  # cgroup directories we created, outermost first
        self._shim_dir: Path | None = None

    @property
    def short_id(self) -> str:
        """The id Falco shows as `container.id`."""
        return self.id[:12]

    @property
    def shim(self) -> Path:
        assert self._shim_dir is not None, "enter the sandbox first"
        return self._shim_dir / SHIM_NAME

    def __enter__(self) -> ContainerSandbox:
        self.open()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def open(self) -> None:
        if os.geteuid() != 0:
            raise SandboxError("A container sandbox needs root (it creates cgroups).")
        if shutil.which(UNSHARE) is None:
            raise SandboxError("A container sandbox needs util-linux `unshare` on PATH.")
        for cgroup in self.cgroups:
            for path in reversed((cgroup, *cgroup.parents)):
                if not path.exists():
                    path.mkdir()
                    self._made.append(path)
            limit = cgroup / "pids.max"
            if limit.exists():
                limit.write_text(f"{PIDS_MAX}\n")
        self._shim_dir = Path(tempfile.mkdtemp(prefix="sysreplay-sandbox-"))
        self.shim.write_text(SHIM)
        self.shim.chmod(0o700)

    def command(self, argv: Sequence[str]) -> list[str]:
        """The command line that runs `argv` inside the container."""
        flags = ["--fork", "--pid", "--mount-proc", "--mount", "--uts", "--ipc"]
        if self.net:
            flags.append("--net")
        return [UNSHARE, *flags, "--", str(self.shim), *map(str, self.cgroups), "--", *argv]

    def run(self, argv: Sequence[str], **kw: Any) -> subprocess.CompletedProcess[bytes]:
        """Run `argv` inside the container and wait (keyword arguments go to subprocess.run)."""
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("timeout", 30)
        return subprocess.run(self.command(argv), check=False, **kw)

    def pids(self) -> list[int]:
        """The processes in the container (in any of its cgroups)."""
        found: set[int] = set()
        for cgroup in self.cgroups:
            with contextlib.suppress(OSError):
                found.update(int(p) for p in (cgroup / "cgroup.procs").read_text().split())
        return sorted(found)

    def close(self) -> None:
        """Kill what is left in the container, then remove its cgroups and the shim."""
        self._kill_all()
        for path in reversed(self._made):  # innermost first
            with contextlib.suppress(OSError):  # a parent another container still uses
                path.rmdir()
        self._made.clear()
        if self._shim_dir is not None:
            shutil.rmtree(self._shim_dir, ignore_errors=True)
            self._shim_dir = None

    def _kill_all(self) -> None:
        deadline = time.monotonic() + KILL_WAIT_SECONDS
        while (left := self.pids()) and time.monotonic() < deadline:
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)
