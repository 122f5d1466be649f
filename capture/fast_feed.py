"""The capture loop's hot path: ring-buffer bytes to rows without a Record per event.

`feed_chunk(en, chunk, batch)` does what `en.feed(decode(chunk)[0], batch)` does. Most records
of a busy capture are `openat` and `close` calls of a few threads on a few files, and for those
both the row and the change to the fd table follow from a handful of values. So:

- `batch.views`, filled by `Enricher.apply`: who emitted a record (the header's cgroup id, tgid,
  tid, uid, gid and raw comm: 40 contiguous bytes) -> the Proc the enricher ended with, the
  index of its process columns in the batch, and its tgid. A view holds while the process table
  still maps the tgid to that same Proc object (a Proc is replaced on every change: execve,
  chdir, setuid, exit, reparenting...).
- `Memos`: an `openat` by (ret, dirfd, flags, mode, path, and the cwd when the path is relative
  to it), a `close` by (fd, ret, the FdInfo the fd had) -> the Shape the handler made. Replaying
  one is appending the row and making the handler's one change to the fd table (the opened fd
  added, the closed fd removed).

A record without a valid view and memo entry takes the general way (a Record, `Enricher.apply`,
the syscall's handler), which fills them for the next ones; a memo entry is only stored when the
view held before the handler ran, so its key saw the state the handler saw (and only for a
record that made a row). When the capture writes no rows for `close` (`--rules`), a close is
just its change to the fd table. With a container
selection everything takes the general way. tests/test_fast_feed.py checks that both ways give
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
MEMO_ENTRIES = 1 << 16  # per syscall; a full memo starts over
_AT_FDCWD_U32 = AT_FDCWD & 0xFFFFFFFF  # the dirfd argument is a raw register: compare 32 bits
# A frame's length word, its padding and the record's header, in one unpack, with the fields
# saying who emitted the record (cgroup_id, tgid, tid, uid, gid, comm: contiguous in struct
# rec_hdr) as one 40-byte string: the key of its process view.
_FRAMED = struct.Struct("<I4xQq6Q40sHHH4HH")
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

    def store(self, memo: dict[Any, Shape], key: Any, shape: Shape) -> None:
        if len(memo) >= MEMO_ENTRIES:
            memo.clear()
        memo[key] = shape


def feed_chunk(en: Enricher, chunk: bytes, batch: RowBatch) -> int:
    """Apply the committed records at the start of `chunk` (ring-buffer frames) to `en` and
    `batch`; returns the bytes they used (decoding stops as `probe.decode` does)."""
    procs, tables, views = en.procs.procs, en.fds.tables, batch.views
    memos, opens, closes = en.memos, en.memos.openat, en.memos.close
    offset, fast = en.offset, en.selection is None
    close_rows = en.writes("close")
    shape_index, add_shape = batch.shape_index, batch.add_shape
    add_time, add_cpu = batch.times.append, batch.cpus.append
    add_proc, add_kind = batch.proc_keys.append, batch.shape_keys.append
    unpack_frame, unpack = FRAME.unpack_from, _FRAMED.unpack_from
    pos, end = 0, len(chunk)
    while pos + FRAME_HEADER <= end:
        # One unpack for the frame's length word and the header behind it (f[1:] = HEADER's
        # fields), when the chunk holds that many bytes.
        f = unpack(chunk, pos) if pos + _FRAMED.size <= end else unpack_frame(chunk, pos)
        word = f[0]
        if word & BUSY:
            break
        size = word & LEN_MASK
        nxt = pos + ((size + FRAME_HEADER + 7) & ~7)
        if nxt > end:
            break
        at, pos = pos + _FRAMED.size, nxt
        if word & DISCARD or size < HEADER.size:
            continue
        memo: dict[Any, Shape] | None = None
        key: Any = None
        nr = f[_F_NR]
        if fast and nr in _MEMOIZED and f[_F_KIND] == REC_SYSCALL:
            view = views.get(f[_F_WHO])
            if view is not None and procs.get(view[2]) is view[0]:
                table = tables.get(view[2])
                ret = f[_F_RET]
                shape: Shape | None = None
                if table is None:
                    pass
                elif nr == NR_CLOSE and not close_rows:
                    if ret == 0:  # the table's change is all a close without a row makes
                        table.pop(f[_F_ARG0], None)
                    en.table_only += 1
                    continue
                elif nr == NR_CLOSE:
                    fd = f[_F_ARG0]
                    key = (fd, ret, id(table.get(fd)))
                    shape = closes.get(key)
                    if shape is not None and ret == 0:
                        table.pop(fd, None)
                    memo = closes
                else:
                    path = chunk[at:at + f[_F_LEN0]]
                    dirfd = f[_F_ARG0]
                    if path[:1] == b"/":
                        key = (ret, dirfd, f[_F_FLAGS], f[_F_MODE], path, None)
                    elif dirfd & 0xFFFFFFFF == _AT_FDCWD_U32:
                        key = (ret, dirfd, f[_F_FLAGS], f[_F_MODE], path, view[0].cwd)
                    if key is not None:
                        shape = opens.get(key)
                        if shape is not None and ret >= 0:
                            table[ret] = shape.fd  # type: ignore[assignment]
                        memo = opens
                if shape is not None:
                    index = shape_index.get(shape)
                    add_time(f[_F_TS] + offset)
                    add_cpu(f[_F_CPU])
                    add_proc(view[1])
                    add_kind(add_shape(shape) if index is None else index)
                    continue
        rows = len(batch)
        en.apply(make_record(header(f), chunk, at, en.comms), batch, f[_F_WHO])
        if memo is not None and len(batch) == rows + 1:
            memos.store(memo, key, batch.shapes[batch.shape_keys[-1]])
    return pos
