"""The fd table kept right without root: close-on-exec read from /proc at start, fds copied at
the fork, every syscall that returns a new fd replacing what the table held for its number,
close_range, the environment an execve copied, and the rendering that records these syscalls.
(The same on live captures: test_capture_live.py.)
"""

from __future__ import annotations

import os
import socket
import struct
from pathlib import Path

import pytest

from capture.bpf_render import (
    DEFAULT_SYSCALLS,
    PRESETS,
    SYSCALL_BY_NAME,
    ProgramOptions,
    RenderError,
    render,
    render_exit_filter,
)
from capture.cgroup_index import CgroupIndex
from capture.container_runtime import ContainerRuntimes
from capture.enrich import CLONE_THREAD, Enricher
from capture.fd_table import FdInfo, fd_kind, fdinfo_cloexec, socket_fd
from capture.handlers import exec_env
from capture.probe import REC_EXEC_ARGS, REC_EXIT, REC_FORK, REC_SYSCALL, Record
from capture.proc_table import UserDb
from capture.rows import RowBatch
from capture.rule_syscalls import STATE_SYSCALLS

O_CLOEXEC = 0o2000000
CLONE_CHILD = 0x01200011  # what glibc's fork() passes to clone (SIGCHLD|CHILD_SETTID|...)


def fake_proc(root: Path, pid: int, comm: str = "sh", fds: dict[int, tuple[str, int]] | None = None,
              environ: bytes | None = b"PATH=/bin\0") -> Path:
    """/proc/PID with `fds`: fd -> (link target, octal flags for fdinfo)."""
    d = root / str(pid)
    (d / "fd").mkdir(parents=True)
    (d / "fdinfo").mkdir()
    rest = ["S", "1", str(pid), str(pid), "0"] + ["0"] * 14 + ["100"] + ["0"] * 20
    (d / "stat").write_text(f"{pid} ({comm}) " + " ".join(rest))
    (d / "cmdline").write_bytes(comm.encode() + b"\0")
    (d / "status").write_text(f"Name:\t{comm}\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nNSpid:\t{pid}\n")
    (d / "cgroup").write_text("0::/\n")
    if environ is not None:
        (d / "environ").write_bytes(environ)
    for fd, (target, flags) in (fds or {}).items():
        os.symlink(target, d / "fd" / str(fd))
        (d / "fdinfo" / str(fd)).write_text(f"pos:\t0\nflags:\t{flags:#o}\nmnt_id:\t25\n"
                                            .replace("0o", "0"))
    return d


def enricher(root: Path) -> Enricher:
    en = Enricher(0, proc_root=root, users=UserDb({0: "root"}, {0: "root"}),
                  runtimes=ContainerRuntimes(()), cgroups=CgroupIndex(None, False))
    en.snapshot()
    return en


def rec(name: str, tgid: int, ret: int = 0, args: tuple[int, ...] = (),
        items: tuple[bytes, ...] = (), kind: int = REC_SYSCALL, tid: int | None = None) -> Record:
    full = (tuple(args) + (0,) * 6)[:6]
    nr = SYSCALL_BY_NAME[name].nr if name else 0
    return Record(kind, nr, 0, 0, ret, full, tgid, tid or tgid, 0, 0, 0,  # type: ignore[arg-type]
                  "sh", items)


def fork(parent: int, child: int, flags: int = CLONE_CHILD, known: int = 1) -> Record:
    return rec("", parent, args=(child, parent, flags, known), kind=REC_FORK)


def feed(en: Enricher, records: list[Record]) -> list[dict[str, object]]:
    batch = RowBatch()
    en.feed(records, batch)
    return batch.to_table().select(["proc.pid", "evt.type", "fd.num", "fd.type", "fd.name",
                                    "evt.args", "proc.env"]).to_pylist()


# ---- close-on-exec from /proc --------------------------------------------------------------

def test_fdinfo_flags_carry_close_on_exec() -> None:
    assert fdinfo_cloexec("pos:\t0\nflags:\t02100002\nmnt_id:\t25\n")
    assert not fdinfo_cloexec("pos:\t0\nflags:\t0100002\nmnt_id:\t25\n")
    assert not fdinfo_cloexec("") and not fdinfo_cloexec("flags:\tx\n")


def test_snapshot_fds_marked_close_on_exec_are_gone_after_execve(tmp_path: Path) -> None:
    fake_proc(tmp_path, 40, fds={0: ("/dev/null", 0o100000), 3: ("pipe:[9]", 0o2000000),
                                 4: ("/etc/hosts", 0o2100000), 5: ("/var/log/x", 0o102001)})
    en = enricher(tmp_path)
    table = en.fds.tables[40]
    assert [fd for fd, info in sorted(table.items()) if info.cloexec] == [3, 4]
    en.feed([rec("execve", 40, items=()), rec("close", 40, args=(5,))], RowBatch())
    assert sorted(en.fds.tables[40]) == [0]  # 3, 4 closed by the exec, 5 by close


# ---- a syscall that returns an fd replaces what the table held -----------------------------

STALE = socket_fd(socket.AF_INET, socket.SOCK_STREAM)


def stale_table(tmp_path: Path, pid: int = 41) -> tuple[Enricher, dict[int, FdInfo]]:
    fake_proc(tmp_path, pid)
    en = enricher(tmp_path)
    table = en.fds.of(pid)
    for fd in range(3, 12):
        table[fd] = STALE  # fds the capture did not see closed
    return en, table


@pytest.mark.parametrize(("name", "args", "kind", "cloexec"), [
    ("eventfd", (0,), "event", False),
    ("eventfd2", (0, O_CLOEXEC), "event", True),
    ("signalfd4", (2 ** 32 - 1, 0, 8, O_CLOEXEC), "signalfd", True),
    ("timerfd_create", (1, 0), "timerfd", False),
    ("inotify_init1", (O_CLOEXEC,), "inotify", True),
    ("epoll_create", (1,), "eventpoll", False),
    ("epoll_create1", (O_CLOEXEC,), "eventpoll", True),
    ("pidfd_open", (1234, 0), "pidfd", True),
    ("pidfd_getfd", (3, 7, 0), "unknown", True),
    ("io_uring_setup", (8, 0), "io_uring", True),
    ("userfaultfd", (O_CLOEXEC,), "userfaultfd", True),
])
def test_new_fds_replace_stale_entries(tmp_path: Path, name: str, args: tuple[int, ...],
                                       kind: str, cloexec: bool) -> None:
    en, table = stale_table(tmp_path)
    got = feed(en, [rec(name, 41, ret=9, args=args), rec(name, 41, ret=-24, args=args)])
    assert table[9] == fd_kind(kind, cloexec=cloexec)
    assert (got[0]["fd.num"], got[0]["fd.type"]) == (9, kind)
    assert str(got[0]["evt.args"]).startswith("res=9(<")
    assert got[1]["fd.type"] is None and str(got[1]["evt.args"]).startswith("res=-24(EMFILE)")


def test_accepted_fds_replace_stale_entries_with_their_own_close_on_exec(
        tmp_path: Path) -> None:
    en, table = stale_table(tmp_path)
    table[3] = socket_fd(socket.AF_INET, socket.SOCK_STREAM, cloexec=True)
    feed(en, [rec("accept4", 41, ret=5, args=(3, 0, 0, O_CLOEXEC)),
              rec("accept4", 41, ret=6, args=(3, 0, 0, 0)),
              rec("accept", 41, ret=7, args=(3, 0, 0))])
    assert [table[fd].cloexec for fd in (5, 6, 7)] == [True, False, False]
    assert all(table[fd].is_server and table[fd] is not STALE for fd in (5, 6, 7))


def test_bpf_commands_that_make_fds_replace_stale_entries(tmp_path: Path) -> None:
    en, table = stale_table(tmp_path)
    feed(en, [rec("bpf", 41, ret=5, args=(0,)),  # BPF_MAP_CREATE
              rec("bpf", 41, ret=0, args=(2,)),  # BPF_MAP_UPDATE_ELEM: 0 is no fd
              rec("bpf", 41, ret=6, args=(5,))])  # BPF_PROG_LOAD
    assert table[5] == table[6] == fd_kind("bpf", cloexec=True) and table[3] is STALE


def test_fds_copied_from_unknown_fds_are_unknown(tmp_path: Path) -> None:
    en, table = stale_table(tmp_path)
    del table[3]
    feed(en, [rec("dup2", 41, ret=4, args=(3, 4)),  # unknown 3 onto stale 4
              rec("dup", 41, ret=5, args=(3,)),
              rec("dup3", 41, ret=6, args=(3, 6, O_CLOEXEC)),
              rec("fcntl", 41, ret=7, args=(3, 0, 7)),  # F_DUPFD
              rec("dup2", 41, ret=8, args=(8, 8))])  # onto itself: nothing changes
    assert sorted(table) == [8, 9, 10, 11] and table[8] is STALE
    feed(en, [rec("pipe2", 41, args=(0, 0), items=(struct.pack("<ii", 9, 10),)),
              rec("dup3", 41, ret=3, args=(9, 3, O_CLOEXEC))])
    assert table[3] == fd_kind("pipe", cloexec=True) and table[10] == fd_kind("pipe")


def test_close_range_closes_or_marks_close_on_exec(tmp_path: Path) -> None:
    en, table = stale_table(tmp_path)
    got = feed(en, [rec("close_range", 41, args=(5, 6, 0)),
                    rec("close_range", 41, args=(9, 2 ** 32 - 1, 4)),  # CLOSE_RANGE_CLOEXEC
                    rec("close_range", 41, ret=-22, args=(3, 4, 0))])  # EINVAL: nothing
    assert sorted(table) == [3, 4, 7, 8, 9, 10, 11]
    assert [fd for fd in sorted(table) if table[fd].cloexec] == [9, 10, 11]
    assert got[1]["evt.args"] == "res=0 first=9 last=4294967295 flags=4(CLOSE_RANGE_CLOEXEC) "
    feed(en, [rec("execve", 41)])
    assert sorted(table) == [3, 4, 7, 8]


# ---- fds received with SCM_RIGHTS (recvmsg, recvmmsg) ---------------------------------------

MSG_CMSG_CLOEXEC = 0x40000000


def test_fds_received_with_scm_rights_are_read_from_proc(tmp_path: Path) -> None:
    en, table = stale_table(tmp_path)
    table[12] = socket_fd(socket.AF_UNIX, socket.SOCK_STREAM)  # the socket received on
    fds = tmp_path / "41" / "fd"
    os.symlink("/srv/shared.db", fds / "3")
    os.symlink("pipe:[71]", fds / "4")
    os.symlink("socket:[77]", fds / "5")  # made after the snapshot read the sockets
    (tmp_path / "41" / "net").mkdir()
    (tmp_path / "41" / "net" / "unix").write_text(
        "Num RefCount Protocol Flags Type St Inode Path\n"
        "0: 00000002 00000000 00010000 0001 01 77 /run/app.sock\n")
    got = feed(en, [
        rec("recvmsg", 41, ret=1, args=(12, 0, MSG_CMSG_CLOEXEC),
            items=(struct.pack("<4i", 3, 4, 5, 6),)),  # 6: closed (or the process gone) since
        rec("fchmod", 41, args=(3, 0o644)),
    ])
    assert table[3] == fd_kind("file", "/srv/shared.db", cloexec=True)
    assert table[4] == fd_kind("pipe", cloexec=True)
    assert table[5] == fd_kind("unix", "/run/app.sock", cloexec=True)
    assert table[6] == FdInfo("unknown", "o", cloexec=True)  # never the stale entry
    assert (got[0]["fd.num"], got[0]["fd.type"]) == (12, "unix")
    assert got[0]["evt.args"] == "res=1 size=1 tuple= fd=12(<u>) "
    assert (got[1]["fd.num"], got[1]["fd.name"]) == (3, "/srv/shared.db")


def test_a_failed_recvmsg_or_one_of_a_gone_process_leaves_no_stale_entry(
        tmp_path: Path) -> None:
    en, table = stale_table(tmp_path)
    got = feed(en, [rec("recvmsg", 41, ret=-11, args=(12, 0, 0),
                        items=(struct.pack("<i", 3),))])
    assert table[3] is STALE and got[0]["evt.args"].startswith("res=-11(EAGAIN) tuple= fd=12 ")
    table99 = en.fds.of(99)  # a process already gone from /proc
    table99[3] = STALE
    feed(en, [rec("recvmsg", 99, ret=1, args=(4, 0, 0), items=(struct.pack("<i", 3),))])
    assert table99[3] == FdInfo("unknown", "o")


def test_each_recvmmsg_message_with_fds_is_one_row_whose_fds_are_read_from_proc(
        tmp_path: Path) -> None:
    en, table = stale_table(tmp_path)
    table[12] = socket_fd(socket.AF_UNIX, socket.SOCK_DGRAM)  # the socket received on
    fds = tmp_path / "41" / "fd"
    os.symlink("/srv/a.db", fds / "3")
    os.symlink("pipe:[72]", fds / "4")
    os.symlink("/srv/b.log", fds / "5")
    # One record per message that carried fds (the kernel sends no other): ret is the
    # message's msg_len, the arguments the call's (fd, msgvec, vlen, flags, timeout).
    args = (12, 0x7000, 4, MSG_CMSG_CLOEXEC, 0)
    got = feed(en, [
        rec("recvmmsg", 41, ret=2, args=args, items=(struct.pack("<2i", 3, 4),)),
        rec("recvmmsg", 41, ret=7, args=args, items=(struct.pack("<i", 5),)),
        rec("fchmod", 41, args=(5, 0o644)),
    ])
    assert table[3] == fd_kind("file", "/srv/a.db", cloexec=True)
    assert table[4] == fd_kind("pipe", cloexec=True)
    assert table[5] == fd_kind("file", "/srv/b.log", cloexec=True)
    assert [r["evt.type"] for r in got] == ["recvmmsg", "recvmmsg", "fchmod"]
    assert [(r["fd.num"], r["fd.type"]) for r in got[:2]] == [(12, "unix"), (12, "unix")]
    # libsinsp's order: res (the message's length), fd, size, (data), tuple
    assert [r["evt.args"] for r in got[:2]] == ["res=2 fd=12(<u>) size=2 tuple= ",
                                                "res=7 fd=12(<u>) size=7 tuple= "]
    assert (got[2]["fd.num"], got[2]["fd.name"]) == (5, "/srv/b.log")
    table[6] = STALE
    feed(en, [rec("recvmmsg", 41, ret=1, args=(12, 0x7000, 1, 0, 0),
                  items=(struct.pack("<i", 6),))])
    assert table[6] == FdInfo("unknown", "o")  # closed since: never the stale entry


# ---- fds at the fork ----------------------------------------------------------------------

def test_a_forked_child_gets_the_parents_fds_as_they_were_at_the_fork(tmp_path: Path) -> None:
    fake_proc(tmp_path, 42)
    en = enricher(tmp_path)
    pair = struct.pack("<ii", 3, 4)
    got = feed(en, [
        rec("pipe2", 42, args=(0, 0), items=(pair,)),
        fork(42, 43),
        rec("close", 42, args=(3,)),  # the shell closes its pipe ends before the child runs
        rec("close", 42, args=(4,)),
        rec("dup2", 43, ret=1, args=(4, 1)),
    ])
    assert (got[-1]["proc.pid"], got[-1]["fd.type"]) == (43, "pipe")
    assert en.fds.tables[43][1] == fd_kind("pipe") and not en.fds.forked


def test_a_child_forking_before_its_first_event_passes_its_copy_on(tmp_path: Path) -> None:
    fake_proc(tmp_path, 42)
    en = enricher(tmp_path)
    en.fds.of(42)[5] = fd_kind("file", "/var/log/app.log")
    got = feed(en, [fork(42, 43), fork(43, 44),  # 43's first record is its own fork
                    rec("close", 42, args=(5,)),
                    rec("fcntl", 44, ret=9, args=(5, 0, 9))])
    assert got[-1]["fd.name"] == "/var/log/app.log"
    assert en.fds.tables[44][9] == fd_kind("file", "/var/log/app.log")


def test_threads_and_unknown_forks_take_no_copy(tmp_path: Path) -> None:
    fake_proc(tmp_path, 44)
    en = enricher(tmp_path)
    en.fds.of(44)[3] = fd_kind("file", "/etc/hosts")
    en.feed([fork(44, 45, flags=0x3D0F00), fork(44, 46, known=0)], RowBatch())
    assert CLONE_THREAD & 0x3D0F00 and not en.fds.forked
    en.feed([fork(44, 47)], RowBatch())
    assert set(en.fds.forked) == {47}
    en.feed([rec("", 44, args=(47, 1), kind=REC_EXIT, tid=47)], RowBatch())
    assert not en.fds.forked  # it exited before any event of its own


# ---- the environment an execve copied -------------------------------------------------------

def exec_args(env: bytes | None, complete: bool = True) -> Record:
    items = (b"/bin/true\0", b"true\0")
    if env is not None:
        items += (env, b"\1" if complete else b"\0")
    return Record(REC_EXEC_ARGS, SYSCALL_BY_NAME["execve"].nr, 0, 0, 0, (0,) * 6,
                  48, 48, 0, 0, 0, "sh", items)


def test_exec_env_comes_from_the_record_when_it_is_whole(tmp_path: Path) -> None:
    d = fake_proc(tmp_path, 48, environ=b"FROM=proc\0")
    assert exec_env(exec_args(b"A=1\0B=two words\0"), d) == "A=1 B=two words"
    assert exec_env(exec_args(b""), d) == ""  # env -i
    # cut short (env_max): /proc has all of it while the process lives, else the part copied
    assert exec_env(exec_args(b"A=1\0", complete=False), d) == "FROM=proc"
    gone = tmp_path / "999"
    assert exec_env(exec_args(b"A=1\0", complete=False), gone) == "A=1"
    # a record without the env items (an older program): /proc, or unknown
    assert exec_env(exec_args(None), d) == "FROM=proc" and exec_env(exec_args(None), gone) is None
    assert exec_env(None, gone) is None


def test_execve_row_carries_the_copied_environment(tmp_path: Path) -> None:
    fake_proc(tmp_path, 48, environ=None)  # gone from /proc by the time it is enriched
    en = enricher(tmp_path)
    got = feed(en, [exec_args(b"HOME=/root\0TERM=xterm\0"), rec("execve", 48),
                    rec("close", 48, args=(1,))])
    assert [r["proc.env"] for r in got] == ["HOME=/root TERM=xterm"] * 2


# ---- rendering ----------------------------------------------------------------------------------

def options(**kw: object) -> ProgramOptions:
    base: dict[str, object] = {"syscalls": DEFAULT_SYSCALLS, "self_tgid": 4242}
    base.update(kw)
    return ProgramOptions(**base)  # type: ignore[arg-type]


def test_default_preset_records_every_fd_creating_call() -> None:
    fd_calls = {"pipe", "pipe2", "socketpair", "fcntl", "close_range", "dup", "dup2", "dup3",
                "eventfd", "eventfd2", "signalfd", "signalfd4", "timerfd_create",
                "inotify_init", "inotify_init1", "epoll_create", "epoll_create1", "pidfd_open",
                "pidfd_getfd", "io_uring_setup", "userfaultfd", "memfd_create", "accept4"}
    assert fd_calls <= set(DEFAULT_SYSCALLS)
    assert not {"pipe", "fcntl"} & set(PRESETS["exec"])


def test_fcntl_is_filtered_in_the_kernel_to_the_fd_table_commands() -> None:
    text = render(options())
    # At sys_exit, where fcntl's arguments are read back from the registers (it has no entry
    # work to filter: only the stashed syscalls do).
    leave = text.split("RAW_TRACEPOINT_PROBE(sys_exit)", 1)[1].split("TRACEPOINT", 1)[0]
    assert "if (id == 72) {" in leave and "cmd != 0 && cmd != 2 && cmd != 1030" in leave
    assert leave.index("syscall_selected(id)") < leave.index("id == 72")
    assert leave.index("s.args[1] = r.si;") < leave.index("id == 72")
    assert leave.index("id == 72") < leave.index("emit_plain(")
    assert render_exit_filter(("openat",)) == ""
    assert "id == 72" not in render(options(syscalls=("openat", "close")))


def test_recvmsg_is_recorded_only_with_scm_rights() -> None:
    assert "recvmsg" in DEFAULT_SYSCALLS and "recvmsg" in STATE_SYSCALLS
    assert SYSCALL_BY_NAME["recvmsg"].nr == 47
    text = render(options())
    leave = text.split("RAW_TRACEPOINT_PROBE(sys_exit)", 1)[1].split("TRACEPOINT", 1)[0]
    # At sys_exit, once the kernel has written the control data: dropped unless it holds
    # SCM_RIGHTS, whose fds are then item 0.
    assert "if (id == 47) {" in leave
    assert "if (ret < 0 || !scm_rights(s.args[1], &fds))" in leave
    assert leave.index("s.args[1] = r.si;") < leave.index("id == 47") < leave.index("emit_plain(")
    assert ("    case 47: /* recvmsg */\n        off = put_scm_rights(buf, off, 0, s.args[1]);\n"
            "        break;") in leave
    # msghdr's msg_control/msg_controllen and cmsghdr's layout (uapi, x86_64); bounded reads
    assert "#define MSGHDR_CONTROL_OFFSET 32" in text
    assert "#define SCM_MAX_FDS (BLOB_SLOT / 4)" in text  # 32 fds at most: one item
    assert "c.level == SOL_SOCKET_LEVEL && c.type == SCM_RIGHTS_TYPE" in text
    assert "id == 47" not in render(options(syscalls=("openat", "close")))
    assert "id == 47" not in render_exit_filter(("fcntl",))
    assert "id == 72" in render_exit_filter(("fcntl", "recvmsg"))


def test_recvmmsg_sends_one_record_per_message_with_scm_rights() -> None:
    assert "recvmmsg" in DEFAULT_SYSCALLS and "recvmmsg" in STATE_SYSCALLS
    assert SYSCALL_BY_NAME["recvmmsg"].nr == 299
    text = render(options())
    leave = text.split("RAW_TRACEPOINT_PROBE(sys_exit)", 1)[1].split("TRACEPOINT", 1)[0]
    # At sys_exit, handled whole by the exit filter: a record per message with fds (item 0),
    # nothing else, so no single record and no item case of its own.
    assert ("    if (id == 299) { /* recvmmsg: messages with SCM_RIGHTS, one record each */\n"
            "        if (ret > 0)\n            emit_mmsg_rights(id, ret, s.args);\n"
            "        return 0;\n    }") in leave
    assert leave.index("s.args[1] = r.si;") < leave.index("id == 299") < leave.index("emit_plain(")
    assert "case 299: /* recvmmsg */\n        off" not in text
    # struct mmsghdr (uapi, x86_64): a msghdr, then msg_len, 64 bytes each; 8 messages at most,
    # each looked at as recvmsg's msghdr is (scm_rights: 4 cmsgs, 32 fds)
    assert "#define MMSG_MAX 8" in text and "#define MMSGHDR_SIZE 64" in text
    assert "#define MMSGHDR_LEN_OFFSET 56" in text
    assert "u32 len = scm_rights(msg, &data);" in text
    assert "h->ret = msg_len;" in text
    assert "id == 299" not in render(options(syscalls=("openat", "close")))
    assert "id == 299" not in render_exit_filter(("recvmsg",))


def test_local_endpoint_probes_follow_features_and_connect() -> None:
    text = render(options())
    assert "#define FIB_PORTS 1" in text and "#define FIB6_PORTS 1" in text
    assert "#define LOCAL_ENDPOINTS 1" in text
    off = render(options(fib_ports=False, fib6_ports=False, local_endpoints=False))
    assert "#define FIB_PORTS 0" in off and "#define LOCAL_ENDPOINTS 0" in off
    assert "off = put_local(" in text and "off = put_local(" not in off
    alone = render(options(local_endpoints=False))  # the TCP states switch the route lookups
    assert "#define FIB_PORTS 0" in alone and "off = put_local(" not in alone
    v4 = render(options(fib6_ports=False))
    assert "#define FIB_PORTS 1" in v4 and "#define FIB6_PORTS 0" in v4
    no_connect = render(options(syscalls=("execve", "openat")))
    assert "#define FIB_PORTS 0" in no_connect and "#define LOCAL_ENDPOINTS 0" in no_connect


def test_env_limits_are_rendered_and_checked() -> None:
    text = render(options(env_max=2048, max_env=16))
    assert "#define ENV_MAX 2048 " in text and "#define MAX_ENV 16 " in text
    assert "put_env(buf, envp)" in text
    with pytest.raises(RenderError, match="env_max"):
        render(options(env_max=1 << 20))
    with pytest.raises(RenderError, match="max_env"):
        render(options(max_env=1000))
