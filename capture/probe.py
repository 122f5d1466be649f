"""Load the capture program, read its ring buffer, and decode records in bulk.

- `detect_features` looks at tracefs (feature checks, never kernel versions) to decide what the
  rendered program may use.
- `Probe` compiles the rendered C with BCC (its TRACEPOINT_PROBEs attach themselves), and reads
  the kernel's drop counters.
- `RingReader` maps the BPF ring buffer into this process and consumes it directly: one copy of
  everything the kernel has committed since the last read, no per-record callback through ctypes
  (BCC's `open_ring_buffer` costs a Python call per record). The program emits without wakeups
  and the reader polls on a timer.
- `decode` walks a chunk of ring-buffer frames and unpacks each record with one precompiled
  `struct` call; payload items stay `bytes` until enrichment needs them. (The capture loop
  itself decodes as it enriches: capture/fast_feed.py.)
"""

from __future__ import annotations

import ctypes
import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from capture.bpf_render import ProgramOptions, render
from schemas.trace import TraceError

TRACEFS_CANDIDATES = (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing"))
BCC_CFLAGS = ["-Wno-ignored-attributes"]  # Debian's cloud headers carry nocf_check (IBT)

REC_SYSCALL = 1
REC_EXEC_ARGS = 2
REC_FORK = 3
REC_EXIT = 4
REC_CGROUP = 5  # a new cgroup-v2 cgroup (with --container in the kernel)

# Counter indexes of the C program (CNT_*), by the name they get in the trace's drop counters.
COUNTERS = {"ringbuf_full": 0, "stash_full": 1, "no_scratch": 2, "cgroup_map_full": 3}

# struct rec_hdr: ts, ret, args[6], cgroup_id, tgid, tid, uid, gid, comm[16], kind, nr, cpu,
# len[4], pad. The indexes of the decoded tuple's fields:
HEADER = struct.Struct("<Qq6QQIIII16sHHH4HH")
assert HEADER.size == 120
H_TS, H_RET, H_ARG0, H_CGROUP, H_TGID, H_TID, H_UID, H_GID, H_COMM = 0, 1, 2, 8, 9, 10, 11, 12, 13
H_KIND, H_NR, H_CPU, H_LEN0 = 14, 15, 16, 17

FRAME = struct.Struct("<I")
BUSY = 1 << 31
DISCARD = 1 << 30
LEN_MASK = DISCARD - 1
FRAME_HEADER = 8


class ProbeError(TraceError):
    """The capture program could not be compiled, loaded or attached; the message says why.
    (A TraceError like every capture error, so the CLI prints it as one message.)"""


@dataclass(frozen=True)
class Features:
    """What this kernel's tracepoints offer beyond the minimum."""

    has_group_dead: bool  # sched_process_exit tells whether the whole process is gone
    local_endpoints: bool  # sock:inet_sock_set_state exists (local address of TCP connects)
    fib_ports: bool = False  # fib:fib_table_lookup has ports (source port of IPv4 connects)
    fib6_ports: bool = False  # fib6:fib6_table_lookup has ports (IPv6 UDP connects)
    # cgroup:cgroup_mkdir and cgroup_rmdir have root, id and path (--container in the kernel)
    cgroup_mkdir: bool = False


class Record(NamedTuple):
    """One decoded record (see struct rec_hdr in bpf_program.c)."""

    kind: int
    nr: int
    ts: int  # CLOCK_MONOTONIC ns
    cgroup_id: int
    ret: int
    args: tuple[int, int, int, int, int, int]
    tgid: int
    tid: int
    uid: int
    gid: int
    cpu: int
    comm: str
    items: tuple[bytes, ...]


def tracefs_root(candidates: tuple[Path, ...] = TRACEFS_CANDIDATES) -> Path | None:
    """The mounted tracefs (the directory holding `events/`), or None."""
    return next((p for p in candidates if (p / "events").is_dir()), None)


def tracepoint_fields(tracefs: Path, category: str, event: str) -> frozenset[str] | None:
    """The field names of a tracepoint (from its `format` file), or None if it does not exist."""
    try:
        text = (tracefs / "events" / category / event / "format").read_text()
    except OSError:
        return None
    names = set()
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("field:"):
            decl = line[len("field:"):].split(";", 1)[0].strip()  # "char comm[16]", or
            names.add(decl.split()[-1].split("[", 1)[0])  # "__data_loc char[] path"
    return frozenset(names)


def detect_features(tracefs: Path) -> Features:
    exit_fields = tracepoint_fields(tracefs, "sched", "sched_process_exit") or frozenset()
    sock = tracepoint_fields(tracefs, "sock", "inet_sock_set_state") or frozenset()
    route = {"sport", "dport", "src"}
    cgroup = {"root", "id", "path"}
    return Features(
        has_group_dead="group_dead" in exit_fields,
        local_endpoints={"skaddr", "oldstate", "newstate", "sport", "saddr", "saddr_v6",
                         "protocol", "family"} <= sock,
        fib_ports=route <= (tracepoint_fields(tracefs, "fib", "fib_table_lookup") or set()),
        fib6_ports=route <= (tracepoint_fields(tracefs, "fib6", "fib6_table_lookup") or set()),
        cgroup_mkdir=all(cgroup <= (tracepoint_fields(tracefs, "cgroup", event) or set())
                         for event in ("cgroup_mkdir", "cgroup_rmdir")),
    )


# ---- decoding -------------------------------------------------------------------------------

def decode(chunk: bytes, comms: dict[bytes, str] | None = None) -> tuple[list[Record], int]:
    """Decode the committed records at the start of `chunk` (ring-buffer frames).

    Returns the records and how many bytes they used; decoding stops at the first frame still
    being written (busy) or cut off by the end of the chunk. `comms` caches comm decoding.
    """
    comms = {} if comms is None else comms
    out: list[Record] = []
    pos, end = 0, len(chunk)
    unpack_frame, unpack = FRAME.unpack_from, HEADER.unpack_from
    while pos + FRAME_HEADER <= end:
        (word,) = unpack_frame(chunk, pos)
        if word & BUSY:
            break
        size = word & LEN_MASK
        nxt = pos + ((size + FRAME_HEADER + 7) & ~7)
        if nxt > end:
            break
        if not word & DISCARD and size >= HEADER.size:
            h = unpack(chunk, pos + FRAME_HEADER)
            out.append(make_record(h, chunk, pos + FRAME_HEADER + HEADER.size, comms))
        pos = nxt
    return out, pos


def make_record(h: tuple[Any, ...], chunk: bytes, at: int, comms: dict[bytes, str]) -> Record:
    """The Record of header `h` (HEADER's fields) whose items start at `chunk[at]`."""
    raw_comm = h[H_COMM]
    comm = comms.get(raw_comm)
    if comm is None:
        comm = comms[raw_comm] = raw_comm.split(b"\0", 1)[0].decode("utf-8", "replace")
    lens = h[H_LEN0:H_LEN0 + 4]
    items: tuple[bytes, ...] = ()
    if lens != _NO_ITEMS:
        parts = []
        for n in lens:
            parts.append(chunk[at:at + n])
            at += n
        items = tuple(parts)
    return _new_record(Record, (h[H_KIND], h[H_NR], h[H_TS], h[H_CGROUP], h[H_RET],
                                h[H_ARG0:H_ARG0 + 6], h[H_TGID], h[H_TID], h[H_UID], h[H_GID],
                                h[H_CPU], comm, items))


_NO_ITEMS = (0, 0, 0, 0)
# NamedTuple's own __new__ is a Python function; tuple.__new__ builds the same object 3x faster.
_new_record = tuple.__new__


def encode(rec: Record, comm: bytes | None = None) -> bytes:
    """The ring-buffer frame the program would send for `rec` (tests and benchmarks build
    chunks with it); `comm` gives the raw 16 bytes when they are not `rec.comm` NUL-padded."""
    items = rec.items[:4]
    lens = [len(i) for i in items] + [0] * (4 - len(items))
    raw = comm if comm is not None else rec.comm.encode()[:15]
    body = HEADER.pack(rec.ts, rec.ret, *rec.args, rec.cgroup_id, rec.tgid, rec.tid, rec.uid,
                       rec.gid, raw, rec.kind, rec.nr, rec.cpu, *lens, 0) + b"".join(items)
    return FRAME.pack(len(body)) + b"\0" * 4 + body + b"\0" * (-len(body) % 8)


# ---- the ring buffer ------------------------------------------------------------------------

class RingReader:
    """Consume a BPF ring buffer map (BPF_MAP_TYPE_RINGBUF) through mmap.

    Layout (kernel/bpf/ringbuf.c): page 0 holds the consumer position (ours to write); from page
    1, the producer position page, then the data area mapped twice in a row, so a record that
    wraps around the end is still contiguous in our mapping.
    """

    def __init__(self, map_fd: int, size: int) -> None:
        if size <= 0 or size & (size - 1) or size % mmap.PAGESIZE:
            raise ProbeError(f"Ring buffer size {size} is not a power-of-two number of pages.")
        page = mmap.PAGESIZE
        self.size = size
        self.mask = size - 1
        self._data = page  # offset of the data area in the producer mapping
        self._cons = mmap.mmap(map_fd, page, mmap.MAP_SHARED,
                               mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        self._prod = mmap.mmap(map_fd, page + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ,
                               offset=page)
        # The consumer position must be published with one 8-byte store: struct.pack_into writes
        # it piecewise, and a kernel reading a torn value refuses reservations (false drops).
        self._cons_pos = ctypes.c_uint64.from_buffer(self._cons)
        self.bytes_read = 0

    def pending(self) -> int:
        """Bytes the kernel has reserved that we have not consumed."""
        prod = struct.unpack_from("<Q", self._prod, 0)[0]
        cons = struct.unpack_from("<Q", self._cons, 0)[0]
        return int(prod - cons)

    def read(self, max_bytes: int = 8 << 20) -> bytes:
        """A copy of the frames committed since the last read (at most about `max_bytes`).

        Call `consume(n)` with the bytes `decode` used before the next read.
        """
        cons = struct.unpack_from("<Q", self._cons, 0)[0]
        prod = struct.unpack_from("<Q", self._prod, 0)[0]
        n = min(prod - cons, max_bytes, self.size)
        if n <= 0:
            return b""
        start = self._data + (cons & self.mask)
        return self._prod[start:start + n]

    def consume(self, n: int) -> None:
        if n:
            self._cons_pos.value += n
            self.bytes_read += n

    def close(self) -> None:
        del self._cons_pos  # the mmap cannot close while a ctypes view exports its buffer
        self._cons.close()
        self._prod.close()


class CgroupMap:
    """The program's cgroup_map: cgroup-v2 id -> verdict (capture/cgroup_filter.py)."""

    def __init__(self, table: Any) -> None:
        self._table = table

    def get(self, key: int, default: int | None = None, /) -> int | None:
        leaf = self._table.get(self._table.Key(key))
        return int(leaf.value) if leaf is not None else default

    def __setitem__(self, key: int, value: int, /) -> None:
        self._table[self._table.Key(key)] = self._table.Leaf(value)

    def items(self) -> dict[int, int]:
        return {int(k.value): int(v.value) for k, v in self._table.items()}


class Probe:
    """The loaded capture program; use as a context manager (detaches on exit)."""

    def __init__(self, options: ProgramOptions, text: str | None = None) -> None:
        self.options = options
        self.text = text if text is not None else render(options)
        self._bpf: Any = None
        self.ring: RingReader | None = None

    def __enter__(self) -> Probe:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        try:
            from bcc import BPF
        except ImportError as exc:
            raise ProbeError(
                f"Cannot import BCC ({exc}). Install python3-bpfcc and use a virtualenv created "
                "with --system-site-packages (scripts/setup.sh does both)."
            ) from None
        try:
            self._bpf = BPF(text=self.text.encode(), cflags=BCC_CFLAGS)
        except Exception as exc:  # BCC raises bare Exception for compile, load and attach
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise ProbeError(
                f"The capture program failed to compile, load or attach: {first}. "
                "Run `capture doctor` to see what this machine lacks."
            ) from None
        table = self._bpf[b"events"]
        self.ring = RingReader(table.map_fd, self.options.ringbuf_pages * mmap.PAGESIZE)

    def counters(self) -> dict[str, int]:
        """The kernel-side drop counters, summed over CPUs."""
        assert self._bpf is not None, "Probe.start() first"
        table = self._bpf[b"counters"]
        return {name: int(table.sum(table.Key(i)).value) for name, i in COUNTERS.items()}

    def cgroup_map(self) -> CgroupMap:
        """The program's cgroup verdicts (rendered with `cgroup_filter`)."""
        assert self._bpf is not None, "Probe.start() first"
        if not self.options.cgroup_filter:
            raise ProbeError("The capture program was rendered without the cgroup filter.")
        return CgroupMap(self._bpf[b"cgroup_map"])

    def close(self) -> None:
        if self.ring is not None:
            self.ring.close()
            self.ring = None
        if self._bpf is not None:
            self._bpf.cleanup()
            self._bpf = None
