"""Holes in a trace: missing event numbers and silent stretches of time.

Like Chainsaw's record-id gap analysis of Windows event logs: a live capture numbers every event
it writes (1, 2, 3, ... across segments), so a missing range of `evt.num` means rows were removed
after capture, or a segment is missing; `evt.num` going back or repeating means files were
spliced. (A first number above 1 is only noted: it is also how a later segment of a rotated
capture starts when read alone.) A long stretch with no event at all is the other sign: a paused
capture, or a slice cut out and the numbers rewritten. Kernel drops are not gaps: the capture
counts them in the footer (`dropped`), and numbers only the events it kept.

Imported captures differ: libsinsp numbers its internal events too (process and container table
records, which sysdig does not print), so an imported trace has small numbering gaps by nature.
`GapReport.expected_num_gaps` says so when the trace came from `capture import`.

The scan reads only `evt.num` and `evt.time`, file after file, in event order: memory stays
flat whatever the size. A file's row groups hold increasing ranges of evt.num; inside one, rows
are in the order the footer's `row_order` says. Files written before rows were clustered by
event type are in evt.num order, so their rows are compared as stored (a step back there is a
splice); a clustered row group is sorted by evt.num first (one row group at a time, so memory
is bounded by a row group, and a repeat or a step back between row groups still shows). Time
gaps are measured against the latest time seen so far, so events arriving a little out of order
(per-CPU buffers) do not make false gaps.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from analyze.trace_reader import Trace, TraceFile
from schemas.trace import NUM_ORDER, SOURCE_IMPORT

DEFAULT_GAP_NS = 5 * 10**9
LISTED = 10  # gaps of each kind kept with their details; the rest are only counted
BATCH_ROWS = 64 * 1024
FIRST_NUM = 1  # live capture numbers events from 1 (capture/enrich.py), across segments


@dataclass(frozen=True)
class NumGap:
    """Event numbers missing between two consecutive events (`after` + 1 .. `before` - 1)."""

    after: int
    before: int
    file: str  # the file holding `before` (a segment boundary shows as the next segment)

    @property
    def missing(self) -> int:
        return self.before - self.after - 1


@dataclass(frozen=True)
class Disorder:
    """`evt.num` not increasing: `num` follows `previous` (a repeat or a step back)."""

    previous: int
    num: int
    file: str


@dataclass(frozen=True)
class TimeGap:
    """No event between `start_ns` (the latest time so far, at `after_num`) and `end_ns`."""

    start_ns: int
    end_ns: int
    after_num: int
    before_num: int
    file: str

    @property
    def length_ns(self) -> int:
        return self.end_ns - self.start_ns


@dataclass(frozen=True)
class SegmentSpan:
    """What one file holds, read from its rows (not its footer)."""

    path: Path
    rows: int
    first_num: int | None
    last_num: int | None
    start_ns: int | None  # earliest evt.time
    end_ns: int | None  # latest evt.time


@dataclass
class GapReport:
    threshold_ns: int
    num_gaps: int = 0
    missing_nums: int = 0
    num_gap_list: list[NumGap] = field(default_factory=list)
    disorders: int = 0
    disorder_list: list[Disorder] = field(default_factory=list)
    time_gaps: int = 0
    time_gap_list: list[TimeGap] = field(default_factory=list)
    segments: list[SegmentSpan] = field(default_factory=list)
    expected_num_gaps: bool = False  # imported: libsinsp numbers events sysdig does not print
    # Live traces: numbers before the first event. Not counted as a gap: a later segment of a
    # rotated capture, analysed alone, starts there too, and its footer cannot tell.
    missing_start: int = 0

    @property
    def suspicious(self) -> bool:
        return bool((self.num_gaps and not self.expected_num_gaps) or self.disorders
                    or self.time_gaps)


@dataclass
class _State:
    """What the scan carries from one batch to the next."""

    last_num: int | None = None
    max_time: int | None = None
    max_time_num: int | None = None


def scan_gaps(trace: Trace, threshold_ns: int = DEFAULT_GAP_NS) -> GapReport:
    """Every gap in `evt.num` and every silence longer than `threshold_ns`, the files read in
    the order of their first event number."""
    report = GapReport(threshold_ns, expected_num_gaps=any(
        f.meta.source == SOURCE_IMPORT for f in trace.files))
    state = _State()
    for tf in sorted(trace.files, key=_first_num):
        span = SegmentSpan(tf.path, 0, None, None, None, None)
        for nums, times in _batches(tf):
            span = _add_to_span(span, nums, times)
            _scan_batch(report, state, nums, times, str(tf.path))
        report.segments.append(span)
    return report


def _first_num(tf: TraceFile) -> int:
    """The file's first evt.num from its first row group's statistics (footer only), so that
    segments named out of order are scanned in capture order, not flagged as spliced."""
    meta = pq.ParquetFile(tf.path).metadata
    if meta.num_row_groups:
        group = meta.row_group(0)
        for i in range(group.num_columns):  # Parquet leaf columns: lists add their own
            column = group.column(i)
            if column.path_in_schema == "evt.num":
                stats = column.statistics
                if stats is not None and stats.has_min_max:
                    return int(stats.min)
    return -(2**63)


def _batches(tf: TraceFile) -> Iterator[tuple[pa.Array, pa.Array]]:
    """(evt.num, evt.time) of the file's events in event order, a batch at a time."""
    parquet = pq.ParquetFile(tf.path)
    columns = ["evt.num", "evt.time"]
    if tf.meta.row_order == NUM_ORDER:
        batches = (pa.Table.from_batches([b]) for b in
                   parquet.iter_batches(batch_size=BATCH_ROWS, columns=columns))
    else:
        batches = (_by_num(parquet.read_row_group(i, columns=columns))
                   for i in range(parquet.num_row_groups))
    for batch in batches:
        nums = batch.column(0).combine_chunks().cast(pa.int64())
        times = batch.column(1).combine_chunks().cast(pa.int64())
        if nums.null_count or times.null_count:  # rows without a number or time say nothing
            keep = pc.and_(pc.is_valid(nums), pc.is_valid(times))
            nums, times = nums.filter(keep), times.filter(keep)
        if len(nums):
            yield nums, times


def _by_num(group: pa.Table) -> pa.Table:
    """A row group's rows in event order (repeated numbers by time, for a stable answer)."""
    return group.sort_by([("evt.num", "ascending"), ("evt.time", "ascending")])


def _add_to_span(span: SegmentSpan, nums: pa.Array, times: pa.Array) -> SegmentSpan:
    bounds = pc.min_max(times)
    lo, hi = bounds["min"].as_py(), bounds["max"].as_py()
    return SegmentSpan(
        span.path, span.rows + len(nums),
        span.first_num if span.first_num is not None else nums[0].as_py(), nums[-1].as_py(),
        lo if span.start_ns is None else min(lo, span.start_ns),
        hi if span.end_ns is None else max(hi, span.end_ns),
    )


def _scan_batch(report: GapReport, state: _State, nums: pa.Array, times: pa.Array,
                file: str) -> None:
    """Compare every event with the one before it (the previous batch's last, for the first)."""
    if state.last_num is None:  # the trace's first event: nothing before it to compare with
        state.last_num = state.max_time_num = nums[0].as_py()
        state.max_time = times[0].as_py()
        if not report.expected_num_gaps:  # live numbering starts at FIRST_NUM
            report.missing_start = max(0, state.last_num - FIRST_NUM)
        nums, times = nums[1:], times[1:]
        if not len(nums):
            return
    previous = pa.concat_arrays([pa.array([state.last_num], pa.int64()), nums[:-1]])
    steps = pc.subtract(nums, previous)
    for i in _indices(pc.greater(steps, 1)):
        _num_gap(report, previous[i].as_py(), nums[i].as_py(), file)
    for i in _indices(pc.less(steps, 1)):
        report.disorders += 1
        if len(report.disorder_list) < LISTED:
            report.disorder_list.append(Disorder(previous[i].as_py(), nums[i].as_py(), file))
    _scan_times(report, state, nums, times, file)
    state.last_num = nums[-1].as_py()


def _num_gap(report: GapReport, after: int, before: int, file: str) -> None:
    report.num_gaps += 1
    report.missing_nums += before - after - 1
    if len(report.num_gap_list) < LISTED:
        report.num_gap_list.append(NumGap(after, before, file))


def _scan_times(report: GapReport, state: _State, nums: pa.Array, times: pa.Array,
                file: str) -> None:
    """A gap is an event later than every event before it by more than the threshold."""
    # running[k]: the latest time among the carried maximum and times[:k]
    running = pc.cumulative_max(pa.concat_arrays([pa.array([state.max_time], pa.int64()), times]))
    before = running[:-1]
    for i in _indices(pc.greater(pc.subtract(times, before), report.threshold_ns)):
        report.time_gaps += 1
        if len(report.time_gap_list) < LISTED:
            report.time_gap_list.append(TimeGap(
                before[i].as_py(), times[i].as_py(), _num_holding(state, nums, running, i),
                nums[i].as_py(), file))
    state.max_time_num = _num_holding(state, nums, running, len(nums))
    state.max_time = running[-1].as_py()


def _num_holding(state: _State, nums: pa.Array, running: pa.Array, k: int) -> int:
    """The evt.num of the event whose time is running[k] (the first to reach it)."""
    first = pc.index(running.slice(0, k + 1), running[k]).as_py()
    return int(state.max_time_num or 0) if first == 0 else int(nums[first - 1].as_py())


def _indices(mask: pa.Array) -> list[int]:
    """Positions where `mask` is true (few: gaps are rare, so a list is fine)."""
    if not pc.any(mask).as_py():
        return []
    return pc.indices_nonzero(mask).to_pylist()
