"""Render syscall arguments the way libsinsp does for `evt.args` and `evt.arg.*`.

Pure functions and tables, no state: errno names for `evt.res`, open flags as
`O_RDONLY|O_CREAT` (libsinsp's table order and algorithm), chmod modes, socket families, ptrace
requests, bpf commands, namespace clone flags, and the decoding of raw register values and copied
user buffers (signed ints, C strings, sockaddrs, the local endpoint the program copies).
"""

from __future__ import annotations

import errno
import functools
import socket
import struct
from collections.abc import Iterable

AT_FDCWD = -100

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

# fcntl commands: Linux value -> (PPM value, name), as the driver maps and libsinsp renders them.
FCNTL_COMMANDS: dict[int, tuple[int, str]] = {
    0: (1, "F_DUPFD"), 1: (2, "F_GETFD"), 2: (3, "F_SETFD"), 3: (4, "F_GETFL"),
    4: (5, "F_SETFL"), 5: (6, "F_GETLK"), 6: (8, "F_SETLK"), 7: (9, "F_SETLKW"),
    8: (10, "F_SETOWN"), 9: (12, "F_GETOWN"), 10: (13, "F_SETSIG"), 11: (15, "F_GETSIG"),
    15: (21, "F_SETOWN_EX"), 16: (22, "F_GETOWN_EX"), 36: (30, "F_OFD_GETLK"),
    37: (31, "F_OFD_SETLK"), 38: (32, "F_OFD_SETLKW"), 1024: (23, "F_SETLEASE"),
    1025: (24, "F_GETLEASE"), 1026: (27, "F_NOTIFY"), 1029: (25, "F_CANCELLK"),
    1030: (26, "F_DUPFD_CLOEXEC"), 1031: (28, "F_SETPIPE_SZ"), 1032: (29, "F_GETPIPE_SZ"),
}
F_DUPFD, F_SETFD, F_DUPFD_CLOEXEC = 0, 2, 1030
FD_CLOEXEC = 1


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
