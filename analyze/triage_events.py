"""One event as a person reads it: who did what to which object, with what result.

`EventRow` is the shape the timeline and `explain` show; `event_row` builds it from a trace row
(the columns of `ROW_COLUMNS`), and `summary` says in one line what the event touched: the path
opened, the rename's two names, the connection, the command line executed. `activity_of` sorts
an event into the kinds of activity `explain` groups (exec, open, write, rename, ...).

Only exit events (`evt.dir` '<') carry results and resolved names, so activity is read from
them; the timeline shows both directions, as sysdig does for imported captures (live captures
record exit events only).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# The columns `event_row` reads (evt.time as int ns, see triage_db.select_list).
ROW_COLUMNS = (
    "evt.num", "evt.time", "evt.type", "evt.dir", "evt.res", "evt.failed", "evt.rawres",
    "evt.args", "evt.is_open_read", "evt.is_open_write", "evt.arg.name", "evt.arg.path",
    "evt.arg.filename", "evt.arg.oldpath", "evt.arg.newpath", "evt.arg.target",
    "evt.arg.linkpath", "evt.arg.mode", "evt.arg.flags", "proc.pid", "thread.tid", "proc.name",
    "proc.cmdline", "proc.exepath", "user.name", "container.id", "container.name", "fd.name",
    "fd.typechar",
)

# Activity kinds, in the order `explain` lists them, and the event types of each.
ACTIVITY_TYPES: dict[str, tuple[str, ...]] = {
    "exec": ("execve", "execveat"),
    "open": ("open", "openat", "openat2", "creat"),
    "write": ("write", "pwrite", "writev", "pwritev"),
    "rename": ("rename", "renameat", "renameat2"),
    "unlink": ("unlink", "unlinkat", "rmdir"),
    "link": ("link", "linkat", "symlink", "symlinkat"),
    "chmod": ("chmod", "fchmod", "fchmodat"),
    "mkdir": ("mkdir", "mkdirat"),
    "connect": ("connect",),
    "accept": ("accept", "accept4"),
    "listen": ("bind", "listen"),
}
KIND_OF_TYPE = {t: kind for kind, types in ACTIVITY_TYPES.items() for t in types}
ACTIVITY_EVENT_TYPES = tuple(KIND_OF_TYPE)
FORK_TYPES = ("clone", "clone3", "fork", "vfork")
ARGS_WIDTH = 160  # the raw argument text is cut to this in a summary


@dataclass(frozen=True)
class EventRow:
    """One event, ready to show."""

    num: int
    time_ns: int
    type: str
    dir: str
    pid: int | None
    tid: int | None
    process: str  # proc.name
    user: str
    container_id: str
    container_name: str
    summary: str  # what the event touched, one line
    result: str  # evt.res ('SUCCESS', an errno name), '' on enter events
    failed: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "evt.num": self.num, "evt.time": self.time_ns, "evt.type": self.type,
            "evt.dir": self.dir, "proc.pid": self.pid, "thread.tid": self.tid,
            "proc.name": self.process, "user.name": self.user, "container.id": self.container_id,
            "container.name": self.container_name, "summary": self.summary,
            "evt.res": self.result, "evt.failed": self.failed,
        }


def event_row(row: Mapping[str, Any]) -> EventRow:
    """The EventRow of a trace row holding (at least) ROW_COLUMNS."""
    return EventRow(
        num=int(row["evt.num"]), time_ns=int(row["evt.time"] or 0),
        type=str(row["evt.type"] or ""), dir=str(row["evt.dir"] or ""),
        pid=row["proc.pid"], tid=row["thread.tid"], process=str(row["proc.name"] or ""),
        user=str(row["user.name"] or ""), container_id=str(row["container.id"] or ""),
        container_name=str(row["container.name"] or ""), summary=summary(row),
        result=str(row["evt.res"] or ""), failed=bool(row["evt.failed"]),
    )


def summary(row: Mapping[str, Any]) -> str:
    """What the event touched, in one line (its raw arguments when no rule below fits)."""
    etype = str(row.get("evt.type") or "")
    exiting = row.get("evt.dir") == "<"
    if etype in FORK_TYPES and exiting:
        return _fork(row)
    if etype == "procexit":
        return "process exited"
    found = _DESCRIBE.get(KIND_OF_TYPE.get(etype, ""))
    text = found(row) if found is not None and exiting else ""
    return text or _fd_or_args(row)


def activity_of(row: Mapping[str, Any]) -> tuple[str, str] | None:
    """(kind, item) for `explain`'s activity list, or None when the event is not one of them
    (writes count only on files: pipes and sockets would drown the list)."""
    kind = KIND_OF_TYPE.get(str(row.get("evt.type") or ""))
    if kind is None or row.get("evt.dir") != "<":
        return None
    if kind == "write" and row.get("fd.typechar") not in ("f", None):
        return None
    item = _DESCRIBE[kind](row) or _fd_or_args(row)
    return kind, item


def _text(row: Mapping[str, Any], *columns: str) -> str:
    """The first non-empty value among `columns`."""
    for column in columns:
        value = row.get(column)
        if value not in (None, ""):
            return str(value)
    return ""


def _exec(row: Mapping[str, Any]) -> str:
    if row.get("evt.failed"):  # the process did not change: say what it tried to run
        return _text(row, "evt.arg.filename", "evt.arg.name") or _args(row)
    return _text(row, "proc.cmdline", "proc.exepath", "proc.name")


def _open(row: Mapping[str, Any]) -> str:
    path = _text(row, "fd.name", "evt.arg.name", "evt.arg.filename", "evt.arg.path")
    if not path:
        return ""
    read, write = bool(row.get("evt.is_open_read")), bool(row.get("evt.is_open_write"))
    mode = "read/write" if read and write else "write" if write else "read" if read else ""
    return f"{path} ({mode})" if mode else path


def _rename(row: Mapping[str, Any]) -> str:
    old, new = _text(row, "evt.arg.oldpath"), _text(row, "evt.arg.newpath")
    return f"{old} -> {new}" if old or new else ""


def _link(row: Mapping[str, Any]) -> str:
    if _text(row, "evt.arg.linkpath"):  # symlink: linkpath now points at target
        return f"{_text(row, 'evt.arg.linkpath')} -> {_text(row, 'evt.arg.target')}"
    return _rename(row).replace(" -> ", " => ")  # hard link: newpath is oldpath's inode


def _path(row: Mapping[str, Any]) -> str:
    return _text(row, "evt.arg.path", "evt.arg.name", "evt.arg.filename", "fd.name")


def _chmod(row: Mapping[str, Any]) -> str:
    path = _text(row, "evt.arg.filename", "evt.arg.path", "fd.name")
    mode = _text(row, "evt.arg.mode")
    return f"{path} mode {mode}" if path and mode else path


def _fd(row: Mapping[str, Any]) -> str:
    return _text(row, "fd.name")


def _fork(row: Mapping[str, Any]) -> str:
    res = row.get("evt.rawres")
    if isinstance(res, int) and res > 0:
        return f"new process or thread {res}"
    if res == 0:
        return "(the child's side)"
    return _args(row)


def _args(row: Mapping[str, Any]) -> str:
    text = " ".join(str(row.get("evt.args") or "").split())
    return text if len(text) <= ARGS_WIDTH else text[: ARGS_WIDTH - 1] + "…"


def _fd_or_args(row: Mapping[str, Any]) -> str:
    return _fd(row) or _args(row)


_DESCRIBE = {
    "exec": _exec, "open": _open, "write": _fd, "rename": _rename, "unlink": _path,
    "link": _link, "chmod": _chmod, "mkdir": _path, "connect": _fd, "accept": _fd,
    "listen": _fd,
}
