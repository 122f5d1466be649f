"""Container metadata from a real podman (Debian's 4.3, its Docker-compatible API served by
`podman system service` on a socket of its own; storage and run directories of its own).

podman runs containers here with runc and the cgroupfs manager (crun and the systemd manager
refuse this machine's cgroup setup) and with explicit open-file and process limits (its
defaults exceed this machine's hard limits). The container's cgroup is
`/libpod_parent/libpod-<id>`; a live capture selecting it by name names its events from the
service's answers.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from real_runtimes import (
    READ_LOOP,
    busybox_rootfs_tar,
    live_container_rows,
    runtime_binary,
    stop,
    wait_for,
)

from capture.container_runtime import ContainerRuntimes, EngineClient

IMAGE = "localhost/sysreplay/busybox:test"
NAME = "sysreplay-podman"
LIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]


@dataclass(frozen=True)
class Running:
    socket: Path
    id: str
    image_id: str


@pytest.fixture(scope="module")
def container(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """The podman service, and NAME reading /etc/hostname five times a second."""
    binary = runtime_binary("podman", "podman")
    work = tmp_path_factory.mktemp("podman")
    socket = work / "podman.sock"
    podman = [binary, "--root", str(work / "root"), "--runroot", str(work / "run"),
              "--runtime", "runc", "--cgroup-manager", "cgroupfs", "--events-backend", "none",
              "--network-backend", "cni"]

    def run(*args: str, data: bytes | None = None) -> str:
        return subprocess.run([*podman, *args], input=data, check=True,
                              capture_output=True).stdout.decode().strip()

    with (work / "log").open("wb") as log:
        proc = subprocess.Popen([*podman, "system", "service", "--time", "0",
                                 f"unix://{socket}"], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(proc, lambda: socket.exists() and EngineClient(str(socket), 2.0).ping(),
                 work / "log")
        image_id = run("import", "-", IMAGE, data=busybox_rootfs_tar())
        cid = run("run", "--detach", *LIMITS, "--network", "none", "--name", NAME, IMAGE,
                  *READ_LOOP)
        yield Running(socket, cid, image_id.removeprefix("sha256:"))
    finally:
        subprocess.run([*podman, "rm", "--force", "--time", "0", NAME], capture_output=True)
        stop(proc)


def test_the_service_describes_the_container(container: Running) -> None:
    runtimes = ContainerRuntimes(sockets=(str(container.socket),), timeout=5.0)
    try:
        info = runtimes.lookup(container.id, "podman")
        assert runtimes.lookup(NAME, "podman") == info
    finally:
        runtimes.close()
    assert info is not None
    assert (info.id, info.name, info.image, info.image_id, info.image_repository,
            info.image_tag) == \
        (container.id, NAME, IMAGE, container.image_id, "localhost/sysreplay/busybox", "test")


@pytest.mark.usefixtures("require_bpf")
def test_live_capture_names_a_real_podman_container(container: Running,
                                                    tmp_path: Path) -> None:
    rows = live_container_rows(tmp_path / "podman.parquet", container.socket, NAME)
    assert set(rows) == {
        (container.id[:12], "podman", NAME, IMAGE, "localhost/sysreplay/busybox", "test",
         container.image_id)}
