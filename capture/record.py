"""`capture record`: run the probe, enrich its records, and write trace segments.

The loop (one thread): read the ring buffer -> decode and enrich into a `RowBatch`
(`Enricher.feed_chunk`) -> every `flush_seconds`, append the batch in its compact form
(capture/compact.py: events, process views and shapes) to the current segment's spool, in a
thread of its own (a slow fsync must not stop the loop from draining the ring buffer).

Crash safety. A Parquet file is only readable once its footer is written, at the very end, so the
live data goes first to a spool next to the segment (`<segment>.spool`, Arrow IPC stream, lz4,
mode 0600), fsynced at every flush: `kill -9` loses at most the last flush interval, and
`recover_spool()` turns what survived into a trace. When a segment ends (rotation, duration,
SIGINT/SIGTERM, `stop`), its spool is expanded into trace rows and converted into the Parquet
trace by `TraceWriter` (atomic rename, metadata with the kernel's drop counters) and removed, in
a worker process at a lower CPU priority (capture/convert_worker.py: in a thread it took the
loop's GIL): rotated segments are converted while the capture goes on, and the end of the
capture waits for them (the probe detached meanwhile).

Output: without rotation, `output` is the trace file. With rotation (`rotate_bytes` or
`rotate_seconds`), `output` is a directory of segments `segment-00001.parquet`, ... which
`analyze` reads as one trace. A `SegmentCut` lets another thread end a segment at a moment it
chooses (the scenario runner cuts one segment per scenario, with one compiled probe for all);
the output is then a directory of segments too.
"""

from __future__ import annotations

import contextlib
import gc
import os
import platform
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import IO, Any

import pyarrow as pa

from capture import compact
from capture.bpf_render import ProgramOptions, arch_supported, render, resolve_syscalls
from capture.cgroup_filter import CgroupPlan, CgroupVerdicts
from capture.cgroup_filter import plan as cgroup_plan
from capture.container_filter import ContainerSelection
from capture.container_runtime import ContainerRuntimes
from capture.convert_worker import Converter, Job
from capture.enrich import Enricher
from capture.probe import Features, Probe, detect_features, tracefs_root
from capture.rows import RowBatch
from capture.rule_syscalls import RuleSyscalls, syscalls_for_choice, syscalls_for_rules
from capture.trace_writer import DEFAULT_ROW_GROUP_ROWS, TraceWriter
from schemas.trace import ANCESTOR_DEPTH, SOURCE_LIVE, TraceError, TraceMeta

SPOOL_SUFFIX = ".spool"
SEGMENT_NAME = "segment-{:05d}.parquet"
SPOOL_COMPRESSION = "lz4"
MAX_PENDING_WRITES = 8  # flushes queued for the spool thread before the loop waits


class RecordError(TraceError):
    """A capture that cannot start or finish; the message says why and what to do."""


@dataclass(frozen=True)
class RecordOptions:
    """How to capture. Sizes in bytes, times in seconds."""

    duration: float | None = None  # None: until SIGINT/SIGTERM or `stop`
    preset: str = "default"  # syscall preset (bpf_render.PRESETS)
    syscalls: tuple[str, ...] | None = None  # exactly these syscalls instead of the preset
    extra_syscalls: tuple[str, ...] = ()  # added to the preset
    rules: tuple[str, ...] = ()  # rule files: record what they need instead (rule_syscalls.py)
    pids: tuple[int, ...] = ()  # only these processes
    follow_pids: tuple[int, ...] = ()  # only these processes and their descendants
    comms: tuple[str, ...] = ()  # only these command names
    exclude_comms: tuple[str, ...] = ()  # not these command names (filtered in the kernel)
    runtime_sockets: tuple[str, ...] = ()  # container engine sockets (default: the usual ones)
    containers: tuple[str, ...] = ()  # only these containers: ids, names, "host" (kernel+user)
    ringbuf_bytes: int = 32 << 20  # power of two
    path_max: int = 4096
    arg_max: int = 1024
    max_args: int = 32
    env_max: int = 4096  # most bytes of envp kept per execve (proc.env)
    rotate_bytes: int | None = None  # start a new segment when the spool reaches this size
    rotate_seconds: float | None = None  # ... or when the segment is this old
    flush_seconds: float = 1.0  # spool write + fsync interval: what kill -9 can lose
    poll_seconds: float = 0.01  # sleep when the ring buffer is empty
    row_group_rows: int = DEFAULT_ROW_GROUP_ROWS

    @property
    def rotating(self) -> bool:
        return self.rotate_bytes is not None or self.rotate_seconds is not None

    def rule_syscalls(self) -> RuleSyscalls | None:
        """The syscalls the `rules` files need (None without rule files)."""
        return syscalls_for_rules(self.rules) if self.rules else None

    def recorded(self) -> RuleSyscalls:
        """What the program records: as rows (the rules' syscalls, or the preset or list), and
        for the process and fd tables only (rule_syscalls.py)."""
        for_rules = self.rule_syscalls()
        if for_rules is not None:
            return for_rules
        return syscalls_for_choice(
            resolve_syscalls(self.preset, self.extra_syscalls, self.syscalls))

    def program(self, self_tgid: int, features: Features,
                cgroups: CgroupPlan | None = None) -> ProgramOptions:
        """The program options; `cgroups`: the --container selection's plan (container_plan),
        whose kernel part the program then carries."""
        pages = self.ringbuf_bytes // os.sysconf("SC_PAGE_SIZE")
        kernel = cgroups if cgroups is not None and cgroups.kernel else None
        return ProgramOptions(
            syscalls=self.recorded().syscalls,
            self_tgid=self_tgid, pids=self.pids, follow_tgids=self.follow_pids, comms=self.comms,
            exclude_comms=self.exclude_comms, ringbuf_pages=pages,
            path_slot=self.path_max, arg_slot=self.arg_max, max_args=self.max_args,
            has_group_dead=features.has_group_dead, local_endpoints=features.local_endpoints,
            fib_ports=features.fib_ports, fib6_ports=features.fib6_ports, env_max=self.env_max,
            cgroup_filter=kernel is not None,
            cgroup_keep_host=kernel is not None and kernel.keep_host,
            cgroup_ids=kernel.ids if kernel is not None else (),
            cgroup_names=kernel is not None and kernel.names,
        )


@dataclass(frozen=True)
class RecordProgress:
    """Handed to the progress callback after every flush."""

    elapsed: float
    events: int
    events_per_second: float  # over the last flush interval
    dropped: int
    bytes_written: int  # finished segments and spools (not converted yet) on disk
    segments: int
    table_only: int = 0  # syscalls applied to the tables only, not written (--rules)
    converting: int = 0  # segments ended whose trace is not written yet
    capturing: bool = True  # False once the capture has ended and only conversions remain


@dataclass(frozen=True)
class RecordStats:
    """What `record` did."""

    outputs: tuple[Path, ...]
    events: int
    dropped: int
    drops: dict[str, int]
    seconds: float
    output_bytes: int
    stopped_by: str  # "duration", "signal" or "stop"
    syscalls: tuple[str, ...] = field(default=())
    container_filter: str | None = None  # where --container ran (cgroup_filter.IN_KERNEL...)
    ring_bytes: int = 0  # what the kernel sent: ring-buffer bytes read
    # Records that reached user space for processes --container leaves out, by syscall.
    left_out: dict[str, int] = field(default_factory=dict)
    cgroup_corrections: int = 0  # cgroups the kernel kept that user space then had it drop

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    @property
    def bytes_per_event(self) -> float:
        return self.output_bytes / self.events if self.events else 0.0


ProgressCallback = Callable[[RecordProgress], None]


class SegmentCut:
    """Ends the current segment when another thread asks (`cut()`), then starts the next.

    Everything the kernel had sent when the cut was asked for goes into the segment that ends
    (the loop drains the ring buffer first), so a caller that waits for its processes to exit
    before cutting finds all their events in that segment.
    """

    def __init__(self) -> None:
        self._asked = threading.Event()
        self._done = threading.Event()
        self._ended = False

    def cut(self, timeout: float = 30.0) -> None:
        """Ask for a cut and wait until the next segment has started."""
        self._done.clear()
        self._asked.set()
        if not self._ended and not self._done.wait(timeout):
            raise RecordError(f"The capture did not cut its segment within {timeout:.0f} s.")
        if self._ended:
            raise RecordError("The capture ended before it could cut its segment.")

    @property
    def asked(self) -> bool:
        return self._asked.is_set()

    def acknowledge(self) -> None:
        self._asked.clear()
        self._done.set()

    def end(self) -> None:
        """The capture is over: a cut asked for now fails instead of waiting."""
        self._ended = True
        self._done.set()


# ---- segments -------------------------------------------------------------------------------

class Segment:
    """One output file in the making: an Arrow IPC spool, fsynced at every write.

    The capture spools compact batches (capture/compact.py); trace rows can be spooled too.
    The stream takes the schema of `schema`, or else of the first batch written."""

    def __init__(self, path: Path, meta: TraceMeta, schema: pa.Schema | None = None) -> None:
        self.path = path
        self.spool = path.with_name(path.name + SPOOL_SUFFIX)
        self.meta = meta
        self.started = time.monotonic()
        if self.spool.exists():
            raise RecordError(
                f"{self.spool} is left from a capture that did not finish. Recover it "
                f"(`capture recover {self.spool}`) or delete it, then record again."
            )
        fd = os.open(self.spool, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._file: IO[bytes] = os.fdopen(fd, "wb")
        self._writer: pa.ipc.RecordBatchStreamWriter | None = None
        if schema is not None:
            self._open(schema)

    def _open(self, schema: pa.Schema) -> pa.ipc.RecordBatchStreamWriter:
        # The spool carries the metadata for recovery.
        schema = schema.with_metadata(self.meta.to_kv())
        options = pa.ipc.IpcWriteOptions(compression=SPOOL_COMPRESSION)
        self._writer = pa.ipc.new_stream(self._file, schema, options=options)
        return self._writer

    @property
    def bytes(self) -> int:
        return self._file.tell()

    def write(self, batch: pa.RecordBatch | pa.Table | None) -> None:
        """Append `batch` (None: nothing) and make the spool durable."""
        if batch is not None:
            writer = self._writer or self._open(batch.schema)
            if isinstance(batch, pa.Table):
                writer.write_table(batch)
            else:
                writer.write_batch(batch)
        self._file.flush()
        os.fsync(self._file.fileno())

    def seal(self) -> None:
        (self._writer or self._open(compact.SCHEMA)).close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()


def spool_to_trace(spool: Path, dst: Path, meta: TraceMeta, drops: dict[str, int] | None,
                   row_group_rows: int = DEFAULT_ROW_GROUP_ROWS) -> TraceMeta:
    """Write the batches of a spool into the trace `dst`, then remove the spool.

    A spool cut short (the capture was killed) yields the batches before the cut.
    """
    with TraceWriter(dst, meta, row_group_rows) as writer:
        for batch in _spool_batches(spool):
            if compact.is_compact(batch.schema):
                for rows in compact.expand_slices(batch, row_group_rows):
                    writer.write(rows)
            else:
                writer.write(batch)
        final = writer.close(drops=drops)
    spool.unlink()
    return final


def _spool_batches(spool: Path) -> Iterator[pa.RecordBatch]:
    with pa.OSFile(str(spool)) as source:
        try:
            reader = pa.ipc.open_stream(source)
        except (OSError, pa.ArrowInvalid):
            return  # killed before the first batch: an empty trace
        with contextlib.suppress(OSError, pa.ArrowInvalid):
            for batch in reader:
                yield batch.replace_schema_metadata(None)


def recover_spool(spool: Path | str, dst: Path | str | None = None) -> TraceMeta:
    """Turn the spool of a killed capture into a trace (default: the spool's name minus
    `.spool`). Its drop count is unknown: the kernel counters died with the capture."""
    spool = Path(spool)
    if not spool.name.endswith(SPOOL_SUFFIX):
        raise RecordError(f"{spool} is not a capture spool (its name ends in {SPOOL_SUFFIX}).")
    target = Path(dst) if dst is not None else spool.with_name(spool.name[:-len(SPOOL_SUFFIX)])
    meta = _spool_meta(spool)
    options = dict(meta.options, recovered=True)
    return spool_to_trace(spool, target, TraceMeta(
        source=meta.source, hostname=meta.hostname, kernel=meta.kernel, options=options,
        dropped=None), None)


def _spool_meta(spool: Path) -> TraceMeta:
    try:
        with pa.OSFile(str(spool)) as source:
            kv = pa.ipc.open_stream(source).schema.metadata or {}
        return TraceMeta.from_kv(kv)
    except (OSError, pa.ArrowInvalid, KeyError, ValueError):
        return TraceMeta(source=SOURCE_LIVE)


# ---- the capture ----------------------------------------------------------------------------

class _Output:
    """Where segments go, and the background conversion of finished ones: in order, in the
    worker process (a thread here waits for each)."""

    def __init__(self, target: Path, options: RecordOptions, meta: TraceMeta,
                 segmented: bool) -> None:
        self.target = target
        self.options = options
        self.meta = meta
        self.segmented = segmented  # a directory of segments, not one file
        self.done: list[Future[TraceMeta]] = []
        self.paths: list[Path] = []
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="segment")
        self._converter = Converter()
        if segmented:
            target.mkdir(parents=True, exist_ok=True)
        self._converter.start()  # while the probe compiles

    def open(self) -> Segment:
        n = len(self.paths) + 1
        path = self.target / SEGMENT_NAME.format(n) if self.segmented else self.target
        self.paths.append(path)
        return Segment(path, self.meta, compact.SCHEMA)

    def finish(self, segment: Segment, drops: dict[str, int]) -> None:
        segment.seal()
        job = Job(segment.spool, segment.path, segment.meta, drops, self.options.row_group_rows)
        self.done.append(self._pool.submit(self._converter.convert, job))

    def converting(self) -> int:
        """Segments ended whose trace is not written yet."""
        return sum(not f.done() for f in self.done)

    def wait_any(self, timeout: float) -> None:
        """Until a conversion finishes, or `timeout` seconds."""
        wait([f for f in self.done if not f.done()], timeout, FIRST_COMPLETED)

    def close(self) -> list[TraceMeta]:
        """Wait for every conversion and end the worker; the metadata of each trace (the first
        failed conversion raises its error)."""
        try:
            self._pool.shutdown(wait=True)
        finally:
            self._converter.close()
        return [f.result() for f in self.done]

    def bytes_on_disk(self, spools: bool = False) -> int:
        """The size of the traces written; with `spools`, of the spools still on disk too."""
        paths = self.paths + [p.with_name(p.name + SPOOL_SUFFIX) for p in self.paths
                              if spools]
        return sum(_size(p) for p in paths)


def _size(path: Path) -> int:
    """0 for a file not there (not written yet, or a spool just converted)."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


@dataclass
class _Loop:
    """The mutable state of one `record` call."""

    probe: Probe
    enricher: Enricher
    output: _Output
    options: RecordOptions
    progress: ProgressCallback | None
    stop: threading.Event
    cut: SegmentCut | None = None
    started: float = field(default_factory=time.monotonic)
    batch: RowBatch = field(default_factory=RowBatch)
    events: int = 0
    ring_bytes: int = 0  # ring-buffer bytes enriched
    last_flush: float = field(default_factory=time.monotonic)
    last_events: int = 0
    drops_at_segment: dict[str, int] = field(default_factory=dict)
    stopped_by: str = "stop"
    segment: Segment | None = None
    # Spool writes run in a thread of their own: a slow fsync (a busy disk) must not stop the
    # loop from draining the ring buffer. In order; at most MAX_PENDING_WRITES queued.
    spooler: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(
        max_workers=1, thread_name_prefix="spool"))
    writes: list[Future[None]] = field(default_factory=list)

    def run(self) -> None:
        self.segment = self.output.open()
        while not self._should_stop():
            if not self._poll():
                time.sleep(self.options.poll_seconds)
            if self.cut is not None and self.cut.asked:
                self._cut()
            elif time.monotonic() - self.last_flush >= self.options.flush_seconds:
                self.flush()
                self._maybe_rotate()
        self._drain()
        self.flush()
        self._end_segment()

    def wait_conversions(self) -> None:
        """Wait for the segments still converting, reporting how many at each flush interval."""
        while converting := self.output.converting():
            if self.progress is not None:
                self.progress(RecordProgress(
                    elapsed=time.monotonic() - self.started, events=self.events,
                    events_per_second=0.0, dropped=sum(self.drops_at_segment.values()),
                    bytes_written=self.output.bytes_on_disk(spools=True),
                    segments=len(self.output.paths),
                    table_only=self.enricher.table_only, converting=converting,
                    capturing=False))
            self.output.wait_any(self.options.flush_seconds)

    def _poll(self) -> bool:
        """Enrich what the kernel has committed; False when there was nothing."""
        ring = self.probe.ring
        assert ring is not None
        chunk = ring.read()
        used = self.enricher.feed_chunk(chunk, self.batch) if chunk else 0
        ring.consume(used)
        self.ring_bytes += used
        return used > 0

    def _drain(self) -> None:
        """Enrich what the kernel had sent when called (not what it sends meanwhile: under a
        steady load the buffer is never empty)."""
        ring = self.probe.ring
        assert ring is not None
        target = ring.bytes_read + ring.pending()
        while ring.bytes_read < target and self._poll():
            pass

    def _cut(self) -> None:
        assert self.cut is not None
        self._drain()
        self.flush()
        self._end_segment()
        self.segment = self.output.open()
        self.cut.acknowledge()

    def _should_stop(self) -> bool:
        if self.stop.is_set():
            return True
        duration = self.options.duration
        if duration is not None and time.monotonic() - self.started >= duration:
            self.stopped_by = "duration"
            return True
        return False

    def flush(self) -> None:
        assert self.segment is not None
        rows = len(self.batch)
        spooled = self.batch.to_spool() if rows else None
        self.batch = RowBatch()
        gc.collect(1)
        self._spool(self.segment, spooled)
        self.events += rows
        now = time.monotonic()
        if self.progress is not None:
            rate = (self.events - self.last_events) / max(now - self.last_flush, 1e-9)
            self.progress(RecordProgress(
                elapsed=now - self.started, events=self.events, events_per_second=rate,
                dropped=sum(self.counters().values()),
                bytes_written=self.output.bytes_on_disk(spools=True),
                segments=len(self.output.paths), table_only=self.enricher.table_only,
                converting=self.output.converting()))
        self.last_flush, self.last_events = now, self.events

    def _spool(self, segment: Segment, batch: pa.RecordBatch | None) -> None:
        for done in [w for w in self.writes if w.done()]:
            done.result()  # a write that failed (disk full...) ends the capture with its error
            self.writes.remove(done)
        while len(self.writes) >= MAX_PENDING_WRITES:
            self.writes.pop(0).result()
        self.writes.append(self.spooler.submit(segment.write, batch))

    def wait_writes(self) -> None:
        while self.writes:
            self.writes.pop(0).result()

    def _maybe_rotate(self) -> None:
        assert self.segment is not None
        opts, seg = self.options, self.segment
        too_big = opts.rotate_bytes is not None and seg.bytes >= opts.rotate_bytes
        too_old = (opts.rotate_seconds is not None
                   and time.monotonic() - seg.started >= opts.rotate_seconds)
        if too_big or too_old:
            self._end_segment()
            self.segment = self.output.open()

    def counters(self) -> dict[str, int]:
        """The kernel's drop counters plus the records enrichment could not use."""
        return {**self.probe.counters(), "enrich_errors": self.enricher.errors}

    def _end_segment(self) -> None:
        assert self.segment is not None
        self.wait_writes()
        now = self.counters()
        drops = {k: v - self.drops_at_segment.get(k, 0) for k, v in now.items()}
        self.drops_at_segment = now
        self.output.finish(self.segment, drops)


def record(options: RecordOptions, output: Path | str,
           progress: ProgressCallback | None = None,
           stop: threading.Event | None = None, *,
           ready: threading.Event | None = None,
           cut: SegmentCut | None = None) -> RecordStats:
    """Capture until `options.duration` elapses, SIGINT/SIGTERM arrives, or `stop` is set.

    Needs root and BPF (see `capture.doctor`). Signals are handled only when called from the
    main thread; elsewhere, set `stop`. `ready` is set once the probe is attached: what happens
    after that is recorded. With `cut`, `output` is a directory of segments, one per cut.
    """
    if not arch_supported():
        raise RecordError(f"Live capture supports x86_64 only, not {platform.machine()}.")
    tracefs = tracefs_root()
    if tracefs is None:
        raise RecordError("tracefs is not mounted; run `capture doctor --fix` (or mount -t "
                          "tracefs nodev /sys/kernel/tracing).")
    target, stop = Path(output), stop or threading.Event()
    features = detect_features(tracefs)
    recorded = options.recorded()
    enricher = Enricher(time.time_ns() - time.monotonic_ns(),
                        runtime_sockets=options.runtime_sockets, containers=options.containers,
                        row_syscalls=recorded.rows if recorded.state else None)
    enricher.snapshot()
    cgroups = cgroup_plan(enricher.selection, features.cgroup_mkdir) \
        if enricher.selection is not None else None
    program = options.program(os.getpid(), features, cgroups)
    meta = TraceMeta(source=SOURCE_LIVE, hostname=socket.gethostname(),
                     kernel=platform.release(), options=_meta_options(options, program))
    meta = replace(meta, options={**meta.options, **enricher.meta_options()})
    if cgroups is not None:
        meta = replace(meta, options={**meta.options, "container_selection": cgroups.where})
    out = _Output(target, options, meta, segmented=options.rotating or cut is not None)
    try:
        with Probe(program) as probe, _signals_set(stop) as signalled, _no_automatic_gc():
            if cgroups is not None and cgroups.kernel:
                assert enricher.selection is not None
                # Seeded once attached, before `ready`: the mkdir probe sees the cgroups made
                # from now on, the walk those made before.
                enricher.kernel_cgroups = CgroupVerdicts(probe.cgroup_map(), cgroups,
                                                         enricher.selection, enricher.cgroups)
                enricher.kernel_cgroups.seed()
            loop = _Loop(probe, enricher, out, options, progress, stop, cut)
            if ready is not None:
                ready.set()
            try:
                loop.run()
            finally:
                if cut is not None:
                    cut.end()
                loop.spooler.shutdown(wait=True)
                enricher.runtimes.close()
            probe.close()  # nothing reads the ring buffer any more: stop the kernel's work
            loop.wait_conversions()
    finally:
        metas = out.close()
    stopped_by = "signal" if signalled() else loop.stopped_by
    drops: dict[str, int] = {}
    for m in metas:
        for k, v in m.drops.items():
            drops[k] = drops.get(k, 0) + v
    return RecordStats(tuple(out.paths), sum(m.events for m in metas), sum(drops.values()),
                       drops, time.monotonic() - loop.started, out.bytes_on_disk(), stopped_by,
                       program.syscalls, cgroups.where if cgroups is not None else None,
                       loop.ring_bytes, dict(enricher.left_out),
                       enricher.kernel_cgroups.corrected if enricher.kernel_cgroups else 0)


def _features() -> Features:
    tracefs = tracefs_root()
    return detect_features(tracefs) if tracefs is not None else Features(False, False)


def container_plan(options: RecordOptions, features: Features | None = None) -> CgroupPlan | None:
    """Where `options.containers` would be filtered on this machine (None: no --container).
    Names are resolved through the runtime now (ContainerSelectionError when none answers)."""
    if not options.containers:
        return None
    runtimes = ContainerRuntimes.detect(options.runtime_sockets)
    selection = ContainerSelection.parse(options.containers, runtimes)
    return cgroup_plan(selection, (features or _features()).cgroup_mkdir)


def program_text(options: RecordOptions) -> str:
    """The BPF C that `record(options, ...)` would load on this machine (`--print-bpf`)."""
    features = _features()
    return render(options.program(os.getpid(), features, container_plan(options, features)))


def _meta_options(options: RecordOptions, program: ProgramOptions) -> dict[str, Any]:
    data = asdict(options)
    data.update(syscalls=list(program.syscalls), ancestor_depth=ANCESTOR_DEPTH,
                has_group_dead=program.has_group_dead, local_endpoints=program.local_endpoints)
    recorded = options.recorded()
    if recorded.state:  # the trace holds rows of these only
        data.update(row_syscalls=list(recorded.rows))
    return data


@contextlib.contextmanager
def _no_automatic_gc() -> Iterator[None]:
    """Python's cyclic GC, triggered by allocation counts, rescans the growing batch again and
    again (it halved the capture rate); the loop collects the young generations at each flush
    instead. Nothing the loop builds is cyclic."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@contextlib.contextmanager
def _signals_set(stop: threading.Event) -> Iterator[Callable[[], bool]]:
    """SIGINT/SIGTERM set `stop` while inside (main thread only); yields "was one received?"."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield lambda: bool(received)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
