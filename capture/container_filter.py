"""`capture record --container ID|NAME|host`: which processes' events a capture keeps.

The exact selection runs in user space, after the process table has placed each process in its
container (cgroup path or cgroup-v2 id: capture/proc_table.py, capture/cgroup_index.py). Where
the kernel can, it drops the other containers' events first, by the task's cgroup-v2 id
(capture/cgroup_filter.py), and user space filters again what reaches it. Where it cannot (no
cgroup v2 hierarchy, or a selected container with no v2 cgroup: Docker's cgroupfs driver with an
old runc on a v1+v2 hybrid machine), every event reaches user space, as before. A left-out process
costs a dictionary look-up per event: its syscall handler (but for the few that keep the process
table right) and its row are skipped, and its fd table is dropped.

A selector is `host`, a container id (12 to 64 hex digits: its first 12 must be the container's
`container.id`), or anything else, which is a name (or id prefix) for the runtime to resolve:
resolved at start when a Docker Engine API runtime knows it, and matched against the name of
every container first seen (a CRI runtime is asked by id only, so its containers' names are
matched that way, running ones included).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from capture.container_runtime import RUNTIME_TYPES, ContainerRuntimes
from capture.proc_table import Proc
from schemas.trace import TraceError

_CONTAINER_ID = re.compile(r"[0-9a-f]{12,64}")


class ContainerSelectionError(TraceError):
    """A `--container` selector that cannot work; the message says why and what to give."""


@dataclass
class ContainerSelection:
    """Decides, once per container id, whether its processes' events are kept."""

    host: bool
    ids: frozenset[str]  # 12-hex container ids
    names: frozenset[str]
    runtimes: ContainerRuntimes
    unresolved: frozenset[str] = frozenset()  # names no runtime knew at start
    _decided: dict[str, bool] = field(default_factory=dict)

    @staticmethod
    def parse(selectors: Sequence[str], runtimes: ContainerRuntimes) -> ContainerSelection:
        """The selection for these selectors; names known to the runtime now are resolved to
        their ids. Raises ContainerSelectionError for a name when no runtime socket answers."""
        host = any(s == "host" for s in selectors)
        ids = {s[:12] for s in selectors if _CONTAINER_ID.fullmatch(s)}
        names = {s for s in selectors if s != "host" and not _CONTAINER_ID.fullmatch(s)}
        if names and not runtimes.ping():
            tried = ", ".join(dict.fromkeys((*runtimes.sockets, *runtimes.cri_sockets))) \
                or "no socket found"
            raise ContainerSelectionError(
                f"--container {sorted(names)[0]}: a container name needs the runtime's API, and "
                f"no container runtime socket answered ({tried}). Give the container id (12 or "
                f"64 hex digits, as in `docker ps --no-trunc`), or the socket with "
                f"--runtime-socket PATH.")
        unresolved = set()
        for name in names:
            if (info := runtimes.lookup(name)) is not None:
                ids.add(info.short_id)
            else:
                unresolved.add(name)
        return ContainerSelection(host, frozenset(ids), frozenset(names), runtimes,
                                  frozenset(unresolved))

    def wants(self, proc: Proc) -> bool:
        return self.wants_container(proc.container_id, proc.container_type)

    def wants_container(self, cid: str, ctype: str) -> bool:
        """Whether the events of container `cid` ("host": none) of type `ctype` are kept."""
        decided = self._decided.get(cid)
        if decided is None:
            decided = self._decided[cid] = self._decide(cid, ctype)
        return decided

    def _decide(self, cid: str, ctype: str) -> bool:
        if cid == "host":
            return self.host
        if cid in self.ids:
            return True
        if not self.names or ctype not in RUNTIME_TYPES:
            return False
        info = self.runtimes.lookup(cid, ctype)
        return info is not None and info.name in self.names
