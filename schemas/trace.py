"""The trace format: one Parquet row per syscall event, columns named by Falco field names.

This module is the single source both engines, the Parquet writer, the scap importer and the live
capture use: the Arrow schema, its version, the column <-> Falco field map (with where each value
comes from) and the file key-value metadata that makes a trace self-describing.

Layout decisions (why the schema looks the way it does):
- Every row is evaluable on its own: what a rule asks about the process, its parents, the user, the
  fd and the container is copied into the row. Parquet's dictionary pages make the repetition cheap.
- A column's name is the Falco field name verbatim (`proc.name`, `evt.arg.flags`), so the SQL view
  needs no renaming and a rule's field maps to a column by a dictionary look-up.
- Ancestors are LIST columns named by the Falco field: `proc.aname`, `proc.apid`, `proc.aexe`,
  `proc.aexepath`. Index 0 is the process itself, 1 its parent, and so on (Falco's `proc.aname[N]`
  is element N; Falco's bare `proc.aname` means "any element from 1 up"). In DuckDB lists are
  1-based: `"proc.aname"[3]` is Falco's `proc.aname[2]`. At most `ANCESTOR_DEPTH` entries are kept.
- Falco's filter-only fields (`fd.ip`, `fd.port`, `fd.net`, `fd.cnet`, `fd.snet`, `fd.lnet`,
  `fd.rnet`, `fd.proto`) have no column: they are derived from the client/server/local/remote
  columns by the engines. Keyed fields (`container.mount.dest[...]`, `proc.env[NAME]`) likewise come
  from `container.mounts` and `proc.env`.
- `evt.time` is a timestamp in ns (UTC, no zone attached so DuckDB keeps the ns precision). Other
  PT_ABSTIME/PT_RELTIME fields are plain int64 ns, compared as numbers like Falco does.
- PT_UINT32 fields (uids, gids, tty) are uint32 so that 4294967295 survives; 64-bit fields are
  int64 (Falco's PT_UINT64 values never reach 2**63 in practice and int64 is friendlier in SQL).
- Strings with few distinct values are Arrow dictionaries; the free-form ones (`evt.args`,
  `evt.buffer`) are plain, where a dictionary would only cost time.
- A path is stored once per row: columns that follow from `fd.name` are null where they do,
  with a bit in the last column, `sysreplay.elided` (schemas.elision); readers put them back.
- Row groups hold disjoint, increasing ranges of `evt.num`; inside one, rows are ordered by
  (`evt.type`, `evt.num`) (`CLUSTERED_ORDER`, named in the footer's `row_order`), so storage
  order is not event order: readers that need event order sort by `evt.num`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from schemas.elision import ELIDED, ELIDED_TYPE

# major.minor: a minor bump only adds columns. 2.0 elides values derivable from fd.name
# (schemas.elision); this code reads 1.x files too (they have nothing elided).
SCHEMA_VERSION = "2.0"
READABLE_MAJORS = ("1", "2")

# How many ancestors (index 0 = the process) the list columns keep. Upstream rules index up to
# proc.aname[5]; real process trees (ssh -> sudo -> shell, container runtimes) are deeper.
ANCESTOR_DEPTH = 16

STR = pa.dictionary(pa.int32(), pa.string())
TEXT = pa.string()
I16 = pa.int16()
I64 = pa.int64()
U16 = pa.uint16()
U32 = pa.uint32()
BOOL = pa.bool_()
TIME_NS = pa.timestamp("ns")
STR_LIST = pa.list_(pa.string())
I64_LIST = pa.list_(pa.int64())

# Where a column's value comes from (`Column.origin`).
FROM_SYSDIG = "sysdig"  # printed by `sysdig -p` on import, as libsinsp extracts it for filters
DERIVED = "derived"  # computed at import from other columns (see Column.note)
LIVE_ONLY = "live"  # only live capture fills it; null in imported traces (sysdig 0.29 lacks it)


class TraceError(Exception):
    """Base of every trace-format error; the message is one user-facing paragraph."""


@dataclass(frozen=True)
class Column:
    """One trace column: a Falco field, its Arrow type, and where its value comes from."""

    name: str  # the Falco field name; also the Parquet column name
    falco_type: str  # libsinsp PT_* type (the container plugin's types mapped to PT_*)
    arrow: pa.DataType
    origin: str = FROM_SYSDIG
    sysdig: str = ""  # the sysdig field printed for it on import ("" = same as name)
    note: str = ""

    @property
    def sysdig_field(self) -> str | None:
        """The `sysdig -p` field that supplies this column on import, or None."""
        if self.origin != FROM_SYSDIG or self.is_ancestor_list:
            return None
        return self.sysdig or self.name

    @property
    def is_ancestor_list(self) -> bool:
        return self.name in ANCESTOR_COLUMNS


def _c(name: str, falco_type: str, arrow: pa.DataType, origin: str = FROM_SYSDIG,
       sysdig: str = "", note: str = "") -> Column:
    return Column(name, falco_type, arrow, origin, sysdig, note)


def _arg(name: str, note: str = "") -> Column:
    # evt.arg.X is libsinsp's `evt.arg` (PT_CHARBUF): the argument rendered as a string.
    note = note or "named argument, as libsinsp renders it for filters"
    return _c(f"evt.arg.{name}", "PT_CHARBUF", STR, note=note)


EVT_COLUMNS = (
    _c("evt.num", "PT_UINT64", I64,
       note="event number in the capture; row groups hold increasing ranges of it"),
    _c("evt.time", "PT_CHARBUF", TIME_NS, sysdig="evt.rawtime",
       note="stored as the raw time (ns since epoch, UTC); Falco renders it as a time string"),
    _c("evt.type", "PT_CHARBUF", STR),
    _c("evt.dir", "PT_CHARBUF", STR, note="'>' enter, '<' exit; both are kept"),
    _c("evt.category", "PT_CHARBUF", STR),
    _c("evt.cpu", "PT_INT16", I16),
    _c("evt.res", "PT_CHARBUF", STR, note="SUCCESS or an errno name; null on enter events"),
    _c("evt.rawres", "PT_INT64", I64),
    _c("evt.failed", "PT_BOOL", BOOL),
    _c("evt.args", "PT_CHARBUF", TEXT, note="all arguments as one string, as Falco prints them"),
    _c("evt.buffer", "PT_BYTEBUF", pa.binary(), note="I/O data as captured (snaplen-limited)"),
    _c("evt.is_open_read", "PT_BOOL", BOOL),
    _c("evt.is_open_write", "PT_BOOL", BOOL),
    _c("evt.is_open_exec", "PT_BOOL", BOOL),
    _arg("cmd"), _arg("domain"), _arg("type"), _arg("proto"),
    _arg("fd", "as libsinsp resolves it: '<f>/etc/passwd', '<4t>1.2.3.4:5->...', or an errno"),
    _arg("filename"), _arg("flags", "flag names joined by '|'"), _arg("linkpath"), _arg("mode"),
    _arg("name"), _arg("newpath"), _arg("oldpath"), _arg("path"), _arg("request"),
    _arg("target"), _arg("uid"), _arg("gid"),
)

PROC_COLUMNS = (
    _c("proc.pid", "PT_INT64", I64),
    _c("proc.ppid", "PT_INT64", I64),
    _c("proc.vpid", "PT_INT64", I64),
    _c("proc.pvpid", "PT_INT64", I64, DERIVED,
       note="import: proc.vpid last seen for pid proc.ppid in the capture"),
    _c("proc.sid", "PT_INT64", I64),
    _c("proc.sname", "PT_CHARBUF", STR),
    _c("proc.vpgid", "PT_INT64", I64),
    _c("proc.is_vpgid_leader", "PT_BOOL", BOOL, DERIVED,
       note="import: proc.vpid == proc.vpgid (null when vpgid is unknown, -1)"),
    _c("proc.loginshellid", "PT_INT64", I64),
    _c("proc.name", "PT_CHARBUF", STR),
    _c("proc.exe", "PT_CHARBUF", STR),
    _c("proc.exepath", "PT_CHARBUF", STR),
    _c("proc.args", "PT_CHARBUF", STR),
    _c("proc.cmdline", "PT_CHARBUF", STR),
    _c("proc.env", "PT_CHARBUF", STR, note="space-separated NAME=value; proc.env[NAME] reads it"),
    _c("proc.cwd", "PT_CHARBUF", STR),
    _c("proc.tty", "PT_UINT32", U32),
    _c("proc.duration", "PT_RELTIME", I64, note="ns since the process started"),
    _c("proc.pid.ts", "PT_RELTIME", I64, LIVE_ONLY,
       note="the process's start, ns since the epoch (sysdig 0.29 lacks the field)"),
    _c("proc.pname", "PT_CHARBUF", STR),
    _c("proc.pcmdline", "PT_CHARBUF", STR),
    _c("proc.pexe", "PT_CHARBUF", STR, DERIVED,
       note="import: proc.exe last seen for pid proc.ppid (null if the parent made no event)"),
    _c("proc.pexepath", "PT_CHARBUF", STR, DERIVED,
       note="import: proc.exepath last seen for pid proc.ppid"),
    _c("proc.aname", "PT_CHARBUF", STR_LIST, note="import: proc.aname[0..ANCESTOR_DEPTH-1]"),
    _c("proc.apid", "PT_INT64", I64_LIST, note="import: proc.apid[0..ANCESTOR_DEPTH-1]"),
    _c("proc.aexe", "PT_CHARBUF", STR_LIST, DERIVED,
       note="import: proc.exe last seen for each pid of proc.apid (null entry if unseen)"),
    _c("proc.aexepath", "PT_CHARBUF", STR_LIST, DERIVED,
       note="import: proc.exepath last seen for each pid of proc.apid"),
    _c("proc.is_exe_writable", "PT_BOOL", BOOL),
    _c("proc.is_exe_upper_layer", "PT_BOOL", BOOL, LIVE_ONLY),
    _c("proc.is_exe_from_memfd", "PT_BOOL", BOOL, LIVE_ONLY),
    _c("proc.exe_ino.ctime", "PT_ABSTIME", I64, LIVE_ONLY),
    _c("proc.exe_ino.mtime", "PT_ABSTIME", I64, LIVE_ONLY),
    _c("proc.exe_ino.ctime_duration_proc_start", "PT_ABSTIME", I64, LIVE_ONLY),
)

THREAD_USER_COLUMNS = (
    _c("thread.tid", "PT_INT64", I64),
    _c("thread.vtid", "PT_INT64", I64),
    _c("thread.ismain", "PT_BOOL", BOOL),
    _c("thread.cap_effective", "PT_CHARBUF", STR, LIVE_ONLY),
    _c("thread.cap_permitted", "PT_CHARBUF", STR, LIVE_ONLY),
    _c("thread.cap_inheritable", "PT_CHARBUF", STR, LIVE_ONLY),
    _c("user.uid", "PT_UINT32", U32),
    _c("user.name", "PT_CHARBUF", STR, note="from the capture's own user table"),
    _c("user.loginuid", "PT_INT64", I64, note="-1 when unset"),
    _c("user.loginname", "PT_CHARBUF", STR),
    _c("group.gid", "PT_UINT32", U32),
    _c("group.name", "PT_CHARBUF", STR),
)

FD_COLUMNS = (
    _c("fd.num", "PT_INT64", I64),
    _c("fd.type", "PT_CHARBUF", STR),
    _c("fd.typechar", "PT_CHARBUF", STR),
    _c("fd.name", "PT_CHARBUF", STR),
    _c("fd.directory", "PT_CHARBUF", STR),
    _c("fd.filename", "PT_CHARBUF", STR),
    _c("fd.nameraw", "PT_CHARBUF", STR, LIVE_ONLY),
    _c("fd.name_changed", "PT_BOOL", BOOL),
    _c("fd.sockfamily", "PT_CHARBUF", STR),
    _c("fd.l4proto", "PT_CHARBUF", STR),
    _c("fd.is_server", "PT_BOOL", BOOL),
    _c("fd.connected", "PT_BOOL", BOOL),
    _c("fd.cip", "PT_IPADDR", STR, note="IPs as text: dotted quad or IPv6"),
    _c("fd.sip", "PT_IPADDR", STR),
    _c("fd.lip", "PT_IPADDR", STR),
    _c("fd.rip", "PT_IPADDR", STR),
    _c("fd.cport", "PT_PORT", U16),
    _c("fd.sport", "PT_PORT", U16),
    _c("fd.lport", "PT_PORT", U16),
    _c("fd.rport", "PT_PORT", U16),
)

CONTAINER_COLUMNS = (
    _c("container.id", "PT_CHARBUF", STR, note="'host' outside containers"),
    _c("container.name", "PT_CHARBUF", STR),
    _c("container.type", "PT_CHARBUF", STR),
    _c("container.image", "PT_CHARBUF", STR),
    _c("container.image.id", "PT_CHARBUF", STR),
    _c("container.image.repository", "PT_CHARBUF", STR),
    _c("container.image.tag", "PT_CHARBUF", STR),
    _c("container.image.digest", "PT_CHARBUF", STR),
    _c("container.privileged", "PT_BOOL", BOOL),
    _c("container.mounts", "PT_CHARBUF", STR,
       note="source:dest:mode:rdrw:propagation items, comma-joined"),
    _c("container.start_ts", "PT_ABSTIME", I64, LIVE_ONLY),
    _c("k8s.ns.name", "PT_CHARBUF", STR),
    _c("k8s.pod.name", "PT_CHARBUF", STR),
)

COLUMNS: tuple[Column, ...] = (
    EVT_COLUMNS + PROC_COLUMNS + THREAD_USER_COLUMNS + FD_COLUMNS + CONTAINER_COLUMNS
)
ANCESTOR_COLUMNS = ("proc.aname", "proc.apid", "proc.aexe", "proc.aexepath")
COLUMN_BY_NAME: dict[str, Column] = {c.name: c for c in COLUMNS}
SORT_COLUMN = "evt.num"
# How rows are ordered inside each row group (`TraceMeta.row_order`). Row groups always hold
# disjoint, increasing ranges of evt.num; inside one, the writer clusters the rows by event type
# (`CLUSTERED_ORDER`): rules look at a few types, and a reader decoding 2048-row vectors then
# finds them side by side instead of spread over nearly every vector. Traces written before
# that (no `sysreplay.row_order` key) are in evt.num order (`NUM_ORDER`). Whoever needs event
# order sorts by evt.num; nothing may assume the storage order is it.
NUM_ORDER = ("evt.num",)
CLUSTERED_ORDER = ("evt.type", "evt.num")
# A file without these is not an event trace, whatever its metadata says.
REQUIRED_COLUMNS = ("evt.num", "evt.time", "evt.type", "evt.dir")


def arrow_schema(metadata: Mapping[str, str] | None = None) -> pa.Schema:
    """The Arrow schema of a trace (every column nullable: absent fields are null): the Falco
    field columns, then the bitmask of elided values (schemas.elision)."""
    return pa.schema([*(pa.field(c.name, c.arrow) for c in COLUMNS),
                      pa.field(ELIDED, ELIDED_TYPE)], metadata=metadata)


def column_for_field(falco_field: str) -> Column | None:
    """The column holding a Falco field; `proc.aname[2]` maps to the `proc.aname` list column."""
    base = falco_field.split("[", 1)[0]
    return COLUMN_BY_NAME.get(base)


# ---- file key-value metadata ---------------------------------------------------------------

META_PREFIX = "sysreplay."
SOURCE_LIVE = "live"
SOURCE_IMPORT = "import"


@dataclass(frozen=True)
class TraceMeta:
    """What the Parquet footer says about a trace file (keys `sysreplay.*`, values strings).

    Counters and the time range are filled by the writer when it finalizes the file; the rest is
    known when capture (or import) starts.
    """

    source: str  # SOURCE_LIVE or SOURCE_IMPORT
    source_file: str = ""  # the imported file's name (import only)
    hostname: str = ""
    kernel: str = ""  # `uname -r` of the captured machine; "" when unknown (scap files lack it)
    options: dict[str, Any] = field(default_factory=dict)  # capture options, as JSON
    events: int = 0
    dropped: int | None = None  # None = unknown (a scap file does not record its drops)
    drops: dict[str, int] = field(default_factory=dict)  # per-counter detail of `dropped`
    capture_start_ns: int | None = None  # first event's evt.time
    capture_end_ns: int | None = None  # last event's evt.time
    schema_version: str = SCHEMA_VERSION
    created_by: str = "sysreplay"
    # The order of rows inside each row group (see CLUSTERED_ORDER); the writer sets it.
    row_order: tuple[str, ...] = NUM_ORDER

    def to_kv(self) -> dict[str, str]:
        def opt(v: int | None) -> str:
            return "" if v is None else str(v)

        kv = {
            "schema_version": self.schema_version,
            "source": self.source,
            "source_file": self.source_file,
            "hostname": self.hostname,
            "kernel": self.kernel,
            "capture_start_ns": opt(self.capture_start_ns),
            "capture_end_ns": opt(self.capture_end_ns),
            "events": str(self.events),
            "dropped": opt(self.dropped),
            "drops": json.dumps(self.drops, sort_keys=True),
            "options": json.dumps(self.options, sort_keys=True),
            "created_by": self.created_by,
            "row_order": ",".join(self.row_order),
        }
        return {META_PREFIX + k: v for k, v in kv.items()}

    @staticmethod
    def from_kv(kv: Mapping[bytes, bytes] | Mapping[str, str]) -> TraceMeta:
        """Parse footer metadata; raises KeyError/ValueError when it is not (valid) ours."""
        text = {_s(k): _s(v) for k, v in kv.items()}
        get = {k[len(META_PREFIX):]: v for k, v in text.items() if k.startswith(META_PREFIX)}
        if "schema_version" not in get:
            raise KeyError(META_PREFIX + "schema_version")

        def opt(key: str) -> int | None:
            value = get.get(key, "")
            return int(value) if value else None

        return TraceMeta(
            source=get.get("source", ""),
            source_file=get.get("source_file", ""),
            hostname=get.get("hostname", ""),
            kernel=get.get("kernel", ""),
            options=json.loads(get.get("options") or "{}"),
            events=int(get.get("events", "0")),
            dropped=opt("dropped"),
            drops={str(k): int(v) for k, v in json.loads(get.get("drops") or "{}").items()},
            capture_start_ns=opt("capture_start_ns"),
            capture_end_ns=opt("capture_end_ns"),
            schema_version=get["schema_version"],
            created_by=get.get("created_by", ""),
            # Absent from traces written before the writer clustered rows by event type.
            row_order=tuple(get["row_order"].split(",")) if get.get("row_order") else NUM_ORDER,
        )


def _s(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def version_compatible(version: str) -> bool:
    """True when this code can read a file written with trace schema `version`."""
    return version.split(".", 1)[0] in READABLE_MAJORS
