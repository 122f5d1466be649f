"""What the `analyze run` reports count: alerts by rule, priority, process, container and time
slice (`AlertStats`), over any sequence of alerts.

Every count is a sum of `AlertGroup`s, the alerts that share a rule, a process and a container
(their number, time span, and where the first one is), and the timeline a sum of per-slice,
per-priority counts. A run's alerts (`analyze.matched_alerts.MatchedAlerts`) answer both with a
DuckDB group-by over the matched events, never building an `Alert`, so a report of ten million
alerts costs what one of ten does; any other sequence (a hand-built list) is counted here, in
Python. Both kinds go through `alert_groups` and `slice_counts`, so the report cannot tell them
apart.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar, runtime_checkable

from analyze.alerts import Alert
from analyze.engine_api import priority_rank

TIMELINE_SLICES = 12
NO_PROCESS = "<NA>"  # how a missing or empty proc.name is counted
_K = TypeVar("_K")

Container = tuple[str, str, str]  # (id, name, image), "" when missing


@dataclass(frozen=True)
class AlertGroup:
    """Alerts sharing rule, process and container: what every count of the report adds up."""

    rule: str
    priority: str
    tags: tuple[str, ...]
    proc_name: str  # NO_PROCESS when the events have none
    container: Container
    count: int
    # Sorts like the position of the group's first alert (ties between equal counts go to the
    # one seen first): the position itself, or (evt.num, rule index) for matches, which are in
    # that order.
    first: tuple[int, int]
    first_ns: int
    last_ns: int


@runtime_checkable
class SelfCounting(Protocol):
    """A sequence of alerts that counts itself without building them (`MatchedAlerts`)."""

    def alert_groups(self) -> Sequence[AlertGroup]:
        ...

    def slice_counts(self, start_ns: int, slice_ns: int,
                     slices: int) -> Mapping[tuple[int, str], int]:
        ...


@dataclass(frozen=True)
class RuleCount:
    rule: str
    priority: str
    count: int
    first_ns: int
    last_ns: int
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Slice:
    start_ns: int  # offset from the timeline's start
    count: int


@dataclass(frozen=True)
class AlertStats:
    by_rule: tuple[RuleCount, ...]  # most severe first, then most frequent
    by_priority: tuple[tuple[str, int], ...]  # most severe first
    processes: tuple[tuple[str, int], ...]  # most frequent first
    containers: tuple[tuple[Container, int], ...]  # (id, name, image), count
    timeline_start_ns: int
    slice_ns: int
    timeline: tuple[Slice, ...]


def alert_stats(alerts: Sequence[Alert], start_ns: int | None = None,
                end_ns: int | None = None, slices: int = TIMELINE_SLICES) -> AlertStats:
    """Counts over `alerts`; the timeline spans [start_ns, end_ns] (the alerts' span if None)."""
    groups = sorted(alert_groups(alerts), key=lambda g: g.first)
    start = start_ns if start_ns is not None else min((g.first_ns for g in groups), default=0)
    end = end_ns if end_ns is not None else max((g.last_ns for g in groups), default=start)
    width, count = slicing(start, max(end, start), slices)
    per_slice = [0] * count
    for (index, _), n in slice_counts(alerts, start, width, count).items():
        per_slice[index] += n
    by_priority: Counter[str] = Counter()
    processes: Counter[str] = Counter()
    containers: Counter[Container] = Counter()
    for g in groups:
        by_priority[g.priority] += g.count
        processes[g.proc_name] += g.count
        containers[g.container] += g.count
    return AlertStats(
        by_rule=_by_rule(groups),
        by_priority=tuple(sorted(by_priority.items(), key=lambda kv: priority_rank(kv[0]))),
        processes=tuple(_most_common(processes)), containers=tuple(_most_common(containers)),
        timeline_start_ns=start, slice_ns=width,
        timeline=tuple(Slice(i * width, n) for i, n in enumerate(per_slice)),
    )


def slicing(start: int, end: int, slices: int) -> tuple[int, int]:
    """The width of `slices` slices covering [start, end], and how many of them are needed."""
    span = end - start + 1
    width = max(1, -(-span // slices))  # ceil: the last slice ends at or after `end`
    return width, -(-span // width)


def _most_common(counter: Counter[_K]) -> list[tuple[_K, int]]:
    """By count, then by first appearance (the counters are filled in first-alert order)."""
    return sorted(counter.items(), key=lambda kv: -kv[1])


def _by_rule(groups: Iterable[AlertGroup]) -> tuple[RuleCount, ...]:
    rows: dict[str, RuleCount] = {}
    for g in groups:
        seen = rows.get(g.rule)
        if seen is None:
            rows[g.rule] = RuleCount(g.rule, g.priority, g.count, g.first_ns, g.last_ns, g.tags)
        else:
            rows[g.rule] = RuleCount(g.rule, seen.priority, seen.count + g.count,
                                     min(seen.first_ns, g.first_ns),
                                     max(seen.last_ns, g.last_ns), seen.tags)
    return tuple(sorted(rows.values(), key=lambda r: (priority_rank(r.priority), -r.count)))


# ---- counting --------------------------------------------------------------------------------


def alert_groups(alerts: Sequence[Alert]) -> Sequence[AlertGroup]:
    """The groups of `alerts` (any order)."""
    if isinstance(alerts, SelfCounting):
        return alerts.alert_groups()
    groups: dict[tuple[str, str, tuple[str, ...], str, Container], list[int]] = {}
    for position, a in enumerate(alerts):
        key = (a.rule, a.priority, a.tags, a.proc_name or NO_PROCESS,
               (a.container_id or "", a.container_name or "", a.container_image or ""))
        seen = groups.get(key)
        if seen is None:
            groups[key] = [1, position, a.time_ns, a.time_ns]
        else:
            seen[0] += 1
            seen[2], seen[3] = min(seen[2], a.time_ns), max(seen[3], a.time_ns)
    return [AlertGroup(*key, count=n, first=(first, 0), first_ns=low, last_ns=high)
            for key, (n, first, low, high) in groups.items()]


def slice_counts(alerts: Sequence[Alert], start_ns: int, slice_ns: int,
                 slices: int) -> Mapping[tuple[int, str], int]:
    """Alerts per (slice, priority): slice i covers start_ns + [i, i + 1) * slice_ns; alerts
    before the first slice count in it, alerts after the last one in the last."""
    if isinstance(alerts, SelfCounting):
        return alerts.slice_counts(start_ns, slice_ns, slices)
    counts: Counter[tuple[int, str]] = Counter()
    for a in alerts:
        counts[min(slices - 1, max(0, (a.time_ns - start_ns) // slice_ns)), a.priority] += 1
    return counts
