"""The capture loop's hot path: ring-buffer bytes to rows without a Record per event.

`feed_chunk(en, chunk, batch)` does what `en.feed(decode(chunk)[0], batch)` does. Most records
of a busy capture are `openat` and `close` calls of a few threads on a few files, and for those
both the row and the change to the fd table follow from a handful of values. So:

- `batch.views`, filled by `Enricher.apply`: who emitted a record (the header's cgroup id, tgid,
  tid, uid, gid and raw comm, one slice of the decoded header) -> the Proc the enricher ended
  with and the index of its process columns in the batch. A view holds while the process table
  still maps the tgid to that same Proc object (a Proc is replaced on every change: execve,
  chdir, setuid, exit, reparenting...).
- `Memos`: an `openat` by (ret, dirfd, flags, mode, path, and the cwd when the path is relative
  to it), a `close` by (fd, ret, the FdInfo the fd had) -> the Shape the handler made. Replaying
  one is appending the row and making the handler's one change to the fd table (the opened fd
  added, the closed fd removed).

A record without a valid view and memo entry takes the general way (a Record, `Enricher.apply`,
the syscall's handler), which fills them for the next ones; a memo entry is only stored when the
view held before the handler ran, so its key saw the state the handler saw. With a container
selection everything takes the general way. tests/test_fast_feed.py checks that both ways give
the same table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from capture.bpf_render import SYSCALL_BY_NAME
from capture.probe import (
    BUSY,
    DISCARD,
    FRAME,
    FRAME_HEADER,
    H_ARG0,
    H_CGROUP,
    H_KIND,
    H_LEN0,
    H_NR,
    H_RET,
    H_TGID,
    H_WHO_END,
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
_H_FLAGS, _H_MODE = H_ARG0 + 2, H_ARG0 + 3  # openat(dirfd, path, flags, mode)


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
    shape_index, add_shape = batch.shape_index, batch.add_shape
    add_time, add_cpu = batch.times.append, batch.cpus.append
    add_proc, add_kind = batch.proc_keys.append, batch.shape_keys.append
    unpack_frame, unpack, header_size = FRAME.unpack_from, HEADER.unpack_from, HEADER.size
    pos, end = 0, len(chunk)
    while pos + FRAME_HEADER <= end:
        (word,) = unpack_frame(chunk, pos)
        if word & BUSY:
            break
        size = word & LEN_MASK
        nxt = pos + ((size + FRAME_HEADER + 7) & ~7)
        if nxt > end:
            break
        at, pos = pos + FRAME_HEADER, nxt
        if word & DISCARD or size < header_size:
            continue
        h = unpack(chunk, at)
        at += header_size
        memo: dict[Any, Shape] | None = None
        key: Any = None
        nr = h[H_NR]
        if fast and nr in _MEMOIZED and h[H_KIND] == REC_SYSCALL:
            view = views.get(h[H_CGROUP:H_WHO_END])
            table = tables.get(h[H_TGID])
            if view is not None and table is not None and procs.get(h[H_TGID]) is view[0]:
                ret = h[H_RET]
                shape: Shape | None
                if nr == NR_CLOSE:
                    fd = h[H_ARG0]
                    key = (fd, ret, id(table.get(fd)))
                    shape = closes.get(key)
                    if shape is not None and ret == 0:
                        table.pop(fd, None)
                    memo = closes
                else:
                    path = chunk[at:at + h[H_LEN0]]
                    dirfd = h[H_ARG0]
                    if path[:1] == b"/":
                        key = (ret, dirfd, h[_H_FLAGS], h[_H_MODE], path, None)
                    elif dirfd & 0xFFFFFFFF == _AT_FDCWD_U32:
                        key = (ret, dirfd, h[_H_FLAGS], h[_H_MODE], path, view[0].cwd)
                    shape = opens.get(key) if key is not None else None
                    if shape is not None and ret >= 0:
                        table[ret] = shape.fd  # type: ignore[assignment]
                    memo = opens if key is not None else None
                if shape is not None:
                    index = shape_index.get(shape)
                    add_time(h[0] + offset)
                    add_cpu(h[16])
                    add_proc(view[1])
                    add_kind(add_shape(shape) if index is None else index)
                    continue
        rows = len(batch)
        en.apply(make_record(h, chunk, at, en.comms), batch, h[H_CGROUP:H_WHO_END])
        if memo is not None and len(batch) == rows + 1:
            memos.store(memo, key, batch.shapes[batch.shape_keys[-1]])
    return pos
