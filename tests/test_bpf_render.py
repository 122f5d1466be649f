"""Capture without root: the BPF C rendering, record decoding, enrichment from synthetic records,
spool recovery and the doctor's report. (The live tests are in test_capture_live.py.)"""

from __future__ import annotations

import errno
import os
import re
import socket
import struct
from pathlib import Path

import pyarrow as pa
import pytest
from click.testing import CliRunner

import cli
from capture import bpf_render
from capture.bpf_render import (
    DEFAULT_SYSCALLS,
    PRESETS,
    SYSCALL_BY_NAME,
    SYSCALLS,
    ProgramOptions,
    RenderError,
    render,
    render_task_filter,
    resolve_syscalls,
)
from capture.doctor import FAILED, OK, SKIPPED, Check, DoctorReport, render_report
from capture.enrich import Enricher
from capture.probe import (
    HEADER,
    REC_EXEC_ARGS,
    REC_EXIT,
    REC_FORK,
    REC_SYSCALL,
    Features,
    Record,
    decode,
    detect_features,
)
from capture.proc_table import UserDb, container_of
from capture.record import RecordOptions, Segment, recover_spool
from capture.render_args import MODE_NAMES, errno_name, open_flags, parse_sockaddr, render_flags
from capture.rows import RowBatch
from schemas.trace import SOURCE_LIVE, TraceMeta

ANCHORS = Path("/work/shared/anchors/falco-rules")
UNISTD = Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")
O_WRONLY, O_RDWR, O_CREAT, O_TRUNC, O_CLOEXEC = 0o1, 0o2, 0o100, 0o1000, 0o2000000


def options(**kw: object) -> ProgramOptions:
    base: dict[str, object] = {"syscalls": DEFAULT_SYSCALLS, "self_tgid": 4242}
    base.update(kw)
    return ProgramOptions(**base)  # type: ignore[arg-type]


# ---- rendering ------------------------------------------------------------------------------

def test_render_fills_every_placeholder() -> None:
    text = render(options())
    assert "@" not in re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    assert "#define SELF_TGID 4242" in text
    assert "BPF_RINGBUF_OUTPUT(events, 8192);" in text


def test_every_selected_syscall_is_a_case_and_others_are_not() -> None:
    text = render(options(syscalls=("openat", "close")))
    assert "    case 257: /* openat */" in text
    assert "    case 3: /* close */" in text
    assert "/* execve */" not in text.split("syscall_selected", 1)[1].split("}", 1)[0]


def test_item_cases_read_the_right_arguments() -> None:
    text = render(options(syscalls=("openat", "connect", "renameat2", "accept4")))
    assert ("    case 257: /* openat */\n        off = put_str(buf, off, 0, s.args[1]);\n"
            "        break;") in text
    assert "off = put_str(buf, off, 1, s.args[3]);" in text  # renameat2's newpath
    assert "off = put_bytes(buf, off, 0, s.args[1], s.args[2]);" in text  # connect's sockaddr
    assert "off = put_local(buf, off, 1, tid);" in text
    assert "off = put_sockaddr_ptrlen(buf, off, 0, s.args[1], s.args[2]);" in text


def test_features_switch_code_on_and_off() -> None:
    text = render(options(local_endpoints=False, has_group_dead=False))
    assert "#define LOCAL_ENDPOINTS 0" in text
    assert "#define HAS_GROUP_DEAD 0" in text
    assert "put_local(buf, off, 1, tid)" not in text


def test_task_filter_renders_pids_and_branch_free_comms() -> None:
    assert render_task_filter((), ()) == ""
    text = render_task_filter((7, 3), ("sh",))
    assert "switch (tgid) { case 3: case 7: break; default: return 0; }" in text
    assert "((comm[0] ^ 115) | (comm[1] ^ 104) | (comm[2] ^ 0)) == 0)" in text
    long = render_task_filter((), ("a-very-long-command-name",))
    assert "(comm[14] ^ 109) | (comm[15] ^ 0)) == 0" in long  # 15 bytes kept, as the kernel


def test_follow_filter_is_off_by_default() -> None:
    text = render(options())
    assert "#define FOLLOW 0" in text
    assert "followed(tgid)" not in render_task_filter((), ())


def test_follow_filter_renders_roots_and_checks_the_map_first() -> None:
    text = render(options(follow_tgids=(42, 7, 42), follow_entries=1024))
    assert "#define FOLLOW 1" in text
    assert "BPF_HASH(follow_map, u32, u8, 1024);" in text
    is_root = text.split("static __always_inline int is_root(u32 tgid)", 1)[1].split("}\n", 1)[0]
    assert "    case 7:\n    case 42:\n        return 1;" in is_root  # sorted, once each
    # task_selected: the capture itself first, then the trees, then the other filters
    selected = text.split("static __always_inline int task_selected(u32 tgid)", 1)[1]
    body = selected.split("return 1;", 1)[0]
    assert body.index("SELF_TGID") < body.index("if (!followed(tgid))")
    # the fork probe adds a followed parent's children; the exit probe forgets the dead
    fork = text.split("TRACEPOINT_PROBE(sched, sched_process_fork)", 1)[1].split("}\n", 1)[0]
    assert "if (followed(bpf_get_current_pid_tgid() >> 32))" in fork
    assert "follow_map.update(&child, &yes);" in fork
    assert "forget(tid, tgid, GROUP_DEAD);" in text


def test_follow_filter_combines_with_pid_and_comm_filters() -> None:
    text = render_task_filter((5,), ("sh",), follow=True)
    assert text.index("followed(tgid)") < text.index("switch (tgid)") < text.index("comm[0]")


def test_record_follow_option_reaches_the_program() -> None:
    program = RecordOptions(follow_pids=(99,)).program(4242, Features(True, True))
    assert program.follow_tgids == (99,)
    result = CliRunner().invoke(cli.capture, ["record", "-o", "x.parquet", "--follow", "99",
                                              "--print-bpf"])
    assert result.exit_code == 0, result.output
    assert "#define FOLLOW 1" in result.output and "    case 99:" in result.output


def test_exit_probe_records_the_entry_syscall_number() -> None:
    # A successful execveat reaches sys_exit as execve on some kernels: the record must carry
    # the number stashed at entry, and the exit probe must not drop execve's exit.
    text = render(options(syscalls=("execveat",)))
    exit_probe = text.split("RAW_TRACEPOINT_PROBE(sys_exit)", 1)[1]
    assert "if (!syscall_selected(id) && id != NR_EXECVE)" in exit_probe
    assert exit_probe.index("id = s.id;") < exit_probe.index("begin(REC_SYSCALL, id)")
    assert "s.id = id;" in text.split("RAW_TRACEPOINT_PROBE(sys_enter)", 1)[1]


@pytest.mark.parametrize(("kw", "message"), [
    ({"follow_tgids": (0,)}, "to follow must be positive"),
    ({"follow_entries": 0}, "follow_entries must be positive"),
    ({"syscalls": ()}, "No syscalls selected"),
    ({"syscalls": ("openat", "nosuch")}, "Cannot record nosuch"),
    ({"ringbuf_pages": 1000}, "ringbuf_pages must be a power of two"),
    ({"path_slot": 8192}, "path_slot must be between"),
    ({"pids": (0,)}, "must be positive"),
])
def test_bad_options_are_refused(kw: dict[str, object], message: str) -> None:
    with pytest.raises(RenderError, match=message):
        render(options(**kw))


def test_unfilled_placeholder_in_template_is_an_error() -> None:
    with pytest.raises(RenderError, match="unfilled placeholders: NOPE"):
        render(options(), template="int x = @NOPE@;")


def test_resolve_syscalls() -> None:
    assert resolve_syscalls("exec") == PRESETS["exec"]
    assert resolve_syscalls("exec", ("openat",))[-1] == "openat"
    assert resolve_syscalls(only=("close", "close")) == ("close",)
    with pytest.raises(RenderError, match="Unknown syscall preset"):
        resolve_syscalls("nope")


def test_default_preset_covers_what_the_rules_need() -> None:
    needed = {"unshare", "setns", "ptrace", "init_module", "finit_module", "mount", "connect",
              "execve", "execveat", "openat2", "symlinkat", "linkat", "dup3", "socket"}
    tsv = ANCHORS / "rule-evttypes.tsv"
    if tsv.exists():
        for line in tsv.read_text().splitlines()[1:]:
            needed.update(t for t in line.split("\t")[4].split(",") if t)
    io_calls = {"sendto", "sendmsg", "recvfrom", "recvmsg"}
    unsupported = {"listen"} - set(DEFAULT_SYSCALLS)
    assert not unsupported
    assert needed - io_calls - set(DEFAULT_SYSCALLS) == set()


def test_syscall_numbers_match_the_system_headers() -> None:
    if not UNISTD.exists():
        pytest.skip(f"{UNISTD} not installed")
    numbers = dict(re.findall(r"#define __NR_(\w+) (\d+)", UNISTD.read_text()))
    for spec in SYSCALLS:
        if spec.name in numbers:
            assert int(numbers[spec.name]) == spec.nr, spec.name


def test_header_struct_matches_the_c_layout() -> None:
    c = bpf_render.TEMPLATE_PATH.read_text()
    body = c.split("struct rec_hdr {", 1)[1].split("};", 1)[0]
    sizes = {"u64": 8, "s64": 8, "u32": 4, "u16": 2, "char": 1}
    total = 0
    for decl in re.findall(r"^\s*(\w+)\s+(\w+)(?:\[(\w+)\])?;", body, flags=re.M):
        count = bpf_render.N_ITEMS if decl[2] == "N_ITEMS" else int(decl[2] or 1)
        total += sizes[decl[0]] * count
    assert total == HEADER.size == 120


# ---- decoding -------------------------------------------------------------------------------

def frame(kind: int, nr: int, *, ret: int = 0, args: tuple[int, ...] = (0,) * 6,
          tgid: int = 100, tid: int = 100, comm: bytes = b"cat", items: tuple[bytes, ...] = (),
          ts: int = 1_000, busy: bool = False, discard: bool = False) -> bytes:
    lens = [len(i) for i in items] + [0] * (4 - len(items))
    body = HEADER.pack(ts, ret, *args, 0, tgid, tid, 0, 0, comm, kind, nr, 1, *lens, 0)
    body += b"".join(items)
    word = len(body) | (1 << 31 if busy else 0) | (1 << 30 if discard else 0)
    padded = body + b"\0" * (-(len(body) + 8) % 8)
    return struct.pack("<II", word, 0) + padded


def test_decode_reads_frames_and_stops_at_a_busy_one() -> None:
    chunk = (frame(REC_SYSCALL, 257, ret=3, items=(b"/etc/hostname\0",))
             + frame(REC_SYSCALL, 3, discard=True)
             + frame(REC_SYSCALL, 3, ret=0))
    busy = frame(REC_SYSCALL, 3, busy=True)
    records, used = decode(chunk + busy)
    assert used == len(chunk)
    assert [(r.nr, r.ret) for r in records] == [(257, 3), (3, 0)]
    first = records[0]
    assert first.comm == "cat" and first.items[0] == b"/etc/hostname\0" and first.cpu == 1
    assert decode(chunk[:20]) == ([], 0)  # a frame cut by the end of the chunk waits


def test_detect_features_from_format_files(tmp_path: Path) -> None:
    exit_dir = tmp_path / "events" / "sched" / "sched_process_exit"
    exit_dir.mkdir(parents=True)
    (exit_dir / "format").write_text("\tfield:pid_t pid;\toffset:24;\n"
                                     "\tfield:bool group_dead;\toffset:32;\n")
    found = detect_features(tmp_path)
    assert found.has_group_dead and not found.local_endpoints


# ---- argument rendering -----------------------------------------------------------------------

def test_open_flags_follow_libsinsp() -> None:
    assert open_flags(0) == (1, "O_RDONLY")
    assert open_flags(O_RDWR) == (3, "O_RDWR")
    assert open_flags(O_WRONLY | O_CREAT | O_TRUNC)[1] == "O_TRUNC|O_CREAT|O_WRONLY"
    assert open_flags(O_CLOEXEC)[1] == "O_RDONLY|O_CLOEXEC"


def test_modes_errnos_and_sockaddrs() -> None:
    assert render_flags(0o4755, MODE_NAMES).endswith("S_IRUSR|S_ISUID")
    assert errno_name(0) == errno_name(5) == "SUCCESS"
    assert errno_name(-errno.ENOENT) == "ENOENT"
    v4 = struct.pack("<H", socket.AF_INET) + struct.pack(">H", 80) + socket.inet_aton("10.0.0.1")
    assert parse_sockaddr(v4 + b"\0" * 8) == (socket.AF_INET, "10.0.0.1", 80)
    mapped = (struct.pack("<H", socket.AF_INET6) + struct.pack(">HI", 443, 0)
              + b"\0" * 10 + b"\xff\xff" + socket.inet_aton("1.2.3.4") + b"\0" * 4)
    assert parse_sockaddr(mapped) == (socket.AF_INET, "1.2.3.4", 443)
    unix = struct.pack("<H", socket.AF_UNIX) + b"/run/x.sock\0"
    assert parse_sockaddr(unix) == (socket.AF_UNIX, "/run/x.sock", 0)


ID = "3f4e5d6c7b8a" + "0" * 52


@pytest.mark.parametrize(("cgroup", "expected"), [
    (f"12:memory:/docker/{ID}\n", ("3f4e5d6c7b8a", "docker")),
    (f"0::/system.slice/docker-{ID}.scope\n", ("3f4e5d6c7b8a", "docker")),
    ("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234_5678.slice/"
     f"cri-containerd-{ID}.scope\n", ("3f4e5d6c7b8a", "containerd")),
    (f"0::/kubepods.slice/kubepods-pod12.slice/crio-{ID}.scope\n", ("3f4e5d6c7b8a", "cri-o")),
    (f"5:cpu:/kubepods/besteffort/pod0c1a-22/{ID}\n", ("3f4e5d6c7b8a", "containerd")),
    (f"0::/machine.slice/libpod-{ID}.scope/container\n", ("3f4e5d6c7b8a", "podman")),
    (f"0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope\n",
     ("3f4e5d6c7b8a", "podman")),
    (f"0::/machine.slice/libpod-conmon-{ID}.scope\n", ("host", "host")),
    ("0::/user.slice/user-1000.slice/session-1.scope\n", ("host", "host")),
])
def test_container_ids_from_cgroups(cgroup: str, expected: tuple[str, str]) -> None:
    assert container_of(cgroup) == expected


# ---- enrichment from synthetic records ----------------------------------------------------

def fake_proc(root: Path, pid: int, ppid: int, comm: str, argv: list[str], cwd: str) -> None:
    d = root / str(pid)
    (d / "fd").mkdir(parents=True)
    rest = ["S", str(ppid), str(pid), str(pid), "0"] + ["0"] * 14 + ["100"] + ["0"] * 20
    (d / "stat").write_text(f"{pid} ({comm}) " + " ".join(rest))
    (d / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    (d / "status").write_text(f"Name:\t{comm}\nNSpid:\t{pid}\n")
    (d / "cgroup").write_text("0::/\n")
    (d / "loginuid").write_text("1000")
    os.symlink(cwd, d / "cwd")
    os.symlink(f"/usr/bin/{comm}", d / "exe")


def rec(kind: int, nr: int, tgid: int, comm: str, ret: int = 0, args: tuple[int, ...] = (),
        items: tuple[bytes, ...] = (), ts: int = 0, tid: int | None = None) -> Record:
    full = (tuple(args) + (0,) * 6)[:6]
    return Record(kind, nr, ts, 0, ret, full, tgid, tid or tgid, 0, 0, 0, comm,  # type: ignore
                  items)


def nr(name: str) -> int:
    return SYSCALL_BY_NAME[name].nr


def enriched(tmp_path: Path, records: list[Record]) -> list[dict[str, object]]:
    proc = tmp_path / "proc"
    fake_proc(proc, 1, 0, "init", ["/sbin/init"], "/")
    fake_proc(proc, 50, 1, "bash", ["-bash"], "/home/u")
    enricher = Enricher(0, proc_root=proc, users=UserDb({0: "root", 1000: "u"}, {0: "root"}))
    enricher.snapshot()
    batch = RowBatch()
    enricher.feed(records, batch)
    table = batch.to_table()
    assert isinstance(table, pa.Table)
    return table.drop_columns(["evt.time"]).to_pylist()


AT_FDCWD = 0xFFFFFF9C


def test_enrichment_follows_fork_exec_open_close(tmp_path: Path) -> None:
    rows = enriched(tmp_path, [
        rec(REC_FORK, 0, 50, "bash", args=(60, 50)),
        rec(REC_EXEC_ARGS, nr("execve"), 60, "bash",
            items=(b"/usr/bin/cat\0", b"cat\0notes.txt\0")),
        rec(REC_SYSCALL, nr("execve"), 60, "cat"),
        rec(REC_SYSCALL, nr("openat"), 60, "cat", ret=3, args=(AT_FDCWD, 0, 0, 0),
            items=(b"notes.txt\0",)),
        rec(REC_SYSCALL, nr("openat"), 60, "cat", ret=-errno.ENOENT,
            args=(AT_FDCWD, 0, O_WRONLY | O_CREAT | O_TRUNC, 0o644), items=(b"/etc/x\0",)),
        rec(REC_SYSCALL, nr("close"), 60, "cat", args=(3,)),
        rec(REC_EXIT, 0, 60, "cat", args=(60, 1)),
    ])
    execve, opened, failed, closed = rows
    assert execve["evt.type"] == "execve" and execve["evt.res"] == "SUCCESS"
    assert execve["proc.name"] == "cat" and execve["proc.pname"] == "bash"
    assert execve["proc.cmdline"] == "cat notes.txt" and execve["proc.exe"] == "cat"
    assert execve["proc.aname"] == ["cat", "bash", "init"]
    assert execve["proc.apid"] == [60, 50, 1]
    assert execve["proc.cwd"] == "/home/u" and execve["user.name"] == "root"
    assert execve["user.loginuid"] == 1000 and execve["user.loginname"] == "u"
    assert opened["fd.name"] == "/home/u/notes.txt" and opened["fd.typechar"] == "f"
    assert opened["evt.arg.name"] == "/home/u/notes.txt" and opened["fd.num"] == 3
    assert opened["evt.is_open_read"] is True and opened["evt.is_open_write"] is False
    assert opened["fd.directory"] == "/home/u" and opened["fd.filename"] == "notes.txt"
    assert failed["evt.res"] == "ENOENT" and failed["evt.rawres"] == -2
    assert failed["evt.failed"] is True and failed["fd.name"] == "/etc/x"
    assert failed["evt.arg.flags"] == "O_TRUNC|O_CREAT|O_WRONLY"
    assert failed["evt.is_open_write"] is True and failed["fd.typechar"] is None
    assert failed["evt.arg.fd"] == "ENOENT"
    assert closed["fd.name"] == "/home/u/notes.txt" and closed["evt.category"] == "file"
    assert closed["evt.args"] == "res=0 fd=3(<f>/home/u/notes.txt) "
    assert [r["evt.num"] for r in rows] == [1, 2, 3, 4]


def test_enrichment_of_sockets(tmp_path: Path) -> None:
    remote = (struct.pack("<H", socket.AF_INET) + struct.pack(">H", 8080)
              + socket.inet_aton("127.0.0.1") + b"\0" * 8)
    local = struct.pack("<HH", socket.AF_INET, 40000) + socket.inet_aton("127.0.0.1") + b"\0" * 12
    rows = enriched(tmp_path, [
        rec(REC_SYSCALL, nr("socket"), 50, "bash", ret=4, args=(2, 1, 6)),
        rec(REC_SYSCALL, nr("connect"), 50, "bash", args=(4, 0, 16), items=(remote, local)),
        rec(REC_SYSCALL, nr("dup2"), 50, "bash", ret=1, args=(4, 1)),
    ])
    sock, conn, dup = rows
    assert sock["evt.arg.domain"] == "AF_INET" and sock["fd.type"] == "ipv4"
    assert conn["fd.name"] == "127.0.0.1:40000->127.0.0.1:8080"
    assert conn["fd.sip"] == "127.0.0.1" and conn["fd.sport"] == 8080
    assert conn["fd.lport"] == 40000 and conn["fd.l4proto"] == "tcp"
    assert conn["fd.name_changed"] is True and conn["evt.category"] == "net"
    assert dup["evt.rawres"] == 1 and dup["fd.type"] == "ipv4"  # the old fd's socket


# ---- spool and recovery -----------------------------------------------------------------------

def test_killed_capture_spool_is_recovered(tmp_path: Path) -> None:
    dst = tmp_path / "t.parquet"
    segment = Segment(dst, TraceMeta(source=SOURCE_LIVE, hostname="h", options={"a": 1}))
    fake_proc(tmp_path / "proc", 50, 1, "bash", ["bash"], "/")
    batch = RowBatch()
    enricher = Enricher(0, proc_root=tmp_path / "proc", users=UserDb({}, {}))
    enricher.feed([rec(REC_SYSCALL, nr("close"), 50, "bash", args=(9,))], batch)
    segment.write(batch.to_table())
    segment._file.write(b"\x00" * 10)  # a half-written message, as kill -9 leaves it
    segment._file.close()
    meta = recover_spool(segment.spool)
    assert meta.events == 1 and meta.dropped is None and meta.options["recovered"] is True
    assert meta.hostname == "h" and dst.exists() and not segment.spool.exists()
    assert oct(dst.stat().st_mode & 0o777) == "0o600"


# ---- doctor report ----------------------------------------------------------------------------

def test_doctor_report_renders_fixes() -> None:
    report = DoctorReport((
        Check("root", OK, "running as root"),
        Check("tracefs", FAILED, "tracefs is not mounted", "mount -t tracefs nodev /x"),
        Check("tracepoints", SKIPPED, "not checked: needs tracefs"),
    ))
    assert not report.ok
    assert render_report(report) == (
        "[  ok] root: running as root\n"
        "[FAIL] tracefs: tracefs is not mounted\n"
        "       fix: mount -t tracefs nodev /x\n"
        "[skip] tracepoints: not checked: needs tracefs\n"
        "capture cannot run here until the failures above are fixed."
    )
    assert report.to_dict()["checks"][1]["fix"] == "mount -t tracefs nodev /x"
