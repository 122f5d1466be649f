"""`--container` in the kernel: the verdicts on cgroup-v2 ids that the capture program keeps.

The kernel's container handle is the task's cgroup-v2 id (`bpf_get_current_cgroup_id()`, the
inode number of its cgroup directory in the v2 hierarchy). With `--container`, the capture
program keeps a record when the verdict on that id is "keep": its entry in the program's
cgroup_map, else the default ("keep" when `host` is selected, "drop" when not). Three things fill
the map, each exact or erring on the side of keeping:

- `CgroupVerdicts.seed`, once the program is attached: every cgroup of the v2 hierarchy gets the
  verdict of the container its path names (capture.proc_table.container_of, then the selection);
- the program's cgroup_mkdir probe, for a cgroup made later: it judges the path in the kernel
  before any task can enter the cgroup (bpf_program.c, cgroup_path_verdict), so a container
  started during the capture is recorded from its first exec. It drops only what it is sure of;
- `CgroupVerdicts.check`, for what the kernel kept without being sure (a container name was
  selected: only the runtime can name a new container; a layout the kernel does not know):
  user space still filters every record it gets, and on the first record from a cgroup it
  stores the drop verdict that cgroup deserves, so the kernel drops the rest.

The mkdir probe also sends each new cgroup's id and path (REC_CGROUP), before any task can enter
it: user space names the container of a record from its cgroup id (capture/cgroup_index.py), and
a short-lived container's cgroup may be gone by the time its records are enriched. The exec,
chdir and set*id calls of every process pass the filter (bpf_render.PROC_STATE_SYSCALLS): a
container's first process descends from its runtime, outside the container, and its parent's
name, exe and command line come from those calls.

`plan` says whether the kernel can do it. It cannot without a v2 hierarchy (cgroup v1 only) or
without the cgroup tracepoints; nor, on a hybrid machine (v1 controllers, v2 at
/sys/fs/cgroup/unified) without `host`, when a selected container has v1 cgroups but none in
the v2 hierarchy (Docker's cgroupfs driver with a runc older than 1.0): its processes are then
in the v2 cgroup of whatever started them, which the kernel would drop. The capture then filters
in user space only, as it did before. A container started after the capture on a hybrid machine
is taken to get a v2 cgroup of its own, as runc (1.0 and later) and systemd give it. There, the
kernel goes by the v2 cgroup alone: a runtime's calls between joining a container's v1 cgroups
and its v2 one are the host's to it (user space, reading /proc later, may place them in the
container).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from capture.cgroup_index import CgroupIndex, cgroup_mounts, cgroup_v1_roots, walk_cgroups
from capture.container_filter import ContainerSelection
from capture.proc_table import container_of

KEEP = 1  # CG_KEEP in bpf_program.c
DROP = 2  # CG_DROP
IN_KERNEL = "in the kernel by cgroup-v2 id, then in user space"
IN_USER_SPACE = "in user space, after enrichment"


class VerdictStore(Protocol):
    """cgroup id -> KEEP or DROP: the program's cgroup_map (probe.CgroupMap), or a dict."""

    def get(self, key: int, default: int | None = None, /) -> int | None: ...

    def __setitem__(self, key: int, value: int, /) -> None: ...


@dataclass(frozen=True)
class CgroupPlan:
    """Where a `--container` selection runs, and what the capture program needs for it."""

    kernel: bool  # the program drops the records of cgroups not kept
    where: str  # IN_KERNEL, or IN_USER_SPACE and why (trace metadata, the command's stderr)
    keep_host: bool = False  # `host` selected: cgroups are kept unless marked dropped
    ids: tuple[str, ...] = ()  # the selected containers' ids (12 hex digits), names resolved
    names: bool = False  # names selected: a new container may be one of them

    @property
    def default(self) -> int:
        return KEEP if self.keep_host else DROP


def plan(selection: ContainerSelection, tracepoints: bool,
         v2_root: Path | None = None, v1_roots: tuple[Path, ...] | None = None) -> CgroupPlan:
    """The plan for `selection` on this machine (`tracepoints`: the kernel has
    cgroup:cgroup_mkdir and cgroup_rmdir with the fields the program reads); `v2_root` and
    `v1_roots` default to the mounted hierarchies."""
    if v2_root is None and v1_roots is None:
        v2_root, _ = cgroup_mounts()
        v1_roots = cgroup_v1_roots()
    if v2_root is None:
        return CgroupPlan(False, f"{IN_USER_SPACE} (no cgroup v2 hierarchy: the kernel knows a "
                                 "task's cgroup-v2 id only)")
    if not tracepoints:
        return CgroupPlan(False, f"{IN_USER_SPACE} (no cgroup:cgroup_mkdir tracepoint: a "
                                 "container started during the capture would be missed)")
    ids = tuple(sorted(selection.ids))
    if not selection.host and v1_roots:
        missing = _v1_only(ids, v2_root, v1_roots)
        if missing:
            return CgroupPlan(False, f"{IN_USER_SPACE} (container {missing[0]} has cgroup-v1 "
                                     "cgroups but no cgroup-v2 one)")
        if selection.unresolved:
            # Which cgroups it will get is unknown: on a v1+v2 machine, maybe v1 ones only,
            # and the kernel would take its tasks for the host's.
            return CgroupPlan(False, f"{IN_USER_SPACE} (no runtime knows a container named "
                                     f"{sorted(selection.unresolved)[0]} yet, and on a machine "
                                     "with cgroup v1 it may get no cgroup-v2 cgroup)")
    return CgroupPlan(True, IN_KERNEL, keep_host=selection.host, ids=ids,
                      names=bool(selection.names))


def _v1_only(ids: Iterable[str], v2_root: Path, v1_roots: tuple[Path, ...]) -> list[str]:
    """The ids among `ids` that name a cgroup in a v1 hierarchy and none in the v2 one."""
    wanted = set(ids)
    if not wanted:
        return []
    in_v2 = _named(v2_root, wanted)
    in_v1: set[str] = set()
    for root in v1_roots:
        in_v1 |= _named(root, wanted - in_v2)
    return sorted(in_v1 - in_v2)


def _named(root: Path, ids: set[str]) -> set[str]:
    """The ids among `ids` that a cgroup under `root` belongs to."""
    found = set()
    for _, rel in walk_cgroups(root):
        cid, _ = container_of(f"0::{rel}\n")
        if cid in ids:
            found.add(cid)
    return found


@dataclass
class CgroupVerdicts:
    """The capture's side of the program's cgroup_map: seeded at start, corrected as records
    come (see the module docstring)."""

    store: VerdictStore
    plan: CgroupPlan
    selection: ContainerSelection
    index: CgroupIndex
    checked: set[int] = field(default_factory=set)  # cgroup ids whose verdict is settled
    corrected: int = 0  # drop verdicts stored for cgroups the kernel kept

    def seed(self) -> int:
        """Store the verdict of every cgroup of the v2 hierarchy that differs from the default;
        returns how many. Call once the program is attached (its mkdir probe sees the cgroups
        made from then on)."""
        assert self.index.root is not None, "a kernel plan needs a v2 hierarchy"
        stored = 0
        for ino, rel in walk_cgroups(self.index.root):
            verdict = self._verdict(container_of(f"0::{rel}\n"))
            if verdict != self.plan.default:
                self.store[ino] = verdict
                stored += 1
        return stored

    def check(self, cgroup_id: int) -> None:
        """The first record from `cgroup_id` reached user space: drop the cgroup's records in
        the kernel from now on if its container is not selected. A cgroup the index does not
        know yet is looked at again at its next record."""
        named = self.index.named(cgroup_id)
        if named is None:
            return
        self.checked.add(cgroup_id)
        if self._verdict(named) == DROP and \
                self.store.get(cgroup_id, self.plan.default) != DROP:
            self.store[cgroup_id] = DROP
            self.corrected += 1

    def _verdict(self, container: tuple[str, str]) -> int:
        return KEEP if self.selection.wants_container(*container) else DROP
