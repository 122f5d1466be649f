"""Turn decoded capture records into trace rows, the way libsinsp fills Falco's fields.

The kernel sends bare facts (pid, tid, uid, comm, raw arguments, copied paths and sockaddrs).
Everything a rule asks about the process, its parents, the user, the fd and the container comes
from state kept by the `Enricher`, in these modules:

- capture/proc_table.py: `ProcTable` (one immutable `Proc` per process, seeded from /proc and
  kept current from fork/exit/execve/chdir/setuid), `UserDb` (uid/gid names) and `container_of`
  (container id and runtime from the cgroup path);
- capture/cgroup_index.py: `CgroupIndex`, the container of a record's cgroup-v2 id (what the
  kernel saw, even for a process gone before its event is enriched);
- capture/container_runtime.py: `ContainerRuntimes`, the container's name, image, labels... from
  the runtime's API (Docker Engine API: Docker, podman; CRI: containerd, CRI-O), looked up once
  per container;
- capture/container_filter.py: `ContainerSelection`, the `--container` selection, and
  capture/cgroup_filter.py: `CgroupVerdicts`, its kernel side (the enricher corrects the verdicts
  the kernel was not sure of);
- capture/fd_table.py: `FdTables` (per process, fd -> immutable `FdInfo`: resolved path, socket
  family, protocol and endpoints, pipe, memfd...);
- capture/handlers.py: one handler per syscall family, which updates the tables and collects the
  event's parameters (capture/fd_handlers.py: those of the calls that create and close fds);
- capture/render_args.py: the argument renderers (errno names, open flags, modes, sockaddrs);
- capture/rows.py: `RowBatch`, the rows of a flush interval and their Arrow table.

`Enricher.feed(records, batch)` applies records in order and appends rows to a `RowBatch`.
"""

from __future__ import annotations

import posixpath
import struct
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from capture import fast_feed
from capture.bpf_render import CGROUP_PATH_MAX
from capture.cgroup_filter import CgroupVerdicts
from capture.cgroup_index import CgroupIndex
from capture.container_filter import ContainerSelection
from capture.container_runtime import RUNTIME_TYPES, ContainerInfo, ContainerRuntimes
from capture.fd_table import FD_KINDS, FdInfo, FdTables
from capture.handlers import DISPATCH, PROC_STATE_SYSCALLS, Ev
from capture.probe import REC_CGROUP, REC_EXEC_ARGS, REC_EXIT, REC_FORK, REC_SYSCALL, Record
from capture.proc_table import Proc, ProcTable, UserDb
from capture.render_args import AT_FDCWD
from capture.rows import RowBatch, Shape

FILE_INFO_CACHE = 1 << 16  # distinct opened-file states kept for sharing
SHAPE_CACHE = 1 << 16  # distinct row shapes kept for sharing (capture/rows.py)
CLONE_THREAD = 0x10000


class Enricher:
    """Applies records in order to the process/fd state and appends one row per syscall.

    `runtime_sockets`: the container runtime sockets to ask for names and images (default: the
    usual ones that exist, per API); `containers`: keep only the events of processes in these
    containers (`--container`: ids, names or `host`); `row_syscalls`: write rows for these
    syscalls only, the others just keep the tables right (capture/rule_syscalls.py).
    """

    def __init__(self, monotonic_to_wall: int, proc_root: Path = Path("/proc"),
                 users: UserDb | None = None, runtime_sockets: Sequence[str] = (),
                 containers: Sequence[str] = (),
                 runtimes: ContainerRuntimes | None = None,
                 cgroups: CgroupIndex | None = None,
                 row_syscalls: Iterable[str] | None = None) -> None:
        self.offset = monotonic_to_wall
        # Syscalls written as rows (None: all); the others only update the tables (--rules).
        self.row_syscalls = frozenset(row_syscalls) if row_syscalls is not None else None
        self.procs = ProcTable(proc_root)
        self.cgroups = cgroups or CgroupIndex.detect()
        self.fds = FdTables(proc_root)
        self.users = users or UserDb.load()
        self.runtimes = runtimes or ContainerRuntimes.detect(runtime_sockets)
        self.selection = ContainerSelection.parse(containers, self.runtimes) if containers \
            else None
        self.exec_args: dict[int, Record] = {}
        self.next_num = 1
        self.errors = 0  # records whose handler failed (left out of the trace)
        # Records of processes the container selection leaves out, by syscall: what reached
        # user space for nothing but the process table.
        self.left_out: dict[str, int] = {}
        # The selection's kernel side, when the kernel filters too (set by capture.record).
        self.kernel_cgroups: CgroupVerdicts | None = None
        self.table_only = 0  # syscalls applied to the tables without a row (row_syscalls)
        self.last_error = ""
        self._files: dict[tuple[str | None, str, str, bool], FdInfo] = {}
        self._container_users: dict[str, UserDb] = {}
        self._shapes: dict[tuple[Any, ...], Shape] = {}
        self.comms: dict[bytes, str] = {}  # raw comm -> decoded, for feed_chunk's records
        self.memos = fast_feed.Memos()

    def snapshot(self) -> None:
        """Seed the tables from /proc and look up the containers running now (call before
        the probe starts sending)."""
        self.procs.snapshot()
        procs = self.procs.procs.values()
        self.fds.snapshot(p.pid for p in procs if self.selection is None
                          or self.selection.wants(p))
        self.runtimes.ping()  # which runtimes answer, for the trace's metadata
        for cid, ctype in {(p.container_id, p.container_type) for p in procs
                           if p.container_type in RUNTIME_TYPES}:
            self.runtimes.lookup(cid, ctype)

    def meta_options(self) -> dict[str, Any]:
        """What the trace's metadata says about container enrichment (after `snapshot`)."""
        return {"container_runtime_sockets": sorted(self.runtimes.answered),
                "container_selection": "user space (after enrichment)"
                if self.selection is not None else None}

    def container(self, proc: Proc) -> ContainerInfo | None:
        """What the runtime says about the process's container (None: host, unknown)."""
        if proc.container_type not in RUNTIME_TYPES:
            return None
        return self.runtimes.lookup(proc.container_id, proc.container_type)

    def user_db(self, proc: Proc) -> UserDb | None:
        """The users and groups the process's uids name: the host's, or its container's own
        /etc/passwd and /etc/group (read through /proc/PID/root once per container)."""
        if proc.container_id == "host":
            return self.users
        db = self._container_users.get(proc.container_id)
        if db is None:
            db = UserDb.load(self.procs.root / str(proc.pid) / "root" / "etc")
            if not db.users and not db.groups:
                return None  # unreadable now (the process is gone): try with the next one
            self._container_users[proc.container_id] = db
        return db

    def feed(self, records: Iterable[Record], batch: RowBatch) -> None:
        """Apply `records` in order, appending their rows to `batch`."""
        if batch.first_num is None:
            batch.first_num = self.next_num
        for rec in records:
            self.apply(rec, batch)
        self.next_num = batch.first_num + len(batch)

    def feed_chunk(self, chunk: bytes, batch: RowBatch) -> int:
        """`feed(decode(chunk)[0], batch)`, several times faster (capture/fast_feed.py);
        returns how many bytes of `chunk` the records used."""
        if batch.first_num is None:
            batch.first_num = self.next_num
        used = fast_feed.feed_chunk(self, chunk, batch)
        self.next_num = batch.first_num + len(batch)
        return used

    def apply(self, rec: Record, batch: RowBatch, who: bytes | None = None) -> None:
        """Apply one record. `who`: the header's bytes from cgroup_id to comm, under which the
        process view of its row is kept in `batch.views` for the next records (fast_feed)."""
        if rec.kind == REC_SYSCALL:
            self._syscall(rec, batch, who)
        elif rec.kind == REC_EXEC_ARGS:
            self.exec_args[rec.tid] = rec
        elif rec.kind == REC_FORK:
            self.procs.fork(rec.tgid, rec.args[0], rec.ts + self.offset)
            if rec.args[3] and not rec.args[2] & CLONE_THREAD:
                self.fds.fork(rec.tgid, rec.args[0])
        elif rec.kind == REC_EXIT:
            self.fds.forked.pop(rec.args[0], None)
            if self.procs.exit(rec):
                self.fds.tables.pop(rec.tgid, None)
        elif rec.kind == REC_CGROUP and rec.items and len(rec.items[0]) < CGROUP_PATH_MAX:
            # (a path cut at CGROUP_PATH_MAX may have lost its container id: the walk decides)
            self.cgroups.learn(rec.args[0], rec.items[0].split(b"\0", 1)[0].decode(
                "utf-8", "replace"))

    def _syscall(self, rec: Record, batch: RowBatch, who: bytes | None) -> None:
        dispatch = DISPATCH.get(rec.nr)
        if dispatch is None:
            return
        name, handler = dispatch
        wall = rec.ts + self.offset
        proc = self.procs.procs.get(rec.tgid) or self.procs.get(rec, wall)
        if proc.ruid != rec.uid or proc.rgid != rec.gid:
            proc = self.procs.refresh_ids(proc, rec)
        if proc.cgroup_id != rec.cgroup_id:
            proc = self._cgroup_changed(proc, rec.cgroup_id)
        kernel = self.kernel_cgroups
        if kernel is not None and rec.cgroup_id not in kernel.checked:
            kernel.check(rec.cgroup_id)
        selected = self.selection is None or self.selection.wants(proc)
        if not selected:
            self.left_out[name] = self.left_out.get(name, 0) + 1
            # Left out: only what keeps the process table right runs, and the process's fd
            # table is dropped (read again from /proc should it ever be selected).
            self.fds.tables.pop(rec.tgid, None)
            self.procs.forked_from.pop(rec.tgid, None)
            if name not in PROC_STATE_SYSCALLS:
                return
        elif rec.tgid not in self.fds.tables:
            self._inherit_fds(proc)
        ev = Ev()
        try:
            handler(self, rec, proc, ev)
        except (ValueError, IndexError, KeyError, OSError, struct.error) as exc:
            # A record we cannot make sense of must not end the capture: it is counted (the
            # trace's drop counters show it) and its row is left out.
            self.errors += 1
            self.last_error = f"{name}: {type(exc).__name__}: {exc}"
            return
        after = ev.proc or proc
        if self.selection is not None and not (selected and after is proc):
            keep = self.selection.wants(after)  # an execve can enter (or leave) a container
            if not (selected and keep):
                self.fds.tables.pop(rec.tgid, None)  # read again from /proc when selected
            if not keep:
                return
        if not self.writes(name):
            self.table_only += 1
            return
        index = batch.proc_view(self, after, rec)
        batch.add(wall, rec.cpu, index, self.shape(name, rec.ret, ev))
        if who is not None and after is proc and self.selection is None:
            batch.views[who] = (proc, index, rec.tgid)

    def writes(self, syscall: str) -> bool:
        """Whether events of `syscall` become rows (else they only update the tables)."""
        return self.row_syscalls is None or syscall in self.row_syscalls

    def shape(self, evt_type: str, ret: int, ev: Ev) -> Shape:
        """The interned Shape of an event: equal events get the same object."""
        fd = ev.fd
        changed = ev.name_changed if fd is not None else None
        params = tuple(ev.params)
        key = (evt_type, ret, params, id(fd), ev.fd_num, ev.opened, changed)
        shape = self._shapes.get(key)
        if shape is None:
            if len(self._shapes) >= SHAPE_CACHE:
                self._shapes.clear()
            shape = self._shapes[key] = Shape(evt_type, ret, params, fd, ev.fd_num, ev.opened,
                                               changed)
        return shape

    def _cgroup_changed(self, proc: Proc, cgroup_id: int) -> Proc:
        """The process in the (v2) cgroup its record was taken in: first seen, moved, or
        forked from a process elsewhere. The container comes from the kernel's cgroup id when
        it names one; otherwise the process keeps what /proc said."""
        found = self.cgroups.container(cgroup_id)
        cid, ctype = found or (proc.container_id, proc.container_type)
        proc = replace(proc, cgroup_id=cgroup_id, container_id=cid, container_type=ctype)
        self.procs.procs[proc.pid] = proc
        return proc

    def file_info(self, kind: str | None, path: str, raw: str, cloexec: bool) -> FdInfo:
        """The FdInfo of an opened file, shared by every open of the same path: rows are built
        once per distinct FdInfo, and most programs open the same files over and over."""
        key = (kind, path, raw, cloexec)
        info = self._files.get(key)
        if info is None:
            if len(self._files) >= FILE_INFO_CACHE:
                self._files.clear()
            typechar = FD_KINDS[kind] if kind is not None else None
            info = self._files[key] = FdInfo(kind, typechar, path, cloexec=cloexec, nameraw=raw)
        return info

    def _inherit_fds(self, proc: Proc) -> None:
        """A new process's fds: a fork child's are its parent's as they were at the fork (or,
        when the fork's flags were not seen, as they are now); one found some other way is
        read from /proc."""
        parent_pid = self.procs.forked_from.pop(proc.pid, None)
        table = self.fds.forked.pop(proc.pid, None)
        if table is None and parent_pid is not None and parent_pid in self.fds.tables:
            table = dict(self.fds.tables[parent_pid])
        self.fds.tables[proc.pid] = table if table is not None else self.fds.read(proc.pid)

    def resolve(self, proc: Proc, dirfd: int, path: str) -> str:
        """An absolute, normalized path for `path` relative to `dirfd` (or the cwd)."""
        if not path or path.startswith("/"):
            return _normpath(path) if path else path
        if dirfd == AT_FDCWD:
            base = proc.cwd
        else:
            fd = self.fds.of(proc.pid).get(dirfd)
            base = fd.name if fd is not None and fd.type in ("directory", "file") else None
        return _normpath(posixpath.join(base, path)) if base else path


def _normpath(path: str) -> str:
    """posixpath.normpath, skipped for the common path that is already normal (it costs a
    microsecond per open otherwise)."""
    if "/." in path or "//" in path or (path.endswith("/") and path != "/"):
        return posixpath.normpath(path)
    return path
