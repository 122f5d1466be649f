"""`capture import`: turn a sysdig/Falco capture (.scap, plain or gzip) into a trace.

The capture is read by Debian's `sysdig` (0.29), which knows the scap format and, crucially,
rebuilds the process/fd/container state exactly as libsinsp does. We ask it for every trace
column as NDJSON keyed by field name:

    sysdig -r FILE -b -j -p "*%evt.num %evt.rawtime ... %proc.aname[0] ... %proc.apid[15]"

- the leading `*` makes sysdig print every event; without it, events lacking any field vanish;
- `-b` prints data buffers in base64, so `evt.buffer` keeps its exact bytes;
- absent fields are JSON null; numbers and booleans arrive typed, so pyarrow's JSON reader parses
  the stream with an explicit schema, in C++;
- sysdig can only print an ancestor at a fixed index, so `proc.aname[0..15]`/`proc.apid[0..15]` are
  printed and folded into the LIST columns.

The stream is read by a thread in chunks (bounded queue), parsed and converted per chunk, and handed
to `TraceWriter`: memory stays bounded whatever the capture's size. Fields sysdig 0.29 cannot print
(`proc.pexe`, `proc.aexepath`, ...) are derived from what the capture shows (see `_PidTable`), or
left null (see `schemas.trace`, origin `live`).
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import gzip
import io
import os
import queue
import re
import shutil
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import IO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from capture.trace_writer import DEFAULT_ROW_GROUP_ROWS, TraceWriter
from schemas.trace import (
    ANCESTOR_DEPTH,
    COLUMNS,
    SOURCE_IMPORT,
    TraceError,
    TraceMeta,
    arrow_schema,
)

CHUNK_BYTES = 8 << 20  # NDJSON handed to the parser at once (about 2,500 events of the k8s capture)
PIPE_BYTES = 1 << 20
QUEUE_CHUNKS = 4  # read-ahead while the previous chunk is converted: bounds memory to ~40 MiB
SCAP_MAGIC = 0x0A0D0D0A  # the section header block that opens every scap file
MI_BLOCK_TYPES = (0x201,)  # machine info: cpus, memory, max pid, hostname


class ScapImportError(TraceError):
    """A capture that cannot be imported; the message says why and what to do."""


class SysdigNotFoundError(ScapImportError):
    """The `sysdig` program is not installed."""


class EmptyCaptureError(ScapImportError):
    """The capture holds no events (only headers and tables)."""


@dataclass(frozen=True)
class ImportProgress:
    """Passed to the progress callback after each chunk."""

    events: int  # events converted so far
    bytes_read: int | None  # how far sysdig has read the capture file (None if unknown)
    bytes_total: int  # the capture file's size (compressed size for gzip files)


@dataclass(frozen=True)
class ImportStats:
    """What `import_scap` did."""

    source: Path
    output: Path
    events: int
    seconds: float
    output_bytes: int
    meta: TraceMeta

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    @property
    def bytes_per_event(self) -> float:
        return self.output_bytes / self.events if self.events else 0.0


@dataclass(frozen=True)
class ScapHeader:
    """What the capture's own header tells (sysdig 0.29 prints none of it)."""

    hostname: str = ""
    num_cpus: int = 0
    memory_bytes: int = 0
    gzip: bool = False


ProgressCallback = Callable[[ImportProgress], None]


def import_scap(
    src: Path | str,
    dst: Path | str,
    progress: ProgressCallback | None = None,
    *,
    sysdig: str = "sysdig",
    allow_truncated: bool = False,
    row_group_rows: int = DEFAULT_ROW_GROUP_ROWS,
) -> ImportStats:
    """Convert the capture `src` into the trace file `dst` (written atomically, mode 0600).

    Raises a `ScapImportError` (one-paragraph message) for a missing sysdig, an unreadable or
    foreign file, an empty capture, or a truncated one (unless `allow_truncated`, which keeps the
    events read before the cut and records `truncated` in the trace's options).
    """
    src, dst = Path(src), Path(dst)
    started = time.monotonic()
    header = read_scap_header(src)
    binary = _find_sysdig(sysdig)
    meta = TraceMeta(
        source=SOURCE_IMPORT, source_file=src.name, hostname=header.hostname,
        options={"importer": _sysdig_version(binary), "ancestor_depth": ANCESTOR_DEPTH,
                 "num_cpus": header.num_cpus, "memory_bytes": header.memory_bytes},
    )
    run = _SysdigRun(binary, src)
    try:
        with TraceWriter(dst, meta, row_group_rows) as writer:
            final = _convert(run, writer, progress, allow_truncated)
    finally:
        run.stop()
    return ImportStats(src, dst, final.events, time.monotonic() - started, dst.stat().st_size,
                       final)


def _convert(run: _SysdigRun, writer: TraceWriter, progress: ProgressCallback | None,
             allow_truncated: bool) -> TraceMeta:
    pids = _PidTable()
    for raw in run.tables():
        writer.write(to_trace_table(raw, pids))
        if progress is not None:
            progress(ImportProgress(writer.rows, run.position(), run.size))
    truncated = run.finish(writer.rows, allow_truncated)
    if writer.rows == 0:
        raise EmptyCaptureError(
            f"The capture {run.src} holds no events (only its headers and process tables), so "
            "there is nothing to import. Record a capture while the activity happens."
        )
    options = dict(writer.meta.options, truncated=True) if truncated else writer.meta.options
    return writer.close(options=options)


# ---- the capture file's header -------------------------------------------------------------


def read_scap_header(src: Path) -> ScapHeader:
    """Check that `src` is a readable scap file (plain or gzip) and read its machine info."""
    try:
        with src.open("rb") as raw:
            compressed = raw.read(2) == b"\x1f\x8b"
            raw.seek(0)
            stream = gzip.GzipFile(fileobj=raw) if compressed else raw
            head = stream.read(4096)
    except FileNotFoundError:
        raise ScapImportError(f"The capture file {src} does not exist.") from None
    except (OSError, EOFError) as exc:
        raise ScapImportError(
            f"Cannot read the capture file {src}: {getattr(exc, 'strerror', None) or exc}."
        ) from None
    if len(head) < 12 or struct.unpack_from("<I", head)[0] != SCAP_MAGIC:
        raise ScapImportError(
            f"{src} is not a sysdig/Falco capture: scap files (plain or gzip) start with a "
            "section header block, this one does not. Give a .scap file written by sysdig, "
            "Falco or `scap-open`."
        )
    return _machine_info(head, compressed)


def _machine_info(head: bytes, compressed: bool) -> ScapHeader:
    """Walk the first blocks for the machine-info block (layout: libscap scap_savefile.c)."""
    offset = 0
    while offset + 8 <= len(head):
        block_type, length = struct.unpack_from("<II", head, offset)
        if length < 12:
            break
        if block_type in MI_BLOCK_TYPES and offset + 8 + 148 <= len(head):
            cpus, memory, _max_pid = struct.unpack_from("<IQQ", head, offset + 8)
            name = head[offset + 28: offset + 28 + 128].split(b"\0", 1)[0]
            return ScapHeader(name.decode("utf-8", "replace"), cpus, memory, compressed)
        offset += length
    return ScapHeader(gzip=compressed)


# ---- running sysdig ------------------------------------------------------------------------


def _find_sysdig(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise SysdigNotFoundError(
            f"Importing a capture needs the `{name}` program, which is not installed (or not on "
            "PATH). On Debian/Ubuntu: `apt-get install sysdig` (tested with 0.29.3)."
        )
    return found


def _sysdig_version(binary: str) -> str:
    """E.g. "sysdig version 0.29.3": recorded in the trace, as field renderings vary by version."""
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return "sysdig"
    return out.stdout.strip() or "sysdig"


def sysdig_fields() -> list[str]:
    """The fields `sysdig -p` prints, in order: every sysdig-backed column, then ancestors."""
    fields = [f for f in (c.sysdig_field for c in COLUMNS) if f is not None]
    for i in range(ANCESTOR_DEPTH):
        fields += [f"proc.aname[{i}]", f"proc.apid[{i}]"]
    return fields


def sysdig_command(binary: str, src: Path) -> list[str]:
    fmt = "*" + " ".join(f"%{f}" for f in sysdig_fields())
    return [binary, "-r", str(src), "-b", "-j", "-p", fmt]


def raw_schema() -> pa.Schema:
    """The schema of sysdig's NDJSON: typed as sysdig prints (ints, bools, strings)."""
    trace = arrow_schema()
    fields = []
    for name in sysdig_fields():
        if name.startswith("proc.apid["):
            fields.append(pa.field(name, pa.int64()))
        elif name.startswith("proc.aname["):
            fields.append(pa.field(name, pa.string()))
        else:
            fields.append(pa.field(name, _json_type(trace.field(_column_of(name)).type)))
    return pa.schema(fields)


def _column_of(sysdig_field: str) -> str:
    return next(c.name for c in COLUMNS if c.sysdig_field == sysdig_field)


def _json_type(arrow: pa.DataType) -> pa.DataType:
    if pa.types.is_boolean(arrow):
        return pa.bool_()
    if pa.types.is_integer(arrow) or pa.types.is_timestamp(arrow):
        return pa.int64()
    return pa.string()


class _SysdigRun:
    """One sysdig process; its stdout is drained by a thread into a bounded queue of chunks."""

    def __init__(self, binary: str, src: Path) -> None:
        self.src = src
        self.size = src.stat().st_size
        # stderr goes to a file: a pipe nobody reads could fill up and stall sysdig.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self._proc = subprocess.Popen(
            sysdig_command(binary, src), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=self._stderr,
        )
        _widen_pipe(self._proc.stdout)
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=QUEUE_CHUNKS)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        assert self._proc.stdout is not None
        rest = b""
        while block := self._proc.stdout.read(CHUNK_BYTES):
            data = rest + block
            cut = data.rfind(b"\n") + 1
            if cut and not self._put(data[:cut]):
                return
            rest = data[cut:]
        if rest.strip():
            self._put(rest + b"\n")
        self._put(None)

    def _put(self, item: bytes | None) -> bool:
        """Queue a chunk, unless the consumer has gone (then False: stop reading)."""
        while not self._stopping.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def tables(self) -> Iterator[pa.Table]:
        schema = raw_schema()
        while (chunk := self._queue.get()) is not None:
            yield parse_ndjson(chunk, schema)

    def position(self) -> int | None:
        return _file_position(self._proc.pid, self.src)

    def finish(self, events: int, allow_truncated: bool) -> bool:
        """Wait for sysdig; raise on failure. Returns True when a truncated capture was kept."""
        rc = self._proc.wait()
        self._stderr.seek(0)
        message = " ".join(self._stderr.read().decode("utf-8", "replace").split())
        if rc == 0:
            return False
        if events and "truncated" in message and allow_truncated:
            return True
        raise ScapImportError(_failure_message(self.src, rc, message, events))

    def stop(self) -> None:
        """Release everything, killing sysdig if the import ended early."""
        self._stopping.set()
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        self._thread.join()
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        self._stderr.close()


def _widen_pipe(pipe: IO[bytes] | None) -> None:
    """Let sysdig run ahead by up to 1 MiB: with the default 64 KiB pipe it stalls whenever the
    draining thread waits for the GIL while a chunk is being converted."""
    if pipe is None:
        return
    try:
        with open("/proc/sys/fs/pipe-max-size") as f:
            size = min(int(f.read()), PIPE_BYTES)
        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, size)
    except (OSError, ValueError, AttributeError):
        pass  # not Linux, or not allowed: only slower


def _failure_message(src: Path, rc: int, message: str, events: int) -> str:
    said = f" sysdig said: {message}" if message else ""
    if events and "truncated" in message:
        return (
            f"The capture {src} is truncated: sysdig stopped with an error after {events} "
            f"events.{said} Import it anyway with --allow-truncated to keep those events."
        )
    return (
        f"sysdig could not read the capture {src} (exit status {rc}).{said} The file may be "
        "corrupt, or written by a newer libscap than this sysdig understands (pcapng options, "
        "new block types); re-save it with a matching sysdig or Falco version."
    )


def _file_position(pid: int, path: Path) -> int | None:
    """How far process `pid` has read `path` (from /proc/PID/fdinfo; None if not found)."""
    target = os.path.realpath(path)
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            if os.path.realpath(f"/proc/{pid}/fd/{fd}") == target:
                with open(f"/proc/{pid}/fdinfo/{fd}") as info:
                    for line in info:
                        if line.startswith("pos:"):
                            return int(line.split()[1])
    except OSError:
        pass
    return None


def parse_ndjson(chunk: bytes, schema: pa.Schema) -> pa.Table:
    """Parse sysdig's NDJSON with an explicit schema; an unexpected key is an error."""
    try:
        return _read_json(chunk, schema)
    except pa.ArrowInvalid as exc:
        error: Exception = exc
    # Paths and command lines may hold bytes that are not UTF-8 (sysdig copies them as they are);
    # Parquet strings must be UTF-8, so such bytes become U+FFFD.
    fixed = chunk.decode("utf-8", "replace").encode("utf-8")
    if fixed != chunk:
        try:
            return _read_json(fixed, schema)
        except pa.ArrowInvalid as exc:
            error = exc
    raise ScapImportError(
        f"sysdig printed output this importer does not understand ({_first_line(error)}). This "
        "happens with a sysdig other than 0.29 that names or types fields differently."
    )


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _read_json(data: bytes, schema: pa.Schema) -> pa.Table:
    # One block per chunk: a line never straddles blocks; threads gain nothing on 2 busy cores.
    read = pajson.ReadOptions(block_size=len(data) + 1, use_threads=False)
    parse = pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error")
    table = pajson.read_json(io.BytesIO(data), read_options=read, parse_options=parse)
    table.validate(full=True)  # the JSON reader does not check UTF-8 by itself
    return table


# ---- sysdig's columns -> trace columns -----------------------------------------------------


def to_trace_table(raw: pa.Table, pids: _PidTable) -> pa.Table:
    """Convert one parsed chunk to trace columns (casts, lists, buffers, derived fields)."""
    columns: dict[str, pa.Array | pa.ChunkedArray] = {}
    for col in COLUMNS:
        source = col.sysdig_field
        if source is not None:
            columns[col.name] = raw.column(source)
    columns["evt.time"] = raw.column("evt.rawtime").cast(pa.timestamp("ns"))
    columns["evt.buffer"] = _decode_buffers(raw.column("evt.buffer"))
    columns["evt.args"] = _render_args(raw.column("evt.args"))
    apid = _ancestor_list(raw, "proc.apid")
    columns["proc.aname"] = _ancestor_list(raw, "proc.aname")
    columns["proc.apid"] = apid
    columns.update(pids.derive(raw, apid))
    schema = arrow_schema()
    arrays = [_cast(columns.get(f.name), f.type, raw.num_rows) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def _cast(values: pa.Array | pa.ChunkedArray | None, target: pa.DataType,
          rows: int) -> pa.Array | pa.ChunkedArray:
    if values is None:
        return pa.nulls(rows, target)
    if values.type == target:
        return values
    if pa.types.is_dictionary(target):
        return pc.dictionary_encode(values.cast(target.value_type))
    if target in _UNSIGNED_MASKS:
        # sysdig 0.29 prints some old captures' group.gid with garbage in the high 32 bits
        # (8 << 32 for gid 0): keep the bits the kernel's type has, as libsinsp's own cast does.
        values = pc.bit_wise_and(values, pa.scalar(_UNSIGNED_MASKS[target], pa.int64()))
    return values.cast(target)


_UNSIGNED_MASKS = {pa.uint16(): 0xFFFF, pa.uint32(): 0xFFFFFFFF}


def _ancestor_list(raw: pa.Table, prefix: str) -> pa.Array:
    """Fold `prefix[0]`..`prefix[N-1]` into one list per row (null when nothing is known).

    libsinsp walks the parent chain until it finds no parent, so the known entries form a prefix:
    the row's list is its non-null entries in index order.
    """
    cols = [raw.column(f"{prefix}[{i}]").combine_chunks() for i in range(ANCESTOR_DEPTH)]
    rows, depth = raw.num_rows, len(cols)
    flat = pa.concat_arrays(cols)  # column-major: entry (row r, index i) sits at i*rows + r
    span = rows * depth
    order = pa.array(chain.from_iterable(range(r, span, rows) for r in range(rows)), pa.int64())
    values = pc.drop_null(flat.take(order))
    lengths = cols[0].is_valid().cast(pa.int32())
    for col in cols[1:]:
        lengths = pc.add(lengths, col.is_valid().cast(pa.int32()))
    offsets = pa.concat_arrays([pa.array([0], pa.int32()), pc.cumulative_sum(lengths)])
    return pa.ListArray.from_arrays(offsets, values, mask=pc.equal(lengths, 0))


def _decode_buffers(b64: pa.ChunkedArray) -> pa.Array:
    return pa.array(
        [None if v is None else base64.b64decode(v) for v in b64.to_pylist()], pa.binary()
    )


def _render_args(args: pa.ChunkedArray) -> pa.Array:
    """Show `evt.args` as Falco prints it: `-b` made sysdig print every byte-buffer parameter
    (execve's args/env/cgroups, I/O data) in base64; decode those and show printable ASCII, other
    bytes as '.'. Only rows that have such a parameter are touched."""
    has_buffer = pc.fill_null(pc.match_substring_regex(args, _BYTEBUF_PREFILTER), False)
    out = args.to_pylist()
    for i in pc.indices_nonzero(has_buffer).to_pylist():
        out[i] = _BYTEBUF_ARG.sub(_render_buffer_arg, out[i])
    return pa.array(out, pa.string())


def _render_buffer_arg(match: re.Match[str]) -> str:
    try:
        data = base64.b64decode(match.group(2), validate=True)
    except binascii.Error:
        return match.group(0)  # not base64 after all: leave it as printed
    return f"{match.group(1)}={data.decode('latin-1').translate(_PRINTABLE)}"


# libscap's PT_BYTEBUF parameters (see the catalog's event table): the ones -b prints in base64.
_BYTEBUF_NAMES = "args|env|cgroups|data|event_data"
_BYTEBUF_PREFILTER = f"(^| )({_BYTEBUF_NAMES})="  # RE2, for pyarrow: no look-arounds
_BYTEBUF_ARG = re.compile(rf"(?:^|(?<= ))({_BYTEBUF_NAMES})=([A-Za-z0-9+/]*={{0,2}})(?= |$)")
_PRINTABLE = {b: (chr(b) if 32 <= b < 127 else ".") for b in range(256)}


@dataclass
class _PidTable:
    """What the capture has shown about each pid, for fields sysdig 0.29 cannot print.

    `proc.pexe`/`proc.pexepath`/`proc.aexe`/`proc.aexepath`/`proc.pvpid` need an ancestor's
    exe and vpid, which libsinsp has in its thread table but sysdig 0.29 does not expose. We keep
    the last value seen per pid, in event order; an ancestor that made no event yet stays null.
    """

    exe: dict[int, str | None] = field(default_factory=dict)
    exepath: dict[int, str | None] = field(default_factory=dict)
    vpid: dict[int, int | None] = field(default_factory=dict)

    def derive(self, raw: pa.Table, apid: pa.Array) -> dict[str, pa.Array]:
        pid, ppid = raw.column("proc.pid").to_pylist(), raw.column("proc.ppid").to_pylist()
        exe, exepath = raw.column("proc.exe").to_pylist(), raw.column("proc.exepath").to_pylist()
        vpid, vpgid = raw.column("proc.vpid").to_pylist(), raw.column("proc.vpgid").to_pylist()
        chains = apid.to_pylist()
        aexe: list[list[str | None] | None] = []
        aexepath: list[list[str | None] | None] = []
        pvpid: list[int | None] = []
        for i, p in enumerate(pid):
            if p is not None:
                self.exe[p], self.exepath[p], self.vpid[p] = exe[i], exepath[i], vpid[i]
            chain = chains[i]
            aexe.append(None if chain is None else [self.exe.get(a) for a in chain])
            aexepath.append(None if chain is None else [self.exepath.get(a) for a in chain])
            pvpid.append(None if ppid[i] is None else self.vpid.get(ppid[i]))
        leader = [None if v is None or g is None or g < 0 else v == g for v, g in zip(vpid, vpgid,
                                                                                     strict=True)]
        return {
            "proc.aexe": pa.array(aexe, pa.list_(pa.string())),
            "proc.aexepath": pa.array(aexepath, pa.list_(pa.string())),
            "proc.pexe": pa.array([c[1] if c and len(c) > 1 else None for c in aexe], pa.string()),
            "proc.pexepath": pa.array([c[1] if c and len(c) > 1 else None for c in aexepath],
                                      pa.string()),
            "proc.pvpid": pa.array(pvpid, pa.int64()),
            "proc.is_vpgid_leader": pa.array(leader, pa.bool_()),
        }
