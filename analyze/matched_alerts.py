"""The alerts of an `analyze run`, kept as their matches and built on demand.

A run may have millions of alerts: as `Alert` values (the output text and fields of each) they
took about 2 KB apiece, 2 GB for a million. `MatchedAlerts` keeps only the engine's matches as
two Arrow arrays (`MatchTable`, 12 bytes a match) and is a `Sequence[Alert]` over them:

- iterating builds the alerts a chunk at a time (`alerts.alert_chunks`: one query per chunk), so
  writing them all holds one chunk in memory;
- a slice (`alerts[:20]`, the report's table) builds only the alerts of its span;
- the report's counts (`analyze.alert_stats`) come from DuckDB group-bys over the matches joined
  with the trace (`alert_groups`, `slice_counts`), computed once and kept: a few rows per rule,
  process and container, whatever the number of alerts.

`check` makes sure, before anything is written, that every matched event is in the trace exactly
once (the chunks check it again as they go).
"""

from __future__ import annotations

import operator
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, overload

import duckdb
import pyarrow.compute as pc

from analyze.alert_stats import NO_PROCESS, AlertGroup
from analyze.alerts import (
    ALERT_CHUNK,
    REPEATED_EVENTS,
    Alert,
    AlertBuildError,
    alert_chunks,
    missing_event,
    trace_columns,
)
from analyze.engine_api import CompiledRule, MatchTable
from analyze.query import VIEW, connect
from analyze.ruleset import LoadedRule
from analyze.trace_reader import Trace

# Matches per counting query (see MatchedAlerts._per_range).
RANGE_MATCHES = 1_000_000
MATCHES = "run_matches"  # a range of matches, registered on the connection as an Arrow table
_EVENTS = f'(SELECT * FROM {VIEW} WHERE "evt.num" BETWEEN $low AND $high)'
_JOINED = f'{MATCHES} m JOIN {_EVENTS} e ON e."evt.num" = m.evt_num'


class MatchedAlerts(Sequence[Alert]):
    """A run's alerts in match order (event, then rule), built from `matches` when read."""

    def __init__(self, trace: Trace, rules: Sequence[CompiledRule], matches: MatchTable,
                 hostname: str, *, chunk: int | None = None) -> None:
        self.trace = trace
        self.rules = tuple(rules)
        self.matches = matches
        self.hostname = hostname
        self.chunk = ALERT_CHUNK if chunk is None else chunk  # alerts built per query
        self._by_index: dict[int, LoadedRule] = {r.index: r.rule for r in rules}
        self._groups: tuple[AlertGroup, ...] | None = None
        self._slices: dict[tuple[int, int, int], dict[tuple[int, str], int]] = {}

    def __len__(self) -> int:
        return len(self.matches)

    @overload
    def __getitem__(self, key: int) -> Alert:
        ...

    @overload
    def __getitem__(self, key: slice) -> tuple[Alert, ...]:
        ...

    def __getitem__(self, key: int | slice) -> Alert | tuple[Alert, ...]:
        if isinstance(key, slice):
            positions = range(len(self))[key]
            if not positions:
                return ()
            low = min(positions[0], positions[-1])
            built = self.between(low, max(positions[0], positions[-1]) + 1)
            return tuple(built[p - low] for p in positions)
        index = operator.index(key)
        index += len(self) if index < 0 else 0
        if not 0 <= index < len(self):
            raise IndexError("alert index out of range")
        return self.between(index, index + 1)[0]

    def __iter__(self) -> Iterator[Alert]:
        for chunk in self.chunks():
            yield from chunk

    def __eq__(self, other: object) -> bool:
        """Equal to any sequence of the same alerts (a tuple, a list, another run's), as the
        tuple that `RunResult.alerts` used to be was."""
        if not isinstance(other, Sequence) or isinstance(other, (str, bytes)):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]  # equal to tuples, so not hashable like them

    def __repr__(self) -> str:
        return f"<MatchedAlerts: {len(self):,} alerts of {self.trace.paths[0]}>"

    def chunks(self, start: int = 0, stop: int | None = None) -> Iterator[list[Alert]]:
        """The alerts [start, stop), a chunk (a list of at most `self.chunk`) at a time."""
        stop = len(self) if stop is None else min(stop, len(self))
        return alert_chunks(self.trace, self.rules, self.matches.slice(start, stop),
                            self.hostname, size=self.chunk)

    def between(self, start: int, stop: int) -> list[Alert]:
        """The alerts [start, stop) as a list."""
        return [a for chunk in self.chunks(start, stop) for a in chunk]

    # ---- checks and counts (analyze.alert_stats.SelfCounting) --------------------------------

    def check(self) -> None:
        """Raise AlertBuildError unless every matched event is in the trace exactly once."""
        sql = f"""
            SELECT count(*) FILTER (WHERE n = 0), count(*) FILTER (WHERE n > 1),
                   min(evt_num) FILTER (WHERE n = 0)
            FROM (SELECT m.evt_num, count(e."evt.num") AS n
                  FROM (SELECT DISTINCT evt_num FROM {MATCHES}) m
                  LEFT JOIN {_EVENTS} e ON e."evt.num" = m.evt_num GROUP BY m.evt_num)"""
        for missing, repeated, first_missing in self._per_range(sql):
            if missing:
                raise AlertBuildError(missing_event(int(first_missing)))
            if repeated:
                raise AlertBuildError(REPEATED_EVENTS)

    def alert_groups(self) -> tuple[AlertGroup, ...]:
        """The groups of every alert (computed once)."""
        if self._groups is None:
            self._groups = self._query_groups()
        return self._groups

    def slice_counts(self, start_ns: int, slice_ns: int,
                     slices: int) -> dict[tuple[int, str], int]:
        """Alerts per (slice, priority), as `alert_stats.slice_counts` defines them (computed once
        per slicing)."""
        key = (start_ns, slice_ns, slices)
        if key not in self._slices:
            self._slices[key] = self._query_slices(start_ns, slice_ns, slices)
        return self._slices[key]

    def _query_groups(self) -> tuple[AlertGroup, ...]:
        have = set(trace_columns(self.trace))

        def text(column: str, empty: str) -> str:
            if column not in have:
                return f"'{empty}'"
            # Missing and empty are one group, as `a.proc_name or NO_PROCESS` makes them.
            return f"coalesce(nullif(e.\"{column}\", ''), '{empty}')"

        sql = (f"SELECT m.rule_index, {text('proc.name', NO_PROCESS)}, "
               f"{text('container.id', '')}, {text('container.name', '')}, "
               f"{text('container.image', '')}, count(*), min(m.evt_num), "
               f'min(epoch_ns(e."evt.time")), max(epoch_ns(e."evt.time")) '
               f"FROM {_JOINED} GROUP BY ALL")
        # Ranges of one event may add to the same group: sum them.
        merged: dict[tuple[Any, ...], list[int]] = {}
        for index, proc, cid, name, image, n, first_num, low, high in self._per_range(sql):
            key = (index, proc, cid, name, image)
            seen = merged.get(key)
            if seen is None:
                merged[key] = [n, first_num, low, high]
            else:
                seen[:] = [seen[0] + n, min(seen[1], first_num), min(seen[2], low),
                           max(seen[3], high)]
        groups = []
        for (index, proc, cid, name, image), (n, first_num, low, high) in merged.items():
            rule = self._by_index[index]
            groups.append(AlertGroup(rule.name, rule.priority, tuple(sorted(rule.tags)), proc,
                                     (cid, name, image), n, (first_num, index), low, high))
        return tuple(groups)

    def _query_slices(self, start_ns: int, slice_ns: int,
                      slices: int) -> dict[tuple[int, str], int]:
        sql = ('SELECT least($last, greatest(0, (epoch_ns(e."evt.time") - $start) // $width)), '
               f"m.rule_index, count(*) FROM {_JOINED} GROUP BY ALL")
        counts: dict[tuple[int, str], int] = {}
        params = {"last": slices - 1, "start": start_ns, "width": slice_ns}
        for index, rule_index, n in self._per_range(sql, params):
            key = (int(index), self._by_index[rule_index].priority)
            counts[key] = counts.get(key, 0) + n
        return counts

    def _per_range(self, sql: str,
                   params: Mapping[str, int] | None = None) -> Iterator[tuple[Any, ...]]:
        """The rows of `sql` run once per range of at most RANGE_MATCHES matches, registered
        as MATCHES, with $low and $high their evt.nums' bounds (_EVENTS reads only those).

        Per range, not at once: `check` over ten million matches at once raised the peak by
        650 MB, per million by 110 MB. The evt.num bounds let DuckDB skip the trace's other row
        groups, so the ranges together read the trace about once."""
        if not self.matches:
            return
        con = connect(self.trace)
        try:
            for start in range(0, len(self.matches), RANGE_MATCHES):
                part = self.matches.slice(start, start + RANGE_MATCHES)
                low, high = pc.min_max(part.evt_nums).values()
                con.register(MATCHES, part.arrow())
                values = {**(params or {}), "low": low.as_py(), "high": high.as_py()}
                yield from _all(con, sql, values)
        finally:
            con.close()


def _all(con: duckdb.DuckDBPyConnection, sql: str,
         params: Mapping[str, int]) -> list[tuple[Any, ...]]:
    try:
        return con.execute(sql, dict(params)).fetchall()
    except duckdb.Error as exc:
        raise AlertBuildError(f"Could not count the alerts over the trace "
                              f"({str(exc).strip().splitlines()[0]}).") from None
