"""Turn decoded capture records into trace rows, the way libsinsp fills Falco's fields.

The kernel sends bare facts (pid, tid, uid, comm, raw arguments, copied paths and sockaddrs).
Everything a rule asks about the process, its parents, the user, the fd and the container comes
from state kept here:

- `ProcTable`: one `Proc` per process (thread group), seeded from a /proc snapshot at start and
  kept current from fork/exit records and execve/chdir events: exe (argv[0]), exepath, args, cwd,
  tty, ppid, sid, pgid, vpid, loginuid, start time, container. A `Proc` is immutable and replaced
  on change, so rows can share it and a batch can build each distinct process's columns once.
- `FdTables`: per process, fd -> `FdInfo` (file path resolved against dirfd/cwd, socket family,
  protocol and endpoints, pipe, memfd...), seeded from /proc/PID/fd and kept current from
  open/socket/connect/accept/bind/listen/dup/close/memfd_create/exec events.
- `UserDb`: uid/gid -> names from /etc/passwd and /etc/group.
- `container_of`: the container id and runtime from a /proc/PID/cgroup text (Docker, containerd,
  CRI-O, podman; cgroup v1 and v2, cgroupfs and systemd drivers).
- the argument renderers: errno names for `evt.res`, open flags as `O_RDONLY|O_CREAT` (libsinsp's
  table order and algorithm), chmod modes, socket families, ptrace requests, sockaddrs.

`Enricher.feed(records)` applies records in order and appends rows to a `RowBatch`;
`RowBatch.to_table()` builds the Arrow table: per-event columns from lists, and the process and
fd columns by building one row per distinct process/fd state and `take`-ing them.
"""

from __future__ import annotations

import errno
import functools
import os
import posixpath
import re
import socket
import struct
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from capture.bpf_render import SYSCALL_BY_NR
from capture.probe import REC_EXEC_ARGS, REC_EXIT, REC_FORK, REC_SYSCALL, Record
from schemas import catalog
from schemas.trace import ANCESTOR_DEPTH, COLUMN_BY_NAME, arrow_schema

AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
NO_UID = 0xFFFFFFFF
FILE_INFO_CACHE = 1 << 16  # distinct opened-file states kept for sharing
SHELLS = frozenset({"ash", "bash", "csh", "ksh", "sh", "tcsh", "zsh", "dash"})

# ---- argument rendering -----------------------------------------------------------------------

# libsinsp's file_flags table, in its order (driver/flags_table.c), with PPM values.
PPM_O_RDONLY, PPM_O_WRONLY, PPM_O_CREAT, PPM_O_TMPFILE = 1, 2, 4, 1 << 13
OPEN_FLAG_NAMES: tuple[tuple[str, int], ...] = (
    ("O_LARGEFILE", 1 << 11), ("O_DIRECTORY", 1 << 10), ("O_DIRECT", 1 << 9),
    ("O_TRUNC", 1 << 8), ("O_SYNC", 1 << 7), ("O_NONBLOCK", 1 << 6), ("O_EXCL", 1 << 5),
    ("O_DSYNC", 1 << 4), ("O_APPEND", 1 << 3), ("O_CREAT", 1 << 2), ("O_RDWR", 3),
    ("O_WRONLY", 2), ("O_RDONLY", 1), ("O_CLOEXEC", 1 << 12), ("O_NONE", 0),
    ("O_TMPFILE", 1 << 13),
)
# Linux (x86_64) open flag bits -> PPM bits; multi-bit flags (O_SYNC, O_TMPFILE) must match whole.
_LINUX_OPEN_FLAGS: tuple[tuple[int, int], ...] = (
    (0o100, 1 << 2), (0o20200000, 1 << 13), (0o2000, 1 << 3), (0o10000, 1 << 4),
    (0o200, 1 << 5), (0o4000, 1 << 6), (0o4010000, 1 << 7), (0o1000, 1 << 8),
    (0o40000, 1 << 9), (0o200000, 1 << 10), (0o100000, 1 << 11), (0o2000000, 1 << 12),
)
O_CLOEXEC = 0o2000000
O_DIRECTORY = 0o200000
# chmod_mode (PPM values equal Linux's), in libsinsp's order.
MODE_NAMES: tuple[tuple[str, int], ...] = (
    ("S_IXOTH", 0o1), ("S_IWOTH", 0o2), ("S_IROTH", 0o4), ("S_IXGRP", 0o10), ("S_IWGRP", 0o20),
    ("S_IRGRP", 0o40), ("S_IXUSR", 0o100), ("S_IWUSR", 0o200), ("S_IRUSR", 0o400),
    ("S_ISVTX", 0o1000), ("S_ISGID", 0o2000), ("S_ISUID", 0o4000),
)
SOCKET_FAMILIES: dict[int, str] = {
    0: "AF_UNSPEC", 1: "AF_LOCAL|AF_UNIX", 2: "AF_INET", 10: "AF_INET6",
    16: "AF_ROUTE|AF_NETLINK", 17: "AF_PACKET", 38: "AF_ALG", 40: "AF_VSOCK", 44: "AF_XDP",
}
PTRACE_REQUESTS: dict[int, str] = {
    0: "PTRACE_TRACEME", 1: "PTRACE_PEEKTEXT", 2: "PTRACE_PEEKDATA", 3: "PTRACE_PEEKUSR",
    4: "PTRACE_POKETEXT", 5: "PTRACE_POKEDATA", 6: "PTRACE_POKEUSR", 7: "PTRACE_CONT",
    8: "PTRACE_KILL", 9: "PTRACE_SINGLESTEP", 12: "PTRACE_GETREGS", 13: "PTRACE_SETREGS",
    14: "PTRACE_GETFPREGS", 15: "PTRACE_SETFPREGS", 16: "PTRACE_ATTACH", 17: "PTRACE_DETACH",
    18: "PTRACE_GETFPXREGS", 19: "PTRACE_SETFPXREGS", 24: "PTRACE_SYSCALL",
    25: "PTRACE_GET_THREAD_AREA", 26: "PTRACE_SET_THREAD_AREA", 30: "PTRACE_ARCH_PRCTL",
    31: "PTRACE_SYSEMU", 32: "PTRACE_SYSEMU_SINGLESTEP", 33: "PTRACE_SINGLEBLOCK",
    0x4200: "PTRACE_SETOPTIONS", 0x4201: "PTRACE_GETEVENTMSG", 0x4202: "PTRACE_GETSIGINFO",
    0x4203: "PTRACE_SETSIGINFO", 0x4204: "PTRACE_GETREGSET", 0x4205: "PTRACE_SETREGSET",
    0x4206: "PTRACE_SEIZE", 0x4207: "PTRACE_INTERRUPT", 0x4208: "PTRACE_LISTEN",
    0x4209: "PTRACE_PEEKSIGINFO", 0x420A: "PTRACE_GETSIGMASK", 0x420B: "PTRACE_SETSIGMASK",
}
BPF_COMMANDS = (
    "BPF_MAP_CREATE", "BPF_MAP_LOOKUP_ELEM", "BPF_MAP_UPDATE_ELEM", "BPF_MAP_DELETE_ELEM",
    "BPF_MAP_GET_NEXT_KEY", "BPF_PROG_LOAD", "BPF_OBJ_PIN", "BPF_OBJ_GET", "BPF_PROG_ATTACH",
    "BPF_PROG_DETACH", "BPF_PROG_TEST_RUN", "BPF_PROG_GET_NEXT_ID", "BPF_MAP_GET_NEXT_ID",
    "BPF_PROG_GET_FD_BY_ID", "BPF_MAP_GET_FD_BY_ID", "BPF_OBJ_GET_INFO_BY_FD", "BPF_PROG_QUERY",
    "BPF_RAW_TRACEPOINT_OPEN", "BPF_BTF_LOAD", "BPF_BTF_GET_FD_BY_ID", "BPF_TASK_FD_QUERY",
    "BPF_MAP_LOOKUP_AND_DELETE_ELEM", "BPF_MAP_FREEZE", "BPF_BTF_GET_NEXT_ID",
    "BPF_MAP_LOOKUP_BATCH", "BPF_MAP_LOOKUP_AND_DELETE_BATCH", "BPF_MAP_UPDATE_BATCH",
    "BPF_MAP_DELETE_BATCH", "BPF_LINK_CREATE", "BPF_LINK_UPDATE", "BPF_LINK_GET_FD_BY_ID",
    "BPF_LINK_GET_NEXT_ID", "BPF_ENABLE_STATS", "BPF_ITER_CREATE", "BPF_LINK_DETACH",
    "BPF_PROG_BIND_MAP",
)
CLONE_NS_FLAGS: tuple[tuple[str, int], ...] = (
    ("CLONE_NEWCGROUP", 0x02000000), ("CLONE_NEWUTS", 0x04000000), ("CLONE_NEWIPC", 0x08000000),
    ("CLONE_NEWUSER", 0x10000000), ("CLONE_NEWPID", 0x20000000), ("CLONE_NEWNET", 0x40000000),
    ("CLONE_NEWNS", 0x00020000), ("CLONE_FILES", 0x400), ("CLONE_FS", 0x200),
    ("CLONE_THREAD", 0x10000), ("CLONE_VFORK", 0x4000), ("CLONE_VM", 0x100),
    ("CLONE_SYSVSEM", 0x40000),
)
SOCK_TYPE_PROTO = {1: "tcp", 2: "udp", 3: "raw", 5: "udp"}  # SOCK_STREAM/DGRAM/RAW/SEQPACKET


def errno_name(res: int) -> str:
    """`evt.res`: SUCCESS, or the errno name of a negative return."""
    if res >= 0:
        return "SUCCESS"
    return errno.errorcode.get(-res, f"E{-res}")


def linux_open_flags_to_ppm(flags: int) -> int:
    acc = flags & 3
    ppm = PPM_O_WRONLY if acc == 1 else 3 if acc == 2 else PPM_O_RDONLY
    for linux, bit in _LINUX_OPEN_FLAGS:
        if flags & linux == linux:
            ppm |= bit
    return ppm


@functools.lru_cache(maxsize=4096)
def open_flags(flags: int) -> tuple[int, str]:
    """The PPM value of Linux open flags and its rendering (`O_RDONLY|O_CLOEXEC`)."""
    ppm = linux_open_flags_to_ppm(flags)
    return ppm, render_flags(ppm, OPEN_FLAG_NAMES)


def render_flags(value: int, table: Iterable[tuple[str, int]]) -> str:
    """libsinsp's flag rendering: names in table order, each consuming its bits; stops at a
    flag equal to the whole value."""
    names, rest = [], value
    for name, bit in table:
        if (bit == 0 and value == 0) or (bit and rest & bit == bit and rest):
            names.append(name)
            rest &= ~bit
            if bit == value:
                break
    return "|".join(names)


def s32(value: int) -> int:
    """A register holding a C `int` (fd, dirfd, pid) as a signed number."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def item(rec: Record, index: int) -> bytes:
    return rec.items[index] if index < len(rec.items) else b""


def parse_sockaddr(raw: bytes) -> tuple[int, str, int] | None:
    """(family, address, port) of a sockaddr; unix sockets give (1, path, 0)."""
    if len(raw) < 2:
        return None
    family = struct.unpack_from("<H", raw)[0]
    if family == socket.AF_INET and len(raw) >= 8:
        return family, socket.inet_ntop(socket.AF_INET, raw[4:8]), struct.unpack_from(">H", raw,
                                                                                       2)[0]
    if family == socket.AF_INET6 and len(raw) >= 24:
        port = struct.unpack_from(">H", raw, 2)[0]
        addr = raw[8:24]
        if addr[:12] == b"\0" * 10 + b"\xff\xff":  # v4-mapped: libsinsp makes it IPv4
            return socket.AF_INET, socket.inet_ntop(socket.AF_INET, addr[12:]), port
        return family, socket.inet_ntop(socket.AF_INET6, addr), port
    if family == socket.AF_UNIX:
        path = raw[2:]
        if path[:1] == b"\0":
            return family, "@" + path[1:].split(b"\0", 1)[0].decode("utf-8", "replace"), 0
        return family, cstr(path), 0
    return family, "", 0


def parse_endpoint(raw: bytes) -> tuple[int, str, int] | None:
    """The local endpoint the program copies for TCP connects (struct endpoint)."""
    if len(raw) < 20:
        return None
    family, port = struct.unpack_from("<HH", raw)
    if family == socket.AF_INET6:
        return family, socket.inet_ntop(socket.AF_INET6, raw[4:20]), port
    return family, socket.inet_ntop(socket.AF_INET, raw[4:8]), port


# ---- users, containers ------------------------------------------------------------------------

@dataclass(frozen=True)
class UserDb:
    users: Mapping[int, str]
    groups: Mapping[int, str]

    @staticmethod
    def load(etc: Path = Path("/etc")) -> UserDb:
        return UserDb(_id_names(etc / "passwd"), _id_names(etc / "group"))


def _id_names(path: Path) -> dict[int, str]:
    names: dict[int, str] = {}
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return names
    for line in lines:
        parts = line.split(":")
        if len(parts) > 2 and parts[2].isdigit():
            names.setdefault(int(parts[2]), parts[0])
    return names


_HEX64 = r"([0-9a-f]{64})"
_CONTAINER_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"/docker-" + _HEX64 + r"\.scope"), "docker"),
    (re.compile(r"/docker/" + _HEX64), "docker"),
    (re.compile(r"/cri-containerd-" + _HEX64 + r"\.scope"), "containerd"),
    (re.compile(r"/crio-" + _HEX64 + r"\.scope"), "cri-o"),
    (re.compile(r"/crio/" + _HEX64), "cri-o"),
    (re.compile(r"/libpod-" + _HEX64 + r"\.scope"), "podman"),
    (re.compile(r"/libpod_parent/libpod-" + _HEX64), "podman"),
    (re.compile(r"/kubepods[^\s]*/pod[0-9a-f_-]+/" + _HEX64), "containerd"),
    (re.compile(r"/containerd/" + _HEX64), "containerd"),
)


def container_of(cgroup_text: str) -> tuple[str, str]:
    """(container.id, container.type) from /proc/PID/cgroup; ("host", "host") outside one.

    Falco's id is the first 12 hex digits. conmon's own `libpod-conmon-<id>` scope is not a
    container (the pattern needs `libpod-` followed directly by the id).
    """
    for line in cgroup_text.splitlines():
        path = line.split(":", 2)[-1]
        for pattern, kind in _CONTAINER_PATTERNS:
            if m := pattern.search(path):
                return m.group(1)[:12], kind
    return "host", "host"


# ---- fd state ---------------------------------------------------------------------------------

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
    name = _endpoint(client) + "->" + _endpoint(srv) if client and srv else _endpoint(lo)
    return replace(fd, local=lo, remote=remote, is_server=server, name=name,
                   connected=remote is not None)


def _endpoint(ep: tuple[str, int] | None) -> str:
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
        for line in _lines(net_dir / name)[1:]:
            parts = line.split()
            if len(parts) < 10:
                continue
            local, remote = _hex_ep(parts[1], family), _hex_ep(parts[2], family)
            listening = parts[3] == "0A" or remote[1] == 0
            base = socket_fd(family, 1 if proto == "tcp" else 2)
            found[int(parts[9])] = with_endpoints(
                base, local, None if listening else remote, server=listening)
    for line in _lines(net_dir / "unix")[1:]:
        parts = line.split()
        if len(parts) >= 7:
            found[int(parts[6])] = fd_kind("unix", parts[7] if len(parts) > 7 else "")
    return found


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()
    except OSError:
        return []


def _hex_ep(text: str, family: int) -> tuple[str, int]:
    addr_hex, port_hex = text.split(":")
    raw = bytes.fromhex(addr_hex)
    # /proc/net prints the address as host-order 32-bit words
    raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    if family == socket.AF_INET6 and raw[:12] == b"\0" * 10 + b"\xff\xff":
        raw, family = raw[12:], socket.AF_INET
    return socket.inet_ntop(family, raw), int(port_hex, 16)


# ---- process state ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Proc:
    """One process (thread group) as libsinsp would describe it. Immutable."""

    pid: int
    ppid: int = 0
    comm: str = ""
    exe: str = ""  # argv[0]
    exepath: str = ""
    args: tuple[str, ...] = ()
    cwd: str | None = None
    vpid: int | None = None
    sid: int | None = None
    pgid: int | None = None
    tty: int | None = None
    loginuid: int | None = None
    start_ns: int | None = None
    container_id: str = "host"
    container_type: str = "host"
    exe_from_memfd: bool = False
    exe_ctime: int | None = None
    exe_mtime: int | None = None

    @property
    def cmdline(self) -> str:
        return " ".join((self.comm, *self.args)) if self.args else self.comm


def read_proc(pid: int, root: Path, boot_ns: int) -> Proc | None:
    """A process from /proc/PID, or None if it is gone (or a kernel thread we cannot read)."""
    base = root / str(pid)
    try:
        stat = (base / "stat").read_text()
    except OSError:
        return None
    comm = stat[stat.index("(") + 1:stat.rindex(")")]
    fields = stat[stat.rindex(")") + 2:].split()
    argv = _read(base / "cmdline").split("\0")
    argv = argv[:-1] if argv and argv[-1] == "" else argv
    exepath = _readlink(base / "exe") or ""
    start = boot_ns + int(fields[19]) * 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    cid, ctype = container_of(_read(base / "cgroup"))
    return Proc(
        pid=pid, ppid=int(fields[1]), comm=comm, exe=argv[0] if argv else comm,
        exepath=exepath.removesuffix(" (deleted)"), args=tuple(argv[1:]),
        cwd=_readlink(base / "cwd"), vpid=_nspid(_read(base / "status")) or pid,
        sid=int(fields[3]), pgid=int(fields[2]), tty=int(fields[4]),
        loginuid=_loginuid(_read(base / "loginuid")), start_ns=start,
        container_id=cid, container_type=ctype, exe_from_memfd=exepath.startswith("/memfd:"),
    )


def _read(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8", "replace")
    except OSError:
        return ""


def _readlink(path: Path) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


def _nspid(status: str) -> int | None:
    for line in status.splitlines():
        if line.startswith("NSpid:"):
            return int(line.split()[-1])
    return None


def _loginuid(text: str) -> int | None:
    text = text.strip()
    if not text.isdigit():
        return None
    value = int(text)
    return -1 if value == NO_UID else value


def boot_time_ns() -> int:
    return time.time_ns() - time.clock_gettime_ns(time.CLOCK_BOOTTIME)


class ProcTable:
    """tgid -> Proc, plus the fork records not yet matched with their child's first event."""

    def __init__(self, proc_root: Path = Path("/proc")) -> None:
        self.root = proc_root
        self.boot_ns = boot_time_ns()
        self.procs: dict[int, Proc] = {}
        self.pending_forks: dict[int, tuple[int, int]] = {}  # child tid -> (parent tgid, ts)
        self.forked_from: dict[int, int] = {}  # new child -> parent, until its fds are copied

    def snapshot(self) -> None:
        for entry in self.root.iterdir():
            if entry.name.isdigit() and (proc := read_proc(int(entry.name), self.root,
                                                           self.boot_ns)):
                self.procs[proc.pid] = proc

    def get(self, rec: Record, wall_ns: int) -> Proc:
        proc = self.procs.get(rec.tgid)
        if proc is None:
            proc = self._discover(rec, wall_ns)
            self.procs[rec.tgid] = proc
        return proc

    def _discover(self, rec: Record, wall_ns: int) -> Proc:
        """A process seen for the first time: the child of a fork we saw, or read from /proc."""
        fork = self.pending_forks.pop(rec.tgid, None)
        parent = self.procs.get(fork[0]) if fork else None
        if parent is not None and fork is not None:
            self.forked_from[rec.tgid] = parent.pid
            vpid = rec.tgid if parent.vpid == parent.pid else self._vpid(rec.tgid)
            return replace(parent, pid=rec.tgid, ppid=parent.pid, vpid=vpid, start_ns=fork[1])
        found = read_proc(rec.tgid, self.root, self.boot_ns)
        return found or Proc(pid=rec.tgid, comm=rec.comm, exe=rec.comm, start_ns=wall_ns)

    def _vpid(self, pid: int) -> int | None:
        return _nspid(_read(self.root / str(pid) / "status"))

    def fork(self, parent_tgid: int, child_tid: int, wall_ns: int) -> None:
        self.pending_forks[child_tid] = (parent_tgid, wall_ns)

    def exit(self, rec: Record) -> bool:
        """Forget a process whose last thread exited; True if it was a whole process."""
        tid, group = rec.args[0], rec.args[1]
        self.pending_forks.pop(tid, None)
        if group == 1 or (group == 2 and tid == rec.tgid):
            self.procs.pop(rec.tgid, None)
            return True
        return False

    def ancestors(self, proc: Proc) -> list[Proc]:
        """proc, its parent, grandparent... (at most ANCESTOR_DEPTH, stopping at unknowns)."""
        chain, seen = [proc], {proc.pid}
        while len(chain) < ANCESTOR_DEPTH:
            parent = self.procs.get(chain[-1].ppid)
            if parent is None or parent.pid in seen:
                break
            chain.append(parent)
            seen.add(parent.pid)
        return chain


class FdTables:
    """tgid -> {fd: FdInfo}."""

    def __init__(self, proc_root: Path = Path("/proc")) -> None:
        self.root = proc_root
        self.tables: dict[int, dict[int, FdInfo]] = {}
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
            target = _readlink(base / "fd" / name)
            if target is not None and name.isdigit():
                table[int(name)] = fd_from_link(target, sockets)
        return table

    def _sockets(self, base: Path) -> dict[int, FdInfo]:
        ns = _readlink(base / "ns" / "net") or ""
        if ns not in self._netns:
            self._netns[ns] = read_sockets(base / "net")
        return self._netns[ns]

    def of(self, pid: int) -> dict[int, FdInfo]:
        table = self.tables.get(pid)
        if table is None:
            table = self.tables[pid] = {}
        return table


# ---- events -------------------------------------------------------------------------------

class Ev:
    """What a syscall handler extracted from one record, for its row (a plain slotted class:
    one is made per event, and a dataclass's __init__ costs several times more)."""

    __slots__ = ("fd", "fd_num", "name_changed", "opened", "params", "proc")

    def __init__(self) -> None:
        self.params: list[tuple[str, str, str | None]] = []  # name, raw, resolved
        self.fd_num: int | None = None
        self.fd: FdInfo | None = None
        self.opened: tuple[bool, bool, bool] | None = None  # is_open_read/write/exec
        self.name_changed = False
        self.proc: Proc | None = None  # the process after the event (execve, chdir)

    def add(self, name: str, raw: object, resolved: str | None = None) -> None:
        self.params.append((name, str(raw), resolved))


Handler = Callable[["Enricher", Record, Proc, Ev], None]


class Enricher:
    """Applies records in order to the process/fd state and appends one row per syscall."""

    def __init__(self, monotonic_to_wall: int, proc_root: Path = Path("/proc"),
                 users: UserDb | None = None) -> None:
        self.offset = monotonic_to_wall
        self.procs = ProcTable(proc_root)
        self.fds = FdTables(proc_root)
        self.users = users or UserDb.load()
        self.exec_args: dict[int, Record] = {}
        self.next_num = 1
        self.errors = 0  # records whose handler failed (left out of the trace)
        self.last_error = ""
        self._files: dict[tuple[str | None, str, str, bool], FdInfo] = {}

    def snapshot(self) -> None:
        """Seed the tables from /proc (call before the probe starts sending)."""
        self.procs.snapshot()
        self.fds.snapshot(self.procs.procs)

    def feed(self, records: Iterable[Record], batch: RowBatch) -> None:
        for rec in records:
            if rec.kind == REC_SYSCALL:
                self._syscall(rec, batch)
            elif rec.kind == REC_EXEC_ARGS:
                self.exec_args[rec.tid] = rec
            elif rec.kind == REC_FORK:
                self.procs.fork(rec.tgid, rec.args[0], rec.ts + self.offset)
            elif rec.kind == REC_EXIT and self.procs.exit(rec):
                self.fds.tables.pop(rec.tgid, None)

    def _syscall(self, rec: Record, batch: RowBatch) -> None:
        dispatch = _DISPATCH.get(rec.nr)
        if dispatch is None:
            return
        name, handler = dispatch
        wall = rec.ts + self.offset
        proc = self.procs.procs.get(rec.tgid) or self.procs.get(rec, wall)
        if rec.tgid not in self.fds.tables:
            self._inherit_fds(proc)
        ev = Ev()
        try:
            handler(self, rec, proc, ev)
        except (ValueError, IndexError, KeyError, OSError, struct.error) as exc:
            # A record we cannot make sense of must not end the capture: it is counted (the
            # trace's drop counters show it) and its row is left out.
            self.errors += 1
            self.last_error = f"{name}: {type(exc).__name__}: {exc}"
            return
        batch.add(self, rec, name, wall, ev.proc or proc, ev)

    def file_info(self, kind: str | None, path: str, raw: str, cloexec: bool) -> FdInfo:
        """The FdInfo of an opened file, shared by every open of the same path: rows are built
        once per distinct FdInfo, and most programs open the same files over and over."""
        key = (kind, path, raw, cloexec)
        info = self._files.get(key)
        if info is None:
            if len(self._files) >= FILE_INFO_CACHE:
                self._files.clear()
            typechar = FD_KINDS[kind] if kind is not None else None
            info = self._files[key] = FdInfo(kind, typechar, path, cloexec=cloexec, nameraw=raw)
        return info

    def _inherit_fds(self, proc: Proc) -> None:
        """A new process's fds: a fork child's are its parent's (copied, as fork does); one
        found some other way is read from /proc."""
        parent_pid = self.procs.forked_from.pop(proc.pid, None)
        parent = self.fds.tables.get(parent_pid) if parent_pid is not None else None
        self.fds.tables[proc.pid] = dict(parent) if parent is not None else self.fds.read(proc.pid)

    def resolve(self, proc: Proc, dirfd: int, path: str) -> str:
        """An absolute, normalized path for `path` relative to `dirfd` (or the cwd)."""
        if not path or path.startswith("/"):
            return _normpath(path) if path else path
        if dirfd == AT_FDCWD:
            base = proc.cwd
        else:
            fd = self.fds.of(proc.pid).get(dirfd)
            base = fd.name if fd is not None and fd.type in ("directory", "file") else None
        return _normpath(posixpath.join(base, path)) if base else path


def _normpath(path: str) -> str:
    """posixpath.normpath, skipped for the common path that is already normal (it costs a
    microsecond per open otherwise)."""
    if "/." in path or "//" in path or (path.endswith("/") and path != "/"):
        return posixpath.normpath(path)
    return path


# ---- handlers (one per syscall family) -----------------------------------------------------

def _fd_param(en: Enricher, proc: Proc, ev: Ev, name: str, fd: int) -> FdInfo | None:
    info = en.fds.of(proc.pid).get(fd)
    resolved = info.resolved_char + info.name if info is not None else None
    ev.add(name, fd, resolved)
    return info


def _res_param(ev: Ev, rec: Record) -> None:
    ev.add("res", rec.ret, errno_name(rec.ret) if rec.ret < 0 else None)


def _path_param(en: Enricher, proc: Proc, ev: Ev, name: str, raw: str, dirfd: int) -> str:
    full = en.resolve(proc, dirfd, raw)
    ev.add(name, raw, full if full != raw else None)
    return full


def _dirfd_param(ev: Ev, dirfd: int) -> None:
    ev.add("dirfd", dirfd, "AT_FDCWD" if dirfd == AT_FDCWD else None)


def _open(en: Enricher, rec: Record, proc: Proc, ev: Ev) -> None:
    name, a = SYSCALL_BY_NR[rec.nr].name, rec.args
    if name == "creat":
        dirfd, flags, mode = AT_FDCWD, 0o1101, a[1]  # O_CREAT|O_WRONLY|O_TRUNC
    elif name == "open":
        dirfd, flags, mode = AT_FDCWD, a[1], a[2]
    elif name == "openat2":
        how = item(rec, 1).ljust(24, b"\0")
        dirfd, (flags, mode) = s32(a[0]), struct.unpack_from("<QQ", how)
    else:
        dirfd, flags, mode = s32(a[0]), a[2], a[3]
    raw = cstr(item(rec, 0))
    path = en.resolve(proc, dirfd, raw)
    ppm, flag_names = open_flags(flags)
    fd = s32(rec.ret)
    kind = None if fd < 0 else "directory" if flags & O_DIRECTORY else "file"
    info = en.file_info(kind, path, raw, bool(flags & O_CLOEXEC))
    if fd >= 0:
        en.fds.of(proc.pid)[fd] = info
        ev.add("fd", fd, info.resolved_char + path)
    else:
        ev.add("fd", fd, errno_name(fd))
    if name in ("openat", "openat2"):
        _dirfd_param(ev, dirfd)
    ev.add("name", raw, path if path != raw else None)
    ev.add("flags", ppm, flag_names)
    ev.add("mode", f"0{mode & 0o7777:o}" if mode else "0")
    execable = bool(ppm & (PPM_O_CREAT | PPM_O_TMPFILE)) and bool(mode & 0o111)
    ev.fd_num, ev.fd = fd, info
    ev.opened = (bool(ppm & PPM_O_RDONLY), bool(ppm & PPM_O_WRONLY), execable)


def _socket(en: Enricher, rec: Record, proc: Proc, ev: Ev) -> None:
    family, sock_type, proto = (s32(x) for x in rec.args[:3])
    fd = s32(rec.ret)
    info = socket_fd(family, sock_type, cloexec=bool(sock_type & O_CLOEXEC))
    if fd >= 0:
        en.fds.of(proc.pid)[fd] = info
    ev.add("fd", fd, info.resolved_char if fd >= 0 else errno_name(fd))
    ev.add("domain", family, SOCKET_FAMILIES.get(family))
    ev.add("type", sock_type)
    ev.add("proto", proto)
    ev.fd_num, ev.fd = fd, info if fd >= 0 else None


def _connect(en: Enricher, rec: Record, proc: Proc, ev: Ev) -> None:
    fd = s32(rec.args[0])
    table = en.fds.of(proc.pid)
    info = table.get(fd)
    remote = parse_sockaddr(item(rec, 0))
    local = parse_endpoint(item(rec, 1))
    _res_param(ev, rec)
    if info is not None and remote is not None and (rec.ret == 0 or rec.ret == -errno.EINPROGRESS):
        before = info.name
        info = with_endpoints(info, local[1:] if local else None, remote[1:], server=False)
        table[fd] = info
        ev.name_changed = info.name != before
    ev.add("tuple", info.name if info is not None else "")
    ev.add("fd", fd, info.resolved_char + info.name if info is not None else None)
    ev.fd_num, ev.fd = fd, info


def _bind(en: Enricher, rec: Record, proc: Proc, ev: Ev) -> None:
    fd = s32(rec.args[0])
    table = en.fds.of(proc.pid)
    info = table.get(fd)
    addr = parse_sockaddr(item(rec, 0))
    _res_param(ev, rec)
    if info is not None and addr is not None and rec.ret == 0:
        info = with_endpoints(info, addr[1:], None, server=True)
        table[fd] = info
    ev.add("addr", _endpoint(addr[1:]) if addr and addr[0] != socket.AF_UNIX else
           (addr[1] if addr else ""))
    ev.add("fd", fd, info.resolved_char + info.name if info is not None else None)
    ev.fd_num, ev.fd = fd, info


def _listen(en: Enricher, rec: Record, proc: Proc, ev: Ev) -> None:
    fd = s32(rec.args[0])
    table = en.fds.of(proc.pid)
    info = table.get(fd)
    if info is not None and rec.ret == 0:
        info = table[fd] = replace(info, is_server=True)
    _res_param(ev, rec)
    ev.add("fd", fd, info.resolved_char + info.name if info is not None else None)
    ev.add("backlog", s32(rec.args[1]))
    ev.fd_num, ev.fd = fd, info


def _accept(en: Enricher, rec: Record, proc: Proc, ev: Ev) -> None:
    table = en.fds.of(proc.pid)
    listener = table.get(s32(rec.args[0]))
    fd = s32(rec.ret)
    info = None
    if fd >= 0:
        peer = parse_sockaddr(item(rec, 0))
        base = listener or FdInfo("unknown", "o")
        info = with_endpoints(replace(base, cloexec=False), base.local,
                              peer[1:] if peer else None, server=True)
        table[fd] = info
    ev.add("fd", fd, info.resolved_char + info.name if info is not None else errno_name(fd))
    ev.add("tuple", info.name if info is not None else "")
    ev.fd_num, ev.fd = fd, info


def _dup(en: Enricher, rec: Record, proc: Proc, ev: Ev) -> None:
    old, res = s32(rec.args[0]), s32(rec.ret)
    table = en.fds.of(proc.pid)
    info = table.get(old)
    if res >= 0 and info is not None and res != old:
        cloexec = SYSCALL_BY_NR[rec.nr].name == "dup3" and bool(rec.args[2] & O_CLOEXEC)
        table[res] = replace(info, cloexec=cloexec)
    ev.add("res", res, errno_name(res) if res < 0 else None)
    _fd_param(en, proc, ev, "oldfd", old)
    if SYSCALL_BY_NR[rec.nr].name != "dup":
        ev.add("newfd", s32(rec.args[1]))
    ev.fd_num, ev.fd = old, info


def _close(en: Enricher, rec: Record, proc: Proc, ev: Ev) -> None:
    fd = s32(rec.args[0])
    table = en.fds.of(proc.pid)
    info = table.get(fd)
    _res_param(ev, rec)
    _fd_param(en, proc, ev, "fd", fd)
    if rec.ret == 0:
        table.pop(fd, None)
    ev.fd_num, ev.fd = fd, info


def _memfd(en: Enricher, rec: Record, proc: Proc, ev: Ev) -> None:
    fd, name = s32(rec.ret), cstr(item(rec, 0))
    info = fd_kind("memfd", "memfd:" + name, cloexec=bool(rec.args[1] & 1))
    if fd >= 0:
        en.fds.of(proc.pid)[fd] = info
    ev.add("fd", fd, info.resolved_char + info.name if fd >= 0 else errno_name(fd))
    ev.add("name", name)
    ev.add("flags", rec.args[1])
    ev.fd_num, ev.fd = fd, info if fd >= 0 else None


def _execve(en: Enricher, rec: Record, proc: Proc, ev: Ev) -> None:
    pending = en.exec_args.pop(rec.tid, None)
    filename = cstr(item(pending, 0)) if pending else ""
    argv = [a.decode("utf-8", "replace") for a in item(pending, 1).split(b"\0")[:-1]] \
        if pending else []
    _res_param(ev, rec)
    if rec.ret == 0:
        proc = _exec_proc(en, rec, proc, filename, argv)
        en.procs.procs[proc.pid] = proc
        table = en.fds.of(proc.pid)
        for fd in [fd for fd, info in table.items() if info.cloexec]:
            del table[fd]
        ev.proc = proc
    ev.add("exe", argv[0] if argv else filename)
    ev.add("args", " ".join(argv[1:]))
    ev.add("tid", rec.tid)
    ev.add("pid", rec.tgid)
    ev.add("ptid", proc.ppid)
    ev.add("cwd", proc.cwd or "")
    ev.add("comm", rec.comm)
    ev.add("filename", filename)


def _exec_proc(en: Enricher, rec: Record, proc: Proc, filename: str, argv: list[str]) -> Proc:
    """The process after a successful execve/execveat of `filename` with `argv`."""
    dirfd = s32(rec.args[0]) if SYSCALL_BY_NR[rec.nr].name == "execveat" else AT_FDCWD
    memfd = False
    if dirfd != AT_FDCWD and not filename:
        fd = en.fds.of(proc.pid).get(dirfd)
        path = fd.name if fd is not None else ""
        memfd = fd is not None and fd.type == "memfd"
    else:
        path = en.resolve(proc, dirfd, filename)
    exepath = path
    if proc.container_id == "host" and path.startswith("/"):
        exepath = os.path.realpath(path)  # the kernel's exe_file is the resolved binary
    ctime = mtime = None
    try:
        st = os.stat(exepath)
        ctime, mtime = st.st_ctime_ns, st.st_mtime_ns
    except OSError:
        pass
    cid, ctype = proc.container_id, proc.container_type
    cgroup = _read(en.procs.root / str(proc.pid) / "cgroup")
    if cgroup:
        cid, ctype = container_of(cgroup)
    return replace(proc, comm=rec.comm, exe=argv[0] if argv else filename, exepath=exepath,
                   args=tuple(argv[1:]), exe_from_memfd=memfd or path.startswith("memfd:"),
                   exe_ctime=ctime, exe_mtime=mtime, container_id=cid, container_type=ctype)


def _clone(en: Enricher, rec: Record, proc: Proc, ev: Ev) -> None:
    name = SYSCALL_BY_NR[rec.nr].name
    if name == "clone3":
        raw = item(rec, 0).ljust(8, b"\0")
        flags = struct.unpack_from("<Q", raw)[0]
    else:
        flags = rec.args[0] if name == "clone" else 0
    ev.add("res", rec.ret, errno_name(rec.ret) if rec.ret < 0 else None)
    ev.add("exe", proc.exe)
    ev.add("args", " ".join(proc.args))
    ev.add("flags", flags, render_flags(flags, CLONE_NS_FLAGS) or None)


def _chdir(en: Enricher, rec: Record, proc: Proc, ev: Ev) -> None:
    _res_param(ev, rec)
    if SYSCALL_BY_NR[rec.nr].name == "fchdir":
        info = _fd_param(en, proc, ev, "fd", s32(rec.args[0]))
        target = info.name if info is not None else None
    else:
        target = _path_param(en, proc, ev, "path", cstr(item(rec, 0)), AT_FDCWD)
    if rec.ret == 0 and target:
        ev.proc = en.procs.procs[proc.pid] = replace(proc, cwd=target)


# Path syscalls: (param names for items, index of the dirfd argument for each item or None).
_PATHS: dict[str, tuple[tuple[str, int | None], ...]] = {
    "unlink": (("path", None),), "unlinkat": (("name", 0),), "rmdir": (("path", None),),
    "mkdir": (("path", None),), "mkdirat": (("path", 0),),
    "rename": (("oldpath", None), ("newpath", None)),
    "renameat": (("oldpath", 0), ("newpath", 2)), "renameat2": (("oldpath", 0), ("newpath", 2)),
    "link": (("oldpath", None), ("newpath", None)),
    "linkat": (("oldpath", 0), ("newpath", 2)),
    "symlink": (("target", -1), ("linkpath", None)),
    "symlinkat": (("target", -1), ("linkpath", 1)),
    "chmod": (("filename", None),), "fchmodat": (("filename", 0),),
    "fchmodat2": (("filename", 0),), "umount2": (("name", None),),
    "mount": (("dev", -1), ("dir", None), ("type", -1)),
    "pivot_root": (("new_root", None), ("put_old", None)),
    "init_module": (("uargs", -1),), "finit_module": (("uargs", -1),),
}
_MODE_ARG = {"mkdir": 1, "mkdirat": 2, "chmod": 1, "fchmodat": 2, "fchmodat2": 2, "fchmod": 1}


def _paths(en: Enricher, rec: Record, proc: Proc, ev: Ev) -> None:
    name = SYSCALL_BY_NR[rec.nr].name
    _res_param(ev, rec)
    for index, (param, dirfd_arg) in enumerate(_PATHS[name]):
        raw = cstr(item(rec, index))
        if dirfd_arg == -1:  # a plain string (symlink target, fs type): not resolved
            ev.add(param, raw)
            continue
        dirfd = AT_FDCWD if dirfd_arg is None else s32(rec.args[dirfd_arg])
        _path_param(en, proc, ev, param, raw, dirfd)
    if name in _MODE_ARG:
        mode = rec.args[_MODE_ARG[name]] & 0o7777
        ev.add("mode", f"0{mode:o}", render_flags(mode, MODE_NAMES) or None)
    if name == "finit_module":
        ev.fd_num = s32(rec.args[0])
        ev.fd = _fd_param(en, proc, ev, "fd", ev.fd_num)


def _fchmod(en: Enricher, rec: Record, proc: Proc, ev: Ev) -> None:
    _res_param(ev, rec)
    ev.fd_num = s32(rec.args[0])
    ev.fd = _fd_param(en, proc, ev, "fd", ev.fd_num)
    mode = rec.args[1] & 0o7777
    ev.add("mode", f"0{mode:o}", render_flags(mode, MODE_NAMES) or None)


def _ptrace(en: Enricher, rec: Record, proc: Proc, ev: Ev) -> None:
    _res_param(ev, rec)
    request = rec.args[0] & 0xFFFFFFFF
    ev.add("request", request, PTRACE_REQUESTS.get(request, "PTRACE_UNKNOWN"))
    ev.add("pid", s32(rec.args[1]))


def _ids(en: Enricher, rec: Record, proc: Proc, ev: Ev) -> None:
    name = SYSCALL_BY_NR[rec.nr].name
    _res_param(ev, rec)
    kind = "uid" if "uid" in name else "gid"
    prefixes = {"set": ("",), "setre": ("r", "e"), "setres": ("r", "e", "s")}
    for i, prefix in enumerate(prefixes[name[: -len(kind)]]):
        ev.add(prefix + kind, s32(rec.args[i]) & 0xFFFFFFFF)


def _ns(en: Enricher, rec: Record, proc: Proc, ev: Ev) -> None:
    _res_param(ev, rec)
    if SYSCALL_BY_NR[rec.nr].name == "setns":
        ev.fd_num = s32(rec.args[0])
        ev.fd = _fd_param(en, proc, ev, "fd", ev.fd_num)
        ev.add("nstype", rec.args[1], render_flags(rec.args[1], CLONE_NS_FLAGS) or None)
    else:
        ev.add("flags", rec.args[0], render_flags(rec.args[0], CLONE_NS_FLAGS) or None)


def _bpf(en: Enricher, rec: Record, proc: Proc, ev: Ev) -> None:
    cmd = rec.args[0] & 0xFFFFFFFF
    _res_param(ev, rec)
    ev.add("cmd", cmd, BPF_COMMANDS[cmd] if cmd < len(BPF_COMMANDS) else None)


def _generic(en: Enricher, rec: Record, proc: Proc, ev: Ev) -> None:
    _res_param(ev, rec)


HANDLERS: dict[str, Handler] = {
    **dict.fromkeys(("open", "openat", "openat2", "creat"), _open),
    "socket": _socket, "connect": _connect, "bind": _bind, "listen": _listen,
    "accept": _accept, "accept4": _accept, "dup": _dup, "dup2": _dup, "dup3": _dup,
    "close": _close, "memfd_create": _memfd, "execve": _execve, "execveat": _execve,
    **dict.fromkeys(("clone", "clone3", "fork", "vfork"), _clone),
    "chdir": _chdir, "fchdir": _chdir, **dict.fromkeys(_PATHS, _paths), "fchmod": _fchmod,
    "ptrace": _ptrace, "bpf": _bpf, "setns": _ns, "unshare": _ns,
    **dict.fromkeys(("setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid"), _ids),
}

_DISPATCH: dict[int, tuple[str, Handler]] = {
    spec.nr: (spec.name, HANDLERS.get(spec.name, _generic)) for spec in SYSCALL_BY_NR.values()
}

# ---- rows -> Arrow --------------------------------------------------------------------------

ARG_COLUMNS = tuple(c.name for c in COLUMN_BY_NAME.values() if c.name.startswith("evt.arg."))
_CATEGORY_NAMES = {"EC_IPC": "IPC"}
_IO_CATEGORIES = ("EC_IO_READ", "EC_IO_WRITE", "EC_IO_OTHER")


def category(evt_type: str, fd: FdInfo | None) -> str:
    """`evt.category`: the event table's, or for I/O events the fd's (file, net, IPC)."""
    key = (evt_type, fd.type if fd is not None else None)
    found = _CATEGORY_CACHE.get(key)
    if found is None:
        found = _CATEGORY_CACHE[key] = _category(evt_type, fd)
    return found


_CATEGORY_CACHE: dict[tuple[str, str | None], str] = {}


def _category(evt_type: str, fd: FdInfo | None) -> str:
    info = catalog.event_type_info(evt_type)
    cat = info.category if info is not None else ""
    if cat in _IO_CATEGORIES:
        if fd is None or fd.type is None:
            return "unknown"
        return "file" if fd.type in ("file", "directory") else "net" if fd.is_socket else "IPC"
    return _CATEGORY_NAMES.get(cat, cat[3:].lower() if cat else "other")


class RowBatch:
    """Rows accumulated between two writes; `to_table()` turns them into a trace table.

    `add` appends one tuple per row (the per-event cost is what bounds the capture rate);
    columns are built in bulk at `to_table`. Process and fd columns are built once per distinct
    process view / fd state of the batch and spread over the rows with `take`.
    """

    def __init__(self) -> None:
        self.rows: list[tuple[Any, ...]] = []
        self.params: list[list[tuple[str, str, str | None]]] = []
        self._proc_index: dict[tuple[int, str, int, int, int], int] = {}
        self._proc_rows: list[tuple[Any, ...]] = []
        self._procs: list[Proc] = []  # keeps every keyed Proc alive, so ids are not reused
        self._fd_index: dict[int, int] = {}
        self._fds: list[FdInfo] = []

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, en: Enricher, rec: Record, evt_type: str, wall: int, proc: Proc,
            ev: Ev) -> None:
        key = (id(proc), rec.comm, rec.tid, rec.uid, rec.gid)
        proc_index = self._proc_index.get(key)
        if proc_index is None:
            proc_index = self._proc_index[key] = len(self._proc_rows)
            self._proc_rows.append(proc_row(en, proc, rec))
            self._procs.append(proc)
        fd, fd_index = ev.fd, None
        if fd is not None:
            fd_index = self._fd_index.get(id(fd))
            if fd_index is None:
                fd_index = self._fd_index[id(fd)] = len(self._fds)
                self._fds.append(fd)
        self.rows.append((en.next_num, wall, evt_type, category(evt_type, fd), rec.cpu, rec.ret,
                          ev.opened, ev.fd_num, ev.name_changed if fd is not None else None,
                          proc_index, fd_index))
        self.params.append(ev.params)
        en.next_num += 1

    def to_table(self) -> pa.Table:
        schema = arrow_schema()
        n = len(self.rows)
        if not n:
            return schema.empty_table()
        (nums, times, types, cats, cpus, rets, opened, fd_nums, changed, proc_keys,
         fd_keys) = zip(*self.rows, strict=True)
        t = {name: schema.field(name).type for name in schema.names}
        arrays: dict[str, Any] = {
            "evt.num": pa.array(nums, t["evt.num"]), "evt.time": pa.array(times, t["evt.time"]),
            "evt.type": pa.array(types, t["evt.type"]),
            "evt.dir": pa.array(["<"] * n, t["evt.dir"]),  # exit events, entry args joined
            "evt.category": pa.array(cats, t["evt.category"]),
            "evt.cpu": pa.array(cpus, t["evt.cpu"]), "fd.num": pa.array(fd_nums, t["fd.num"]),
            "fd.name_changed": pa.array(changed, t["fd.name_changed"]),
        }
        arrays.update(_result_columns(rets, t))
        arrays.update(_open_columns(opened))
        arrays.update(_param_columns(self.params, t))
        procs = _rows_table(_PROC_COLUMNS, self._proc_rows, schema)
        arrays.update(_take(procs, list(proc_keys)))
        fds = _rows_table(_FD_COLUMNS, [fd_row(f) for f in self._fds], schema)
        arrays.update(_take(fds, list(fd_keys)))
        start = arrays.pop("_start_ns")
        arrays["proc.duration"] = pc.subtract(pa.array(times, pa.int64()), start)
        columns = [arrays.get(f.name, pa.nulls(n, f.type)) for f in schema]
        return pa.Table.from_arrays(columns, schema=schema)


def _result_columns(rets: tuple[int, ...], t: dict[str, pa.DataType]) -> dict[str, pa.Array]:
    names = {r: errno_name(r) for r in set(rets)}
    rawres = pa.array(rets, t["evt.rawres"])
    return {"evt.rawres": rawres, "evt.failed": pc.less(rawres, 0),
            "evt.res": pa.array([names[r] for r in rets], t["evt.res"])}


def _open_columns(opened: tuple[tuple[bool, bool, bool] | None, ...]) -> dict[str, pa.Array]:
    flags = [o or _NOT_OPENED for o in opened]
    read, write, execs = zip(*flags, strict=True)
    return {"evt.is_open_read": pa.array(read, pa.bool_()),
            "evt.is_open_write": pa.array(write, pa.bool_()),
            "evt.is_open_exec": pa.array(execs, pa.bool_())}


_NOT_OPENED = (False, False, False)


def _param_columns(params: list[list[tuple[str, str, str | None]]],
                   t: dict[str, pa.DataType]) -> dict[str, pa.Array]:
    """`evt.args` (Falco's `name=raw(resolved) ...`) and the `evt.arg.*` columns."""
    text: list[str] = []
    args: dict[str, list[str | None]] = {}
    n = len(params)
    for i, event in enumerate(params):
        line, named = _render_params(tuple(event))
        text.append(line)
        for column, value in named:
            values = args.get(column)
            if values is None:
                values = args[column] = [None] * n
            values[i] = value
    out = {"evt.args": pa.array(text, t["evt.args"])}
    out.update({name: pa.array(values, t[name]) for name, values in args.items()})
    return out


@functools.lru_cache(maxsize=1 << 16)
def _render_params(params: tuple[tuple[str, str, str | None], ...]
                   ) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The `evt.args` text and the (column, value) pairs of one event's parameters. Cached:
    the same parameters recur constantly (a process closing fd 3 on the same file)."""
    line = "".join([f"{k}={r}({v}) " if v else f"{k}={r} " for k, r, v in params])
    named = tuple((_ARG_COLUMN[k], v or r) for k, r, v in params if k in _ARG_COLUMN)
    return line, named


_ARG_COLUMN = {name[len("evt.arg."):]: name for name in ARG_COLUMNS}


def _rows_table(names: tuple[str, ...], rows: list[tuple[Any, ...]],
                schema: pa.Schema) -> pa.Table:
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    arrays = [pa.array(list(col), type=schema.field(name).type if name in schema.names
                       else pa.int64()) for name, col in zip(names, columns, strict=True)]
    return pa.Table.from_arrays(arrays, names=list(names))


def _take(table: pa.Table, keys: list[int | None]) -> dict[str, pa.ChunkedArray]:
    taken = table.take(pa.array(keys, type=pa.int32()))
    return {name: taken.column(name) for name in taken.column_names}


_PROC_COLUMNS = (
    "proc.pid", "proc.ppid", "proc.vpid", "proc.pvpid", "proc.sid", "proc.sname", "proc.vpgid",
    "proc.is_vpgid_leader", "proc.loginshellid", "proc.name", "proc.exe", "proc.exepath",
    "proc.args", "proc.cmdline", "proc.cwd", "proc.tty", "proc.pname", "proc.pcmdline",
    "proc.pexe", "proc.pexepath", "proc.aname", "proc.apid", "proc.aexe", "proc.aexepath",
    "proc.is_exe_from_memfd", "proc.exe_ino.ctime", "proc.exe_ino.mtime",
    "proc.exe_ino.ctime_duration_proc_start", "thread.tid", "thread.vtid", "thread.ismain",
    "user.uid", "user.name", "user.loginuid", "user.loginname", "group.gid", "group.name",
    "container.id", "container.type", "container.name", "_start_ns",
)


def proc_row(en: Enricher, proc: Proc, rec: Record) -> tuple[Any, ...]:
    """The values of _PROC_COLUMNS for one process as seen by one thread/user."""
    chain = en.procs.ancestors(proc)
    parent = chain[1] if len(chain) > 1 else None
    session = en.procs.procs.get(proc.sid) if proc.sid is not None else None
    shells = [p.pid for p in chain if p.comm in SHELLS]
    users, host = en.users, proc.container_id == "host"
    ctime_gap = (proc.start_ns - proc.exe_ctime
                 if proc.start_ns is not None and proc.exe_ctime is not None else None)
    return (
        proc.pid, proc.ppid, proc.vpid, parent.vpid if parent else None, proc.sid,
        session.comm if session else None, proc.pgid,
        proc.vpid == proc.pgid if proc.vpid is not None and proc.pgid is not None else None,
        shells[-1] if shells else None, rec.comm, proc.exe, proc.exepath, " ".join(proc.args),
        proc.cmdline, proc.cwd, proc.tty,
        parent.comm if parent else None, parent.cmdline if parent else None,
        parent.exe if parent else None, parent.exepath if parent else None,
        [p.comm for p in chain], [p.pid for p in chain], [p.exe for p in chain],
        [p.exepath for p in chain], proc.exe_from_memfd, proc.exe_ctime, proc.exe_mtime,
        ctime_gap, rec.tid, rec.tid if proc.vpid == proc.pid else None, rec.tid == proc.pid,
        rec.uid, users.users.get(rec.uid) if host else None,
        proc.loginuid, users.users.get(proc.loginuid) if proc.loginuid is not None else None,
        rec.gid, users.groups.get(rec.gid) if host else None,
        proc.container_id, proc.container_type, "host" if host else None, proc.start_ns,
    )


_FD_COLUMNS = (
    "fd.type", "fd.typechar", "fd.name", "fd.directory", "fd.filename", "fd.nameraw",
    "fd.sockfamily", "fd.l4proto", "fd.is_server", "fd.connected", "fd.cip", "fd.sip",
    "fd.lip", "fd.rip", "fd.cport", "fd.sport", "fd.lport", "fd.rport",
)


def fd_row(fd: FdInfo) -> tuple[Any, ...]:
    directory = filename = None
    if fd.type == "directory":
        directory = fd.name
    elif fd.type in ("file", None) and fd.name.startswith("/"):
        directory, filename = posixpath.split(fd.name)
    family = "ip" if fd.type in ("ipv4", "ipv6") else "unix" if fd.type == "unix" else None
    local, remote = fd.local, fd.remote
    client, server = (remote, local) if fd.is_server else (local, remote)
    ip = family == "ip"
    return (
        fd.type, fd.typechar, fd.name, directory, filename, fd.nameraw, family,
        fd.l4proto if ip else None, fd.is_server if fd.is_socket else None,
        fd.connected if fd.is_socket else None,
        client[0] if ip and client else None, server[0] if ip and server else None,
        local[0] if ip and local else None, remote[0] if ip and remote else None,
        client[1] if ip and client else None, server[1] if ip and server else None,
        local[1] if ip and local else None, remote[1] if ip and remote else None,
    )
