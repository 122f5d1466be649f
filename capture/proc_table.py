"""Processes as libsinsp describes them: `Proc`, the process table, users and containers.

- `ProcTable`: one `Proc` per process (thread group), seeded from a /proc snapshot at start and
  kept current from fork/exit records and execve/chdir/setuid events (capture/handlers.py): exe
  (argv[0]), exepath, args, env, cwd, tty, ppid, sid, pgid, vpid, real and effective uid/gid,
  loginuid, start time, container. A `Proc` is immutable and replaced on change, so rows can
  share it and a batch can build each distinct process's columns once. When a process exits, its
  children get the parent the kernel gave them (the nearest subreaper or init), as libsinsp
  reparents orphans.
- `UserDb`: uid/gid -> names from /etc/passwd and /etc/group (the host's, or a container's
  through /proc/PID/root).
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
    # Real ids are what the kernel's records carry; Falco's user.uid/group.gid are the effective
    # ones, kept here (None: unknown, the real id stands in).
    ruid: int | None = None
    euid: int | None = None
    rgid: int | None = None
    egid: int | None = None
    env: str | None = None  # proc.env: NAME=value items joined by spaces
    cgroup_id: int | None = None  # the v2 cgroup id of its last record (capture/cgroup_index.py)

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
    status = read_text(base / "status")
    (ruid, euid), (rgid, egid) = status_ids(status, "Uid:"), status_ids(status, "Gid:")
    return Proc(
        pid=pid, ppid=int(fields[1]), comm=comm, exe=argv[0] if argv else comm,
        exepath=exepath.removesuffix(" (deleted)"), args=tuple(argv[1:]),
        cwd=readlink(base / "cwd"), vpid=_nspid(status) or pid,
        sid=int(fields[3]), pgid=int(fields[2]), tty=int(fields[4]),
        loginuid=_loginuid(read_text(base / "loginuid")), start_ns=start,
        container_id=cid, container_type=ctype, exe_from_memfd=exepath.startswith("/memfd:"),
        ruid=ruid, euid=euid, rgid=rgid, egid=egid, env=read_env(base),
    )


def read_env(base: Path) -> str | None:
    """proc.env from /proc/PID/environ: the NAME=value items joined by spaces (None when it
    cannot be read: a kernel thread, a process gone, another user namespace)."""
    try:
        raw = (base / "environ").read_bytes()
    except OSError:
        return None
    return " ".join(raw.decode("utf-8", "replace").split("\0")).strip()


def status_ids(status: str, key: str) -> tuple[int | None, int | None]:
    """(real, effective) ids from the `Uid:`/`Gid:` line of /proc/PID/status."""
    for line in status.splitlines():
        if line.startswith(key):
            parts = line.split()
            if len(parts) >= 3 and parts[1].isdigit() and parts[2].isdigit():
                return int(parts[1]), int(parts[2])
    return None, None


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
        self.children: dict[int, set[int]] = {}  # ppid -> pids, to reparent orphans on exit
        self.reapers: set[int] = {1}  # processes known to adopt orphans (init, subreapers)

    def snapshot(self) -> None:
        for entry in self.root.iterdir():
            if entry.name.isdigit() and (proc := read_proc(int(entry.name), self.root,
                                                           self.boot_ns)):
                self._add(proc)

    def _add(self, proc: Proc) -> None:
        self.procs[proc.pid] = proc
        self.children.setdefault(proc.ppid, set()).add(proc.pid)

    def get(self, rec: Record, wall_ns: int) -> Proc:
        proc = self.procs.get(rec.tgid)
        if proc is None:
            proc = self._discover(rec, wall_ns)
            self._add(proc)
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
        return found or Proc(pid=rec.tgid, comm=rec.comm, exe=rec.comm, start_ns=wall_ns,
                             ruid=rec.uid, euid=rec.uid, rgid=rec.gid, egid=rec.gid)

    def _vpid(self, pid: int) -> int | None:
        return _nspid(read_text(self.root / str(pid) / "status"))

    def refresh_ids(self, proc: Proc, rec: Record) -> Proc:
        """The process with its ids re-read, after a record showed real ids it does not have:
        they changed through a syscall the capture does not see (or in another thread). The
        thread's /proc status says which effective ids go with them; without it, the real ids
        stand in."""
        status = read_text(self.root / str(rec.tgid) / "task" / str(rec.tid) / "status")
        ruid, euid = status_ids(status, "Uid:")
        rgid, egid = status_ids(status, "Gid:")
        proc = replace(proc, ruid=rec.uid, rgid=rec.gid,
                       euid=euid if ruid == rec.uid and euid is not None else rec.uid,
                       egid=egid if rgid == rec.gid and egid is not None else rec.gid)
        self.procs[proc.pid] = proc
        return proc

    def fork(self, parent_tgid: int, child_tid: int, wall_ns: int) -> None:
        self.pending_forks[child_tid] = (parent_tgid, wall_ns)

    def exit(self, rec: Record) -> bool:
        """Forget a process whose last thread exited; True if it was a whole process."""
        tid, group = rec.args[0], rec.args[1]
        self.pending_forks.pop(tid, None)
        if group == 1 or (group == 2 and tid == rec.tgid):
            gone = self.procs.pop(rec.tgid, None)
            if gone is not None:
                self.children.get(gone.ppid, set()).discard(gone.pid)
                self._reparent(gone)
            return True
        return False

    def _reparent(self, gone: Proc) -> None:
        """Give the children of an exited process to their new parent, as the kernel did (and
        libsinsp does from the reaper the driver reports): the parent /proc now shows for
        each child, else the nearest known reaper up the dead process's ancestry."""
        orphans = [pid for pid in self.children.pop(gone.pid, ()) if pid in self.procs]
        told = {pid: self._kernel_ppid(pid) for pid in orphans}
        self.reapers.update(p for p in told.values() if p is not None and p != gone.pid)
        fallback: int | None = None
        for pid, ppid in told.items():
            if ppid is None or ppid == gone.pid:  # gone too, or not reparented yet
                fallback = self._known_reaper(gone) if fallback is None else fallback
                ppid = fallback
            self.procs[pid] = replace(self.procs[pid], ppid=ppid)
            self.children.setdefault(ppid, set()).add(pid)

    def _kernel_ppid(self, pid: int) -> int | None:
        stat = read_text(self.root / str(pid) / "stat")
        fields = stat[stat.rfind(")") + 2:].split()
        return int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else None

    def _known_reaper(self, gone: Proc) -> int:
        """libsinsp's fallback: the nearest ancestor that reaps orphans (a known subreaper, the
        init of the pid namespace), not crossing out of the namespace; 0 when none is known."""
        for proc in self.ancestors(gone)[1:]:
            if (proc.vpid == proc.pid) != (gone.vpid == gone.pid):
                break
            if proc.pid in self.reapers or proc.vpid == 1:
                return proc.pid
        return 0

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
