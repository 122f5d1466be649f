"""Turn decoded capture records into trace rows, the way libsinsp fills Falco's fields.

The kernel sends bare facts (pid, tid, uid, comm, raw arguments, copied paths and sockaddrs).
Everything a rule asks about the process, its parents, the user, the fd and the container comes
from state kept by the `Enricher`, in these modules:

- capture/proc_table.py: `ProcTable` (one immutable `Proc` per process, seeded from /proc and
  kept current from fork/exit/execve/chdir), `UserDb` (uid/gid names) and `container_of`
  (container id and runtime from the cgroup path);
- capture/fd_table.py: `FdTables` (per process, fd -> immutable `FdInfo`: resolved path, socket
  family, protocol and endpoints, pipe, memfd...);
- capture/handlers.py: one handler per syscall family, which updates the tables and collects the
  event's parameters;
- capture/render_args.py: the argument renderers (errno names, open flags, modes, sockaddrs);
- capture/rows.py: `RowBatch`, the rows of a flush interval and their Arrow table.

`Enricher.feed(records, batch)` applies records in order and appends rows to a `RowBatch`.
"""

from __future__ import annotations

import posixpath
import struct
from collections.abc import Iterable
from pathlib import Path

from capture.fd_table import FD_KINDS, FdInfo, FdTables
from capture.handlers import DISPATCH, Ev
from capture.probe import REC_EXEC_ARGS, REC_EXIT, REC_FORK, REC_SYSCALL, Record
from capture.proc_table import Proc, ProcTable, UserDb
from capture.render_args import AT_FDCWD
from capture.rows import RowBatch

FILE_INFO_CACHE = 1 << 16  # distinct opened-file states kept for sharing


class Enricher:
    """Applies records in order to the process/fd state and appends one row per syscall."""

    def __init__(self, monotonic_to_wall: int, proc_root: Path = Path("/proc"),
                 users: UserDb | None = None) -> None:
        self.offset = monotonic_to_wall
        self.procs = ProcTable(proc_root)
        self.fds = FdTables(proc_root)
        self.users = users or UserDb.load()
        self.exec_args: dict[int, Record] = {}
        self.next_num = 1
        self.errors = 0  # records whose handler failed (left out of the trace)
        self.last_error = ""
        self._files: dict[tuple[str | None, str, str, bool], FdInfo] = {}

    def snapshot(self) -> None:
        """Seed the tables from /proc (call before the probe starts sending)."""
        self.procs.snapshot()
        self.fds.snapshot(self.procs.procs)

    def feed(self, records: Iterable[Record], batch: RowBatch) -> None:
        for rec in records:
            if rec.kind == REC_SYSCALL:
                self._syscall(rec, batch)
            elif rec.kind == REC_EXEC_ARGS:
                self.exec_args[rec.tid] = rec
            elif rec.kind == REC_FORK:
                self.procs.fork(rec.tgid, rec.args[0], rec.ts + self.offset)
            elif rec.kind == REC_EXIT and self.procs.exit(rec):
                self.fds.tables.pop(rec.tgid, None)

    def _syscall(self, rec: Record, batch: RowBatch) -> None:
        dispatch = DISPATCH.get(rec.nr)
        if dispatch is None:
            return
        name, handler = dispatch
        wall = rec.ts + self.offset
        proc = self.procs.procs.get(rec.tgid) or self.procs.get(rec, wall)
        if rec.tgid not in self.fds.tables:
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
        batch.add(self, rec, name, wall, ev.proc or proc, ev)

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
        """A new process's fds: a fork child's are its parent's (copied, as fork does); one
        found some other way is read from /proc."""
        parent_pid = self.procs.forked_from.pop(proc.pid, None)
        parent = self.fds.tables.get(parent_pid) if parent_pid is not None else None
        self.fds.tables[proc.pid] = dict(parent) if parent is not None else self.fds.read(proc.pid)

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
