"""`analyze info`: what a trace holds, read from its rows.

`capture info` reports the footers; this command reads the data: the time span, events by type,
processes, containers and users, and the gaps (`analyze.triage_gaps`) that are a sign of loss or
tampering. It also checks the footers against the rows, since a footer that disagrees with its
file (event count, time range) is itself a sign the file was edited.

Each part is one aggregate query over the few columns it needs (types, pids, containers, users),
so a 10M-event trace answers in seconds with memory bounded by the number of distinct values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analyze.trace_reader import Trace, TraceInfo, open_trace
from analyze.triage_db import EVENTS, TIME_NS, TriageDB, quote
from analyze.triage_gaps import DEFAULT_GAP_NS, GapReport, scan_gaps

DEFAULT_TOP = 10


@dataclass(frozen=True)
class Count:
    """One line of a "by X" list: a key, a label for people, and how many events."""

    key: str
    label: str
    events: int


@dataclass(frozen=True)
class ProcessCount:
    pid: int | None
    name: str
    cmdline: str
    events: int
    first_ns: int
    last_ns: int


@dataclass(frozen=True)
class ContainerCount:
    id: str
    name: str
    image: str
    events: int


@dataclass(frozen=True)
class Segment:
    """One file of the trace: its rows' span and its footer's drop count and size."""

    path: Path
    events: int
    first_num: int | None
    last_num: int | None
    start_ns: int | None
    end_ns: int | None
    dropped: int | None  # None: unknown (imports, recovered spools)
    size_bytes: int


@dataclass
class TraceSummary:
    """Everything `analyze info` shows."""

    info: TraceInfo  # from the footers
    events: int  # rows actually in the files
    start_ns: int | None  # from the rows
    end_ns: int | None
    types: int  # distinct event types
    by_type: list[Count]  # the top ones, most frequent first
    processes: int  # distinct pids
    threads: int  # distinct tids
    top_processes: list[ProcessCount]
    containers: list[ContainerCount]  # every container (few), most events first
    users: list[Count]
    gaps: GapReport
    segments: list[Segment] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)  # footer/row disagreements

    @property
    def duration_ns(self) -> int | None:
        if self.start_ns is None or self.end_ns is None:
            return None
        return self.end_ns - self.start_ns

    @property
    def other_type_events(self) -> int:
        return self.events - sum(c.events for c in self.by_type)


def summarize_trace(target: str | Path | Sequence[str | Path], gap_ns: int = DEFAULT_GAP_NS,
                    top: int = DEFAULT_TOP) -> TraceSummary:
    """Read the trace at `target` (file, directory, glob or list) and sum it up."""
    trace = open_trace(target)
    with TriageDB(trace) as db:
        totals = db.one(
            f'SELECT count(*) AS n, min({TIME_NS}) AS lo, max({TIME_NS}) AS hi, '
            f'count(DISTINCT "evt.type") AS types, count(DISTINCT "proc.pid") AS pids, '
            f'count(DISTINCT "thread.tid") AS tids FROM {EVENTS}'
        )
        by_type = [Count(str(r["t"]), str(r["t"]), int(r["n"])) for r in db.rows(
            f'SELECT "evt.type" AS t, count(*) AS n FROM {EVENTS} GROUP BY 1 '
            "ORDER BY n DESC, t LIMIT $top", {"top": top})]
        summary = TraceSummary(
            info=trace.info(), events=int(totals["n"]), start_ns=totals["lo"],
            end_ns=totals["hi"], types=int(totals["types"]), by_type=by_type,
            processes=int(totals["pids"]), threads=int(totals["tids"]),
            top_processes=_top_processes(db, top), containers=_containers(db),
            users=_users(db), gaps=scan_gaps(trace, gap_ns),
        )
    summary.segments = _segments(trace, summary.gaps)
    summary.findings = footer_findings(trace, summary.gaps)
    return summary


def _segments(trace: Trace, gaps: GapReport) -> list[Segment]:
    spans = {s.path: s for s in gaps.segments}
    out = []
    for tf in trace.files:
        span = spans[tf.path]
        out.append(Segment(tf.path, span.rows, span.first_num, span.last_num, span.start_ns,
                           span.end_ns, tf.meta.dropped, tf.size_bytes))
    return out


def _top_processes(db: TriageDB, top: int) -> list[ProcessCount]:
    """The busiest pids; their names and command lines are those of their last event (a pid's
    program changes at exec). Counting reads two integer columns; the first and last events of
    the top pids are then fetched by evt.num (row group statistics skip the others)."""
    counts = db.rows(f'SELECT "proc.pid" AS pid, count(*) AS n, min("evt.num") AS first, '
                     f'max("evt.num") AS last FROM {EVENTS} '
                     "GROUP BY 1 ORDER BY n DESC, pid LIMIT $top", {"top": top})
    nums = [r[k] for r in counts for k in ("first", "last")]
    rows = {r["num"]: r for r in db.rows(
        f'SELECT "evt.num" AS num, {TIME_NS} AS t, "proc.name" AS name, '
        f'"proc.cmdline" AS cmdline FROM {EVENTS} WHERE "evt.num" IN (SELECT unnest($nums))',
        {"nums": nums})} if nums else {}
    out = []
    for r in counts:
        first: dict[str, Any] = rows.get(r["first"], {})
        last: dict[str, Any] = rows.get(r["last"], {})
        out.append(ProcessCount(r["pid"], str(last.get("name") or ""),
                                str(last.get("cmdline") or ""), int(r["n"]),
                                int(first.get("t") or 0), int(last.get("t") or 0)))
    return out


def _first_known(column: str) -> str:
    """The column's first non-null value in event order, as an aggregate. (Not any_value: that
    is the first in storage order, which is not event order in a trace clustered by type, and
    depends on which thread reads which row group.)"""
    return f'arg_min({quote(column)}, "evt.num") FILTER (WHERE {quote(column)} IS NOT NULL)'


def _containers(db: TriageDB) -> list[ContainerCount]:
    rows = db.rows(
        f'SELECT "container.id" AS id, {_first_known("container.name")} AS name, '
        f'{_first_known("container.image")} AS image, count(*) AS n FROM {EVENTS} '
        "GROUP BY 1 ORDER BY n DESC, id"
    )
    return [ContainerCount(str(r["id"] or ""), str(r["name"] or ""), str(r["image"] or ""),
                           int(r["n"])) for r in rows]


def _users(db: TriageDB) -> list[Count]:
    rows = db.rows(
        f'SELECT "user.uid" AS uid, {_first_known("user.name")} AS name, count(*) AS n '
        f"FROM {EVENTS} GROUP BY 1 ORDER BY n DESC, uid"
    )
    return [Count("" if r["uid"] is None else str(r["uid"]), str(r["name"] or ""), int(r["n"]))
            for r in rows]


def footer_findings(trace: Trace, gaps: GapReport) -> list[str]:
    """Where a file's footer disagrees with its rows: a finished capture never does this, so it
    means the file was edited (or written by something else)."""
    found = []
    spans = {s.path: s for s in gaps.segments}
    for tf in trace.files:
        span = spans.get(tf.path)
        if span is None:
            continue
        if tf.meta.events != span.rows:
            found.append(f"{tf.path}: the footer says {tf.meta.events:,} events, the file "
                         f"holds {span.rows:,}.")
        meta_range = (tf.meta.capture_start_ns, tf.meta.capture_end_ns)
        if span.rows and meta_range != (span.start_ns, span.end_ns):
            found.append(f"{tf.path}: the footer's time range {_range(meta_range)} differs from "
                         f"the events' {_range((span.start_ns, span.end_ns))}.")
    return found


def _range(bounds: tuple[int | None, int | None]) -> str:
    lo, hi = bounds
    return f"[{'?' if lo is None else lo}, {'?' if hi is None else hi}] ns"
