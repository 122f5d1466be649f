"""The container sandbox (capture/container_sandbox.py).

The layout tests run anywhere on fake cgroup trees; the sandbox tests need root (they make
cgroups and namespaces) and use `require_root`.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from capture.cgroup_index import CgroupIndex
from capture.container_sandbox import ContainerSandbox, SandboxError, docker_cgroup_dirs
from capture.proc_table import container_of

CID = "ab" * 32


def touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


@pytest.mark.parametrize(("files", "expected"), [
    (["cgroup.controllers", "system.slice/cgroup.procs"],
     [f"system.slice/docker-{CID}.scope"]),
    (["cgroup.controllers"], [f"docker/{CID}"]),
    (["pids/cgroup.procs", "unified/cgroup.controllers"],
     [f"pids/docker/{CID}", f"unified/docker/{CID}"]),
    (["pids/cgroup.procs"], [f"pids/docker/{CID}"]),
], ids=["v2-systemd", "v2-cgroupfs", "hybrid", "v1"])
def test_cgroups_are_where_docker_puts_them(tmp_path: Path, files: list[str],
                                            expected: list[str]) -> None:
    for f in files:
        touch(tmp_path / f)
    dirs = docker_cgroup_dirs(CID, tmp_path)
    assert [str(d.relative_to(tmp_path)) for d in dirs] == expected
    for d in dirs:  # what the enrichment will read back from /proc/PID/cgroup
        assert container_of(f"0::/{d.relative_to(tmp_path)}\n") == (CID[:12], "docker")


def test_no_cgroup_hierarchy_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="No cgroup hierarchy"):
        docker_cgroup_dirs(CID, tmp_path)


# ---- live: needs root ------------------------------------------------------------------------

@pytest.mark.usefixtures("require_root")
def test_a_command_runs_in_the_container_as_the_kernel_sees_it() -> None:
    with ContainerSandbox("sr-test", "alpine:3.20") as box:
        script = "cat /proc/self/cgroup; echo pid=$$; readlink /proc/1/exe; hostname"
        done = box.run(["sh", "-c", script], stdout=subprocess.PIPE)
        assert done.returncode == 0
        out = done.stdout.decode()
        assert container_of(out) == (box.short_id, "docker")
        assert "pid=2\n" in out  # a pid namespace of its own: the shim is 1
        assert all(d.is_dir() for d in box.cgroups)
    assert not any(d.exists() for d in box.cgroups)


@pytest.mark.usefixtures("require_root")
def test_closing_kills_what_is_left_and_removes_the_cgroups() -> None:
    box = ContainerSandbox("sr-test", "alpine:3.20")
    box.open()
    try:
        child = subprocess.Popen(box.command(["sleep", "60"]))
        deadline = time.monotonic() + 10
        while len(box.pids()) < 2 and time.monotonic() < deadline:  # the shim and sleep
            time.sleep(0.02)
        assert len(box.pids()) >= 2
    finally:
        box.close()
    assert child.wait(10) != 0  # killed with everything in the container
    assert box.pids() == []
    assert not any(d.exists() for d in box.cgroups)


@pytest.mark.usefixtures("require_root")
def test_the_cgroup_v2_id_names_the_container() -> None:
    # What the capture reads the container of a process already gone from (the cgroup id in
    # its records): the sandbox has a v2 cgroup on every layout that has a v2 hierarchy.
    index = CgroupIndex.detect()
    if index.root is None:
        pytest.skip("no cgroup v2 hierarchy on this machine")
    with ContainerSandbox("sr-test", "alpine:3.20") as box:
        v2 = next(d for d in box.cgroups if index.root in d.parents)
        assert index.container(os.stat(v2).st_ino) == (box.short_id, "docker")
