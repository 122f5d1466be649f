"""What an fd is: `FdInfo` and the per-process fd tables, the way libsinsp fills `fd.*`.

`FdTables` maps each process (tgid) to {fd: FdInfo}. It is seeded from /proc/PID/fd (sockets
identified by inode through /proc/PID/net/{tcp,tcp6,udp,udp6,unix}, read once per network
namespace; close-on-exec from /proc/PID/fdinfo/N, so an execve drops what the kernel closes)
and kept current by the syscall handlers (capture/handlers.py). A forked process gets a copy of
its parent's table as it was at the fork. An `FdInfo` is immutable and replaced on change, so
rows can share it and a batch builds each distinct fd's columns once.
"""

from __future__ import annotations

import functools
import os
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from capture.procfs import read_lines, read_text, readlink

O_CLOEXEC = 0o2000000
SOCK_TYPE_PROTO = {1: "tcp", 2: "udp", 3: "raw", 5: "udp"}  # SOCK_STREAM/DGRAM/RAW/SEQPACKET


@dataclass(frozen=True)
class FdInfo:
    """What libsinsp knows about one fd. Immutable: changed by replacing."""

    type: str | None  # fd.type: file, directory, ipv4, ipv6, unix, netlink, pipe, memfd, ...
    typechar: str | None
    name: str = ""
    l4proto: str | None = None
    local: tuple[str, int] | None = None
    remote: tuple[str, int] | None = None
    is_server: bool = False
    connected: bool = False
    cloexec: bool = False
    nameraw: str | None = None  # the path as the program gave it

    @property
    def is_socket(self) -> bool:
        return self.type in ("ipv4", "ipv6", "unix", "netlink")

    @functools.cached_property
    def resolved_char(self) -> str:
        """The `<f>`/`<4t>` prefix libsinsp puts before an fd's name in `evt.arg.fd`."""
        char = self.typechar or "o"
        if self.type in ("ipv4", "ipv6") and self.l4proto:
            char += self.l4proto[0]
        return f"<{char}>"


FD_KINDS = {  # fd.type -> fd.typechar
    "file": "f", "directory": "d", "ipv4": "4", "ipv6": "6", "unix": "u", "pipe": "p",
    "event": "e", "signalfd": "s", "eventpoll": "l", "inotify": "i", "timerfd": "t",
    "netlink": "n", "bpf": "b", "userfaultfd": "u", "io_uring": "r", "memfd": "m", "pidfd": "P",
}
_ANON_KINDS = {
    "[eventfd]": "event", "[signalfd]": "signalfd", "[eventpoll]": "eventpoll",
    "inotify": "inotify", "[timerfd]": "timerfd", "[pidfd]": "pidfd", "bpf-map": "bpf",
    "bpf-prog": "bpf", "bpf_link": "bpf", "[userfaultfd]": "userfaultfd", "[io_uring]": "io_uring",
}


def fd_kind(kind: str, name: str = "", **kw: Any) -> FdInfo:
    return FdInfo(kind, FD_KINDS.get(kind, "o"), name, **kw)


def socket_fd(family: int, sock_type: int, cloexec: bool = False) -> FdInfo:
    proto = SOCK_TYPE_PROTO.get(sock_type & 0xF)
    if family == socket.AF_INET:
        return fd_kind("ipv4", l4proto=proto, cloexec=cloexec)
    if family == socket.AF_INET6:
        return fd_kind("ipv6", l4proto=proto, cloexec=cloexec)
    if family == socket.AF_UNIX:
        return fd_kind("unix", cloexec=cloexec)
    if family == socket.AF_NETLINK:
        return fd_kind("netlink", cloexec=cloexec)
    return FdInfo("unknown", "o", cloexec=cloexec)


def with_endpoints(fd: FdInfo, local: tuple[str, int] | None, remote: tuple[str, int] | None,
                   server: bool) -> FdInfo:
    """The socket with its endpoints; the name is `client->server` as libsinsp writes it."""
    if fd.type == "unix":
        path = (remote or local or ("", 0))[0]
        return replace(fd, name=path or fd.name, connected=remote is not None)
    lo = local or ("0.0.0.0" if fd.type != "ipv6" else "::", 0)
    client, srv = (remote, lo) if server else (lo, remote)
    if client and srv:
        name = endpoint_text(client) + "->" + endpoint_text(srv)
    else:
        name = endpoint_text(lo)
    return replace(fd, local=lo, remote=remote, is_server=server, name=name,
                   connected=remote is not None)


def endpoint_text(ep: tuple[str, int] | None) -> str:
    """`addr:port`, with IPv6 addresses in brackets; "" for no endpoint."""
    if ep is None:
        return ""
    addr, port = ep
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def fd_from_link(target: str, sockets: Mapping[int, FdInfo]) -> FdInfo:
    """An fd from its /proc/PID/fd symlink target."""
    if target.startswith("/"):
        if target.startswith("/memfd:"):
            return fd_kind("memfd", target[1:].removesuffix(" (deleted)"))
        return fd_kind("file", target.removesuffix(" (deleted)"))
    kind, _, rest = target.partition(":")
    if kind == "socket":
        inode = int(rest.strip("[]") or 0)
        return sockets.get(inode, FdInfo("unknown", "o"))
    if kind == "pipe":
        return fd_kind("pipe")
    if kind == "anon_inode":
        return fd_kind(_ANON_KINDS.get(rest, "unknown"))
    return FdInfo("unknown", "o", target)


def read_sockets(net_dir: Path) -> dict[int, FdInfo]:
    """Socket inode -> FdInfo from /proc/PID/net/{tcp,tcp6,udp,udp6,unix}."""
    found: dict[int, FdInfo] = {}
    for name, family, proto in (("tcp", 2, "tcp"), ("tcp6", 10, "tcp"), ("udp", 2, "udp"),
                                ("udp6", 10, "udp")):
        for line in read_lines(net_dir / name)[1:]:
            parts = line.split()
            if len(parts) < 10:
                continue
            local, remote = _hex_ep(parts[1], family), _hex_ep(parts[2], family)
            listening = parts[3] == "0A" or remote[1] == 0
            base = socket_fd(family, 1 if proto == "tcp" else 2)
            found[int(parts[9])] = with_endpoints(
                base, local, None if listening else remote, server=listening)
    for line in read_lines(net_dir / "unix")[1:]:
        parts = line.split()
        if len(parts) >= 7:
            found[int(parts[6])] = fd_kind("unix", parts[7] if len(parts) > 7 else "")
    return found


def _hex_ep(text: str, family: int) -> tuple[str, int]:
    addr_hex, port_hex = text.split(":")
    raw = bytes.fromhex(addr_hex)
    # /proc/net prints the address as host-order 32-bit words
    raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    if family == socket.AF_INET6 and raw[:12] == b"\0" * 10 + b"\xff\xff":
        raw, family = raw[12:], socket.AF_INET
    return socket.inet_ntop(family, raw), int(port_hex, 16)


def fdinfo_cloexec(text: str) -> bool:
    """Whether /proc/PID/fdinfo/N (its text) shows close-on-exec: its `flags:` are the octal
    open flags, O_CLOEXEC included (the kernel puts the fd's FD_CLOEXEC there)."""
    for line in text.splitlines():
        if line.startswith("flags:"):
            try:
                return bool(int(line.split()[1], 8) & O_CLOEXEC)
            except (IndexError, ValueError):
                return False
    return False


class FdTables:
    """tgid -> {fd: FdInfo}, plus the tables of processes forked but not seen yet."""

    def __init__(self, proc_root: Path = Path("/proc")) -> None:
        self.root = proc_root
        self.tables: dict[int, dict[int, FdInfo]] = {}
        # child pid -> its parent's table at the fork: the parent may close or reuse fds (a
        # shell closes its pipe ends) before the child's first event is enriched.
        self.forked: dict[int, dict[int, FdInfo]] = {}
        self._netns: dict[str, dict[int, FdInfo]] = {}

    def snapshot(self, pids: Iterable[int]) -> None:
        for pid in pids:
            self.tables[pid] = self.read(pid)

    def read(self, pid: int) -> dict[int, FdInfo]:
        base = self.root / str(pid)
        try:
            names = os.listdir(base / "fd")
        except OSError:
            return {}
        sockets = self._sockets(base)
        table = {}
        for name in names:
            target = readlink(base / "fd" / name)
            if target is not None and name.isdigit():
                info = fd_from_link(target, sockets)
                if fdinfo_cloexec(read_text(base / "fdinfo" / name)):
                    info = replace(info, cloexec=True)
                table[int(name)] = info
        return table

    def read_fd(self, pid: int, fd: int, cloexec: bool) -> FdInfo:
        """What fd `fd` of `pid` is now, from /proc/PID/fd/N, as libsinsp reads an fd received
        with SCM_RIGHTS (the kernel says nothing more about it): of unknown type and without a
        name when the process or the fd is gone. A socket made since the network namespace's
        sockets were read is looked for again in a fresh read of them."""
        base = self.root / str(pid)
        target = readlink(base / "fd" / str(fd))
        if target is None:
            return FdInfo("unknown", "o", cloexec=cloexec)
        info = fd_from_link(target, self._sockets(base))
        if target.startswith("socket:") and info.type == "unknown":
            info = fd_from_link(target, self._sockets(base, fresh=True))
        return replace(info, cloexec=cloexec)

    def fork(self, parent: int, child: int) -> None:
        """Keep a copy of the parent's table for a new process (not a thread). A parent with
        no event of its own yet (a child forking at once) still has its fork copy."""
        table = self.tables.get(parent)
        if table is None:
            table = self.forked.get(parent)
        if table is not None:
            self.forked[child] = dict(table)

    def _sockets(self, base: Path, fresh: bool = False) -> dict[int, FdInfo]:
        ns = readlink(base / "ns" / "net") or ""
        if fresh or ns not in self._netns:
            self._netns[ns] = read_sockets(base / "net")
        return self._netns[ns]

    def of(self, pid: int) -> dict[int, FdInfo]:
        table = self.tables.get(pid)
        if table is None:
            table = self.tables[pid] = {}
        return table
