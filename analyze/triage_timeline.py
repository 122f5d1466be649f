"""`analyze timeline`: the events of a trace in order, filtered, one readable line each.

Filters (all optional, combined with AND; a repeated option means any of its values):
- `pids`: events of these processes, threads included (`proc.pid` is the process, so every
  thread's events carry it; a thread id given instead matches `thread.tid`); with `tree`, their
  descendants too (`proc.apid` holds each event's ancestors, so one pass finds them);
- `containers`: by container id, id prefix (the 12-character short id) or name;
- `types`: `evt.type` names; `since`/`until`: times as `analyze run` takes them (ISO, epoch ns,
  `+30s` from the trace's first event); `from_num`: start at this `evt.num` (the next page).

The page is the first `limit` events in `evt.num` order; `Timeline.matched` counts them all and
`next_num` is where the next page starts. Two queries: one counts the matches over the narrow
filter columns; one returns the page (DuckDB's top-N keeps only `limit` rows at a time).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analyze.run import parse_time
from analyze.trace_reader import open_trace
from analyze.triage_db import EVENTS, TriageDB, select_list
from analyze.triage_events import ROW_COLUMNS, EventRow, event_row
from schemas.catalog import event_type_info

DEFAULT_LIMIT = 100


@dataclass(frozen=True)
class TimelineRequest:
    """What to show; `since`/`until` are still text (see analyze.run.parse_time)."""

    pids: tuple[int, ...] = ()
    tree: bool = False
    containers: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    since: str | None = None
    until: str | None = None
    from_num: int | None = None
    limit: int = DEFAULT_LIMIT


@dataclass(frozen=True)
class Timeline:
    request: TimelineRequest
    since_ns: int | None
    until_ns: int | None
    matched: int  # every event the filters select
    events: tuple[EventRow, ...] = field(default_factory=tuple)  # the page

    @property
    def more(self) -> int:
        return self.matched - len(self.events)

    @property
    def next_num(self) -> int | None:
        """The `--from-evt` of the next page, or None on the last one."""
        return self.events[-1].num + 1 if self.more > 0 and self.events else None


def timeline(target: str | Path | Sequence[str | Path], request: TimelineRequest) -> Timeline:
    """The page of events `request` selects in the trace at `target`."""
    if request.limit < 0:
        raise ValueError("--limit must be zero or more.")
    trace = open_trace(target)
    info = trace.info()
    since = parse_time(request.since, info, "--since")
    until = parse_time(request.until, info, "--until")
    if since is not None and until is not None and since > until:
        raise ValueError("--since is after --until: the time window is empty.")
    unknown = [t for t in request.types if event_type_info(t) is None]
    if unknown:
        raise ValueError(f"--type {', '.join(unknown)}: no such event type (names as Falco's "
                         "evt.type: openat, execve, connect, ...).")
    where, params = filters(request, since, until)
    with TriageDB(trace) as db:
        matched = db.one(f"SELECT count(*) AS n FROM {EVENTS} WHERE {where}", params)["n"]
        rows = db.rows(
            f"SELECT {select_list(ROW_COLUMNS)} FROM {EVENTS} WHERE {where} "
            'ORDER BY "evt.num" LIMIT $limit', {**params, "limit": request.limit}
        ) if request.limit else []
    return Timeline(request, since, until, int(matched), tuple(event_row(r) for r in rows))


def filters(request: TimelineRequest, since: int | None,
            until: int | None) -> tuple[str, dict[str, Any]]:
    """The WHERE clause of `request` and its parameters (every value bound, none pasted)."""
    clauses: list[str] = ["TRUE"]
    params: dict[str, Any] = {}
    if request.pids:
        params["pids"] = list(request.pids)
        own = ('(list_contains($pids, "proc.pid") OR list_contains($pids, "thread.tid"))')
        clauses.append(f'({own} OR list_has_any("proc.apid", $pids))' if request.tree else own)
    if request.containers:
        params["containers"] = list(request.containers)
        clauses.append(
            '(list_contains($containers, "container.id") OR '
            'list_contains($containers, "container.name") OR '
            'list_contains($containers, left("container.id", 12)))'
        )
    if request.types:
        params["types"] = list(request.types)
        clauses.append('list_contains($types, "evt.type")')
    if since is not None:
        params["since"] = since
        clauses.append('"evt.time" >= make_timestamp_ns($since)')
    if until is not None:
        params["until"] = until
        clauses.append('"evt.time" <= make_timestamp_ns($until)')
    if request.from_num is not None:
        params["from_num"] = request.from_num
        clauses.append('"evt.num" >= $from_num')
    return " AND ".join(clauses), params
