"""Live capture: needs root and BPF (`require_bpf`: skipped locally without them, failing in CI).

Each test records a short scripted workload and checks the rows a rule would look at. The
recording runs in a thread (or a child process for the signal tests) and the workload starts
once the probe is attached (the first progress callback).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from live_capture import wait_until_spooling
from trace_order import assert_clustered, read_in_event_order

from analyze.trace_reader import open_trace
from capture.doctor import run_checks
from capture.probe import detect_features, tracefs_root
from capture.record import (
    RecordError,
    RecordOptions,
    RecordProgress,
    RecordStats,
    SegmentCut,
    record,
    recover_spool,
)
from schemas.trace import TraceMeta

pytestmark = pytest.mark.usefixtures("require_bpf")
ROOT = Path(__file__).resolve().parent.parent
COLUMNS = ["evt.num", "evt.type", "evt.dir", "evt.res", "evt.rawres", "evt.arg.flags",
           "evt.is_open_read", "evt.is_open_write", "proc.name", "proc.pname", "proc.pid",
           "proc.exepath", "proc.cmdline", "proc.aname", "fd.name", "fd.type", "fd.typechar",
           "fd.sport", "fd.lip", "fd.l4proto", "user.name", "user.uid", "container.id"]


@contextmanager
def recording(tmp_path: Path, **kw: Any) -> Iterator[Callable[[], RecordStats]]:
    """Record in a thread; yields once the probe runs, returns the stats when the block ends."""
    stop, ready = threading.Event(), threading.Event()
    result: dict[str, Any] = {}
    options = RecordOptions(flush_seconds=0.2, **kw)

    def progress(p: RecordProgress) -> None:
        ready.set()

    def run() -> None:
        try:
            result["stats"] = record(options, tmp_path / "live.parquet", progress, stop)
        except BaseException as exc:  # surfaced in the test thread below
            result["error"] = exc
            ready.set()

    thread = threading.Thread(target=run)
    thread.start()
    assert ready.wait(30), "the capture did not start"
    if "error" in result:
        raise result["error"]
    try:
        yield lambda: result["stats"]
    finally:
        time.sleep(0.3)  # let the last events reach the ring buffer
        stop.set()
        thread.join(30)
    if "error" in result:
        raise result["error"]


def live_rows(tmp_path: Path, columns: list[str]) -> list[dict[str, Any]]:
    """The rows of `recording`'s trace in event order, as every reader sees them (values the
    trace stores once put back: schemas.elision)."""
    return read_in_event_order(tmp_path / "live.parquet", columns).to_pylist()


def script_rows(tmp_path: Path, script: str, args: list[str], columns: list[str]
                ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run a Python `script` under `recording`; what it printed (JSON, with its "pid") and the
    rows of its process."""
    with recording(tmp_path):
        done = subprocess.run([sys.executable, "-c", script, *args], check=True,
                              capture_output=True, text=True)
    made = json.loads(done.stdout)
    rows = live_rows(tmp_path, [*columns, "proc.pid"])
    return made, [r for r in rows if r["proc.pid"] == made["pid"]]


def rows(path: Path) -> list[dict[str, Any]]:
    """The trace's rows as they happened (storage order clusters them by event type)."""
    return read_in_event_order(path, COLUMNS).to_pylist()


def own_comm() -> str:
    return Path("/proc/self/comm").read_text().strip()


def test_doctor_passes_here() -> None:
    report = run_checks()
    assert report.ok, [c for c in report.checks if not c.ok]


def test_scripted_workload_is_recorded_with_enrichment(tmp_path: Path) -> None:
    target = tmp_path / "f"
    with socket.create_server(("127.0.0.1", 0)) as server, recording(tmp_path) as stats:
        port = server.getsockname()[1]
        subprocess.run(["cat", "/etc/hostname"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["cat", "/nonexistent-sysreplay"], stderr=subprocess.DEVNULL)
        subprocess.run(["sh", "-c", f"echo x > {target}"], check=True)
        subprocess.run(["bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{port}"], check=True)
    result = stats()
    assert result.dropped == 0 and result.stopped_by == "stop"
    trace = open_trace(tmp_path / "live.parquet")
    assert trace.info().events == result.events > 0 and trace.info().dropped == 0
    got = rows(tmp_path / "live.parquet")
    assert_clustered(tmp_path / "live.parquet")
    assert [r["evt.num"] for r in got] == sorted({r["evt.num"] for r in got})  # each once
    assert {r["evt.dir"] for r in got} == {"<"}
    parent = own_comm()

    def one(pred: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        found = [r for r in got if pred(r)]
        assert found, "no such event"
        return found[0]

    cat_exec = one(lambda r: r["evt.type"] == "execve" and r["proc.cmdline"] ==
                   "cat /etc/hostname")
    assert cat_exec["evt.res"] == "SUCCESS" and cat_exec["proc.name"] == "cat"
    assert cat_exec["proc.pname"] == parent and cat_exec["proc.exepath"].endswith("/cat")
    assert cat_exec["proc.aname"][:2] == ["cat", parent]
    # Our cat's open: other processes on the machine may open /etc/hostname too.
    hostname = one(lambda r: r["fd.name"] == "/etc/hostname" and r["evt.type"] == "openat"
                   and r["proc.cmdline"] == "cat /etc/hostname")
    assert hostname["proc.name"] == "cat" and hostname["proc.pname"] == parent
    assert hostname["evt.res"] == "SUCCESS" and hostname["evt.is_open_read"] is True
    assert hostname["fd.typechar"] == "f" and hostname["user.name"] == "root"
    assert hostname["container.id"] == "host"
    missing = one(lambda r: r["fd.name"] == "/nonexistent-sysreplay")
    assert missing["evt.res"] == "ENOENT" and missing["evt.rawres"] == -2
    written = one(lambda r: r["fd.name"] == str(target))
    assert written["proc.name"] == "sh" and written["proc.pname"] == parent
    assert written["evt.is_open_write"] is True
    assert written["evt.arg.flags"] == "O_TRUNC|O_CREAT|O_WRONLY"
    connect = one(lambda r: r["evt.type"] == "connect" and r["fd.sport"] == port)
    assert connect["proc.name"] == "bash" and connect["evt.res"] == "SUCCESS"
    assert connect["fd.type"] == "ipv4" and connect["fd.l4proto"] == "tcp"
    if detect_features(tracefs_root() or Path("/")).local_endpoints:
        assert connect["fd.lip"] == "127.0.0.1"
    assert connect["fd.name"].startswith("127.0.0.1:")
    assert connect["fd.name"].endswith(f"->127.0.0.1:{port}")
    assert not any(r["proc.pid"] == os.getpid() for r in got)  # our own syscalls: excluded


def test_a_fork_is_recorded_once_by_its_parent(tmp_path: Path) -> None:
    # The child returns from fork through sys_exit too (0): only the parent's return is a row.
    script = "for i in 1 2 3; do /bin/true & wait; done"
    with recording(tmp_path, syscalls=("clone", "clone3", "fork", "vfork", "execve")):
        subprocess.run(["bash", "-c", script], check=True, stdout=subprocess.DEVNULL)
    got = live_rows(tmp_path, ["evt.type", "evt.rawres", "proc.pid", "proc.cmdline"])
    forks = [r for r in got if r["evt.type"] in ("clone", "clone3", "fork", "vfork")]
    assert forks and all(r["evt.rawres"] != 0 for r in forks)
    shell = [r for r in forks if r["proc.cmdline"] == f"bash -c {script}"]
    children = {r["evt.rawres"] for r in shell}
    assert len(shell) == len(children) == 3
    execs = {r["proc.pid"] for r in got if r["evt.type"] == "execve"}
    assert children <= execs


def test_rules_record_their_syscalls_and_write_only_theirs(tmp_path: Path) -> None:
    rules = str(ROOT / "rules" / "sysreplay_rules.yaml")
    with recording(tmp_path, rules=(rules,)) as stats:
        subprocess.run(["cat", "/etc/hostname"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["mkdir", "-p", str(tmp_path / "d")], check=True)
    result = stats()
    assert "close" in result.syscalls and "mkdir" not in result.syscalls
    got = rows(tmp_path / "live.parquet")
    types = {r["evt.type"] for r in got}
    assert {"openat", "execve"} <= types and not types & {"close", "mkdir", "clone", "clone3"}
    # Our cat's open (the capture covers the machine: others may read /etc/hostname too).
    hostname = [r for r in got if r["fd.name"] == "/etc/hostname"
                and r["proc.cmdline"] == "cat /etc/hostname"]
    assert hostname and hostname[0]["proc.name"] == "cat" and hostname[0]["evt.type"] == "openat"
    meta = TraceMeta.from_kv(pq.ParquetFile(tmp_path / "live.parquet").metadata.metadata)
    options = meta.options
    assert options["rules"] == [rules] and "close" not in options["row_syscalls"]


def test_a_script_s_exepath_is_its_interpreter(tmp_path: Path) -> None:
    # As the kernel's exe_file (and Falco's proc.exepath): the script runs /bin/sh, resolved.
    script = tmp_path / "hello.sh"
    script.write_text("#! /bin/sh -e\nexit 0\n")
    script.chmod(0o755)
    with recording(tmp_path, syscalls=("execve",)) as stats:
        subprocess.run([str(script)], check=True)
    stats()
    execs = [r for r in rows(tmp_path / "live.parquet")
             if r["evt.type"] == "execve" and r["proc.name"] == "hello.sh"]
    assert execs and execs[0]["proc.exepath"] == os.path.realpath("/bin/sh")
    assert execs[0]["proc.name"] == "hello.sh"


def test_a_syscall_list_keeps_the_tables_right_without_writing_them(tmp_path: Path) -> None:
    # Only fchmod is asked for; the child's fchmod uses an fd opened by its parent before the
    # fork, so its fd.name needs the open and the fork (recorded, applied, not written).
    target = tmp_path / "target.txt"
    target.write_text("x")
    script = ("import os, sys\nfd = os.open(sys.argv[1], os.O_RDONLY)\npid = os.fork()\n"
              "if pid == 0:\n    os.fchmod(fd, 0o644)\n    os._exit(0)\nos.waitpid(pid, 0)\n")
    with recording(tmp_path, syscalls=("fchmod",)) as stats:
        subprocess.run([sys.executable, "-c", script, str(target)], check=True)
    result = stats()
    assert {"fchmod", "openat", "clone", "close"} <= set(result.syscalls)
    got = rows(tmp_path / "live.parquet")
    assert {r["evt.type"] for r in got} == {"fchmod"}
    ours = [r for r in got if r["fd.name"] == str(target)]
    assert len(ours) == 1 and ours[0]["proc.pname"] == Path(sys.executable).name[:15]
    meta = TraceMeta.from_kv(pq.ParquetFile(tmp_path / "live.parquet").metadata.metadata)
    assert meta.options["row_syscalls"] == ["fchmod"]


def test_rotation_writes_segments_read_as_one_trace(tmp_path: Path) -> None:
    with recording(tmp_path, rotate_seconds=0.5) as stats:
        for _ in range(3):
            subprocess.run(["cat", "/etc/hostname"], check=True, stdout=subprocess.DEVNULL)
            time.sleep(0.6)
    result = stats()
    assert len(result.outputs) >= 3
    trace = open_trace(tmp_path / "live.parquet")  # the directory of segments
    assert trace.info().events == result.events
    for segment in trace.paths:
        assert_clustered(segment)
    nums = [n for f in trace.paths for n in read_in_event_order(f, ["evt.num"])
            .column("evt.num").to_pylist()]
    assert nums == sorted(nums) and len(nums) == len(set(nums))  # segments follow each other


CHILD = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    from capture.record import RecordOptions, record
    stats = record(RecordOptions(flush_seconds=0.2), {out!r})
    print(stats.stopped_by, stats.events)
""")


def start_child(tmp_path: Path) -> tuple[subprocess.Popen[str], Path]:
    out = tmp_path / "child.parquet"
    child = subprocess.Popen([sys.executable, "-c", CHILD.format(root=str(ROOT), out=str(out))],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_until_spooling(child, out, timeout=30)
    for _ in range(3):
        subprocess.run(["cat", "/etc/hostname"], check=True, stdout=subprocess.DEVNULL)
    time.sleep(0.6)  # past a flush
    return child, out


def test_sigterm_leaves_a_complete_trace(tmp_path: Path) -> None:
    child, out = start_child(tmp_path)
    child.send_signal(signal.SIGTERM)
    stdout, stderr = child.communicate(timeout=30)
    assert child.returncode == 0, stderr
    assert stdout.split()[0] == "signal"
    info = open_trace(out).info()
    assert info.events > 0 and info.dropped == 0
    assert not out.with_name(out.name + ".spool").exists()


def test_kill9_loses_at_most_the_last_flush(tmp_path: Path) -> None:
    child, out = start_child(tmp_path)
    child.kill()
    child.communicate(timeout=30)
    spool = out.with_name(out.name + ".spool")
    assert spool.exists() and not out.exists()
    meta = recover_spool(spool)
    assert meta.events > 0 and meta.dropped is None
    got = pq.read_table(out, columns=["proc.cmdline"]).column("proc.cmdline").to_pylist()
    assert "cat /etc/hostname" in got


# ---- following a process tree, cutting segments ------------------------------------------------

def fork_waiting(work: Callable[[], None]) -> tuple[int, int]:
    """Fork a child that waits for a byte on a pipe, then runs `work` and exits; (pid, pipe)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.close(write_end)
            if os.read(read_end, 1):
                work()
                status = 0
        finally:
            os._exit(status)
    os.close(read_end)
    return pid, write_end


def go_and_wait(pid: int, pipe: int) -> None:
    os.write(pipe, b"g")
    os.close(pipe)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


@contextmanager
def capture_thread(output: Path, options: RecordOptions,
                   cut: SegmentCut | None = None) -> Iterator[dict[str, Any]]:
    """record() in a thread; yields once `ready` is set; the result dict gets "stats"."""
    stop, ready = threading.Event(), threading.Event()
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["stats"] = record(options, output, stop=stop, ready=ready, cut=cut)
        except BaseException as exc:
            result["error"] = exc
            ready.set()

    thread = threading.Thread(target=run)
    thread.start()
    try:
        assert ready.wait(60), "the capture did not start"
        if "error" in result:
            raise result["error"]
        yield result
    finally:
        time.sleep(0.2)
        stop.set()
        thread.join(30)
    if "error" in result:
        raise result["error"]


def tree_work() -> None:
    """A shell that starts a grandchild, and a thread of our own that opens a file."""
    subprocess.run(["sh", "-c", "cat /etc/hostname > /dev/null; ls /etc > /dev/null"],
                   check=True)
    opener = threading.Thread(target=lambda: open("/etc/os-release").close())
    opener.start()
    opener.join()


def test_follow_records_the_tree_and_nothing_else(tmp_path: Path) -> None:
    root, pipe = fork_waiting(tree_work)
    out = tmp_path / "tree.parquet"
    options = RecordOptions(follow_pids=(root,), flush_seconds=0.2)
    with capture_thread(out, options):
        subprocess.run(["cat", "/etc/hostname"], check=True, stdout=subprocess.DEVNULL)
        go_and_wait(root, pipe)
        subprocess.run(["cat", "/etc/hostname"], check=True, stdout=subprocess.DEVNULL)
    got = pq.read_table(out, columns=[*COLUMNS, "proc.apid"]).to_pylist()
    tree = {r["proc.pid"] for r in got}
    assert root in tree
    assert all(r["proc.pid"] == root or root in r["proc.apid"] for r in got)
    names = {r["proc.name"] for r in got}
    assert {"sh", "cat", "ls"} <= names
    cats = [r for r in got if r["evt.type"] == "execve" and r["proc.name"] == "cat"]
    assert len(cats) == 1 and cats[0]["proc.pname"] == "sh"  # not the two outside the tree
    opened = [r for r in got if r["fd.name"] == "/etc/os-release"]
    assert opened and opened[0]["proc.pid"] == root  # a thread of a followed process
    assert os.getpid() not in tree  # the capture itself stays out


def test_segment_cut_puts_each_part_in_its_own_segment(tmp_path: Path) -> None:
    first, pipe1 = fork_waiting(lambda: subprocess.run(["cat", "/etc/hostname"], check=True,
                                                       stdout=subprocess.DEVNULL))
    second, pipe2 = fork_waiting(lambda: subprocess.run(["ls", "/"], check=True,
                                                        stdout=subprocess.DEVNULL))
    cut = SegmentCut()
    options = RecordOptions(follow_pids=(first, second), flush_seconds=0.2)
    with capture_thread(tmp_path / "parts", options, cut) as result:
        go_and_wait(first, pipe1)
        cut.cut()
        go_and_wait(second, pipe2)
    segments = result["stats"].outputs
    assert [p.name for p in segments] == ["segment-00001.parquet", "segment-00002.parquet"]
    one, two = rows(segments[0]), rows(segments[1])
    def programs(got: list[dict[str, Any]]) -> set[str]:
        return {r["proc.name"] for r in got if r["evt.type"] == "execve"
                and r["evt.res"] == "SUCCESS"}

    assert programs(one) == {"cat"} and programs(two) == {"ls"}
    with pytest.raises(RecordError, match="ended before"):
        cut.cut(timeout=1)  # the capture is over


def run_from_memfd() -> None:
    fd = os.memfd_create("sr-live-test", 0)
    with open("/bin/true", "rb") as binary:
        os.write(fd, binary.read())
    child = os.fork()
    if child == 0:
        try:
            os.execve(fd, ["true"], {})  # fexecve: execveat(fd, "", ..., AT_EMPTY_PATH)
        finally:
            os._exit(127)
    assert os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]) == 0


def test_execveat_from_a_memfd_is_recorded_as_execveat(tmp_path: Path) -> None:
    # Some kernels (6.18) report a successful execveat's exit as execve: the record must keep
    # the entry's number, or the memfd (and Falco's is_exe_from_memfd) is lost.
    root, pipe = fork_waiting(run_from_memfd)
    out = tmp_path / "memfd.parquet"
    with capture_thread(out, RecordOptions(follow_pids=(root,), flush_seconds=0.2)):
        go_and_wait(root, pipe)
    table = pq.read_table(out, columns=[*COLUMNS, "proc.is_exe_from_memfd"]).to_pylist()
    execs = [r for r in table if r["evt.type"] in ("execve", "execveat")]
    assert len(execs) == 1
    assert execs[0]["evt.type"] == "execveat" and execs[0]["evt.res"] == "SUCCESS"
    assert execs[0]["proc.is_exe_from_memfd"] is True
    assert execs[0]["proc.exepath"] == "memfd:sr-live-test"


# ---- connect's local end, the environment, the fd table ---------------------------------------

CONNECTS = textwrap.dedent("""
    import json, os, socket, sys, time
    p4, p6 = int(sys.argv[1]), int(sys.argv[2])
    out, keep = {}, []
    for name, family, kind, addr in [
            ("tcp4", socket.AF_INET, socket.SOCK_STREAM, ("127.0.0.1", p4)),
            ("tcp4-nonblocking", socket.AF_INET, socket.SOCK_STREAM, ("127.0.0.1", p4)),
            ("udp4", socket.AF_INET, socket.SOCK_DGRAM, ("127.0.0.1", 9)),
            ("tcp6", socket.AF_INET6, socket.SOCK_STREAM, ("::1", p6)),
            ("udp6", socket.AF_INET6, socket.SOCK_DGRAM, ("::1", 9)),
            ("v4-mapped", socket.AF_INET6, socket.SOCK_STREAM, ("::ffff:127.0.0.1", p4))]:
        s = socket.socket(family, kind)
        s.setblocking(not name.endswith("nonblocking"))
        s.connect_ex(addr)
        time.sleep(0.02)
        out[name] = [s.fileno(), s.getsockname()[1], s.getpeername()[1]]
        keep.append(s)
    print(json.dumps({"pid": os.getpid(), "sockets": out}))
""")


def test_connect_records_the_local_port_the_kernel_picked(tmp_path: Path) -> None:
    features = detect_features(tracefs_root() or Path("/"))
    if not (features.local_endpoints and features.fib_ports and features.fib6_ports):
        pytest.skip(f"this kernel lacks the tracepoints of connect's local end: {features}")
    with socket.create_server(("127.0.0.1", 0)) as v4, \
            socket.create_server(("::1", 0), family=socket.AF_INET6) as v6, recording(tmp_path):
        done = subprocess.run([sys.executable, "-c", CONNECTS, str(v4.getsockname()[1]),
                               str(v6.getsockname()[1])], check=True, capture_output=True,
                              text=True)
    out = json.loads(done.stdout)
    made = out["sockets"]
    got = live_rows(tmp_path, [
        "evt.type", "proc.pid", "fd.num", "fd.name", "fd.lip", "fd.lport", "fd.cport",
        "evt.res"])
    connects = {r["fd.num"]: r for r in got if r["evt.type"] == "connect"
                and r["proc.pid"] == out["pid"] and r["fd.lport"] is not None}
    names = {}
    for name, (fd, local_port, remote_port) in made.items():
        row = connects[fd]
        assert row["fd.lport"] == row["fd.cport"] == local_port, name
        names[name] = row["fd.name"]
        assert row["fd.name"].endswith(f":{remote_port}"), name
    assert names["tcp4"] == f"127.0.0.1:{made['tcp4'][1]}->127.0.0.1:{made['tcp4'][2]}"
    assert connects[made["tcp4-nonblocking"][0]]["evt.res"] == "EINPROGRESS"
    assert names["tcp4-nonblocking"].startswith(f"127.0.0.1:{made['tcp4-nonblocking'][1]}->")
    assert names["udp4"] == f"127.0.0.1:{made['udp4'][1]}->127.0.0.1:9"
    assert names["tcp6"] == f"[::1]:{made['tcp6'][1]}->[::1]:{made['tcp6'][2]}"
    # UDP over IPv6 picks its source address after the only route lookup it makes: the port
    # is right, the address is left as ::
    assert names["udp6"] == f"[::]:{made['udp6'][1]}->[::1]:9"
    mapped = made["v4-mapped"]
    assert names["v4-mapped"] == f"127.0.0.1:{mapped[1]}->127.0.0.1:{mapped[2]}"


def test_exec_records_the_environment_of_short_lived_programs(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "SR_ENV_PROBE": "x1"}
    with recording(tmp_path):
        subprocess.run(["/bin/true", "sr-env"], check=True, env=env)  # gone before enrichment
        subprocess.run(["/bin/true", "sr-env-big"], check=True,
                       env={f"SR_BIG_{i:03}": "v" * 90 for i in range(100)})
    got = live_rows(tmp_path, ["evt.type", "proc.name", "proc.args", "proc.env"])
    execs = {r["proc.args"]: r["proc.env"] for r in got
             if r["evt.type"] == "execve" and r["proc.name"] == "true"}
    assert execs["sr-env"] == "PATH=/usr/bin:/bin SR_ENV_PROBE=x1"
    # 100 entries of 102 bytes (NUL included): the whole entries that fit in env_max (4096
    # bytes), or all of them if /proc still had the process when its execve was enriched
    kept = execs["sr-env-big"].split(" ")
    assert kept == [f"SR_BIG_{i:03}={'v' * 90}" for i in range(len(kept))]
    assert len(kept) in (4096 // 102, 100)


FD_CALLS = textwrap.dedent("""
    import ctypes, fcntl, json, os, select, socket
    libc = ctypes.CDLL(None, use_errno=True)
    r, w = os.pipe()
    a, b = socket.socketpair()
    dup = fcntl.fcntl(r, fcntl.F_DUPFD_CLOEXEC, 50)
    fcntl.fcntl(r, fcntl.F_GETFL)  # not recorded: it changes no fd
    fcntl.fcntl(w, fcntl.F_SETFD, 0)
    ep = select.epoll()
    ev = os.eventfd(0)
    assert libc.syscall(436, 50, 50, 0) == 0  # close_range(50, 50, 0)
    print(json.dumps({"pipe": [r, w], "pair": [a.fileno(), b.fileno()], "dup": dup,
                      "epoll": ep.fileno(), "eventfd": ev, "pid": os.getpid()}))
""")


def test_fd_creating_calls_are_recorded(tmp_path: Path) -> None:
    made, mine = script_rows(tmp_path, FD_CALLS, [], [
        "evt.type", "fd.num", "fd.type", "evt.args", "evt.arg.cmd", "evt.rawres"])
    pipe = next(r for r in mine if r["evt.type"] == "pipe2")
    r, w = made["pipe"]
    assert pipe["evt.args"].startswith(f"res=0 fd1={r}(<p>) fd2={w}(<p>) ")
    pair = next(r for r in mine if r["evt.type"] == "socketpair")
    assert pair["fd.type"] == "unix"
    assert f"fd1={made['pair'][0]}(<u>)" in pair["evt.args"]
    commands = [(r["evt.arg.cmd"], r["fd.num"], r["evt.rawres"]) for r in mine
                if r["evt.type"] == "fcntl"]
    assert ("F_DUPFD_CLOEXEC", r, made["dup"]) in commands and ("F_SETFD", w, 0) in commands
    assert not any(cmd == "F_GETFL" for cmd, _, _ in commands)
    assert {c for c, _, _ in commands} <= {"F_DUPFD", "F_DUPFD_CLOEXEC", "F_SETFD"}
    created = {r["evt.type"]: (r["fd.num"], r["fd.type"]) for r in mine}
    assert created["epoll_create1"] == (made["epoll"], "eventpoll")
    assert created["eventfd2"] == (made["eventfd"], "event")
    # subprocess's child closes the fds it inherited with close_range before its exec, too
    ranges = [r["evt.args"] for r in mine if r["evt.type"] == "close_range"]
    assert "res=0 first=50 last=50 flags=0 " in ranges


SCM_RIGHTS = textwrap.dedent("""
    import json, os, socket, sys, time
    a, b = socket.socketpair()
    for _ in range(5):  # recvmsg without control data, or with none received: no rows
        a.send(b"x")
        b.recvmsg(16, 64)
    f = open(sys.argv[1], "w")
    r, w = os.pipe()
    os.close(w)
    socket.send_fds(a, [b"fds"], [r] + [f.fileno()] * 31)  # 32: as many as a record holds
    f.close()
    os.close(r)  # only the received copies remain
    _, fds, _, _ = socket.recv_fds(b, 16, 32)
    # The capture reads what a received fd is from /proc/PID/fd when it enriches the recvmsg
    # (as libsinsp does), tens of milliseconds later: the fds must still be open then.
    time.sleep(1)
    os.fchmod(fds[1], 0o644)
    os.fchmod(fds[-1], 0o644)
    for fd in fds:
        os.close(fd)
    print(json.dumps({"pid": os.getpid(), "fds": fds, "sock": b.fileno()}))
""")


def test_fds_received_with_scm_rights_are_in_the_fd_table(tmp_path: Path) -> None:
    path = tmp_path / "sent.txt"
    made, mine = script_rows(tmp_path, SCM_RIGHTS, [str(path)], [
        "evt.type", "fd.num", "fd.type", "fd.name", "evt.args"])
    received = [r for r in mine if r["evt.type"] == "recvmsg"]
    assert len(received) == 1  # the plain recvmsg calls were dropped in the kernel
    assert (received[0]["fd.num"], received[0]["fd.type"]) == (made["sock"], "unix")
    assert received[0]["evt.args"].startswith("res=3 size=3 ")
    pipe_fd, files = made["fds"][0], made["fds"][1:]
    assert len(files) == 31
    fchmods = [(r["fd.num"], r["fd.name"], r["fd.type"]) for r in mine
               if r["evt.type"] == "fchmod"]
    assert fchmods == [(fd, str(path), "file") for fd in (files[0], files[-1])]
    closes = {r["fd.num"]: r["fd.type"] for r in mine if r["evt.type"] == "close"}
    assert closes[pipe_fd] == "pipe" and {closes[fd] for fd in files} == {"file"}


RECVMMSG = textwrap.dedent("""
    import ctypes, json, os, socket, sys, time
    from ctypes import POINTER, c_int, c_size_t, c_uint, c_void_p, sizeof

    class Iovec(ctypes.Structure):
        _fields_ = [("base", c_void_p), ("len", c_size_t)]

    class Msghdr(ctypes.Structure):
        _fields_ = [("name", c_void_p), ("namelen", c_uint), ("iov", POINTER(Iovec)),
                    ("iovlen", c_size_t), ("control", c_void_p), ("controllen", c_size_t),
                    ("flags", c_int)]

    class Mmsghdr(ctypes.Structure):
        _fields_ = [("hdr", Msghdr), ("len", c_uint)]

    assert sizeof(Mmsghdr) == 64 and Mmsghdr.len.offset == 56 and Msghdr.control.offset == 32
    libc = ctypes.CDLL(None, use_errno=True)
    N = 4
    data = [ctypes.create_string_buffer(16) for _ in range(N)]
    control = [ctypes.create_string_buffer(64) for _ in range(N)]
    iovs = [Iovec(ctypes.addressof(d), 16) for d in data]
    msgs = (Mmsghdr * N)()

    def recvmmsg(sock):
        for i in range(N):  # control buffers given: the kernel writes back what it used
            msgs[i].hdr.iov, msgs[i].hdr.iovlen = ctypes.pointer(iovs[i]), 1
            msgs[i].hdr.control = ctypes.addressof(control[i])
            msgs[i].hdr.controllen = 64
        n = libc.recvmmsg(sock.fileno(), msgs, N, socket.MSG_DONTWAIT, None)
        assert n > 0, os.strerror(ctypes.get_errno())
        fds = []
        for i in range(n):  # one SCM_RIGHTS cmsg (len, level, type, then the fds) or none
            raw = control[i].raw[:msgs[i].hdr.controllen]
            end = int.from_bytes(raw[:8], "little")  # cmsg_len (0: no control data)
            fds.append([int.from_bytes(raw[k:k + 4], "little") for k in range(16, end, 4)])
        return n, fds

    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    for _ in range(5):  # recvmmsg receiving no fds: no rows
        a.send(b"x")
        a.send(b"y")
        assert recvmmsg(b)[0] == 2
    first, second = open(sys.argv[1], "w"), open(sys.argv[2], "w")
    r, w = os.pipe()
    os.close(w)
    socket.send_fds(a, [b"one"], [first.fileno(), r])
    socket.send_fds(a, [b"three"], [second.fileno()])
    a.send(b"plain")  # a message without fds: no row of its own
    first.close(), second.close(), os.close(r)  # only the received copies remain
    n, fds = recvmmsg(b)  # the three messages, in ONE call
    assert n == 3 and [len(f) for f in fds] == [2, 1, 0], fds
    # The capture reads what a received fd is from /proc/PID/fd when it enriches the record
    # (as libsinsp does), tens of milliseconds later: the fds must still be open then.
    time.sleep(1)
    os.fchmod(fds[0][0], 0o644)
    os.fchmod(fds[1][0], 0o644)
    for fd in fds[0] + fds[1]:
        os.close(fd)
    print(json.dumps({"pid": os.getpid(), "fds": fds, "sock": b.fileno()}))
""")


def test_fds_received_by_one_recvmmsg_are_in_the_fd_table(tmp_path: Path) -> None:
    paths = [tmp_path / "first.txt", tmp_path / "second.txt"]
    made, mine = script_rows(tmp_path, RECVMMSG, list(map(str, paths)), [
        "evt.type", "evt.rawres", "fd.num", "fd.type", "fd.name", "evt.args"])
    # One row per message that carried fds (as libsinsp's one event per message), its res the
    # message's length; the plain calls and the message without fds were dropped in the kernel.
    received = [(r["evt.rawres"], r["fd.num"], r["fd.type"]) for r in mine
                if r["evt.type"] == "recvmmsg"]
    assert received == [(3, made["sock"], "unix"), (5, made["sock"], "unix")]
    (first, pipe_fd), (second,) = made["fds"][:2]
    fchmods = [(r["fd.num"], r["fd.name"], r["fd.type"]) for r in mine
               if r["evt.type"] == "fchmod"]
    assert fchmods == [(first, str(paths[0]), "file"), (second, str(paths[1]), "file")]
    closes = {r["fd.num"]: (r["fd.type"], r["fd.name"]) for r in mine if r["evt.type"] == "close"}
    assert closes[pipe_fd][0] == "pipe" and closes[second] == ("file", str(paths[1]))


STALE = textwrap.dedent("""
    import os, socket, sys
    keep = open("/dev/null")  # fd 3, which the dynamic loader reuses after the exec
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))  # fd 4
    assert (keep.fileno(), s.fileno()) == (3, 4)  # both close-on-exec, as Python opens them
    sys.stdout.write("ready\\n")
    sys.stdout.flush()
    sys.stdin.readline()
    # The kernel closes fds 3 and 4 at this exec; the shell's pipe then gets them, and the
    # writing cat its stdout from fd 4.
    os.execv("/bin/sh", ["sh", "-c", "cat /etc/hostname | cat > /dev/null"])
""")


def test_close_on_exec_fds_of_the_snapshot_die_at_exec(tmp_path: Path) -> None:
    # What made a benign workload look like a reverse shell: a socket known from the /proc
    # snapshot outlived the exec that closed it, and the pipe reusing its number looked like
    # a network connection when the shell redirected stdin to it.
    with socket.create_server(("127.0.0.1", 0)) as server, \
            subprocess.Popen([sys.executable, "-c", STALE, str(server.getsockname()[1])],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as child:
        try:
            assert child.stdout is not None and child.stdin is not None
            assert child.stdout.readline() == "ready\n"  # before the capture's snapshot
            with recording(tmp_path):
                child.stdin.write("go\n")
                child.stdin.close()
                assert child.wait(30) == 0
        finally:
            child.kill()
    got = live_rows(tmp_path, [
        "evt.type", "proc.pid", "proc.ppid", "fd.num", "fd.type", "evt.rawres"])
    tree = {child.pid} | {r["proc.pid"] for r in got if r["proc.ppid"] == child.pid}
    dups = [r for r in got if r["evt.type"] in ("dup", "dup2", "dup3")
            and r["proc.pid"] in tree and r["evt.rawres"] in (0, 1)]
    assert {r["fd.type"] for r in dups if r["evt.rawres"] == 0} == {"pipe"}
    assert {r["fd.type"] for r in dups if r["evt.rawres"] == 1} == {"pipe", "file"}  # /dev/null
