"""The capture loop's hot path: ring-buffer bytes to rows without a Record per event.

`feed_chunk(en, chunk, batch)` does what `en.feed(decode(chunk)[0], batch)` does. Most records
of a busy capture are `openat` and `close` calls of a few threads on a few files, and for those
both the row and the change to the fd table follow from a handful of values. Three ways, the
first that applies:

1. `batch.seen`: the same record seen before in this batch, byte for byte but its timestamp
   (same thread, cpu, arguments, path, result) -> what it did: the Proc it was applied to, its
   row kind (capture/rows.py), and its one change to the fd table (the opened fd added, the
   closed fd removed). It holds while the process table still maps the tgid to that same Proc
   object (a Proc is replaced on every change: execve, chdir, setuid, exit, reparenting...) and,
   for a close, the fd still has the FdInfo it had. Replaying it is two appends and the change.
2. `batch.views` (filled by `Enricher.apply`: who emitted a record, the header's cgroup id,
   tgid, tid, uid, gid and raw comm, 40 contiguous bytes -> the Proc the enricher ended with,
   the index of its process columns in the batch, and its tgid) and `Memos`, across batches: an
   `openat` by (ret, dirfd, flags, mode, path, and the cwd when the path is relative to it), a
   `close` by (fd, ret, the FdInfo the fd had) -> the Shape the handler made. This catches the
   records that differ only in pointers (a path in a new buffer) or come in a new batch.
3. The general way: a Record, `Enricher.apply`, the syscall's handler.

Way 2 stores what it found (or what way 3 made of a record whose view held before the handler
ran, so that its key saw the state the handler saw) for ways 1 and 2. When MISS_STREAK records
in a row were new to both (a tree copy: every file a new path), the next BYPASS records take way
3 directly: trying the others cost a new record ~2 us more than way 3 alone. When the capture writes
no rows for `close` (`--rules`), a close is just its change to the fd table. With a container
selection everything takes the general way. tests/test_fast_feed.py checks that the ways give
the same table.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

from capture.bpf_render import SYSCALL_BY_NAME
from capture.probe import (
    BUSY,
    DISCARD,
    FRAME,
    FRAME_HEADER,
    HEADER,
    LEN_MASK,
    REC_SYSCALL,
    make_record,
)
from capture.render_args import AT_FDCWD
from capture.rows import RowBatch, Shape

if TYPE_CHECKING:
    from capture.enrich import Enricher

NR_OPENAT = SYSCALL_BY_NAME["openat"].nr
NR_CLOSE = SYSCALL_BY_NAME["close"].nr
_MEMOIZED = frozenset({NR_OPENAT, NR_CLOSE})
MEMO_ENTRIES = 1 << 14  # per syscall (keys hold paths: a few MB); a full memo starts over
SEEN_ENTRIES = 1 << 12  # records remembered per batch (way 1)
MISS_STREAK = 256
BYPASS = 4096
_ANY = object()  # way 1: the fd may hold anything
_CLOSED = object()  # way 1: the record closed the fd
_AT_FDCWD_U32 = AT_FDCWD & 0xFFFFFFFF  # the dirfd argument is a raw register: compare 32 bits
# A frame's length word, its padding and the record's header, in one unpack, with the fields
# saying who emitted the record (cgroup_id, tgid, tid, uid, gid, comm: contiguous in struct
# rec_hdr) as one 40-byte string: the key of its process view.
_FRAMED = struct.Struct("<I4xQq6Q40sHHH4HH")
_HEAD = struct.Struct("<I4xQ")  # the length word and the timestamp (way 1)
_WHO = struct.Struct("<QIIII16s")
assert _FRAMED.size == FRAME_HEADER + HEADER.size
_F_TS, _F_RET, _F_ARG0, _F_WHO, _F_KIND, _F_NR, _F_CPU, _F_LEN0 = 1, 2, 3, 9, 10, 11, 12, 13
_F_FLAGS, _F_MODE = _F_ARG0 + 2, _F_ARG0 + 3  # openat(dirfd, path, flags, mode)


def header(f: tuple[Any, ...]) -> tuple[Any, ...]:
    """HEADER's fields from a _FRAMED tuple."""
    return f[_F_TS:_F_WHO] + _WHO.unpack(f[_F_WHO]) + f[_F_KIND:]


class Memos:
    """Shapes of `openat` and `close` records seen before (see the module docstring)."""

    def __init__(self) -> None:
        self.openat: dict[tuple[Any, ...], Shape] = {}
        self.close: dict[tuple[int, int, int], Shape] = {}
        # Ways 1 and 2 cost a record that is new (a tar's: every file a new path) ~2 us more
        # than way 3 alone. After MISS_STREAK records in a row that neither way knew, the next
        # BYPASS records go to way 3 directly (storing nothing); then the ways are tried again.
        self.misses = 0
        self.bypass = 0

    def store(self, memo: dict[Any, Shape], key: Any, shape: Shape) -> None:
        if len(memo) >= MEMO_ENTRIES:
            memo.clear()
        memo[key] = shape


def feed_chunk(en: Enricher, chunk: bytes, batch: RowBatch) -> int:
    """Apply the committed records at the start of `chunk` (ring-buffer frames) to `en` and
    `batch`; returns the bytes they used (decoding stops as `probe.decode` does)."""
    procs, tables, seen, memos = en.procs.procs, en.fds.tables, batch.seen, en.memos
    offset, fast = en.offset, en.selection is None
    add_time, add_kind = batch.times.append, batch.kinds.append
    unpack_head, head_size, header_size = _HEAD.unpack_from, _HEAD.size, HEADER.size
    pos, end = 0, len(chunk)
    misses, bypass = memos.misses, memos.bypass  # locals in the loop: cheaper than attributes
    while pos + FRAME_HEADER <= end:
        word, ts = unpack_head(chunk, pos) if pos + head_size <= end else (
            FRAME.unpack_from(chunk, pos)[0], 0)
        if word & BUSY:
            break
        size = word & LEN_MASK
        nxt = pos + ((size + FRAME_HEADER + 7) & ~7)
        if nxt > end:
            break
        at, pos = pos, nxt
        if word & DISCARD or size < header_size:
            continue
        if bypass:
            bypass -= 1
            _general(en, batch, chunk, at)
            continue
        # Way 1 (the hot path): the record but its timestamp, seen before in this batch.
        raw = chunk[at + head_size:at + FRAME_HEADER + size]
        did = seen.get(raw) if fast else None
        if did is not None:
            proc, tgid, kind, fd, before, after = did
            table = tables.get(tgid)
            if (procs.get(tgid) is proc and table is not None
                    and (before is _ANY or table.get(fd) is before)):
                if after is _CLOSED:
                    table.pop(fd, None)
                elif after is not None:
                    table[fd] = after
                if kind is not None:
                    add_time(ts + offset)
                    add_kind(kind)
                else:
                    en.table_only += 1
                misses = 0
                continue
        if _record(en, batch, chunk, at, raw if fast and len(seen) < SEEN_ENTRIES else None):
            misses = 0
        else:
            misses += 1
            if misses >= MISS_STREAK:
                misses, bypass = 0, BYPASS
    memos.misses, memos.bypass = misses, bypass
    return pos


def _general(en: Enricher, batch: RowBatch, chunk: bytes, at: int) -> None:
    """Way 3 alone for the record framed at `chunk[at]`."""
    f = _FRAMED.unpack_from(chunk, at)
    en.apply(make_record(header(f), chunk, at + _FRAMED.size, en.comms), batch, f[_F_WHO])


def _record(en: Enricher, batch: RowBatch, chunk: bytes, at: int, raw: bytes | None) -> bool:
    """Ways 2 and 3 for the record framed at `chunk[at]`; with `raw`, what it did is stored
    for way 1 under that key. Returns whether way 2 knew it."""
    f = _FRAMED.unpack_from(chunk, at)
    at += _FRAMED.size
    nr = f[_F_NR]
    view = batch.views.get(f[_F_WHO]) if nr in _MEMOIZED and f[_F_KIND] == REC_SYSCALL \
        else None
    tgid = view[2] if view is not None else 0
    table = en.fds.tables.get(tgid)
    if view is None or table is None or en.procs.procs.get(tgid) is not view[0] \
            or en.selection is not None:
        en.apply(make_record(header(f), chunk, at, en.comms), batch, f[_F_WHO])
        return False
    proc, ret = view[0], f[_F_RET]
    memo: dict[Any, Shape] | None = None
    key: Any = None
    before: object
    change: object
    if nr == NR_CLOSE:
        fd = f[_F_ARG0]
        before = table.get(fd)
        change = _CLOSED if ret == 0 else None
        if not en.writes("close"):
            if change is _CLOSED:
                table.pop(fd, None)
            en.table_only += 1
            if raw is not None:
                batch.seen[raw] = (proc, tgid, None, fd, _ANY, change)
            return True
        memo, key = en.memos.close, (fd, ret, id(before))
    else:
        path = chunk[at:at + f[_F_LEN0]]
        fd, dirfd, before, change = ret, f[_F_ARG0], _ANY, None
        if path[:1] == b"/":
            key = (ret, dirfd, f[_F_FLAGS], f[_F_MODE], path, None)
        elif dirfd & 0xFFFFFFFF == _AT_FDCWD_U32:
            key = (ret, dirfd, f[_F_FLAGS], f[_F_MODE], path, proc.cwd)
        else:
            raw = None  # relative to a dirfd: the dirfd's FdInfo would be part of the key
        memo = en.memos.openat if key is not None else None
    shape = memo.get(key) if memo is not None else None
    hit = shape is not None
    if shape is not None:
        if nr == NR_CLOSE:
            if ret == 0:
                table.pop(fd, None)
        elif ret >= 0:
            table[ret] = shape.fd  # type: ignore[assignment]
        batch.times.append(f[_F_TS] + en.offset)
        batch.kinds.append(batch.kind(f[_F_CPU], view[1], shape))
    else:
        rows = len(batch)
        en.apply(make_record(header(f), chunk, at, en.comms), batch, f[_F_WHO])
        if memo is None or len(batch) != rows + 1:
            return False
        shape = batch.last_shape()
        en.memos.store(memo, key, shape)
    if raw is not None:
        if nr != NR_CLOSE:
            change = shape.fd if ret >= 0 else None
        batch.seen[raw] = (proc, tgid, batch.kinds[-1], fd, before, change)
    return hit
