"""The capture loop's fast path (capture/fast_feed.py) gives the rows the general path gives.

Each test encodes records as the ring buffer holds them, feeds the bytes to
`Enricher.feed_chunk` in pieces cut anywhere (mid-frame too, as the ring reader may), and
compares the table with `Enricher.feed` of the same records into a fresh enricher: state changes
that must invalidate a process view or a memo entry (fd reuse, chdir, execve, exit and pid reuse,
uid and cgroup changes, a new comm, a fork) are all in the sequence.
"""

from __future__ import annotations

import errno
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from capture import fast_feed
from capture.bpf_render import SYSCALL_BY_NAME
from capture.enrich import Enricher
from capture.probe import REC_EXEC_ARGS, REC_EXIT, REC_FORK, REC_SYSCALL, Record, encode
from capture.proc_table import UserDb
from capture.render_args import AT_FDCWD
from capture.rows import RowBatch

CWD = AT_FDCWD & 0xFFFFFFFFFFFFFFFF  # the dirfd argument as the register holds it
O_RDONLY, O_WRONLY, O_CREAT, O_DIRECTORY = 0, 0o1, 0o100, 0o200000


def fake_proc(root: Path, pid: int, ppid: int, comm: str, cwd: str) -> None:
    d = root / str(pid)
    (d / "fd").mkdir(parents=True)
    rest = ["S", str(ppid), str(pid), str(pid), "0"] + ["0"] * 14 + ["100"] + ["0"] * 20
    (d / "stat").write_text(f"{pid} ({comm}) " + " ".join(rest))
    (d / "cmdline").write_bytes(comm.encode() + b"\0")
    (d / "status").write_text(f"Name:\t{comm}\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nNSpid:\t{pid}\n")
    (d / "cgroup").write_text("0::/\n")
    os.symlink(cwd, d / "cwd")
    os.symlink(f"/usr/bin/{comm}", d / "exe")


class Records:
    """Builds a record sequence with increasing timestamps; `stable`: on one cpu, the path
    buffers of opens at one address (a loop reusing its buffer), else at a new one each time
    and on alternating cpus."""

    def __init__(self, stable: bool = False) -> None:
        self.out: list[Record] = []
        self.stable = stable

    def add(self, kind: int, nr: int, tgid: int, *, ret: int = 0, args: tuple[int, ...] = (),
            items: tuple[bytes, ...] = (), tid: int | None = None, comm: str = "bash",
            uid: int = 0, cgroup: int = 0) -> None:
        full = (tuple(args) + (0,) * 6)[:6]
        self.out.append(Record(kind, nr, 1000 * len(self.out), cgroup, ret,
                               full, tgid, tid or tgid,  # type: ignore[arg-type]
                               uid, 0, 0 if self.stable else len(self.out) % 2, comm, items))

    def syscall(self, name: str, tgid: int, **kw: Any) -> None:
        self.add(REC_SYSCALL, SYSCALL_BY_NAME[name].nr, tgid, **kw)

    def open(self, tgid: int, path: str, ret: int, dirfd: int = CWD, flags: int = O_RDONLY,
             **kw: Any) -> None:
        buffer = 0x7FFF0000 + (0 if self.stable else len(self.out))
        self.syscall("openat", tgid, ret=ret, args=(dirfd, buffer, flags,
                                                    0o644 if flags & O_CREAT else 0),
                     items=(path.encode() + b"\0",), **kw)

    def close(self, tgid: int, fd: int, ret: int = 0, **kw: Any) -> None:
        self.syscall("close", tgid, ret=ret, args=(fd,), **kw)

    def loop(self, tgid: int, path: str, fd: int = 3, times: int = 3, dirfd: int = CWD,
             **kw: Any) -> None:
        for _ in range(times):
            self.open(tgid, path, fd, dirfd=dirfd, **kw)
            self.close(tgid, fd, **kw)


def sequence(stable: bool = False) -> list[Record]:
    r = Records(stable)
    r.loop(50, "/etc/hostname")
    r.close(50, 3, ret=-errno.EBADF)
    r.close(50, 3, ret=-errno.EBADF)
    r.loop(50, "notes.txt")  # relative to the cwd
    r.syscall("chdir", 50, items=(b"/tmp\0",))
    r.loop(50, "notes.txt")  # the same key but another cwd
    r.open(50, "/srv", 5, flags=O_DIRECTORY)
    r.loop(50, "x", fd=6, dirfd=5)  # relative to a dirfd: always the general way
    for _ in range(3):
        r.open(50, "/missing", -errno.ENOENT)
    for _ in range(3):  # fd 4 reused for other files: close sees another FdInfo each time
        r.open(50, "/a", 4, flags=O_WRONLY | O_CREAT)
        r.close(50, 4)
        r.open(50, "/b", 4)
        r.close(50, 4)
    r.loop(50, "/etc/hostname", tid=51)  # another thread
    r.loop(50, "/etc/hostname", comm="python")  # prctl(PR_SET_NAME)
    r.loop(50, "/etc/hostname", uid=1000)  # ids changed without a recorded syscall
    r.loop(50, "/etc/hostname", cgroup=77)  # moved to another cgroup
    r.open(50, "/etc/passwd", 7)
    r.add(REC_FORK, 0, 50, args=(60, 50))
    r.close(60, 7)  # the child's copy of the parent's fd 7
    r.loop(60, "/etc/hostname")
    r.close(50, 7)
    r.add(REC_EXEC_ARGS, SYSCALL_BY_NAME["execve"].nr, 50, items=(b"/bin/cat\0", b"cat\0x\0"))
    r.syscall("execve", 50, comm="cat")
    r.loop(50, "/etc/hostname", comm="cat")  # the same thread, a new program
    r.add(REC_EXIT, 0, 50, args=(50, 1, 0, 0, 0, 0), comm="cat")
    r.loop(50, "/etc/hostname")  # pid 50 again: a new process read from /proc
    return r.out


def enricher(root: Path, rows: frozenset[str] | None = None) -> Enricher:
    fake_proc(root, 1, 0, "init", "/")
    fake_proc(root, 50, 1, "bash", "/home/u")
    en = Enricher(0, proc_root=root, users=UserDb({0: "root", 1000: "u"}, {0: "root"}),
                  row_syscalls=rows)
    en.procs.boot_ns = 0  # the same process start times in both enrichers
    en.snapshot()
    return en


def rows(tables: list[pa.Table]) -> list[dict[str, Any]]:
    table = pa.concat_tables(tables)
    at = table.schema.get_field_index("evt.time")
    return table.set_column(at, "evt.time", table.column(at).cast(pa.int64())).to_pylist()


def general(root: Path, groups: list[list[Record]], rows_of: frozenset[str] | None = None,
            table_only: list[int] | None = None) -> list[dict[str, Any]]:
    en, tables = enricher(root, rows_of), []
    for group in groups:
        batch = RowBatch()
        en.feed(group, batch)
        tables.append(batch.to_table())
    if table_only is not None:
        table_only.append(en.table_only)
    return rows(tables)


def counting(fn: Callable[..., None]) -> tuple[Callable[..., None], list[int]]:
    """`fn` wrapped to count its calls, and the count (a one-item list)."""
    calls = [0]

    def counted(*args: Any) -> None:
        calls[0] += 1
        fn(*args)

    return counted, calls


def fast(root: Path, groups: list[list[Record]], seed: int,
         rows_of: frozenset[str] | None = None, table_only: list[int] | None = None
         ) -> tuple[list[dict[str, Any]], int]:
    """The rows, and how many records took the general way."""
    en, tables, cuts = enricher(root, rows_of), [], random.Random(seed)
    en.apply, general_way = counting(en.apply)  # type: ignore[method-assign]
    for group in groups:
        data, batch, pos = b"".join(encode(r) for r in group), RowBatch(), 0
        while pos < len(data):
            end = min(len(data), pos + cuts.randrange(1, 600))
            pos += en.feed_chunk(data[pos:end], batch)
        tables.append(batch.to_table())
    if table_only is not None:
        table_only.append(en.table_only)
    return rows(tables), general_way[0]


@pytest.mark.parametrize("stable", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_fast_path_rows_equal_the_general_path(tmp_path: Path, seed: int, stable: bool) -> None:
    records = sequence(stable)
    whole = general(tmp_path / "a", [records])
    got, general_way = fast(tmp_path / "b", [records], seed)
    assert got == whole
    assert general_way < len(records) * 2 // 3  # most records took the fast path


@pytest.mark.parametrize("stable", [False, True])
def test_views_and_memos_hold_across_batches(tmp_path: Path, stable: bool) -> None:
    records = sequence(stable)
    groups = [records[i:i + 7] for i in range(0, len(records), 7)]
    assert fast(tmp_path / "b", groups, 0)[0] == general(tmp_path / "a", groups)


def test_full_memos_start_over(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fast_feed, "MEMO_ENTRIES", 2)
    monkeypatch.setattr(fast_feed, "SEEN_ENTRIES", 3)
    records = sequence(stable=True)
    assert fast(tmp_path / "b", [records], 1)[0] == general(tmp_path / "a", [records])


def test_a_run_of_new_records_skips_ways_1_and_2_for_a_while(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tar's records are all new: after MISS_STREAK of them the next BYPASS go straight to
    the general way, storing nothing; the rows are the same, and repeats hit again after."""
    monkeypatch.setattr(fast_feed, "MISS_STREAK", 4)
    monkeypatch.setattr(fast_feed, "BYPASS", 6)
    counted, bypassed = counting(fast_feed._general)
    monkeypatch.setattr(fast_feed, "_general", counted)
    r = Records(stable=True)
    for i in range(20):  # every record new
        r.open(50, f"/data/f{i}", 3)
        r.close(50, 3)
    r.loop(50, "/etc/hostname", times=20)  # then one file over and over
    records = r.out
    got, applied = fast(tmp_path / "b", [records], 0)
    assert got == general(tmp_path / "a", [records])
    assert bypassed[0] >= 12  # two streaks of 4 at least, each followed by 6 bypassed
    # the 40 new records and at most a bypass and the first loop's misses took the general way
    assert 40 <= applied <= 40 + 6 + 2


def test_table_only_syscalls_change_the_tables_without_rows(tmp_path: Path) -> None:
    # --rules: close and chdir keep the tables right but are not written.
    rows_of = frozenset(SYSCALL_BY_NAME) - {"close", "chdir"}
    records = sequence(stable=True)
    counts: list[int] = []
    whole = general(tmp_path / "a", [records], rows_of, counts)
    got, general_way = fast(tmp_path / "b", [records], 2, rows_of, counts)
    assert got == whole
    closes = sum(r.nr == SYSCALL_BY_NAME["close"].nr for r in records)
    assert counts == [closes + 1] * 2  # every close and the chdir: applied, not written
    assert general_way < len(records) // 2
    assert {r["evt.type"] for r in got} == {"openat", "execve"}
    assert "/tmp/notes.txt" in {r["fd.name"] for r in got}  # the chdir moved the cwd


def test_a_close_without_a_row_still_closes(tmp_path: Path) -> None:
    r = Records(stable=True)
    r.loop(50, "/etc/hostname", times=4)
    r.syscall("dup2", 50, ret=-errno.EBADF, args=(3, 9))  # fd 3 is closed: nothing to name
    rows_of = frozenset(SYSCALL_BY_NAME) - {"close"}
    got, _ = fast(tmp_path, [r.out], 0, rows_of)
    assert [x["evt.type"] for x in got] == ["openat"] * 4 + ["dup2"]
    assert got[-1]["fd.name"] is None


def test_a_container_selection_takes_the_general_way(tmp_path: Path) -> None:
    en = enricher(tmp_path)
    en.selection = object()  # type: ignore[assignment]  # any selection turns the fast path off
    calls = []
    en.apply = lambda *args: calls.append(args)  # type: ignore[method-assign]
    data = b"".join(encode(r) for r in sequence())
    assert en.feed_chunk(data, RowBatch()) == len(data)
    assert len(calls) == len(sequence())
