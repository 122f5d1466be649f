"""Rows to Arrow: `RowBatch` collects one row per event and builds the trace table in bulk.

`RowBatch.add` appends one tuple per event (the per-event cost is what bounds the capture rate);
`RowBatch.to_table()` builds the Arrow table: per-event columns from lists, `evt.args` and the
`evt.arg.*` columns from the handlers' parameters, and the process and fd columns by building one
row per distinct process view / fd state of the batch and `take`-ing them.
"""

from __future__ import annotations

import functools
import posixpath
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from capture.container_runtime import ContainerInfo
from capture.fd_table import FdInfo
from capture.probe import Record
from capture.proc_table import Proc
from capture.render_args import errno_name
from schemas import catalog
from schemas.trace import COLUMN_BY_NAME, arrow_schema

if TYPE_CHECKING:
    from capture.enrich import Enricher
    from capture.handlers import Ev

SHELLS = frozenset({"ash", "bash", "csh", "ksh", "sh", "tcsh", "zsh", "dash"})
ARG_COLUMNS = tuple(c.name for c in COLUMN_BY_NAME.values() if c.name.startswith("evt.arg."))
_CATEGORY_NAMES = {"EC_IPC": "IPC"}
_IO_CATEGORIES = ("EC_IO_READ", "EC_IO_WRITE", "EC_IO_OTHER")


def category(evt_type: str, fd: FdInfo | None) -> str:
    """`evt.category`: the event table's, or for I/O events the fd's (file, net, IPC)."""
    key = (evt_type, fd.type if fd is not None else None)
    found = _CATEGORY_CACHE.get(key)
    if found is None:
        found = _CATEGORY_CACHE[key] = _category(evt_type, fd)
    return found


_CATEGORY_CACHE: dict[tuple[str, str | None], str] = {}


def _category(evt_type: str, fd: FdInfo | None) -> str:
    info = catalog.event_type_info(evt_type)
    cat = info.category if info is not None else ""
    if cat in _IO_CATEGORIES:
        if fd is None or fd.type is None:
            return "unknown"
        return "file" if fd.type in ("file", "directory") else "net" if fd.is_socket else "IPC"
    return _CATEGORY_NAMES.get(cat, cat[3:].lower() if cat else "other")


class RowBatch:
    """Rows accumulated between two writes; `to_table()` turns them into a trace table.

    `add` appends one tuple per row (the per-event cost is what bounds the capture rate);
    columns are built in bulk at `to_table`. Process and fd columns are built once per distinct
    process view / fd state of the batch and spread over the rows with `take`.
    """

    def __init__(self) -> None:
        self.rows: list[tuple[Any, ...]] = []
        self.params: list[list[tuple[str, str, str | None]]] = []
        self._proc_index: dict[tuple[int, str, int, int, int], int] = {}
        self._proc_rows: list[tuple[Any, ...]] = []
        self._procs: list[Proc] = []  # keeps every keyed Proc alive, so ids are not reused
        self._fd_index: dict[int, int] = {}
        self._fds: list[FdInfo] = []

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, en: Enricher, rec: Record, evt_type: str, wall: int, proc: Proc,
            ev: Ev) -> None:
        key = (id(proc), rec.comm, rec.tid, rec.uid, rec.gid)
        proc_index = self._proc_index.get(key)
        if proc_index is None:
            proc_index = self._proc_index[key] = len(self._proc_rows)
            self._proc_rows.append(proc_row(en, proc, rec))
            self._procs.append(proc)
        fd, fd_index = ev.fd, None
        if fd is not None:
            fd_index = self._fd_index.get(id(fd))
            if fd_index is None:
                fd_index = self._fd_index[id(fd)] = len(self._fds)
                self._fds.append(fd)
        self.rows.append((en.next_num, wall, evt_type, category(evt_type, fd), rec.cpu, rec.ret,
                          ev.opened, ev.fd_num, ev.name_changed if fd is not None else None,
                          proc_index, fd_index))
        self.params.append(ev.params)
        en.next_num += 1

    def to_table(self) -> pa.Table:
        schema = arrow_schema()
        n = len(self.rows)
        if not n:
            return schema.empty_table()
        (nums, times, types, cats, cpus, rets, opened, fd_nums, changed, proc_keys,
         fd_keys) = zip(*self.rows, strict=True)
        t = {name: schema.field(name).type for name in schema.names}
        arrays: dict[str, Any] = {
            "evt.num": pa.array(nums, t["evt.num"]), "evt.time": pa.array(times, t["evt.time"]),
            "evt.type": pa.array(types, t["evt.type"]),
            "evt.dir": pa.array(["<"] * n, t["evt.dir"]),  # exit events, entry args joined
            "evt.category": pa.array(cats, t["evt.category"]),
            "evt.cpu": pa.array(cpus, t["evt.cpu"]), "fd.num": pa.array(fd_nums, t["fd.num"]),
            "fd.name_changed": pa.array(changed, t["fd.name_changed"]),
        }
        arrays.update(_result_columns(rets, t))
        arrays.update(_open_columns(opened))
        arrays.update(_param_columns(self.params, t))
        procs = _rows_table(_PROC_COLUMNS, self._proc_rows, schema)
        arrays.update(_take(procs, list(proc_keys)))
        fds = _rows_table(_FD_COLUMNS, [fd_row(f) for f in self._fds], schema)
        arrays.update(_take(fds, list(fd_keys)))
        start = arrays.pop("_start_ns")
        arrays["proc.duration"] = pc.subtract(pa.array(times, pa.int64()), start)
        columns = [arrays.get(f.name, pa.nulls(n, f.type)) for f in schema]
        return pa.Table.from_arrays(columns, schema=schema)


def _result_columns(rets: tuple[int, ...], t: dict[str, pa.DataType]) -> dict[str, pa.Array]:
    names = {r: errno_name(r) for r in set(rets)}
    rawres = pa.array(rets, t["evt.rawres"])
    return {"evt.rawres": rawres, "evt.failed": pc.less(rawres, 0),
            "evt.res": pa.array([names[r] for r in rets], t["evt.res"])}


def _open_columns(opened: tuple[tuple[bool, bool, bool] | None, ...]) -> dict[str, pa.Array]:
    flags = [o or _NOT_OPENED for o in opened]
    read, write, execs = zip(*flags, strict=True)
    return {"evt.is_open_read": pa.array(read, pa.bool_()),
            "evt.is_open_write": pa.array(write, pa.bool_()),
            "evt.is_open_exec": pa.array(execs, pa.bool_())}


_NOT_OPENED = (False, False, False)


def _param_columns(params: list[list[tuple[str, str, str | None]]],
                   t: dict[str, pa.DataType]) -> dict[str, pa.Array]:
    """`evt.args` (Falco's `name=raw(resolved) ...`) and the `evt.arg.*` columns."""
    text: list[str] = []
    args: dict[str, list[str | None]] = {}
    n = len(params)
    for i, event in enumerate(params):
        line, named = _render_params(tuple(event))
        text.append(line)
        for column, value in named:
            values = args.get(column)
            if values is None:
                values = args[column] = [None] * n
            values[i] = value
    out = {"evt.args": pa.array(text, t["evt.args"])}
    out.update({name: pa.array(values, t[name]) for name, values in args.items()})
    return out


@functools.lru_cache(maxsize=1 << 16)
def _render_params(params: tuple[tuple[str, str, str | None], ...]
                   ) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The `evt.args` text and the (column, value) pairs of one event's parameters. Cached:
    the same parameters recur constantly (a process closing fd 3 on the same file)."""
    line = "".join([f"{k}={r}({v}) " if v else f"{k}={r} " for k, r, v in params])
    named = tuple((_ARG_COLUMN[k], v or r) for k, r, v in params if k in _ARG_COLUMN)
    return line, named


_ARG_COLUMN = {name[len("evt.arg."):]: name for name in ARG_COLUMNS}


def _rows_table(names: tuple[str, ...], rows: list[tuple[Any, ...]],
                schema: pa.Schema) -> pa.Table:
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    arrays = [pa.array(list(col), type=schema.field(name).type if name in schema.names
                       else pa.int64()) for name, col in zip(names, columns, strict=True)]
    return pa.Table.from_arrays(arrays, names=list(names))


def _take(table: pa.Table, keys: list[int | None]) -> dict[str, pa.ChunkedArray]:
    taken = table.take(pa.array(keys, type=pa.int32()))
    return {name: taken.column(name) for name in taken.column_names}


_PROC_COLUMNS = (
    "proc.pid", "proc.ppid", "proc.vpid", "proc.pvpid", "proc.sid", "proc.sname", "proc.vpgid",
    "proc.is_vpgid_leader", "proc.loginshellid", "proc.name", "proc.exe", "proc.exepath",
    "proc.args", "proc.cmdline", "proc.cwd", "proc.tty", "proc.pname", "proc.pcmdline",
    "proc.pexe", "proc.pexepath", "proc.aname", "proc.apid", "proc.aexe", "proc.aexepath",
    "proc.is_exe_from_memfd", "proc.exe_ino.ctime", "proc.exe_ino.mtime",
    "proc.exe_ino.ctime_duration_proc_start", "thread.tid", "thread.vtid", "thread.ismain",
    "user.uid", "user.name", "user.loginuid", "user.loginname", "group.gid", "group.name",
    "proc.env", "container.id", "container.type", "container.name", "container.image",
    "container.image.id", "container.image.repository", "container.image.tag",
    "container.image.digest", "container.privileged", "container.mounts", "k8s.ns.name",
    "k8s.pod.name", "_start_ns",
)


def proc_row(en: Enricher, proc: Proc, rec: Record) -> tuple[Any, ...]:
    """The values of _PROC_COLUMNS for one process as seen by one thread/user."""
    chain = en.procs.ancestors(proc)
    parent = chain[1] if len(chain) > 1 else None
    session = en.procs.procs.get(proc.sid) if proc.sid is not None else None
    shells = [p.pid for p in chain if p.comm in SHELLS]
    ctime_gap = (proc.start_ns - proc.exe_ctime
                 if proc.start_ns is not None and proc.exe_ctime is not None else None)
    # Falco's user and group are the effective ids; the record carries the real ones.
    uid = proc.euid if proc.euid is not None else rec.uid
    gid = proc.egid if proc.egid is not None else rec.gid
    db = en.user_db(proc)
    users, groups = (db.users, db.groups) if db is not None else ({}, {})
    return (
        proc.pid, proc.ppid, proc.vpid, parent.vpid if parent else None, proc.sid,
        session.comm if session else None, proc.pgid,
        proc.vpid == proc.pgid if proc.vpid is not None and proc.pgid is not None else None,
        shells[-1] if shells else None, rec.comm, proc.exe, proc.exepath, " ".join(proc.args),
        proc.cmdline, proc.cwd, proc.tty,
        parent.comm if parent else None, parent.cmdline if parent else None,
        parent.exe if parent else None, parent.exepath if parent else None,
        [p.comm for p in chain], [p.pid for p in chain], [p.exe for p in chain],
        [p.exepath for p in chain], proc.exe_from_memfd, proc.exe_ctime, proc.exe_mtime,
        ctime_gap, rec.tid, rec.tid if proc.vpid == proc.pid else None, rec.tid == proc.pid,
        uid, users.get(uid), proc.loginuid,
        users.get(proc.loginuid) if proc.loginuid is not None else None,
        gid, groups.get(gid), proc.env, proc.container_id, proc.container_type,
        *_container_values(proc, en.container(proc)), proc.start_ns,
    )


def _container_values(proc: Proc, info: ContainerInfo | None) -> tuple[Any, ...]:
    """container.name ... k8s.pod.name: "host" for the host, as Falco names it; the runtime's
    answer for a container it knows; null otherwise (a CRI runtime, no socket answering)."""
    if proc.container_id == "host":
        return ("host",) + (None,) * 9
    if info is None:
        return (None,) * 10
    return (info.name, info.image, info.image_id, info.image_repository, info.image_tag,
            info.image_digest, info.privileged, info.mounts_text,
            info.label("io.kubernetes.pod.namespace"), info.label("io.kubernetes.pod.name"))


_FD_COLUMNS = (
    "fd.type", "fd.typechar", "fd.name", "fd.directory", "fd.filename", "fd.nameraw",
    "fd.sockfamily", "fd.l4proto", "fd.is_server", "fd.connected", "fd.cip", "fd.sip",
    "fd.lip", "fd.rip", "fd.cport", "fd.sport", "fd.lport", "fd.rport",
)


def fd_row(fd: FdInfo) -> tuple[Any, ...]:
    directory = filename = None
    if fd.type == "directory":
        directory = fd.name
    elif fd.type in ("file", None) and fd.name.startswith("/"):
        directory, filename = posixpath.split(fd.name)
    family = "ip" if fd.type in ("ipv4", "ipv6") else "unix" if fd.type == "unix" else None
    local, remote = fd.local, fd.remote
    client, server = (remote, local) if fd.is_server else (local, remote)
    ip = family == "ip"
    return (
        fd.type, fd.typechar, fd.name, directory, filename, fd.nameraw, family,
        fd.l4proto if ip else None, fd.is_server if fd.is_socket else None,
        fd.connected if fd.is_socket else None,
        client[0] if ip and client else None, server[0] if ip and server else None,
        local[0] if ip and local else None, remote[0] if ip and remote else None,
        client[1] if ip and client else None, server[1] if ip and server else None,
        local[1] if ip and local else None, remote[1] if ip and remote else None,
    )
