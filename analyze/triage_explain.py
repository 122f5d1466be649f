"""`analyze explain`: the story around one event.

1. The event itself (found by `evt.num`, which is sorted: the read touches one row group).
2. Its process and the ancestry, from the event's own ancestor lists (`proc.apid`, `proc.aname`,
   `proc.aexepath`; index 0 is the process), each ancestor completed from the trace: the last
   command line and user it showed before the event, and its last exec, when the trace saw it.
3. The descendants: every process whose parent chain (`proc.ppid`, over the window) leads to the
   event's process. Parent links, not `proc.apid`, so depth is unlimited.
4. What the process and its descendants did from `before` to `after` around the event:
   executions, files opened, written, renamed, unlinked, linked, chmod-ed, directories made,
   connections, accepts and listens. Repeats are folded into one line with a count, kept in the
   order of their first occurrence; aggregation happens in DuckDB, so a process writing a file a
   million times costs one row.

A pid can be reused. The process's life is bounded by what the trace shows: it starts after the
last fork that made it (clone, fork or vfork returning its pid in the parent, as the parent's
pid namespace numbers it, or 0 in its main thread) before the event, and ends at its `procexit`
or at the next fork making the same pid. Events of the pid outside that life, and children
first seen outside it, belong to another process and are left out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analyze.run import parse_time
from analyze.trace_reader import Trace, open_trace
from analyze.triage_alert import AlertRef
from analyze.triage_db import EVENTS, TIME_NS, TriageDB, TriageError, quote, select_list
from analyze.triage_events import (
    ACTIVITY_EVENT_TYPES,
    ACTIVITY_TYPES,
    FORK_TYPES,
    ROW_COLUMNS,
    EventRow,
    activity_of,
    event_row,
)

DEFAULT_WINDOW_NS = 30 * 10**9
DETAIL_COLUMNS = (
    "proc.ppid", "proc.vpid", "proc.exe", "proc.cwd", "proc.pname", "proc.pcmdline", "user.uid",
    "container.image", "evt.category", "fd.num", "proc.apid", "proc.aname", "proc.aexepath",
    "proc.aexe",
)
# Shown in the event panel when set, in this order.
PANEL_FIELDS = (
    "proc.cmdline", "proc.exepath", "proc.cwd", "user.name", "user.uid", "proc.pcmdline",
    "container.id", "container.name", "container.image", "fd.num", "fd.name", "evt.args",
)
# Grouping keys of the activity query: what `activity_of` reads to name an item.
_ITEM_COLUMNS = (
    "evt.type", "evt.dir", "proc.pid", "proc.name", "proc.cmdline", "proc.exepath", "fd.name",
    "fd.typechar", "evt.arg.name", "evt.arg.path", "evt.arg.filename", "evt.arg.oldpath",
    "evt.arg.newpath", "evt.arg.target", "evt.arg.linkpath", "evt.arg.mode",
    "evt.is_open_read", "evt.is_open_write", "evt.res", "evt.failed",
)
EXEC_TYPES = list(ACTIVITY_TYPES["exec"])
NET_TYPES = [t for k in ("connect", "accept", "listen") for t in ACTIVITY_TYPES[k]]
NO_NUM_LOW, NO_NUM_HIGH = -(2**63), 2**63 - 1


@dataclass(frozen=True)
class ProcessNode:
    """A process as the trace saw it."""

    pid: int | None
    name: str
    exepath: str
    cmdline: str
    user: str
    parent: int | None  # ppid (first seen)
    events: int  # ancestors: its events up to the event; descendants: in the window
    first_ns: int | None
    exec_num: int | None  # its last successful exec (ancestors: up to the event)
    exec_ns: int | None


@dataclass(frozen=True)
class Activity:
    """Events of one kind by one process on one item, folded."""

    phase: str  # "before" or "after" the event
    kind: str  # a key of ACTIVITY_TYPES
    pid: int | None
    process: str
    item: str
    result: str  # '' when it succeeded, else the errno name
    count: int
    first_num: int
    first_ns: int
    last_ns: int


@dataclass(frozen=True)
class Explanation:
    event: EventRow
    details: dict[str, Any]  # PANEL_FIELDS the event has
    ancestry: tuple[ProcessNode, ...]  # the oldest known ancestor first, the process last
    descendants: tuple[ProcessNode, ...]  # in order of first appearance
    activity: tuple[Activity, ...]  # in order of first occurrence
    window_start_ns: int
    window_end_ns: int
    born_num: int | None = None  # the fork that made the process, when the trace has it
    ended_num: int | None = None  # its procexit or the next fork reusing its pid
    alert: AlertRef | None = None


def explain(target: str | Path | Sequence[str | Path], evt_num: int | None = None,
            alert: AlertRef | None = None, before_ns: int = DEFAULT_WINDOW_NS,
            after_ns: int = DEFAULT_WINDOW_NS) -> Explanation:
    """Explain event `evt_num`, or the event `alert` points at, in the trace at `target`."""
    if (evt_num is None) == (alert is None):
        raise ValueError("Name the event: give --evt N or --alert, one of them.")
    if before_ns < 0 or after_ns < 0:
        raise ValueError("--before and --after must not be negative.")
    trace = open_trace(target)
    with TriageDB(trace) as db:
        num = evt_num if alert is None else alert_event(db, trace, alert)
        assert num is not None
        row = fetch_event(db, trace, num)
        event = event_row(row)
        life = Life(NO_NUM_LOW, NO_NUM_HIGH, lo=event.time_ns - before_ns,
                    hi=event.time_ns + after_ns)
        ancestry = _ancestry(db, row)
        descendants: tuple[ProcessNode, ...] = ()
        activity: tuple[Activity, ...] = ()
        if event.pid is not None:
            life = _lifetime(db, row, life)
            descendants = _descendants(db, event.pid, life)
            activity = _activity(db, event.pid, [d.pid for d in descendants], num, life)
    details = {k: row[k] for k in PANEL_FIELDS if row.get(k) not in (None, "")}
    return Explanation(
        event, details, ancestry, descendants, activity, life.lo, life.hi,
        born_num=None if life.born == NO_NUM_LOW else life.born,
        ended_num=None if life.ended == NO_NUM_HIGH else life.ended, alert=alert,
    )


@dataclass(frozen=True)
class Life:
    """Where to look: the process's life in evt.num (exclusive born, inclusive ended), and the
    time window [lo, hi] in ns."""

    born: int
    ended: int
    lo: int
    hi: int

    @property
    def params(self) -> dict[str, int]:
        return {"born": self.born, "ended": self.ended, "lo": self.lo, "hi": self.hi}


WINDOW = '"evt.time" BETWEEN make_timestamp_ns($lo) AND make_timestamp_ns($hi)'


def _lifetime(db: TriageDB, row: dict[str, Any], life: Life) -> Life:
    """`life` with the fork that made the event's process before it and its end after."""
    # The child's side of a fork returns 0 in the new main thread (thread.tid is the host's).
    # The parent's side returns the pid as the parent's pid namespace numbers it: the host pid
    # for a parent outside containers (vpid = pid), the vpid for one in the child's container.
    forked = (
        '(list_contains($forks, "evt.type") AND "evt.dir" = \'<\' AND ('
        '("evt.rawres" = 0 AND "thread.tid" = $pid) '
        'OR ("evt.rawres" = $pid AND "proc.vpid" = "proc.pid") '
        'OR ("evt.rawres" = $vpid AND "proc.vpid" <> "proc.pid" '
        'AND "container.id" = $container)))'
    )
    exited = '("evt.type" = \'procexit\' AND "thread.tid" = $pid)'
    found = db.one(
        f'SELECT max("evt.num") FILTER (WHERE {forked} AND "evt.num" <= $num) AS born, '
        f'min("evt.num") FILTER (WHERE "evt.num" > $num) AS ended FROM {EVENTS} '
        f'WHERE list_contains($types, "evt.type") AND ({forked} OR {exited})',
        {"forks": list(FORK_TYPES), "types": [*FORK_TYPES, "procexit"],
         "pid": row["proc.pid"], "num": row["evt.num"],
         "vpid": row.get("proc.vpid"), "container": row.get("container.id")},
    )
    born, ended = found.get("born"), found.get("ended")
    return Life(NO_NUM_LOW if born is None else int(born),
                NO_NUM_HIGH if ended is None else int(ended), life.lo, life.hi)


def fetch_event(db: TriageDB, trace: Trace, num: int) -> dict[str, Any]:
    """The row of event `num`, or a TriageError saying which numbers the trace holds."""
    columns = list(dict.fromkeys((*ROW_COLUMNS, *DETAIL_COLUMNS, *PANEL_FIELDS)))
    found = db.rows(f'SELECT {select_list(columns)} FROM {EVENTS} WHERE "evt.num" = $num',
                    {"num": num})
    if not found:
        span = db.one(f'SELECT min("evt.num") AS lo, max("evt.num") AS hi FROM {EVENTS}')
        raise TriageError(
            f"No event has evt.num {num} in {_names(trace)}"
            + (f" (its events are numbered {span['lo']} to {span['hi']})."
               if span.get("lo") is not None else " (it holds no events).")
        )
    if len(found) > 1:
        raise TriageError(
            f"{len(found)} events have evt.num {num} in {_names(trace)}: the files are not "
            "segments of one capture; explain it in each file alone."
        )
    return found[0]


def alert_event(db: TriageDB, trace: Trace, alert: AlertRef) -> int:
    """The evt.num the alert points at, checked against the trace (a mismatch means the alert
    comes from another trace, and explaining it here would tell the wrong story)."""
    when = alert.time_ns
    if when is None and alert.time_text is not None:
        when = parse_time(alert.time_text, trace.info(), f"{alert.where}: time")
    if alert.evt_num is not None:
        if when is not None:
            row = db.one(f'SELECT {TIME_NS} AS t FROM {EVENTS} WHERE "evt.num" = $n',
                         {"n": alert.evt_num})
            if row and row["t"] != when:
                raise TriageError(
                    f"{alert.where} is not from {_names(trace)}: its event {alert.evt_num} "
                    f"happened at {when} ns, while this trace's event {alert.evt_num} is at "
                    f"{row['t']} ns."
                )
        return alert.evt_num
    nums = [r["n"] for r in db.rows(
        f'SELECT "evt.num" AS n FROM {EVENTS} WHERE "evt.time" = make_timestamp_ns($t) '
        'ORDER BY 1 LIMIT 11', {"t": when})]
    if len(nums) != 1:
        what = "no event" if not nums else f"{len(nums)} events ({', '.join(map(str, nums))})"
        raise TriageError(f"{alert.where} has no evt.num, and {what} of {_names(trace)} "
                          f"happened at its time {when} ns; use --evt N.")
    return int(nums[0])


def _ancestry(db: TriageDB, row: dict[str, Any]) -> tuple[ProcessNode, ...]:
    """The process and its ancestors, oldest first, completed from the trace up to the event."""
    pids = list(row.get("proc.apid") or []) or [row.get("proc.pid")]
    names = list(row.get("proc.aname") or []) or [row.get("proc.name")]
    exes = list(row.get("proc.aexepath") or row.get("proc.aexe") or [])
    seen = {r["pid"]: r for r in _process_rows(
        db, [p for p in pids if p is not None], '"evt.num" <= $num', {"num": row["evt.num"]})}
    nodes = []
    for i, pid in enumerate(pids):
        info = seen.get(pid, {})
        cmdline = row["proc.cmdline"] if i == 0 else info.get("cmdline")
        if i == 1 and not cmdline:
            cmdline = row.get("proc.pcmdline")
        parent = pids[i + 1] if i + 1 < len(pids) else (row.get("proc.ppid") if i == 0 else None)
        nodes.append(_node(pid, info, name=_at(names, i) or info.get("name"),
                           exepath=_at(exes, i) or info.get("exepath"), cmdline=cmdline,
                           parent=parent))
    return tuple(reversed(nodes))


def _descendants(db: TriageDB, root: int, life: Life) -> tuple[ProcessNode, ...]:
    """Processes whose parent chain in the window leads to `root` (its children first seen
    within its life: a child of a later process with the same pid is not one)."""
    edges = db.rows(
        f'SELECT "proc.pid" AS pid, "proc.ppid" AS ppid, min("evt.num") AS first FROM {EVENTS} '
        f'WHERE {WINDOW} AND "evt.num" > $born AND "proc.pid" IS NOT NULL GROUP BY 1, 2',
        life.params,
    )
    found = _closure(root, ((e["pid"], e["ppid"]) for e in edges
                            if e["ppid"] != root or e["first"] <= life.ended))
    if not found:
        return ()
    rows = _process_rows(db, sorted(found), f'{WINDOW} AND "evt.num" > $born', life.params)
    rows.sort(key=lambda r: r["first_num"])
    return tuple(_node(r["pid"], r, parent=r["ppid"]) for r in rows)


def _closure(root: int, edges: Iterable[tuple[int, int | None]]) -> set[int]:
    children: dict[int, set[int]] = {}
    for pid, ppid in edges:
        if ppid is not None and pid != ppid:
            children.setdefault(ppid, set()).add(pid)
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child != root and child not in found:
                found.add(child)
                todo.append(child)
    return found


def _process_rows(db: TriageDB, pids: list[int], where: str,
                  params: dict[str, Any]) -> list[dict[str, Any]]:
    """Per pid: last name, exe, command line and user, first ppid, event count, first time and
    its last successful exec, over the events `where` selects."""
    if not pids:
        return []
    is_exec = ('list_contains($exec_types, "evt.type") AND "evt.dir" = \'<\' '
               'AND NOT coalesce("evt.failed", false)')
    return db.rows(
        f'SELECT "proc.pid" AS pid, arg_min("proc.ppid", "evt.num") AS ppid, '
        f'arg_max("proc.name", "evt.num") AS name, arg_max("proc.exepath", "evt.num") AS exepath, '
        f'arg_max("proc.cmdline", "evt.num") AS cmdline, arg_max("user.name", "evt.num") AS user, '
        f'count(*) AS events, min("evt.num") AS first_num, min({TIME_NS}) AS first_ns, '
        f'max("evt.num") FILTER (WHERE {is_exec}) AS exec_num, '
        f'arg_max({TIME_NS}, "evt.num") FILTER (WHERE {is_exec}) AS exec_ns '
        f'FROM {EVENTS} WHERE list_contains($pids, "proc.pid") AND {where} GROUP BY 1',
        {**params, "pids": pids, "exec_types": EXEC_TYPES},
    )


def _node(pid: int | None, info: dict[str, Any], **given: Any) -> ProcessNode:
    def pick(key: str) -> Any:
        value = given.get(key)
        return info.get(key) if value in (None, "") else value

    return ProcessNode(
        pid=pid, name=str(pick("name") or ""), exepath=str(pick("exepath") or ""),
        cmdline=str(pick("cmdline") or ""), user=str(info.get("user") or ""),
        parent=pick("parent") if "parent" in given else info.get("ppid"),
        events=int(info.get("events") or 0), first_ns=info.get("first_ns"),
        exec_num=info.get("exec_num"), exec_ns=info.get("exec_ns"),
    )


def _activity(db: TriageDB, root: int, descendants: list[int | None], num: int,
              life: Life) -> tuple[Activity, ...]:
    """What `root` (in its life) and its descendants did in the window, folded by (phase,
    kind, process, item, result)."""
    keys = ", ".join(quote(c) for c in _ITEM_COLUMNS)
    # A socket's address is in fd.name; when libsinsp left that empty, the raw arguments say it
    # (for these types only: others' arguments vary per call and would defeat the folding).
    args = ('CASE WHEN list_contains($net_types, "evt.type") AND coalesce("fd.name", \'\') = \'\' '
            'THEN "evt.args" END AS "evt.args"')
    rows = db.rows(
        f'SELECT {keys}, {args}, "evt.num" < $num AS before, count(*) AS n, '
        f'min("evt.num") AS first_num, min({TIME_NS}) AS first_ns, '
        f"max({TIME_NS}) AS last_ns FROM {EVENTS} "
        f'WHERE {WINDOW} AND "evt.num" > $born AND "evt.num" <> $num '
        'AND (("proc.pid" = $root AND "evt.num" <= $ended) '
        'OR list_contains($descendants, "proc.pid")) '
        'AND "evt.dir" = \'<\' AND list_contains($types, "evt.type") GROUP BY ALL',
        {**life.params, "num": num, "root": root, "descendants": descendants,
         "types": list(ACTIVITY_EVENT_TYPES), "net_types": NET_TYPES},
    )
    folded: dict[tuple[Any, ...], Activity] = {}
    for r in rows:
        found = activity_of(r)
        if found is None:
            continue
        kind, item = found
        result = str(r["evt.res"] or "") if r["evt.failed"] else ""
        key = ("before" if r["before"] else "after", kind, r["proc.pid"], r["proc.name"] or "",
               item, result)
        old = folded.get(key)
        folded[key] = Activity(
            *key, count=int(r["n"]) + (old.count if old else 0),
            first_num=min(int(r["first_num"]), old.first_num if old else int(r["first_num"])),
            first_ns=min(int(r["first_ns"]), old.first_ns if old else int(r["first_ns"])),
            last_ns=max(int(r["last_ns"]), old.last_ns if old else int(r["last_ns"])),
        )
    return tuple(sorted(folded.values(), key=lambda a: a.first_num))


def _at(values: list[Any], i: int) -> Any:
    return values[i] if i < len(values) else None


def _names(trace: Trace) -> str:
    return ", ".join(str(p) for p in trace.paths)
