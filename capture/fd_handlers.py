"""The handlers that keep the fd table right: every syscall that closes fds or returns a new
one (dup*, fcntl, close, close_range, pipe*, socketpair, memfd_create, eventfd, signalfd,
timerfd_create, inotify_init, epoll_create, pidfd_open, pidfd_getfd, io_uring_setup,
userfaultfd, and recvmsg/recvmmsg when they received fds with SCM_RIGHTS). A syscall that
returns fd N replaces whatever the table held for N: an entry the capture failed to remove (an
fd closed by a call it did not see) must not stand for the new fd.
"""

from __future__ import annotations

import struct
from dataclasses import replace
from typing import TYPE_CHECKING

from capture.bpf_render import SYSCALL_BY_NR
from capture.event_params import Ev, Handler, fd_param, item, res_param
from capture.fd_table import FdInfo, fd_kind, socket_fd
from capture.probe import Record
from capture.proc_table import Proc
from capture.render_args import (
    F_DUPFD,
    F_DUPFD_CLOEXEC,
    F_SETFD,
    FCNTL_COMMANDS,
    FD_CLOEXEC,
    O_CLOEXEC,
    SOCKET_FAMILIES,
    cstr,
    errno_name,
    open_flags,
    render_flags,
    s32,
)

if TYPE_CHECKING:
    from capture.enrich import Enricher


def _new_fd(table: dict[int, FdInfo], fd: int, info: FdInfo | None) -> None:
    """A syscall returned `fd`: whatever the table held for that number is gone. An fd copied
    from one we do not know is unknown too (libsinsp leaves it out as well)."""
    if info is None:
        table.pop(fd, None)
    else:
        table[fd] = info


def _dup(en: Enricher, rec: Record, proc: Proc, ev: Ev) -> None:
    old, res = s32(rec.args[0]), s32(rec.ret)
    table = en.fds.of(proc.pid)
    info = table.get(old)
    if res >= 0 and res != old:  # dup2(fd, fd) changes nothing
        cloexec = SYSCALL_BY_NR[rec.nr].name == "dup3" and bool(rec.args[2] & O_CLOEXEC)
        _new_fd(table, res, replace(info, cloexec=cloexec) if info is not None else None)
    ev.add("res", res, errno_name(res) if res < 0 else None)
    fd_param(en, proc, ev, "oldfd", old)
    if SYSCALL_BY_NR[rec.nr].name != "dup":
        ev.add("newfd", s32(rec.args[1]))
    ev.fd_num, ev.fd = old, info


def _close(en: Enricher, rec: Record, proc: Proc, ev: Ev) -> None:
    fd = s32(rec.args[0])
    table = en.fds.of(proc.pid)
    info = table.get(fd)
    res_param(ev, rec)
    fd_param(en, proc, ev, "fd", fd)
    if rec.ret == 0:
        table.pop(fd, None)
    ev.fd_num, ev.fd = fd, info


CLOSE_RANGE_UNSHARE, CLOSE_RANGE_CLOEXEC = 1 << 1, 1 << 2


def _close_range(en: Enricher, rec: Record, proc: Proc, ev: Ev) -> None:
    """close_range(first, last, flags): closes the fds in [first, last], or with
    CLOSE_RANGE_CLOEXEC marks them close-on-exec (closed at the next execve)."""
    first, last, flags = (rec.args[i] & 0xFFFFFFFF for i in range(3))
    res_param(ev, rec)
    ev.add("first", first)
    ev.add("last", last)
    ev.add("flags", flags, render_flags(flags, CLOSE_RANGE_FLAGS) or None)
    if rec.ret != 0:
        return
    table = en.fds.of(proc.pid)
    for fd in [fd for fd in table if first <= fd <= last]:
        if flags & CLOSE_RANGE_CLOEXEC:
            table[fd] = replace(table[fd], cloexec=True)
        else:
            del table[fd]


CLOSE_RANGE_FLAGS = (("CLOSE_RANGE_UNSHARE", CLOSE_RANGE_UNSHARE),
                     ("CLOSE_RANGE_CLOEXEC", CLOSE_RANGE_CLOEXEC))

# Syscalls that return one new fd of a kind: (fd.type, names of their arguments as params,
# the argument holding the flags whose O_CLOEXEC bit marks the fd close-on-exec, or ALWAYS).
ALWAYS = -1
_NEW_FD_CALLS: dict[str, tuple[str, tuple[str, ...], int | None]] = {
    "eventfd": ("event", ("initval",), None),
    "eventfd2": ("event", ("initval", "flags"), 1),
    "signalfd": ("signalfd", ("fd", "mask"), None),
    "signalfd4": ("signalfd", ("fd", "mask", "sizemask", "flags"), 3),
    "timerfd_create": ("timerfd", ("clockid", "flags"), 1),
    "inotify_init": ("inotify", (), None),
    "inotify_init1": ("inotify", ("flags",), 0),
    "epoll_create": ("eventpoll", ("size",), None),
    "epoll_create1": ("eventpoll", ("flags",), 0),
    "pidfd_open": ("pidfd", ("pid", "flags"), ALWAYS),
    "pidfd_getfd": ("unknown", ("pidfd", "targetfd", "flags"), ALWAYS),
    "io_uring_setup": ("io_uring", ("entries",), ALWAYS),
    "userfaultfd": ("userfaultfd", ("flags",), 0),
}


def _new_anon_fd(en: Enricher, rec: Record, proc: Proc, ev: Ev) -> None:
    """eventfd, signalfd, timerfd_create, inotify_init, epoll_create, pidfd_open, pidfd_getfd,
    io_uring_setup, userfaultfd: one new fd (anonymous: no name)."""
    kind, params, cloexec_arg = _NEW_FD_CALLS[SYSCALL_BY_NR[rec.nr].name]
    fd = s32(rec.ret)
    cloexec = cloexec_arg == ALWAYS or (cloexec_arg is not None
                                        and bool(rec.args[cloexec_arg] & O_CLOEXEC))
    info = fd_kind(kind, cloexec=cloexec)
    if fd >= 0:
        en.fds.of(proc.pid)[fd] = info
    ev.add("res", fd, info.resolved_char if fd >= 0 else errno_name(fd))
    for index, param in enumerate(params):
        ev.add(param, s32(rec.args[index]) if param.endswith("fd") else rec.args[index])
    ev.fd_num, ev.fd = fd, info if fd >= 0 else None


def _memfd(en: Enricher, rec: Record, proc: Proc, ev: Ev) -> None:
    fd, name = s32(rec.ret), cstr(item(rec, 0))
    info = fd_kind("memfd", "memfd:" + name, cloexec=bool(rec.args[1] & 1))
    if fd >= 0:
        en.fds.of(proc.pid)[fd] = info
    ev.add("fd", fd, info.resolved_char + info.name if fd >= 0 else errno_name(fd))
    ev.add("name", name)
    ev.add("flags", rec.args[1])
    ev.fd_num, ev.fd = fd, info if fd >= 0 else None


# x86_64 numbers: pipe and pipe2 differ by their flags argument.
NR_PIPE2 = 293


def _fd_pair(rec: Record) -> tuple[int, int] | None:
    """The two fds a successful pipe/pipe2/socketpair wrote (its int[2], copied as item 0)."""
    raw = item(rec, 0)
    if rec.ret != 0 or len(raw) < 8:
        return None
    fd1, fd2 = struct.unpack_from("<ii", raw)
    return fd1, fd2


def _add_pair(en: Enricher, proc: Proc, ev: Ev, pair: tuple[int, int] | None,
              info: FdInfo) -> None:
    """Both ends in the fd table, and the `fd1`/`fd2` params (`3(<p>)`, libsinsp's names)."""
    if pair is not None:
        table = en.fds.of(proc.pid)
        table[pair[0]] = table[pair[1]] = info
        ev.fd = info
    for param, fd in zip(("fd1", "fd2"), pair or (-1, -1), strict=True):
        ev.add(param, fd, info.resolved_char + info.name if pair is not None else None)


def _pipe(en: Enricher, rec: Record, proc: Proc, ev: Ev) -> None:
    flags = rec.args[1] & 0xFFFFFFFF if rec.nr == NR_PIPE2 else 0
    res_param(ev, rec)
    # libsinsp names a pipe "" (its inode is a param, which the program does not copy)
    _add_pair(en, proc, ev, _fd_pair(rec), fd_kind("pipe", cloexec=bool(flags & O_CLOEXEC)))
    if rec.nr == NR_PIPE2:
        ev.add("flags", *open_flags(flags))


def _socketpair(en: Enricher, rec: Record, proc: Proc, ev: Ev) -> None:
    family, sock_type, proto = (s32(x) for x in rec.args[:3])
    res_param(ev, rec)
    info = socket_fd(family, sock_type, cloexec=bool(sock_type & O_CLOEXEC))
    _add_pair(en, proc, ev, _fd_pair(rec), info)
    ev.add("domain", family, SOCKET_FAMILIES.get(family))
    ev.add("type", sock_type)
    ev.add("proto", proto)


def _fcntl(en: Enricher, rec: Record, proc: Proc, ev: Ev) -> None:
    """F_DUPFD/F_DUPFD_CLOEXEC add an fd as libsinsp does; F_SETFD keeps the close-on-exec
    flag right, so that execve drops the fds the kernel drops."""
    fd, cmd, res = s32(rec.args[0]), rec.args[1] & 0xFFFFFFFF, s32(rec.ret)
    table = en.fds.of(proc.pid)
    info = table.get(fd)
    res_param(ev, rec)
    fd_param(en, proc, ev, "fd", fd)
    ppm, cmd_name = FCNTL_COMMANDS.get(cmd, (0, "F_UNKNOWN"))
    ev.add("cmd", ppm, cmd_name)
    if res >= 0 and cmd in (F_DUPFD, F_DUPFD_CLOEXEC):
        if info is not None:
            info = replace(info, cloexec=cmd == F_DUPFD_CLOEXEC)
        _new_fd(table, res, info)
    elif (res >= 0 and info is not None and cmd == F_SETFD
          and info.cloexec != bool(rec.args[2] & FD_CLOEXEC)):
        info = table[fd] = replace(info, cloexec=not info.cloexec)
    ev.fd_num, ev.fd = fd, info


MSG_CMSG_CLOEXEC = 0x40000000  # recv(m)msg's flag: the fds it receives are close-on-exec


def _receive_fds(en: Enricher, rec: Record, proc: Proc, flags: int) -> None:
    """The fds received with SCM_RIGHTS (item 0: their numbers, as ints) by a recvmsg or one
    message of a recvmmsg. Each replaces what the table held for its number, read from
    /proc/PID/fd/N as libsinsp's parser does for both: the kernel sends nothing else about
    them."""
    raw = item(rec, 0)
    table = en.fds.of(proc.pid)
    cloexec = bool(flags & MSG_CMSG_CLOEXEC)
    for received in struct.unpack_from(f"<{len(raw) // 4}i", raw):
        table[received] = en.fds.read_fd(proc.pid, received, cloexec)


def _recvmsg(en: Enricher, rec: Record, proc: Proc, ev: Ev) -> None:
    """recvmsg(fd, msg, flags), recorded only when it received fds with SCM_RIGHTS. The row's fd
    is the socket received on."""
    fd, res = s32(rec.args[0]), s32(rec.ret)
    if res >= 0:
        _receive_fds(en, rec, proc, rec.args[2])
    info = en.fds.of(proc.pid).get(fd)
    res_param(ev, rec)
    if res >= 0:
        ev.add("size", res)
    ev.add("tuple", info.name if info is not None else "")
    fd_param(en, proc, ev, "fd", fd)
    ev.fd_num, ev.fd = fd, info


def _recvmmsg(en: Enricher, rec: Record, proc: Proc, ev: Ev) -> None:
    """recvmmsg(fd, msgvec, vlen, flags, timeout): one record per message that received fds
    with SCM_RIGHTS (the kernel sends no other), as libsinsp's driver sends one event per
    message: ret, and so res and size, are that message's msg_len (its parameters in libsinsp's
    order). The row's fd is the socket received on."""
    fd, size = s32(rec.args[0]), rec.ret & 0xFFFFFFFF
    _receive_fds(en, rec, proc, rec.args[3])
    info = en.fds.of(proc.pid).get(fd)
    ev.add("res", size)
    fd_param(en, proc, ev, "fd", fd)
    ev.add("size", size)
    ev.add("tuple", info.name if info is not None else "")
    ev.fd_num, ev.fd = fd, info


FD_HANDLERS: dict[str, Handler] = {
    "dup": _dup, "dup2": _dup, "dup3": _dup, "close": _close, "close_range": _close_range,
    "memfd_create": _memfd, "pipe": _pipe, "pipe2": _pipe, "socketpair": _socketpair,
    "fcntl": _fcntl, "recvmsg": _recvmsg, "recvmmsg": _recvmmsg,
    **dict.fromkeys(_NEW_FD_CALLS, _new_anon_fd),
}
