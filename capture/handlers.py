"""One handler per syscall family: update the process/fd state and collect the event's params.

A handler gets the enricher (its process and fd tables), the record, the process as it was
before the event, and an empty `Ev` to fill: the parameters as libsinsp renders them into
`evt.args` and `evt.arg.*` (name, raw value, resolved value), the fd the event is about, the
open flags, and the process after the event when it changed (execve, chdir). `DISPATCH` maps
syscall numbers to (name, handler); syscalls without a handler of their own get `_generic`
(just `res`). The handlers of fd-creating and fd-closing syscalls are in capture/fd_handlers.py.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import struct
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from capture.bpf_render import PROC_STATE_SYSCALLS, SYSCALL_BY_NR
from capture.event_params import Ev, Handler, fd_param, item, res_param
from capture.fd_handlers import FD_HANDLERS, NR_PIPE2
from capture.fd_table import FdInfo, endpoint_text, fd_kind, socket_fd, with_endpoints
from capture.probe import Record
from capture.proc_table import Proc, container_of, read_env
from capture.procfs import read_text
from capture.render_args import (
    AT_FDCWD,
    BPF_COMMANDS,
    CLONE_NS_FLAGS,
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

__all__ = ["DISPATCH", "HANDLERS", "NR_PIPE2", "PROC_STATE_SYSCALLS", "Ev", "exec_env", "item"]


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
    res_param(ev, rec)
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
    res_param(ev, rec)
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
    res_param(ev, rec)
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
        cloexec = SYSCALL_BY_NR[rec.nr].name == "accept4" and bool(rec.args[3] & O_CLOEXEC)
        info = with_endpoints(replace(base, cloexec=cloexec), base.local,
                              peer[1:] if peer else None, server=True)
        table[fd] = info
    ev.add("fd", fd, info.resolved_char + info.name if info is not None else errno_name(fd))
    ev.add("tuple", info.name if info is not None else "")
    ev.fd_num, ev.fd = fd, info


def _execve(en: Enricher, rec: Record, proc: Proc, ev: Ev) -> None:
    pending = en.exec_args.pop(rec.tid, None)
    filename = cstr(item(pending, 0)) if pending else ""
    argv = _strings(item(pending, 1)) if pending else []
    res_param(ev, rec)
    if rec.ret == 0:
        proc = _exec_proc(en, rec, proc, filename, argv, pending)
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


def _strings(raw: bytes) -> list[str]:
    """NUL-terminated strings back to back (argv, envp as the program copies them)."""
    return [a.decode("utf-8", "replace") for a in raw.split(b"\0")[:-1]]


def exec_env(pending: Record | None, base: Path) -> str | None:
    """proc.env after an execve: the envp the program copied (item 2), when it copied all of it
    (item 3 is b"\1"); else /proc/PID/environ while the process lives (the whole environment,
    as libsinsp reads a large one), else the part copied (None when nothing was)."""
    copied = item(pending, 2) if pending is not None else b""
    complete = pending is not None and item(pending, 3) == b"\1"
    if complete:
        return " ".join(_strings(copied))
    full = read_env(base)
    # No item 3 (the program always sends its one byte): a record of the layout before envp,
    # as a ring-buffer frame decodes it (four items, empty) or as a Record holds it (two).
    if full is not None or pending is None or not item(pending, 3):
        return full
    return " ".join(_strings(copied))


SHEBANG_BYTES = 256  # what the kernel reads of a script to find its interpreter (BINPRM_BUF_SIZE)


def script_interpreter(path: str) -> str | None:
    """The interpreter a `#!` script at `path` names (binfmt_script: the first word after `#!`,
    spaces and tabs skipped), or None for anything else or an unreadable file."""
    try:
        with open(path, "rb") as f:
            head = f.read(SHEBANG_BYTES)
    except OSError:
        return None
    if not head.startswith(b"#!"):
        return None
    line = head[2:].split(b"\n", 1)[0].lstrip(b" \t")
    word = line.split(None, 1)[0] if line.strip() else b""
    return os.fsdecode(word) or None


def _exec_proc(en: Enricher, rec: Record, proc: Proc, filename: str, argv: list[str],
               pending: Record | None) -> Proc:
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
    # A script runs its interpreter: the kernel's exe_file (Falco's proc.exepath) is that.
    interpreter = script_interpreter(target) if not memfd else None
    if interpreter is not None:
        if not interpreter.startswith("/"):  # the kernel opens it relative to the cwd
            interpreter = os.path.join(proc.cwd or "/", interpreter)
        if proc.container_id == "host":
            target = exepath = os.path.realpath(interpreter)
        else:
            exepath, target = interpreter, f"{base}/root{interpreter}"
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
    return replace(proc, comm=rec.comm, exe=argv[0] if argv else filename, exepath=exepath,
                   args=tuple(argv[1:]), exe_from_memfd=memfd or path.startswith("memfd:"),
                   exe_ctime=ctime, exe_mtime=mtime, container_id=cid, container_type=ctype,
                   euid=euid, egid=egid, env=exec_env(pending, base))


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
    res_param(ev, rec)
    if SYSCALL_BY_NR[rec.nr].name == "fchdir":
        info = fd_param(en, proc, ev, "fd", s32(rec.args[0]))
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
    res_param(ev, rec)
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
        ev.fd = fd_param(en, proc, ev, "fd", ev.fd_num)


def _fchmod(en: Enricher, rec: Record, proc: Proc, ev: Ev) -> None:
    res_param(ev, rec)
    ev.fd_num = s32(rec.args[0])
    ev.fd = fd_param(en, proc, ev, "fd", ev.fd_num)
    mode = rec.args[1] & 0o7777
    ev.add("mode", f"0{mode:o}", render_flags(mode, MODE_NAMES) or None)


def _ptrace(en: Enricher, rec: Record, proc: Proc, ev: Ev) -> None:
    res_param(ev, rec)
    request = rec.args[0] & 0xFFFFFFFF
    ev.add("request", request, PTRACE_REQUESTS.get(request, "PTRACE_UNKNOWN"))
    ev.add("pid", s32(rec.args[1]))


_ID_PARAMS = {"set": ("",), "setre": ("r", "e"), "setres": ("r", "e", "s")}
UNCHANGED_ID = 0xFFFFFFFF  # -1: "leave this id as it is"


def _ids(en: Enricher, rec: Record, proc: Proc, ev: Ev) -> None:
    name = SYSCALL_BY_NR[rec.nr].name
    res_param(ev, rec)
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
    res_param(ev, rec)
    if SYSCALL_BY_NR[rec.nr].name == "setns":
        ev.fd_num = s32(rec.args[0])
        ev.fd = fd_param(en, proc, ev, "fd", ev.fd_num)
        ev.add("nstype", rec.args[1], render_flags(rec.args[1], CLONE_NS_FLAGS) or None)
    else:
        ev.add("flags", rec.args[0], render_flags(rec.args[0], CLONE_NS_FLAGS) or None)


# bpf() commands that return a new fd (a map, program, link, BTF object, iterator, token): the
# kernel always makes those close-on-exec.
BPF_FD_COMMANDS = frozenset({0, 5, 7, 13, 14, 17, 18, 19, 28, 30, 33, 36})


def _bpf(en: Enricher, rec: Record, proc: Proc, ev: Ev) -> None:
    cmd = rec.args[0] & 0xFFFFFFFF
    res_param(ev, rec)
    ev.add("cmd", cmd, BPF_COMMANDS[cmd] if cmd < len(BPF_COMMANDS) else None)
    fd = s32(rec.ret)
    if cmd in BPF_FD_COMMANDS and fd >= 0:
        ev.fd_num = fd
        ev.fd = en.fds.of(proc.pid)[fd] = fd_kind("bpf", cloexec=True)


def _generic(en: Enricher, rec: Record, proc: Proc, ev: Ev) -> None:
    res_param(ev, rec)


HANDLERS: dict[str, Handler] = {
    **dict.fromkeys(("open", "openat", "openat2", "creat"), _open),
    "socket": _socket, "connect": _connect, "bind": _bind, "listen": _listen,
    "accept": _accept, "accept4": _accept, "execve": _execve, "execveat": _execve,
    **dict.fromkeys(("clone", "clone3", "fork", "vfork"), _clone),
    "chdir": _chdir, "fchdir": _chdir, **dict.fromkeys(_PATHS, _paths), "fchmod": _fchmod,
    "ptrace": _ptrace, "bpf": _bpf, "setns": _ns, "unshare": _ns,
    **dict.fromkeys(("setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid"), _ids),
    **FD_HANDLERS,
}

# PROC_STATE_SYSCALLS (capture/bpf_render.py): the handlers that keep the process table right,
# run even for processes a --container selection leaves out, since those can be the ancestors of
# selected ones (or join a container by exec). The kernel's container filter lets them through.

DISPATCH: dict[int, tuple[str, Handler]] = {
    spec.nr: (spec.name, HANDLERS.get(spec.name, _generic)) for spec in SYSCALL_BY_NR.values()
}
