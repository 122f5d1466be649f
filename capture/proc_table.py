"""Processes as libsinsp describes them: `Proc`, the process table, users and containers.

- `ProcTable`: one `Proc` per process (thread group), seeded from a /proc snapshot at start and
  kept current from fork/exit records and execve/chdir events (capture/handlers.py): exe
  (argv[0]), exepath, args, cwd, tty, ppid, sid, pgid, vpid, loginuid, start time, container. A
  `Proc` is immutable and replaced on change, so rows can share it and a batch can build each
  distinct process's columns once.
- `UserDb`: uid/gid -> names from /etc/passwd and /etc/group.
- `container_of`: the container id and runtime from a /proc/PID/cgroup text (Docker, containerd,
  CRI-O, podman; cgroup v1 and v2, cgroupfs and systemd drivers).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from capture.probe import Record
from capture.procfs import read_lines, read_text, readlink
from schemas.trace import ANCESTOR_DEPTH

NO_UID = 0xFFFFFFFF


@dataclass(frozen=True)
class UserDb:
    users: Mapping[int, str]
    groups: Mapping[int, str]

    @staticmethod
    def load(etc: Path = Path("/etc")) -> UserDb:
        return UserDb(_id_names(etc / "passwd"), _id_names(etc / "group"))


def _id_names(path: Path) -> dict[int, str]:
    names: dict[int, str] = {}
    for line in read_lines(path):
        parts = line.split(":")
        if len(parts) > 2 and parts[2].isdigit():
            names.setdefault(int(parts[2]), parts[0])
    return names


_HEX64 = r"([0-9a-f]{64})"
# libsinsp's cgroup layouts (runc.cpp and the engines' CGROUP_LAYOUT tables), by runtime.
_CONTAINER_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"/docker-" + _HEX64 + r"\.scope"), "docker"),
    (re.compile(r"/docker/" + _HEX64), "docker"),
    (re.compile(r"/cri-containerd-" + _HEX64 + r"\.scope"), "containerd"),
    # containerd with `SystemdCgroup = false` under systemd: `<slice>:cri-containerd:<id>`
    (re.compile(r":cri-containerd:" + _HEX64), "containerd"),
    # `crio-<id>.scope` (systemd driver) and `crio-<id>` (cgroupfs driver)
    (re.compile(r"/crio-" + _HEX64), "cri-o"),
    (re.compile(r"/crio/" + _HEX64), "cri-o"),
    (re.compile(r"/libpod-" + _HEX64 + r"\.scope"), "podman"),
    (re.compile(r"/libpod_parent/libpod-" + _HEX64), "podman"),
    (re.compile(r"/kubepods[^\s]*/pod[0-9a-f_-]+/" + _HEX64), "containerd"),
    (re.compile(r"/containerd/" + _HEX64), "containerd"),
)


def container_of(cgroup_text: str) -> tuple[str, str]:
    """(container.id, container.type) from /proc/PID/cgroup; ("host", "host") outside one.

    Falco's id is the first 12 hex digits. conmon's own `libpod-conmon-<id>` scope is not a
    container (the pattern needs `libpod-` followed directly by the id).
    """
    for line in cgroup_text.splitlines():
        path = line.split(":", 2)[-1]
        for pattern, kind in _CONTAINER_PATTERNS:
            if m := pattern.search(path):
                return m.group(1)[:12], kind
    return "host", "host"


@dataclass(frozen=True)
class Proc:
    """One process (thread group) as libsinsp would describe it. Immutable."""

    pid: int
    ppid: int = 0
    comm: str = ""
    exe: str = ""  # argv[0]
    exepath: str = ""
    args: tuple[str, ...] = ()
    cwd: str | None = None
    vpid: int | None = None
    sid: int | None = None
    pgid: int | None = None
    tty: int | None = None
    loginuid: int | None = None
    start_ns: int | None = None
    container_id: str = "host"
    container_type: str = "host"
    exe_from_memfd: bool = False
    exe_ctime: int | None = None
    exe_mtime: int | None = None

    @property
    def cmdline(self) -> str:
        return " ".join((self.comm, *self.args)) if self.args else self.comm


def read_proc(pid: int, root: Path, boot_ns: int) -> Proc | None:
    """A process from /proc/PID, or None if it is gone (or a kernel thread we cannot read)."""
    base = root / str(pid)
    try:
        stat = (base / "stat").read_text()
    except OSError:
        return None
    comm = stat[stat.index("(") + 1:stat.rindex(")")]
    fields = stat[stat.rindex(")") + 2:].split()
    argv = read_text(base / "cmdline").split("\0")
    argv = argv[:-1] if argv and argv[-1] == "" else argv
    exepath = readlink(base / "exe") or ""
    start = boot_ns + int(fields[19]) * 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    cid, ctype = container_of(read_text(base / "cgroup"))
    return Proc(
        pid=pid, ppid=int(fields[1]), comm=comm, exe=argv[0] if argv else comm,
        exepath=exepath.removesuffix(" (deleted)"), args=tuple(argv[1:]),
        cwd=readlink(base / "cwd"), vpid=_nspid(read_text(base / "status")) or pid,
        sid=int(fields[3]), pgid=int(fields[2]), tty=int(fields[4]),
        loginuid=_loginuid(read_text(base / "loginuid")), start_ns=start,
        container_id=cid, container_type=ctype, exe_from_memfd=exepath.startswith("/memfd:"),
    )


def _nspid(status: str) -> int | None:
    for line in status.splitlines():
        if line.startswith("NSpid:"):
            return int(line.split()[-1])
    return None


def _loginuid(text: str) -> int | None:
    text = text.strip()
    if not text.isdigit():
        return None
    value = int(text)
    return -1 if value == NO_UID else value


def boot_time_ns() -> int:
    return time.time_ns() - time.clock_gettime_ns(time.CLOCK_BOOTTIME)


class ProcTable:
    """tgid -> Proc, plus the fork records not yet matched with their child's first event."""

    def __init__(self, proc_root: Path = Path("/proc")) -> None:
        self.root = proc_root
        self.boot_ns = boot_time_ns()
        self.procs: dict[int, Proc] = {}
        self.pending_forks: dict[int, tuple[int, int]] = {}  # child tid -> (parent tgid, ts)
        self.forked_from: dict[int, int] = {}  # new child -> parent, until its fds are copied

    def snapshot(self) -> None:
        for entry in self.root.iterdir():
            if entry.name.isdigit() and (proc := read_proc(int(entry.name), self.root,
                                                           self.boot_ns)):
                self.procs[proc.pid] = proc

    def get(self, rec: Record, wall_ns: int) -> Proc:
        proc = self.procs.get(rec.tgid)
        if proc is None:
            proc = self._discover(rec, wall_ns)
            self.procs[rec.tgid] = proc
        return proc

    def _discover(self, rec: Record, wall_ns: int) -> Proc:
        """A process seen for the first time: the child of a fork we saw, or read from /proc."""
        fork = self.pending_forks.pop(rec.tgid, None)
        parent = self.procs.get(fork[0]) if fork else None
        if parent is not None and fork is not None:
            self.forked_from[rec.tgid] = parent.pid
            vpid = rec.tgid if parent.vpid == parent.pid else self._vpid(rec.tgid)
            return replace(parent, pid=rec.tgid, ppid=parent.pid, vpid=vpid, start_ns=fork[1])
        found = read_proc(rec.tgid, self.root, self.boot_ns)
        return found or Proc(pid=rec.tgid, comm=rec.comm, exe=rec.comm, start_ns=wall_ns)

    def _vpid(self, pid: int) -> int | None:
        return _nspid(read_text(self.root / str(pid) / "status"))

    def fork(self, parent_tgid: int, child_tid: int, wall_ns: int) -> None:
        self.pending_forks[child_tid] = (parent_tgid, wall_ns)

    def exit(self, rec: Record) -> bool:
        """Forget a process whose last thread exited; True if it was a whole process."""
        tid, group = rec.args[0], rec.args[1]
        self.pending_forks.pop(tid, None)
        if group == 1 or (group == 2 and tid == rec.tgid):
            self.procs.pop(rec.tgid, None)
            return True
        return False

    def ancestors(self, proc: Proc) -> list[Proc]:
        """proc, its parent, grandparent... (at most ANCESTOR_DEPTH, stopping at unknowns)."""
        chain, seen = [proc], {proc.pid}
        while len(chain) < ANCESTOR_DEPTH:
            parent = self.procs.get(chain[-1].ppid)
            if parent is None or parent.pid in seen:
                break
            chain.append(parent)
            seen.add(parent.pid)
        return chain
