"""`--container` in the kernel (capture/cgroup_filter.py and the cgroup filter of bpf_program.c).

Without root: the rendering, where the filter can run (`plan`, on fake cgroup trees), the
verdicts seeded at start and corrected from user space. With BPF (`require_bpf`): the kernel's
verdict on new cgroups of every layout against user space's, and captures of sandbox containers
(capture/container_sandbox.py) with `--container ID` and `--container host` while the host is
busy too: the other processes' events never reach user space, a container started during the
capture is recorded from its first exec, and its processes get the same proc.* fields as in a
capture of everything.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from live_capture import record_while

from capture.bpf_render import (
    CONTAINER_ID_CONTEXTS,
    DEFAULT_SYSCALLS,
    PROC_STATE_SYSCALLS,
    SYSCALL_BY_NAME,
    ProgramOptions,
    RenderError,
    render,
)
from capture.cgroup_filter import (
    DROP,
    IN_KERNEL,
    KEEP,
    CgroupPlan,
    CgroupVerdicts,
    plan,
)
from capture.cgroup_index import CgroupIndex
from capture.container_filter import ContainerSelection
from capture.container_runtime import ContainerInfo, ContainerRuntimes, serve_engine_api
from capture.container_sandbox import ContainerSandbox
from capture.enrich import Enricher
from capture.probe import (
    REC_CGROUP,
    REC_SYSCALL,
    Probe,
    Record,
    detect_features,
    tracefs_root,
)
from capture.proc_table import UserDb, container_of
from capture.record import RecordOptions, RecordStats
from capture.rows import RowBatch

ID = "3f4e5d6c7b8a" + "0" * 52
OTHER = "9a8b7c6d5e4f" + "1" * 52
HOST = ("host", "host")


def selection(*selectors: str, runtimes: ContainerRuntimes | None = None) -> ContainerSelection:
    return ContainerSelection.parse(selectors, runtimes or ContainerRuntimes(()))


# ---- rendering ---------------------------------------------------------------------------------

def program(**kw: Any) -> str:
    return render(ProgramOptions(syscalls=DEFAULT_SYSCALLS, self_tgid=4242, **kw))


def test_the_cgroup_filter_is_off_by_default() -> None:
    text = program()
    assert "#define CGROUP_FILTER 0" in text
    assert "if (!task_selected(pid_tgid >> 32) || !cgroup_selected(id))" in text


def test_the_cgroup_filter_renders_ids_default_and_state_syscalls() -> None:
    text = program(cgroup_filter=True, cgroup_ids=(ID[:12], OTHER[:12]))
    assert "#define CGROUP_FILTER 1" in text and "#define CGROUP_DEFAULT CG_DROP" in text
    assert "#define CGROUP_NAMES 0" in text
    selected = text.split("static __always_inline int selected_id(u64 key)", 1)[1]
    assert "    case 0x3f4e5d6c7b8aULL:\n    case 0x9a8b7c6d5e4fULL:\n        return 1;" in selected
    # the process-state syscalls pass whatever the cgroup; the others do not
    state = text.split("static __always_inline int proc_state(long id)", 1)[1].split("}\n", 1)[0]
    for name in PROC_STATE_SYSCALLS:
        assert f"case {SYSCALL_BY_NAME[name].nr}: /* {name} */" in state
    assert "openat" not in state and "close" not in state
    # every layout the kernel recognises, with the text after the id where it needs one
    assert "'/' && CH(start - 8 + 1) == 'd'" in text  # "/docker/" and "/docker-"
    assert "/* /docker-<id>.scope */" in text and "/* :cri-containerd:<id> */" in text
    host = program(cgroup_filter=True, cgroup_keep_host=True, cgroup_names=True)
    assert "#define CGROUP_DEFAULT CG_KEEP" in host and "#define CGROUP_NAMES 1" in host
    assert "static __always_inline int selected_id(u64 key)\n{\n    return 0;\n}" in host


def test_bad_cgroup_ids_are_refused() -> None:
    with pytest.raises(RenderError, match="12 lowercase hex"):
        program(cgroup_filter=True, cgroup_ids=("ABCDEF012345",))


def test_the_kernels_layouts_are_user_spaces() -> None:
    # What the kernel takes for a container, container_of does too; where the kernel needs the
    # text after the id, container_of does not name a container without it.
    for before, after in CONTAINER_ID_CONTEXTS:
        assert container_of(f"0::/a{before}{ID}{after}/b\n") == (ID[:12], container_of(
            f"0::/a{before}{ID}{after}\n")[1]) != HOST
        if after:
            assert container_of(f"0::/a{before}{ID}\n") == HOST
    assert container_of(f"0::/kubepods/besteffort/pod0c1a-22/{ID}\n")[0] == ID[:12]
    assert container_of(f"0::/kubepods/besteffort/pod/{ID}\n") == HOST


def test_the_cgroup_tracepoints_are_detected_with_their_path_field(tmp_path: Path) -> None:
    fmt = ("\tfield:int root;\toffset:8;\tsize:4;\tsigned:1;\n"
           "\tfield:u64 id;\toffset:16;\tsize:8;\tsigned:0;\n"
           "\tfield:__data_loc char[] path;\toffset:24;\tsize:4;\tsigned:0;\n")
    for event in ("cgroup_mkdir", "cgroup_rmdir"):
        (tmp_path / "events" / "cgroup" / event).mkdir(parents=True)
        (tmp_path / "events" / "cgroup" / event / "format").write_text(fmt)
    assert detect_features(tmp_path).cgroup_mkdir
    (tmp_path / "events" / "cgroup" / "cgroup_rmdir" / "format").write_text(fmt[:60])
    assert not detect_features(tmp_path).cgroup_mkdir


# ---- where the filter runs -----------------------------------------------------------------------

def mkdirs(root: Path, *rels: str) -> dict[str, int]:
    """Make the directories; their inode numbers by relative path."""
    found = {}
    for rel in rels:
        (root / rel).mkdir(parents=True, exist_ok=True)
        found[rel] = os.stat(root / rel).st_ino
    return found


def test_plan_needs_a_v2_hierarchy_and_the_tracepoints(tmp_path: Path) -> None:
    v1_only = plan(selection(ID), True, None, (tmp_path,))
    assert not v1_only.kernel and "no cgroup v2 hierarchy" in v1_only.where
    untraced = plan(selection(ID), False, tmp_path, ())
    assert not untraced.kernel and "cgroup_mkdir" in untraced.where
    kernel = plan(selection(ID, "host"), True, tmp_path, ())
    assert kernel == CgroupPlan(True, IN_KERNEL, keep_host=True, ids=(ID[:12],), names=False)


def test_plan_on_a_hybrid_machine_checks_the_selected_containers(tmp_path: Path) -> None:
    v2, pids = tmp_path / "unified", tmp_path / "pids"
    mkdirs(v2, "init.scope")
    mkdirs(pids, f"docker/{ID}")  # Docker's cgroupfs driver without the unified hierarchy
    v1_only = plan(selection(ID), True, v2, (pids,))
    assert not v1_only.kernel and f"container {ID[:12]} has cgroup-v1" in v1_only.where
    # `host`: the kernel drops named v2 container cgroups only, so the others are safe
    assert plan(selection(ID, "host"), True, v2, (pids,)).kernel
    assert plan(selection(OTHER), True, v2, (pids,)).kernel  # not there yet: taken to get one
    mkdirs(v2, f"docker/{ID}")
    assert plan(selection(ID), True, v2, (pids,)).kernel


def test_a_name_unknown_at_start_on_a_hybrid_machine_stays_in_user_space(tmp_path: Path) -> None:
    # It may get v1 cgroups only (a CRI runtime cannot be asked by name, nor can a container
    # that does not run yet): the kernel would take its tasks for the host's and drop them.
    v2, pids = tmp_path / "unified", tmp_path / "pids"
    mkdirs(v2, "init.scope")
    mkdirs(pids, "kubepods")
    named = ContainerSelection(False, frozenset(), frozenset({"web"}), ContainerRuntimes(()),
                               frozenset({"web"}))
    found = plan(named, True, v2, (pids,))
    assert not found.kernel and "no runtime knows a container named web" in found.where
    assert plan(named, True, v2, ()).kernel  # v2 only: every container has a v2 cgroup
    known = ContainerSelection(False, frozenset({ID[:12]}), frozenset({"web"}),
                               ContainerRuntimes(()))
    mkdirs(v2, f"docker/{ID}")
    assert plan(known, True, v2, (pids,)).kernel


# ---- verdicts from user space ----------------------------------------------------------------

def test_seeded_verdicts_differ_from_the_default_only(tmp_path: Path) -> None:
    ino = mkdirs(tmp_path, f"docker/{ID}", f"docker/{ID}/init",
                 f"system.slice/docker-{OTHER}.scope", "system.slice/cron.service")
    index = CgroupIndex(tmp_path, authoritative=True)
    only_id = CgroupVerdicts({}, plan(selection(ID), True, tmp_path, ()), selection(ID), index)
    assert only_id.seed() == 2
    assert only_id.store == {ino[f"docker/{ID}"]: KEEP, ino[f"docker/{ID}/init"]: KEEP}
    host = CgroupVerdicts({}, plan(selection("host", ID), True, tmp_path, ()),
                          selection("host", ID), index)
    host.seed()
    assert host.store == {ino[f"system.slice/docker-{OTHER}.scope"]: DROP}


def test_a_container_the_kernel_kept_for_its_name_is_dropped_once_seen(tmp_path: Path) -> None:
    infos = {ID: ContainerInfo(id=ID, name="web", image="nginx"),
             OTHER: ContainerInfo(id=OTHER, name="db", image="postgres")}
    with serve_engine_api(tmp_path / "docker.sock", infos) as server:
        runtimes = ContainerRuntimes((str(server.socket_path),))
        chosen = selection("web", runtimes=runtimes)
        v2 = tmp_path / "v2"
        ino = mkdirs(v2, "init.scope")
        index = CgroupIndex(v2, authoritative=True, clock=lambda: 0.0)
        verdicts = CgroupVerdicts({}, plan(chosen, True, v2, ()), chosen, index)
        assert verdicts.plan.names and verdicts.plan.ids == (ID[:12],)  # "web" runs now
        verdicts.seed()
        # made during the capture: the kernel kept both (a name may match any container)
        ino |= mkdirs(v2, f"docker/{ID}", f"docker/{OTHER}")
        verdicts.store[ino[f"docker/{ID}"]] = verdicts.store[ino[f"docker/{OTHER}"]] = KEEP
        index._next_scan = float("-inf")
        verdicts.check(ino[f"docker/{OTHER}"])
        verdicts.check(ino[f"docker/{ID}"])
        verdicts.check(ino["init.scope"])  # host, dropped by default already
        verdicts.check(123456789)  # unknown: looked at again at its next record
    assert verdicts.store == {ino[f"docker/{ID}"]: KEEP, ino[f"docker/{OTHER}"]: DROP}
    assert verdicts.corrected == 1 and 123456789 not in verdicts.checked


def test_the_enricher_corrects_the_kernel_from_its_records(tmp_path: Path) -> None:
    v2, proc_root = tmp_path / "v2", tmp_path / "proc"
    ino = mkdirs(v2, f"docker/{OTHER}")
    (proc_root / "40").mkdir(parents=True)  # gone from /proc: the cgroup id names its container
    chosen = selection("host")
    index = CgroupIndex(v2, authoritative=True)
    en = Enricher(0, proc_root=proc_root, users=UserDb({}, {}), containers=("host",),
                  runtimes=ContainerRuntimes(()), cgroups=index)
    store: dict[int, int] = {}
    en.kernel_cgroups = CgroupVerdicts(store, plan(chosen, True, v2, ()), chosen, index)
    openat = Record(REC_SYSCALL, SYSCALL_BY_NAME["openat"].nr, 0, ino[f"docker/{OTHER}"], 3,
                    (0xFFFFFF9C, 0, 0, 0, 0, 0), 40, 40, 0, 0, 0, "cat", (b"/etc/hostname\0",))
    batch = RowBatch()
    en.feed([openat, openat], batch)
    assert len(batch) == 0 and en.left_out == {"openat": 2}
    assert store == {ino[f"docker/{OTHER}"]: DROP}  # once: the cgroup is checked


def test_a_cgroup_the_program_told_of_names_its_container_once_gone(tmp_path: Path) -> None:
    # REC_CGROUP, sent by the mkdir probe before any task can enter the cgroup: what names a
    # short-lived container's events once both it and its cgroup are gone.
    v2, proc_root = tmp_path / "v2", tmp_path / "proc"
    mkdirs(v2, "init.scope")
    (proc_root / "41").mkdir(parents=True)
    index = CgroupIndex(v2, authoritative=True)
    en = Enricher(0, proc_root=proc_root, users=UserDb({}, {}), containers=(OTHER,),
                  runtimes=ContainerRuntimes(()), cgroups=index)
    made = Record(REC_CGROUP, 0, 0, 1, 0, (987654, 0, 0, 0, 0, 0), 1, 1, 0, 0, 0, "runc",
                  (f"/system.slice/docker-{OTHER}.scope".encode() + b"\0",))
    openat = Record(REC_SYSCALL, SYSCALL_BY_NAME["openat"].nr, 0, 987654, 3,
                    (0xFFFFFF9C, 0, 0, 0, 0, 0), 41, 41, 0, 0, 0, "cat", (b"/etc/hostname\0",))
    batch = RowBatch()
    en.feed([made, openat], batch)
    assert index.named(987654) == (OTHER[:12], "docker")
    rows = batch.to_table().select(["proc.pid", "container.id"]).to_pylist()
    assert rows == [{"proc.pid": 41, "container.id": OTHER[:12]}]


# ---- live: the kernel's verdicts ---------------------------------------------------------------

def v2_with_tracepoints() -> Path:
    root = CgroupIndex.detect().root
    tracefs = tracefs_root()
    if root is None or tracefs is None or not detect_features(tracefs).cgroup_mkdir:
        pytest.skip("needs a cgroup v2 hierarchy and the cgroup:cgroup_mkdir tracepoint")
    return root


@contextlib.contextmanager
def cgroup_tree(root: Path, tops: list[str]) -> Iterator[None]:
    """Remove the `tops` directories under `root`, innermost first, on the way out."""
    try:
        yield
    finally:
        for top in tops:
            if (root / top).exists():
                subprocess.run(["find", str(root / top), "-depth", "-type", "d", "-exec",
                                "rmdir", "{}", ";"], check=False)


LAYOUTS = [
    f"docker/{ID}", f"docker/{ID}/init", f"docker/{OTHER}", f"docker/{OTHER}abc",
    f"system.slice/docker-{OTHER}.scope", f"system.slice/docker-{OTHER}.scope/sub",
    f"system.slice/docker-{OTHER}", f"k.slice/cri-containerd-{OTHER}.scope",
    f"k.slice/x:cri-containerd:{OTHER}", f"crio-{OTHER}", f"crio/{OTHER}",
    f"machine.slice/libpod-{OTHER}.scope", f"machine.slice/libpod-conmon-{OTHER}.scope",
    f"libpod_parent/libpod-{OTHER}", f"containerd/{OTHER}", f"a b/docker/{OTHER}",
    f"x/{OTHER}", "cron.service", f"{'d' * 250}/{'e' * 250}/docker/{OTHER}",
]
TOO_LONG = LAYOUTS[-1]  # a path cut at 512 bytes: the kernel keeps it, unsure


@pytest.mark.usefixtures("require_bpf")
@pytest.mark.parametrize("selectors", [(ID,), ("host",)], ids=["id", "host"])
def test_the_kernel_judges_new_cgroups_as_user_space_does(selectors: tuple[str, ...]) -> None:
    root = v2_with_tracepoints()
    top = f"sysreplay-test-{secrets.token_hex(4)}"
    kube = f"kubepods.sysreplay-{secrets.token_hex(4)}"  # kubepods is recognised at the top
    paths = [f"{top}/{rel}" for rel in LAYOUTS] + [
        f"{kube}/besteffort/pod0c1a-22/{OTHER}", f"{kube}/besteffort/pod0c1a-22/{OTHER}/x",
        f"{kube}/besteffort/pod/{OTHER}"]
    chosen = selection(*selectors)
    cplan = plan(chosen, True, root, ())
    options = ProgramOptions(syscalls=("execve",), self_tgid=os.getpid(), cgroup_filter=True,
                             cgroup_keep_host=cplan.keep_host, cgroup_ids=cplan.ids)
    with cgroup_tree(root, [top, kube]), Probe(options) as probe:
        ino = mkdirs(root, *paths)
        kernel = probe.cgroup_map()
        wrong = []
        for path in paths:
            exact = KEEP if chosen.wants_container(*container_of(f"0::/{path}\n")) else DROP
            verdict = kernel.get(ino[path], cplan.default)
            unsure_kept = path.endswith(TOO_LONG) and verdict == KEEP
            if verdict != exact and not unsure_kept:
                wrong.append((path.replace(ID, "<ID>").replace(OTHER, "<OTHER>"), verdict, exact))
        assert wrong == []


# ---- live: captures of sandbox containers ---------------------------------------------------

Workload = Callable[[], None]


def capture(out: Path, containers: tuple[str, ...], workload: Workload,
            runtime_sockets: tuple[str, ...] = ()) -> RecordStats:
    """A capture of `workload`, started after the probe is attached."""
    return record_while(RecordOptions(flush_seconds=0.2, containers=containers,
                                      runtime_sockets=runtime_sockets), out, workload)


def busy_host(marker: Path, times: int = 20) -> None:
    """Host processes opening `marker`, and its own opens and closes."""
    for _ in range(times):
        subprocess.run(["cat", str(marker)], check=True, stdout=subprocess.DEVNULL)
    for _ in range(200):
        marker.read_bytes()


PROC_COLUMNS = ["proc.name", "proc.exe", "proc.exepath", "proc.cmdline", "proc.pname",
                "proc.pcmdline", "proc.aname", "proc.cwd", "proc.env", "container.id",
                "container.type"]  # proc.aname: 1-based, proc.aname[1] is pname
COLUMNS = ["evt.type", "fd.name", *PROC_COLUMNS]


def described(row: dict[str, Any], cid: str) -> dict[str, Any]:
    """A row's process fields, with container `cid` (in the shim's command line) as <id>."""
    return {k: row[k].replace(cid, "<id>") if isinstance(row[k], str) else row[k]
            for k in PROC_COLUMNS if not k.startswith("container.")}


def trace_options(path: Path) -> str:
    return (pq.read_metadata(path).metadata or {})[b"sysreplay.options"].decode()


@pytest.mark.usefixtures("require_bpf")
def test_a_container_started_during_the_capture_is_all_that_is_recorded(tmp_path: Path) -> None:
    v2_with_tracepoints()
    if shutil.which("unshare") is None:
        pytest.skip("needs util-linux unshare")
    host_marker, box_marker = tmp_path / "host-marker", tmp_path / "box-marker"
    host_marker.write_text("host\n")
    box_marker.write_text("box\n")
    cat = ["cat", str(box_marker)]
    shell = ["sh", "-c", f"cd {tmp_path} && exec cat box-marker"]

    def workload() -> None:
        # the container is made (its cgroups) after the probe is attached
        with ContainerSandbox("sr-kfilter", "alpine:3.20", container_id=cid) as box:
            busy_host(host_marker)
            for argv in (cat, shell):
                assert box.run(argv, stdout=subprocess.DEVNULL).returncode == 0
            busy_host(host_marker)

    cid = secrets.token_hex(32)
    selected = tmp_path / "selected.parquet"
    stats = capture(selected, (cid,), workload)
    assert stats.container_filter == IN_KERNEL
    assert f'"container_selection": "{IN_KERNEL}"' in trace_options(selected)
    rows = pq.read_table(selected, columns=COLUMNS).to_pylist()
    assert rows and {r["container.id"] for r in rows} == {cid[:12]}
    execs = [r for r in rows if r["evt.type"] == "execve" and r["proc.name"] == "cat"]
    assert len(execs) == 2  # its first exec (the shim's was outside it) and the shell's
    opens = [r for r in rows if r["evt.type"] == "openat" and r["fd.name"] == str(box_marker)]
    assert len(opens) == 2
    # The host's opens and closes never reached user space: only the process-state calls of
    # processes outside the container did (the runtime's execs...).
    assert stats.left_out and set(stats.left_out) <= PROC_STATE_SYSCALLS
    assert stats.cgroup_corrections == 0

    # The same workload captured whole: the container's processes are described the same.
    # (Found by the file they open: without the kernel filter, a cgroup made less than a
    # second after the last walk of the v2 hierarchy is not known to user space, and a command
    # gone by then may be placed on the host. The kernel filter's REC_CGROUP records avoid it.)
    first, cid = cid, secrets.token_hex(32)
    everything = tmp_path / "all.parquet"
    capture(everything, (), workload)
    all_rows = pq.read_table(everything, columns=COLUMNS).to_pylist()
    whole = [r for r in all_rows if r["evt.type"] == "openat" and r["fd.name"] == str(box_marker)]
    assert [described(r, first) for r in opens] == [described(r, cid) for r in whole]
    assert opens[0]["proc.pname"] == "containerd-shim" and opens[0]["proc.aname"][2] == "unshare"
    assert opens[1]["proc.cwd"] == str(tmp_path)  # its shell's chdir, inside the container
    assert any(r["fd.name"] == str(host_marker) for r in all_rows)


@pytest.mark.usefixtures("require_bpf")
def test_host_excludes_containers_running_and_started_in_the_kernel(tmp_path: Path) -> None:
    v2_with_tracepoints()
    if shutil.which("unshare") is None:
        pytest.skip("needs util-linux unshare")
    marker = tmp_path / "marker"
    marker.write_text("x\n")
    ids: list[str] = []
    with ContainerSandbox("sr-running", "alpine:3.20") as running:
        ids.append(running.short_id)

        def workload() -> None:
            with ContainerSandbox("sr-started", "alpine:3.20") as started:
                ids.append(started.short_id)
                for box in (running, started):
                    for _ in range(5):
                        done = box.run(["cat", str(marker)], stdout=subprocess.DEVNULL)
                        assert done.returncode == 0
                busy_host(marker, times=3)

        out = tmp_path / "host.parquet"
        stats = capture(out, ("host",), workload)
    assert stats.container_filter == IN_KERNEL
    rows = pq.read_table(out, columns=COLUMNS).to_pylist()
    assert {r["container.id"] for r in rows} == {"host"}
    assert any(r["fd.name"] == str(marker) and r["evt.type"] == "openat" for r in rows)
    # The kernel dropped every container cgroup before user space saw it (none to correct):
    # their cats' execs reached it, as every process's do. (On a v1+v2 machine, a shim's
    # calls before it joins the v2 cgroup reach it too: they run in the host's v2 cgroup, and
    # user space, reading /proc when it enriches the shim's exec, places them in the container.)
    assert stats.cgroup_corrections == 0 and stats.left_out.get("execve", 0) >= 10
    assert len(ids) == 2


@pytest.mark.usefixtures("require_bpf")
def test_a_name_keeps_new_containers_until_user_space_has_named_them(tmp_path: Path) -> None:
    # A name may be any container's started later: the kernel keeps new containers' cgroups,
    # and user space, once it has asked the runtime, has it drop the others'.
    v2_with_tracepoints()
    if shutil.which("unshare") is None:
        pytest.skip("needs util-linux unshare")
    wanted, other = secrets.token_hex(32), secrets.token_hex(32)
    infos = {wanted: ContainerInfo(id=wanted, name="sr-wanted", image="alpine:3.20"),
             other: ContainerInfo(id=other, name="sr-other", image="alpine:3.20")}
    marker = tmp_path / "marker"
    marker.write_text("x\n")

    def workload() -> None:
        with ContainerSandbox("sr-wanted", "alpine:3.20", container_id=wanted) as box1, \
                ContainerSandbox("sr-other", "alpine:3.20", container_id=other) as box2:
            for box in (box1, box2, box1, box2):
                for argv in (["cat", str(marker)], ["sh", "-c", f"cat {marker}; cat {marker}"]):
                    assert box.run(argv, stdout=subprocess.DEVNULL).returncode == 0

    out = tmp_path / "named.parquet"
    with serve_engine_api(tmp_path / "docker.sock", infos) as server:
        stats = capture(out, ("sr-wanted",), workload, (str(server.socket_path),))
    assert stats.container_filter == IN_KERNEL
    rows = pq.read_table(out, columns=["evt.type", "fd.name", "container.id",
                                       "container.name"]).to_pylist()
    assert {(r["container.id"], r["container.name"]) for r in rows} == {(wanted[:12],
                                                                          "sr-wanted")}
    assert sum(r["evt.type"] == "openat" and r["fd.name"] == str(marker) for r in rows) == 6
    assert stats.cgroup_corrections >= 1  # sr-other's cgroup, dropped after its first record

