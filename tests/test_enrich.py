"""Enrichment pieces that need no root: argument rendering, container ids from cgroup paths, fd
and process state read from a fake /proc, and path resolution against dirfd and cwd.

(The end-to-end enrichment of synthetic records is in test_bpf_render.py, the live capture in
test_capture_live.py.)
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from pathlib import Path

import pytest

from capture.bpf_render import SYSCALL_BY_NAME
from capture.enrich import Enricher
from capture.fd_table import FdInfo, fd_from_link, fd_kind, read_sockets, socket_fd, with_endpoints
from capture.probe import REC_SYSCALL, Record
from capture.proc_table import Proc, ProcTable, UserDb, container_of, read_proc
from capture.render_args import (
    AT_FDCWD,
    CLONE_NS_FLAGS,
    MODE_NAMES,
    cstr,
    errno_name,
    open_flags,
    parse_endpoint,
    parse_sockaddr,
    render_flags,
    s32,
)
from capture.rows import RowBatch, category, fd_row

# Linux x86_64 open(2) flags.
O_RDONLY, O_WRONLY, O_RDWR = 0, 0o1, 0o2
O_CREAT, O_EXCL, O_TRUNC, O_APPEND = 0o100, 0o200, 0o1000, 0o2000
O_NONBLOCK, O_DSYNC, O_DIRECTORY, O_CLOEXEC = 0o4000, 0o10000, 0o200000, 0o2000000
O_SYNC, O_TMPFILE = 0o4010000, 0o20200000


# ---- argument rendering -----------------------------------------------------------------------

@pytest.mark.parametrize(("flags", "ppm", "text"), [
    (O_RDONLY, 1, "O_RDONLY"),
    (O_RDWR, 3, "O_RDWR"),
    (O_WRONLY | O_CREAT | O_EXCL, 38, "O_EXCL|O_CREAT|O_WRONLY"),
    (O_WRONLY | O_CREAT | O_TRUNC, 262, "O_TRUNC|O_CREAT|O_WRONLY"),
    (O_RDWR | O_APPEND | O_CLOEXEC, 4107, "O_APPEND|O_RDWR|O_CLOEXEC"),
    # what `ls` opens a directory with
    (O_RDONLY | O_NONBLOCK | O_DIRECTORY | O_CLOEXEC, 5185,
     "O_DIRECTORY|O_NONBLOCK|O_RDONLY|O_CLOEXEC"),
    # multi-bit flags: O_SYNC carries O_DSYNC's bit, O_TMPFILE carries O_DIRECTORY's
    (O_SYNC, 145, "O_SYNC|O_DSYNC|O_RDONLY"),
    (O_DSYNC, 17, "O_DSYNC|O_RDONLY"),
    (O_TMPFILE | O_RDWR, 9219, "O_DIRECTORY|O_RDWR|O_TMPFILE"),
])
def test_open_flags_render_like_libsinsp(flags: int, ppm: int, text: str) -> None:
    assert open_flags(flags) == (ppm, text)


@pytest.mark.parametrize(("value", "table", "text"), [
    (0o755, MODE_NAMES, "S_IXOTH|S_IROTH|S_IXGRP|S_IRGRP|S_IXUSR|S_IWUSR|S_IRUSR"),
    (0o4755, MODE_NAMES,
     "S_IXOTH|S_IROTH|S_IXGRP|S_IRGRP|S_IXUSR|S_IWUSR|S_IRUSR|S_ISUID"),
    (0o1007, MODE_NAMES, "S_IXOTH|S_IWOTH|S_IROTH|S_ISVTX"),
    (0, MODE_NAMES, ""),
    (0x20000000 | 0x00020000, CLONE_NS_FLAGS, "CLONE_NEWPID|CLONE_NEWNS"),
    (0x10000 | 0x100 | 0x200 | 0x400, CLONE_NS_FLAGS,
     "CLONE_FILES|CLONE_FS|CLONE_THREAD|CLONE_VM"),
])
def test_flag_tables_render_in_table_order(value: int, table: tuple[tuple[str, int], ...],
                                           text: str) -> None:
    assert render_flags(value, table) == text


def test_render_flags_stops_at_a_flag_equal_to_the_value() -> None:
    # O_RDWR (3) is the whole value: O_WRONLY (2) and O_RDONLY (1) after it are not added.
    table = (("BOTH", 3), ("TWO", 2), ("ONE", 1), ("ZERO", 0))
    assert render_flags(3, table) == "BOTH"
    assert render_flags(2, table) == "TWO"
    assert render_flags(0, table) == "ZERO"


def test_errno_names_and_register_decoding() -> None:
    assert errno_name(0) == errno_name(7) == "SUCCESS"
    assert errno_name(-errno.EACCES) == "EACCES"
    assert errno_name(-4095) == "E4095"  # no name for it
    assert s32(0xFFFFFF9C) == AT_FDCWD and s32(3) == 3 and s32(0x1_0000_0005) == 5
    assert cstr(b"/etc/passwd\0garbage") == "/etc/passwd" and cstr(b"\xff\0") == "\ufffd"


def sockaddr_in(addr: str, port: int) -> bytes:
    return (struct.pack("<H", socket.AF_INET) + struct.pack(">H", port)
            + socket.inet_aton(addr) + b"\0" * 8)


def test_sockaddrs_and_local_endpoints() -> None:
    assert parse_sockaddr(sockaddr_in("10.0.0.1", 80)) == (socket.AF_INET, "10.0.0.1", 80)
    v6 = (struct.pack("<H", socket.AF_INET6) + struct.pack(">HI", 443, 0)
          + socket.inet_pton(socket.AF_INET6, "2001:db8::1") + b"\0" * 4)
    assert parse_sockaddr(v6) == (socket.AF_INET6, "2001:db8::1", 443)
    abstract = struct.pack("<H", socket.AF_UNIX) + b"\0dbus-x\0\0"
    assert parse_sockaddr(abstract) == (socket.AF_UNIX, "@dbus-x", 0)
    assert parse_sockaddr(b"\x02") is None
    netlink = struct.pack("<H", socket.AF_NETLINK) + b"\0" * 10
    assert parse_sockaddr(netlink) == (socket.AF_NETLINK, "", 0)
    local = struct.pack("<HH", socket.AF_INET, 40000) + socket.inet_aton("127.0.0.1") + b"\0" * 12
    assert parse_endpoint(local) == (socket.AF_INET, "127.0.0.1", 40000)
    assert parse_endpoint(local[:10]) is None


# ---- containers from cgroup paths ----------------------------------------------------------

ID = "3f4e5d6c7b8a" + "9" * 52
SHORT = ID[:12]


@pytest.mark.parametrize(("cgroup", "expected"), [
    # Docker: cgroupfs driver /docker/<id>, systemd driver docker-<id>.scope
    (f"12:memory:/docker/{ID}\n11:cpu,cpuacct:/docker/{ID}\n", (SHORT, "docker")),
    (f"11:memory:/system.slice/docker-{ID}.scope\n", (SHORT, "docker")),
    (f"0::/system.slice/docker-{ID}.scope\n", (SHORT, "docker")),
    (f"0::/docker/{ID}\n", (SHORT, "docker")),
    # containerd under Kubernetes: cgroupfs .../pod<uid>/<id>, systemd cri-containerd-<id>.scope,
    # and systemd without `SystemdCgroup = true`: <slice>:cri-containerd:<id>
    (f"4:memory:/kubepods/besteffort/pod0c1a2b3c-1111-2222-3333-444455556666/{ID}\n",
     (SHORT, "containerd")),
    (f"0::/kubepods/burstable/pod0c1a2b3c-1111/{ID}\n", (SHORT, "containerd")),
    ("4:memory:/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0c1a_1111"
     f".slice/cri-containerd-{ID}.scope\n", (SHORT, "containerd")),
    ("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234_5678.slice/"
     f"cri-containerd-{ID}.scope\n", (SHORT, "containerd")),
    ("0::/system.slice/containerd.service/kubepods-burstable-pod1234.slice:cri-containerd:"
     f"{ID}\n", (SHORT, "containerd")),
    # CRI-O: cgroupfs crio-<id>, systemd crio-<id>.scope; conmon's scope is not a container
    (f"5:memory:/kubepods/burstable/pod0c1a2b3c-1111/crio-{ID}\n", (SHORT, "cri-o")),
    (f"0::/kubepods/besteffort/pod12/crio-{ID}\n", (SHORT, "cri-o")),
    (f"5:memory:/kubepods.slice/kubepods-pod12.slice/crio-{ID}.scope\n", (SHORT, "cri-o")),
    (f"0::/kubepods.slice/kubepods-pod12.slice/crio-{ID}.scope\n", (SHORT, "cri-o")),
    (f"0::/kubepods.slice/kubepods-pod12.slice/crio-conmon-{ID}.scope\n", ("host", "host")),
    # podman: cgroupfs libpod_parent/libpod-<id>, systemd libpod-<id>.scope (rootful and
    # rootless, v2 with the /container leaf); conmon's scope is not a container
    (f"3:memory:/libpod_parent/libpod-{ID}\n", (SHORT, "podman")),
    (f"0::/libpod_parent/libpod-{ID}\n", (SHORT, "podman")),
    (f"3:memory:/machine.slice/libpod-{ID}.scope\n", (SHORT, "podman")),
    (f"0::/machine.slice/libpod-{ID}.scope/container\n", (SHORT, "podman")),
    (f"0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope\n",
     (SHORT, "podman")),
    (f"0::/machine.slice/libpod-conmon-{ID}.scope\n", ("host", "host")),
    # the host
    ("0::/init.scope\n", ("host", "host")),
    ("12:memory:/user.slice\n0::/user.slice/user-0.slice/session-3.scope\n", ("host", "host")),
    ("", ("host", "host")),
], ids=[
    "docker-v1-cgroupfs", "docker-v1-systemd", "docker-v2-systemd", "docker-v2-cgroupfs",
    "containerd-v1-cgroupfs", "containerd-v2-cgroupfs", "containerd-v1-systemd",
    "containerd-v2-systemd", "containerd-v2-no-systemd-cgroup",
    "crio-v1-cgroupfs", "crio-v2-cgroupfs", "crio-v1-systemd", "crio-v2-systemd", "crio-conmon",
    "podman-v1-cgroupfs", "podman-v2-cgroupfs", "podman-v1-systemd", "podman-v2-systemd",
    "podman-rootless", "podman-conmon", "host-v2", "host-v1", "empty",
])
def test_container_of_cgroup(cgroup: str, expected: tuple[str, str]) -> None:
    assert container_of(cgroup) == expected


# ---- fd state ---------------------------------------------------------------------------------

def test_fd_from_proc_links() -> None:
    sockets = {4242: fd_kind("unix", "/run/x.sock")}
    assert fd_from_link("/etc/passwd", sockets) == fd_kind("file", "/etc/passwd")
    assert fd_from_link("/tmp/gone (deleted)", sockets).name == "/tmp/gone"
    assert fd_from_link("/memfd:payload (deleted)", sockets) == fd_kind("memfd", "memfd:payload")
    assert fd_from_link("socket:[4242]", sockets).name == "/run/x.sock"
    assert fd_from_link("socket:[1]", sockets).type == "unknown"
    assert fd_from_link("pipe:[77]", sockets).typechar == "p"
    assert fd_from_link("anon_inode:[eventpoll]", sockets).type == "eventpoll"
    assert fd_from_link("anon_inode:bpf-map", sockets).typechar == "b"


def test_socket_names_are_client_to_server() -> None:
    tcp = socket_fd(socket.AF_INET, socket.SOCK_STREAM)
    client = with_endpoints(tcp, ("10.0.0.2", 40000), ("10.0.0.1", 443), server=False)
    assert client.name == "10.0.0.2:40000->10.0.0.1:443" and client.resolved_char == "<4t>"
    accepted = with_endpoints(tcp, ("10.0.0.1", 443), ("10.0.0.2", 40000), server=True)
    assert accepted.name == "10.0.0.2:40000->10.0.0.1:443" and accepted.connected
    listener = with_endpoints(tcp, ("0.0.0.0", 8080), None, server=True)
    assert listener.name == "0.0.0.0:8080" and not listener.connected
    v6 = with_endpoints(socket_fd(socket.AF_INET6, socket.SOCK_DGRAM), None, ("::1", 53), False)
    assert v6.name == "[::]:0->[::1]:53" and v6.l4proto == "udp"
    unix = with_endpoints(socket_fd(socket.AF_UNIX, socket.SOCK_STREAM), None, ("/run/s", 0),
                          server=False)
    assert unix.name == "/run/s" and unix.connected


def test_sockets_are_read_from_proc_net(tmp_path: Path) -> None:
    net = tmp_path / "net"
    net.mkdir()
    header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid" \
             "  timeout inode\n"
    (net / "tcp").write_text(
        header
        + "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 111 1\n"
        + "   1: 0100007F:9C40 0100007F:1F90 01 00000000:00000000 00:00000000 00000000 0 0 222 1\n"
    )
    (net / "unix").write_text("Num RefCount Protocol Flags Type St Inode Path\n"
                              "0000: 00000002 00000000 00010000 0001 01 333 /run/x.sock\n")
    found = read_sockets(net)
    assert found[111].name == "127.0.0.1:8080" and found[111].is_server
    assert found[222].name == "127.0.0.1:40000->127.0.0.1:8080" and found[222].connected
    assert found[333] == fd_kind("unix", "/run/x.sock")


def test_fd_rows_split_paths_and_endpoints() -> None:
    row = dict(zip(("type", "typechar", "name", "directory", "filename"),
                   fd_row(fd_kind("file", "/etc/ssh/sshd_config")), strict=False))
    assert row["directory"] == "/etc/ssh" and row["filename"] == "sshd_config"
    assert fd_row(fd_kind("directory", "/srv"))[3:5] == ("/srv", None)
    assert category("openat", fd_kind("file", "/x")) == "file"
    assert category("close", socket_fd(socket.AF_INET, socket.SOCK_STREAM)) == "net"
    assert category("close", fd_kind("pipe")) == "IPC"
    assert category("close", None) == "unknown"


# ---- processes --------------------------------------------------------------------------------

def fake_proc(root: Path, pid: int, ppid: int, comm: str, argv: list[str], cwd: str,
              cgroup: str = "0::/\n") -> None:
    d = root / str(pid)
    (d / "fd").mkdir(parents=True)
    # stat after "(comm) ": state ppid pgrp session tty_nr ... starttime is the 20th field
    rest = ["S", str(ppid), str(pid), str(pid), "34816"] + ["0"] * 14 + ["100"] + ["0"] * 20
    (d / "stat").write_text(f"{pid} ({comm}) " + " ".join(rest))
    (d / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    (d / "status").write_text(f"Name:\t{comm}\nNSpid:\t{pid}\t7\n")
    (d / "cgroup").write_text(cgroup)
    (d / "loginuid").write_text("4294967295")
    os.symlink(cwd, d / "cwd")
    os.symlink(f"/usr/bin/{comm}", d / "exe")


def test_processes_are_read_from_proc(tmp_path: Path) -> None:
    fake_proc(tmp_path, 70, 1, "nginx: worker", ["nginx: worker process"], "/",
              cgroup=f"0::/system.slice/docker-{ID}.scope\n")
    proc = read_proc(70, tmp_path, boot_ns=10**18)
    assert proc is not None
    assert (proc.comm, proc.exe, proc.args, proc.exepath) == (
        "nginx: worker", "nginx: worker process", (), "/usr/bin/nginx: worker")
    assert (proc.ppid, proc.sid, proc.pgid, proc.tty, proc.vpid) == (1, 70, 70, 34816, 7)
    assert proc.loginuid == -1 and proc.container_id == SHORT
    assert proc.start_ns == 10**18 + 100 * 10**9 // os.sysconf("SC_CLK_TCK")
    assert read_proc(71, tmp_path, boot_ns=0) is None


def test_ancestors_stop_at_unknown_parents_and_loops(tmp_path: Path) -> None:
    table = ProcTable(tmp_path)
    table.procs = {1: Proc(1, 0, "init"), 5: Proc(5, 1, "sh"), 9: Proc(9, 5, "cat"),
                   20: Proc(20, 21, "a"), 21: Proc(21, 20, "b")}
    assert [p.comm for p in table.ancestors(table.procs[9])] == ["cat", "sh", "init"]
    assert [p.pid for p in table.ancestors(table.procs[20])] == [20, 21]


def test_users_and_groups_from_etc(tmp_path: Path) -> None:
    (tmp_path / "passwd").write_text("root:x:0:0::/root:/bin/sh\nu:x:1000:1000::/h:/bin/sh\n"
                                     "dup:x:1000:1000::/h:/bin/sh\nbroken\n")
    (tmp_path / "group").write_text("root:x:0:\n")
    users = UserDb.load(tmp_path)
    assert users.users == {0: "root", 1000: "u"} and users.groups == {0: "root"}
    assert UserDb.load(tmp_path / "missing") == UserDb({}, {})


# ---- path resolution against dirfd and cwd ------------------------------------------------

@pytest.fixture
def enricher(tmp_path: Path) -> Enricher:
    en = Enricher(0, proc_root=tmp_path, users=UserDb({}, {}))
    fds = en.fds.of(10)
    fds[5] = fd_kind("directory", "/srv/data")
    fds[6] = fd_kind("file", "/opt/app")  # a directory opened without O_DIRECTORY (O_PATH)
    fds[7] = socket_fd(socket.AF_INET, socket.SOCK_STREAM)
    return en


@pytest.mark.parametrize(("path", "dirfd", "expected"), [
    ("/etc/passwd", AT_FDCWD, "/etc/passwd"),
    ("/etc/../etc/./passwd", AT_FDCWD, "/etc/passwd"),
    ("/etc//passwd", AT_FDCWD, "/etc/passwd"),
    ("notes.txt", AT_FDCWD, "/home/u/notes.txt"),
    ("../x", AT_FDCWD, "/home/x"),
    ("./a/b/", AT_FDCWD, "/home/u/a/b"),
    ("x", 5, "/srv/data/x"),
    ("../y", 5, "/srv/y"),
    ("/abs", 5, "/abs"),  # an absolute path ignores dirfd
    ("bin/run", 6, "/opt/app/bin/run"),
    ("x", 7, "x"),  # a socket is no directory: left as given
    ("x", 99, "x"),  # an fd we do not know: left as given
    ("", AT_FDCWD, ""),
])
def test_paths_resolve_against_dirfd_or_cwd(enricher: Enricher, path: str, dirfd: int,
                                            expected: str) -> None:
    assert enricher.resolve(Proc(10, cwd="/home/u"), dirfd, path) == expected


def test_relative_path_without_a_known_cwd_is_left_as_given(enricher: Enricher) -> None:
    assert enricher.resolve(Proc(10, cwd=None), AT_FDCWD, "x") == "x"


def rec(name: str, tgid: int, ret: int = 0, args: tuple[int, ...] = (),
        items: tuple[bytes, ...] = ()) -> Record:
    full = (tuple(args) + (0,) * 6)[:6]
    return Record(REC_SYSCALL, SYSCALL_BY_NAME[name].nr, 0, 0, ret, full,  # type: ignore[arg-type]
                  tgid, tgid, 0, 0, 0, "sh", items)


def test_opens_follow_dirfds_and_directory_changes(tmp_path: Path) -> None:
    fake_proc(tmp_path, 50, 1, "sh", ["sh"], "/home/u")
    en = Enricher(0, proc_root=tmp_path, users=UserDb({}, {}))
    en.snapshot()
    batch = RowBatch()
    cwd = 0xFFFFFF9C
    en.feed([
        rec("openat", 50, ret=3, args=(cwd, 0, O_DIRECTORY), items=(b"/srv\0",)),
        rec("openat", 50, ret=4, args=(3, 0, O_RDONLY), items=(b"data.txt\0",)),
        rec("chdir", 50, items=(b"../../tmp\0",)),
        rec("open", 50, ret=5, args=(0, O_RDONLY), items=(b"a\0",)),
        rec("fchdir", 50, args=(3,)),
        rec("mkdir", 50, args=(0, 0o755), items=(b"new\0",)),
        rec("chdir", 50, ret=-errno.ENOENT, items=(b"/nonexistent\0",)),
        rec("unlinkat", 50, args=(cwd, 0, 0), items=(b"old\0",)),
    ], batch)
    got = batch.to_table().select(["fd.name", "evt.arg.path", "evt.arg.name", "evt.args"])
    rows = got.to_pylist()
    assert [r["fd.name"] for r in rows[:2]] == ["/srv", "/srv/data.txt"]
    assert rows[1]["evt.args"] == "fd=4(<f>/srv/data.txt) dirfd=3 name=data.txt(/srv/data.txt) " \
                                  "flags=1(O_RDONLY) mode=0 "
    assert rows[2]["evt.arg.path"] == "/tmp"
    assert rows[3]["fd.name"] == "/tmp/a"
    assert rows[5]["evt.arg.path"] == "/srv/new"  # fchdir(3) moved the cwd to /srv
    assert rows[7]["evt.arg.name"] == "/srv/old"  # the failed chdir left it there


def test_fd_info_is_shared_between_opens_of_the_same_file(enricher: Enricher) -> None:
    first = enricher.file_info("file", "/etc/hosts", "hosts", cloexec=True)
    assert enricher.file_info("file", "/etc/hosts", "hosts", cloexec=True) is first
    assert enricher.file_info("file", "/etc/hosts", "hosts", cloexec=False) is not first
    assert isinstance(first, FdInfo) and first.typechar == "f"
