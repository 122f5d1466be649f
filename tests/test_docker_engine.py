"""Container metadata from a real Docker daemon (Debian's docker.io, started here on sockets and
directories of its own: no bridge, no iptables, its own containerd namespace).

An image made here from busybox-static (`docker import`), a container started from it with no
network, asked through the Docker Engine API as the capture asks (`/containers/ID/json`, then
the image), and a live capture that selects the container by its name and names its events
from the daemon's answers: id, type, name, image, repository, tag, image id.
"""

from __future__ import annotations

import os
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

IMAGE = "sysreplay/busybox:test"
NAME = "sysreplay-web"


@dataclass(frozen=True)
class Running:
    socket: Path
    id: str
    image_id: str  # hex, no "sha256:"


@pytest.fixture(scope="module")
def container(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """dockerd, and NAME reading /etc/hostname five times a second; all removed after."""
    binary = runtime_binary("dockerd", "docker.io", "docker")
    work = tmp_path_factory.mktemp("docker")
    socket = work / "docker.sock"
    env = {**os.environ, "DOCKER_HOST": f"unix://{socket}"}
    with (work / "log").open("wb") as log:
        proc = subprocess.Popen(
            [binary, "--data-root", str(work / "data"), "--exec-root", str(work / "exec"),
             "--pidfile", str(work / "pid"), "--host", f"unix://{socket}", "--iptables=false",
             "--ip6tables=false", "--bridge=none", "--containerd-namespace", "sysreplay-test",
             "--containerd-plugins-namespace", "sysreplay-test-plugins"],
            stdout=log, stderr=subprocess.STDOUT)

    def docker(*args: str, data: bytes | None = None) -> str:
        return subprocess.run(["docker", *args], input=data, env=env, check=True,
                              capture_output=True).stdout.decode().strip()

    try:
        wait_for(proc, lambda: socket.exists() and EngineClient(str(socket), 2.0).ping(),
                 work / "log")
        image_id = docker("import", "-", IMAGE, data=busybox_rootfs_tar())
        cid = docker("run", "--detach", "--network", "none", "--name", NAME, IMAGE, *READ_LOOP)
        yield Running(socket, cid, image_id.removeprefix("sha256:"))
    finally:
        subprocess.run(["docker", "rm", "--force", NAME], env=env, capture_output=True)
        stop(proc)


def test_the_daemon_describes_the_container(container: Running) -> None:
    runtimes = ContainerRuntimes(sockets=(str(container.socket),), timeout=5.0)
    try:
        info = runtimes.lookup(container.id, "docker")
        assert runtimes.lookup(NAME, "docker") == info  # by name too, as --container does
    finally:
        runtimes.close()
    assert info is not None
    assert (info.id, info.name, info.image, info.image_id, info.image_repository,
            info.image_tag, info.privileged) == \
        (container.id, NAME, IMAGE, container.image_id, "sysreplay/busybox", "test", False)


@pytest.mark.usefixtures("require_bpf")
def test_live_capture_names_a_real_docker_container(container: Running, tmp_path: Path) -> None:
    rows = live_container_rows(tmp_path / "docker.parquet", container.socket, NAME)
    assert set(rows) == {
        (container.id[:12], "docker", NAME, IMAGE, "sysreplay/busybox", "test",
         container.image_id)}
