"""Compact batches (capture/compact.py) as a capture spools them, built by hand: process views
whose ancestor lists differ in length between columns, hold empty and null lists and null
elements; shapes with columns null in every row; events of random kinds."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pyarrow as pa

from capture import compact
from capture.record import Segment
from schemas.trace import SOURCE_LIVE, TraceMeta

PROCS: dict[str, list[Any]] = {
    "proc.pid": [10, 20, 30, 40],
    "proc.name": ["bash", "cat", None, "sshd"],
    "proc.cmdline": ["bash -i", "cat /etc/hostname", None, "sshd: root"],
    "proc.aname": [["bash", "init"], None, ["cat", "bash", "sshd", "init"], []],
    "proc.apid": [[10, 1], [20, 1], [30, 10, 5, 1], [40]],
    "proc.aexe": [["/bin/bash", None], [], ["/bin/cat", "/bin/bash", "/usr/sbin/sshd", None],
                  ["/usr/sbin/sshd"]],
    "proc.aexepath": [["/bin/bash", "/sbin/init"], ["/bin/cat", "/sbin/init"],
                      ["/bin/cat", "/bin/bash", "/usr/sbin/sshd", "/sbin/init"], ["/a"]],
    "container.id": ["host"] * 4,
    compact.START_NS: [1_000, None, 3_000, 4_000],
}
SHAPES: dict[str, list[Any]] = {
    "evt.type": ["close", "openat", "execve"],
    "evt.category": ["file", "file", "process"],
    "evt.dir": ["<"] * 3,
    "evt.rawres": [0, -9, 0],
    "evt.res": ["SUCCESS", "EBADF", "SUCCESS"],
    "evt.failed": [False, True, False],
    "evt.args": ["fd=3(/etc/hostname) ", "fd=-9(EBADF) ", "filename=/bin/cat "],
    "evt.arg.fd": ["3", None, None],
    "fd.num": [3, None, None],
    "fd.name": ["/etc/hostname", None, None],
    "fd.type": ["file", None, None],
}
TIME0 = 1_700_000_000_000_000_000


def _columns(values: dict[str, list[Any]], typ: pa.StructType) -> dict[str, pa.Array]:
    return {name: pa.array(column, typ.field(name).type) for name, column in values.items()}


def compact_batch(first_num: int, events: int, seed: int) -> pa.RecordBatch:
    """A compact batch of `events` events numbered from `first_num`."""
    rnd = random.Random(seed)
    kinds = [(cpu, p, s) for cpu in (0, 1) for p in range(4) for s in range(3)]
    used = sorted(rnd.sample(range(len(kinds)), 9))
    cpus, procs, shapes = zip(*(kinds[k] for k in used), strict=True)
    evt_time = compact.EVENT_TYPE.field("evt.time").type
    return compact.pack(
        first_num,
        {"evt.time": pa.array([TIME0 + first_num + i for i in range(events)], evt_time),
         compact.KIND_KEY: pa.array([rnd.randrange(len(used)) for _ in range(events)],
                                    pa.int32())},
        {"evt.cpu": pa.array(cpus, compact.KIND_TYPE.field("evt.cpu").type),
         compact.PROC_KEY: pa.array(procs, pa.int32()),
         compact.SHAPE_KEY: pa.array(shapes, pa.int32())},
        _columns(PROCS, compact.PROC_TYPE), _columns(SHAPES, compact.SHAPE_TYPE))


META = TraceMeta(source=SOURCE_LIVE, hostname="h", kernel="6.1",
                 options={"rotate_seconds": 1.0, "syscalls": ["close", "openat"]})


def write_spool(path: Path, sizes: list[int], finished: bool = True) -> Path:
    """The spool of a segment `path` whose flushes held `sizes` events; unless `finished`,
    cut short as `kill -9` leaves it (no end of stream)."""
    segment = Segment(path, META, compact.SCHEMA)
    first = 1
    for i, size in enumerate(sizes):
        segment.write(compact_batch(first, size, seed=i))
        first += size
    if finished:
        segment.seal()
    else:
        segment._file.close()
    return segment.spool
