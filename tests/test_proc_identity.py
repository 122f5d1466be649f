"""Process identity as libsinsp keeps it, without root: effective uid/gid (execve of set-id
files, the setuid family, changes the capture did not see), proc.env, reparenting of orphans,
container user names, the fds of pipe/socketpair/fcntl, and containers from cgroup-v2 ids.
"""

from __future__ import annotations

import os
import socket
import stat
import struct
from pathlib import Path

import pytest

from capture.bpf_render import SYSCALL_BY_NAME
from capture.cgroup_index import CgroupIndex, cgroup_mounts
from capture.container_runtime import ContainerRuntimes
from capture.enrich import Enricher
from capture.fd_table import fd_kind
from capture.handlers import HANDLERS, NR_PIPE2, Ev, _exec_ids
from capture.probe import REC_EXEC_ARGS, REC_EXIT, REC_SYSCALL, Record
from capture.proc_table import Proc, ProcTable, UserDb, read_proc
from capture.rows import RowBatch

CID = "5a6b7c8d9e0f" + "1" * 52
AT_FDCWD = 0xFFFFFF9C


def fake_proc(root: Path, pid: int, ppid: int, comm: str, uids: tuple[int, int] = (0, 0),
              gids: tuple[int, int] = (0, 0), cgroup: str = "0::/\n",
              environ: bytes | None = b"PATH=/bin\0LANG=C\0", vpid: int | None = None) -> Path:
    d = root / str(pid)
    (d / "fd").mkdir(parents=True)
    (d / "task" / str(pid)).mkdir(parents=True)
    rest = ["S", str(ppid), str(pid), str(pid), "0"] + ["0"] * 14 + ["100"] + ["0"] * 20
    (d / "stat").write_text(f"{pid} ({comm}) " + " ".join(rest))
    (d / "cmdline").write_bytes(comm.encode() + b"\0")
    status = (f"Name:\t{comm}\nUid:\t{uids[0]}\t{uids[1]}\t{uids[1]}\t{uids[1]}\n"
              f"Gid:\t{gids[0]}\t{gids[1]}\t{gids[1]}\t{gids[1]}\n"
              f"NSpid:\t{pid}" + (f"\t{vpid}" if vpid else "") + "\n")
    (d / "status").write_text(status)
    (d / "task" / str(pid) / "status").write_text(status)
    (d / "cgroup").write_text(cgroup)
    if environ is not None:
        (d / "environ").write_bytes(environ)
    return d


def rec(name: str, tgid: int, ret: int = 0, args: tuple[int, ...] = (),
        items: tuple[bytes, ...] = (), uid: int = 0, gid: int = 0, cgroup_id: int = 0,
        nr: int | None = None, kind: int = REC_SYSCALL) -> Record:
    full = (tuple(args) + (0,) * 6)[:6]
    return Record(kind, SYSCALL_BY_NAME[name].nr if nr is None else nr, 0, cgroup_id, ret,
                  full, tgid, tgid, uid, gid, 0, name[:15], items)  # type: ignore[arg-type]


def enricher(root: Path, **kw: object) -> Enricher:
    en = Enricher(0, proc_root=root, users=UserDb({0: "root", 1000: "alice"},
                                                  {0: "root", 1000: "staff"}),
                  runtimes=ContainerRuntimes(()), cgroups=CgroupIndex(None, False), **kw)
    en.snapshot()
    return en


def rows(en: Enricher, records: list[Record], columns: list[str]) -> list[dict[str, object]]:
    batch = RowBatch()
    en.feed(records, batch)
    return batch.to_table().select(columns).to_pylist()


USER = ["proc.pid", "user.uid", "user.name", "group.gid", "group.name"]


# ---- effective ids ------------------------------------------------------------------------------

def test_snapshot_reads_real_and_effective_ids(tmp_path: Path) -> None:
    fake_proc(tmp_path, 30, 1, "passwd", uids=(1000, 0), gids=(1000, 1000))
    proc = read_proc(30, tmp_path, boot_ns=0)
    assert proc is not None and (proc.ruid, proc.euid, proc.rgid, proc.egid) == (1000, 0, 1000,
                                                                                 1000)


def test_user_uid_is_the_effective_uid(tmp_path: Path) -> None:
    fake_proc(tmp_path, 30, 1, "passwd", uids=(1000, 0), gids=(1000, 1000))
    got = rows(enricher(tmp_path), [rec("close", 30, args=(3,), uid=1000, gid=1000)], USER)
    assert got == [{"proc.pid": 30, "user.uid": 0, "user.name": "root", "group.gid": 1000,
                    "group.name": "staff"}]


def test_setuid_family_sets_the_effective_ids(tmp_path: Path) -> None:
    fake_proc(tmp_path, 31, 1, "sudo")
    minus1 = 0xFFFFFFFF
    got = rows(enricher(tmp_path), [
        rec("setresgid", 31, args=(1000, 1000, 1000), gid=1000),
        rec("setresuid", 31, args=(minus1, 1000, minus1), gid=1000),  # euid only
        rec("close", 31, args=(3,), gid=1000),
        rec("setreuid", 31, args=(1000, minus1), uid=1000, gid=1000),  # ruid only
        rec("setuid", 31, ret=-1, args=(0,), uid=1000, gid=1000),  # EPERM: nothing changes
        rec("close", 31, args=(3,), uid=1000, gid=1000),
    ], [*USER, "evt.type", "evt.args"])
    assert [(r["user.uid"], r["group.gid"]) for r in got] == \
        [(0, 1000), (1000, 1000), (1000, 1000), (1000, 1000), (1000, 1000), (1000, 1000)]
    assert got[1]["evt.args"] == "res=0 ruid=4294967295 euid=1000 suid=4294967295 "
    assert got[2]["user.name"] == "alice"


def test_ids_changed_unseen_are_read_back_from_the_thread(tmp_path: Path) -> None:
    d = fake_proc(tmp_path, 32, 1, "daemon")
    en = enricher(tmp_path)
    # it dropped privileges with a syscall the capture does not record
    (d / "task" / "32" / "status").write_text("Uid:\t1000\t1000\t1000\t1000\n"
                                              "Gid:\t1000\t0\t0\t0\n")
    got = rows(en, [rec("close", 32, args=(3,), uid=1000, gid=1000)], USER)
    assert (got[0]["user.uid"], got[0]["group.gid"]) == (1000, 0)
    # unreadable: the real ids stand in
    got = rows(en, [rec("close", 32, args=(3,), uid=7, gid=8)], USER)
    assert (got[0]["user.uid"], got[0]["group.gid"]) == (7, 8)


def test_exec_of_a_set_user_id_file_runs_as_its_owner(tmp_path: Path) -> None:
    binary = tmp_path / "su-helper"
    binary.write_bytes(b"#!/bin/true\n")
    os.chmod(binary, 0o755)
    st = os.stat(binary)
    assert _exec_ids(str(binary), st, 1000, 1000) == (1000, 1000)
    suid = os.stat_result((st.st_mode | stat.S_ISUID | stat.S_ISGID, *st[1:4], 0, 42, *st[6:]))
    assert _exec_ids(str(binary), suid, 1000, 1000) == (0, 42)
    # set-group-ID without group execute is mandatory locking, not a set-id program
    lock = os.stat_result((stat.S_IFREG | 0o2744, *st[1:4], 0, 42, *st[6:]))
    assert _exec_ids(str(binary), lock, 1000, 1000) == (1000, 1000)


# ---- proc.env ----------------------------------------------------------------------------------

def test_env_from_proc_at_start_and_at_execve(tmp_path: Path) -> None:
    d = fake_proc(tmp_path, 33, 1, "sh")
    fake_proc(tmp_path, 34, 1, "kworker", environ=None)
    en = enricher(tmp_path)
    (d / "environ").write_bytes(b"PATH=/usr/bin\0SECRET=x y\0")  # what the new program got
    args = Record(REC_EXEC_ARGS, 0, 0, 0, 0, (0,) * 6, 33, 33, 0, 0, 0, "sh",
                  (b"/bin/env\0", b"env\0"))
    got = rows(en, [rec("close", 33, args=(3,)), args, rec("execve", 33),
                    rec("close", 34, args=(3,))], ["proc.pid", "evt.type", "proc.env"])
    assert [r["proc.env"] for r in got] == ["PATH=/bin LANG=C", "PATH=/usr/bin SECRET=x y",
                                            None]


# ---- reparenting ---------------------------------------------------------------------------------

def exit_rec(pid: int) -> Record:
    return Record(REC_EXIT, 0, 0, 0, 0, (pid, 1, 0, 0, 0, 0), pid, pid, 0, 0, 0, "x", ())


def test_orphans_get_the_parent_the_kernel_gave_them(tmp_path: Path) -> None:
    fake_proc(tmp_path, 1, 0, "systemd")
    fake_proc(tmp_path, 3, 1, "containerd-shim")  # a subreaper
    fake_proc(tmp_path, 5, 3, "sh")
    child = fake_proc(tmp_path, 9, 5, "sleep")
    grandchild = fake_proc(tmp_path, 10, 5, "cat")
    table = ProcTable(tmp_path)
    table.snapshot()
    stat_text = (child / "stat").read_text()
    (child / "stat").write_text(stat_text.replace("(sleep) S 5 ", "(sleep) S 3 "))
    os.remove(grandchild / "stat")  # gone too: the fallback finds the nearest known reaper
    assert table.exit(exit_rec(5))
    assert table.procs[9].ppid == 3 and 3 in table.reapers
    assert table.procs[10].ppid == 3
    assert [p.comm for p in table.ancestors(table.procs[9])] == ["sleep", "containerd-shim",
                                                                 "systemd"]
    assert table.children[3] == {9, 10}


def test_orphans_without_a_known_reaper_get_init_of_their_namespace(tmp_path: Path) -> None:
    fake_proc(tmp_path, 1, 0, "systemd")
    fake_proc(tmp_path, 20, 1, "sh", vpid=1)  # a container's init
    fake_proc(tmp_path, 21, 20, "bash", vpid=2)
    sleeper = fake_proc(tmp_path, 22, 21, "sleep", vpid=3)
    table = ProcTable(tmp_path)
    table.snapshot()
    os.remove(sleeper / "stat")  # gone when its parent's exit is handled
    table.exit(exit_rec(21))
    assert table.procs[22].ppid == 20


# ---- container users ----------------------------------------------------------------------------

def test_container_processes_are_named_from_the_containers_passwd(tmp_path: Path) -> None:
    d = fake_proc(tmp_path, 40, 1, "nginx", uids=(101, 101), gids=(101, 101),
                  cgroup=f"4:pids:/docker/{CID}\n")
    (d / "root" / "etc").mkdir(parents=True)
    (d / "root" / "etc" / "passwd").write_text("nginx:x:101:101::/:/sbin/nologin\n")
    (d / "root" / "etc" / "group").write_text("nginx:x:101:\n")
    got = rows(enricher(tmp_path), [rec("close", 40, args=(3,), uid=101, gid=101)], USER)
    assert (got[0]["user.name"], got[0]["group.name"]) == ("nginx", "nginx")


# ---- fds of pipe, socketpair, fcntl --------------------------------------------------------------

def call(en: Enricher, name: str, record: Record) -> Ev:
    ev = Ev()
    HANDLERS[name](en, record, en.procs.procs[record.tgid], ev)
    return ev


def test_pipe_and_socketpair_fds_enter_the_table(tmp_path: Path) -> None:
    fake_proc(tmp_path, 50, 1, "sh")
    en = enricher(tmp_path)
    ev = call(en, "pipe2", rec("close", 50, nr=NR_PIPE2, args=(0, 0o2000000),
                               items=(struct.pack("<ii", 3, 4),)))
    table = en.fds.of(50)
    assert table[3] == table[4] == fd_kind("pipe", cloexec=True)
    assert ev.params == [("res", "0", None), ("fd1", "3", "<p>"), ("fd2", "4", "<p>"),
                         ("flags", "4097", "O_RDONLY|O_CLOEXEC")]
    call(en, "socketpair", rec("close", 50, nr=53, args=(socket.AF_UNIX, socket.SOCK_STREAM, 0),
                               items=(struct.pack("<ii", 5, 6),)))
    assert table[5].type == table[6].type == "unix" and table[5].typechar == "u"
    failed = call(en, "pipe", rec("close", 50, ret=-24, nr=22, items=(b"\0" * 8,)))
    assert failed.fd is None and set(table) == {3, 4, 5, 6}


def test_fcntl_dupfd_adds_an_fd_and_setfd_sets_close_on_exec(tmp_path: Path) -> None:
    fake_proc(tmp_path, 51, 1, "sh")
    en = enricher(tmp_path)
    table = en.fds.of(51)
    table[3] = fd_kind("file", "/etc/passwd")
    ev = call(en, "fcntl", rec("close", 51, ret=10, nr=72, args=(3, 1030, 10)))
    assert table[10] == fd_kind("file", "/etc/passwd", cloexec=True)
    assert ev.params[2] == ("cmd", "26", "F_DUPFD_CLOEXEC") and ev.fd is table[10]
    call(en, "fcntl", rec("close", 51, nr=72, args=(3, 2, 1)))  # F_SETFD FD_CLOEXEC
    assert table[3].cloexec
    call(en, "fcntl", rec("close", 51, ret=-9, nr=72, args=(7, 0, 0)))  # EBADF: nothing
    assert set(table) == {3, 10}


# ---- containers from cgroup-v2 ids ---------------------------------------------------------------

def test_cgroup_mounts_from_mountinfo(tmp_path: Path) -> None:
    info = tmp_path / "mountinfo"
    info.write_text("35 24 0:30 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw\n"
                    "36 24 0:31 / /sys/fs/cgroup/pids rw,nosuid - cgroup cgroup rw,pids\n")
    assert cgroup_mounts(info) == (Path("/sys/fs/cgroup/unified"), True)
    info.write_text("35 24 0:30 / /sys/fs/cgroup rw shared:9 - cgroup2 cgroup2 rw\n")
    assert cgroup_mounts(info) == (Path("/sys/fs/cgroup"), False)


def test_cgroup_ids_name_containers(tmp_path: Path) -> None:
    scope = tmp_path / "system.slice" / f"docker-{CID}.scope"
    scope.mkdir(parents=True)
    now = [0.0]
    hybrid = CgroupIndex(tmp_path, authoritative=False, clock=lambda: now[0])
    assert hybrid.container(scope.stat().st_ino) == (CID[:12], "docker")
    assert hybrid.container(tmp_path.stat().st_ino) is None  # v2 "host" says nothing here
    v2 = CgroupIndex(tmp_path, authoritative=True)
    assert v2.container((tmp_path / "system.slice").stat().st_ino) == ("host", "host")
    late = tmp_path / "docker" / CID
    late.mkdir(parents=True)
    assert hybrid.container(late.stat().st_ino) is None and hybrid.scans == 1  # rate-limited
    now[0] += 2
    assert hybrid.container(late.stat().st_ino) == (CID[:12], "docker")


def test_a_record_in_a_container_cgroup_puts_its_process_there(tmp_path: Path) -> None:
    cgroups = tmp_path / "cgroup2"
    (cgroups / "docker" / CID).mkdir(parents=True)
    fake_proc(tmp_path / "proc", 60, 1, "cat")
    en = Enricher(0, proc_root=tmp_path / "proc", users=UserDb({}, {}),
                  runtimes=ContainerRuntimes(()),
                  cgroups=CgroupIndex(cgroups, authoritative=False))
    en.snapshot()
    inside = (cgroups / "docker" / CID).stat().st_ino
    got = rows(en, [rec("close", 60, args=(3,), cgroup_id=cgroups.stat().st_ino),
                    rec("close", 60, args=(3,), cgroup_id=inside)],
               ["container.id", "container.type"])
    assert got == [{"container.id": "host", "container.type": "host"},
                   {"container.id": CID[:12], "container.type": "docker"}]


@pytest.mark.parametrize("proc", [Proc(1)])
def test_a_plain_proc_knows_no_ids(proc: Proc) -> None:
    assert (proc.ruid, proc.euid, proc.env, proc.cgroup_id) == (None, None, None, None)
