"""Rows to Arrow: `RowBatch` collects one row per event and builds the trace table in bulk.

A row is its time, cpu, process view and `Shape`. A shape is everything else the row says (event
type, result, parameters, fd), made by the enricher and shared by every event alike: a process
closing fd 3 on the same file again and again makes one shape. So the per-event cost of a row is
two appends to typed arrays (its time and its kind: cpu, process view and shape), and
`RowBatch.to_table()` builds the columns of each distinct shape and process view once and
spreads them over the rows with `take`.
"""

from __future__ import annotations

import functools
import posixpath
from array import array
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from capture import compact
from capture.container_info import ContainerInfo
from capture.fd_table import FdInfo
from capture.probe import Record
from capture.proc_table import Proc
from capture.render_args import errno_name
from schemas import catalog
from schemas.trace import arrow_schema

if TYPE_CHECKING:
    from capture.enrich import Enricher

SHELLS = frozenset({"ash", "bash", "csh", "ksh", "sh", "tcsh", "zsh", "dash"})
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


Param = tuple[str, str, "str | None"]  # name, raw value, resolved value


class Shape:
    """What a row says besides its number, time, cpu and process: immutable once made.

    Compared by identity: the enricher interns shapes (`Enricher.shape`), so equal events share
    one object and a batch can index its shapes by a dictionary look-up of the object."""

    __slots__ = ("category", "evt_type", "fd", "fd_num", "name_changed", "opened", "params",
                 "ret")

    def __init__(self, evt_type: str, ret: int, params: tuple[Param, ...], fd: FdInfo | None,
                 fd_num: int | None, opened: tuple[bool, bool, bool] | None,
                 name_changed: bool | None) -> None:
        self.evt_type = evt_type
        self.category = category(evt_type, fd)
        self.ret = ret
        self.params = params
        self.fd = fd
        self.fd_num = fd_num
        self.opened = opened  # is_open_read/write/exec
        self.name_changed = name_changed  # None without an fd


class RowBatch:
    """Rows accumulated between two writes; `to_table()` turns them into a trace table.

    Per row: its time (ns since the epoch) and its kind: the (cpu, process view, shape) triple,
    numbered in this batch, as busy threads repeat the same few events on the same cpu. Rows
    are numbered from `first_num` on (set by the enricher). `views` and `seen` belong to the
    enricher's fast path (capture/fast_feed.py), which appends to `times` and `kinds` itself.
    """

    def __init__(self) -> None:
        self.first_num: int | None = None
        self.times = array("q")
        self.kinds = array("i")
        self.kind_index: dict[tuple[int, int, Shape], int] = {}
        self._kind_cpus = array("h")
        self._kind_procs = array("i")
        self._kind_shapes = array("i")
        self.shape_index: dict[Shape, int] = {}
        self.shapes: list[Shape] = []
        self.views: dict[bytes, tuple[Proc, int, int]] = {}
        self.seen: dict[bytes, tuple[Any, ...]] = {}
        self._proc_index: dict[tuple[int, str, int, int, int], int] = {}
        self._proc_rows: list[tuple[Any, ...]] = []
        self._procs: list[Proc] = []  # keeps every keyed Proc alive, so ids are not reused

    def __len__(self) -> int:
        return len(self.times)

    def proc_view(self, en: Enricher, proc: Proc, rec: Record) -> int:
        """The index of the process columns for `proc` as seen by the record's thread/user."""
        key = (id(proc), rec.comm, rec.tid, rec.uid, rec.gid)
        index = self._proc_index.get(key)
        if index is None:
            index = self._proc_index[key] = len(self._proc_rows)
            self._proc_rows.append(proc_row(en, proc, rec))
            self._procs.append(proc)
        return index

    def kind(self, cpu: int, proc_index: int, shape: Shape) -> int:
        """The kind number of rows of `shape` by process view `proc_index` on `cpu`."""
        key = (cpu, proc_index, shape)
        kind = self.kind_index.get(key)
        if kind is None:
            index = self.shape_index.get(shape)
            if index is None:
                index = self.shape_index[shape] = len(self.shapes)
                self.shapes.append(shape)
            kind = self.kind_index[key] = len(self._kind_cpus)
            self._kind_cpus.append(cpu)
            self._kind_procs.append(proc_index)
            self._kind_shapes.append(index)
        return kind

    def add(self, wall: int, cpu: int, proc_index: int, shape: Shape) -> None:
        self.times.append(wall)
        self.kinds.append(self.kind(cpu, proc_index, shape))

    def last_shape(self) -> Shape:
        """The shape of the last row."""
        return self.shapes[self._kind_shapes[self.kinds[-1]]]

    def to_spool(self) -> pa.RecordBatch:
        """The batch in its compact form (capture/compact.py): what the capture spools."""
        schema = arrow_schema()
        events = {"evt.time": _from_array(self.times, schema.field("evt.time").type),
                  compact.KIND_KEY: _from_array(self.kinds, pa.int32())}
        kinds = {"evt.cpu": _from_array(self._kind_cpus, schema.field("evt.cpu").type),
                 compact.PROC_KEY: _from_array(self._kind_procs, pa.int32()),
                 compact.SHAPE_KEY: _from_array(self._kind_shapes, pa.int32())}
        procs = _columns(compact.PROC_TYPE, self._proc_rows)
        first = self.first_num if self.first_num is not None else 1
        return compact.pack(first, events, kinds, procs, _shape_columns(self.shapes))

    def to_table(self) -> pa.Table:
        """The trace rows of the batch."""
        return compact.expand(self.to_spool())


def _from_array(values: array[Any], typ: pa.DataType) -> pa.Array:
    """An Arrow array over the bytes of a typed `array` (no per-value conversion)."""
    return pa.Array.from_buffers(typ, len(values), [None, pa.py_buffer(values)])


def _columns(typ: pa.StructType, rows: list[tuple[Any, ...]]) -> dict[str, pa.Array]:
    """Columns from rows whose values are in the order of `typ`'s fields."""
    columns = list(zip(*rows, strict=True)) if rows else [()] * typ.num_fields
    fields = [typ.field(i) for i in range(typ.num_fields)]
    return {f.name: pa.array(col, f.type) for f, col in zip(fields, columns, strict=True)}


def _shape_columns(shapes: list[Shape]) -> dict[str, pa.Array]:
    """The columns of SHAPE_COLUMNS, one row per shape."""
    t = {f.name: f.type for f in compact.SHAPE_TYPE}
    arrays: dict[str, Any] = {
        "evt.type": pa.array([s.evt_type for s in shapes], t["evt.type"]),
        "evt.category": pa.array([s.category for s in shapes], t["evt.category"]),
        "evt.dir": pa.array(["<"] * len(shapes), t["evt.dir"]),  # exit events, entry args joined
        "fd.num": pa.array([s.fd_num for s in shapes], t["fd.num"]),
        "fd.name_changed": pa.array([s.name_changed for s in shapes], t["fd.name_changed"]),
    }
    arrays.update(_result_columns([s.ret for s in shapes], t))
    arrays.update(_open_columns([s.opened for s in shapes]))
    arrays.update(_param_columns([s.params for s in shapes], t))
    fd_type = pa.struct([pa.field(n, t[n]) for n in compact.FD_COLUMNS])
    arrays.update(_columns(fd_type, [fd_row(s.fd) if s.fd is not None else _NO_FD
                                     for s in shapes]))
    return arrays


def _result_columns(rets: list[int], t: dict[str, pa.DataType]) -> dict[str, pa.Array]:
    names = {r: errno_name(r) for r in set(rets)}
    rawres = pa.array(rets, t["evt.rawres"])
    return {"evt.rawres": rawres, "evt.failed": pc.less(rawres, 0),
            "evt.res": pa.array([names[r] for r in rets], t["evt.res"])}


def _open_columns(opened: list[tuple[bool, bool, bool] | None]) -> dict[str, pa.Array]:
    flags = [o or _NOT_OPENED for o in opened]
    read, write, execs = zip(*flags, strict=True)
    return {"evt.is_open_read": pa.array(read, pa.bool_()),
            "evt.is_open_write": pa.array(write, pa.bool_()),
            "evt.is_open_exec": pa.array(execs, pa.bool_())}


_NOT_OPENED = (False, False, False)


def _param_columns(params: list[tuple[Param, ...]],
                   t: dict[str, pa.DataType]) -> dict[str, pa.Array]:
    """`evt.args` (Falco's `name=raw(resolved) ...`) and the `evt.arg.*` columns."""
    text: list[str] = []
    args: dict[str, list[str | None]] = {}
    n = len(params)
    for i, event in enumerate(params):
        line, named = _render_params(event)
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
def _render_params(params: tuple[Param, ...]) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The `evt.args` text and the (column, value) pairs of one event's parameters. Cached:
    the same parameters recur in the shapes of successive batches."""
    line = "".join([f"{k}={r}({v}) " if v else f"{k}={r} " for k, r, v in params])
    named = tuple((_ARG_COLUMN[k], v or r) for k, r, v in params if k in _ARG_COLUMN)
    return line, named


_ARG_COLUMN = {name[len("evt.arg."):]: name for name in compact.ARG_COLUMNS}


def proc_row(en: Enricher, proc: Proc, rec: Record) -> tuple[Any, ...]:
    """The values of compact.PROC_COLUMNS for one process as seen by one thread/user."""
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
    answer for a container it knows; null otherwise (no socket answering, unknown id)."""
    if proc.container_id == "host":
        return ("host",) + (None,) * 9
    if info is None:
        return (None,) * 10
    return (info.name, info.image, info.image_id, info.image_repository, info.image_tag,
            info.image_digest, info.privileged, info.mounts_text,
            info.label("io.kubernetes.pod.namespace"), info.label("io.kubernetes.pod.name"))


_NO_FD = (None,) * len(compact.FD_COLUMNS)


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
