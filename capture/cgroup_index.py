"""Containers from the kernel's cgroup-v2 id, as the event saw it.

Every record carries `bpf_get_current_cgroup_id()`: the id of the task's cgroup in the v2
hierarchy, which is also its directory's inode number there (kernfs ids are inode numbers on
64-bit kernels). `CgroupIndex` maps those ids to containers by walking the v2 hierarchy once and
naming each directory with `container_of`, walking again when an id it does not know shows up
(at most once per RESCAN_SECONDS); with `--container` in the kernel, the capture program also
tells it of every cgroup made during the capture (`learn`). Unlike /proc/PID/cgroup, the answer
does not depend on the process still running when its event is enriched: a short command started
in a container (a `docker exec ... cat /etc/shadow`) is gone by then.

Where the v2 hierarchy is the only one (cgroup v2), its answer is the whole truth. On a hybrid
machine (v1 controllers, v2 at /sys/fs/cgroup/unified), a container may have v1 cgroups only
(Docker's cgroupfs driver): there, a v2 id that names no container says nothing, and the
process table keeps what /proc said.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from capture.proc_table import container_of
from capture.procfs import read_lines

RESCAN_SECONDS = 1.0
LEARNED_MAX = 1 << 16  # cgroups learned from records, kept at once
HOST = ("host", "host")


def cgroup_mounts(mountinfo: Path = Path("/proc/self/mountinfo")) -> tuple[Path | None, bool]:
    """(the cgroup2 mount point or None, whether cgroup v1 hierarchies are mounted too)."""
    v2: Path | None = None
    v1 = False
    for line in read_lines(mountinfo):
        fields = line.split()
        if "-" not in fields:
            continue
        fstype = fields[fields.index("-") + 1]
        if fstype == "cgroup2" and v2 is None and len(fields) > 4:
            v2 = Path(fields[4])
        v1 = v1 or fstype == "cgroup"
    return v2, v1


def cgroup_v1_roots(mountinfo: Path = Path("/proc/self/mountinfo")) -> tuple[Path, ...]:
    """The mount points of the cgroup v1 hierarchies."""
    roots = []
    for line in read_lines(mountinfo):
        fields = line.split()
        if "-" in fields and len(fields) > 4 and fields[fields.index("-") + 1] == "cgroup":
            roots.append(Path(fields[4]))
    return tuple(roots)


def walk_cgroups(root: Path) -> Iterator[tuple[int, str]]:
    """(inode number, path from the root: "" for the root, else "/a/b") of the cgroup
    directories under `root`, the root first; directories removed meanwhile are skipped."""
    try:
        yield os.stat(root).st_ino, ""
    except OSError:
        return
    stack = [(str(root), "")]
    while stack:
        path, rel = stack.pop()
        try:
            entries = list(os.scandir(path))
        except OSError:
            continue  # removed while we walk
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                sub = f"{rel}/{entry.name}"
                yield entry.inode(), sub
                stack.append((entry.path, sub))


@dataclass
class CgroupIndex:
    """v2 cgroup id -> (container.id, container.type)."""

    root: Path | None  # the cgroup2 mount; None: no v2 hierarchy, nothing known
    authoritative: bool  # v2 only: its "host" answers count too
    clock: Callable[[], float] = time.monotonic
    scans: int = 0
    _ids: dict[int, tuple[str, str]] = field(default_factory=dict)
    # Cgroups the capture program told of as they were made (REC_CGROUP): known even when gone
    # before their records are enriched, which a walk cannot find.
    _learned: dict[int, tuple[str, str]] = field(default_factory=dict)
    _next_scan: float = float("-inf")

    @staticmethod
    def detect() -> CgroupIndex:
        root, has_v1 = cgroup_mounts()
        return CgroupIndex(root, authoritative=root is not None and not has_v1)

    def container(self, cgroup_id: int) -> tuple[str, str] | None:
        """The container of the v2 cgroup `cgroup_id` ("host" for none); None when unknown,
        or when it names no container and the v2 hierarchy is not the only one."""
        found = self.named(cgroup_id)
        if found == HOST and not self.authoritative:
            return None
        return found

    def learn(self, cgroup_id: int, path: str) -> None:
        """A cgroup made during the capture, with its path in the v2 hierarchy."""
        if len(self._learned) >= LEARNED_MAX:
            self._learned.clear()
        self._learned[cgroup_id] = container_of(f"0::{path}\n") if path not in ("", "/") \
            else HOST

    def named(self, cgroup_id: int) -> tuple[str, str] | None:
        """The container its v2 path names ("host" for none, on a hybrid machine too); None
        when unknown (not found at the last walk, not learned)."""
        found = self._ids.get(cgroup_id) or self._learned.get(cgroup_id)
        if found is None and self.root is not None and self.clock() >= self._next_scan:
            self._scan(self.root)
            found = self._ids.get(cgroup_id)
        return found

    def _scan(self, root: Path) -> None:
        self.scans += 1
        self._next_scan = self.clock() + RESCAN_SECONDS
        ids = {ino: container_of(f"0::{rel}\n") if rel else HOST
               for ino, rel in walk_cgroups(root)}
        if ids:
            self._ids = ids
