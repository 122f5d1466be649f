"""One handler per syscall family: update the process/fd state and collect the event's params.

A handler gets the enricher (its process and fd tables), the record, the process as it was
before the event, and an empty `Ev` to fill: the parameters as libsinsp renders them into
`evt.args` and `evt.arg.*` (name, raw value, resolved value), the fd the event is about, the
open flags, and the process after the event when it changed (execve, chdir). `DISPATCH` maps
syscall numbers to (name, handler); syscalls without a handler of their own get `_generic`
(just `res`).
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import struct
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from capture.bpf_render import SYSCALL_BY_NR
from capture.fd_table import FdInfo, endpoint_text, fd_kind, socket_fd, with_endpoints
from capture.probe import Record
from capture.proc_table import Proc, container_of, read_env
from capture.procfs import read_text
from capture.render_args import (
    AT_FDCWD,
    BPF_COMMANDS,
    CLONE_NS_FLAGS,
    F_DUPFD,
    F_DUPFD_CLOEXEC,
    F_SETFD,
    FCNTL_COMMANDS,
    FD_CLOEXEC,
    MODE_NAMES,
    O_CLOEXEC,
    O_DIRECTORY,
    PPM_O_CREAT,
    PPM_O_RDONLY,
    PPM_O_TMPFILE,
    PPM_O_WRONLY,
    PTRACE_REQUESTS,
    SOCKET_FAMILIES,
    cstr,
    errno_name,
    open_flags,
    parse_endpoint,
    parse_sockaddr,
    render_flags,
    s32,
)

if TYPE_CHECKING:
    from capture.enrich import Enricher


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


def item(rec: Record, index: int) -> bytes:
    """The record's `index`th payload item (b"" when the program sent fewer)."""
    return rec.items[index] if index < len(rec.items) else b""


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
    ev.add("addr", endpoint_text(addr[1:]) if addr and addr[0] != socket.AF_UNIX else
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
    base = en.procs.root / str(proc.pid)
    target = exepath
    if proc.container_id == "host" and path.startswith("/"):
        target = exepath = os.path.realpath(path)  # the kernel's exe_file is the resolved binary
    elif path.startswith("/"):
        target = f"{base}/root{path}"  # the container's file, while the process lives
    ctime = mtime = None
    euid, egid = proc.euid, proc.egid
    try:
        st = os.stat(target)
        ctime, mtime = st.st_ctime_ns, st.st_mtime_ns
        euid, egid = _exec_ids(target, st, euid, egid)
    except OSError:
        pass
    # The kernel's cgroup-v2 id, when it names a container, is what the execve ran in. Else
    # /proc: a short command is often gone by now, and the cgroups it forked into are then its
    # parent's (a runtime's shim joins the container, then starts the command).
    found = en.cgroups.container(rec.cgroup_id)
    if found is None:
        cgroup = read_text(base / "cgroup") or read_text(en.procs.root / str(proc.ppid)
                                                         / "cgroup")
        found = container_of(cgroup) if cgroup else None
    cid, ctype = found or (proc.container_id, proc.container_type)
    # The program does not copy envp: the environment is read back from /proc, which works
    # while the process still runs when its execve is enriched (None otherwise).
    return replace(proc, comm=rec.comm, exe=argv[0] if argv else filename, exepath=exepath,
                   args=tuple(argv[1:]), exe_from_memfd=memfd or path.startswith("memfd:"),
                   exe_ctime=ctime, exe_mtime=mtime, container_id=cid, container_type=ctype,
                   euid=euid, egid=egid, env=read_env(base))


def _exec_ids(path: str, st: os.stat_result, euid: int | None, egid: int | None
              ) -> tuple[int | None, int | None]:
    """The effective ids after executing `path`: a set-user-ID file runs as its owner, a
    set-group-ID (and group-executable) one as its group, unless its mount is nosuid."""
    suid = bool(st.st_mode & stat.S_ISUID)
    sgid = st.st_mode & (stat.S_ISGID | stat.S_IXGRP) == stat.S_ISGID | stat.S_IXGRP
    if (suid or sgid) and not os.statvfs(path).f_flag & os.ST_NOSUID:
        euid = st.st_uid if suid else euid
        egid = st.st_gid if sgid else egid
    return euid, egid


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


_ID_PARAMS = {"set": ("",), "setre": ("r", "e"), "setres": ("r", "e", "s")}
UNCHANGED_ID = 0xFFFFFFFF  # -1: "leave this id as it is"


def _ids(en: Enricher, rec: Record, proc: Proc, ev: Ev) -> None:
    name = SYSCALL_BY_NR[rec.nr].name
    _res_param(ev, rec)
    kind = "uid" if "uid" in name else "gid"
    params = _ID_PARAMS[name[: -len(kind)]]
    values = [rec.args[i] & 0xFFFFFFFF for i in range(len(params))]
    for prefix, value in zip(params, values, strict=True):
        ev.add(prefix + kind, value)
    if rec.ret == 0:
        # The effective id is the argument that sets it (setuid's only one, setre/setres's
        # second) unless -1; the real ids are those the record was taken with, at exit.
        effective = values[0] if len(values) == 1 else values[1]
        if kind == "uid":
            euid = proc.euid if effective == UNCHANGED_ID else effective
            proc = replace(proc, ruid=rec.uid, euid=euid)
        else:
            egid = proc.egid if effective == UNCHANGED_ID else effective
            proc = replace(proc, rgid=rec.gid, egid=egid)
        ev.proc = en.procs.procs[proc.pid] = proc


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
    _res_param(ev, rec)
    # libsinsp names a pipe "" (its inode is a param, which the program does not copy)
    _add_pair(en, proc, ev, _fd_pair(rec), fd_kind("pipe", cloexec=bool(flags & O_CLOEXEC)))
    if rec.nr == NR_PIPE2:
        ev.add("flags", *open_flags(flags))


def _socketpair(en: Enricher, rec: Record, proc: Proc, ev: Ev) -> None:
    family, sock_type, proto = (s32(x) for x in rec.args[:3])
    _res_param(ev, rec)
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
    _res_param(ev, rec)
    _fd_param(en, proc, ev, "fd", fd)
    ppm, cmd_name = FCNTL_COMMANDS.get(cmd, (0, "F_UNKNOWN"))
    ev.add("cmd", ppm, cmd_name)
    if res >= 0 and info is not None:
        if cmd in (F_DUPFD, F_DUPFD_CLOEXEC):
            info = table[res] = replace(info, cloexec=cmd == F_DUPFD_CLOEXEC)
        elif cmd == F_SETFD and info.cloexec != bool(rec.args[2] & FD_CLOEXEC):
            info = table[fd] = replace(info, cloexec=not info.cloexec)
    ev.fd_num, ev.fd = fd, info


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
    # Not in capture/bpf_render.py's table yet (no program copies their int[2] result): they
    # take effect when it lists them.
    "pipe": _pipe, "pipe2": _pipe, "socketpair": _socketpair, "fcntl": _fcntl,
}
# Handlers that keep the process table right: they run even for processes a --container
# selection leaves out, since those can be the ancestors of selected ones (or join a container
# by exec).
PROC_STATE_SYSCALLS = frozenset({
    "execve", "execveat", "chdir", "fchdir",
    "setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid",
})

DISPATCH: dict[int, tuple[str, Handler]] = {
    spec.nr: (spec.name, HANDLERS.get(spec.name, _generic)) for spec in SYSCALL_BY_NR.values()
}
