"""Render the capture's BPF C text (capture/bpf_program.c) from options: a pure function.

The template's `@NAME@` placeholders are filled here and nowhere else, so what the kernel runs
can be printed (`capture record --print-bpf`) and tested without root. This module also owns the
syscall table the program is rendered from: each syscall's number and which of its arguments
point at user memory the exit probe must copy (paths, sockaddrs, small structs), and the entry
filter that drops the calls of a selected syscall nothing needs (fcntl's commands other than
F_DUPFD, F_DUPFD_CLOEXEC and F_SETFD; recvmsg calls and recvmmsg messages that received no fds
with SCM_RIGHTS). The userspace decoder reads the record items back with the same table.

Only x86_64 syscall numbers are known for now; `arch_supported()` says so before anything loads.
"""

from __future__ import annotations

import platform
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

TEMPLATE_PATH = Path(__file__).with_name("bpf_program.c")
_SHORT_ID = re.compile(r"[0-9a-f]{12}")
PLACEHOLDER = re.compile(r"@([A-Z][A-Z0-9_]*)@")
SUPPORTED_ARCH = "x86_64"
TASK_COMM_LEN = 16
N_ITEMS = 4  # payload items per record (N_ITEMS in the C)

# Item kinds: what one payload item of a record holds.
STR = "str"  # a NUL-terminated user string (path, name)
SOCKADDR = "sockaddr"  # a sockaddr whose length is another argument
SOCKADDR_PTRLEN = "sockaddr_ptrlen"  # a sockaddr whose length is in user memory (accept)
BYTES = "bytes"  # a fixed-size user struct (open_how, clone_args)
LOCAL = "local"  # connect's local endpoint (route lookups and TCP states, see bpf_program.c)
SCM_RIGHTS = "scm_rights"  # the int fds a recvmsg received (its msghdr's control data)


class RenderError(ValueError):
    """Options the program cannot be rendered from; the message says which and why."""


@dataclass(frozen=True)
class Item:
    """One payload item: what it is and which syscall argument(s) it comes from."""

    kind: str
    arg: int = -1  # the argument holding the pointer
    size_arg: int = -1  # SOCKADDR: the length argument; SOCKADDR_PTRLEN: the length pointer
    size: int = 0  # BYTES: how many bytes


@dataclass(frozen=True)
class SyscallSpec:
    name: str
    nr: int
    items: tuple[Item, ...] = ()


def _s(*args: int) -> tuple[Item, ...]:
    return tuple(Item(STR, a) for a in args)


_FD_PAIR = (Item(BYTES, 0, size=8),)  # the int[2] that pipe/pipe2 fill (socketpair: arg 3)


# Container cgroups by the text around their 64-hex id: the layouts of
# capture/proc_table.py's _CONTAINER_PATTERNS (libsinsp's) as (before, after) literals, for the
# kernel's cgroup filter (container_at in bpf_program.c). The kubepods layout, whose pod segment
# varies, is written in the C (kubepods_at). tests/test_cgroup_filter.py checks both against
# container_of.
CONTAINER_ID_CONTEXTS: tuple[tuple[str, str], ...] = (
    ("/docker/", ""), ("/docker-", ".scope"),
    ("/cri-containerd-", ".scope"), (":cri-containerd:", ""),
    ("/crio-", ""), ("/crio/", ""),
    ("/libpod-", ".scope"), ("/libpod_parent/libpod-", ""),
    ("/containerd/", ""),
)
KUBEPODS_ROOT = "/kubepods"
CONTAINER_ID_DIGITS = 64
CGROUP_PATH_MAX = 512  # most bytes of a new cgroup's path judged (NUL included); more: cut

# x86_64 numbers (asm/unistd_64.h). Items are read at sys_exit from the syscall's arguments.
SYSCALLS: tuple[SyscallSpec, ...] = (
    SyscallSpec("open", 2, _s(0)),
    SyscallSpec("openat", 257, _s(1)),
    SyscallSpec("openat2", 437, (Item(STR, 1), Item(BYTES, 2, size=24))),
    SyscallSpec("creat", 85, _s(0)),
    SyscallSpec("close", 3),
    SyscallSpec("dup", 32),
    SyscallSpec("dup2", 33),
    SyscallSpec("dup3", 292),
    SyscallSpec("close_range", 436),
    # fcntl: only F_DUPFD, F_DUPFD_CLOEXEC and F_SETFD are recorded (EXIT_FILTER below)
    SyscallSpec("fcntl", 72),
    SyscallSpec("pipe", 22, _FD_PAIR),
    SyscallSpec("pipe2", 293, _FD_PAIR),
    SyscallSpec("socketpair", 53, (Item(BYTES, 3, size=8),)),
    SyscallSpec("eventfd", 284),
    SyscallSpec("eventfd2", 290),
    SyscallSpec("signalfd", 282),
    SyscallSpec("signalfd4", 289),
    SyscallSpec("timerfd_create", 283),
    SyscallSpec("inotify_init", 253),
    SyscallSpec("inotify_init1", 294),
    SyscallSpec("epoll_create", 213),
    SyscallSpec("epoll_create1", 291),
    SyscallSpec("pidfd_open", 434),
    SyscallSpec("pidfd_getfd", 438),
    SyscallSpec("io_uring_setup", 425),
    SyscallSpec("socket", 41),
    SyscallSpec("connect", 42, (Item(SOCKADDR, 1, 2), Item(LOCAL))),
    SyscallSpec("bind", 49, (Item(SOCKADDR, 1, 2),)),
    SyscallSpec("listen", 50),
    SyscallSpec("accept", 43, (Item(SOCKADDR_PTRLEN, 1, 2),)),
    SyscallSpec("accept4", 288, (Item(SOCKADDR_PTRLEN, 1, 2),)),
    SyscallSpec("sendto", 44, (Item(SOCKADDR, 4, 5),)),
    # recvmsg: only the calls that received fds with SCM_RIGHTS are recorded (EXIT_FILTER)
    SyscallSpec("recvmsg", 47, (Item(SCM_RIGHTS, 1),)),
    # recvmmsg: one record per message that received fds, its item 0 their numbers, sent whole
    # by the exit filter (emit_mmsg_rights in bpf_program.c); nothing for the other calls
    SyscallSpec("recvmmsg", 299),
    SyscallSpec("clone", 56),
    SyscallSpec("clone3", 435, (Item(BYTES, 0, size=8),)),
    SyscallSpec("fork", 57),
    SyscallSpec("vfork", 58),
    SyscallSpec("execve", 59),
    SyscallSpec("execveat", 322),
    SyscallSpec("chdir", 80, _s(0)),
    SyscallSpec("fchdir", 81),
    SyscallSpec("rename", 82, _s(0, 1)),
    SyscallSpec("renameat", 264, _s(1, 3)),
    SyscallSpec("renameat2", 316, _s(1, 3)),
    SyscallSpec("mkdir", 83, _s(0)),
    SyscallSpec("mkdirat", 258, _s(1)),
    SyscallSpec("rmdir", 84, _s(0)),
    SyscallSpec("link", 86, _s(0, 1)),
    SyscallSpec("linkat", 265, _s(1, 3)),
    SyscallSpec("unlink", 87, _s(0)),
    SyscallSpec("unlinkat", 263, _s(1)),
    SyscallSpec("symlink", 88, _s(0, 1)),
    SyscallSpec("symlinkat", 266, _s(0, 2)),
    SyscallSpec("chmod", 90, _s(0)),
    SyscallSpec("fchmod", 91),
    SyscallSpec("fchmodat", 268, _s(1)),
    SyscallSpec("fchmodat2", 452, _s(1)),
    SyscallSpec("ptrace", 101),
    SyscallSpec("setuid", 105),
    SyscallSpec("setgid", 106),
    SyscallSpec("setreuid", 113),
    SyscallSpec("setregid", 114),
    SyscallSpec("setresuid", 117),
    SyscallSpec("setresgid", 119),
    SyscallSpec("pivot_root", 155, _s(0, 1)),
    SyscallSpec("mount", 165, _s(0, 1, 2)),
    SyscallSpec("umount2", 166, _s(0)),
    SyscallSpec("init_module", 175, (Item(STR, 2),)),
    SyscallSpec("finit_module", 313, (Item(STR, 1),)),
    SyscallSpec("unshare", 272),
    SyscallSpec("setns", 308),
    SyscallSpec("memfd_create", 319, _s(0)),
    SyscallSpec("bpf", 321),
    SyscallSpec("userfaultfd", 323),
)
SYSCALL_BY_NAME: dict[str, SyscallSpec] = {s.name: s for s in SYSCALLS}
FORKS = ("clone", "clone3", "fork", "vfork")  # return 0 in the child, through sys_exit too
SYSCALL_BY_NR: dict[int, SyscallSpec] = {s.nr: s for s in SYSCALLS}
# The syscalls that keep the process table right (capture/handlers.py applies them even to
# processes a --container selection leaves out: they can be the ancestors of selected ones, or
# enter a container by exec). The kernel's container filter lets them through too.
PROC_STATE_SYSCALLS = frozenset({
    "execve", "execveat", "chdir", "fchdir",
    "setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid",
})

# What the rules need (upstream stable + incubating and ours, see rule-evttypes.tsv), plus what
# keeps the process and fd tables right, as libsinsp's own state set does (sinsp_state_sc_set):
# fork/clone, chdir, close and close_range, every call that returns a new fd (dup*, pipe*,
# socketpair, eventfd, signalfd, timerfd, inotify, epoll, pidfd, io_uring, memfd...: a new fd
# must replace whatever the table held for its number) and fcntl's F_DUPFD*/F_SETFD (the only
# fcntl commands the kernel side lets through: the others are frequent and change no fd).
# recvmsg and recvmmsg too, filtered in the kernel to the calls (recvmmsg: the messages) that
# received fds (SCM_RIGHTS): those are new fds like dup's, and rare. Left out: the I/O calls
# sendto/sendmsg/recvfrom (and recvmsg/recvmmsg without fds), whose volume is that of the
# traffic itself.
DEFAULT_SYSCALLS: tuple[str, ...] = tuple(s.name for s in SYSCALLS if s.name != "sendto")
PRESETS: dict[str, tuple[str, ...]] = {
    "default": DEFAULT_SYSCALLS,
    "exec": ("execve", "execveat", "clone", "clone3", "fork", "vfork", "chdir", "fchdir"),
    "all": tuple(s.name for s in SYSCALLS),
}


@dataclass(frozen=True)
class ProgramOptions:
    """Everything the rendered C depends on."""

    syscalls: tuple[str, ...]
    self_tgid: int  # the capture's own process, excluded in the kernel
    pids: tuple[int, ...] = ()  # only these processes (tgids); () = all
    follow_tgids: tuple[int, ...] = ()  # only these processes and their descendants; () = all
    comms: tuple[str, ...] = ()  # only these command names (comm, 15 chars); () = all
    exclude_comms: tuple[str, ...] = ()  # not these command names
    ringbuf_pages: int = 8192  # ring buffer size in pages (power of two): 32 MiB of 4 KiB pages
    stash_entries: int = 65536  # threads that can be inside a selected syscall at once
    path_slot: int = 4096  # most bytes kept of one path (NUL included)
    arg_slot: int = 1024  # most bytes kept of one argv entry
    max_args: int = 32  # most argv entries kept
    env_max: int = 4096  # most bytes of the environment kept at execve (whole NAME=value items)
    max_env: int = 64  # most environment entries read at execve
    scratch_half: int = 8192  # half the per-CPU scratch buffer (power of two)
    has_group_dead: bool = True  # feature: sched_process_exit has `group_dead`
    local_endpoints: bool = True  # feature: sock:inet_sock_set_state exists
    fib_ports: bool = True  # feature: fib:fib_table_lookup has ports (with local_endpoints)
    fib6_ports: bool = True  # feature: fib6:fib6_table_lookup has ports (with local_endpoints)
    follow_entries: int = 16384  # processes and threads of the followed trees alive at once
    # --container in the kernel (capture/cgroup_filter.py): records of tasks whose cgroup-v2
    # id is not kept are dropped; cgroup_map holds the verdicts that differ from the default.
    cgroup_filter: bool = False
    cgroup_keep_host: bool = False  # `host` selected: cgroups are kept unless marked dropped
    cgroup_ids: tuple[str, ...] = ()  # selected containers' ids (12 hex digits)
    cgroup_names: bool = False  # names selected: new containers are kept for userspace to judge
    cgroup_entries: int = 16384  # cgroups whose verdict is not the default, at once


def resolve_syscalls(preset: str = "default", extra: Iterable[str] = (),
                     only: Iterable[str] | None = None) -> tuple[str, ...]:
    """The syscall names to record: `only` if given, else the preset plus `extra`."""
    if only is not None:
        names = list(only)
    else:
        if preset not in PRESETS:
            raise RenderError(f"Unknown syscall preset {preset!r}; known: {', '.join(PRESETS)}.")
        names = [*PRESETS[preset], *extra]
    unknown = [n for n in names if n not in SYSCALL_BY_NAME]
    if unknown:
        raise RenderError(
            f"Cannot record {', '.join(sorted(set(unknown)))}: capture knows "
            f"{', '.join(sorted(SYSCALL_BY_NAME))}."
        )
    return tuple(dict.fromkeys(names))


def arch_supported(machine: str | None = None) -> bool:
    return (machine or platform.machine()) == SUPPORTED_ARCH


def render(options: ProgramOptions, template: str | None = None) -> str:
    """The C text for `options` (the template defaults to capture/bpf_program.c)."""
    _check(options)
    text = TEMPLATE_PATH.read_text() if template is None else template
    values = placeholder_values(options)
    missing = sorted(set(PLACEHOLDER.findall(text)) - set(values))
    if missing:
        raise RenderError(f"The BPF template has unfilled placeholders: {', '.join(missing)}.")
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


def placeholder_values(options: ProgramOptions) -> dict[str, str]:
    specs = [SYSCALL_BY_NAME[n] for n in options.syscalls]
    nr = {name: str(SYSCALL_BY_NAME[name].nr) for name in
          ("execve", "execveat", "connect", "clone", "clone3", "fork", "vfork")}
    # The local-endpoint probes serve connect alone; `local_endpoints` switches them all (the
    # route lookups only complete what the TCP states give).
    local = options.local_endpoints and "connect" in options.syscalls
    return {
        "SCRATCH_HALF": str(options.scratch_half),
        "PATH_SLOT": str(options.path_slot),
        "ARG_SLOT": str(options.arg_slot),
        "MAX_ARGS": str(options.max_args),
        "ENV_MAX": str(options.env_max),
        "MAX_ENV": str(options.max_env),
        "SELF_TGID": str(options.self_tgid),
        **{f"NR_{name.upper()}": value for name, value in nr.items()},
        "FORK_CASES": "\n".join(f"    case {SYSCALL_BY_NAME[n].nr}: /* {n} */" for n in FORKS),
        "ITEM_SYSCALLS": "\n".join(f"    case {s.nr}: /* {s.name} */" for s in specs
                                   if _items(s, options)),
        "HAS_GROUP_DEAD": "1" if options.has_group_dead else "0",
        "LOCAL_ENDPOINTS": "1" if local else "0",
        "FIB_PORTS": "1" if local and options.fib_ports else "0",
        "FIB6_PORTS": "1" if local and options.fib6_ports else "0",
        "EXIT_FILTER": render_exit_filter(options.syscalls),
        "FOLLOW": "1" if options.follow_tgids else "0",
        "FOLLOW_ROOTS": "\n".join(f"    case {p}:" for p in sorted(set(options.follow_tgids))),
        "FOLLOW_ENTRIES": str(options.follow_entries),
        "CGROUP_FILTER": "1" if options.cgroup_filter else "0",
        "CGROUP_DEFAULT": "CG_KEEP" if options.cgroup_keep_host else "CG_DROP",
        "CGROUP_NAMES": "1" if options.cgroup_names else "0",
        "CGROUP_ENTRIES": str(options.cgroup_entries),
        "CGPATH_MAX": str(CGROUP_PATH_MAX),
        "CGROUP_ID_TEST": render_cgroup_id_test(options.cgroup_ids),
        "CONTAINER_AT": render_container_at(),
        "KUBEPODS_AT_START": _chars_at(0, KUBEPODS_ROOT),
        "PROC_STATE_CASES": "\n".join(f"    case {s.nr}: /* {s.name} */" for s in specs
                                       if s.name in PROC_STATE_SYSCALLS),
        "STASH_ENTRIES": str(options.stash_entries),
        "RINGBUF_PAGES": str(options.ringbuf_pages),
        "SYSCALL_CASES": "\n".join(f"    case {s.nr}: /* {s.name} */" for s in specs),
        "TASK_FILTER": render_task_filter(options.pids, options.comms, options.exclude_comms,
                                          follow=bool(options.follow_tgids)),
        "ITEM_CASES": "\n".join(c for s in specs if (c := render_item_case(s, options))),
    }


def _items(spec: SyscallSpec, options: ProgramOptions) -> list[tuple[int, Item]]:
    """The items the program reads for `spec` (index, item)."""
    return [(i, item) for i, item in enumerate(spec.items)
            if item.kind != LOCAL or options.local_endpoints]


# fcntl commands that change the fd table (F_DUPFD, F_SETFD, F_DUPFD_CLOEXEC): the others
# (F_GETFL, F_SETFL, locks...) are frequent and change nothing the capture tracks.
FCNTL_KEPT = (0, 2, 1030)


def render_exit_filter(syscalls: tuple[str, ...]) -> str:
    """C statements that drop the calls of a selected syscall the capture has no use for:
    fcntl's other commands, and recvmsg calls that received no fds (SCM_RIGHTS). They run in
    the exit probe (EXIT_FILTER), once the arguments are read back from the registers: neither
    has entry work (they are not stashed), so testing at exit costs a compare (fcntl) or a
    user read of the msghdr (recvmsg), where testing at entry would cost a stash per call; and
    recvmsg's control data is only there once it returns. recvmmsg is handled there whole: one
    record per message (of the first MMSG_MAX) that received fds, as libsinsp's driver sends
    one event per message, and nothing for a call that received none."""
    parts = []
    if "fcntl" in syscalls:
        kept = " && ".join(f"cmd != {c}" for c in FCNTL_KEPT)
        parts.append(
            f"    if (id == {SYSCALL_BY_NAME['fcntl'].nr}) {{ /* fcntl: F_DUPFD*, F_SETFD only */\n"
            f"        u32 cmd = s.args[1];\n"
            f"        if ({kept})\n"
            f"            return 0;\n"
            f"    }}")
    if "recvmsg" in syscalls:
        parts.append(
            f"    if (id == {SYSCALL_BY_NAME['recvmsg'].nr}) {{ /* recvmsg: SCM_RIGHTS only */\n"
            f"        u64 fds = 0;\n"
            f"        if (ret < 0 || !scm_rights(s.args[1], &fds))\n"
            f"            return 0;\n"
            f"    }}")
    if "recvmmsg" in syscalls:
        parts.append(
            f"    if (id == {SYSCALL_BY_NAME['recvmmsg'].nr}) {{ /* recvmmsg: messages with "
            f"SCM_RIGHTS, one record each */\n"
            f"        if (ret > 0)\n"
            f"            emit_mmsg_rights(id, ret, s.args);\n"
            f"        return 0;\n"
            f"    }}")
    return "\n".join(parts)


def render_item_case(spec: SyscallSpec, options: ProgramOptions) -> str:
    """The `case` of the exit probe's switch that reads `spec`'s items ("" if it has none)."""
    lines = [_item_call(i, item) for i, item in _items(spec, options)]
    if not lines:
        return ""
    body = "".join(f"        {line}\n" for line in lines)
    return f"    case {spec.nr}: /* {spec.name} */\n{body}        break;"


def _item_call(index: int, item: Item) -> str:
    if item.kind == STR:
        return f"off = put_str(buf, off, {index}, s.args[{item.arg}]);"
    if item.kind == SOCKADDR:
        return f"off = put_bytes(buf, off, {index}, s.args[{item.arg}], s.args[{item.size_arg}]);"
    if item.kind == SOCKADDR_PTRLEN:
        return (f"off = put_sockaddr_ptrlen(buf, off, {index}, s.args[{item.arg}], "
                f"s.args[{item.size_arg}]);")
    if item.kind == BYTES:
        return f"off = put_bytes(buf, off, {index}, s.args[{item.arg}], {item.size});"
    if item.kind == LOCAL:
        return f"off = put_local(buf, off, {index}, tid);"
    if item.kind == SCM_RIGHTS:
        return f"off = put_scm_rights(buf, off, {index}, s.args[{item.arg}]);"
    raise RenderError(f"Unknown item kind {item.kind!r}.")


def render_task_filter(pids: tuple[int, ...], comms: tuple[str, ...],
                       exclude_comms: tuple[str, ...] = (), follow: bool = False) -> str:
    """C statements (inside `task_selected(u32 tgid)`) that return 0 for unselected tasks.

    With `follow`, only the followed trees pass (`followed()`, one map look-up: the roots are a
    switch, their descendants are in follow_map, see bpf_program.c)."""
    parts: list[str] = []
    if follow:
        parts.append("    if (!followed(tgid))\n        return 0;")
    if pids:
        cases = " ".join(f"case {p}:" for p in sorted(set(pids)))
        parts.append(f"    switch (tgid) {{ {cases} break; default: return 0; }}")
    if comms or exclude_comms:
        parts.append("    char comm[16] = {};\n"
                     "    bpf_get_current_comm(&comm, sizeof(comm));")
    if comms:
        tests = " |\n        ".join(_comm_test(c) for c in dict.fromkeys(comms))
        parts.append(f"    if (!({tests}))\n        return 0;")
    if exclude_comms:
        tests = " |\n        ".join(_comm_test(c) for c in dict.fromkeys(exclude_comms))
        parts.append(f"    if ({tests})\n        return 0;")
    return "\n".join(parts)


def render_cgroup_id_test(ids: tuple[str, ...]) -> str:
    """The body of `selected_id(u64 key)`: the ids' 12 hex digits as numbers."""
    if not ids:
        return "    return 0;"
    cases = "\n".join(f"    case 0x{i}ULL:" for i in sorted(set(ids)))
    return f"    switch (key) {{\n{cases}\n        return 1;\n    }}\n    return 0;"


def render_container_at() -> str:
    """Statements (inside `container_at`, bpf_program.c) that return 1 when the 64-hex run at
    `start` has one of CONTAINER_ID_CONTEXTS around it."""
    lines = []
    for before, after in CONTAINER_ID_CONTEXTS:
        tests = [f"start >= {len(before)}", _chars_at(f"start - {len(before)}", before)]
        if after:
            tests.append(_chars_at(f"start + {CONTAINER_ID_DIGITS}", after))
        lines.append(f"    if ({' && '.join(tests)}) /* {before}<id>{after} */\n        return 1;")
    return "\n".join(lines)


def _chars_at(at: int | str, text: str) -> str:
    """A C test that the cgroup path has `text` at index `at` (a C expression)."""
    if not re.fullmatch(r"[A-Za-z0-9/_.:-]+", text):
        raise RenderError(f"Cannot render {text!r} as a cgroup path test.")
    return " && ".join(f"CH({at} + {i}) == '{c}'" for i, c in enumerate(text))


def _comm_test(name: str) -> str:
    """1 when the kernel's comm (truncated to 15 bytes, NUL-terminated) is `name`, else 0.

    Branch-free (xor/or, no &&): every branch here would multiply the verifier's states through
    the rest of the entry probe, and a few names were enough to exceed its limit."""
    raw = name.encode()[: TASK_COMM_LEN - 1] + b"\0"
    return "((" + " | ".join(f"(comm[{i}] ^ {b})" for i, b in enumerate(raw)) + ") == 0)"


def _check(options: ProgramOptions) -> None:
    if not options.syscalls:
        raise RenderError("No syscalls selected: give a preset or a list of syscalls.")
    resolve_syscalls(only=options.syscalls)
    for name in ("ringbuf_pages", "scratch_half"):
        value = getattr(options, name)
        if value <= 0 or value & (value - 1):
            raise RenderError(f"{name} must be a power of two, not {value}.")
    if not 16 <= options.path_slot <= options.scratch_half // 2:
        raise RenderError(
            f"path_slot must be between 16 and {options.scratch_half // 2} (half the scratch "
            f"half), not {options.path_slot}."
        )
    if not 16 <= options.arg_slot <= options.scratch_half // 2:
        raise RenderError(f"arg_slot must be between 16 and {options.scratch_half // 2}.")
    if not 0 <= options.max_args <= 256:
        raise RenderError(f"max_args must be between 0 and 256, not {options.max_args}.")
    if not 0 <= options.env_max <= options.scratch_half // 2:
        raise RenderError(f"env_max must be between 0 and {options.scratch_half // 2}, not "
                          f"{options.env_max}.")
    if not 0 <= options.max_env <= 256:
        raise RenderError(f"max_env must be between 0 and 256, not {options.max_env}.")
    if options.stash_entries < 1:
        raise RenderError("stash_entries must be positive.")
    if any(p <= 0 for p in options.pids):
        raise RenderError("Process ids in the pid filter must be positive.")
    if any(p <= 0 for p in options.follow_tgids):
        raise RenderError("Process ids to follow must be positive.")
    if options.follow_entries < 1:
        raise RenderError("follow_entries must be positive.")
    if any(not _SHORT_ID.fullmatch(i) for i in options.cgroup_ids):
        raise RenderError("Container ids in the cgroup filter must be 12 lowercase hex digits.")
    if options.cgroup_entries < 1:
        raise RenderError("cgroup_entries must be positive.")
    if any(not c or "\0" in c for c in (*options.comms, *options.exclude_comms)):
        raise RenderError("Command names in the comm filter must be non-empty.")
